"""Compiled kernel of :mod:`skhash.quantization._products` (numba);
imported only when a product is computed, so that importing
:mod:`skhash.quantization` does not import numba."""

from __future__ import annotations

import numpy as np
from numba import njit

#: Queries summed side by side per tile (each tile row is loaded once).
ROWS = 8


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _accumulate(A, i0, nr, tt, acc, w):
    """``acc[r w + x] += Σ_j A[i0 + r, j] tt[j, x]`` for ``r < nr``, ``j`` in
    order; inlined, so that ``nr = ROWS`` is a constant trip count."""
    for j in range(A.shape[1]):
        row = tt[j]
        for r in range(nr):
            a = A[i0 + r, j]
            base = r * w
            for x in range(w):
                acc[base + x] += a * row[x]


@njit(cache=True, nogil=True, boundscheck=False)
def products_kernel(A, tiled, out):
    """``out[i, t W + l] = Σ_j A[i, j] tiled[t, j, l]``, ``j`` in order.

    ``A`` is ``(n, d)``, ``tiled`` ``(n_tiles, d, W)``, ``out`` ``(n,
    n_tiles W)``, one dtype. Each entry is one chain of rounded products and
    sums over ``j`` (no fused multiply-add, no reordering), as the numpy
    reference; queries go ``ROWS`` at a time over each tile (one ``(ROWS,
    W)`` accumulator), so the tile stays in L1.
    """
    n = A.shape[0]
    n_tiles, _, w = tiled.shape
    acc = np.empty(ROWS * w, dtype=out.dtype)
    for t in range(n_tiles):
        tt = tiled[t]
        for i0 in range(0, n, ROWS):
            nr = min(ROWS, n - i0)
            for x in range(ROWS * w):
                acc[x] = 0.0
            if nr == ROWS:  # a constant trip count: unrolled, vectorised
                _accumulate(A, i0, ROWS, tt, acc, w)
            else:
                _accumulate(A, i0, nr, tt, acc, w)
            for r in range(nr):
                for x in range(w):
                    out[i0 + r, t * w + x] = acc[r * w + x]
