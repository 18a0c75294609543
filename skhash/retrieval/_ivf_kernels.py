"""Compiled kernel of the inverted-file stage 1 (numba); see
:mod:`skhash.retrieval._ivf`. Imported only when a search uses the inverted
lists with a numba backend, so that ``import skhash.retrieval`` does not
import numba."""

from __future__ import annotations

import sys

import numpy as np
from numba import njit, types
from numba.extending import overload

from skhash.quantization._products_kernel import products_kernel
from skhash.retrieval._numba import (
    _aqd_all,
    _aqd_all_words,
    _aqd_candidates,
    _sift_down,
    _worse,
)
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


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _sift_up(hk, hi, pos, k, lst):
    """Insert ``(k, lst)`` at the end ``pos`` of the max-heap ``hk/hi[:pos]``
    (by (key, id)) and sift it up."""
    while pos > 0:
        parent = (pos - 1) // 2
        if _worse(k, lst, hk[parent], hi[parent]):
            hk[pos], hi[pos] = hk[parent], hi[parent]
            pos = parent
        else:
            break
    hk[pos], hi[pos] = k, lst


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _sort_heap(hk, hi, size):
    """Heap sort of the max-heap ``hk/hi[:size]``: best first."""
    for end in range(size - 1, 0, -1):  # the worst to the end
        wk, wi = hk[0], hi[0]
        hk[0], hi[0] = hk[end], hi[end]
        _sift_down(hk, hi, 0, end)
        hk[end], hi[end] = wk, wi


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
        _sift_up(hk, hi, size, row[lst], lst)
        size += 1
        lst += 1
    worst = hk[0]
    for lst in range(lst, nl):  # replace the worst, sift down
        k = row[lst]
        if k < worst:
            hk[0], hi[0] = k, lst
            _sift_down(hk, hi, 0, size)
            worst = hk[0]
    _sort_heap(hk, hi, size)


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _take(hi, m, nprobe, n_short, offsets):
    """How many of the ranked lists ``hi[:m]`` a probe takes: at least
    ``nprobe``, and on while they hold fewer than ``n_short`` items.
    Returns ``(j, items held by the first j)``."""
    held = 0
    j = 0
    while j < m and (j < nprobe or held < n_short):
        held += offsets[hi[j] + 1] - offsets[hi[j]]
        j += 1
    return j, held


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _emit(hi, j, lists, w):
    """Append ``hi[:j]`` to ``lists`` at ``w``; returns the new end."""
    for t in range(j):
        lists[w + t] = hi[t]
    return w + j


@njit(cache=True, nogil=True, boundscheck=False)
def _ivf_probe(keys, nprobe, n_short, offsets, ptr, lists):
    """Per query (row of ``keys``), the lists its search scans: the first
    ``j`` by (key, list id), ``j = max(nprobe, the fewest holding n_short
    items)``; CSR into ``ptr`` (``n_q + 1``) and ``lists`` (the total is
    returned; ``lists`` must hold ``n_q * nlist``). The same sets as
    :meth:`InvertedLists.probe <skhash.retrieval._ivf_lists.InvertedLists.probe>`."""
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
            j, held = _take(hi, m, nprobe, n_short, offsets)
            if held >= n_short or m == nl:
                break
            m = min(nl, 4 * m)
        w = _emit(hi, j, lists, w)
        ptr[q + 1] = w
    return w


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
                s0 += lw[256 * b + (w0 & np.uint64(255))]
                s1 += lw[256 * b + (w1 & np.uint64(255))]
                s2 += lw[256 * b + (w2 & np.uint64(255))]
                s3 += lw[256 * b + (w3 & np.uint64(255))]
                w0 >>= np.uint64(8)
                w1 >>= np.uint64(8)
                w2 >>= np.uint64(8)
                w3 >>= np.uint64(8)
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
                s += lw[256 * b + (w & np.uint64(255))]
                w >>= np.uint64(8)
    else:
        for m in range(lq.shape[0]):
            s += lq[m, codes[p, m]]
    return s


def scan_words(codes, n_words):
    """The codes :func:`_ivf_adc` scans: the rows of ``codes`` as uint64
    words where it can read them so (uint8 codes of 256-word codebooks, a
    multiple of 8 of them, C-contiguous, little-endian), else ``codes``."""
    if (
        codes.dtype == np.uint8
        and n_words == 256
        and codes.ndim == 2
        and codes.shape[1] % 8 == 0
        and codes.shape[1] > 0
        and codes.flags.c_contiguous
        and sys.byteorder == "little"
    ):
        return codes.view(np.uint64)
    return codes


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


@njit(cache=True, nogil=True, boundscheck=False)
def _best_pairs(keys, ids, n, m, hk, hi):
    """The ``m`` best of the pairs ``(keys[t], ids[t])``, ``t < n``, by
    (key, id), best first, in ``hk/hi[:m]`` (as :func:`_best_lists`, for
    ids in no particular order)."""
    size = 0
    t = 0
    while t < n and size < m:  # fill the heap, sifting up
        _sift_up(hk, hi, size, keys[t], ids[t])
        size += 1
        t += 1
    for t in range(t, n):  # replace the worst, sift down
        k, lst = keys[t], ids[t]
        if _worse(hk[0], hi[0], k, lst):
            hk[0], hi[0] = k, lst
            _sift_down(hk, hi, 0, size)
    _sort_heap(hk, hi, size)


@njit(cache=True, nogil=True, boundscheck=False)
def _ivf_probe_grouped(
    luts,
    gkeys,
    gptr,
    glists,
    codes,
    metric,
    c_sq,
    nprobe,
    n_short,
    n_groups,
    factor,
    offsets,
    ptr,
    lists,
):
    """:func:`_ivf_probe` over the lists of each query's best groups only
    (see :meth:`InvertedLists.probe_lists
    <skhash.retrieval._ivf_lists.InvertedLists.probe_lists>`).

    Per query (row of ``gkeys``, the groups' keys): the first ``g`` groups
    by (key, group id), ``g`` from ``n_groups`` doubled until their lists
    hold ``n_short`` items and number ``factor`` times the lists a probe
    first considers (or every group is taken); the keys of those lists only,
    the same bits as :meth:`~skhash.retrieval._ivf_lists.InvertedLists.list_keys`
    (the look-up-table entries of ``codes`` summed in codebook order, then
    ``-s`` for ``metric=0``, ``-2 s + c_sq`` for ``metric=1``); of them, the
    first ``j`` by (key, list id), ``j`` as in :func:`_ivf_probe`. CSR into
    ``ptr`` and ``lists`` (which must hold ``n_q * nlist``)."""
    n_q, n_g = gkeys.shape
    nl = offsets.shape[0] - 1
    gk = np.empty(n_g, gkeys.dtype)
    gi = np.empty(n_g, np.int64)
    ck = np.empty(nl, np.float32)
    ci = np.empty(nl, np.int64)
    hk = np.empty(nl, np.float32)
    hi = np.empty(nl, np.int64)
    mean_size = max(1.0, (offsets[nl] - offsets[0]) / nl)
    m0 = min(nl, max(nprobe, int(2.0 * n_short / mean_size) + 1))
    want = factor * m0
    w = 0
    ptr[0] = 0
    for q in range(n_q):
        g = min(n_g, n_groups)
        while True:
            _best_lists(gkeys[q], g, gk, gi)
            n = 0
            held = 0
            for t in range(g):
                grp = gi[t]
                for p in range(gptr[grp], gptr[grp + 1]):
                    lst = glists[p]
                    ci[n] = lst
                    held += offsets[lst + 1] - offsets[lst]
                    n += 1
            if (held >= n_short and n >= want) or g == n_g:
                break
            g = min(n_g, 2 * g)
        # the candidates' table sums, as the re-ranking sums them
        _aqd_candidates(
            luts[q : q + 1], ci[:n].reshape((1, n)), codes, ck[:n].reshape((1, n))
        )
        for t in range(n):
            if metric == 0:
                ck[t] = -ck[t]
            else:
                ck[t] = np.float32(-2.0) * ck[t] + c_sq[ci[t]]
        m = min(n, m0)
        while True:
            _best_pairs(ck, ci, n, m, hk, hi)
            j, held = _take(hi, m, nprobe, n_short, offsets)
            if held >= n_short or m == n:
                break
            m = min(n, 4 * m)
        w = _emit(hi, j, lists, w)
        ptr[q + 1] = w
    return w


#: Queries per block of :func:`_ivf_scan`: their look-up tables (8 KiB a
#: query at 8 x 256) stay in the core's cache with the codewords' tiles.
_SCAN_BLOCK = 32


@njit(cache=True, nogil=True, boundscheck=False)
def _ivf_scan(
    emb,
    tiles,
    n_books,
    n_words,
    key_words,
    key_codes,
    key_sq,
    metric,
    grouped,
    gptr,
    glists,
    centroid_codes,
    c_sq,
    nprobe,
    n_short,
    n_groups,
    factor,
    offsets,
    ids,
    codes,
    mode,
    q_sq,
    sq,
    exclude,
    k,
    out_idx,
    out_dist,
):
    """A chunk of queries' whole IVF-ADC search in one call, without the
    GIL: per block of :data:`_SCAN_BLOCK` queries, the look-up tables
    (:func:`products_kernel` of the embeddings ``emb`` and the codewords'
    ``tiles``), the keys of the coded centroids (or of the groups' centres,
    ``grouped``), the probe (:func:`_ivf_probe` or
    :func:`_ivf_probe_grouped`) and the scan (:func:`_ivf_adc`): the
    kernels of the separate calls of :func:`skhash.retrieval._ivf.search`
    on the same values, so the same bits.

    Why: two threads scale. Each separate call takes and drops the GIL,
    small numpy steps between them hold it, and their per-chunk arrays
    (tables of the whole chunk, room for ``n_q * nlist`` probed lists) are
    fresh memory that both threads fault in at once; here the scratch of
    one block is allocated once per call and reused.

    ``codes`` are the lists' codes as :func:`_ivf_adc` takes them (uint64
    words of :func:`scan_words` where it gives them). ``key_words`` (the
    key codes as uint64 words, 8 uint8 codes each; a
    ``(0, 1)`` array where the codes are not so read) or ``key_codes``
    give the codes whose keys rank the lists or groups, ``key_sq`` their
    squared norms (``metric=1``); ``emb`` is float32, ``tiles`` of
    :func:`~skhash.quantization._products.tile_rows`.
    """
    n = emb.shape[0]
    width = tiles.shape[0] * tiles.shape[2]
    n_keys = key_codes.shape[0]
    nl = offsets.shape[0] - 1
    block = min(n, _SCAN_BLOCK)
    full = np.empty((block, width), np.float32)
    luts = np.empty((block, n_books, n_words), np.float32)
    keys = np.empty((block, n_keys), np.float32)
    ptr = np.empty(block + 1, np.int64)
    lists = np.empty(block * nl, np.int64)
    for s in range(0, n, block):
        e = min(n, s + block)
        b = e - s
        products_kernel(emb[s:e], tiles, full[:b])
        if width == n_books * n_words:  # no padding: the products are the tables
            lb = full[:b].reshape((b, n_books, n_words))
        else:
            for q in range(b):  # the tiles' padding dropped
                for m in range(n_books):
                    for c in range(n_words):
                        luts[q, m, c] = full[q, m * n_words + c]
            lb = luts[:b]
        kb = keys[:b]
        if key_words.shape[0] == n_keys:
            _aqd_all_words(lb, key_words, kb)
        else:
            _aqd_all(lb, key_codes, kb)
        for q in range(b):
            for j in range(n_keys):
                if metric == 0:
                    kb[q, j] = -kb[q, j]
                else:
                    kb[q, j] = np.float32(-2.0) * kb[q, j] + key_sq[j]
        if grouped:
            _ivf_probe_grouped(
                lb,
                kb,
                gptr,
                glists,
                centroid_codes,
                metric,
                c_sq,
                nprobe,
                n_short,
                n_groups,
                factor,
                offsets,
                ptr,
                lists,
            )
        else:
            _ivf_probe(kb, nprobe, n_short, offsets, ptr, lists)
        _ivf_adc(
            lb,
            ptr,
            lists,
            offsets,
            ids,
            codes,
            mode,
            q_sq[s:e],
            sq,
            exclude[s:e],
            k,
            out_idx[s:e],
            out_dist[s:e],
        )
