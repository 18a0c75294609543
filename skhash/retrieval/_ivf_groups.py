"""Groups of inverted lists: the two-level coarse quantizer of
``quantizer_nprobe`` (see :meth:`InvertedLists.probe_lists
<skhash.retrieval._ivf_lists.InvertedLists.probe_lists>`).

:func:`build_groups` clusters the lists' coded centroids; :func:`probe_grouped`
is the numpy reference of the grouped probe, whose compiled kernel is
:func:`~skhash.retrieval._ivf_kernels._ivf_probe_grouped` (the same lists, in
the same order).
"""

from __future__ import annotations

import math

import numpy as np

from skhash.retrieval._ivf_assign import group_members, nearest

__all__ = []  # private helpers of InvertedLists

#: A grouped probe takes groups until their lists number at least this many
#: times those the probe's first pass considers (``max(nprobe, 2 L / mean
#: list size + 1)``), so that the lists it keeps are chosen among several
#: times as many.
CANDIDATE_FACTOR = 4


def build_groups(ivf):
    """The groups of ``ivf``'s lists (see :meth:`InvertedLists.groups
    <skhash.retrieval._ivf_lists.InvertedLists.groups>`): about
    ``sqrt(nlist)`` k-means centroids of the coded centroids, seeded by
    ``ivf.seed``, encoded with the codebooks, and each list in the group of
    its nearest coded group centroid.

    Returns
    -------
    codes, sqnorms, ptr, lists : tuple of ndarray
        As :meth:`InvertedLists.groups
        <skhash.retrieval._ivf_lists.InvertedLists.groups>` returns them.
    """
    from skhash.quantization import encode
    from skhash.retrieval._ivf_lists import _decode, _limit_threads, _lloyd

    n_groups = max(1, int(round(math.sqrt(ivf.nlist))))
    rng = np.random.RandomState(ivf.seed)
    centres = _lloyd(ivf.centroids, n_groups, rng)
    with _limit_threads():
        codes = encode(centres, ivf.codebooks, kind=ivf.kind, n_jobs=1)
    codes = np.ascontiguousarray(codes, dtype=ivf.centroid_codes.dtype)
    coded = _decode(codes, ivf.codebooks)
    sq = np.einsum("gd,gd->g", coded, coded).astype(np.float32)
    ptr, lists = group_members(nearest(ivf.centroids, coded, sq), n_groups)
    return codes, sq, ptr, lists


def probe_grouped(ivf, luts, gkeys, p, n_short, q_groups, backend, norm_shift):
    """The numpy reference of the grouped :meth:`InvertedLists.probe_lists
    <skhash.retrieval._ivf_lists.InvertedLists.probe_lists>`: ``gkeys`` are
    the queries' keys of the groups, ``p`` the clipped ``nprobe``. Returns
    CSR ``(ptr, lists)``, each query's lists best first."""
    _, _, gptr, glists = ivf.groups()
    sizes = np.diff(ivf.offsets)
    n_g = len(gptr) - 1
    mean_size = max(1.0, float(ivf.offsets[-1] - ivf.offsets[0]) / ivf.nlist)
    m0 = min(ivf.nlist, max(p, int(2.0 * n_short / mean_size) + 1))
    out, ptr = [], [0]
    for q in range(len(gkeys)):
        order = np.lexsort((np.arange(n_g), gkeys[q]))
        g = min(n_g, q_groups)
        while True:
            cand = np.concatenate(
                [glists[gptr[t] : gptr[t + 1]] for t in order[:g]]
            ).astype(np.int64)
            held = int(sizes[cand].sum())
            if (held >= n_short and len(cand) >= CANDIDATE_FACTOR * m0) or g == n_g:
                break
            g = min(n_g, 2 * g)
        keys = ivf._coded_keys(
            luts[q : q + 1],
            ivf.centroid_codes,
            ivf.c_sqnorms,
            backend,
            norm_shift,
            cand=cand[None],
        )[0]
        ranked = cand[np.lexsort((cand, keys))]
        cum = np.cumsum(sizes[ranked])
        j = min(len(ranked), max(p, int((cum < n_short).sum()) + 1))
        out.append(ranked[:j])
        ptr.append(ptr[-1] + j)
    lists = np.concatenate(out) if out else np.empty(0, np.int64)
    return np.asarray(ptr, dtype=np.int64), lists.astype(np.int64)
