"""Compiled nearest-centroid kernel of the inverted lists' build (numba);
see :mod:`skhash.retrieval._ivf_assign`. Imported only when a build scores
items against centroids, so that ``import skhash.retrieval`` does not import
numba."""

from __future__ import annotations

import numpy as np
from numba import carray, njit

from skhash.quantization._products import WIDTH
from skhash.quantization._products_kernel import tile_products4
from skhash.utils._numba_stack import stack_buffer

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
    """
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
