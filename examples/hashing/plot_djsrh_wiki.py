"""
==========================================
DJSRH: unsupervised cross-modal hashing
==========================================

:class:`~skhash.hashing.DJSRHHasher` learns binary codes **without labels**.
For each batch it builds a joint-semantics affinity from the cosine
similarities of both modalities' input features, and trains one tower per
modality so that the cosines of the relaxed codes ``tanh(α H)`` reconstruct
it. ``α`` grows as ``√epoch``, so the relaxed codes approach the binary
codes ``sgn H``.

Labels are used here only to *evaluate* (MAP@50 on the Wiki test queries),
never to train. We compare with canonical correlation analysis (CCA), a
classical unsupervised way to put two modalities in one space.
"""

# %%
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.cross_decomposition import CCA
from sklearn.preprocessing import StandardScaler

from skhash import CodeSet, DJSRHHasher, TwoStageRetriever
from skhash.datasets import load_wiki

torch.set_num_threads(1)
RANDOM_STATE = 0
# sphinx_gallery_thumbnail_number = 2

wiki = load_wiki()

# %%
# Train without labels
# --------------------
# ``fit`` takes the paired modalities only.
djsrh = DJSRHHasher(n_bits=32, max_epochs=20, random_state=RANDOM_STATE)
djsrh.fit(wiki.X_train)

history = djsrh.history_
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3), layout="constrained")
ax1.plot(history[:, "epoch"], history[:, "train_loss"], marker=".", label="total")
ax1.plot(
    history[:, "epoch"], history[:, "loss_cross"], marker=".", label="cross-modal term"
)
ax1.set(xlabel="epoch", ylabel="loss", title="Reconstruction loss")
ax1.legend()
ax2.plot(history[:, "epoch"], history[:, "alpha"], marker=".")
ax2.set(xlabel="epoch", ylabel="α", title="α = √epoch: tanh(αH) → sgn H")

# %%
# Hamming ranking of the binary codes
# -----------------------------------
# DJSRH codes carry bits and a float embedding ``tanh(α H)`` but no
# quantization codes, so the retriever ranks by Hamming distance
# (``search_plan_`` says so).
db = djsrh.transform(wiki.X_train)
queries = djsrh.transform(wiki.X_test)
search = TwoStageRetriever(n_neighbors=50).fit(db, wiki.y_train)
print(search.search_plan_)


def both_directions(retriever, q):
    return [
        retriever.score(q, wiki.y_test, direction=d) for d in ("img->txt", "txt->img")
    ]


scores = {"DJSRH, 32-bit Hamming": both_directions(search, queries)}

# %%
# CCA reference
# -------------
# CCA on standardised features gives ``min(128, 10) = 10`` real-valued
# components per modality, ranked by cosine similarity: a float reference,
# 40 bytes per item instead of DJSRH's 4.
scalers = {m: StandardScaler().fit(wiki.X_train[m]) for m in ("img", "txt")}
cca = CCA(n_components=10, max_iter=1000).fit(
    scalers["img"].transform(wiki.X_train["img"]),
    scalers["txt"].transform(wiki.X_train["txt"]),
)


def cca_codes(X):
    img, txt = cca.transform(
        scalers["img"].transform(X["img"]), scalers["txt"].transform(X["txt"])
    )
    return CodeSet.from_modalities(
        img=CodeSet(embedding=img.astype(np.float32), modality="img"),
        txt=CodeSet(embedding=txt.astype(np.float32), modality="txt"),
    )


cca_search = TwoStageRetriever(n_neighbors=50).fit(
    cca_codes(wiki.X_train), wiki.y_train
)
scores["CCA, 10 floats, cosine"] = both_directions(cca_search, cca_codes(wiki.X_test))

for name, (i2t, t2i) in scores.items():
    print(f"{name:>24}: img->txt {i2t:.3f}  txt->img {t2i:.3f}")

# %%
fig, ax = plt.subplots(figsize=(5, 3.2), layout="constrained")
x = np.arange(2)
for i, (name, s) in enumerate(scores.items()):
    ax.bar(x + 0.38 * i, s, width=0.36, label=name)
ax.set_xticks(x + 0.19, ["image → text", "text → image"])
ax.set(ylabel="MAP@50", title="Unsupervised retrieval on Wiki")
ax.legend(loc="upper left")
plt.show()
