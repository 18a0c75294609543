"""
===========================================
HQ: hashing and quantization on Wiki images
===========================================

:class:`~skhash.hashing.HQHasher` learns, for every image and every text, a
binary code (for a fast Hamming shortlist) and additive quantization codes
(to re-rank the shortlist by the asymmetric quantizer distance).
:class:`~skhash.retrieval.TwoStageRetriever` indexes the database codes and
answers image→text and text→image queries.

We follow the papers' protocol on the Wiki benchmark shipped with skhash:
the 2,173 training pairs are both the training set and the retrieval
database, the 693 test pairs are the queries, and an item is relevant to a
query when both have the same class. The score is MAP@50.
"""

# %%
# One thread for torch and BLAS: small towers train faster that way on a
# busy machine.
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import matplotlib.pyplot as plt
import numpy as np
import torch

from skhash import HQHasher, TwoStageRetriever
from skhash.datasets import load_wiki

torch.set_num_threads(1)
RANDOM_STATE = 0
# sphinx_gallery_thumbnail_number = 2

# %%
# Load the data and train
# -----------------------
# ``X_train`` is a :class:`~skhash.MultiModal` with an ``img`` modality
# (128-bin SIFT histograms) and a ``txt`` modality (10 LDA topics). The
# learner trains one small tower per modality.
wiki = load_wiki()
print(wiki.X_train, wiki.X_test)

hq = HQHasher(
    n_bits=64, n_codebooks=4, n_codewords=256, max_epochs=15, random_state=RANDOM_STATE
)
hq.fit(wiki.X_train, wiki.y_train)

# %%
# The training loss is the weighted sum of four terms; ``history_`` keeps
# each term per epoch. The quantization term starts after
# ``quantization_warmup`` epochs, once codebooks exist.
history = hq.history_
epochs = history[:, "epoch"]
fig, axes = plt.subplots(1, 4, figsize=(12, 2.8), layout="constrained")
for ax, term in zip(axes, ["loss_sim", "loss_h", "loss_b", "loss_q"]):
    ax.plot(epochs, history[:, term], marker=".")
    ax.set(title=term, xlabel="epoch")
fig.suptitle("HQ loss terms on Wiki")

# %%
# Codes
# -----
# ``transform`` returns a :class:`~skhash.CodeSet`: per modality the float
# embedding (queries need it), the packed bits and the quantization codes,
# plus the shared codebooks. Only bits and codes are indexed: 8 + 4 bytes per
# item and modality instead of 256 bytes of float32 features.
db = hq.transform(wiki.X_train)
queries = hq.transform(wiki.X_test)
print(db)
print("bytes per item and modality (bits + codes):", db.compact_bytes_per_item)

# %%
# Two-stage search
# ----------------
# ``alpha=100`` keeps the 100 nearest items by Hamming distance and re-ranks
# them by the inner product of the float query with each item's
# reconstruction ``Σ_l C^l b^l``. ``alpha=0`` is pure Hamming ranking.
search = TwoStageRetriever(alpha=100, n_neighbors=50).fit(db, wiki.y_train)
hamming = TwoStageRetriever(alpha=0, rerank="none").fit(db, wiki.y_train)

results = {}
for name, retriever in [("Hamming only", hamming), ("two-stage", search)]:
    results[name] = [
        retriever.score(queries, wiki.y_test, direction=d)
        for d in ("img->txt", "txt->img")
    ]
    print(
        f"{name:>13}: MAP@50 img->txt {results[name][0]:.3f}, "
        f"txt->img {results[name][1]:.3f}, harmonic mean "
        f"{retriever.score(queries, wiki.y_test):.3f}"
    )

# %%
fig, ax = plt.subplots(figsize=(5, 3.2), layout="constrained")
x = np.arange(2)
for i, (name, scores) in enumerate(results.items()):
    ax.bar(x + 0.38 * i, scores, width=0.36, label=name)
ax.set_xticks(x + 0.19, ["image → text", "text → image"])
ax.set(ylabel="MAP@50", title="HQ, 64 bits, Wiki")
ax.legend(loc="upper left")

# %%
# Neighbours of a few queries
# ---------------------------
# The classes of the five texts retrieved for each of the first four test
# images (Wiki is hard: image features are weak, so image→text MAP is much
# lower than text→image MAP, as in the papers).
idx = search.kneighbors(queries[:4], 5, direction="img->txt", return_distance=False)
names = wiki.target_names
for i in range(4):
    print(
        f"query {i} ({names[wiki.y_test[i]]}):",
        ", ".join(str(names[c]) for c in wiki.y_train[idx[i]]),
    )
