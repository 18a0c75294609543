"""Compiled nearest-centroid kernel of the inverted lists' build (numba);
see :mod:`skhash.retrieval._ivf_assign`. Imported only when a build scores
items against centroids, so that ``import skhash.retrieval`` does not import
numba."""

from __future__ import annotations

import numpy as np
from numba import carray, njit

from skhash.quantization._products import WIDTH
from skhash.quantization._products_kernel import tile_products4
from skhash.utils._numba_stack import stack_buffer, wide_vectors

#: Rows per block of :func:`nearest_kernel` (a block's rows and a tile of
#: centroids stay in the caches while the block runs through the tiles).
_NEAREST_ROWS = 256


@njit(cache=True, nogil=True, boundscheck=False)
def nearest_kernel(X, tiled, sq, n_cols, out, best, vals):
    """``out[i]``: the column ``c < n_cols`` of the smallest
    ``sq[c] - 2 ⟨X[i], B[c]⟩`` (the first of equal ones), and ``vals[i]``
    that smallest value, for the rows of
    ``B`` held in ``tiled`` (:func:`~skhash.quantization._products.tile_rows`)
    and their squared norms ``sq``, padded to whole tiles with ``inf``.

    Each inner product is one chain of rounded products and sums over the
    dimensions in order (as :func:`~skhash.quantization._products_kernel.
    products_kernel`, whose numpy reference gives the same bits), so a row's
    result does not depend on the rows it is computed with. Blocks of
    ``_NEAREST_ROWS`` rows run through the tiles, keeping each row's best
    so far in ``best`` (``_NEAREST_ROWS`` floats): no ``(rows, n_cols)``
    matrix of distances, which a BLAS product would write out and numpy's
    ``argmin`` read back from memory (the larger part of the time, with
    thousands of lists). Four rows go through a tile side by side, as in
    :func:`~skhash.quantization._products_kernel.products_kernel`: they
    share each load of the tile, and their chains of additions are
    independent, where one row at a time waited on each addition's latency.
    The loops use 512-bit vectors where the CPU has them
    (:func:`~skhash.utils._numba_stack.wide_vectors`).
    """
    wide_vectors()
    n, d = X.shape
    n_tiles = tiled.shape[0]
    a0 = carray(stack_buffer(best, WIDTH), (WIDTH,))
    a1 = carray(stack_buffer(best, WIDTH), (WIDTH,))
    a2 = carray(stack_buffer(best, WIDTH), (WIDTH,))
    a3 = carray(stack_buffer(best, WIDTH), (WIDTH,))
    for s in range(0, n, _NEAREST_ROWS):
        e = min(n, s + _NEAREST_ROWS)
        for i in range(s, e):
            best[i - s] = np.inf
            out[i] = 0
        for t in range(n_tiles):
            tt = tiled[t]
            base = t * WIDTH
            lim = min(WIDTH, n_cols - base)
            i = s
            while i + 4 <= e:
                tile_products4(X, i, tt, a0, a1, a2, a3)
                _tile_best(a0, sq, base, lim, best, out, i, s)
                _tile_best(a1, sq, base, lim, best, out, i + 1, s)
                _tile_best(a2, sq, base, lim, best, out, i + 2, s)
                _tile_best(a3, sq, base, lim, best, out, i + 3, s)
                i += 4
            for i in range(i, e):
                for x in range(WIDTH):
                    a0[x] = 0.0
                for j in range(d):
                    v0 = X[i, j]
                    row = tt[j]
                    for x in range(WIDTH):
                        a0[x] += v0 * row[x]
                _tile_best(a0, sq, base, lim, best, out, i, s)
        for i in range(s, e):
            vals[i] = best[i - s]


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _tile_best(acc, sq, base, lim, best, out, i, s):
    """Row ``i``'s distances to one tile's columns from its products
    ``acc``: their minimum (vectorised), and only when it beats the row's
    best, where it is (the first of equal ones)."""
    mn = np.float32(np.inf)
    for x in range(WIDTH):
        v = sq[base + x] - np.float32(2.0) * acc[x]
        acc[x] = v
        mn = min(mn, v)
    if mn < best[i - s]:
        for x in range(lim):
            if acc[x] == mn:
                best[i - s] = mn
                out[i] = base + x
                break


# --------------------------------------------------------------------------- #
# assignment among the lists of each row's nearest groups
# --------------------------------------------------------------------------- #


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _worst_slot(slot_v, top, i, n_probe):
    """The slot of largest (key, column) among row ``i``'s."""
    w = 0
    for j in range(1, n_probe):
        if slot_v[j] > slot_v[w] or (slot_v[j] == slot_v[w] and top[i, j] > top[i, w]):
            w = j
    return w


@njit(cache=True, nogil=True, boundscheck=False)
def top_groups_kernel(keys, n_probe, top):
    """``top[i]``: the ``n_probe`` columns of smallest ``keys[i]`` by (key,
    column), as the numpy ``_smallest`` chooses them (NaN counts as
    ``inf``), in no particular order."""
    n, n_groups = keys.shape
    slot_v = np.empty(n_probe, dtype=np.float32)
    for i in range(n):
        # the first n_probe columns fill the slots, then any smaller key
        # (an equal one comes from a later column: never) replaces the worst
        for j in range(n_probe):
            v = keys[i, j]
            slot_v[j] = np.inf if v != v else v
            top[i, j] = j
        w = _worst_slot(slot_v, top, i, n_probe)
        for c in range(n_probe, n_groups):
            v = keys[i, c]
            if v != v:
                v = np.inf
            if v < slot_v[w]:
                slot_v[w] = v
                top[i, w] = c
                w = _worst_slot(slot_v, top, i, n_probe)


@njit(cache=True, nogil=True, boundscheck=False)
def bucket_pairs(top, n_groups, bounds, pairs):
    """The ``(row, probe)`` pairs ``p = row * n_probe + j`` sorted by their
    group ``top.ravel()[p]`` (stable: by ``p`` within a group), with CSR
    ``bounds`` (a counting sort)."""
    flat = top.ravel()
    for g in range(n_groups + 1):
        bounds[g] = 0
    for p in range(flat.shape[0]):
        bounds[flat[p] + 1] += 1
    for g in range(n_groups):
        bounds[g + 1] += bounds[g]
    fill = bounds[:n_groups].copy()
    for p in range(flat.shape[0]):
        g = flat[p]
        pairs[fill[g]] = p
        fill[g] += 1


@njit(cache=True, nogil=True, boundscheck=False)
def grouped_kernel(
    X,
    n_probe,
    pairs,
    bounds,
    tiles,
    tile_ptr,
    sqpad,
    n_cols,
    g_lo,
    g_hi,
    local,
    vals,
    buf,
    best,
):
    """For the groups ``g_lo .. g_hi - 1``: each pair's row (``X[p //
    n_probe]``, copied in blocks into ``buf``) against the tiles of the
    group's lists (``tiles[tile_ptr[g]:tile_ptr[g + 1]]``, their squared
    norms in ``sqpad``, ``n_cols[g]`` lists): :func:`nearest_kernel`'s
    column (``local``, into the group's lists) and score (``vals``), in the
    pairs' sorted order. 512-bit vectors where the CPU has them (as
    :func:`nearest_kernel`'s, which this one may inline)."""
    wide_vectors()
    d = X.shape[1]
    for g in range(g_lo, g_hi):
        a, b = bounds[g], bounds[g + 1]
        t0, t1 = tile_ptr[g], tile_ptr[g + 1]
        for s in range(a, b, _NEAREST_ROWS):
            e = min(b, s + _NEAREST_ROWS)
            for i in range(s, e):
                r = pairs[i] // n_probe
                for j in range(d):
                    buf[i - s, j] = X[r, j]
            nearest_kernel(
                buf[: e - s],
                tiles[t0:t1],
                sqpad[t0 * WIDTH : t1 * WIDTH],
                n_cols[g],
                local[s:e],
                best,
                vals[s:e],
            )


@njit(cache=True, nogil=True, boundscheck=False)
def combine_pairs(pairs, local, vals, offsets, lists, n_probe, top, out):
    """``out[row]``: the list of smallest score over the row's pairs (the
    lower list id among equal ones); pair ``k`` in sorted order, of group
    ``g``, scored the group's ``local[k]``-th list ``lists[offsets[g] +
    local[k]]``."""
    n = out.shape[0]
    best_v = np.full(n, np.inf, dtype=np.float32)
    for i in range(n):
        out[i] = np.iinfo(np.int64).max
    for k in range(pairs.shape[0]):
        p = pairs[k]
        i = p // n_probe
        g = top[i, p - i * n_probe]
        c = lists[offsets[g] + local[k]]
        v = vals[k]
        if v < best_v[i] or (v == best_v[i] and c < out[i]):
            best_v[i] = v
            out[i] = c
