"""Stage 1 of the compiled search (numba): the fused XOR-popcount and
selection of the ``L`` nearest codes, ``_shortlist_kernel``. The algorithm
(streamed chunks, running threshold, bounded buffer, counting sort) is
described in :mod:`skhash.retrieval._numba`, whose backend calls it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from skhash.retrieval._numba_bits import _popcount, _trailing_zeros

__all__ = []

# Items per group: one vectorised threshold test covers GROUP items.
GROUP = 64

# Selection state of query q (rows of arrays shared by a block of queries):
#   hist[q, d]  number of buffered items at distance d
#   bd[q, :n]   buffered distances, bi[q, :n] their database indices (in
#               index order, as scanned)
#   st[q]       (n, count of buffered items at distance <= t, t)
# Invariant: t = min(sentinel, smallest d with count(<= d) >= L); an item is
# accepted iff its distance is < t.


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _accept(hist, bd, bi, st, q, d, idx, n_cand):
    """Buffer item ``idx`` at distance ``d`` (< t) and lower t; return t."""
    cap = bd.shape[1]
    t = st[q, 2]
    n = st[q, 0]
    if n == cap:  # compact: keep the n_cand best, in index order
        below = st[q, 1] - hist[q, t]
        need = n_cand - below
        w = 0
        for r in range(cap):
            dr = bd[q, r]
            if dr < t or (dr == t and need > 0):
                if dr == t:
                    need -= 1
                bd[q, w] = dr
                bi[q, w] = bi[q, r]
                w += 1
        for b in range(t + 1, hist.shape[1]):
            hist[q, b] = 0
        hist[q, t] = n_cand - below
        st[q, 1] = n_cand
        n = w
    bd[q, n] = d
    bi[q, n] = idx
    st[q, 0] = n + 1
    hist[q, d] += 1
    c = st[q, 1] + 1
    while c - hist[q, t] >= n_cand:
        c -= hist[q, t]
        t -= 1
    st[q, 1] = c
    st[q, 2] = t
    return t


@njit(cache=True, nogil=True, boundscheck=False)
def _scan_one_word(blk, start, qv, q, n_cand, hist, bd, bi, st):
    """Scan ``(n_groups, GROUP)`` single-word codes for query ``q``."""
    t = st[q, 2]
    for g in range(blk.shape[0]):
        hit = False
        for j in range(GROUP):
            hit |= _popcount(qv ^ blk[g, j]) < t
        if hit:
            mask = np.uint64(0)
            for j in range(GROUP):
                mask |= np.uint64(_popcount(qv ^ blk[g, j]) < t) << np.uint64(j)
            while mask:
                j = _trailing_zeros(mask)
                mask &= mask - np.uint64(1)
                d = np.int64(_popcount(qv ^ blk[g, j]))
                if d < t:
                    t = _accept(hist, bd, bi, st, q, d, start + g * GROUP + j, n_cand)


@njit(cache=True, nogil=True, boundscheck=False)
def _scan_two_words(blk, start, qa, qb, q, n_cand, hist, bd, bi, st):
    """Scan ``(n_groups, 2, GROUP)`` two-word (65 to 128-bit) codes."""
    t = st[q, 2]
    for g in range(blk.shape[0]):
        hit = False
        for j in range(GROUP):
            hit |= _popcount(qa ^ blk[g, 0, j]) + _popcount(qb ^ blk[g, 1, j]) < t
        if hit:
            for j in range(GROUP):
                d = np.int64(
                    _popcount(qa ^ blk[g, 0, j]) + _popcount(qb ^ blk[g, 1, j])
                )
                if d < t:
                    t = _accept(hist, bd, bi, st, q, d, start + g * GROUP + j, n_cand)


@njit(cache=True, nogil=True, boundscheck=False)
def _scan_words(blk, start, qrow, q, n_cand, acc, hist, bd, bi, st):
    """Scan ``(n_groups, W, GROUP)`` multi-word codes for query ``q``."""
    t = st[q, 2]
    n_words = blk.shape[1]
    for g in range(blk.shape[0]):
        for j in range(GROUP):
            acc[j] = 0
        for w in range(n_words):
            qv = qrow[w]
            for j in range(GROUP):
                acc[j] += _popcount(qv ^ blk[g, w, j])
        hit = False
        for j in range(GROUP):
            hit |= acc[j] < t
        if hit:
            for j in range(GROUP):
                d = acc[j]
                if d < t:
                    t = _accept(hist, bd, bi, st, q, d, start + g * GROUP + j, n_cand)


@njit(cache=True, nogil=True, boundscheck=False)
def _scan_tail(blk, n_items, start, qrow, q, n_cand, hist, bd, bi, st):
    """Scan the first ``n_items`` of a ``(1, W, GROUP)`` partial group."""
    t = st[q, 2]
    for j in range(n_items):
        d = 0
        for w in range(blk.shape[1]):
            d += _popcount(qrow[w] ^ blk[0, w, j])
        if d < t:
            t = _accept(hist, bd, bi, st, q, np.int64(d), start + j, n_cand)


@njit(cache=True, nogil=True, boundscheck=False)
def _load_chunk(src, bytes_per_word, start, stop, n_words, scratch):
    """Copy items ``[start, stop)`` into ``scratch`` as ``(groups, W, GROUP)``.

    ``src`` holds packed bytes, assembled little-endian into words of
    ``bytes_per_word`` bytes (4 or 8), zero-padded past the last byte.
    """
    n_groups = (stop - start + GROUP - 1) // GROUP
    n_src = src.shape[1]
    if n_src == bytes_per_word * n_words:
        # whole words: constant-size assemblies, which LLVM turns into loads
        for j in range(stop - start):
            base = (j // GROUP) * n_words * GROUP + j % GROUP
            row = src[start + j]
            for w in range(n_words):
                v = np.uint64(0)
                if bytes_per_word == 8:
                    for b in range(8):
                        v |= np.uint64(row[8 * w + b]) << np.uint64(8 * b)
                else:
                    for b in range(4):
                        v |= np.uint64(row[4 * w + b]) << np.uint64(8 * b)
                scratch[base + w * GROUP] = v
        if (stop - start) % GROUP:  # zero the rest of the last group
            for j in range(stop - start, n_groups * GROUP):
                base = (j // GROUP) * n_words * GROUP + j % GROUP
                for w in range(n_words):
                    scratch[base + w * GROUP] = 0
        return n_groups
    for i in range(n_groups * n_words * GROUP):
        scratch[i] = 0
    for j in range(stop - start):
        base = (j // GROUP) * n_words * GROUP + j % GROUP
        row = src[start + j]
        for b in range(n_src):
            w = b // bytes_per_word
            shift = np.uint64(8 * (b % bytes_per_word))
            scratch[base + w * GROUP] |= np.uint64(row[b]) << shift
    return n_groups


@njit(cache=True, nogil=True, boundscheck=False)
def _finish(q, n_cand, hist, bd, bi, st, out_idx, out_dist):
    """Write the ``n_cand`` best of query ``q`` (rows out_*) by (distance, index)."""
    n, t = st[q, 0], st[q, 2]
    below = st[q, 1] - hist[q, t]
    # offsets of a counting sort over distances 0..t (hist[t] -> the need)
    hist[q, t] = n_cand - below
    pos = 0
    for d in range(t + 1):
        c = hist[q, d]
        hist[q, d] = pos
        pos += c
    need = n_cand - below
    for r in range(n):
        d = bd[q, r]
        if d < t or (d == t and need > 0):
            if d == t:
                need -= 1
            p = hist[q, d]
            hist[q, d] = p + 1
            out_idx[p] = bi[q, r]
            out_dist[p] = d


@njit(cache=True, nogil=True, boundscheck=False)
def _sampled_threshold(src, bytes_per_word, qrow, n_sample, n_cand, counts):
    """A starting threshold from every ``N // n_sample``-th item.

    With ``n_sample = 16 N / L``: the smallest distance ``s`` with 32 sampled
    items at or below it; ``s + 1`` then lets through about ``2 L`` items of
    the whole database, instead of every item until the running threshold
    settles (about ``L ln(N / L)`` items). If fewer than ``L`` items fall
    below it (an unlucky sample, probability about 1e-4), the query is
    searched again without it.
    """
    n, n_src = src.shape
    stride = n // n_sample
    whole = n_src == bytes_per_word * qrow.shape[0]
    counts[:] = 0
    for i in range(n_sample):
        row = src[i * stride]
        d = 0
        for w in range(qrow.shape[0]):
            v = np.uint64(0)
            if whole and bytes_per_word == 8:
                for b in range(8):
                    v |= np.uint64(row[8 * w + b]) << np.uint64(8 * b)
            else:
                for b in range(
                    w * bytes_per_word, min(n_src, (w + 1) * bytes_per_word)
                ):
                    v |= np.uint64(row[b]) << np.uint64(8 * (b - w * bytes_per_word))
            d += _popcount(np.uint64(qrow[w]) ^ v)
        counts[d] += 1
    want = 2.0 * n_cand * n_sample / n
    c = 0
    for t in range(counts.shape[0]):
        c += counts[t]
        if c >= want:
            return t + 1
    return counts.shape[0] - 1


@njit(cache=True, nogil=True, boundscheck=False)
def _shortlist_kernel(
    q_words,
    src,
    bytes_per_word,
    n_cand,
    chunk_items,
    block,
    n_sample,
    out_idx,
    out_dist,
    ok,
):
    """Stage 1 for all queries; see the module docstring.

    ``q_words`` is ``(n_queries, W)`` zero-padded words (uint32 or uint64),
    ``src`` the packed database bytes; ``block`` queries share one pass
    over the database. With ``n_sample > 0`` each query starts from a
    sampled threshold (:func:`_sampled_threshold`); ``ok[q]`` is False where
    that threshold proved too low (the query must be searched again with
    ``n_sample = 0``).
    """
    n_q, n_words = q_words.shape
    n = src.shape[0]
    max_d = n_words * 8 * q_words.itemsize
    cap = 2 * n_cand + 64
    block = min(block, n_q)
    hist = np.zeros((block, max_d + 2), np.int64)
    bd = np.empty((block, cap), np.int64)
    bi = np.empty((block, cap), np.int64)
    st = np.zeros((block, 3), np.int64)
    acc = np.zeros(GROUP, np.int64)
    scratch = np.zeros(chunk_items * n_words, q_words.dtype)
    n_full = (n // GROUP) * GROUP
    for q0 in range(0, n_q, block):
        q1 = min(n_q, q0 + block)
        hist[:] = 0
        st[:, 0] = 0
        st[:, 1] = 0
        st[:, 2] = max_d + 1
        if n_sample > 0:
            for q in range(q0, q1):
                st[q - q0, 2] = _sampled_threshold(
                    src, bytes_per_word, q_words[q], n_sample, n_cand, hist[q - q0]
                )
            hist[:] = 0
        for start in range(0, n, chunk_items):
            stop = min(n, start + chunk_items)
            full_stop = min(stop, n_full) if start < n_full else start
            if full_stop > start:
                n_groups = _load_chunk(
                    src, bytes_per_word, start, full_stop, n_words, scratch
                )
                size = n_groups * n_words * GROUP
                if n_words == 1:
                    blk = scratch[:size].reshape(n_groups, GROUP)
                    for q in range(q0, q1):
                        _scan_one_word(
                            blk, start, q_words[q, 0], q - q0, n_cand, hist, bd, bi, st
                        )
                elif n_words == 2:
                    blk3 = scratch[:size].reshape(n_groups, n_words, GROUP)
                    for q in range(q0, q1):
                        _scan_two_words(
                            blk3,
                            start,
                            q_words[q, 0],
                            q_words[q, 1],
                            q - q0,
                            n_cand,
                            hist,
                            bd,
                            bi,
                            st,
                        )
                else:
                    blk3 = scratch[:size].reshape(n_groups, n_words, GROUP)
                    for q in range(q0, q1):
                        _scan_words(
                            blk3,
                            start,
                            q_words[q],
                            q - q0,
                            n_cand,
                            acc,
                            hist,
                            bd,
                            bi,
                            st,
                        )
            if stop > full_stop:  # the last, partial group
                _load_chunk(src, bytes_per_word, full_stop, stop, n_words, scratch)
                tail = scratch[: n_words * GROUP].reshape(1, n_words, GROUP)
                for q in range(q0, q1):
                    _scan_tail(
                        tail,
                        stop - full_stop,
                        full_stop,
                        q_words[q],
                        q - q0,
                        n_cand,
                        hist,
                        bd,
                        bi,
                        st,
                    )
        for q in range(q0, q1):
            ok[q] = st[q - q0, 1] >= n_cand
            if ok[q]:
                _finish(q - q0, n_cand, hist, bd, bi, st, out_idx[q], out_dist[q])
