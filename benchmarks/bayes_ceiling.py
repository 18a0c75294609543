"""The best MAP any ranking can reach on ``make_cross_modal`` data.

:func:`skhash.datasets.make_cross_modal` draws each item's labels, then a
latent vector (the mean of its labels' prototypes plus Gaussian noise), then
each modality as a linear map of the latent plus its own noise. Knowing that
model exactly, an item's view ``x`` of modality ``m`` has the likelihood

``x | Y ~ N(mean_prototype(Y) W_m, s² (W_mᵀ W_m + I))``

for each label set ``Y`` (``s`` the ``difficulty``), and the prior of ``Y``
is the generator's (one uniform primary label plus each other label with
probability ``p``). The posterior over label sets of a query (from its one
view) and of each database item (from the other view) gives the probability
that the pair is relevant under the benchmark's own relevance function:
``P(rel) = post_q R post_dᵀ`` with ``R[Y, Y'] = rel(Y, Y')``. Ranking by it
maximises the expected number of relevant items at every cut-off: no method
that sees the views puts more relevant items into any top-k, on average (it
also knows the generator's parameters, which no method does). For MAP it is
a ceiling in that sense, not a proven bound (average precision weighs the
ranks unevenly). Supervised methods can pass it on the database side only,
by memorising the database's labels.

Used by ``bench_defaults.py`` (column ``Bayes``) to show which targets can
be met at all: e.g. at ``difficulty=0.5`` CCA+ITQ reaches 0.963 MAP@50, so
1.1 x CCA+ITQ is above the largest possible MAP of 1.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils import check_random_state

from skhash.datasets._synthetic import _draw_cross_modal, _modality_widths

__all__ = ["draw_with_model", "bayes_scores"]


def draw_with_model(n_samples, *, n_classes, multilabel, difficulty, random_state):
    """``make_cross_modal(n_samples, ...)`` with the default widths (the same
    ``X, y``), and the generative model it drew them from."""
    return _draw_cross_modal(
        n_samples,
        n_classes,
        _modality_widths((64, 32)),
        multilabel,
        difficulty,
        check_random_state(random_state),
    )


def _label_sets(model):
    """Every label set the generator can draw (indicator rows, or class ids)
    and its log prior."""
    n_classes = model["prototypes"].shape[0]
    p = model["p_extra"]
    if p is None:
        return np.arange(n_classes), np.full(n_classes, -np.log(n_classes))
    if n_classes > 12:
        raise ValueError(f"2**{n_classes} label sets are too many to enumerate")
    masks = np.arange(1, 2**n_classes)
    sets = (masks[:, None] >> np.arange(n_classes)[None, :]) & 1
    size = sets.sum(axis=1)
    log_prior = (
        np.log(size / n_classes)
        + (size - 1) * np.log(p)
        + (n_classes - size) * np.log1p(-p)
    )
    return sets, log_prior


def _posterior(X, modality, model, sets, log_prior):
    P, W = model["prototypes"], model["mappings"][modality]
    s = model["difficulty"]
    if sets.ndim == 1:
        means = P[sets]
    else:
        means = (sets @ P) / sets.sum(axis=1, keepdims=True)
    cov = s**2 * (W.T @ W + np.eye(W.shape[1]))
    L = np.linalg.cholesky(np.linalg.inv(cov))  # whitening: x L has identity cov
    A, B = np.asarray(X, dtype=np.float64) @ L, (means @ W) @ L
    log_lik = -0.5 * ((A**2).sum(1)[:, None] - 2.0 * A @ B.T + (B**2).sum(1)[None])
    z = log_lik + log_prior[None, :]
    z -= z.max(axis=1, keepdims=True)
    post = np.exp(z)
    return post / post.sum(axis=1, keepdims=True)


def bayes_scores(model, X_query, X_database, rel, directions=(("img", "txt"),)):
    """``P(rel)`` of every (query, database item) pair, one matrix per
    (query modality, database modality) direction: the Bayes-optimal
    ranking's scores. ``rel(y_query, y_database)`` is the benchmark's
    relevance function."""
    sets, log_prior = _label_sets(model)
    R = np.asarray(rel(sets, sets), dtype=np.float64)
    out = []
    for q_mod, d_mod in directions:
        post_q = _posterior(X_query[q_mod], q_mod, model, sets, log_prior)
        post_d = _posterior(X_database[d_mod], d_mod, model, sets, log_prior)
        out.append(post_q @ R @ post_d.T)
    return out
