"""Compiled kernel of the inverted-file stage 1 (numba); see
:mod:`skhash.retrieval._ivf`. Imported only when a search uses the inverted
lists with a numba backend, so that ``import skhash.retrieval`` does not
import numba."""

from __future__ import annotations

import numpy as np
from numba import njit

from skhash.retrieval._numba import _sift_down, _worse
from skhash.retrieval._numba_bits import _popcount

_RADIX_BITS = 11
_RADIX = 1 << _RADIX_BITS
#: Interleaved copies of the distance histogram (a power of 2).
_SUB_HISTOGRAMS = 4


@njit(cache=True, nogil=True, boundscheck=False)
def _radix_sort(keys, n, tmp, count, max_key):
    """Sort ``keys[:n]`` (non-negative, at most ``max_key``) by LSD radix
    passes of 11 bits; returns the array (``keys`` or ``tmp``) holding the
    result. A few linear passes: numba's comparison sort is several times
    slower on the few thousand keys of a shortlist."""
    src, dst = keys, tmp
    shift = 0
    while (max_key >> shift) > 0:
        for b in range(_RADIX + 1):
            count[b] = 0
        for i in range(n):
            count[((src[i] >> shift) & (_RADIX - 1)) + 1] += 1
        for b in range(_RADIX):
            count[b + 1] += count[b]
        for i in range(n):
            b = (src[i] >> shift) & (_RADIX - 1)
            dst[count[b]] = src[i]
            count[b] += 1
        src, dst = dst, src
        shift += _RADIX_BITS
    return src


@njit(cache=True, nogil=True, boundscheck=False)
def _ivf_shortlist(
    q_words, ptr, lists, offsets, ids, words, n_cand, ordered, out_idx, out_dist
):
    """The ``n_cand`` items of the probed lists nearest to each query.

    Query ``q`` probes the lists ``lists[ptr[q]:ptr[q + 1]]``; list ``l``
    holds the items ``ids[offsets[l]:offsets[l + 1]]``, whose codes are the
    rows ``words[offsets[l]:offsets[l + 1]]`` (list order, so that a probe
    reads contiguous memory). The probed lists hold at least ``n_cand``
    items. Ordered by (Hamming distance, database index), as the exhaustive
    scan: a histogram of the distances gives the threshold ``t`` (the
    smallest distance with ``n_cand`` items at or below it), the items at or
    below ``t`` are radix-sorted by ``distance * N + index``, and the first
    ``n_cand`` kept. With ``ordered=False`` the same items are returned
    unordered (for a re-ranking, whose order does not depend on theirs):
    those below ``t`` as met, then the ones at ``t`` of lowest index, and
    only the latter are sorted (by index), when not all of them fit.

    The histogram is kept in ``_SUB_HISTOGRAMS`` interleaved copies: learned
    codes put many items at the same distance, and one counter incremented
    item after item waits on its own previous store (4 copies: 367 items per
    query at L = 100, 6.2 -> 4.2-5.7 us; 2,305 at L = 2,000, 23 -> 16 us).
    The scan records each item's position in the lists; its id is read only
    for the items kept.
    """
    n_q, n_words = q_words.shape
    n_total = ids.shape[0]
    nb = 64 * n_words + 1  # distances 0 .. 64 n_words
    hist = np.zeros(_SUB_HISTOGRAMS * nb, np.int64)
    count = np.zeros(_RADIX + 1, np.int64)
    buf_d = np.empty(4096, np.int64)
    buf_p = np.empty(4096, np.int64)
    keys = np.empty(4096, np.int64)
    tmp = np.empty(4096, np.int64)
    for q in range(n_q):
        total = 0
        for t in range(ptr[q], ptr[q + 1]):
            lst = lists[t]
            total += offsets[lst + 1] - offsets[lst]
        if total > buf_d.shape[0]:
            buf_d = np.empty(total, np.int64)
            buf_p = np.empty(total, np.int64)
            keys = np.empty(total, np.int64)
            tmp = np.empty(total, np.int64)
        w = 0
        q0 = q_words[q, 0]
        for t in range(ptr[q], ptr[q + 1]):
            lst = lists[t]
            for p in range(offsets[lst], offsets[lst + 1]):
                if n_words == 1:  # 64-bit codes: one word, held in a register
                    d = _popcount(words[p, 0] ^ q0)
                else:
                    d = 0
                    for j in range(n_words):
                        d += _popcount(words[p, j] ^ q_words[q, j])
                buf_d[w] = d
                buf_p[w] = p
                hist[(w & (_SUB_HISTOGRAMS - 1)) * nb + d] += 1
                w += 1
        below = 0
        thr = 0
        for d in range(nb):
            for s in range(_SUB_HISTOGRAMS):
                below += hist[s * nb + d]
            if below >= n_cand:
                thr = d
                break
        if ordered:
            k = 0
            for p in range(w):
                if buf_d[p] <= thr:
                    keys[k] = buf_d[p] * n_total + ids[buf_p[p]]
                    k += 1
            done = _radix_sort(keys, k, tmp, count, thr * n_total + n_total - 1)
            for p in range(n_cand):
                out_dist[q, p] = done[p] // n_total
                out_idx[q, p] = done[p] % n_total
        else:
            o = 0
            k = 0
            for p in range(w):
                d = buf_d[p]
                if d < thr:
                    out_dist[q, o] = d
                    out_idx[q, o] = ids[buf_p[p]]
                    o += 1
                elif d == thr:
                    keys[k] = ids[buf_p[p]]
                    k += 1
            done = keys
            if o + k > n_cand:  # only the lowest indices at t are kept
                done = _radix_sort(keys, k, tmp, count, n_total - 1)
            for p in range(n_cand - o):
                out_dist[q, o + p] = thr
                out_idx[q, o + p] = done[p]
        for x in range(_SUB_HISTOGRAMS * nb):
            hist[x] = 0


@njit(cache=True, nogil=True, boundscheck=False)
def _best_lists(row, m, hk, hi):
    """The ``m`` best lists of ``row`` by (key, list id), best first, in
    ``hi[:m]`` (a max-heap of size ``m`` over one pass, then sorted).

    Past the first ``m`` lists one compare with the heap's worst key (held
    in a register) rejects a list: lists come in id order, so a key equal
    to the worst's ranks after it."""
    nl = row.shape[0]
    size = 0
    lst = 0
    while lst < nl and size < m:  # fill the heap, sifting up
        k = row[lst]
        pos = size
        size += 1
        while pos > 0:
            parent = (pos - 1) // 2
            if _worse(k, lst, hk[parent], hi[parent]):
                hk[pos], hi[pos] = hk[parent], hi[parent]
                pos = parent
            else:
                break
        hk[pos], hi[pos] = k, lst
        lst += 1
    worst = hk[0]
    for lst in range(lst, nl):  # replace the worst, sift down
        k = row[lst]
        if k < worst:
            hk[0], hi[0] = k, lst
            _sift_down(hk, hi, 0, size)
            worst = hk[0]
    for end in range(size - 1, 0, -1):  # heap sort: worst to the end
        wk, wi = hk[0], hi[0]
        hk[0], hi[0] = hk[end], hi[end]
        _sift_down(hk, hi, 0, end)
        hk[end], hi[end] = wk, wi


@njit(cache=True, nogil=True, boundscheck=False)
def _ivf_probe(keys, nprobe, n_short, offsets, ptr, lists):
    """Per query (row of ``keys``), the lists its search scans: the first
    ``j`` by (key, list id), ``j = max(nprobe, the fewest holding n_short
    items)``; CSR into ``ptr`` (``n_q + 1``) and ``lists`` (the total is
    returned; ``lists`` must hold ``n_q * nlist``). The same sets as
    :meth:`InvertedLists.probe <skhash.retrieval._ivf.InvertedLists.probe>`."""
    n_q, nl = keys.shape
    hk = np.empty(nl, keys.dtype)
    hi = np.empty(nl, np.int64)
    # the first pass keeps enough lists for twice the shortlist at the mean
    # list size, then 4 times more per pass (a longer first heap saves passes
    # but costs more than they do: at 2,000 and 6,325 lists, at least 16
    # lists were 1.5-2.5 times slower at L = 100)
    mean_size = max(1.0, (offsets[nl] - offsets[0]) / nl)
    m0 = min(nl, max(nprobe, int(2.0 * n_short / mean_size) + 1))
    w = 0
    ptr[0] = 0
    for q in range(n_q):
        m = m0
        while True:
            _best_lists(keys[q], m, hk, hi)
            held = 0
            j = 0
            while j < m and (j < nprobe or held < n_short):
                held += offsets[hi[j] + 1] - offsets[hi[j]]
                j += 1
            if held >= n_short or m == nl:
                break
            m = min(nl, 4 * m)
        for t in range(j):
            lists[w] = hi[t]
            w += 1
        ptr[q + 1] = w
    return w


@njit(cache=True, nogil=True, boundscheck=False)
def _ivf_adc(
    luts, ptr, lists, offsets, ids, codes, mode, q_sq, sq, exclude, k, out_idx, out_dist
):
    """The ``k`` nearest items of each query among all items of its probed
    lists, by their asymmetric distance (faiss's IVF-ADC scan).

    Query ``q`` scans the lists ``lists[ptr[q]:ptr[q + 1]]``; list ``l``
    holds the items ``ids[offsets[l]:offsets[l + 1]]`` whose codes are the
    rows ``codes[offsets[l]:offsets[l + 1]]`` (list order: the scan reads
    contiguous memory). Each item's table sum ``s = Σ_m luts[q, m, c_m]``
    runs over ``m`` in order in float32, as the re-ranking kernels, and its
    distance is, in float64 as the re-ranking computes it: ``mode`` 0
    (inner product) ``-s``; 1 (squared L2, additive codebooks)
    ``max(q_sq[q] - 2 s + sq[id], 0)``; 2 (squared L2, product codebooks,
    ``luts`` the L2 tables) ``max(q_sq[q] + s, 0)``. Item ``exclude[q]``
    (-1: none) is skipped. A max-heap of ``k`` keeps the best by (distance,
    id); the output is in that order (``out_dist`` ``inf`` and ``out_idx``
    -1 past the items scanned, which the probe makes at least ``k``).
    """
    n_q, n_books = luts.shape[0], luts.shape[1]
    hk = np.empty(k, np.float64)
    hi = np.empty(k, np.int64)
    for q in range(n_q):
        lq = luts[q]
        size = 0
        skip = exclude[q]
        for t in range(ptr[q], ptr[q + 1]):
            lst = lists[t]
            for p in range(offsets[lst], offsets[lst + 1]):
                s = np.float32(0.0)
                for m in range(n_books):
                    s += lq[m, codes[p, m]]
                i = np.int64(ids[p])
                if i == skip:
                    continue
                if mode == 0:
                    d = -np.float64(s)
                elif mode == 1:
                    d = max(q_sq[q] - 2.0 * np.float64(s) + sq[i], 0.0)
                else:
                    d = max(q_sq[q] + np.float64(s), 0.0)
                if size < k:  # sift up
                    pos = size
                    size += 1
                    while pos > 0:
                        parent = (pos - 1) // 2
                        if _worse(d, i, hk[parent], hi[parent]):
                            hk[pos], hi[pos] = hk[parent], hi[parent]
                            pos = parent
                        else:
                            break
                    hk[pos], hi[pos] = d, i
                elif _worse(hk[0], hi[0], d, i):  # replace the worst
                    hk[0], hi[0] = d, i
                    _sift_down(hk, hi, 0, size)
        for end in range(size - 1, 0, -1):  # heap sort: worst to the end
            wk, wi = hk[0], hi[0]
            hk[0], hi[0] = hk[end], hi[end]
            _sift_down(hk, hi, 0, end)
            hk[end], hi[end] = wk, wi
        for j in range(size):
            out_idx[q, j] = hi[j]
            out_dist[q, j] = hk[j]
        for j in range(size, k):
            out_idx[q, j] = -1
            out_dist[q, j] = np.inf
