"""Compiled scan of lists of codes by asymmetric distance (faiss's IVF-ADC
scan; numba): the table sums of each probed item, read a code or a word of
codes at a time, and the selection of the ``k`` best. Used by
:mod:`~skhash.retrieval._ivf_kernels` and imported, as it is, only when a
search uses the inverted lists with a numba backend, so that ``import
skhash.retrieval`` does not import numba."""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import overload

from skhash.retrieval._numba import _code, _sift_down, _worse, code_words


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _adc_distance(s, mode, q_sq, sq, i):
    """The distance of table sum ``s`` of item ``i`` (see :func:`_ivf_adc`)."""
    if mode == 0:
        return -np.float64(s)
    if mode == 1:
        return max(q_sq - 2.0 * np.float64(s) + np.float64(sq[i]), 0.0)
    return max(q_sq + np.float64(s), 0.0)


@njit(cache=True, nogil=True, boundscheck=False)
def _insertion_sort(bd, bi, n):
    """Sort ``bd/bi[:n]`` by (distance, id) in place (a few dozen entries:
    one mispredicted branch per entry, where a heap mispredicts at every
    level)."""
    for j in range(1, n):
        d, i = bd[j], bi[j]
        p = j
        while p > 0 and _worse(bd[p - 1], bi[p - 1], d, i):
            bd[p], bi[p] = bd[p - 1], bi[p - 1]
            p -= 1
        bd[p], bi[p] = d, i


#: :func:`_select` samples a threshold from ``n >= _SAMPLED * max(k, 50)``
#: items on: below, its pass over all items costs about what it saves (0.93-
#: 0.97x at 500-800 items, 1.03x at 1,400, 1.10x at 4,300, k = 50).
_SAMPLED = 40


@njit(cache=True, nogil=True, boundscheck=False)
def _select(dist, ids, n, k, hist, bd, bi):
    """The ``k`` best of ``dist/ids[:n]`` by (distance, id), sorted, into
    ``bd/bi[:k]`` (``k <= n``); ``dist/ids`` are scratch (reordered).

    From ``n >= 40 max(k, 50)`` on, a threshold from a sample first drops
    the items that cannot be among the ``k`` best: every ``s``-th item,
    ``s = ⌊√(n / k)⌋`` (so at least ``k`` of them), gives ``τ``, the
    largest sampled distance in the histogram bins (:func:`_select_hist`'s)
    up to the one holding the sample's ``k``-th; at least ``k`` items are
    ``<= τ``, so an item ``> τ`` has ``k`` strictly better ones and is
    dropped. One pass of comparisons leaves about ``√(n k)`` items to
    :func:`_select_hist`, which passes over all its items three times
    (minimum and maximum, histogram, partition: about 2 ns an item at
    ``10**6``, against about 3 ns for the scan's table sums). The result is
    the same: the ``k`` best of all items, ties by id.
    """
    if n < _SAMPLED * max(k, 50):
        _select_hist(dist, ids, n, k, hist, bd, bi)
        return
    # about n / stride >= sqrt(n k) >= k items sampled
    stride = max(2, int(np.sqrt(n / k)))
    nb = hist.shape[0]
    lo, hi = dist[0], dist[0]
    for j in range(0, n, stride):
        d = dist[j]
        lo = d if d < lo else lo
        hi = d if d > hi else hi
    if not (lo == lo and hi == hi and hi - lo < np.inf):  # NaN or inf spread
        _select_hist(dist, ids, n, k, hist, bd, bi)
        return
    scale = (nb - 1) / (hi - lo) if hi > lo else 0.0
    for b in range(nb):
        hist[b] = 0
    for j in range(0, n, stride):
        hist[int((dist[j] - lo) * scale)] += 1
    count = 0
    kb = 0
    while count + hist[kb] < k:
        count += hist[kb]
        kb += 1
    tau = lo
    for j in range(0, n, stride):  # the largest sampled distance up to bin kb
        d = dist[j]
        if int((d - lo) * scale) <= kb and d > tau:
            tau = d
    w = 0
    for j in range(n):  # keep the items <= tau, in order, without a branch
        d, i = dist[j], ids[j]
        dist[w], ids[w] = d, i
        w += d <= tau
    _select_hist(dist, ids, w, k, hist, bd, bi)


@njit(cache=True, nogil=True, boundscheck=False)
def _select_hist(dist, ids, n, k, hist, bd, bi):
    """The ``k`` best of ``dist/ids[:n]`` by (distance, id), sorted, into
    ``bd/bi[:k]`` (``k <= n``), by one histogram over all items.

    A histogram of the distances over ``len(hist)`` equal bins between
    their minimum and maximum (a monotone map, so every item of a lower bin
    beats every item of a higher one) finds the bin of the ``k``-th; the
    items below it are all kept, those in it are ranked exactly (by a heap
    when many share it: learned codes give many items one distance), and
    the ``k`` sorted. Branch-light where a heap over all ``n`` items paid a
    mispredicted branch per level per entry (24 ns per item at ``n =
    360``, ``k = 50``)."""
    nb = hist.shape[0]
    lo, hi = dist[0], dist[0]
    for j in range(1, n):
        lo = min(lo, dist[j])
        hi = max(hi, dist[j])
    scale = (nb - 1) / (hi - lo) if hi > lo else 0.0
    for b in range(nb):
        hist[b] = 0
    for j in range(n):
        hist[int((dist[j] - lo) * scale)] += 1
    below = 0
    kb = 0
    while below + hist[kb] < k:
        below += hist[kb]
        kb += 1
    c = 0
    t = below  # the bin's items go after the ``below`` certain ones
    for j in range(n):
        b = int((dist[j] - lo) * scale)
        if b < kb:
            bd[c], bi[c] = dist[j], ids[j]
            c += 1
        elif b == kb:
            bd[t], bi[t] = dist[j], ids[j]
            t += 1
    m = t - below  # the bin's items, at bd/bi[below:t]; k - below are kept
    need = k - below
    if m > 4 * k:  # many ties: a heap keeps the best ``need``
        hd, hx = bd[below:t], bi[below:t]
        for pos in range(need // 2 - 1, -1, -1):
            _sift_down(hd, hx, pos, need)
        for j in range(need, m):
            if _worse(hd[0], hx[0], hd[j], hx[j]):
                hd[0], hx[0] = hd[j], hx[j]
                _sift_down(hd, hx, 0, need)
        _insertion_sort(bd, bi, k)
    else:
        _insertion_sort(bd[below:], bi[below:], m)
        _insertion_sort(bd, bi, k)


#: Candidates :func:`_ivf_adc` holds per query before it narrows them to
#: the ``k`` best (at least ``4 k``): a buffer that stays in the core's
#: cache, and from the first narrowing on a threshold that most items fail
#: (about 1.2-1.4x the scan of 4,800-10,000 items a query at ``N = 10**6``,
#: 64 bits + 8 x 256 codes; 256 and 2,048 measured slower than 512) ...
_ADC_BUFFER = 512
#: ... where a query's probed lists hold more than this many items; up to
#: it, they are all ranked at once (narrowing 500-800 items was 0.86-0.88x).
_ADC_WHOLE = 2048


def _words(codes):
    """Whether ``codes`` are the uint64 words of :func:`scan_words`: a
    constant of the codes' type, so a kernel compiles one reading."""
    return codes.dtype == np.uint64


@overload(_words, inline="always")
def _words_impl(codes):
    flag = codes.dtype == types.uint64
    return lambda codes: flag


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _sums4(lq, lf, codes, p):
    """The table sums of items ``p .. p + 3`` of the query's tables ``lq``
    (``lf`` the same, flat), codebooks in order in float32: four independent
    chains of additions. The codes are read one at a time, or 8 to a load
    where they are the uint64 words of :func:`scan_words` (the scan is
    bound by loads: 2.2 against 2.6 ns an item at 8 x 256 on one core
    here), a word's codebook rows at the constants ``256 b`` of its block;
    the same additions in the same order, so the same sums."""
    s0 = s1 = s2 = s3 = np.float32(0.0)
    if _words(codes):
        for wi in range(codes.shape[1]):
            w0, w1 = codes[p, wi], codes[p + 1, wi]
            w2, w3 = codes[p + 2, wi], codes[p + 3, wi]
            lw = lf[2048 * wi :]
            for b in range(8):
                s0 += lw[256 * b + _code(w0, b)]
                s1 += lw[256 * b + _code(w1, b)]
                s2 += lw[256 * b + _code(w2, b)]
                s3 += lw[256 * b + _code(w3, b)]
    else:
        for m in range(lq.shape[0]):
            lm = lq[m]
            s0 += lm[codes[p, m]]
            s1 += lm[codes[p + 1, m]]
            s2 += lm[codes[p + 2, m]]
            s3 += lm[codes[p + 3, m]]
    return s0, s1, s2, s3


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _sum1(lq, lf, codes, p):
    """The table sum of item ``p`` (as :func:`_sums4`)."""
    s = np.float32(0.0)
    if _words(codes):
        for wi in range(codes.shape[1]):
            w = codes[p, wi]
            lw = lf[2048 * wi :]
            for b in range(8):
                s += lw[256 * b + _code(w, b)]
    else:
        for m in range(lq.shape[0]):
            s += lq[m, codes[p, m]]
    return s


def scan_words(codes, n_words):
    """The codes :func:`_ivf_adc` scans: the words of
    :func:`~skhash.retrieval._numba.code_words` where the codebooks have
    256 words (the tables' rows at constant offsets), else ``codes``."""
    words = code_words(codes) if n_words == 256 else None
    return codes if words is None else words


@njit(cache=True, nogil=True, boundscheck=False)
def _narrow(dist, ids, w, k, hist, bd, bi):
    """Keep the ``k`` best of ``dist/ids[:w]`` (sorted) at their front;
    returns the ``k``-th distance, the threshold of :func:`_ivf_adc`."""
    _select(dist, ids, w, k, hist, bd, bi)
    for j in range(k):
        dist[j], ids[j] = bd[j], bi[j]
    return bd[k - 1]


@njit(cache=True, nogil=True, boundscheck=False)
def _ivf_adc(
    luts, ptr, lists, offsets, ids, codes, mode, q_sq, sq, exclude, k, out_idx, out_dist
):
    """The ``k`` nearest items of each query among all items of its probed
    lists, by their asymmetric distance (faiss's IVF-ADC scan).

    Query ``q`` scans the lists ``lists[ptr[q]:ptr[q + 1]]``; list ``l``
    holds the items ``ids[offsets[l]:offsets[l + 1]]`` whose codes are the
    rows ``codes[offsets[l]:offsets[l + 1]]`` (list order: the scan reads
    contiguous memory; or those rows as the uint64 words of
    :func:`scan_words`, read 8 codes a load; ``luts`` C-contiguous). Each
    item's table sum ``s = Σ_m luts[q, m, c_m]`` runs over ``m`` in order
    in float32, as the re-ranking kernels (four
    items side by side: four independent chains of additions), and its
    distance is, in float64 as the re-ranking computes it: ``mode`` 0
    (inner product) ``-s``; 1 (squared L2, additive codebooks)
    ``max(q_sq[q] - 2 s + sq[id], 0)``; 2 (squared L2, product codebooks,
    ``luts`` the L2 tables) ``max(q_sq[q] + s, 0)``. Item ``exclude[q]``
    (-1: none) is skipped. The ``k`` best by (distance, id) come out in
    that order (:func:`_select`; ``out_dist`` ``inf`` and ``out_idx`` -1
    past the items scanned, which the probe makes at least ``k``).

    Where the probed lists hold more than ``_ADC_WHOLE`` items, the
    candidates go into a buffer of ``max(_ADC_BUFFER, 4 k)``; when it is
    full, it is narrowed to its ``k`` best and their ``k``-th distance
    ``τ`` becomes a threshold: an item farther than ``τ`` has ``k``
    strictly better ones, so it is not kept (ties with ``τ`` are, and rank
    by id at the end). The result is the same as ranking every item; the
    memory no longer grows with the lists scanned, and past the first
    narrowing most items cost a comparison (in float32 on the table sums
    for ``mode`` 0, where ``d <= τ`` is exactly ``s >= -τ``).
    """
    n_q = luts.shape[0]
    if k <= 0:
        return
    cap = max(_ADC_BUFFER, 4 * k)
    whole = max(_ADC_WHOLE, cap)
    dist = np.empty(whole + 4, np.float64)
    idb = np.empty(whole + 4, np.int64)
    bd = np.empty(whole + 4, np.float64)
    bi = np.empty(whole + 4, np.int64)
    hist = np.empty(256, np.int64)
    for q in range(n_q):
        lq = luts[q]
        lf = lq.reshape(-1)
        qq = q_sq[q]
        skip = exclude[q]
        total = 0
        for t in range(ptr[q], ptr[q + 1]):
            total += offsets[lists[t] + 1] - offsets[lists[t]]
        w = 0
        # the items' stores are written out: through an inlined helper the
        # scan of 360-1,300 items a query ran at 0.82-0.90x
        if total <= whole:  # all ranked at the end (w <= total)
            for t in range(ptr[q], ptr[q + 1]):
                lst = lists[t]
                p, end = offsets[lst], offsets[lst + 1]
                while p + 4 <= end:
                    s0, s1, s2, s3 = _sums4(lq, lf, codes, p)
                    i0 = np.int64(ids[p])
                    dist[w], idb[w] = _adc_distance(s0, mode, qq, sq, i0), i0
                    w += i0 != skip
                    i1 = np.int64(ids[p + 1])
                    dist[w], idb[w] = _adc_distance(s1, mode, qq, sq, i1), i1
                    w += i1 != skip
                    i2 = np.int64(ids[p + 2])
                    dist[w], idb[w] = _adc_distance(s2, mode, qq, sq, i2), i2
                    w += i2 != skip
                    i3 = np.int64(ids[p + 3])
                    dist[w], idb[w] = _adc_distance(s3, mode, qq, sq, i3), i3
                    w += i3 != skip
                    p += 4
                for p in range(p, end):
                    s = _sum1(lq, lf, codes, p)
                    i = np.int64(ids[p])
                    dist[w], idb[w] = _adc_distance(s, mode, qq, sq, i), i
                    w += i != skip
        else:  # narrowed to the k best whenever ``cap`` are held
            tau = np.inf
            smin = np.float32(-np.inf)  # mode 0: s >= smin is d <= tau
            for t in range(ptr[q], ptr[q + 1]):
                lst = lists[t]
                p, end = offsets[lst], offsets[lst + 1]
                while p + 4 <= end:
                    s0, s1, s2, s3 = _sums4(lq, lf, codes, p)
                    if mode != 0 or (
                        (s0 >= smin) | (s1 >= smin) | (s2 >= smin) | (s3 >= smin)
                    ):
                        i0 = np.int64(ids[p])
                        d = _adc_distance(s0, mode, qq, sq, i0)
                        dist[w], idb[w] = d, i0
                        w += (d <= tau) & (i0 != skip)
                        i1 = np.int64(ids[p + 1])
                        d = _adc_distance(s1, mode, qq, sq, i1)
                        dist[w], idb[w] = d, i1
                        w += (d <= tau) & (i1 != skip)
                        i2 = np.int64(ids[p + 2])
                        d = _adc_distance(s2, mode, qq, sq, i2)
                        dist[w], idb[w] = d, i2
                        w += (d <= tau) & (i2 != skip)
                        i3 = np.int64(ids[p + 3])
                        d = _adc_distance(s3, mode, qq, sq, i3)
                        dist[w], idb[w] = d, i3
                        w += (d <= tau) & (i3 != skip)
                        if w > cap - 4:
                            tau = _narrow(dist, idb, w, k, hist, bd, bi)
                            smin = np.float32(-tau)
                            w = k
                    p += 4
                for p in range(p, end):
                    s = _sum1(lq, lf, codes, p)
                    i = np.int64(ids[p])
                    d = _adc_distance(s, mode, qq, sq, i)
                    dist[w], idb[w] = d, i
                    w += (d <= tau) & (i != skip)
                    if w > cap - 4:
                        tau = _narrow(dist, idb, w, k, hist, bd, bi)
                        smin = np.float32(-tau)
                        w = k
        m = min(k, w)
        if m > 0:
            _select(dist, idb, w, m, hist, bd, bi)
        for j in range(m):
            out_idx[q, j] = bi[j]
            out_dist[q, j] = bd[j]
        for j in range(m, k):
            out_idx[q, j] = -1
            out_dist[q, j] = np.inf
