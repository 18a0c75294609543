"""Compiled greedy + ICM additive encoder on integer scores.

The default additive search of :func:`skhash.quantization.encode` (greedy
residual start, or given codes, then ICM sweeps), split from
:mod:`skhash.quantization._encode_kernels` (which keeps the beam search, the
local search, the residual kernel for codebooks too large for tables, and
the cache of the tables).

The greedy start is one BLAS product per codebook and block of items (the
scores ``‖C_mk‖² − 2⟨r, C_mk⟩`` of the residuals) with a fused first-minimum
and residual update. The objective of codeword ``k`` of codebook ``m`` in
ICM, with the other codes fixed, is

``E_m(k) = ‖C_mk‖² − 2⟨r_m, C_mk⟩ + Σ_{l>m} G[(l, c_l), (m, k)]``

with ``r_m`` the residual of the codebooks before ``m`` (the greedy scores)
and the Gram table ``G = 2⟨C_la, C_mk⟩``. Per item the kernel keeps
``S[m] = trunc(P[m] / s_m) + Σ_{l>m} Q[(l, c_l), m]``, *exact* int32 sums of
an int16 copy ``Q ≈ G / s_m`` of the table: integer sums have no rounding,
so the incremental updates of ICM never drift, and a decision is an integer
minimum over 256 lanes. ``s_m S[m]`` is within a proven bound ``δ`` of
``E_m`` (the quantization of the ``M − 1`` cross terms and of the scores,
plus float rounding); only codewords within ``2δ`` of the best are
candidates, and when there are several they are re-scored exactly
(``‖C_mk‖² − 2⟨t, C_mk⟩`` from the residual, summed in a fixed order) and
the first smallest wins, as ``np.argmin`` would choose. The ICM codes are
thus those of ICM on the exact objective: the integer scores only decide
faster, they never change a decision.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from skhash.quantization._encode_kernels import _argmin64, _icm_direct_kernel
from skhash.quantization._products_kernel import wide_products_kernel
from skhash.utils._numba_stack import wide_vectors

__all__ = ["encode_range", "quantize_tables"]

# int16 range of the quantized table (symmetric).
_QMAX = 32767
# Largest |U / s_m| of an item's quantized scores (int32 sums of it and of up
# to 65535 table entries stay in range); an item past it is encoded by the
# exact residual kernel instead.
_LIM = 2.0**30


@njit(cache=True, nogil=True, boundscheck=False)
def _block_max(G, M, K, out):
    """``out[m] = max |G[r, mK:(m+1)K]|`` over the rows ``r`` of the other
    codebooks (float64)."""
    for m in range(M):
        out[m] = 0.0
    for r in range(M * K):
        own = r // K
        for m in range(M):
            if m == own:
                continue
            g = G[r, m * K : (m + 1) * K]
            mx = 0.0
            for k in range(K):
                v = abs(np.float64(g[k]))
                mx = v if v > mx else mx
            out[m] = mx if mx > out[m] else out[m]


@njit(cache=True, nogil=True, boundscheck=False)
def _quantize(G, inv_s, M, K, qmax, Q):
    """``Q[r, mK + k] = rint(G[r, mK + k] · inv_s[m])``, 0 on the diagonal
    blocks (a codebook's own block is never used)."""
    MK = M * K
    for r in range(MK):
        lo = (r // K) * K
        for m in range(M):
            base = m * K
            q = Q[r, base : base + K]
            if base == lo:
                for k in range(K):
                    q[k] = 0
                continue
            f = inv_s[m]
            g = G[r, base : base + K]
            for k in range(K):
                v = np.rint(np.float64(g[k]) * f)
                v = min(max(v, -qmax), qmax)
                q[k] = np.int16(v)


def quantize_tables(G, codebooks):
    """Integer copy of the Gram table ``G`` and the constants of its bound.

    Parameters
    ----------
    G : ndarray of shape (M K, M K)
        ``2⟨C_la, C_mk⟩`` in the computation dtype.
    codebooks : ndarray of shape (M, K, d)
        The codebooks (same dtype).

    Returns
    -------
    Q : ndarray of int16, shape (M K, M K)
        ``G[r, mK + k] ≈ scales[m] · Q[r, mK + k]`` within ``scales[m] / 2``
        off the diagonal blocks (which are 0).
    scales : ndarray of float64, shape (M,)
    gmax : float
        The largest ``|G|`` off the diagonal blocks.
    nmax : float
        The largest codeword norm.
    """
    M, K, _ = codebooks.shape
    norms = np.sqrt(np.einsum("mkd,mkd->mk", codebooks, codebooks, dtype=np.float64))
    bmax = np.empty(M, dtype=np.float64)
    _block_max(G, M, K, bmax)
    # a little over the largest entry, so that no entry rounds past int16;
    # a block without cross terms (one codebook, or orthogonal ones) takes
    # the scale its scores would have, so that they still quantize finely
    # (all zero: any scale)
    nm = norms.max(axis=1)
    alt = nm * (nm + norms.max())
    scales = np.where(bmax > 0, bmax, np.where(alt > 0, alt, 1.0))
    scales = scales * (1.0 + 1e-6) / _QMAX
    Q = np.empty(G.shape, dtype=np.int16)
    _quantize(G, 1.0 / scales, M, K, float(_QMAX), Q)
    return Q, scales, float(bmax.max()), float(norms.max())


# --------------------------------------------------------------------------- #
# Vector pieces. Each loop indexes from 0 (a view, or an array with fixed
# leading indices) so that it vectorises: an index ``b + k`` with ``b`` of
# unknown sign keeps numba's negative-index wraparound in the loop, which
# does not vectorise. Hot loops index rows in place rather than through
# views, which cost a reference count each.
# --------------------------------------------------------------------------- #


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _quantize_scores(S, P, i, inv_s, lim):
    """``S[m] = trunc(P[m, i] · inv_s[m])`` (int32); returns how many scores
    are past ``lim`` in magnitude (then ``S`` is not to be used)."""
    n_out = np.int32(0)
    for m in range(P.shape[0]):
        f = inv_s[m]
        for k in range(P.shape[2]):
            v = P[m, i, k] * f
            n_out = np.int32(n_out + (1 if abs(v) > lim else 0))
            S[m, k] = np.int32(v)  # truncated: within one step
    return n_out


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _min_count(S, m, thr):
    """``(min(S[m]), number of entries <= thr)`` of the int32 scores of
    codebook ``m``."""
    mn = S[m, 0]
    n = np.int32(0)
    for k in range(S.shape[1]):
        v = S[m, k]
        mn = v if v < mn else mn
        n = np.int32(n + (1 if v <= thr else 0))
    return mn, n


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _count_first(S, m, thr, mn, kk, big):
    """``(number of entries <= thr, first k with S[m, k] == mn)`` (``kk[k] =
    k`` and ``big`` int32, so that the loop stays in 32-bit lanes)."""
    n = np.int32(0)
    first = big
    for k in range(S.shape[1]):
        v = S[m, k]
        n = np.int32(n + (1 if v <= thr else 0))
        f = kk[k] if v == mn else big
        first = f if f < first else first
    return n, first


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _add_row(S1, Q, row, n):
    """``S1[:n] += Q[row, :n]`` (int32, exact). ``S1`` is the flat
    ``(M K)`` view of an item's scores: a prefix of a row covers the blocks
    of the codebooks before the row's own (the own block of ``Q`` is 0)."""
    for j in range(n):
        S1[j] = np.int32(S1[j] + Q[row, j])


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _add_diff(S1, Q, rn, ro):
    """``S1 += Q[rn] − Q[ro]`` over whole rows (int32, exact; the rows'
    own block is 0, so the scores of their codebook do not change)."""
    for j in range(S1.shape[0]):
        S1[j] = np.int32(S1[j] + (np.int32(Q[rn, j]) - np.int32(Q[ro, j])))


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _exact_among(t, C2, sq, m, S, thr):
    """Among the codewords ``k`` of codebook ``m`` with ``S[m, k] <= thr``, the
    first one of smallest exact objective ``‖C_mk‖² − 2⟨t, C_mk⟩``
    (``C2 = −2C``; the dot product is summed in a fixed order)."""
    d = t.shape[0]
    best = -1
    best_e = sq[m, 0]
    for k in range(S.shape[1]):
        if S[m, k] > thr:
            continue
        e = sq[m, k]
        for j in range(d):
            e += t[j] * C2[m, k, j]
        if best < 0 or e < best_e:
            best = k
            best_e = e
    return best


@njit(cache=True, nogil=True, boundscheck=False, fastmath={"reassoc"})
def _sqnorm(A, i, n):
    """``‖A[i, :n]‖²`` in float64 (reassociated: only used in the error bound,
    which allows for it; only ``reassoc``, so that an infinite residual
    still gives an infinite norm). Not inlined: numba compiles an inlined
    function with its caller's flags, here without ``fastmath``, and the sum
    then runs in order, one element at a time (about 40 against 8 ns at
    d = 64)."""
    s = 0.0
    for j in range(n):
        s += np.float64(A[i, j]) * np.float64(A[i, j])
    return s


# --------------------------------------------------------------------------- #
# One item
# --------------------------------------------------------------------------- #


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _margin(m, n_rows, qrow, qtrunc, inv_s, bnd, rmax2):
    """``2δ`` of a decision on codebook ``m`` whose scores hold ``n_rows``
    cross terms, in units of the table (see :func:`encode_range`); at most
    ``2**30`` (a larger one only re-scores every codeword)."""
    n_ops = 4.0
    delta = (
        n_rows * qrow[m]
        + qtrunc[m]
        + (bnd[0] + bnd[2] * n_ops) * (1.001 * np.sqrt(rmax2) + 1.01 * bnd[3])
        + bnd[1] * n_ops
    )
    v = 2.0 * delta * inv_s[m]
    return np.int32(min(v, 2.0**30)) + np.int32(2)


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _decide(S, mn, marg, t, C2, sq, m, kk, stats):
    """The exact best codeword of codebook ``m`` from its integer scores
    ``S[m]`` (smallest ``mn``) and the residual without codebook ``m`` ``t``:
    the first minimum when it is the only codeword within ``marg`` of it,
    else the exact re-scoring of the codewords within the margin."""
    thr = np.int32(mn + marg)
    n, first = _count_first(S, m, thr, mn, kk, kk[S.shape[1]])
    if n > 1:
        stats[1] += 1
        return _exact_among(t, C2, sq, m, S, thr)
    return int(first)


@njit(cache=True, nogil=True, boundscheck=False)
def _encode_item(
    P, i, R, codes, row, C, C2, sq, Q, inv_s, qrow, qtrunc, bnd, rmax2, have_init,
    n_iter, S, S1, t, kk, seen, stats,
):  # fmt: skip
    """ICM for item ``i`` of the block after its start (see
    :func:`encode_range`): ``P[:, i]`` its float scores, ``R[i, :d]`` its
    residual, ``codes[row]`` its codes (which end there) and ``rmax2`` the
    largest squared norm of the item and its residuals. Returns False, with
    ``codes[row]`` untouched, when the item's scores do not fit the
    integers.

    Rows are indexed in place, without views: each view costs a reference
    count (two atomic operations), which took 5 % of the encoder's time."""
    M, K, d = C.shape
    if _quantize_scores(S, P, i, inv_s, _LIM) > 0:
        return False
    # the cross terms not in the float scores: of the codebooks chosen after
    # each one (greedy start: the prefix of each row), of all the others
    # (given codes: whole rows)
    for m in range(0 if have_init else 1, M):
        _add_row(S1, Q, m * K + codes[row, m], M * K if have_init else m * K)
    # ICM sweeps; a step is skipped when no other code changed since the
    # last step of the same codebook (it would change nothing)
    last_change = 0
    for m in range(M):
        seen[m] = -1
    if not have_init:
        seen[M - 1] = 0
    step = 0
    for _ in range(n_iter):
        for m in range(M):
            step += 1
            if seen[m] >= last_change:
                continue
            seen[m] = step
            cm = codes[row, m]
            marg = _margin(m, M - 1, qrow, qtrunc, inv_s, bnd, rmax2)
            # one pass: is the current code alone within the margin of its
            # own score? (most steps: then it stays)
            mn, n0 = _min_count(S, m, np.int32(S[m, cm] + marg))
            stats[0] += 1
            if n0 == 1:
                continue
            for j in range(d):
                t[j] = R[i, j] + C[m, cm, j]
            b = _decide(S, mn, marg, t, C2, sq, m, kk, stats)
            if b != cm:
                stats[2] += 1
                _add_diff(S1, Q, m * K + b, m * K + cm)
                for j in range(d):
                    R[i, j] = t[j] - C[m, b, j]
                nr = _sqnorm(R, i, d)
                rmax2 = nr if nr > rmax2 else rmax2
                codes[row, m] = b
                last_change = step
                seen[m] = step
    return True


@njit(cache=True, nogil=True, boundscheck=False)
def encode_range(
    X, codes, C, C2, C2aug, C2tiles, Ct, sq, Q, inv_s, qrow, qtrunc, bnd,
    have_init, n_iter, R, P, Pi, S, t, kk, seen, stats, rmax2,
):  # fmt: skip
    """Codes of the items ``X`` (``codes`` holds the starting codes when
    ``have_init``), in blocks of ``R.shape[0]`` items.

    ``C2aug[m]`` is ``−2 C_mᵀ`` with the squared norms ``‖C_mk‖²`` as one
    more row, and ``R`` holds the residuals of the block with one more
    column of ones, so that one product ``P[m] = R C2aug[m]`` gives the
    scores ``‖C_mk‖² − 2⟨r, C_mk⟩`` of codebook ``m`` for the whole block (a
    block is always a full one, the last zero-padded). Where ``C2tiles``
    holds ``C2aug``'s columns in whole tiles (``K`` a multiple of
    :data:`~skhash.quantization._products.WIDTH`), the product is
    :func:`~skhash.quantization._products_kernel.wide_products_kernel` (each
    score one chain of fused multiply-adds over the ``d + 1`` terms in
    order, as BLAS sums; about 1.7 times as fast as the BLAS product on a
    core where OpenBLAS picks its AVX2 kernel, where the product took 2.7
    of the encoder's 5.5 us an item at 8 x 256); else the BLAS product.

    Greedy start (``have_init`` False): for each codebook ``m`` in turn, the
    product, then per item the first minimum and the residual update; the
    scores of codebook ``m`` then hold the cross terms of the codebooks
    before it. With ``have_init``: ``P[m] = [x, 1] C2aug[m]`` and the
    residuals of the given codes.

    ICM (:func:`_encode_item`) then runs per item on integer scores
    ``S[m] = trunc(P[m] / s_m) + Σ_l Q[(l, c_l), m]`` (exact int32 sums of
    the cross terms the float scores lack), within ``δ`` of the exact
    objective, with ``δ = (M − 1) qrow[m] + qtrunc[m] + (c_d + 4 c_1)(ρ + ν) +
    4 c_0``: ``qrow`` bounds one quantized cross term (half a step and the
    rounding of the float table), ``qtrunc`` the truncation of ``P / s_m``,
    ``bnd = [c_d, c_0, c_1, ν]`` the float rounding (``c_d`` the ``d``-term
    dot products of the product and of the exact scores and the ``M``-step
    residuals; ``c_0``, ``c_1`` each of the other roundings of a score;
    ``ν`` the largest codeword norm, ``ρ`` the largest norm of the item and
    of its residuals so far, tracked squared in ``rmax2``). A step whose
    current code is not provably the best re-scores its candidates exactly
    in ``d`` dimensions. An item whose ``|P / s_m|`` exceeds ``2**30`` is
    encoded by the exact residual kernel (``_icm_direct_kernel``, ``Ct`` the
    transposed codebooks) instead.

    Scratch: ``R`` (block, d + 1), ``P`` (M, block, K) and ``Pi`` its
    integer view, ``S`` (M, K) int32, ``t`` (d), ``seen`` (M) int64, ``kk``
    (K + 1) int32 ``arange``, ``stats`` (3) int64 counters (decisions,
    exact re-scorings, ICM changes), ``rmax2`` (block) float64. The loops
    use 512-bit vectors where the CPU has them
    (:func:`~skhash.utils._numba_stack.wide_vectors`), as the products
    kernel's.
    """
    wide_vectors()
    n, d = X.shape
    B = R.shape[0]
    M, K, _ = C.shape
    S1 = S.reshape(M * K)
    tiled = C2tiles.shape[1] * C2tiles.shape[3] == K
    for s0 in range(0, n, B):
        nb = min(B, n - s0)
        for i in range(B):
            if i < nb:
                for j in range(d):
                    R[i, j] = X[s0 + i, j]
            else:
                for j in range(d):
                    R[i, j] = 0.0
            R[i, d] = 1.0
            rmax2[i] = _sqnorm(R, i, d)
        if not have_init:
            for m in range(M):
                Pm = P[m]
                if tiled:
                    wide_products_kernel(R, C2tiles[m], Pm)
                else:
                    np.dot(R, C2aug[m], Pm)
                Pim = Pi[m]
                for i in range(nb):
                    b = _argmin_row(Pm, Pim, i, kk)
                    codes[s0 + i, m] = b
                    for j in range(d):
                        R[i, j] -= C[m, b, j]
                    nr = _sqnorm(R, i, d)
                    rmax2[i] = nr if nr > rmax2[i] else rmax2[i]
        else:
            for m in range(M):
                if tiled:
                    wide_products_kernel(R, C2tiles[m], P[m])
                else:
                    np.dot(R, C2aug[m], P[m])
            for i in range(nb):
                for m in range(M):
                    c = codes[s0 + i, m]
                    for j in range(d):
                        R[i, j] -= C[m, c, j]
                    nr = _sqnorm(R, i, d)
                    rmax2[i] = nr if nr > rmax2[i] else rmax2[i]
        if M == 1 or n_iter == 0:
            continue
        for i in range(nb):
            ok = _encode_item(
                P, i, R, codes, s0 + i, C, C2, sq, Q, inv_s, qrow, qtrunc,
                bnd, rmax2[i], have_init, n_iter, S, S1, t, kk, seen, stats,
            )  # fmt: skip
            if not ok:  # ICM from the start codes, on the residual
                _icm_direct_kernel(
                    X[s0 + i : s0 + i + 1], Ct, sq, codes[s0 + i : s0 + i + 1],
                    True, n_iter,
                )  # fmt: skip


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _key32(b):
    """int32 key of the float32 of bits ``b``, of the same order (``-0.0``
    just below ``0.0``, as in :func:`_argmin`)."""
    return np.int32(b ^ np.int32((b >> np.int32(31)) & np.int32(0x7FFFFFFF)))


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _argmin32_row(si, i, kk):
    """First index of the smallest entry of row ``i`` of the float32 array
    of bits ``si`` (its ``int32`` view): the same as
    :func:`~skhash.quantization._encode_kernels._argmin`, in two passes of
    32-bit integer minima that vectorise (``kk`` the int32 ``arange`` of one
    more entry). The row is indexed in place (a view would cost a reference
    count)."""
    n = si.shape[1]
    mn = np.int32(0x7FFFFFFF)
    for k in range(n):
        v = _key32(si[i, k])
        mn = v if v < mn else mn
    big = kk[n]
    first = big
    for k in range(n):
        f = kk[k] if _key32(si[i, k]) == mn else big
        first = f if f < first else first
    return first


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _argmin_row(v, vi, i, kk):
    """First minimum of the row ``i`` of the scores ``v`` (``vi`` their
    integer view)."""
    return _argmin32_row(vi, i, kk) if vi.itemsize == 4 else _argmin64(v[i], vi[i])
