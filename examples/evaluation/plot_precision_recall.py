"""
==========================================================
Precision–recall and precision@top-R curves
==========================================================

Besides MAP@K, hashing papers report two curves (the DQN paper's
protocols):

* **precision–recall over Hamming radius**: every database item within
  Hamming distance ``r`` of the query is retrieved; as ``r`` grows from 0 to
  the code length, recall rises and precision falls
  (:class:`~skhash.plotting.PrecisionRecallDisplay`);
* **precision@top-R**: the precision of the first ``R`` items of the
  ranking, for growing ``R``
  (:class:`~skhash.plotting.PrecisionAtTopRDisplay`).

We draw both for a supervised learner (HQ) and an unsupervised one (DJSRH)
at 32 bits on Wiki, text queries against the image database.
"""

# %%
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import matplotlib.pyplot as plt
import torch

from skhash import DJSRHHasher, HQHasher, TwoStageRetriever
from skhash.datasets import load_wiki
from skhash.pipeline import make_pipeline
from skhash.plotting import PrecisionAtTopRDisplay, PrecisionRecallDisplay

torch.set_num_threads(1)
RANDOM_STATE = 0

wiki = load_wiki()

# %%
# Two pipelines
# -------------
# DJSRH ignores the labels it is given (it is unsupervised); the retriever
# keeps them to compute relevance.
pipelines = {
    "HQ": make_pipeline(
        HQHasher(n_bits=32, max_epochs=12, random_state=RANDOM_STATE),
        TwoStageRetriever(alpha=100),
    ),
    "DJSRH": make_pipeline(
        DJSRHHasher(n_bits=32, max_epochs=15, random_state=RANDOM_STATE),
        TwoStageRetriever(),
    ),
}
for pipe in pipelines.values():
    pipe.fit(wiki.X_train, wiki.y_train)

# %%
# Curves
# ------
# The precision–recall curve uses only the binary codes (the first stage,
# over the whole database). The top-R curve uses each retriever's full
# ranking: HQ's includes the quantization re-ranking of its shortlist of 100.
fig, (ax_pr, ax_top) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
for name, pipe in pipelines.items():
    PrecisionRecallDisplay.from_estimator(
        pipe, wiki.X_test, wiki.y_test, direction="txt->img", name=name, ax=ax_pr
    )
    PrecisionAtTopRDisplay.from_estimator(
        pipe,
        wiki.X_test,
        wiki.y_test,
        direction="txt->img",
        name=name,
        r_values=[1, 10, 25, 50, 100, 200, 400, 600, 800, 1000],
        ax=ax_top,
    )
ax_pr.set_title("Precision–recall over Hamming radius")
ax_top.set_title("Precision of the top R")
fig.suptitle("Wiki, text → image, 32 bits")
plt.show()

# %%
# The curves start high on the left: the few items at Hamming radius 0 or
# at the top of the ranking are mostly relevant. Wiki has 10 roughly
# balanced classes, so precision tends to about 0.1 (a random item) when
# the whole database is retrieved.
