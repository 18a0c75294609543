"""What :meth:`TwoStageRetriever.score <skhash.retrieval.TwoStageRetriever.score>`
and :meth:`ShardedRetriever.score <skhash.retrieval.ShardedRetriever.score>`
share: the plan of a score (cut-off, directions, ranking depth) and the mean
average precision of the ranked relevance."""

from __future__ import annotations

from numbers import Integral

import numpy as np

from skhash.metrics import average_precision_from_ranking

_SCORE_VARIANTS = ("djsrh", "deephash", "full", "dcmh")
#: the variants that need each query's number of relevant database items
_NEEDS_N_RELEVANT = ("full", "dcmh")


def _score_plan(est, has_y, n_neighbors, direction, variant, metric):
    """The checked arguments of ``score``: ``(k, directions, depth)``.

    Shared by :class:`TwoStageRetriever` and the sharded index, so both
    accept and refuse the same values. ``depth`` is how many neighbours to
    rank: ``k``, or the whole database for DCMH's form, which averages over
    the first min(K, #relevant) relevant items wherever they rank.
    """
    if metric not in ("map", "precision"):
        raise ValueError(f"metric must be 'map' or 'precision'; got {metric!r}.")
    if variant not in _SCORE_VARIANTS:
        raise ValueError(
            f"variant must be 'djsrh', 'deephash', 'full' or 'dcmh'; got {variant!r}."
        )
    if not has_y:
        raise ValueError(
            "score needs the labels of the database items; fit with "
            "fit(X, y) to index them."
        )
    n = est.n_samples_fit_
    if isinstance(n_neighbors, str) and n_neighbors == "all":
        k = n
    else:
        k = est.n_neighbors if n_neighbors is None else n_neighbors
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, Integral) or k < 1:
            why = " (bool is not accepted)" if isinstance(k, (bool, np.bool_)) else ""
            raise ValueError(
                f"n_neighbors must be a positive int, 'all' or None; got {k!r}"
                f"{why}. Pass e.g. n_neighbors=50."
            )
        k = min(int(k), n)
    mods = est.modalities_
    if direction is None and len(mods) == 2:
        directions = [f"{mods[0]}->{mods[1]}", f"{mods[1]}->{mods[0]}"]
    else:
        directions = [direction]
    depth = n if metric == "map" and variant == "dcmh" else k
    return k, directions, depth


def _mean_ap(rel, n_rel, variant, k):
    """Mean AP of the rankings ``rel`` (queries scoring NaN left out)."""
    ap = average_precision_from_ranking(
        rel, n_rel, variant=variant, k=k if variant == "dcmh" else None
    )
    ap = ap[~np.isnan(ap)]
    return float(ap.mean()) if ap.size else 0.0
