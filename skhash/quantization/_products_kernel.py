"""Compiled kernel of :mod:`skhash.quantization._products` (numba);
imported only when a product is computed, so that importing
:mod:`skhash.quantization` does not import numba."""

from __future__ import annotations

from numba import carray, njit

from skhash.quantization._products import WIDTH
from skhash.utils._numba_stack import stack_buffer, wide_vectors


@njit(cache=True, nogil=True, boundscheck=False)
def products_kernel(A, tiled, out):
    """``out[i, t W + l] = Σ_j A[i, j] tiled[t, j, l]``, ``j`` in order.

    ``A`` is ``(n, d)``, ``tiled`` ``(n_tiles, d, W)`` with ``W = WIDTH``,
    ``out`` ``(n, n_tiles W)``, one dtype. Each entry is one chain of
    rounded products and sums over ``j`` (no fused multiply-add, no
    reordering), as the numpy reference. Per tile (which stays in L1) and a
    few rows of ``A`` at a time (four in float32, two in float64), the sums
    run side by side in stack accumulators, which the compiler keeps in
    vector registers (2.6 times faster than a heap one for float32 at 2,048
    x 64; see :func:`~skhash.utils._numba_stack.stack_buffer`). The rows
    share each load of the tile and give independent chains of additions
    per register, where one row at a time waited on each addition's
    latency: float32 at 2,048 x 64 on one core 50-52 GMAC/s one row at a
    time, 86-93 four (the BLAS product: 53); float64 4.9 against 3.1 us a
    row with two rows (with four, the accumulators no longer fit the
    registers). The vector width is the target's default; see
    :func:`wide_products_kernel`.
    """
    if out.itemsize == 4:
        _products4(A, tiled, out)
    else:
        _products2(A, tiled, out)


@njit(cache=True, nogil=True, boundscheck=False, fastmath={"contract"})
def wide_products_kernel(A, tiled, out):
    """:func:`products_kernel` with 512-bit vectors where the CPU has them
    (:func:`~skhash.utils._numba_stack.wide_vectors`) and fused
    multiply-adds: each entry is one chain over ``j`` in order, each step
    ``fma(A[i, j], tiled[t, j, l], sum)`` rounded once (``fastmath`` with
    only ``contract``: no reordering), where the CPU has FMA.

    Why two: on an Intel Xeon with AVX-512, where LLVM picks 256-bit vectors,
    the wide kernel made 53 against 33-37 GMAC/s on the encoder's blocks
    (256 x 65 by 256 x 65), and with fused multiply-adds 68 against 48 (the
    additive encoder's greedy start waits on these products); the search's
    look-up tables built with the wide kernel did not make the IVF search
    faster (0.92-1.04 times over 16 settings at 10**6, mean 0.99, two
    alternated runs; two such runs of one version differ by 0.94-1.10), so
    the search keeps :func:`products_kernel` as it was tuned, the bits of
    the numpy reference. The encoders' products and Gram tables use this
    one: a chain of fused steps is within the error bound of the separate
    ones (each step rounds once instead of twice), which the additive
    encoder's integer ICM allows for; and it is how OpenBLAS computes a
    product (on that Xeon its float32 and float64 results were the same
    bits as this kernel's on 256 x 65 by 65 x 256), so there the greedy
    start's scores are those of the numpy reference's BLAS products. A
    row's entries depend on that row alone, whatever else is in the call.
    """
    wide_vectors()
    if out.itemsize == 4:
        _rows4(A, tiled, out)
    else:
        _rows2(A, tiled, out)


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def tile_products4(A, i, tt, a0, a1, a2, a3):
    """The products of rows ``i .. i + 3`` of ``A`` with the tile ``tt``
    (``(d, WIDTH)``) into the accumulators ``a0 .. a3``, each one chain
    over the dimensions in order (as :func:`products_kernel`)."""
    for x in range(WIDTH):
        a0[x] = 0.0
        a1[x] = 0.0
        a2[x] = 0.0
        a3[x] = 0.0
    for j in range(tt.shape[0]):
        v0, v1, v2, v3 = A[i, j], A[i + 1, j], A[i + 2, j], A[i + 3, j]
        row = tt[j]
        for x in range(WIDTH):
            r = row[x]
            a0[x] += v0 * r
            a1[x] += v1 * r
            a2[x] += v2 * r
            a3[x] += v3 * r


@njit(cache=True, nogil=True, boundscheck=False)
def _products4(A, tiled, out):
    """:func:`products_kernel`, four rows at a time."""
    _rows4(A, tiled, out)


@njit(cache=True, nogil=True, boundscheck=False)
def _products2(A, tiled, out):
    """:func:`products_kernel`, two rows at a time."""
    _rows2(A, tiled, out)


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _rows4(A, tiled, out):
    """The body of :func:`_products4`, inlined there and into
    :func:`wide_products_kernel` (a function's vector width is its own)."""
    n = A.shape[0]
    n_tiles = tiled.shape[0]
    a0 = carray(stack_buffer(out, WIDTH), (WIDTH,))
    a1 = carray(stack_buffer(out, WIDTH), (WIDTH,))
    a2 = carray(stack_buffer(out, WIDTH), (WIDTH,))
    a3 = carray(stack_buffer(out, WIDTH), (WIDTH,))
    for t in range(n_tiles):
        tt = tiled[t]
        base = t * WIDTH
        i = 0
        while i + 4 <= n:
            tile_products4(A, i, tt, a0, a1, a2, a3)
            for x in range(WIDTH):
                out[i, base + x] = a0[x]
                out[i + 1, base + x] = a1[x]
                out[i + 2, base + x] = a2[x]
                out[i + 3, base + x] = a3[x]
            i += 4
        _one_row_tail(A, tt, base, i, out, a0)


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _rows2(A, tiled, out):
    """The body of :func:`_products2` (as :func:`_rows4`)."""
    n = A.shape[0]
    n_tiles, d, _ = tiled.shape
    a0 = carray(stack_buffer(out, WIDTH), (WIDTH,))
    a1 = carray(stack_buffer(out, WIDTH), (WIDTH,))
    for t in range(n_tiles):
        tt = tiled[t]
        base = t * WIDTH
        i = 0
        while i + 2 <= n:
            for x in range(WIDTH):
                a0[x] = 0.0
                a1[x] = 0.0
            for j in range(d):
                v0, v1 = A[i, j], A[i + 1, j]
                row = tt[j]
                for x in range(WIDTH):
                    r = row[x]
                    a0[x] += v0 * r
                    a1[x] += v1 * r
            for x in range(WIDTH):
                out[i, base + x] = a0[x]
                out[i + 1, base + x] = a1[x]
            i += 2
        _one_row_tail(A, tt, base, i, out, a0)


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _one_row_tail(A, tt, base, start, out, acc):
    """The rows ``start:`` of one tile, one at a time."""
    for i in range(start, A.shape[0]):
        for x in range(WIDTH):
            acc[x] = 0.0
        for j in range(tt.shape[0]):
            v = A[i, j]
            row = tt[j]
            for x in range(WIDTH):
                acc[x] += v * row[x]
        for x in range(WIDTH):
            out[i, base + x] = acc[x]
