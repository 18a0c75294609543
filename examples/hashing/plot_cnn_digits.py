"""
=======================================================
A CNN tower on raw images: digits against their vectors
=======================================================

A modality can be an array of any rank: here the images of scikit-learn's
handwritten digits stay raw 8×8 ``uint8`` pictures, shaped ``(n, 1, 8, 8)``,
and a small convolutional network is their tower, while the second modality is
the same digits as 64-value vectors (a noisy copy), read by the default MLP
tower. :class:`~skhash.HQHasher` learns 32-bit codes for both, so that an image
retrieves vectors of the same digit and back.

The images are never converted to float as a whole: :class:`~skhash.MultiModal`
keeps the ``uint8`` array (no copy), and each batch is converted to float32 and
standardised per channel by the towers' input layer. The CNN class gets the
shape of one item (``input_shape``) and the code length (``n_outputs``) as
constructor arguments.

A validation split and :class:`~skhash.callbacks.RetrievalScoring` record the
cross-modal MAP@50 of held-out digits after every epoch.
"""

# %%
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from skhash import HQHasher, MultiModal, TwoStageRetriever
from skhash.callbacks import RetrievalScoring

torch.set_num_threads(1)
RANDOM_STATE = 0

digits = load_digits()
rng = np.random.RandomState(RANDOM_STATE)
images = digits.images.astype(np.uint8)[:, None]  # (n, 1, 8, 8), values 0..16
vectors = digits.data + rng.normal(scale=2.0, size=digits.data.shape)
train, test = train_test_split(
    np.arange(len(images)),
    test_size=0.25,
    stratify=digits.target,
    random_state=RANDOM_STATE,
)
X = MultiModal(img=images, vec=vectors)
y = digits.target
print(X, X["img"].dtype)


# %%
# The image tower
# ---------------
# Any ``torch.nn.Module`` class; it receives float32 batches of shape
# ``(batch, 1, 8, 8)`` and returns ``(batch, n_outputs)``.
class DigitCNN(nn.Module):
    def __init__(self, input_shape, n_outputs, width=16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(input_shape[0], width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 4x4
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(2 * width, n_outputs)

    def forward(self, X):
        return self.head(self.features(X))


hq = HQHasher(
    n_bits=32,
    n_codebooks=4,
    n_codewords=16,
    module={"img": DigitCNN, "vec": None},  # None: the default MLP
    max_epochs=15,
    lr=3e-3,
    train_split=0.2,
    callbacks=[RetrievalScoring(k=50)],
    random_state=RANDOM_STATE,
    n_jobs=1,
)
hq.fit(X[train], y[train])
print(hq.net_.module_.towers["img"])

# %%
# Search the test digits
# ----------------------
# The database is the training digits (both modalities); the queries are the
# test digits, searched image→vector and vector→image.
search = TwoStageRetriever(n_neighbors=50).fit(hq.transform(X[train]), y[train])
queries = hq.transform(X[test])
for direction in ("img->vec", "vec->img"):
    score = search.score(queries, y[test], direction=direction)
    print(f"{direction}: MAP@50 = {score:.3f}")
print(f"harmonic mean: {search.score(queries, y[test]):.3f}")

# %%
# Validation MAP per epoch
# ------------------------
history = hq.history_
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(history[:, "epoch"], history[:, "valid_map"], marker="o")
ax.set_xlabel("epoch")
ax.set_ylabel("validation MAP@50")
ax.set_title("RetrievalScoring, recorded after every epoch")
fig.tight_layout()
plt.show()
