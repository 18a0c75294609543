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

    vals = np.empty(X.shape[0], dtype=np.float32)

    def run(lo, hi):
        best = np.empty(max(_NEAREST_ROWS, WIDTH), dtype=np.float32)
        nearest_kernel(X[lo:hi], tiled, padded, len(C), out[lo:hi], best, vals[lo:hi])

    run_blocks(run, X.shape[0], n_jobs, _THREAD_ROWS)
    return out


def group_members(member, n_groups):
    """CSR ``(ptr, lists)`` of the groups ``member`` puts the lists in:
    group ``g`` holds ``lists[ptr[g]:ptr[g + 1]]``, ascending."""
    ptr = np.zeros(n_groups + 1, dtype=np.int64)
    np.cumsum(np.bincount(member, minlength=n_groups), out=ptr[1:])
    return ptr, np.argsort(member, kind="stable").astype(np.int64)


def _smallest(keys, m):
    """The ``m`` smallest entries of each row by (key, column), as their
    columns in ascending order: ties at the ``m``-th key go to the lower
    columns, so the set does not depend on how a partition breaks them."""
    c, nl = keys.shape
    if m >= nl:
        return np.broadcast_to(np.arange(nl), (c, nl))
    kth = np.partition(keys, m - 1, axis=1)[:, m - 1 : m]
    less = keys < kth
    eq = keys == kth
    need = m - less.sum(axis=1, keepdims=True)
    take = less | (eq & (np.cumsum(eq, axis=1) <= need))
    return np.nonzero(take)[1].reshape(c, m)


def _top_groups(X, G, gsq, empty, n_probe, compiled):
    """Each row's ``n_probe`` groups of smallest ``‖g‖² − 2 ⟨x, g⟩`` (the
    ordered inner products of :func:`nearest`), ties to the lower group;
    groups without lists (``empty``) never (in no particular order)."""
    from skhash.quantization._products import ordered_products, tile_rows

    keys = ordered_products(X, tile_rows(G, np.float32), len(G), compiled=compiled)
    keys *= np.float32(-2.0)
    keys += gsq
    keys[:, empty] = np.inf
    if not compiled:
        return _smallest(keys, n_probe)
    from skhash.retrieval._ivf_nearest import top_groups_kernel

    top = np.empty((len(X), n_probe), dtype=np.int64)
    top_groups_kernel(keys, n_probe, top)
    return top


def nearest_grouped(X, C, sq, groups, n_probe, *, compiled=True, n_jobs=1):
    """The nearest row of ``C`` to each row of ``X`` among the lists of the
    row's ``n_probe`` nearest groups (``ASSIGN_GROUPS`` of
    :mod:`~skhash.retrieval._ivf_lists` in the build).

    The scores are those of :func:`nearest`, so a row's result is the first
    centroid of smallest score among its candidates (ties to the lower
    list id): it depends on the row alone, not on the rows it is assigned
    with, the blocking or the threads; with ``n_probe`` at least the number
    of groups it is :func:`nearest`'s.

    Parameters
    ----------
    X, C, sq, compiled, n_jobs
        As :func:`nearest` (``sq`` required).
    groups : tuple of ndarray
        ``(G, gsq, ptr, lists)``: the group centroids (float32, ``(n_groups,
        d)``), their squared norms, and CSR ``ptr``, ``lists`` (group ``g``
        holds lists ``lists[ptr[g]:ptr[g + 1]]``, ascending).
    n_probe : int
        Groups whose lists each row is scored against.

    Returns
    -------
    nearest : ndarray of shape (n,), int64
    """
    from skhash.quantization._products import WIDTH, ordered_products, tile_rows

    G, gsq, ptr, lists = groups
    X = np.ascontiguousarray(X, dtype=np.float32)
    C = np.ascontiguousarray(C, dtype=np.float32)
    sq = np.ascontiguousarray(sq, dtype=np.float32)
    G = np.ascontiguousarray(G, dtype=np.float32)
    gsq = np.ascontiguousarray(gsq, dtype=np.float32)
    n, n_groups = X.shape[0], len(G)
    empty = np.diff(ptr) == 0
    if n == 0 or int(n_probe) >= n_groups - int(empty.sum()):
        return nearest(X, C, sq, compiled=compiled, n_jobs=n_jobs)
    n_probe = max(1, int(n_probe))
    top = _top_groups(X, G, gsq, empty, n_probe, compiled)
    if not compiled:  # the reference: every list scored, candidates kept
        member = np.zeros((n_groups, len(C)), dtype=bool)
        for g in range(n_groups):
            member[g, lists[ptr[g] : ptr[g + 1]]] = True
        out = np.empty(n, dtype=np.int64)
        tiled = tile_rows(C, np.float32)
        step = max(1, _REFERENCE_ENTRIES // max(1, len(C)))
        for s in range(0, n, step):
            prod = ordered_products(X[s : s + step], tiled, len(C), compiled=False)
            prod *= np.float32(-2.0)
            prod += sq
            allowed = member[top[s : s + step]].any(axis=1)
            prod[~allowed] = np.inf
            out[s : s + step] = np.argmin(prod, axis=1)
        return out
    from skhash.retrieval import _ivf_nearest as kernels

    # each group's lists' centroids in their own tiles, one after another
    sizes = np.diff(ptr)
    per = [
        tile_rows(C[lists[ptr[g] : ptr[g + 1]]], np.float32) for g in range(n_groups)
    ]
    tile_ptr = np.zeros(n_groups + 1, dtype=np.int64)
    np.cumsum([t.shape[0] for t in per], out=tile_ptr[1:])
    tiles = np.concatenate(per)
    sqpad = np.full(tiles.shape[0] * WIDTH, np.inf, dtype=np.float32)
    for g in range(n_groups):
        lo = tile_ptr[g] * WIDTH
        sqpad[lo : lo + sizes[g]] = sq[lists[ptr[g] : ptr[g + 1]]]
    # the (row, probe) pairs sorted by group: each group's rows run through
    # the tiles of its own lists
    bounds = np.empty(n_groups + 1, dtype=np.int64)
    pairs = np.empty(top.size, dtype=np.int64)
    kernels.bucket_pairs(top, n_groups, bounds, pairs)
    local = np.empty(top.size, dtype=np.int64)
    vals = np.empty(top.size, dtype=np.float32)

    def run(lo, hi):
        buf = np.empty((kernels._NEAREST_ROWS, X.shape[1]), dtype=np.float32)
        best = np.empty(max(kernels._NEAREST_ROWS, WIDTH), dtype=np.float32)
        kernels.grouped_kernel(
            X, n_probe, pairs, bounds, tiles, tile_ptr, sqpad, sizes, lo, hi,
            local, vals, buf, best,
        )  # fmt: skip

    run_blocks(run, n_groups, n_jobs, 1)
    out = np.empty(n, dtype=np.int64)
    kernels.combine_pairs(pairs, local, vals, ptr, lists, n_probe, top, out)
    return out
