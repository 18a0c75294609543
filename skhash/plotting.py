"""Retrieval curves in scikit-learn's Display style.

Three display objects, each with ``from_estimator`` (a fitted retriever, or a
pipeline ending in one, plus labelled queries) and a ``plot`` method that
draws on a matplotlib ``Axes``:

- :class:`PrecisionRecallDisplay`: precision against recall of Hamming-ball
  retrieval as the radius grows (:func:`~skhash.metrics.precision_recall_hamming`);
- :class:`PrecisionAtTopRDisplay`: precision of the top ``R`` retrieved items
  against ``R`` (:func:`~skhash.metrics.precision_at_top_r`);
- :class:`AlphaSweepDisplay`: MAP@K and queries per second against the
  shortlist size ``alpha`` of the two-stage search (the HQ paper's Figure 4).

matplotlib is an optional dependency (``pip install skhash[plot]``), imported
only when something is drawn.
"""

# Authors: The skhash developers
# SPDX-License-Identifier: BSD-3-Clause

from __future__ import annotations

import copy

import numpy as np

from skhash._plotting_alpha import AlphaSweepDisplay
from skhash._plotting_common import (
    _check_matplotlib,
    _default_name,
    _final_retriever,
    _get_ax,
)
from skhash.metrics import (
    precision_at_top_r,
    precision_recall_hamming,
    relevance,
)

__all__ = ["AlphaSweepDisplay", "PrecisionAtTopRDisplay", "PrecisionRecallDisplay"]


def _database_modality(retriever, direction):
    valid = [f"{a}->{b}" for a in retriever.modalities_ for b in retriever.modalities_]
    if direction is None:
        if len(retriever.modalities_) != 1:
            raise ValueError(
                f"The retriever indexes the modalities {retriever.modalities_}; "
                f"pass direction=, one of {valid}."
            )
        return retriever.modalities_[0]
    if not isinstance(direction, str) or direction.count("->") != 1:
        raise ValueError(
            "direction must look like 'img->txt' (query modality -> database "
            f"modality); got {direction!r}."
        )
    src, dst = (part.strip() for part in direction.split("->"))
    if f"{src}->{dst}" not in valid:
        raise ValueError(
            f"direction={direction!r} names a modality the retriever does not "
            f"index ({retriever.modalities_}); pass one of {valid}."
        )
    return dst


class PrecisionRecallDisplay:
    """Precision–recall curve of Hamming-ball retrieval.

    At Hamming radius ``r`` every database item within distance ``<= r`` of a
    query is retrieved; the curve joins the mean (precision, recall) of each
    radius ``0, 1, ..., n_bits``, the protocol of the DQN paper's
    precision–recall figures (its "hash lookup"). Build it with
    :meth:`from_estimator` or :meth:`from_predictions`; calling the
    constructor only stores the values.

    Read more in the :ref:`User Guide <plotting>`.

    Parameters
    ----------
    precision : ndarray of shape (n_bits + 1,)
        Mean precision at each radius (NaN where no query retrieves
        anything).
    recall : ndarray of shape (n_bits + 1,)
        Mean recall at each radius.
    radii : ndarray of shape (n_bits + 1,)
        The radii ``0, ..., n_bits``.
    name : str, default=None
        Name of the curve, used as its legend label.

    Attributes
    ----------
    line_ : matplotlib Line2D
        The precision–recall curve.
    ax_ : matplotlib Axes
        Axes with the curve.
    figure_ : matplotlib Figure
        Figure holding the axes.

    See Also
    --------
    skhash.metrics.precision_recall_hamming : The values plotted.
    PrecisionAtTopRDisplay : Precision of the top R retrieved items.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skhash.plotting import PrecisionRecallDisplay
    >>> relevant = [[1, 0, 1, 0], [0, 1, 1, 0]]
    >>> distances = [[0, 1, 2, 4], [1, 1, 3, 0]]
    >>> display = PrecisionRecallDisplay.from_predictions(
    ...     relevant, distances, n_bits=4, name="toy codes")
    >>> display.recall
    array([0.25, 0.5 , 0.75, 1.  , 1.  ])
    >>> display.line_.get_label()
    'toy codes'
    """

    def __init__(self, precision, recall, radii, *, name=None):
        self.precision = precision
        self.recall = recall
        self.radii = radii
        self.name = name

    def plot(self, ax=None, *, name=None, **kwargs):
        """Draw the curve.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; None creates a new figure and axes.
        name : str, default=None
            Legend label; None uses the ``name`` given at construction.
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.plot`.

        Returns
        -------
        display : PrecisionRecallDisplay
            The display, with ``line_``, ``ax_`` and ``figure_`` set.

        Examples
        --------
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import numpy as np
        >>> from skhash.plotting import PrecisionRecallDisplay
        >>> display = PrecisionRecallDisplay(
        ...     precision=np.array([1.0, 0.6, 0.5]),
        ...     recall=np.array([0.2, 0.6, 1.0]), radii=np.arange(3))
        >>> display.plot(name="codes", color="k").ax_.get_xlabel()
        'Recall'
        """
        plt = _check_matplotlib("PrecisionRecallDisplay.plot")
        ax = _get_ax(ax, plt)
        name = self.name if name is None else name
        line_kwargs = {"drawstyle": "default", "marker": "."}
        if name is not None:
            line_kwargs["label"] = name
        line_kwargs.update(kwargs)
        (self.line_,) = ax.plot(self.recall, self.precision, **line_kwargs)
        ax.set(
            xlabel="Recall", ylabel="Precision", xlim=(-0.01, 1.01), ylim=(-0.01, 1.01)
        )
        if "label" in line_kwargs:
            ax.legend(loc="lower left")
        self.ax_ = ax
        self.figure_ = ax.figure
        return self

    @classmethod
    def from_predictions(
        cls, y_true, hamming_distances, *, n_bits, name=None, ax=None, **kwargs
    ):
        """Plot the curve from relevance and Hamming distances.

        Parameters
        ----------
        y_true : array-like of shape (n_queries, n_database)
            Binary relevance of each database item to each query, e.g. from
            :func:`skhash.metrics.relevance`.
        hamming_distances : array-like of shape (n_queries, n_database)
            Hamming distances, whole numbers in ``[0, n_bits]``.
        n_bits : int
            Code length; the radii run over ``0, ..., n_bits``.
        name : str, default=None
            Legend label.
        ax : matplotlib Axes, default=None
            Axes to draw on; None creates a new figure and axes.
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.plot`.

        Returns
        -------
        display : PrecisionRecallDisplay
            The plotted display.

        Examples
        --------
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> from skhash.plotting import PrecisionRecallDisplay
        >>> display = PrecisionRecallDisplay.from_predictions(
        ...     [[1, 0, 1]], [[0, 1, 2]], n_bits=2)
        >>> display.precision
        array([1.        , 0.5       , 0.6666...])
        """
        _check_matplotlib("PrecisionRecallDisplay.from_predictions")
        precision, recall, radii = precision_recall_hamming(
            y_true, hamming_distances, n_bits=n_bits
        )
        display = cls(precision, recall, radii, name=name)
        return display.plot(ax=ax, **kwargs)

    @classmethod
    def from_estimator(
        cls, estimator, X, y, *, direction=None, name=None, ax=None, **kwargs
    ):
        """Plot the curve of a fitted retriever's binary codes.

        The queries ``X`` are compared with every indexed database item by
        Hamming distance (the search's first stage, the whole database).

        Parameters
        ----------
        estimator : TwoStageRetriever or Pipeline
            A fitted :class:`~skhash.TwoStageRetriever` indexing binary codes
            and database labels, or a fitted pipeline ending in one (e.g.
            ``Pipeline([("hq", HQHasher()), ("search", TwoStageRetriever())])``).
        X : CodeSet, MultiModal or array-like
            The queries: codes for a retriever, raw features for a pipeline.
        y : array-like of shape (n_queries,) or (n_queries, n_labels)
            Labels of the queries.
        direction : str, default=None
            Retrieval direction such as ``"img->txt"``; required when the
            database has several modalities.
        name : str, default=None
            Legend label; None uses the pipeline's first step's class name.
        ax : matplotlib Axes, default=None
            Axes to draw on; None creates a new figure and axes.
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.plot`.

        Returns
        -------
        display : PrecisionRecallDisplay
            The plotted display.

        Examples
        --------
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import numpy as np
        >>> from skhash import CodeSet, TwoStageRetriever, pack_bits
        >>> from skhash.plotting import PrecisionRecallDisplay
        >>> rng = np.random.RandomState(42)
        >>> y = rng.randint(3, size=100)
        >>> emb = rng.randn(3, 16)[y] + rng.randn(100, 16)
        >>> codes = CodeSet(bits=pack_bits(emb), n_bits=16)
        >>> search = TwoStageRetriever(rerank="none").fit(codes[:80], y[:80])
        >>> display = PrecisionRecallDisplay.from_estimator(search, codes[80:], y[80:])
        >>> display.radii.shape, float(display.recall[-1])
        ((17,), 1.0)
        """
        _check_matplotlib("PrecisionRecallDisplay.from_estimator")
        retriever, Xt = _final_retriever(estimator, X)
        dst = _database_modality(retriever, direction)
        plan = retriever.search_plan_.get(dst, "")
        if not plan.startswith("hamming") or retriever.n_bits_ is None:
            raise ValueError(
                f"Precision-recall over Hamming radius needs binary codes, but "
                f"the database modality {dst!r} is searched as {plan!r} (no "
                "bits). Use a hashing learner (HQHasher, DJSRHHasher), or "
                "PrecisionAtTopRDisplay for quantization codes."
            )
        distances, indices = _hamming_ranking(retriever, Xt, direction)
        hamming = np.empty_like(distances)
        np.put_along_axis(hamming, indices, distances, axis=1)
        y_true = relevance(y, retriever.y_)
        if name is None:
            name = _default_name(estimator)
        return cls.from_predictions(
            y_true, hamming, n_bits=retriever.n_bits_, name=name, ax=ax, **kwargs
        )


def _hamming_ranking(retriever, X, direction):
    """Hamming distances to the whole database, through the public search.

    With ``alpha=0`` the two-stage search is a pure Hamming ranking; asking
    for all ``N`` neighbours gives every item's distance.
    """
    hamming_only = copy.copy(retriever)
    hamming_only.alpha = 0
    return hamming_only.kneighbors(
        X, retriever.n_samples_fit_, direction=direction, return_distance=True
    )


def _default_r_values(n_database):
    top = min(int(n_database), 1000)
    return np.unique(np.linspace(1, top, num=min(top, 20)).round().astype(np.int64))


class PrecisionAtTopRDisplay:
    """Precision of the top ``R`` retrieved items, against ``R``.

    The precision@top-R curve of the DQN paper: for each number ``R`` of
    returned items, the mean over queries of the fraction of relevant items
    among the first ``R``. Build it with :meth:`from_estimator` (the
    retriever's full two-stage ranking) or :meth:`from_predictions` (scores);
    the constructor only stores the values.

    Read more in the :ref:`User Guide <plotting>`.

    Parameters
    ----------
    r_values : ndarray of shape (n_r_values,)
        Numbers ``R`` of retrieved items.
    precision : ndarray of shape (n_r_values,)
        Mean precision of the top ``R``, for each ``R``.
    name : str, default=None
        Name of the curve, used as its legend label.

    Attributes
    ----------
    line_ : matplotlib Line2D
        The curve.
    ax_ : matplotlib Axes
        Axes with the curve.
    figure_ : matplotlib Figure
        Figure holding the axes.

    See Also
    --------
    skhash.metrics.precision_at_top_r : The values plotted.
    PrecisionRecallDisplay : Precision against recall over Hamming radius.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skhash.plotting import PrecisionAtTopRDisplay
    >>> display = PrecisionAtTopRDisplay.from_predictions(
    ...     [[1, 0, 1, 0]], [[4, 3, 2, 1]], r_values=[1, 2, 3], name="toy")
    >>> display.precision
    array([1.        , 0.5       , 0.6666...])
    """

    def __init__(self, r_values, precision, *, name=None):
        self.r_values = r_values
        self.precision = precision
        self.name = name

    def plot(self, ax=None, *, name=None, **kwargs):
        """Draw the curve.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; None creates a new figure and axes.
        name : str, default=None
            Legend label; None uses the ``name`` given at construction.
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.plot`.

        Returns
        -------
        display : PrecisionAtTopRDisplay
            The display, with ``line_``, ``ax_`` and ``figure_`` set.

        Examples
        --------
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import numpy as np
        >>> from skhash.plotting import PrecisionAtTopRDisplay
        >>> display = PrecisionAtTopRDisplay(np.array([10, 50]), np.array([0.9, 0.7]))
        >>> display.plot().ax_.get_ylabel()
        'Precision'
        """
        plt = _check_matplotlib("PrecisionAtTopRDisplay.plot")
        ax = _get_ax(ax, plt)
        name = self.name if name is None else name
        line_kwargs = {"marker": "."}
        if name is not None:
            line_kwargs["label"] = name
        line_kwargs.update(kwargs)
        (self.line_,) = ax.plot(self.r_values, self.precision, **line_kwargs)
        ax.set(
            xlabel="Number of top returned items R",
            ylabel="Precision",
            ylim=(-0.01, 1.01),
        )
        if "label" in line_kwargs:
            ax.legend(loc="lower left")
        self.ax_ = ax
        self.figure_ = ax.figure
        return self

    @classmethod
    def from_predictions(
        cls, y_true, y_score, *, r_values, name=None, ax=None, **kwargs
    ):
        """Plot the curve from relevance and scores.

        Parameters
        ----------
        y_true : array-like of shape (n_queries, n_database)
            Binary relevance of each database item to each query.
        y_score : array-like of shape (n_queries, n_database)
            Similarity scores; higher ranks first (ties by database index).
        r_values : int or array-like of int
            Numbers ``R`` of retrieved items.
        name : str, default=None
            Legend label.
        ax : matplotlib Axes, default=None
            Axes to draw on; None creates a new figure and axes.
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.plot`.

        Returns
        -------
        display : PrecisionAtTopRDisplay
            The plotted display.

        Examples
        --------
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> from skhash.plotting import PrecisionAtTopRDisplay
        >>> display = PrecisionAtTopRDisplay.from_predictions(
        ...     [[0, 1, 1]], [[0.1, 0.9, 0.5]], r_values=[1, 3])
        >>> display.precision
        array([1.        , 0.6666...])
        """
        _check_matplotlib("PrecisionAtTopRDisplay.from_predictions")
        r = np.atleast_1d(np.asarray(r_values))
        precision = precision_at_top_r(y_true, y_score, r_values=r)
        display = cls(r, precision, name=name)
        return display.plot(ax=ax, **kwargs)

    @classmethod
    def from_estimator(
        cls,
        estimator,
        X,
        y,
        *,
        r_values=None,
        direction=None,
        name=None,
        ax=None,
        **kwargs,
    ):
        """Plot the curve of a fitted retriever's ranking.

        The ranking is the retriever's own search (Hamming shortlist, then
        re-ranking, with its ``alpha`` and ``rerank``), asked for the top
        ``max(r_values)`` items of each query.

        Parameters
        ----------
        estimator : TwoStageRetriever or Pipeline
            A fitted :class:`~skhash.TwoStageRetriever` with database labels,
            or a fitted pipeline ending in one.
        X : CodeSet, MultiModal or array-like
            The queries: codes for a retriever, raw features for a pipeline.
        y : array-like of shape (n_queries,) or (n_queries, n_labels)
            Labels of the queries.
        r_values : array-like of int, default=None
            Numbers ``R`` of retrieved items, clipped to the database size.
            None takes 20 values from 1 to ``min(N, 1000)``.
        direction : str, default=None
            Retrieval direction such as ``"img->txt"``; required when the
            database has several modalities.
        name : str, default=None
            Legend label; None uses the pipeline's first step's class name.
        ax : matplotlib Axes, default=None
            Axes to draw on; None creates a new figure and axes.
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.plot`.

        Returns
        -------
        display : PrecisionAtTopRDisplay
            The plotted display.

        Examples
        --------
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import numpy as np
        >>> from skhash import TwoStageRetriever
        >>> from skhash.plotting import PrecisionAtTopRDisplay
        >>> rng = np.random.RandomState(42)
        >>> y = rng.randint(3, size=100)
        >>> emb = rng.randn(3, 8)[y] + rng.randn(100, 8)
        >>> search = TwoStageRetriever().fit(emb[:80], y[:80])
        >>> display = PrecisionAtTopRDisplay.from_estimator(
        ...     search, emb[80:], y[80:], r_values=[1, 10, 40])
        >>> display.r_values, display.precision.shape
        (array([ 1, 10, 40]), (3,))
        """
        _check_matplotlib("PrecisionAtTopRDisplay.from_estimator")
        retriever, Xt = _final_retriever(estimator, X)
        n_database = retriever.n_samples_fit_
        if r_values is None:
            r_values = _default_r_values(n_database)
        r = np.atleast_1d(np.asarray(r_values))
        if r.ndim != 1 or r.size == 0 or r.dtype.kind not in "iu" or (r < 1).any():
            raise ValueError(
                "r_values must be a non-empty 1-D sequence of integers >= 1; got "
                f"{r_values!r}."
            )
        r = np.minimum(r, n_database)
        k = int(r.max())
        indices = retriever.kneighbors(
            Xt, k, direction=direction, return_distance=False
        )
        y_score = _ranking_scores(indices, n_database)
        y_true = relevance(y, retriever.y_)
        if name is None:
            name = _default_name(estimator)
        return cls.from_predictions(
            y_true, y_score, r_values=r, name=name, ax=ax, **kwargs
        )


def _ranking_scores(indices, n_database):
    """Scores that rank ``indices`` first, in order (k, k-1, ..., 1; others 0)."""
    n_queries, k = indices.shape
    scores = np.zeros((n_queries, n_database), dtype=np.float64)
    np.put_along_axis(
        scores, indices, np.arange(k, 0, -1, dtype=np.float64)[None], axis=1
    )
    return scores
