"""Compiled code assignment (numba): product, beam search and local search.

The kernels of :func:`skhash.quantization.encode`. Items are encoded one by
one, in blocks of ``_BLOCK`` items, so that the temporary memory is bounded
independently of the number of items and every item is encoded by exactly
the same arithmetic whatever the size of the call (a block is always a full
``_BLOCK`` rows; the last one is zero-padded). The kernels release the GIL,
so blocks run on several threads (``n_jobs``) with the same result.

Additive codes (``M`` codebooks of ``K`` codewords in ``d`` dimensions):

* with codeword Gram tables (``M²K²`` entries up to ``_TABLE_BYTES``): the
  greedy start (or given codes) and the ICM sweeps run in
  :mod:`skhash.quantization._encode_icm` (one BLAS product per codebook and
  block of items with a fused argmin and residual update, then ICM on
  integer scores with exact re-scoring of near-ties). The tables of the
  last codebooks seen are cached (:func:`_tables`), so that repeated calls
  on the same codebooks (a transform in chunks) build them once. The
  beam-search start and the iterated local search below work on the float
  tables ``T2[l, a, m, k] = 2⟨C_la, C_mk⟩``: per item
  ``A[m, k] = Σ_l T2[l, c_l, m, k]`` holds the cross terms of codeword ``k``
  of codebook ``m`` with the current reconstruction.
* ``"direct"`` (more codewords): the residual ``r`` is kept and each step
  computes ``⟨r + C_m[c_m], C_mk⟩`` over the ``d`` dimensions.

Both give the greedy residual encoding followed by ``n_iter`` sweeps of
iterated conditional modes (ICM); a sweep that changes no code ends the
search early (further sweeps would change nothing). With ``beam_width > 1``
the greedy start is replaced by a beam search (the ``beam_width`` best
partial encodings are kept codebook after codebook, as in faiss's
``ResidualQuantizer``), then ICM refines the best one.
"""

from __future__ import annotations

import threading

import numpy as np
from numba import njit

from skhash.quantization._products import WIDTH, tile_rows
from skhash.quantization._products_kernel import wide_products_kernel
from skhash.utils._numba_stack import wide_vectors
from skhash.utils._threads import run_blocks

__all__ = ["encode_additive", "encode_product", "table_bytes"]

# Items per block (each block is one BLAS call and one kernel call).
_BLOCK = 256
# Largest Gram-table memory of the "tables" additive encoder (M² K² entries).
_TABLE_BYTES = 64 * 2**20


# --------------------------------------------------------------------------- #
# Product codes
# --------------------------------------------------------------------------- #


@njit(cache=True, nogil=True, boundscheck=False)
def _pq_kernel(X, Ct, sq, starts, stops, codes, dist, dist_i):
    """Nearest codeword per block of dimensions.

    ``Ct[m, j, k]``: dimension ``starts[m] + j`` of codeword ``k`` of block
    ``m`` (zero-padded to the widest block); ``sq[m, k]`` its squared norm.
    The distance ``sq − 2⟨x, c⟩`` is accumulated dimension after dimension,
    vectorised over the codewords, then the first minimum is found by
    :func:`_argmin` (``dist`` is a ``K``-float scratch, ``dist_i`` its
    integer view, int32 for float32).
    """
    n = X.shape[0]
    M, _, K = Ct.shape
    f32 = dist_i.itemsize == 4
    for i in range(n):
        for m in range(M):
            for k in range(K):
                dist[k] = 0.0
            for j in range(stops[m] - starts[m]):
                xj = X[i, starts[m] + j]
                for k in range(K):
                    dist[k] += xj * Ct[m, j, k]
            for k in range(K):
                dist[k] = sq[m, k] - 2.0 * dist[k]
            codes[i, m] = _argmin(dist, dist_i) if f32 else _argmin64(dist, dist_i)


@njit(cache=True, nogil=True, boundscheck=False)
def _pq_tiled_kernel(X, tiles, sq, starts, stops, codes, A, P, dist, dist_i):
    """:func:`_pq_kernel` for ``K`` a multiple of ``WIDTH``: per block of
    dimensions, the products of all the items with the codewords by
    :func:`~skhash.quantization._products_kernel.wide_products_kernel` (the
    chain over the block's dimensions in order, by fused multiply-adds,
    several items per pass over a tile held in registers), then per item
    the distances ``sq − 2⟨x, c⟩`` and their first minimum.

    ``tiles[m]`` holds block ``m``'s codewords as ``(K / W, width, W)``
    tiles (dimensions past the block zero), ``A`` ``(n, width)`` and ``P``
    ``(n, K)`` are scratch (``A``'s columns past the block zero: a product
    of zeros at the end of a chain adds ``+0.0``, which changes no sum's
    value). 512-bit vectors where the CPU has them (as the products
    kernel's).
    """
    wide_vectors()
    n = X.shape[0]
    M = tiles.shape[0]
    K = P.shape[1]
    f32 = dist_i.itemsize == 4
    for m in range(M):
        w = stops[m] - starts[m]
        for i in range(n):
            for j in range(w):
                A[i, j] = X[i, starts[m] + j]
            for j in range(w, A.shape[1]):
                A[i, j] = 0.0
        wide_products_kernel(A, tiles[m], P)
        for i in range(n):
            for k in range(K):
                dist[k] = sq[m, k] - 2.0 * P[i, k]
            codes[i, m] = _argmin(dist, dist_i) if f32 else _argmin64(dist, dist_i)


def encode_product(X, codebooks, blocks, out_dtype, n_jobs=1):
    """Product codes of ``X`` (the exact nearest codeword of each block).

    Parameters
    ----------
    X : ndarray of shape (n, d), float32 or float64
        Items (the computation runs in this dtype).
    codebooks : ndarray of shape (M, K, d)
        Block-diagonal codebooks.
    blocks : list of ndarray
        ``product_blocks(d, M)`` (contiguous).
    out_dtype : dtype
        Dtype of the codes.
    n_jobs : int, default=1
        Threads.

    Returns
    -------
    codes : ndarray of shape (n, M)
    """
    M, K, _ = codebooks.shape
    width = max(len(b) for b in blocks)
    Ct = np.zeros((M, width, K), dtype=X.dtype)
    sq = np.empty((M, K), dtype=X.dtype)
    starts = np.array([b[0] for b in blocks], dtype=np.int64)
    stops = np.array([b[-1] + 1 for b in blocks], dtype=np.int64)
    for m, b in enumerate(blocks):
        sub = codebooks[m][:, b].astype(X.dtype)
        Ct[m, : len(b)] = sub.T
        sq[m] = np.einsum("kd,kd->k", sub, sub)
    X = np.ascontiguousarray(X)
    out = np.empty((X.shape[0], M), dtype=out_dtype)

    tiled = K % WIDTH == 0
    if tiled:  # each block's codewords in tiles of the products kernel
        tiles = np.zeros((M, K // WIDTH, width, WIDTH), dtype=X.dtype)
        for m, b in enumerate(blocks):
            tiles[m, :, : len(b)] = tile_rows(Ct[m, : len(b)].T, X.dtype)

    def run(lo, hi):
        codes = np.empty((hi - lo, M), dtype=np.int32)
        dist = np.empty(K, dtype=X.dtype)
        dist_i = dist.view(np.int32 if X.dtype == np.float32 else np.int64)
        if not tiled:
            _pq_kernel(X[lo:hi], Ct, sq, starts, stops, codes, dist, dist_i)
            out[lo:hi] = codes
            return
        A = np.empty((min(hi - lo, _BLOCK), width), dtype=X.dtype)
        P = np.empty((len(A), K), dtype=X.dtype)
        for s in range(lo, hi, _BLOCK):  # bounded scratch: blocks of items
            e = min(hi, s + _BLOCK)
            _pq_tiled_kernel(
                X[s:e], tiles, sq, starts, stops, codes[s - lo : e - lo],
                A[: e - s], P[: e - s], dist, dist_i,
            )  # fmt: skip
        out[lo:hi] = codes

    run_blocks(run, X.shape[0], n_jobs, _BLOCK * 16)
    return out


# --------------------------------------------------------------------------- #
# Additive codes
# --------------------------------------------------------------------------- #


@njit(cache=True, nogil=True, boundscheck=False)
def _argmin(s, si):
    """First index of the smallest entry of the float32 array ``s``.

    ``si`` is ``s.view(np.int32)``: each float is mapped to an int32 of the
    same order and packed with its index into an int64, so that one
    vectorised integer minimum finds the smallest entry and, among equal
    ones, the lowest index (``np.argmin``'s choice; ``-0.0`` ranks below
    ``0.0``).
    """
    best = np.int64(0x7FFFFFFFFFFFFFFF)
    for k in range(s.shape[0]):
        b = si[k]
        p = (np.int64(b ^ ((b >> 31) & 0x7FFFFFFF)) << 32) | k
        best = p if p < best else best
    return best & 0xFFFFFFFF


@njit(cache=True, nogil=True, boundscheck=False)
def _argmin64(s, si):
    """First index of the smallest entry of ``s`` (any float dtype)."""
    best = 0
    best_d = s[0]
    for k in range(1, s.shape[0]):
        v = s[k]
        if v < best_d:
            best_d = v
            best = k
    return best


@njit(cache=True, nogil=True, boundscheck=False)
def _add_rows(A, T2, m, new, old, has_old):
    """A[l] += T2[m, new, l] (− T2[m, old, l]) for every codebook l != m."""
    M, K = A.shape
    for lo in range(M):
        if lo == m:
            continue
        if has_old:
            for k in range(K):
                A[lo, k] += T2[m, new, lo, k] - T2[m, old, lo, k]
        else:
            for k in range(K):
                A[lo, k] += T2[m, new, lo, k]


@njit(cache=True, nogil=True, boundscheck=False)
def _icm_sweeps(U, i, A, T2, row, n_iter, s, si, seen, last_is_set):
    """``n_iter`` ICM sweeps of item ``i`` (codes ``row``, cross terms ``A``).

    ``last_is_set``: the code of the last codebook was chosen with all the
    others set (the end of a greedy start), so its first step is skipped
    unless another code changes first.
    """
    M = T2.shape[0]
    K = T2.shape[1]
    f32 = si.itemsize == 4
    # step counter of the last change, and of each codebook's last step
    # taken with all the other codes set
    last_change = 0
    for m in range(M):
        seen[m] = -1
    if last_is_set:
        seen[M - 1] = 0
    step = 0
    for _ in range(n_iter):
        for m in range(M):
            step += 1
            if seen[m] >= last_change:
                continue
            seen[m] = step
            cm = row[m]
            thr = U[i, m, cm] + A[m, cm]
            n_le = 0
            for k in range(K):
                v = U[i, m, k] + A[m, k]
                s[k] = v
                n_le += 1 if v <= thr else 0
            if n_le <= 1:
                continue
            best = _argmin(s, si) if f32 else _argmin64(s, si)
            if best != cm:
                _add_rows(A, T2, m, best, cm, True)
                row[m] = best
                last_change = step
                seen[m] = step


@njit(cache=True, nogil=True, boundscheck=False)
def _energy(U, sq, A, i, row):
    """``‖x − x̂‖² − ‖x‖²`` of item ``i`` with codes ``row`` (cross terms A)."""
    e = 0.0
    for m in range(row.shape[0]):
        c = row[m]
        e += U[i, m, c] + 0.5 * (A[m, c] + sq[m, c])
    return e


@njit(cache=True, nogil=True, boundscheck=False)
def _ils_kernel(U, sq, T2, codes, n_rows, n_iter, n_rounds, n_perts, s, si):
    """Iterated local search after ICM (faiss's LSQ encoder): ``n_rounds``
    times, set ``n_perts`` codes of the best encoding so far to random
    codewords, run ICM, and keep the result if its error is lower.

    The random draws are seeded from the item's own ICM codes, so an item
    gets the same codes whatever else is encoded with it.
    """
    M = T2.shape[0]
    K = T2.shape[1]
    A = np.empty((M, K), dtype=U.dtype)
    At = np.empty((M, K), dtype=U.dtype)
    trial = np.empty(M, dtype=codes.dtype)
    seen = np.empty(M, dtype=np.int64)
    for i in range(n_rows):
        for m in range(M):
            for k in range(K):
                A[m, k] = sq[m, k]
        for m in range(M):
            _add_rows(A, T2, m, codes[i, m], 0, False)
        best_e = _energy(U, sq, A, i, codes[i])
        # xorshift64 seeded by FNV-1a of the item's ICM codes
        state = np.uint64(14695981039346656037)
        for m in range(M):
            state = (state ^ np.uint64(codes[i, m])) * np.uint64(1099511628211)
        state |= np.uint64(1)
        for _ in range(n_rounds):
            for m in range(M):
                trial[m] = codes[i, m]
                for k in range(K):
                    At[m, k] = A[m, k]
            for _p in range(n_perts):
                state ^= state << np.uint64(13)
                state ^= state >> np.uint64(7)
                state ^= state << np.uint64(17)
                m = int(state % np.uint64(M))
                state ^= state << np.uint64(13)
                state ^= state >> np.uint64(7)
                state ^= state << np.uint64(17)
                k = int(state % np.uint64(K))
                if k != trial[m]:
                    _add_rows(At, T2, m, k, trial[m], True)
                    trial[m] = k
            _icm_sweeps(U, i, At, T2, trial, n_iter, s, si, seen, False)
            e = _energy(U, sq, At, i, trial)
            if e < best_e:
                best_e = e
                for m in range(M):
                    codes[i, m] = trial[m]
                    for k in range(K):
                        A[m, k] = At[m, k]


@njit(cache=True, nogil=True, boundscheck=False)
def _beam_start(U, sq, T2, codes, i, beam, scratch, A):
    """Beam search over the codebooks in order; the best encoding ends in
    ``codes[i]`` and its cross terms in ``A``.

    ``scratch`` is ``(2, beam, M + 1, K)``: per beam entry its cross-term rows
    ``A`` (first ``M`` rows) and, in the last row, its codes (first ``M``
    columns) and its energy (column ``M``). The energy of a partial encoding
    is ``Σ_m U[c_m] + sq[m, c_m] + Σ_{l<m} T2[l, c_l, m, c_m]``; candidates
    are ranked by (energy, parent, codeword), so ties are broken the same way
    every time.
    """
    M = T2.shape[0]
    K = T2.shape[1]
    cur = scratch[0]
    nxt = scratch[1]
    n_beam = 1
    cur[0, :M, :K] = sq
    cur[0, M, :] = 0.0
    kept_e = np.empty(beam, dtype=U.dtype)
    kept_c = np.empty(beam, dtype=np.int64)
    for m in range(M):
        n_kept = 0
        for b in range(n_beam):
            e0 = cur[b, M, M]
            for k in range(K):
                e = e0 + U[i, m, k] + cur[b, m, k]
                if n_kept == beam and e >= kept_e[n_kept - 1]:
                    continue
                # insert after the entries with energy <= e (stable)
                j = n_kept if n_kept < beam else beam - 1
                while j > 0 and kept_e[j - 1] > e:
                    kept_e[j] = kept_e[j - 1]
                    kept_c[j] = kept_c[j - 1]
                    j -= 1
                kept_e[j] = e
                kept_c[j] = b * K + k
                if n_kept < beam:
                    n_kept += 1
        for j in range(n_kept):
            b = kept_c[j] // K
            k = kept_c[j] - b * K
            for lo in range(M):
                if lo == m:
                    for kk in range(K):
                        nxt[j, lo, kk] = cur[b, lo, kk]
                else:
                    for kk in range(K):
                        nxt[j, lo, kk] = cur[b, lo, kk] + T2[m, k, lo, kk]
            for mm in range(m):
                nxt[j, M, mm] = cur[b, M, mm]
            nxt[j, M, m] = k
            nxt[j, M, M] = kept_e[j]
        n_beam = n_kept
        cur, nxt = nxt, cur
    for m in range(M):
        codes[i, m] = int(cur[0, M, m])
    for lo in range(M):
        for k in range(K):
            A[lo, k] = cur[0, lo, k]


@njit(cache=True, nogil=True, boundscheck=False)
def _beam_kernel(U, sq, T2, codes, n_rows, beam, scratch):
    """Beam-search start of each row (see :func:`_beam_start`)."""
    A = np.empty((T2.shape[0], T2.shape[1]), dtype=U.dtype)
    for i in range(n_rows):
        _beam_start(U, sq, T2, codes, i, beam, scratch, A)


@njit(cache=True, nogil=True, boundscheck=False)
def _icm_direct_kernel(X, Ct, sq, codes, have_init, n_iter):
    """Greedy start then ICM on the residual, for codebooks too large for
    the Gram tables. ``Ct[m, j, k]`` is dimension ``j`` of codeword ``k``;
    the codes of ``X`` must be valid when ``have_init``."""
    n, d = X.shape
    M, _, K = Ct.shape
    r = np.empty(d, dtype=X.dtype)
    t = np.empty(d, dtype=X.dtype)
    dot = np.empty(K, dtype=X.dtype)
    for i in range(n):
        for j in range(d):
            r[j] = X[i, j]
        if have_init:
            for m in range(M):
                c = codes[i, m]
                for j in range(d):
                    r[j] -= Ct[m, j, c]
        n_pass = n_iter + (0 if have_init else 1)
        if M == 1 and have_init:
            n_pass = 0
        for p in range(n_pass):
            greedy = p == 0 and not have_init
            changed = False
            for m in range(M):
                cm = codes[i, m]
                for j in range(d):
                    t[j] = r[j] if greedy else r[j] + Ct[m, j, cm]
                for k in range(K):
                    dot[k] = 0.0
                for j in range(d):
                    tj = t[j]
                    for k in range(K):
                        dot[k] += tj * Ct[m, j, k]
                best = 0
                best_d = sq[m, 0] - 2.0 * dot[0]
                for k in range(1, K):
                    dk = sq[m, k] - 2.0 * dot[k]
                    if dk < best_d:
                        best_d = dk
                        best = k
                if greedy or best != cm:
                    changed = True
                    codes[i, m] = best
                    for j in range(d):
                        r[j] = t[j] - Ct[m, j, best]
            if M == 1 or not changed:
                break


def table_bytes(n_codebooks, n_codewords, itemsize=4):
    """Memory of the Gram tables of the ``"tables"`` additive encoder."""
    return n_codebooks**2 * n_codewords**2 * itemsize


def encode_additive(
    X,
    codebooks,
    *,
    n_iter,
    init_codes,
    out_dtype,
    beam_width=1,
    ils_iters=0,
    n_jobs=1,
):
    """Additive codes of ``X``: greedy (or beam) start then ICM sweeps.

    Parameters
    ----------
    X : ndarray of shape (n, d), float32 or float64
        Items (the computation runs in this dtype).
    codebooks : ndarray of shape (M, K, d)
        Codebooks.
    n_iter : int
        ICM sweeps.
    init_codes : ndarray of shape (n, M) or None
        Validated starting codes.
    out_dtype : dtype
        Dtype of the codes.
    beam_width : int, default=1
        Beam of the start (1: greedy).
    ils_iters : int, default=0
        Rounds of iterated local search after ICM (``min(4, M)`` random
        codes perturbed per round).
    n_jobs : int, default=1
        Threads.

    Returns
    -------
    codes : ndarray of shape (n, M)
    """
    M, K, d = codebooks.shape
    n = X.shape[0]
    dtype = X.dtype
    C = np.ascontiguousarray(codebooks, dtype=dtype)
    out = np.empty((n, M), dtype=out_dtype)
    have_init = init_codes is not None
    X = np.ascontiguousarray(X)
    flat = C.reshape(M * K, d)
    sq = np.einsum("kd,kd->k", flat, flat)
    use_tables = table_bytes(M, K, np.dtype(dtype).itemsize) <= _TABLE_BYTES
    if ils_iters > 0 and not use_tables:
        raise ValueError(
            f"ils_iters={ils_iters} needs the codeword Gram tables "
            f"(M²K² = {M * M * K * K} entries for M={M}, K={K}), which exceed "
            f"{_TABLE_BYTES // 2**20} MiB; use ils_iters=0 with these codebooks."
        )
    if beam_width > 1 and not use_tables:
        raise ValueError(
            f"beam_width={beam_width} needs the codeword Gram tables "
            f"(M²K² = {M * M * K * K} entries for M={M}, K={K}), which exceed "
            f"{_TABLE_BYTES // 2**20} MiB; use beam_width=1 with these codebooks."
        )

    if use_tables:
        from skhash.quantization._encode_icm import encode_range

        need_g = beam_width > 1 or ils_iters > 0
        tab = _tables(C, need_g)
        # T2: the Gram table 2⟨C_la, C_mk⟩ as (M, K, M, K), for the beam and
        # the local search
        T2 = tab["G"].reshape(M, K, M, K) if need_g else None
        need_u = beam_width > 1 or ils_iters > 0
        # −2 Cᵀ (exact scaling) for U = −2⟨x, C⟩ of the beam and local search
        flat_t = np.ascontiguousarray(-2.0 * flat.T) if need_u else None
        C2, C2aug, Ct, Q = tab["C2"], tab["C2aug"], tab["Ct"], tab["Q"]
        C2tiles = tab["C2tiles"]
        inv_s, qrow, qtrunc, bnd = tab["inv_s"], tab["qrow"], tab["qtrunc"], tab["bnd"]
        sqm = sq.reshape(M, K)
        itype = np.int32 if dtype == np.float32 else np.int64

        def run(lo, hi):
            R = np.empty((_BLOCK, d + 1), dtype=dtype)
            P = np.empty((M, _BLOCK, K), dtype=dtype)
            Pi = P.view(itype)
            S = np.empty((M, K), dtype=np.int32)
            t = np.empty(d, dtype=dtype)
            rmax2 = np.empty(_BLOCK, dtype=np.float64)
            kk = np.arange(K + 1, dtype=np.int32)
            seen = np.empty(M, dtype=np.int64)
            stats = np.zeros(3, dtype=np.int64)
            args = (C, C2, C2aug, C2tiles, Ct, sqm, Q, inv_s, qrow, qtrunc, bnd)
            scratch = (R, P, Pi, S, t, kk, seen, stats, rmax2)
            if not need_u:
                cb = np.zeros((hi - lo, M), dtype=np.int32)
                if have_init:
                    cb[:] = init_codes[lo:hi]
                encode_range(X[lo:hi], cb, *args, have_init, n_iter, *scratch)
                out[lo:hi] = cb
                return
            xb = np.zeros((_BLOCK, d), dtype=dtype)
            cb = np.zeros((_BLOCK, M), dtype=np.int32)
            if beam_width > 1:
                bscratch = np.empty((2, beam_width, M + 1, max(K, M + 1)), dtype)
            sc = np.empty(K, dtype=dtype)
            sci = sc.view(itype)
            for s in range(lo, hi, _BLOCK):
                e = min(hi, s + _BLOCK)
                xb[: e - s] = X[s:e]
                xb[e - s :] = 0.0
                if have_init:
                    cb[: e - s] = init_codes[s:e]
                Uu = np.matmul(xb, flat_t).reshape(_BLOCK, M, K)
                if beam_width > 1:
                    _beam_kernel(Uu, sqm, T2, cb, e - s, beam_width, bscratch)
                encode_range(
                    xb[: e - s], cb, *args, have_init or beam_width > 1, n_iter,
                    *scratch,
                )  # fmt: skip
                if ils_iters > 0 and M > 1:
                    n_perts = min(4, M)
                    _ils_kernel(
                        Uu, sqm, T2, cb, e - s, n_iter, ils_iters, n_perts, sc, sci
                    )
                out[s:e] = cb[: e - s]

        run_blocks(run, n, n_jobs, _BLOCK * 8)
    else:
        Ct = np.ascontiguousarray(C.transpose(0, 2, 1))
        sqm = sq.reshape(M, K)

        def run(lo, hi):
            codes = np.zeros((hi - lo, M), dtype=np.int32)
            if have_init:
                codes[:] = init_codes[lo:hi]
            _icm_direct_kernel(X[lo:hi], Ct, sqm, codes, have_init, n_iter)
            out[lo:hi] = codes

        run_blocks(run, n, n_jobs, _BLOCK)
    return out


# The tables of the last codebooks encoded with (built in a few ms for 8 x 256,
# so repeated calls on the same codebooks, e.g. a transform in chunks, pay it
# once): {"key": ..., "tables": ...}
_TABLE_CACHE = {}
_TABLE_LOCK = threading.Lock()


def _tables(C, need_g):
    """The codeword tables of the compiled additive encoder for the
    codebooks ``C`` (contiguous, in the computation dtype), cached for the
    last codebooks seen (by content)."""
    import hashlib

    from skhash.quantization._encode_icm import quantize_tables

    key = (C.dtype.str, C.shape, hashlib.blake2b(C.data, digest_size=16).digest())
    with _TABLE_LOCK:
        hit = _TABLE_CACHE.get("key") == key
        tab = _TABLE_CACHE.get("tables") if hit else None
    if tab is not None and (not need_g or tab["G"] is not None):
        return tab
    M, K, d = C.shape
    dtype = C.dtype
    flat = C.reshape(M * K, d)
    sq = np.einsum("kd,kd->k", flat, flat)
    # 2⟨C_la, C_mk⟩ (scaling by 2 is exact); by the products kernel where
    # the M K codewords fill whole tiles (about twice as fast as BLAS here)
    if (M * K) % WIDTH == 0:
        G = np.empty((M * K, M * K), dtype=dtype)
        wide_products_kernel(2.0 * flat, tile_rows(flat, dtype), G)
    else:
        G = np.ascontiguousarray((2.0 * flat) @ flat.T, dtype=dtype)
    Q, scales, gmax, nmax = quantize_tables(G, C)
    C2 = np.ascontiguousarray(-2.0 * C)
    # −2 C_mᵀ with the squared norms as one more row (the residuals get a
    # column of ones): one product per codebook gives the scores
    C2aug = np.empty((M, d + 1, K), dtype=dtype)
    C2aug[:, :d] = C2.transpose(0, 2, 1)
    C2aug[:, d] = sq.reshape(M, K)
    # its columns in tiles for the products kernel, where K fills whole
    # tiles (else a placeholder: encode_range then uses the BLAS product)
    if K % WIDTH == 0:
        C2tiles = np.stack([tile_rows(C2aug[m].T, dtype) for m in range(M)])
    else:
        C2tiles = np.zeros((M, 0, d + 1, WIDTH), dtype=dtype)
    eps = float(np.finfo(dtype).eps)
    # one quantized cross term: half a step of the integer table, plus the
    # rounding of the float table it was made from (d-term dot products:
    # 2 d u ‖c‖ ‖c'‖ each, eps = 2 u)
    qrow = 0.5 * scales * (1.0 + 1e-6) + 1.01 * eps * d * nmax**2
    # the truncation of P / s_m to an integer, under one step (the product's
    # own rounding is one more rounding of the score, counted in bnd)
    qtrunc = scales * (1.0 + 1e-6)
    # float rounding allowed between the approximate scores and the exact
    # objective (eps is twice the unit roundoff): the d-term dot products of
    # both and the M-step residuals, c_d (ρ + ν); each other rounding of a
    # score, c_0 + c_1 (ρ + ν) (see encode_range)
    sqmax = float(sq.max()) if sq.size else 0.0
    bnd = np.array(
        [
            eps * (d + M + 4) * 4.0 * nmax,
            eps * ((d + 8) * sqmax + M * gmax),
            eps * 2.0 * nmax,
            nmax,
        ]
    )
    tab = {
        "G": G if need_g else None,
        "Q": Q,
        "C2": C2,
        "C2aug": C2aug,
        "C2tiles": C2tiles,
        "Ct": np.ascontiguousarray(C.transpose(0, 2, 1)),
        "inv_s": (1.0 / scales).astype(dtype),
        "qrow": qrow,
        "qtrunc": qtrunc,
        "bnd": bnd,
    }
    with _TABLE_LOCK:
        _TABLE_CACHE["key"] = key
        _TABLE_CACHE["tables"] = tab
    return tab
