"""Compiled kernel of the inverted-file stage 1 (numba); see
:mod:`skhash.retrieval._ivf`. Imported only when a search uses the inverted
lists with a numba backend, so that ``import skhash.retrieval`` does not
import numba."""

from __future__ import annotations

import numpy as np
from numba import njit

from skhash.quantization._products_kernel import products_kernel
from skhash.retrieval._adc_scan import _ivf_adc
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
    :func:`_ivf_probe_grouped`) and the scan
    (:func:`~skhash.retrieval._adc_scan._ivf_adc`): the kernels of the
    separate calls of :func:`skhash.retrieval._ivf.search` on the same
    values, so the same bits.

    Why: two threads scale. Each separate call takes and drops the GIL,
    small numpy steps between them hold it, and their per-chunk arrays
    (tables of the whole chunk, room for ``n_q * nlist`` probed lists) are
    fresh memory that both threads fault in at once; here the scratch of
    one block is allocated once per call and reused.

    ``codes`` are the lists' codes as ``_ivf_adc`` takes them (uint64
    words of :func:`~skhash.retrieval._adc_scan.scan_words` where it gives
    them). ``key_words`` (the key codes as uint64 words, 8 uint8 codes
    each; a ``(0, 1)`` array where the codes are not so read) or ``key_codes``
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
