"""Compiled kernels of multi-index hashing (numba); see
:mod:`skhash.retrieval._mih` for the algorithm. Imported only when a search
uses the MIH tables, so that ``import skhash.retrieval`` does not import
numba."""

from __future__ import annotations

import numpy as np
from numba import njit

from skhash.retrieval._numba_bits import _popcount, _prefetch

# Items ahead whose codes the distance loop prefetches.
_PREFETCH = 16
# Bucket keys probed per batch of independent reads.
_KEY_BATCH = 1024


# --------------------------------------------------------------------------- #
# Kernels
# --------------------------------------------------------------------------- #


@njit(cache=True, nogil=True, boundscheck=False)
def _substring_keys(bits, start, length, out):
    """``out[i]`` = bits ``start .. start+length-1`` of row ``i`` (packbits
    order: bit ``p`` is bit ``7 - p % 8`` of byte ``p // 8``), as an int."""
    first, last = start // 8, (start + length - 1) // 8
    for i in range(bits.shape[0]):
        v = np.uint64(0)
        for b in range(first, last + 1):
            v = (v << np.uint64(8)) | np.uint64(bits[i, b])
        tail = np.uint64(8 * (last + 1) - (start + length))
        v = (v >> tail) & np.uint64((1 << length) - 1)
        out[i] = v


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _load_word(db, i, w, n_words, n_bytes):
    """Word ``w`` of row ``i``: bytes ``8w .. 8w + 7``, little-endian, the
    last (partial) word ``n_words`` zero-padded."""
    v = np.uint64(0)
    if w < n_words:
        for b in range(8):
            v |= np.uint64(db[i, 8 * w + b]) << np.uint64(8 * b)
    else:
        for b in range(8 * n_words, n_bytes):
            v |= np.uint64(db[i, b]) << np.uint64(8 * (b - 8 * n_words))
    return v


@njit(cache=True, nogil=True, boundscheck=False)
def _mih_kernel(
    q_bits,
    db,
    starts,
    lengths,
    bases,
    offsets,
    items,
    sub_masks,
    n_cand,
    max_items,
    max_probes,
    out_idx,
    out_dist,
    ok,
    work,
):
    """Exact ``n_cand`` Hamming nearest neighbours per query; see the module
    docstring. ``max_items`` bounds the item ids read (duplicates across
    tables included) and ``max_probes`` the buckets probed; ``ok[q]`` is
    False where a budget was exceeded (the rows of
    that query are then left unwritten); ``work[q]`` = (buckets probed,
    items read). ``sub_masks[j]`` selects the bits of substring ``j`` in the
    words of a code.

    Each (radius, table) step is done in batches of independent memory
    reads, so that the cache misses overlap: first every bucket key of the
    step, then their bucket bounds, then the items of the buckets (their
    codes prefetched ahead).
    """
    n_q, n_bytes = q_bits.shape
    n = db.shape[0]
    m = starts.shape[0]
    n_bits_max = 8 * n_bytes
    n_words = n_bytes // 8
    flat = db.reshape(-1)
    qw = np.zeros(n_words + 1, np.uint64)
    qk = np.zeros(m, np.uint64)
    x = np.zeros(n_words + 1, np.uint64)
    hist = np.zeros(n_bits_max + 1, np.int64)
    cand_i = np.empty(min(max_items, 4 * n_cand + 4096), np.int64)
    cand_d = np.empty(cand_i.shape[0], np.int64)
    key_buf = np.empty(_KEY_BATCH, np.int64)
    lo = np.empty(_KEY_BATCH, np.int64)
    hi = np.empty(_KEY_BATCH, np.int64)
    max_len = 0
    for j in range(m):
        max_len = max(max_len, lengths[j])
    for q in range(n_q):
        row = q_bits[q]
        for w in range(n_words + 1):
            qw[w] = 0
        for b in range(n_bytes):
            qw[b // 8] |= np.uint64(row[b]) << np.uint64(8 * (b % 8))
        for j in range(m):
            b_first, b_last = starts[j] // 8, (starts[j] + lengths[j] - 1) // 8
            v = np.uint64(0)
            for b in range(b_first, b_last + 1):
                v = (v << np.uint64(8)) | np.uint64(row[b])
            tail = np.uint64(8 * (b_last + 1) - (starts[j] + lengths[j]))
            qk[j] = (v >> tail) & np.uint64((1 << lengths[j]) - 1)
        n_seen = 0
        n_read = 0
        probes = 0
        aborted = False
        done = False
        for r in range(max_len + 1):
            for j in range(m):
                s = lengths[j]
                top = np.uint64(1) << np.uint64(s)
                mask = (np.uint64(1) << np.uint64(r)) - np.uint64(1)
                more = r <= s
                while more:
                    # 1. a batch of the keys at distance r from the query's
                    # substring (Gosper's hack: next integer, same popcount)
                    nk = 0
                    while nk < _KEY_BATCH:
                        if probes + nk >= max_probes:
                            aborted = True
                            break
                        key_buf[nk] = np.int64(qk[j] ^ mask)
                        nk += 1
                        if mask == 0:
                            more = False
                            break
                        low = mask & (~mask + np.uint64(1))
                        rr = mask + low
                        mask = (((rr ^ mask) >> np.uint64(2)) // low) | rr
                        if mask >= top:
                            more = False
                            break
                    if aborted:
                        break
                    probes += nk
                    # 2. their bucket bounds
                    base = bases[j]
                    for t in range(nk):
                        if t + _PREFETCH < nk:
                            _prefetch(offsets, base + key_buf[t + _PREFETCH])
                        lo[t] = offsets[base + key_buf[t]]
                        hi[t] = offsets[base + key_buf[t] + 1]
                    # 3. the item ids of the buckets, in a row
                    ibase = j * n
                    w_end = n_seen
                    for t in range(nk):
                        b0, b1 = lo[t], hi[t]
                        if n_read + (w_end - n_seen) + (b1 - b0) > max_items:
                            aborted = True
                            break
                        if w_end + (b1 - b0) > cand_i.shape[0]:  # grow
                            size = max(2 * cand_i.shape[0], w_end + (b1 - b0))
                            grown_i = np.empty(size, np.int64)
                            grown_d = np.empty(size, np.int64)
                            grown_i[:w_end] = cand_i[:w_end]
                            grown_d[:n_seen] = cand_d[:n_seen]
                            cand_i, cand_d = grown_i, grown_d
                        for p in range(b0, b1):
                            cand_i[w_end] = items[ibase + p]
                            w_end += 1
                    n_read += w_end - n_seen
                    # 4. each item is kept where this (r, j) is the first step
                    # that meets it: r is its smallest substring distance and
                    # j the first table with it (so every item is kept once,
                    # with no "seen" marks); the loop has no data-dependent
                    # branch, so the prefetched code reads overlap
                    for p in range(n_seen, w_end):
                        if p + _PREFETCH < w_end:
                            _prefetch(flat, cand_i[p + _PREFETCH] * n_bytes)
                        i = cand_i[p]
                        for w in range(n_words + 1):
                            x[w] = _load_word(db, i, w, n_words, n_bytes) ^ qw[w]
                        d = 0
                        for w in range(n_words + 1):
                            d += _popcount(x[w])
                        is_first = 1
                        for jj in range(m):
                            dj = 0
                            for w in range(n_words + 1):
                                dj += _popcount(x[w] & sub_masks[jj, w])
                            if dj < r or (dj == r and jj < j):
                                is_first = 0
                        cand_i[n_seen] = i
                        cand_d[n_seen] = d
                        hist[d] += is_first
                        n_seen += is_first
                    if aborted:
                        break
                if aborted:
                    break
                bound = min(m * r + j, n_bits_max)
                within = 0
                for d in range(bound + 1):
                    within += hist[d]
                if within >= n_cand or n_seen == n:
                    done = True
                    break
            if done or aborted:
                break
        work[q, 0] = probes
        work[q, 1] = n_read
        if aborted:
            ok[q] = False
        else:
            ok[q] = True
            # threshold t: smallest distance with n_cand met items at or below
            c = 0
            t = 0
            for d in range(n_bits_max + 1):
                c += hist[d]
                if c >= n_cand:
                    t = d
                    break
            keys = np.empty(c, np.int64)
            w = 0
            for p in range(n_seen):
                if cand_d[p] <= t:
                    keys[w] = cand_d[p] * n + cand_i[p]
                    w += 1
            keys.sort()
            for p in range(n_cand):
                out_dist[q, p] = keys[p] // n
                out_idx[q, p] = keys[p] % n
        for p in range(n_seen):
            hist[cand_d[p]] = 0
