"""Compiled greedy + ICM additive encoder on quantized cross-term tables.

The default additive search of :func:`skhash.quantization.encode` (greedy
residual start, or given codes, then ICM sweeps), split from
:mod:`skhash.quantization._encode_kernels` (which keeps the beam search, the
local search and the residual kernel for codebooks too large for tables).

The objective of codeword ``k`` of codebook ``m`` with the other codes
fixed is, up to a constant of the item,

``E_m(k) = (U[m, k] + ‖C_mk‖²) + Σ_{l≠m} G[(l, c_l), (m, k)]``

with ``U = −2⟨x, C⟩`` (one BLAS product per block of items) and the Gram
table ``G = 2⟨C_la, C_mk⟩``. Summing rows of the float ``G`` (``M²K²``
entries, 16 MiB at 8 × 256 in float32) for every item is bound by memory
traffic, so the kernel keeps the cross terms as *exact* int32 sums of an
int16 copy ``Q ≈ G / s_m`` (half the bytes; integer sums have no rounding,
so the incremental updates never drift) and scores every codeword with
``Ẽ_m(k) = (U + ‖C‖²) + s_m Σ Q``, which is within a proven bound ``δ`` of
``E_m(k)`` (``(M − 1) s_m / 2`` for the quantization plus a float rounding
term). A decision compares codewords with ``Ẽ``; only codewords within
``2δ`` of the best are candidates, and when there are several they are
re-scored exactly (``E`` summed from the float table in a fixed order) and
the first smallest wins, as ``np.argmin`` would choose. The codes are thus
those of greedy + ICM on the exact objective ``E``: the quantized table only
decides faster, it never changes a decision.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from skhash.quantization._encode_kernels import _argmin, _argmin64

__all__ = ["encode_block", "quantize_tables"]

# int16 range used by the quantized table (symmetric).
_QMAX = 32767


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
def _quantize(G, inv_s, M, K, Q):
    """``Q[r, mK + k] = rint(G[r, mK + k] · inv_s[m])``, 0 on the diagonal
    blocks (a codebook's own block is never used)."""
    MK = M * K
    for r in range(MK):  # the rows of G (Q may have more)
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
                v = min(max(v, -32767.0), 32767.0)
                q[k] = np.int16(v)


def quantize_tables(G, codebooks):
    """int16 copy of the Gram table ``G`` and the constants of its bound.

    Parameters
    ----------
    G : ndarray of shape (M K, M K)
        ``2⟨C_la, C_mk⟩`` in the computation dtype.
    codebooks : ndarray of shape (M, K, d)
        The codebooks (same dtype).

    Returns
    -------
    Q : ndarray of int16, shape (M K + 1, M K)
        ``G[r, mK + k] ≈ scales[m] · Q[r, mK + k]`` within ``scales[m] / 2``
        off the diagonal blocks (which are 0); the last row is 0.
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
    # a little over the largest entry, so that no entry rounds past int16
    # (no entry at all, or only zeros: any scale)
    scales = np.where(bmax > 0, bmax * (1.0 + 1e-6) / _QMAX, 1.0)
    # one more row, of zeros, pads the groups of four rows of the kernel
    Q = np.empty((G.shape[0] + 1, G.shape[1]), dtype=np.int16)
    _quantize(G, 1.0 / scales, M, K, Q)
    Q[-1] = 0
    return Q, scales, float(bmax.max()), float(norms.max())


@njit(cache=True, nogil=True, boundscheck=False)
def _block_add(F, Q, rows, n, base, K, s):
    """``F += s · Σ_{j<n} Q[rows[j], base:base+K]`` for one block of scores.

    ``rows`` is padded with the index of the zero row of ``Q`` to a multiple
    of four; the rows are summed four at a time exactly in int32 and
    converted once. The loops index views from 0 so that they vectorise
    (more rows a pass do not: too many arrays to check for overlap).
    """
    f32 = F.itemsize == 4
    for j in range(0, n, 4):
        q0 = Q[rows[j], base : base + K]
        q1 = Q[rows[j + 1], base : base + K]
        q2 = Q[rows[j + 2], base : base + K]
        q3 = Q[rows[j + 3], base : base + K]
        for k in range(K):
            a = np.int32(
                np.int32(np.int32(q0[k]) + np.int32(q1[k]))
                + np.int32(np.int32(q2[k]) + np.int32(q3[k]))
            )
            if f32:
                F[k] = F[k] + s * np.float32(a)
            else:
                F[k] = F[k] + s * np.float64(a)


@njit(cache=True, nogil=True, boundscheck=False)
def _block_update(F, qn, qo, base, K, s):
    """``F += s · (qn − qo)`` over one block (exact int difference)."""
    f32 = F.itemsize == 4
    a = qn[base : base + K]
    b = qo[base : base + K]
    for k in range(K):
        dq = np.int32(np.int32(a[k]) - np.int32(b[k]))
        if f32:
            F[k] = F[k] + s * np.float32(dq)
        else:
            F[k] = F[k] + s * np.float64(dq)


@njit(cache=True, nogil=True, boundscheck=False, fastmath=True)
def _count_le(v, thr, zero, one):
    """Number of entries ``<= thr`` (finite values: a float count in the
    dtype of ``zero`` and ``one``, which vectorises; exact up to 2**24)."""
    n = zero
    for k in range(v.shape[0]):
        n += one if v[k] <= thr else zero
    return n


@njit(cache=True, nogil=True, boundscheck=False)
def _fill_rows(rows, ci, K, lo, hi, skip, zero_row):
    """``rows = [l K + c_l for l in [lo, hi) if l != skip]``, padded with
    ``zero_row`` to a multiple of four; returns the padded length."""
    n = 0
    for lo_ in range(lo, hi):
        if lo_ != skip:
            rows[n] = lo_ * K + ci[lo_]
            n += 1
    while n % 4:
        rows[n] = zero_row
        n += 1
    return n


@njit(cache=True, nogil=True, boundscheck=False)
def _exact_best(r, C, C2, sq, m, cm, Fb, thr, t):
    """Among the codewords ``k`` of codebook ``m`` with ``Fb[k] <= thr``, the
    first one of smallest exact objective ``‖C_mk‖² − 2⟨t, C_mk⟩``, where
    ``t = r + C_m[cm]`` is the residual without codebook ``m`` (``C2 = −2C``;
    the dot product is summed in a fixed order)."""
    d = r.shape[0]
    c = C[m, cm]
    for j in range(d):
        t[j] = r[j] + c[j]
    best = -1
    best_e = sq[m, 0]
    for k in range(Fb.shape[0]):
        if Fb[k] > thr:
            continue
        ck = C2[m, k]
        e = sq[m, k]
        for j in range(d):
            e += t[j] * ck[j]
        if best < 0 or e < best_e:
            best = k
            best_e = e
    return best


@njit(cache=True, nogil=True, boundscheck=False, fastmath=True)
def _sqnorm(r):
    """``‖r‖²`` in float64 (reassociated: only used in the error bound,
    which allows for it)."""
    s = 0.0
    for j in range(r.shape[0]):
        s += np.float64(r[j]) * np.float64(r[j])
    return s


@njit(cache=True, nogil=True, boundscheck=False)
def _argmin_any(v, vi):
    return _argmin(v, vi) if vi.itemsize == 4 else _argmin64(v, vi)


@njit(cache=True, nogil=True, boundscheck=False)
def encode_block(
    xb,
    n_rows,
    C,
    C2,
    C2aug,
    sq,
    Q,
    scales,
    qerr,
    bnd,
    codes,
    have_init,
    n_iter,
    R,
    P,
    Pi,
    t,
    consts,
    rows,
    seen,
    rmax2,
    rr,
):
    """Codes of the first ``n_rows`` items of a block ``xb`` (always a full
    block: the BLAS products see the same shapes whatever the call).

    ``C2aug[m]`` is ``−2 C_mᵀ`` with the squared norms ``‖C_mk‖²`` as one
    more row, and ``R`` holds the residuals of the block with one more
    column of ones, so that one BLAS product ``P[m] = R C2aug[m]`` gives the
    scores ``‖C_mk‖² − 2⟨r, C_mk⟩`` of codebook ``m`` for the whole block.

    Greedy start (``have_init`` False): for each codebook ``m`` in turn, the
    product, then per item the argmin and the residual update. The greedy
    scores are kept in ``P``: with the cross terms of the codebooks chosen
    later (from the int16 table ``Q``) they become the ICM scores. With
    ``have_init`` the given ``codes`` start: ``P[m] = [x, 1] C2aug[m]`` plus
    the cross terms of all the other codebooks.

    ICM then works on the approximate scores ``P`` (within ``δ`` of the exact
    objective, see the module docstring); a step whose current code is not
    provably the best re-scores its candidates exactly in ``d`` dimensions.
    ``δ = qerr[m] + (c_d + c_1 n) (ρ + ν) + c_0 n`` with
    ``bnd = [c_d, c_0, c_1, ν]`` (``ν`` the largest codeword norm), ``ρ``
    the largest norm of the item and of its residuals so far (tracked in
    ``rmax2``, squared) and ``n`` the count of roundings of a score.

    Scratch: ``R`` (block, d + 1), ``P`` (M, block, K) and ``Pi`` its
    integer view, ``t`` (d), ``consts`` ``[0, 1, scratch]`` in the float
    dtype, ``rows`` (M + 4) and ``seen`` (M) ints, ``rmax2`` and ``rr``
    (block) float64.
    """
    M, K, d = C.shape
    zero_row = Q.shape[0] - 1
    zero = consts[0]
    one = consts[1]
    for i in range(R.shape[0]):
        for j in range(d):
            R[i, j] = xb[i, j]
        R[i, d] = one
        rmax2[i] = _sqnorm(xb[i])
        rr[i] = rmax2[i]
    if not have_init:
        for m in range(M):
            Pm = P[m]
            np.dot(R, C2aug[m], Pm)
            Pim = Pi[m]
            for i in range(n_rows):
                Pb = Pm[i]
                b = _argmin_any(Pb, Pim[i])
                codes[i, m] = b
                c = C[m, b]
                for j in range(d):
                    R[i, j] -= c[j]
                # ‖r − c‖² = ‖r‖² + (‖c‖² − 2⟨r, c⟩): the running squared
                # norm of the residual from the scores (for the bound only)
                rr[i] += Pb[b]
                rmax2[i] = rr[i] if rr[i] > rmax2[i] else rmax2[i]
    else:
        for m in range(M):
            np.dot(R, C2aug[m], P[m])
        for i in range(n_rows):
            ci = codes[i]
            for m in range(M):
                c = C[m, ci[m]]
                for j in range(d):
                    R[i, j] -= c[j]
                nr = _sqnorm(R[i, :d])
                rmax2[i] = nr if nr > rmax2[i] else rmax2[i]
    if M == 1 or n_iter == 0:
        return
    for i in range(n_rows):
        ci = codes[i]
        r = R[i, :d]
        # the cross terms: the codebooks after m (greedy), all others (init)
        for m in range(M):
            if not have_init and m == M - 1:
                continue
            n = _fill_rows(rows, ci, K, 0 if have_init else m + 1, M, m, zero_row)
            _block_add(P[m, i], Q, rows, n, m * K, K, scales[m])
        # ICM sweeps; a step is skipped when no other code changed since the
        # last step of the same codebook (it would change nothing)
        n_upd = 0
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
                base = m * K
                cm = ci[m]
                Fb = P[m, i]
                # the margin is stored in the float dtype, so that the
                # comparisons are not widened
                # roundings of a score: the product and two per pass of rows
                # (at most ceil((M - 1) / 4) passes at the start), two per
                # update
                n_ops = 2 + 2 * ((M + 2) // 4) + 2 * n_upd
                consts[2] = (
                    qerr[m]
                    + (bnd[0] + bnd[2] * n_ops)
                    * (1.001 * np.sqrt(rmax2[i]) + 1.01 * bnd[3])
                    + bnd[1] * n_ops
                )
                margin = consts[2]
                margin = margin + margin
                if _count_le(Fb, Fb[cm] + margin, zero, one) <= 1:
                    continue
                b = _argmin_any(Fb, Pi[m, i])
                thr = Fb[b] + margin
                if _count_le(Fb, thr, zero, one) > 1:
                    b = _exact_best(r, C, C2, sq, m, cm, Fb, thr, t)
                if b != cm:
                    qn = Q[base + b]
                    qo = Q[base + cm]
                    for lo in range(M):
                        if lo != m:
                            _block_update(P[lo, i], qn, qo, lo * K, K, scales[lo])
                    co = C[m, cm]
                    cn = C[m, b]
                    for j in range(d):
                        r[j] = (r[j] + co[j]) - cn[j]
                    nr = _sqnorm(r)
                    rmax2[i] = nr if nr > rmax2[i] else rmax2[i]
                    ci[m] = b
                    n_upd += 1
                    last_change = step
                    seen[m] = step
