"""Ranking metrics for retrieval: MAP@K, precision@K, PR over radius.

All functions are pure numpy: they take labels, relevance matrices or scores and
return arrays or floats. Relevance (who is relevant to whom, the label checks)
is in :mod:`skhash.metrics._relevance`; the functions are re-exported here.

Large inputs are processed in chunks of queries so that no temporary array grows
much beyond ``_CHUNK_ELEMENTS`` elements.
"""

# Authors: The skhash developers
# SPDX-License-Identifier: BSD-3-Clause

from numbers import Integral, Real

import numpy as np
from sklearn.utils import check_array
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from skhash.metrics._chunking import _chunks
from skhash.metrics._relevance import (
    _as_label_array,  # noqa: F401 (imported from here by the retrievers)
    _check_binary,
    _check_label_compat,  # noqa: F401 (imported from here by the retrievers)
    _check_relevance_and_scores,
    _reject_bool,
    n_relevant,
    ranked_relevance,
    relevance,
)

__all__ = [
    "average_precision_from_ranking",
    "harmonic_mean",
    "mean_average_precision",
    "n_relevant",
    "precision_at_k",
    "precision_at_top_r",
    "precision_recall_hamming",
    "ranked_relevance",
    "relevance",
]

_VARIANTS = ("djsrh", "deephash", "full", "dcmh")
_TIES = ("index", "average")


# ---------------------------------------------------------------------------
# Average precision
# ---------------------------------------------------------------------------


def _ap_numerator(rel):
    """Sum over ranks r of P(r) * rel(r), and the number of hits, per row."""
    hits = np.cumsum(rel, axis=1)
    ranks = np.arange(1, rel.shape[1] + 1)
    return (rel * hits / ranks).sum(axis=1), hits[:, -1]


def _ap_from_parts(numerator, found, n_rel, variant):
    """Divide the AP numerator by the variant's normaliser."""
    if variant == "full":
        denominator, empty_value = n_rel, 0.0
    else:
        denominator = found
        empty_value = np.nan if variant == "deephash" else 0.0
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.full(numerator.shape, empty_value, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _dcmh_ap(rel, n_rel, k):
    """DCMH's ``calc_map_k``: mean of ``j / pos_j`` over the first
    ``T = min(k, n_rel)`` relevant items of each row, wherever they rank
    (``pos_j`` the 1-based rank of the j-th relevant item); 0 when T = 0."""
    rel = rel.astype(bool)
    n_rel = np.asarray(n_rel, dtype=np.int64)
    T = n_rel if k is None else np.minimum(n_rel, k)
    hits = np.cumsum(rel, axis=1)
    ranks = np.arange(1, rel.shape[1] + 1)
    used = rel & (hits <= T[:, None])
    total = np.where(used, hits / ranks, 0.0).sum(axis=1)
    out = np.zeros(rel.shape[0], dtype=np.float64)
    np.divide(total, T, out=out, where=T > 0)
    return out


def _mean_over_queries(ap, variant):
    """Mean AP; ``deephash`` ignores NaN queries and gives 0.0 when all are."""
    if variant == "deephash":
        kept = ap[~np.isnan(ap)]
        return float(kept.mean()) if kept.size else 0.0
    return float(ap.mean())


@validate_params(
    {
        "ranked_relevance": ["array-like"],
        "n_relevant": ["array-like", None],
        "variant": [StrOptions(set(_VARIANTS))],
        "k": [Interval(Integral, 1, None, closed="left"), None],
    },
    prefer_skip_nested_validation=True,
)
def average_precision_from_ranking(
    ranked_relevance, n_relevant=None, *, variant="djsrh", k=None
):
    """Per-query average precision of a ranking cut at its length K.

    Read more about the variants in the Notes below.

    Parameters
    ----------
    ranked_relevance : array-like of shape (n_queries, k)
        Relevance (bool or 0/1) of the top-``k`` retrieved items of each query,
        best first, e.g. from :func:`ranked_relevance`.

    n_relevant : array-like of shape (n_queries,), default=None
        Number of relevant items of each query in the whole database, e.g. from
        :func:`n_relevant`. Required by ``variant="full"`` and
        ``variant="dcmh"``; the other variants only check that it is not
        smaller than the number of hits found.

    variant : {"djsrh", "deephash", "full", "dcmh"}, default="djsrh"
        How AP@K is normalised:

        - ``"djsrh"``: ``AP@K = (1 / R_K) * sum_{r <= K} P(r) rel(r)`` where
          ``R_K`` is the number of relevant items found in the top K and ``P(r)``
          the precision after ``r`` items. A query with no hit scores 0.
        - ``"deephash"``: the same formula, but a query with no hit scores NaN,
          so that :func:`mean_average_precision` leaves it out of the mean.
        - ``"full"``: the same sum divided by ``n_relevant``, the number of
          relevant items in the whole database (classic AP when K covers the
          whole database). A query with no relevant item scores 0.
        - ``"dcmh"``: ``AP = (1 / T) * sum_{j <= T} j / pos_j`` over the first
          ``T = min(k, n_relevant)`` relevant items *wherever they rank*
          (``pos_j`` the rank of the j-th relevant item), so the ranking must
          reach the T-th relevant item: pass the whole ranking. ``k=1`` gives
          the reciprocal rank of the first relevant item. A query with no
          relevant item scores 0.

    k : int, default=None
        The ``k`` of ``variant="dcmh"`` (None: all relevant items). The other
        variants cut at the ranking's length and take no ``k``.

    Returns
    -------
    average_precision : ndarray of shape (n_queries,), dtype=float64
        AP@K of each query, in [0, 1] (NaN for zero-hit queries under
        ``"deephash"``).

    See Also
    --------
    mean_average_precision : MAP@K from scores, with tie handling.

    Notes
    -----
    The cross-modal hashing literature reports "MAP@K" under several
    normalisations, which give different numbers for the same ranking:

    - ``"djsrh"`` is the form of the evaluation code released with DJSRH [1]_,
      whose MAP@50 the HQ paper [2]_ follows; it is skhash's default.
    - ``"deephash"`` is the form of the DeepHash evaluation code accompanying
      DQN [3]_, which skips queries without any hit in the top K.
    - ``"full"`` is the textbook (TREC) average precision; with K equal to the
      database size it is the full-ranking MAP used by most supervised
      cross-modal hashing papers.
    - ``"dcmh"`` is the ``calc_map_k`` of the DCMH code [4]_ and its many
      descendants: its "MAP@k" is not cut at rank k but averages the
      precision at the first ``min(k, #relevant)`` relevant items wherever
      they rank; with k covering every relevant item it equals ``"full"``
      over the whole ranking, and ``k=1`` is the mean reciprocal rank.

    The peers' code returns NaN where skhash returns a number: DeepHash's
    form divides by zero for a query without any hit in the top K, and skips
    it; ``variant="deephash"`` gives it NaN per query here, but
    :func:`mean_average_precision` (and a mean over queries where every
    query is NaN) returns 0.0, not NaN.

    References
    ----------
    .. [1] S. Su, Z. Zhong and C. Zhang, "Deep Joint-Semantics Reconstructing
       Hashing for Large-Scale Unsupervised Cross-Modal Retrieval", ICCV 2019.
    .. [2] Y. Shi and Y.-J. Chung, "Efficient Cross-Modal Retrieval via Deep
       Binary Hashing and Quantization", BMVC 2021.
    .. [3] Y. Cao, M. Long, J. Wang, H. Zhu and Q. Wen, "Deep Quantization
       Network for Efficient Image Retrieval", AAAI 2016.
    .. [4] Q.-Y. Jiang and W.-J. Li, "Deep Cross-Modal Hashing", CVPR 2017.

    Examples
    --------
    >>> from skhash.metrics import average_precision_from_ranking
    >>> rel = [[1, 0, 1], [0, 0, 0]]
    >>> average_precision_from_ranking(rel)  # (1/1 + 2/3) / 2
    array([0.8333..., 0.        ])
    >>> average_precision_from_ranking(rel, variant="deephash")
    array([0.8333...,        nan])
    >>> average_precision_from_ranking(rel, [4, 0], variant="full")  # (1 + 2/3) / 4
    array([0.4166..., 0.        ])
    >>> average_precision_from_ranking([[0, 1, 0, 1]], [2], variant="dcmh", k=1)
    array([0.5])
    >>> average_precision_from_ranking([[0, 1, 0, 1]], [2], variant="dcmh")
    array([0.5])
    """
    _reject_bool(k, "k", 50)
    rel = check_array(ranked_relevance, dtype=None, input_name="ranked_relevance")
    _check_binary(rel, "ranked_relevance")
    numerator, found = _ap_numerator(rel.astype(np.float64))
    n_rel = None
    if n_relevant is not None:
        n_rel = np.asarray(n_relevant)
        if n_rel.shape != (rel.shape[0],):
            raise ValueError(
                f"n_relevant must have shape (n_queries,) = ({rel.shape[0]},); "
                f"got shape {n_rel.shape}."
            )
        if n_rel.dtype.kind not in "iuf" or np.isnan(n_rel).any():
            raise ValueError(f"n_relevant must hold counts; got dtype {n_rel.dtype}.")
        whole = n_rel == np.round(n_rel) if n_rel.dtype.kind == "f" else None
        if whole is not None and not whole.all():
            i = int(np.flatnonzero(~whole)[0])
            raise ValueError(
                f"n_relevant[{i}]={n_rel[i]} is not a whole number; n_relevant "
                "counts the relevant database items of each query (see "
                "skhash.metrics.n_relevant)."
            )
        too_small = n_rel < found
        if too_small.any():
            i = int(np.flatnonzero(too_small)[0])
            raise ValueError(
                f"n_relevant[{i}]={n_rel[i]} is smaller than the {int(found[i])} "
                "relevant items already found in the ranking; n_relevant must "
                "count the relevant items of the whole database (see "
                "skhash.metrics.n_relevant)."
            )
    elif variant in ("full", "dcmh"):
        raise ValueError(
            f"variant={variant!r} needs the number of relevant items in the whole "
            "database, so n_relevant is required; compute it with "
            "skhash.metrics.n_relevant(y_query, y_database)."
        )
    if variant != "dcmh":
        if k is not None:
            raise ValueError(
                f"k={k!r} is used by variant='dcmh' only; variant={variant!r} "
                "cuts at the ranking's length. Pass the top-k ranking, or "
                "variant='dcmh'."
            )
        return _ap_from_parts(numerator, found, n_rel, variant)
    T = n_rel.astype(np.int64) if k is None else np.minimum(n_rel, k).astype(np.int64)
    short = found < T
    if short.any():
        i = int(np.flatnonzero(short)[0])
        raise ValueError(
            f"variant='dcmh' averages over the first min(k, n_relevant) = {T[i]} "
            f"relevant items of query {i}, but its ranking holds only "
            f"{int(found[i])} of them; pass the whole ranking (every database "
            "item), not a top-k cut."
        )
    return _dcmh_ap(rel, n_rel, k)


def _select_top_k(y_score, k):
    """Indices of the top k items of each row, best first.

    Equal scores are ordered by lower index, as a stable sort of ``-y_score``
    would, but in linear time plus a sort of the k selected items. Also returns
    the k-th largest score of each row (shape (n_rows, 1)) and the mask of the
    items that hold it (the tie group at the cut, possibly only partly
    selected).
    """
    n_rows, n_cols = y_score.shape
    if k < n_cols:
        kth = -np.partition(-y_score, k - 1, axis=1)[:, k - 1 : k]
    else:
        kth = y_score.min(axis=1, keepdims=True)
    above = y_score > kth
    at_cut = y_score == kth
    n_needed = k - above.sum(axis=1, keepdims=True)
    selected = above | (at_cut & (np.cumsum(at_cut, axis=1) <= n_needed))
    # Exactly k per row; nonzero walks rows in order and columns ascending.
    indices = np.nonzero(selected)[1].reshape(n_rows, k)
    order = np.argsort(
        -np.take_along_axis(y_score, indices, axis=1), axis=1, kind="stable"
    )
    return np.take_along_axis(indices, order, axis=1), kth, at_cut


def _topk_parts(y_true, y_score, k, ties):
    """AP numerator and (expected) number of hits in the top k, per query.

    ``ties="index"`` orders equal scores by database index. ``ties="average"``
    returns the expectation of both quantities over uniformly random orders of
    every group of tied scores.
    """
    indices, kth, at_cut = _select_top_k(y_score, k)
    rel = np.take_along_axis(y_true, indices, axis=1)
    if ties == "index":
        return _ap_numerator(rel)
    scores = np.take_along_axis(y_score, indices, axis=1)
    pos = np.broadcast_to(np.arange(k), rel.shape)
    # Tie groups among the selected items: first and last (0-based) position
    # of the group of each rank. Every group above the cut value lies wholly
    # inside the selection; the group at the cut value may go on beyond it.
    first = np.ones(rel.shape, dtype=bool)
    first[:, 1:] = scores[:, 1:] != scores[:, :-1]
    last = np.ones(rel.shape, dtype=bool)
    last[:, :-1] = first[:, 1:]
    start = np.maximum.accumulate(np.where(first, pos, 0), axis=1)
    end = np.minimum.accumulate(np.where(last, pos, k)[:, ::-1], axis=1)[:, ::-1]
    cum = np.cumsum(rel, axis=1)
    before = np.take_along_axis(cum - rel, start, axis=1)  # hits before group
    m = np.take_along_axis(cum, end, axis=1) - before  # hits inside group
    size = (end - start + 1).astype(np.float64)
    in_cut_group = scores == kth
    size = np.where(in_cut_group, at_cut.sum(axis=1, keepdims=True), size)
    m = np.where(in_cut_group, (y_true * at_cut).sum(axis=1, keepdims=True), m)
    # Rank r = s + j inside a group of n items holding m relevant ones, with h
    # relevant items before it: P(rel(r)) = m / n and, given rel(r), the j - 1
    # group items ranked before r hold (j - 1)(m - 1)/(n - 1) relevant ones on
    # average, so E[rel(r) hits(r)] = m/n (h + 1 + (j - 1)(m - 1)/(n - 1)).
    p_rel = m / size
    slope = np.zeros_like(p_rel)
    np.divide(m - 1, size - 1, out=slope, where=size > 1)
    expected = p_rel * (before + 1 + (pos - start) * slope)
    ranks = np.arange(1, k + 1)
    return (expected / ranks).sum(axis=1), p_rel.sum(axis=1)


def _iter_topk_parts(y_true, y_score, k, ties):
    """Yield (rows, numerator, hits) over chunks of queries."""
    for rows in _chunks(y_true.shape[0], 4 * y_true.shape[1]):
        yield rows, *_topk_parts(y_true[rows], y_score[rows], k, ties)


_SCORE_CONSTRAINTS = {
    "y_true": ["array-like"],
    "y_score": ["array-like"],
    "k": [Interval(Integral, 1, None, closed="left"), None],
    "ties": [StrOptions(set(_TIES))],
}


@validate_params(
    {**_SCORE_CONSTRAINTS, "variant": [StrOptions(set(_VARIANTS))]},
    prefer_skip_nested_validation=True,
)
def mean_average_precision(y_true, y_score, *, k=50, variant="djsrh", ties="index"):
    """Mean average precision of the top-k items ranked by score (MAP@K).

    Parameters
    ----------
    y_true : array-like of shape (n_queries, n_database)
        Binary relevance (bool or 0/1) of each database item to each query,
        e.g. from :func:`relevance`.

    y_score : array-like of shape (n_queries, n_database)
        Similarity scores; higher ranks first. Pass minus a distance (e.g. minus
        the Hamming distance).

    k : int or None, default=50
        Cut-off K of the ranking. None ranks the whole database; a ``k`` larger
        than the database acts as the whole database.

    variant : {"djsrh", "deephash", "full", "dcmh"}, default="djsrh"
        Normalisation of AP@K, see :func:`average_precision_from_ranking`.
        ``"full"`` divides by the number of relevant items in the database
        (the row sums of ``y_true``). ``"dcmh"`` is DCMH's ``calc_map_k``:
        the mean precision at the first ``min(k, #relevant)`` relevant items
        of the whole ranking (``k=1``: the mean reciprocal rank); it needs
        ``ties="index"``.

    ties : {"index", "average"}, default="index"
        How equal scores are ordered:

        - ``"index"``: lower database index first (a stable sort of minus the
          score), deterministic.
        - ``"average"``: tie-aware. The AP numerator
          ``sum_{r <= K} P(r) rel(r)`` is replaced by its exact expectation
          under a uniformly random order inside every group of tied scores
          (including a group that straddles the cut at K), following McSherry
          and Najork [1]_ (see also [2]_). For ``"full"`` the denominator is a
          constant, so the result is the exact expected AP@K. For ``"djsrh"``
          and ``"deephash"`` the denominator ``R_K`` is divided out as its
          expectation, i.e. the result is ``E[numerator] / E[R_K]``: exact when
          no tie group straddles rank K (``R_K`` is then fixed), otherwise an
          approximation of ``E[numerator / R_K]`` (a ratio of expectations).

    Returns
    -------
    score : float
        MAP@K, the mean AP@K over queries, in [0, 1]. Under ``"deephash"``,
        queries without any hit in the top K are left out (0.0 when all are).

    See Also
    --------
    average_precision_from_ranking : Per-query AP from a ranked relevance matrix.
    precision_at_k : Mean precision of the top k.

    Notes
    -----
    Hamming rankings tie a lot (an ``n_bits`` code has only ``n_bits + 1``
    distances), so ``ties="index"`` can move MAP by several points depending on
    the database order; ``ties="average"`` is invariant to that order.

    References
    ----------
    .. [1] F. McSherry and M. Najork, "Computing Information Retrieval
       Performance Measures Efficiently in the Presence of Tied Scores",
       ECIR 2008.
    .. [2] K. He, F. Cakir, S. A. Bargal and S. Sclaroff, "Hashing as Tie-Aware
       Learning to Rank", CVPR 2018.

    Examples
    --------
    >>> from skhash.metrics import mean_average_precision
    >>> y_true = [[1, 0, 1, 0]]
    >>> y_score = [[0.9, 0.8, 0.5, 0.1]]
    >>> mean_average_precision(y_true, y_score, k=3)  # (1/1 + 2/3) / 2
    0.8333...
    >>> mean_average_precision(y_true, [[1, 1, 0, 0]], k=1, ties="average")
    1.0
    >>> mean_average_precision(y_true, [[1, 1, 0, 0]], k=1, variant="full",
    ...                        ties="average")  # E[rel(1)] / 2
    0.25
    """
    _reject_bool(k, "k", 50)
    y_true, y_score = _check_relevance_and_scores(y_true, y_score)
    n_queries, n_database = y_true.shape
    k = n_database if k is None else min(k, n_database)
    ap = np.empty(n_queries, dtype=np.float64)
    n_rel = y_true.sum(axis=1)
    if variant == "dcmh":
        if ties != "index":
            raise ValueError(
                f"variant='dcmh' with ties={ties!r} is not supported: the form "
                "looks past rank k for the relevant items, and its expectation "
                "over tie orders is not implemented. Use ties='index' (equal "
                "scores ordered by lower database index)."
            )
        for rows in _chunks(n_queries, 2 * n_database):
            order = np.argsort(-y_score[rows], axis=1, kind="stable")
            rel = np.take_along_axis(y_true[rows], order, axis=1)
            ap[rows] = _dcmh_ap(rel, n_rel[rows], k)
        return float(ap.mean())
    for rows, numerator, found in _iter_topk_parts(y_true, y_score, k, ties):
        ap[rows] = _ap_from_parts(numerator, found, n_rel[rows], variant)
    return _mean_over_queries(ap, variant)


@validate_params(_SCORE_CONSTRAINTS, prefer_skip_nested_validation=True)
def precision_at_k(y_true, y_score, *, k=50, ties="index"):
    """Mean precision of the top-k items ranked by score.

    Parameters
    ----------
    y_true : array-like of shape (n_queries, n_database)
        Binary relevance (bool or 0/1) of each database item to each query.

    y_score : array-like of shape (n_queries, n_database)
        Similarity scores; higher ranks first.

    k : int or None, default=50
        Number of retrieved items. None, or a ``k`` larger than the database,
        retrieves the whole database (precision is then divided by
        ``n_database``).

    ties : {"index", "average"}, default="index"
        ``"index"`` orders equal scores by database index; ``"average"`` gives
        the exact expected precision over random orders of tied scores.

    Returns
    -------
    score : float
        Mean over queries of (relevant items in the top k) / min(k, n_database).

    Examples
    --------
    >>> from skhash.metrics import precision_at_k
    >>> precision_at_k([[1, 0, 1, 0]], [[0.9, 0.8, 0.5, 0.1]], k=2)
    0.5
    >>> precision_at_k([[1, 0, 1, 0]], [[0.9, 0.8, 0.5, 0.1]], k=10)
    0.5
    """
    _reject_bool(k, "k", 50)
    y_true, y_score = _check_relevance_and_scores(y_true, y_score)
    n_database = y_true.shape[1]
    k = n_database if k is None else min(k, n_database)
    total = 0.0
    for _, _, found in _iter_topk_parts(y_true, y_score, k, ties):
        total += found.sum()
    return float(total / (k * y_true.shape[0]))


@validate_params(
    {
        "y_true": ["array-like"],
        "y_score": ["array-like"],
        "r_values": ["array-like", Interval(Integral, 1, None, closed="left")],
    },
    prefer_skip_nested_validation=True,
)
def precision_at_top_r(y_true, y_score, *, r_values):
    """Mean precision after r retrieved items, for several r (precision@top-R).

    Equal scores are ordered by database index (lower first).

    Parameters
    ----------
    y_true : array-like of shape (n_queries, n_database)
        Binary relevance (bool or 0/1) of each database item to each query.

    y_score : array-like of shape (n_queries, n_database)
        Similarity scores; higher ranks first.

    r_values : int or array-like of int
        Numbers of retrieved items, each at least 1. An r larger than the
        database retrieves the whole database (divided by ``n_database``).

    Returns
    -------
    precision : ndarray of shape (n_r_values,), dtype=float64
        Mean precision over queries after each r.

    Examples
    --------
    >>> from skhash.metrics import precision_at_top_r
    >>> precision_at_top_r([[1, 0, 1, 0]], [[4, 3, 2, 1]], r_values=[1, 2, 3])
    array([1.        , 0.5       , 0.6666...])
    """
    y_true, y_score = _check_relevance_and_scores(y_true, y_score)
    r_values = np.atleast_1d(np.asarray(r_values))
    if r_values.ndim != 1 or r_values.dtype.kind not in "iu" or r_values.size == 0:
        raise ValueError(
            f"r_values must be a non-empty 1-D sequence of integers; got {r_values!r}."
        )
    if (r_values < 1).any():
        raise ValueError(f"r_values must all be at least 1; got {r_values.tolist()}.")
    n_queries, n_database = y_true.shape
    r_eff = np.minimum(r_values, n_database)
    r_max = int(r_eff.max())
    total = np.zeros(r_values.shape, dtype=np.float64)
    for rows in _chunks(n_queries, 2 * n_database):
        indices, _, _ = _select_top_k(y_score[rows], r_max)
        hits = np.cumsum(np.take_along_axis(y_true[rows], indices, axis=1), axis=1)
        total += hits[:, r_eff - 1].sum(axis=0)
    return total / (n_queries * r_eff)


@validate_params(
    {
        "y_true": ["array-like"],
        "hamming_distances": ["array-like"],
        "n_bits": [Interval(Integral, 1, None, closed="left")],
    },
    prefer_skip_nested_validation=True,
)
def precision_recall_hamming(y_true, hamming_distances, *, n_bits):
    """Precision and recall of Hamming-ball retrieval at every radius.

    At radius r every database item within Hamming distance ``<= r`` of the
    query is retrieved.

    Parameters
    ----------
    y_true : array-like of shape (n_queries, n_database)
        Binary relevance (bool or 0/1) of each database item to each query.

    hamming_distances : array-like of shape (n_queries, n_database)
        Hamming distances, whole numbers in [0, n_bits].

    n_bits : int
        Code length; radii run over 0, 1, ..., ``n_bits``.

    Returns
    -------
    precision : ndarray of shape (n_bits + 1,)
        Mean precision at each radius over the queries that retrieve at least
        one item at that radius; NaN at a radius where no query retrieves
        anything.

    recall : ndarray of shape (n_bits + 1,)
        Mean recall at each radius over the queries with at least one relevant
        item in the database; NaN everywhere if no query has one.

    radii : ndarray of shape (n_bits + 1,)
        The radii 0, 1, ..., ``n_bits``.

    Examples
    --------
    >>> from skhash.metrics import precision_recall_hamming
    >>> precision, recall, radii = precision_recall_hamming(
    ...     [[1, 0, 1]], [[0, 1, 2]], n_bits=2)
    >>> precision
    array([1.        , 0.5       , 0.6666...])
    >>> recall
    array([0.5, 0.5, 1. ])
    >>> radii
    array([0, 1, 2])
    """
    _reject_bool(n_bits, "n_bits", 64)
    y_true, dist = _check_relevance_and_scores(
        y_true, hamming_distances, score_name="hamming_distances"
    )
    if (dist < 0).any() or (dist > n_bits).any() or (dist != np.round(dist)).any():
        bad = dist[(dist < 0) | (dist > n_bits) | (dist != np.round(dist))]
        raise ValueError(
            f"hamming_distances must be whole numbers in [0, n_bits] = [0, "
            f"{n_bits}]; got values such as {np.unique(bad)[:5].tolist()}. "
            "Check n_bits against the code length."
        )
    dist = dist.astype(np.int64)
    n_queries, n_database = y_true.shape
    n_radii = n_bits + 1
    precision_sum = np.zeros(n_radii)
    precision_count = np.zeros(n_radii)
    recall_sum = np.zeros(n_radii)
    recall_count = 0
    for rows in _chunks(n_queries, n_database):
        n_rows = rows.stop - rows.start
        flat = (np.arange(n_rows)[:, None] * n_radii + dist[rows]).ravel()
        size = n_rows * n_radii
        retrieved = np.bincount(flat, minlength=size).reshape(n_rows, n_radii)
        hits = np.bincount(flat, weights=y_true[rows].ravel(), minlength=size)
        retrieved = np.cumsum(retrieved, axis=1)
        hits = np.cumsum(hits.reshape(n_rows, n_radii), axis=1)
        precision = np.zeros(hits.shape)
        np.divide(hits, retrieved, out=precision, where=retrieved > 0)
        precision_sum += precision.sum(axis=0)
        precision_count += (retrieved > 0).sum(axis=0)
        total = hits[:, -1]
        has_relevant = total > 0
        recall_sum += (hits[has_relevant] / total[has_relevant, None]).sum(axis=0)
        recall_count += int(has_relevant.sum())
    precision = np.full(n_radii, np.nan)
    np.divide(precision_sum, precision_count, out=precision, where=precision_count > 0)
    recall = recall_sum / recall_count if recall_count else np.full(n_radii, np.nan)
    return precision, recall, np.arange(n_radii)


@validate_params(
    {
        "a": [Interval(Real, 0, None, closed="left")],
        "b": [Interval(Real, 0, None, closed="left")],
    },
    prefer_skip_nested_validation=True,
)
def harmonic_mean(a, b):
    """Harmonic mean of two non-negative scores, e.g. MAP of both directions.

    Parameters
    ----------
    a, b : float
        The two scores, at least 0.

    Returns
    -------
    score : float
        ``2 a b / (a + b)``, or 0.0 when either score is 0.

    Examples
    --------
    >>> from skhash.metrics import harmonic_mean
    >>> harmonic_mean(0.5, 1.0)
    0.6666...
    >>> harmonic_mean(0.0, 0.8)
    0.0
    """
    if a == 0 or b == 0:
        return 0.0
    return float(2.0 * a * b / (a + b))
