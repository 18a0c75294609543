"""
===========================================
Shortlist size: accuracy against speed
===========================================

The two-stage search of HQ keeps the ``L = α N`` database items nearest to
the query in Hamming distance, then re-ranks only those by the asymmetric
quantizer distance. ``α = 0`` is pure Hamming ranking (fastest), ``α = 1``
re-ranks the whole database (slowest, the quantization-only search).

:class:`~skhash.plotting.AlphaSweepDisplay` sweeps ``α`` of a fitted
retriever, without retraining (``alpha`` is read at query time), and plots
MAP@50 and the number of queries answered per second, as the HQ paper's
Figure 4.
"""

# %%
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import matplotlib.pyplot as plt
import torch

from skhash import HQHasher, TwoStageRetriever
from skhash.datasets import load_wiki
from skhash.pipeline import Pipeline
from skhash.plotting import AlphaSweepDisplay

torch.set_num_threads(1)
RANDOM_STATE = 0

wiki = load_wiki()

# %%
# A pipeline: learner, then retriever
# -----------------------------------
# Fitting the pipeline trains HQ on the database and indexes its codes;
# ``score`` and the displays encode the queries with the same learner.
pipe = Pipeline(
    [
        ("hq", HQHasher(n_bits=64, max_epochs=12, random_state=RANDOM_STATE)),
        ("search", TwoStageRetriever(n_neighbors=50)),
    ]
)
pipe.fit(wiki.X_train, wiki.y_train)

# %%
# Sweep α
# -------
# Both directions are searched for each ``α``; MAP@50 is their harmonic
# mean and the speed counts the queries of both (one thread, the
# retriever's default search backend). The shortlist itself (Hamming
# distances to all ``N`` items) costs the same at every ``α``; the
# re-ranking grows linearly with ``α``.
alphas = [0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0]
display = AlphaSweepDisplay.from_estimator(
    pipe, wiki.X_test, wiki.y_test, alphas=alphas, n_repeats=2, name="HQ 64 bits"
)
display.ax_.set_title("Wiki, 2,173 items in the database")
display.ax_.set_xscale("symlog", linthresh=0.01)  # spread the small alphas
for a, s, q in zip(display.alphas, display.scores, display.queries_per_second):
    print(f"alpha {a:4.2f}: MAP@50 {s:.3f}, {q:8.0f} queries/s")
plt.show()

# %%
# A small shortlist already gives most of the re-ranking's gain: the
# Hamming distance is a good first filter because HQ learns the binary and
# the quantization codes together. ``GridSearchCV`` can pick ``α`` for a
# target speed; see :ref:`sphx_glr_auto_examples_evaluation_plot_grid_search.py`.
