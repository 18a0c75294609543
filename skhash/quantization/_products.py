"""Query-by-codeword products summed in one fixed order, free of the GIL.

The look-up tables of asymmetric distances are ``⟨q, C_mk⟩`` for every
codeword: a small matrix product per batch of queries. A BLAS product picks
its blocking, and so its rounding, from the shape of the whole call, so a
query's tables would change in the last bits with the queries it is batched
with; one BLAS call per query (a matrix-vector product) fixes that, but
numpy holds the GIL through such small calls, and the search's threads then
take turns. Here every entry is summed over the dimensions in order,
``((q_0 c_0 + q_1 c_1) + q_2 c_2) + ...``, each product and sum rounded in
the input's precision: the same bits for any batch, any thread and either
implementation, the compiled kernel (:mod:`~skhash.quantization.
_products_kernel`, numba, ``nogil``) or the numpy reference below.

The codewords are stored in tiles of ``WIDTH`` codewords, dimension-major
(``(n_tiles, d, WIDTH)``), so that the kernel's inner loop runs over
contiguous codewords (vectorised, a query's ``WIDTH`` sums held in vector
registers) while a tile stays in L1.
"""

from __future__ import annotations

import numpy as np

__all__ = []  # private helpers of lookup_tables and the retriever

#: Codewords per tile (the kernel's vectorised inner loop).
WIDTH = 64
#: Queries of the reference's temporaries, per block.
_REFERENCE_ROWS = 256


def tile_rows(B, dtype):
    """``(n_tiles, d, WIDTH)`` tiles of the rows of ``B`` (``(k, d)``),
    zero-padded to whole tiles, in ``dtype``."""
    B = np.asarray(B)
    k, d = B.shape
    n_tiles = max(1, -(-k // WIDTH))
    padded = np.zeros((n_tiles * WIDTH, d), dtype=dtype)
    padded[:k] = B
    return np.ascontiguousarray(padded.reshape(n_tiles, WIDTH, d).transpose(0, 2, 1))


def _reference(A, tiled, out):
    """The numpy reference of the kernel: the same sums, same order."""
    n, d = A.shape
    n_tiles = tiled.shape[0]
    for s in range(0, n, _REFERENCE_ROWS):
        a = A[s : s + _REFERENCE_ROWS]
        acc = np.zeros((len(a), n_tiles, WIDTH), dtype=A.dtype)
        for j in range(d):
            acc += a[:, j, None, None] * tiled[None, :, j, :]
        out[s : s + len(a)] = acc.reshape(len(a), -1)[:, : out.shape[1]]


def ordered_products(A, tiled, n_cols, *, compiled=True):
    """``A @ B.T`` for the ``n_cols`` rows of ``B`` held in ``tiled``
    (:func:`tile_rows`), each entry summed over the dimensions in order.

    Parameters
    ----------
    A : ndarray of shape (n, d), float32 or float64
        The queries, in the tiles' dtype.
    tiled : ndarray of shape (n_tiles, d, WIDTH)
        The codewords, from :func:`tile_rows`.
    n_cols : int
        The number of codewords (the rest of the last tile is padding).
    compiled : bool, default=True
        Use the numba kernel when it is compiled (a first call starts its
        compilation in the background and is answered by the numpy
        reference, as the search backends do); False: the reference. Both
        give the same bits.

    Returns
    -------
    out : ndarray of shape (n, n_cols), A's dtype
    """
    A = np.ascontiguousarray(A)
    if A.dtype != tiled.dtype:
        raise TypeError(f"A is {A.dtype} but the tiles are {tiled.dtype}.")
    n = A.shape[0]
    out = np.empty((n, n_cols), dtype=A.dtype)
    if n == 0 or n_cols == 0:
        return out
    if compiled:
        from skhash.quantization._products_kernel import products_kernel
        from skhash.retrieval._numba import _kernel_ready

        width = tiled.shape[0] * WIDTH
        full = out if width == n_cols else np.empty((n, width), dtype=A.dtype)
        args = (A, tiled, full)
        if _kernel_ready(products_kernel, args, full.size * A.shape[1], True):
            products_kernel(*args)
            if full is not out:
                out[:] = full[:, :n_cols]
            return out
    _reference(A, tiled, out)
    return out
