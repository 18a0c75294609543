"""Retrieval scorers for model selection, and their registry.

A scorer is called as ``scorer(estimator, X, y)``: ``X`` and ``y`` are the
queries and their labels, and the final step of ``estimator`` (a retriever that
indexed its training data as the database) scores them. This is the protocol of
cross-validation in skhash: the training fold is the database, the held-out fold
the queries.
"""

# Authors: The skhash developers
# SPDX-License-Identifier: BSD-3-Clause

import copy
from numbers import Integral

from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from skhash.metrics._relevance import _reject_bool

__all__ = [
    "get_scorer",
    "get_scorer_names",
    "make_map_scorer",
    "make_precision_scorer",
]

_VARIANTS = {"djsrh", "deephash", "full", "dcmh"}


def _final_step_and_input(estimator, X):
    """Return the last step of a pipeline and X transformed by the others.

    An estimator without ``steps`` is its own final step and sees X unchanged.
    A fitted search (``GridSearchCV`` and the like, as in nested
    cross-validation) is scored by its refitted ``best_estimator_``, as its
    own ``score`` would be.
    """
    if hasattr(estimator, "cv_results_") and hasattr(estimator, "estimator"):
        best = getattr(estimator, "best_estimator_", None)
        if best is None:
            raise ValueError(
                f"{type(estimator).__name__} was fitted with refit=False, so it "
                "has no best_estimator_ for a retrieval scorer to score; pass "
                "refit=True (or the name of the metric to refit on)."
            )
        estimator = best
    steps = getattr(estimator, "steps", None)
    if steps is None:
        _check_retriever(estimator, estimator)
        return estimator, X
    final = steps[-1][1]
    if final is None or (isinstance(final, str) and final == "passthrough"):
        raise ValueError(
            f"The last step of {type(estimator).__name__} is {final!r}; a "
            "retrieval scorer needs a final step with a score method, such as "
            "skhash's TwoStageRetriever."
        )
    _check_retriever(final, estimator)
    Xt = X
    for _, step in steps[:-1]:
        if step is None or (isinstance(step, str) and step == "passthrough"):
            continue
        Xt = step.transform(Xt)
    return final, Xt


def _check_retriever(final, estimator):
    """Fail early, and clearly, when the final step is not a retriever."""
    if not hasattr(final, "score"):
        where = (
            ""
            if final is estimator
            else f" (the last step of {type(estimator).__name__})"
        )
        raise TypeError(
            "A retrieval scorer needs a fitted retriever with a score method, or "
            "a pipeline ending in one, such as skhash's TwoStageRetriever; got "
            f"{type(final).__name__}{where}, which has no score method."
        )


class _RetrievalScorer:
    """Score queries with the ``score`` method of a retriever (final step).

    Build it with :func:`make_map_scorer` or :func:`make_precision_scorer`.

    Parameters
    ----------
    metric : {"map", "precision"}
        Passed as ``metric`` to the retriever's ``score``.

    k : int or None
        Passed as ``n_neighbors``; None ranks the whole database.

    direction : str or None
        Passed as ``direction``; None lets the retriever combine both
        directions of a two-modality database (harmonic mean).

    variant : {"djsrh", "deephash", "full", "dcmh"}
        Passed as ``variant``.
    """

    _factories = {"map": "make_map_scorer", "precision": "make_precision_scorer"}

    def __init__(self, *, metric, k, direction, variant):
        self.metric = metric
        self.k = k
        self.direction = direction
        self.variant = variant

    def __call__(self, estimator, X, y):
        """Score the queries ``X`` with labels ``y``; greater is better.

        Parameters
        ----------
        estimator : object
            A fitted retriever, or a fitted pipeline ending in one.

        X : array-like or MultiModal
            The queries, before the pipeline's transforms.

        y : array-like
            Labels of the queries.

        Returns
        -------
        score : float
            The retriever's score, e.g. MAP@K.
        """
        final, Xt = _final_step_and_input(estimator, X)
        return float(
            final.score(
                Xt,
                y,
                n_neighbors="all" if self.k is None else self.k,
                direction=self.direction,
                variant=self.variant,
                metric=self.metric,
            )
        )

    def __repr__(self):
        args = f"k={self.k!r}, direction={self.direction!r}"
        if self.metric == "map" and self.variant != "djsrh":
            args += f", variant={self.variant!r}"
        return f"{self._factories[self.metric]}({args})"


@validate_params(
    {
        "k": [Interval(Integral, 1, None, closed="left"), None],
        "direction": [str, None],
        "variant": [StrOptions(_VARIANTS)],
    },
    prefer_skip_nested_validation=True,
)
def make_map_scorer(k=50, *, direction=None, variant="djsrh"):
    """Make a MAP@K scorer for ``GridSearchCV`` and ``cross_validate``.

    Parameters
    ----------
    k : int or None, default=50
        Cut-off K, passed to the retriever's ``score`` as ``n_neighbors``.
        None ranks the whole database.

    direction : str or None, default=None
        Retrieval direction such as ``"img->txt"``. None uses the harmonic mean
        of both directions when the database has two modalities.

    variant : {"djsrh", "deephash", "full", "dcmh"}, default="djsrh"
        Normalisation of AP@K, see
        :func:`skhash.metrics.average_precision_from_ranking`.

    Returns
    -------
    scorer : callable
        Called as ``scorer(estimator, X, y)``. If ``estimator`` is a pipeline,
        every step but the last transforms ``X``, then the last step's
        ``score(Xt, y, n_neighbors=k, direction=direction, variant=variant,
        metric="map")`` gives the score (greater is better).

    See Also
    --------
    get_scorer : Predefined scorers by name, e.g. ``"map@50"``.

    Examples
    --------
    >>> from skhash.metrics import make_map_scorer
    >>> make_map_scorer(k=100, direction="img->txt")
    make_map_scorer(k=100, direction='img->txt')
    """
    _reject_bool(k, "k", 50)
    return _RetrievalScorer(metric="map", k=k, direction=direction, variant=variant)


@validate_params(
    {
        "k": [Interval(Integral, 1, None, closed="left"), None],
        "direction": [str, None],
    },
    prefer_skip_nested_validation=True,
)
def make_precision_scorer(k=50, *, direction=None):
    """Make a precision@K scorer for ``GridSearchCV`` and ``cross_validate``.

    Parameters
    ----------
    k : int or None, default=50
        Number of retrieved items, passed to the retriever's ``score`` as
        ``n_neighbors``.

    direction : str or None, default=None
        Retrieval direction such as ``"img->txt"``. None uses the harmonic mean
        of both directions when the database has two modalities.

    Returns
    -------
    scorer : callable
        Like :func:`make_map_scorer`, with ``metric="precision"``.

    Examples
    --------
    >>> from skhash.metrics import make_precision_scorer
    >>> make_precision_scorer(k=10)
    make_precision_scorer(k=10, direction=None)
    """
    _reject_bool(k, "k", 50)
    return _RetrievalScorer(
        metric="precision", k=k, direction=direction, variant="djsrh"
    )


_SCORERS = {
    **{f"map@{k}": make_map_scorer(k) for k in (10, 20, 50, 100, 500, 1000)},
    "map": make_map_scorer(None, variant="full"),
    **{f"precision@{k}": make_precision_scorer(k) for k in (10, 50, 100)},
}


def get_scorer_names():
    """Names of the predefined retrieval scorers.

    Returns
    -------
    names : list of str
        Sorted names accepted by :func:`get_scorer`.

    Examples
    --------
    >>> from skhash.metrics import get_scorer_names
    >>> get_scorer_names()[:3]
    ['map', 'map@10', 'map@100']
    """
    return sorted(_SCORERS)


@validate_params(
    {"scoring": [str, callable]},
    prefer_skip_nested_validation=True,
)
def get_scorer(scoring):
    """Return a retrieval scorer by name.

    Parameters
    ----------
    scoring : str or callable
        A name from :func:`get_scorer_names`: ``"map@K"`` (MAP@K, DJSRH
        variant, K in 10, 20, 50, 100, 500, 1000), ``"map"`` (full-ranking
        MAP) or ``"precision@K"`` (K in 10, 50, 100). A callable is returned
        unchanged.

    Returns
    -------
    scorer : callable
        A fresh copy of the named scorer, called as ``scorer(estimator, X, y)``.

    Examples
    --------
    >>> from skhash.metrics import get_scorer
    >>> get_scorer("map@50")
    make_map_scorer(k=50, direction=None)
    >>> get_scorer("map")
    make_map_scorer(k=None, direction=None, variant='full')
    """
    if callable(scoring):
        return scoring
    try:
        return copy.deepcopy(_SCORERS[scoring])
    except KeyError:
        raise ValueError(
            f"{scoring!r} is not a valid scoring value. Valid names: "
            f"{', '.join(get_scorer_names())}. Use "
            "skhash.metrics.get_scorer_names() to get valid options, or "
            "skhash.metrics.make_map_scorer(k=...) for another cut-off."
        ) from None
