"""Nearest-centroid assignment of the inverted lists' build: the k-means
steps and the assignment of every item (:mod:`skhash.retrieval._ivf_lists`).

Each item goes to the first centroid of smallest ``‖c‖² − 2 ⟨x, c⟩``, its
inner products summed over the dimensions in order (as
:mod:`skhash.quantization._products`), so that an item's list does not
depend on the items it is assigned with, the blocking or the threads.

The scores are computed without a ``(items, nlist)`` matrix: blocks of
items run through tiles of centroids held in the caches, keeping each
item's best (a BLAS product would write the matrix out and numpy's
``argmin`` read it back, which took as long as the product), and blocks run
on several threads (``n_jobs``) with the same result, where a threaded
BLAS would change an item's scores in the last bits with the threads.
"""

from __future__ import annotations

import numpy as np

from skhash.utils._threads import run_blocks

__all__ = []  # private helpers of InvertedLists

#: Items per thread's piece of work.
_THREAD_ROWS = 8192
#: Item-centroid scores of the numpy reference per block.
_REFERENCE_ENTRIES = 1 << 22


def nearest(X, C, sq=None, *, compiled=True, n_jobs=1):
    """The nearest row of ``C`` to each row of ``X`` (see the module).

    Parameters
    ----------
    X : ndarray of shape (n, d)
        Items (computed in float32).
    C : ndarray of shape (n_centroids, d)
        Centroids (float32).
    sq : ndarray of shape (n_centroids,) or None
        Their squared norms (float32); None: computed.
    compiled : bool, default=True
        The numba kernel; False: the numpy reference (same result).
    n_jobs : int, default=1
        Threads of the kernel, over blocks of items (the same result).

    Returns
    -------
    nearest : ndarray of shape (n,), int64
    """
    from skhash.quantization._products import WIDTH, ordered_products, tile_rows

    X = np.ascontiguousarray(X, dtype=np.float32)
    C = np.ascontiguousarray(C, dtype=np.float32)
    if sq is None:
        sq = np.einsum("kd,kd->k", C, C)
    sq = np.ascontiguousarray(sq, dtype=np.float32)
    out = np.empty(X.shape[0], dtype=np.int64)
    if X.shape[0] == 0:
        return out
    tiled = tile_rows(C, np.float32)
    if not compiled:
        step = max(1, _REFERENCE_ENTRIES // max(1, C.shape[0]))
        for s in range(0, len(X), step):
            prod = ordered_products(X[s : s + step], tiled, len(C), compiled=False)
            prod *= np.float32(-2.0)
            prod += sq
            out[s : s + step] = np.argmin(prod, axis=1)
        return out
    from skhash.retrieval._ivf_nearest import _NEAREST_ROWS, nearest_kernel

    padded = np.full(tiled.shape[0] * WIDTH, np.inf, dtype=np.float32)
    padded[: len(sq)] = sq  # the padding columns never win

    def run(lo, hi):
        best = np.empty(max(_NEAREST_ROWS, WIDTH), dtype=np.float32)
        nearest_kernel(X[lo:hi], tiled, padded, len(C), out[lo:hi], best)

    run_blocks(run, X.shape[0], n_jobs, _THREAD_ROWS)
    return out
