"""The alpha sweep of :mod:`skhash.plotting`: :class:`AlphaSweepDisplay`.

The figure of the two-stage search's trade-off (the HQ paper's Figure 4):
MAP@K and queries per second of a fitted retriever as its shortlist size
``alpha`` grows, each point one search of the queries on a copy of the
retriever (timed, the fastest of a few repeats). Public as
:class:`skhash.plotting.AlphaSweepDisplay`.
"""

# Authors: The skhash developers
# SPDX-License-Identifier: BSD-3-Clause

from __future__ import annotations

import copy
import time
from numbers import Integral, Real

import numpy as np

from skhash._plotting_common import (
    _check_matplotlib,
    _default_name,
    _final_retriever,
    _get_ax,
)
from skhash.metrics import (
    average_precision_from_ranking,
    harmonic_mean,
    n_relevant,
    ranked_relevance,
)

__all__ = ["AlphaSweepDisplay"]


class AlphaSweepDisplay:
    """MAP@K and search speed against the shortlist size ``alpha``.

    The two-stage search keeps ``L = alpha * N`` Hamming candidates (or
    ``L = alpha`` for an int) and re-ranks them by the quantizer distance:
    ``alpha = 0`` is pure Hamming ranking, ``alpha = 1.0`` re-ranks the whole
    database. This display draws MAP@K (left axis) and queries per second
    (right axis, dashed) for each ``alpha``, as in the HQ paper's Figure 4.
    Build it with :meth:`from_estimator`; the constructor only stores the
    values.

    Read more in the :ref:`User Guide <plotting>`.

    Parameters
    ----------
    alphas : ndarray of shape (n_alphas,)
        The ``alpha`` values, as fractions of the database (an int ``alpha``,
        a shortlist size, is plotted as ``alpha / N``).
    scores : ndarray of shape (n_alphas,)
        MAP@K at each ``alpha`` (harmonic mean of both directions for a
        two-modality database, as the retriever's ``score``).
    queries_per_second : ndarray of shape (n_alphas,)
        Search speed at each ``alpha``: queries answered per second by
        ``kneighbors`` (both directions counted).
    n_neighbors : int, default=None
        ``K`` of MAP@K, for the axis label.
    name : str, default=None
        Name of the curves, used in the legend.

    Attributes
    ----------
    line_ : matplotlib Line2D
        The MAP@K curve.
    speed_line_ : matplotlib Line2D
        The queries-per-second curve.
    ax_ : matplotlib Axes
        Axes of the MAP@K curve.
    speed_ax_ : matplotlib Axes
        Twin axes (shared x, right y axis) of the speed curve.
    figure_ : matplotlib Figure
        Figure holding the axes.

    See Also
    --------
    skhash.TwoStageRetriever : The search whose ``alpha`` is swept.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from skhash.plotting import AlphaSweepDisplay
    >>> display = AlphaSweepDisplay(
    ...     alphas=np.array([0.0, 0.1, 1.0]), scores=np.array([0.5, 0.6, 0.6]),
    ...     queries_per_second=np.array([9000.0, 3000.0, 500.0]), n_neighbors=50)
    >>> display.plot().ax_.get_ylabel()
    'MAP@50'
    """

    def __init__(
        self, alphas, scores, queries_per_second, *, n_neighbors=None, name=None
    ):
        self.alphas = alphas
        self.scores = scores
        self.queries_per_second = queries_per_second
        self.n_neighbors = n_neighbors
        self.name = name

    def plot(self, ax=None, *, name=None, **kwargs):
        """Draw MAP@K on ``ax`` and queries per second on a twin axis.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes for the MAP@K curve; the speed curve goes on
            ``ax.twinx()``. None creates a new figure and axes.
        name : str, default=None
            Legend prefix; None uses the ``name`` given at construction.
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.plot` for both curves.

        Returns
        -------
        display : AlphaSweepDisplay
            The display, with ``line_``, ``speed_line_``, ``ax_``,
            ``speed_ax_`` and ``figure_`` set.

        Examples
        --------
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> from skhash.plotting import AlphaSweepDisplay
        >>> display = AlphaSweepDisplay([0, 0.5], [0.4, 0.5], [1e4, 2e3]).plot()
        >>> display.speed_ax_.get_ylabel()
        'Queries per second'
        """
        plt = _check_matplotlib("AlphaSweepDisplay.plot")
        ax = _get_ax(ax, plt)
        name = self.name if name is None else name
        k = "K" if self.n_neighbors is None else self.n_neighbors
        prefix = "" if name is None else f"{name}: "
        map_kwargs = {"marker": "o", "color": "C0", **kwargs}
        speed_kwargs = {"marker": "s", "linestyle": "--", "color": "C1", **kwargs}
        (self.line_,) = ax.plot(
            self.alphas, self.scores, label=f"{prefix}MAP@{k}", **map_kwargs
        )
        speed_ax = ax.twinx()
        (self.speed_line_,) = speed_ax.plot(
            self.alphas,
            self.queries_per_second,
            label=f"{prefix}queries/s",
            **speed_kwargs,
        )
        ax.set(xlabel="alpha (shortlist / database size)", ylabel=f"MAP@{k}")
        speed_ax.set_ylabel("Queries per second")
        speed_ax.set_ylim(bottom=0)
        ax.legend(handles=[self.line_, self.speed_line_], loc="center right")
        self.ax_ = ax
        self.speed_ax_ = speed_ax
        self.figure_ = ax.figure
        return self

    @classmethod
    def from_estimator(
        cls,
        estimator,
        X,
        y,
        *,
        alphas=None,
        direction=None,
        n_neighbors=None,
        variant="djsrh",
        n_repeats=1,
        name=None,
        ax=None,
        **kwargs,
    ):
        """Sweep ``alpha`` of a fitted retriever and plot MAP@K and speed.

        For each ``alpha`` the retriever (a shallow copy, the index shared)
        answers the queries with ``kneighbors``; the fastest of
        ``n_repeats`` timed calls gives the speed, and the ranking gives
        MAP@K exactly as the retriever's ``score`` computes it.

        Parameters
        ----------
        estimator : TwoStageRetriever or Pipeline
            A fitted :class:`~skhash.TwoStageRetriever` with database labels,
            or a fitted pipeline ending in one. The learner is not refitted:
            ``alpha`` is read at query time.
        X : CodeSet, MultiModal or array-like
            The queries: codes for a retriever, raw features for a pipeline.
        y : array-like of shape (n_queries,) or (n_queries, n_labels)
            Labels of the queries.
        alphas : array-like, default=None
            The ``alpha`` values (ints are shortlist sizes, floats in [0, 1]
            fractions of the database). None sweeps
            ``0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0``, the HQ
            paper's range.
        direction : str, default=None
            Retrieval direction. None with a two-modality database sweeps
            both cross directions and plots the harmonic mean of their MAP,
            as the retriever's ``score`` does.
        n_neighbors : int, default=None
            ``K`` of MAP@K; None uses the retriever's ``n_neighbors``.
        variant : {"djsrh", "deephash", "full"}, default="djsrh"
            Normalisation of AP@K, see
            :func:`skhash.metrics.average_precision_from_ranking`.
        n_repeats : int, default=1
            Timed repetitions per ``alpha`` (the fastest is kept), after one
            untimed warm-up call.
        name : str, default=None
            Legend prefix; None uses the pipeline's first step's class name.
        ax : matplotlib Axes, default=None
            Axes for the MAP@K curve. None creates a new figure and axes.
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.plot`.

        Returns
        -------
        display : AlphaSweepDisplay
            The plotted display.

        Examples
        --------
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import numpy as np
        >>> from skhash import CodeSet, TwoStageRetriever, pack_bits
        >>> from skhash.quantization import encode, kmeans_codebooks
        >>> from skhash.plotting import AlphaSweepDisplay
        >>> rng = np.random.RandomState(42)
        >>> y = rng.randint(3, size=120)
        >>> emb = (rng.randn(3, 16)[y] + rng.randn(120, 16)).astype(np.float32)
        >>> C = kmeans_codebooks(emb, 2, 8, kind="additive", random_state=0)
        >>> codes = CodeSet(embedding=emb, bits=pack_bits(emb), n_bits=16,
        ...                 codes=encode(emb, C, kind="additive"), codebooks=C,
        ...                 codebook_kind="additive")
        >>> search = TwoStageRetriever(n_neighbors=10).fit(codes[:100], y[:100])
        >>> display = AlphaSweepDisplay.from_estimator(
        ...     search, codes[100:], y[100:], alphas=[0, 0.5, 1.0])
        >>> bool(display.scores[0] == search.set_params(alpha=0).score(
        ...     codes[100:], y[100:]))
        True
        """
        _check_matplotlib("AlphaSweepDisplay.from_estimator")
        retriever, Xt = _final_retriever(estimator, X)
        if alphas is None:
            alphas = [0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0]
        alphas = list(np.atleast_1d(np.asarray(alphas, dtype=object)))
        if not alphas:
            raise ValueError("alphas must hold at least one value.")
        if not isinstance(n_repeats, Integral) or n_repeats < 1:
            raise ValueError(f"n_repeats must be an int >= 1; got {n_repeats!r}.")
        if variant not in ("djsrh", "deephash", "full"):
            raise ValueError(
                f"variant={variant!r} is not one of 'djsrh', 'deephash', 'full': "
                "the sweep ranks the top n_neighbors of each query ('dcmh' "
                "needs every relevant item's rank, i.e. the whole ranking; "
                "score it with the retriever's score(..., variant='dcmh', "
                "n_neighbors='all'))."
            )
        if n_neighbors is not None and (
            isinstance(n_neighbors, (bool, np.bool_))
            or not isinstance(n_neighbors, Integral)
            or n_neighbors < 1
        ):
            raise ValueError(
                f"n_neighbors={n_neighbors!r} must be a positive int (bool is not "
                "accepted), or None for the retriever's n_neighbors."
            )
        k = retriever.n_neighbors if n_neighbors is None else n_neighbors
        k = min(int(k), retriever.n_samples_fit_)
        mods = retriever.modalities_
        if direction is None and len(mods) == 2:
            directions = [f"{mods[0]}->{mods[1]}", f"{mods[1]}->{mods[0]}"]
        else:
            directions = [direction]
        y = np.asarray(y)
        n_queries = getattr(Xt, "shape", (len(Xt),))[0] if Xt is not None else None
        if n_queries is not None and y.shape[:1] != (n_queries,):
            raise ValueError(
                f"y has {y.shape[0] if y.ndim else 0} rows but X holds "
                f"{n_queries} queries; pass one label row per query."
            )
        n_rel = n_relevant(y, retriever.y_) if variant == "full" else None
        scores, speeds = [], []
        for alpha in alphas:
            if isinstance(alpha, (bool, np.bool_)) or not isinstance(
                alpha, (Integral, Real)
            ):
                raise ValueError(f"alphas must be numbers; got {alpha!r}.")
            search = copy.copy(retriever)
            search.set_params(alpha=alpha.item() if hasattr(alpha, "item") else alpha)
            per_direction, elapsed, n_queries = [], 0.0, 0
            for d in directions:
                idx, seconds = _timed_kneighbors(search, Xt, k, d, n_repeats)
                elapsed += seconds
                n_queries += idx.shape[0]
                rel = ranked_relevance(y, retriever.y_, idx)
                ap = average_precision_from_ranking(rel, n_rel, variant=variant)
                ap = ap[~np.isnan(ap)]
                per_direction.append(float(ap.mean()) if ap.size else 0.0)
            if len(per_direction) == 2:
                scores.append(harmonic_mean(*per_direction))
            else:
                scores.append(per_direction[0])
            speeds.append(n_queries / max(elapsed, 1e-12))
        if name is None:
            name = _default_name(estimator)
        n_db = retriever.n_samples_fit_
        alpha_values = np.array(
            [
                min(a, n_db) / n_db if isinstance(a, Integral) else float(a)
                for a in alphas
            ]
        )
        display = cls(
            alpha_values,
            np.array(scores),
            np.array(speeds),
            n_neighbors=k,
            name=name,
        )
        return display.plot(ax=ax, **kwargs)


def _timed_kneighbors(search, X, k, direction, n_repeats):
    """Indices of one ``kneighbors`` call and the fastest of ``n_repeats``."""
    idx = search.kneighbors(X, k, direction=direction, return_distance=False)
    best = np.inf
    for _ in range(n_repeats):
        start = time.perf_counter()
        search.kneighbors(X, k, direction=direction, return_distance=False)
        best = min(best, time.perf_counter() - start)
    return idx, best
