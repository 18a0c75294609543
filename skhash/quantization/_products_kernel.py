"""Compiled kernel of :mod:`skhash.quantization._products` (numba);
imported only when a product is computed, so that importing
:mod:`skhash.quantization` does not import numba."""

from __future__ import annotations

from numba import carray, njit

from skhash.quantization._products import WIDTH
from skhash.utils._numba_stack import stack_buffer


@njit(cache=True, nogil=True, boundscheck=False)
def products_kernel(A, tiled, out):
    """``out[i, t W + l] = Σ_j A[i, j] tiled[t, j, l]``, ``j`` in order.

    ``A`` is ``(n, d)``, ``tiled`` ``(n_tiles, d, W)`` with ``W = WIDTH``,
    ``out`` ``(n, n_tiles W)``, one dtype. Each entry is one chain of
    rounded products and sums over ``j`` (no fused multiply-add, no
    reordering), as the numpy reference. Per tile (which stays in L1) and
    query, the ``W`` sums run side by side in a stack accumulator, which the
    compiler keeps in vector registers (2.6 times faster than a heap one
    for float32 at 2,048 x 64; see :func:`~skhash.utils._numba_stack.
    stack_buffer`).
    """
    n = A.shape[0]
    n_tiles, d, _ = tiled.shape
    acc = carray(stack_buffer(out, WIDTH), (WIDTH,))
    for t in range(n_tiles):
        tt = tiled[t]
        for i in range(n):
            for x in range(WIDTH):
                acc[x] = 0.0
            for j in range(d):
                a = A[i, j]
                row = tt[j]
                for x in range(WIDTH):
                    acc[x] += a * row[x]
            for x in range(WIDTH):
                out[i, t * WIDTH + x] = acc[x]
