"""
=================================================
Single-modal image retrieval with DQN on digits
=================================================

Every skhash learner also works on a plain 2-D array: one modality, one
tower, within-modality pairs. This is the DQN paper's own setting (image
retrieval). Here the images are scikit-learn's 8×8 handwritten digits; the
database is a stratified 75 % of them, the queries the other 25 %.

We train :class:`~skhash.quantization.DQNQuantizer` with 4 codebooks of 256
codewords (32 bits per image), search by the asymmetric quantizer distance,
and show the images retrieved for a few queries.
"""

# %%
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import matplotlib.pyplot as plt
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from skhash import DQNQuantizer, TwoStageRetriever

torch.set_num_threads(1)
RANDOM_STATE = 0

digits = load_digits()
X_db, X_query, y_db, y_query, img_db, img_query = train_test_split(
    digits.data,
    digits.target,
    digits.images,
    test_size=0.25,
    stratify=digits.target,
    random_state=RANDOM_STATE,
)
print(f"database {X_db.shape}, queries {X_query.shape}")

# %%
# Train and encode
# ----------------
# A plain array is the single modality ``"X"``: ``transform`` returns a
# :class:`~skhash.CodeSet` with the embedding and the product codes.
dqn = DQNQuantizer(
    n_codebooks=4, n_codewords=256, max_epochs=15, random_state=RANDOM_STATE
)
dqn.fit(X_db, y_db)
db = dqn.transform(X_db)
queries = dqn.transform(X_query)
print(db)
print(
    f"{8 * db.compact_bytes_per_item:.0f} bits per image instead of "
    f"{64 * 32} bits of float32 pixels"
)

# %%
# Search and score
# ----------------
# Without bits, the retriever computes the AQD of each query to the whole
# database. MAP@50 of the codes, beside exact cosine search on the raw
# pixels (a plain float array is indexed as is).
search = TwoStageRetriever(alpha=1.0, rerank="aqd-l2", n_neighbors=50)
search.fit(db, y_db)
pixels = TwoStageRetriever(n_neighbors=50).fit(X_db, y_db)
print(f"DQN 32-bit codes, AQD : MAP@50 = {search.score(queries, y_query):.3f}")
print(f"raw pixels, cosine    : MAP@50 = {pixels.score(X_query, y_query):.3f}")

# %%
# Retrieved images
# ----------------
# Each row: a query (left, framed) and its eight nearest database images by
# AQD. A red title marks a retrieved image of another class.
n_show, n_neighbors = 6, 8
idx = search.kneighbors(queries[:n_show], n_neighbors, return_distance=False)
fig, axes = plt.subplots(
    n_show, n_neighbors + 1, figsize=(7, 5.4), layout="constrained"
)
for row in range(n_show):
    axes[row, 0].imshow(img_query[row], cmap="gray_r")
    axes[row, 0].set_title(f"query {y_query[row]}", fontsize=8)
    for spine in axes[row, 0].spines.values():
        spine.set(edgecolor="C0", linewidth=2)
    for col, j in enumerate(idx[row], start=1):
        axes[row, col].imshow(img_db[j], cmap="gray_r")
        color = "k" if y_db[j] == y_query[row] else "red"
        axes[row, col].set_title(str(y_db[j]), fontsize=8, color=color)
for ax in axes.ravel():
    ax.set(xticks=[], yticks=[])
fig.suptitle("DQN, 32 bits per image: queries and their neighbours")
plt.show()
