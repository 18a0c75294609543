"""
=================================================
Tuning λ and α with GridSearchCV
=================================================

An skhash pipeline is a scikit-learn estimator, so stock
:class:`~sklearn.model_selection.GridSearchCV` tunes it. Under
cross-validation the training fold is the indexed database and the held-out
fold supplies the queries, the papers' protocol, and the
:func:`~skhash.metrics.make_map_scorer` scorer returns MAP@50 (harmonic
mean of both directions).

We tune the weight of HQ's quantization loss ``λ_q`` (a learner parameter:
each value trains new towers) and the shortlist size ``α`` (a retriever
parameter, read at query time). With ``Pipeline(memory=...)`` the fitted
learner is cached, so changing only ``α`` does not retrain it.
"""

# %%
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import tempfile

import matplotlib.pyplot as plt
import numpy as np
import torch
from joblib import Memory
from sklearn.model_selection import GridSearchCV, KFold

from skhash import HQHasher, TwoStageRetriever
from skhash.datasets import load_wiki
from skhash.metrics import make_map_scorer
from skhash.pipeline import Pipeline

torch.set_num_threads(1)
RANDOM_STATE = 0

wiki = load_wiki()

# %%
# The pipeline and the grid
# -------------------------
# Parameters are addressed as ``<step>__<parameter>``. Short training keeps
# this example under a minute; the grid has 2 × 4 points and 3 folds, but
# only 2 × 3 learner fits (plus the refit) thanks to the cache.
cache = Memory(tempfile.mkdtemp(prefix="skhash-gallery-"), verbose=0)
pipe = Pipeline(
    [
        (
            "hq",
            HQHasher(
                n_bits=32,
                max_epochs=6,
                quantization_warmup=2,
                random_state=RANDOM_STATE,
            ),
        ),
        ("search", TwoStageRetriever(n_neighbors=50)),
    ],
    memory=cache,
)
param_grid = {
    "hq__lambda_q": [0.0, 0.01],
    "search__alpha": [0, 20, 100, 1.0],
}
grid = GridSearchCV(
    pipe,
    param_grid,
    scoring=make_map_scorer(k=50),
    cv=KFold(n_splits=3, shuffle=True, random_state=RANDOM_STATE),
)
grid.fit(wiki.X_train, wiki.y_train)
print("best parameters:", grid.best_params_)
print(f"best cross-validated MAP@50: {grid.best_score_:.3f}")

# %%
# ``λ_q = 0`` trains no codebooks: the retriever then falls back to Hamming
# ranking whatever ``α``, which is why its line is flat.
results = grid.cv_results_
fig, ax = plt.subplots(figsize=(5.5, 3.4), layout="constrained")
labels = ["0", "20", "100", "1.0 (all)"]
for lam in param_grid["hq__lambda_q"]:
    mask = np.array([p["hq__lambda_q"] == lam for p in results["params"]])
    ax.errorbar(
        np.arange(4),
        results["mean_test_score"][mask],
        yerr=results["std_test_score"][mask],
        marker="o",
        capsize=3,
        label=f"λ_q = {lam}",
    )
ax.set_xticks(np.arange(4), labels)
ax.set(
    xlabel="α (int: shortlist size, float: fraction of the database)",
    ylabel="MAP@50 (3-fold CV)",
    title="GridSearchCV over HQ + search",
)
ax.legend()
plt.show()

# %%
# Test score of the refitted best pipeline
# ----------------------------------------
# ``refit=True`` (the default) retrains the best pipeline on all the
# training pairs, which become the database; the test pairs are the queries.
print(f"test MAP@50: {grid.score(wiki.X_test, wiki.y_test):.3f}")
cache.clear(warn=False)
