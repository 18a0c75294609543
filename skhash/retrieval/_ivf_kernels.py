"""Compiled kernel of the inverted-file stage 1 (numba); see
:mod:`skhash.retrieval._ivf`. Imported only when a search uses the inverted
lists with a numba backend, so that ``import skhash.retrieval`` does not
import numba."""

from __future__ import annotations

import numpy as np
from numba import njit

from skhash.retrieval._mih_kernels import _popcount


@njit(cache=True, nogil=True, boundscheck=False)
def _ivf_shortlist(q_words, ptr, lists, offsets, ids, words, n_cand, out_idx, out_dist):
    """The ``n_cand`` items of the probed lists nearest to each query.

    Query ``q`` probes the lists ``lists[ptr[q]:ptr[q + 1]]``; list ``l``
    holds the items ``ids[offsets[l]:offsets[l + 1]]``, whose codes are the
    rows ``words[offsets[l]:offsets[l + 1]]`` (list order, so that a probe
    reads contiguous memory). The probed lists hold at least ``n_cand``
    items. Ordered by (Hamming distance, database index), as the exhaustive
    scan: a histogram of the distances gives the threshold ``t``, every item
    below it is kept, the lowest-index items at ``t`` complete the
    shortlist (a partition, not a sort, of the ties), and the ``n_cand``
    kept items are sorted by ``distance * N + index``.
    """
    n_q, n_words = q_words.shape
    n_total = ids.shape[0]
    n_max = 64 * n_words
    hist = np.zeros(n_max + 1, np.int64)
    buf_d = np.empty(4096, np.int64)
    buf_i = np.empty(4096, np.int64)
    keys = np.empty(n_cand, np.int64)
    for q in range(n_q):
        total = 0
        for t in range(ptr[q], ptr[q + 1]):
            lst = lists[t]
            total += offsets[lst + 1] - offsets[lst]
        if total > buf_d.shape[0]:
            buf_d = np.empty(total, np.int64)
            buf_i = np.empty(total, np.int64)
        w = 0
        for t in range(ptr[q], ptr[q + 1]):
            lst = lists[t]
            for p in range(offsets[lst], offsets[lst + 1]):
                d = 0
                for j in range(n_words):
                    d += _popcount(words[p, j] ^ q_words[q, j])
                buf_d[w] = d
                buf_i[w] = ids[p]
                hist[d] += 1
                w += 1
        below = 0
        thr = 0
        for d in range(n_max + 1):
            if below + hist[d] >= n_cand:
                thr = d
                break
            below += hist[d]
        ties = np.empty(hist[thr], np.int64)
        k = 0
        n_ties = 0
        for p in range(w):
            d = buf_d[p]
            if d < thr:
                keys[k] = d * n_total + buf_i[p]
                k += 1
            elif d == thr:
                ties[n_ties] = buf_i[p]
                n_ties += 1
        need = n_cand - k
        if n_ties > need:
            ties = np.partition(ties, need - 1)
        for j in range(need):
            keys[k + j] = thr * n_total + ties[j]
        keys.sort()
        for p in range(n_cand):
            out_dist[q, p] = keys[p] // n_total
            out_idx[q, p] = keys[p] % n_total
        for d in range(n_max + 1):
            hist[d] = 0
