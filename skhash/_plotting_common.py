"""What every display of :mod:`skhash.plotting` needs.

matplotlib's ``pyplot``, imported only when something is drawn (with an
``ImportError`` that says how to install it), the ``Axes`` to draw on, the
fitted retriever at the end of the estimator a ``from_estimator`` is given
(with the queries as that retriever sees them), and the default name of a
curve in the legend.
"""

# Authors: The skhash developers
# SPDX-License-Identifier: BSD-3-Clause

from __future__ import annotations

from sklearn.utils.validation import check_is_fitted


def _check_matplotlib(caller):
    """Import matplotlib.pyplot, or raise an ImportError that says how."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"{caller} requires matplotlib, an optional dependency of skhash. "
            "Install it with: pip install skhash[plot]  (or pip install "
            "matplotlib)."
        ) from exc
    return plt


def _get_ax(ax, plt):
    if ax is None:
        _, ax = plt.subplots(layout="constrained")
    return ax


def _final_retriever(estimator, X):
    """The fitted retriever ending ``estimator`` and the queries as it sees them.

    ``estimator`` is a fitted :class:`~skhash.TwoStageRetriever` (then ``X``
    are query codes) or a fitted pipeline ending in one (then every other step
    transforms ``X``, as the retrieval scorers do).
    """
    from skhash.metrics._scorer import _final_step_and_input

    final, Xt = _final_step_and_input(estimator, X)
    if not hasattr(final, "kneighbors") or not hasattr(final, "search_plan_"):
        check_is_fitted(final)
        raise TypeError(
            f"The final step of the estimator is a {type(final).__name__}; the "
            "displays need a fitted skhash.TwoStageRetriever, or a pipeline "
            "ending in one (e.g. Pipeline([('hq', HQHasher()), ('search', "
            "TwoStageRetriever())]))."
        )
    check_is_fitted(final)
    if final.y_ is None:
        raise ValueError(
            "The retriever was fitted without database labels, so relevance "
            "cannot be computed; fit it with fit(codes, y)."
        )
    return final, Xt


def _default_name(estimator):
    steps = getattr(estimator, "steps", None)
    if steps:
        return type(steps[0][1]).__name__
    return type(estimator).__name__
