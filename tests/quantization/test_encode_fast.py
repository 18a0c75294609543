"""Tests of the fast additive encoder (quantization._encode_icm).

The greedy start runs one BLAS product per codebook and block, and ICM scores
codewords from an int16 copy of the Gram table; near-ties are re-scored
exactly. These tests check that the quantized table never changes a decision
(the codes are those of the exact greedy + ICM search, checked against the
float64 numpy reference and against an independent brute-force ICM), that
the table and its error bound hold on extreme codebooks, and that the codes
do not depend on the threads or on the other items of the call.
"""

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from skhash.quantization import _encode_kernels as E
from skhash.quantization import encode, kmeans_codebooks, quantization_error
from skhash.quantization._encode import _encode_numpy
from skhash.quantization._encode_icm import quantize_tables


def _icm_bruteforce(X, C, n_iter, init):
    """Greedy (or ``init``) then ICM, each step an exhaustive float64 search
    on ``‖x − Σ_{l≠m} C_l[c_l] − C_m[k]‖²`` (first minimum)."""
    X = X.astype(np.float64)
    C = C.astype(np.float64)
    M = C.shape[0]
    codes = np.zeros((len(X), M), dtype=np.int64)
    for i, x in enumerate(X):
        if init is None:
            r = x.copy()
            for m in range(M):
                codes[i, m] = np.argmin(((r - C[m]) ** 2).sum(1))
                r -= C[m][codes[i, m]]
        else:
            codes[i] = init[i]
        for _ in range(n_iter):
            for m in range(M):
                rest = x - sum(C[lo][codes[i, lo]] for lo in range(M) if lo != m)
                codes[i, m] = np.argmin(((rest - C[m]) ** 2).sum(1))
    return codes


def _per_item_error(X, C, codes):
    rec = sum(C[m][codes[:, m]] for m in range(C.shape[0]))
    return ((X.astype(np.float64) - rec) ** 2).sum(1)


# --------------------------------------------------------------------------- #
# The quantized table never changes a decision
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("seed", [0, 1])
def test_learned_codebooks_match_the_reference(seed):
    # clustered data and codebooks fitted to it (concentrated codes, many
    # ICM changes): the codes of the numpy reference, item for item
    rng = np.random.RandomState(seed)
    centers = rng.randn(20, 16)
    X = (centers[rng.randint(20, size=1500)] + 0.5 * rng.randn(1500, 16)).astype(
        np.float32
    )
    C = kmeans_codebooks(X, 6, 32, kind="additive", random_state=seed)
    for n_iter in (1, 3):
        got = encode(X, C, kind="additive", n_iter=n_iter)
        ref = _encode_numpy(X, C, kind="additive", n_iter=n_iter)
        assert_array_equal(got, ref)


def test_near_ties_are_decided_exactly():
    # pairs of codewords a few float32 ulps apart (codebooks are float32):
    # their scores differ by ~1e-7 relative, far below the int16 table's
    # resolution (about 1e-4 of the largest cross term), far above the
    # float64 rounding of the scores of float64 items. The quantized scores
    # cannot tell them apart, so only the exact re-scoring picks the right one.
    rng = np.random.RandomState(3)
    M, K, d = 4, 16, 8
    C = rng.randn(M, K, d).astype(np.float32)
    C[:, K // 2 :] = C[:, : K // 2] * np.float32(1 + 4e-7) ** rng.randint(
        -3, 4, size=(M, K // 2, 1)
    ).astype(np.float32)
    X = rng.randn(400, d)
    for init in (None, rng.randint(K, size=(400, M))):
        got = encode(X, C, kind="additive", n_iter=4, init_codes=init)
        assert_array_equal(got, _icm_bruteforce(X, C, 4, init))
        ref = _encode_numpy(X, C, kind="additive", n_iter=4, init_codes=init)
        assert_array_equal(got, ref)


def test_many_codebooks_and_float64():
    # more than 9 codebooks: the start sums more than two passes of rows
    rng = np.random.RandomState(11)
    C = (0.4 * rng.randn(12, 8, 6)).astype(np.float32)
    X = rng.randn(250, 6)
    for init in (None, rng.randint(8, size=(250, 12))):
        got = encode(X, C, kind="additive", n_iter=3, init_codes=init)
        assert_array_equal(got, _icm_bruteforce(X, C, 3, init))


def test_exact_ties_pick_the_first_codeword():
    # exact duplicates at the end of each codebook: never chosen
    rng = np.random.RandomState(4)
    C = rng.randn(3, 12, 6)
    C[:, 6:] = C[:, :6]
    X = rng.randn(300, 6)
    got = encode(X, C, kind="additive", n_iter=3)
    assert got.max() < 6
    assert_array_equal(got, _icm_bruteforce(X, C, 3, None))


@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e5])
def test_scale_of_the_data_does_not_matter(scale):
    # the bound is relative to the sizes involved: tiny and huge codebooks
    rng = np.random.RandomState(5)
    C = scale * rng.randn(3, 16, 5)
    X = scale * rng.randn(200, 5)
    got = encode(X, C, kind="additive", n_iter=3)
    assert_array_equal(got, _icm_bruteforce(X, C, 3, None))
    # float32 scores, same codes as the reference in float32
    got32 = encode(X.astype(np.float32), C.astype(np.float32), kind="additive")
    ref32 = _encode_numpy(X.astype(np.float32), C.astype(np.float32), kind="additive")
    assert (got32 == ref32).all(axis=1).mean() > 0.99


def test_icm_error_is_not_above_the_greedy_start():
    rng = np.random.RandomState(6)
    X = rng.randn(600, 12).astype(np.float32)
    C = kmeans_codebooks(X, 4, 32, kind="additive", random_state=0)
    greedy = _per_item_error(X, C, encode(X, C, kind="additive", n_iter=0))
    icm = _per_item_error(X, C, encode(X, C, kind="additive", n_iter=3))
    assert np.all(icm <= greedy + 1e-4 * greedy.max())
    assert icm.mean() < greedy.mean()
    assert quantization_error(X, encode(X, C, kind="additive"), C) == pytest.approx(
        icm.mean(), rel=1e-5
    )


# --------------------------------------------------------------------------- #
# The int16 table
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("scale", [1e-8, 1.0, 1e6])
def test_quantized_table_is_within_half_a_step(scale):
    rng = np.random.RandomState(7)
    M, K, d = 3, 8, 4
    C = scale * rng.randn(M, K, d)
    C[1, 0] = 0.0  # a zero codeword
    flat = C.reshape(M * K, d)
    G = (2.0 * flat) @ flat.T
    Q, scales, gmax, nmax = quantize_tables(G, C)
    assert Q.dtype == np.int16 and Q.shape == (M * K, M * K)
    assert np.abs(Q).max() <= 32767
    step = np.repeat(scales, K)[None, :]
    err = np.abs(Q * step - G)
    own = np.kron(np.eye(M, dtype=bool), np.ones((K, K), dtype=bool))
    assert not Q[own].any()
    assert np.all(err[~own] <= 0.5 * step.repeat(M * K, 0)[~own] * (1 + 1e-9))
    assert gmax == pytest.approx(np.abs(G[~own]).max())
    assert nmax == pytest.approx(np.linalg.norm(flat, axis=1).max())


def test_single_codebook_and_zero_codebooks():
    rng = np.random.RandomState(8)
    X = rng.randn(50, 4)
    C1 = rng.randn(1, 8, 4)
    assert_array_equal(
        encode(X, C1, kind="additive"), _encode_numpy(X, C1, kind="additive")
    )
    Z = np.zeros((3, 5, 4))
    assert not encode(X, Z, kind="additive").any()


# --------------------------------------------------------------------------- #
# Threads and blocks
# --------------------------------------------------------------------------- #


def test_same_codes_for_any_threads_and_any_slice():
    rng = np.random.RandomState(9)
    n = 3 * E._BLOCK + 17
    X = rng.randn(n, 10).astype(np.float32)
    C = kmeans_codebooks(X, 5, 16, kind="additive", random_state=0)
    full = encode(X, C, kind="additive")
    assert_array_equal(encode(X, C, kind="additive", n_jobs=2), full)
    assert_array_equal(encode(X, C, kind="additive", n_jobs=-1), full)
    for start, size in [(0, 1), (E._BLOCK - 3, 7), (n - 5, 5), (11, 2 * E._BLOCK)]:
        assert_array_equal(
            encode(X[start : start + size], C, kind="additive"),
            full[start : start + size],
        )


def test_beam_and_local_search_still_refine_with_the_new_icm():
    rng = np.random.RandomState(10)
    X = rng.randn(300, 8)
    C = kmeans_codebooks(X, 3, 16, kind="additive", random_state=0)
    base = _per_item_error(X, C, encode(X, C, kind="additive"))
    ils = _per_item_error(X, C, encode(X, C, kind="additive", ils_iters=4))
    assert np.all(ils <= base + 1e-9)
    beam = encode(X, C, kind="additive", beam_width=8)
    assert quantization_error(X, beam, C) <= base.mean() + 1e-9


def test_approximate_scores_stay_within_the_bound():
    # encode single items through the kernel with the wrapper's tables, then
    # check the integer ICM scores each ends with against the float64
    # objective: |s_m S - E| <= delta (the bound the exact re-scoring relies on)
    from skhash.quantization._encode_icm import _LIM, encode_range

    rng = np.random.RandomState(12)
    M, K, d, B = 8, 32, 24, E._BLOCK
    centers = rng.randn(10, d)
    Xall = centers[rng.randint(10, size=3000)] + 0.5 * rng.randn(3000, d)
    Xall = Xall.astype(np.float32)
    C = kmeans_codebooks(Xall, M, K, kind="additive", random_state=0)
    C = np.ascontiguousarray(C, dtype=np.float32)
    tab = E._tables(C, False)
    sq = np.einsum("mkd,mkd->mk", C, C)
    R = np.empty((B, d + 1), np.float32)
    P = np.empty((M, B, K), np.float32)
    S = np.empty((M, K), np.int32)
    rmax2 = np.empty(B)
    stats = np.zeros(3, np.int64)
    C64 = C.astype(np.float64)
    scales = 1.0 / tab["inv_s"].astype(np.float64)
    n_iter, worst, n_items = 3, 0.0, 40
    X = Xall[:n_items]
    ref = _encode_numpy(X, C, kind="additive")
    for i in range(n_items):
        codes = np.zeros((1, M), np.int32)
        encode_range(
            X[i : i + 1], codes, C, tab["C2"], tab["C2aug"], tab["C2tiles"],
            tab["Ct"], sq,
            tab["Q"], tab["inv_s"], tab["qrow"], tab["qtrunc"], tab["bnd"], False,
            n_iter, R, P, P.view(np.int32), S, np.empty(d, np.float32),
            np.arange(K + 1, dtype=np.int32),
            np.empty(M, np.int64), stats, rmax2,
        )  # fmt: skip
        assert_array_equal(codes[0], ref[i])
        rec = sum(C64[lo][codes[0, lo]] for lo in range(M))
        # rho: the item, its greedy residuals (rmax2) and its final residual
        r_fin = X[i].astype(np.float64) - rec
        rho = max(np.sqrt(rmax2[0]), np.linalg.norm(r_fin))
        rho = 1.001 * rho + 1.01 * tab["bnd"][3]
        bnd = tab["bnd"]
        for m in range(M):
            t = X[i] - (rec - C64[m][codes[0, m]])
            T = (C64[m] ** 2).sum(1) - 2 * C64[m] @ t
            delta = (
                (M - 1) * tab["qrow"][m]
                + tab["qtrunc"][m]
                + (bnd[0] + bnd[2] * 4) * rho
                + bnd[1] * 4
            )
            worst = max(worst, np.abs(scales[m] * S[m] - T).max() / delta)
    assert np.abs(P).max() * tab["inv_s"].max() < _LIM
    assert worst <= 1.0
    assert worst > 1e-2  # the bound is not vacuous either
    assert stats[0] > 0 and stats[2] > 0  # ICM decided, and changed codes


# --------------------------------------------------------------------------- #
# Items past the integer range, and the cached tables
# --------------------------------------------------------------------------- #


def test_items_too_large_for_the_integer_scores_use_the_exact_kernel():
    # items 1e12 times the codewords: their float scores divided by the table
    # step overflow int32, so they go to the residual kernel; the codes are
    # still those of the exact greedy + ICM search (in float64)
    from skhash.quantization._encode_icm import _LIM

    rng = np.random.RandomState(14)
    C = rng.randn(3, 16, 5)
    X = rng.randn(60, 5)
    X[::3] *= 1e12
    tab = E._tables(np.ascontiguousarray(C), False)
    big = np.abs(X[::3] @ C.reshape(-1, 5).T).max() * tab["inv_s"].max()
    assert big > _LIM
    for init in (None, rng.randint(16, size=(60, 3))):
        got = encode(X, C, kind="additive", n_iter=3, init_codes=init)
        assert_array_equal(got, _icm_bruteforce(X, C, 3, init))


def test_cached_tables_follow_the_codebooks_content():
    # the tables are cached by the codebooks' content: changing them in place
    # (same array) or passing other codebooks gives their own codes
    rng = np.random.RandomState(15)
    X = rng.randn(200, 6)
    C = rng.randn(3, 8, 6)
    first = encode(X, C, kind="additive")
    assert_array_equal(first, _encode_numpy(X, C, kind="additive"))
    C_before = C.copy()
    C[1] = rng.randn(8, 6)
    assert_array_equal(
        encode(X, C, kind="additive"), _encode_numpy(X, C, kind="additive")
    )
    assert_array_equal(encode(X, C_before, kind="additive"), first)
    # float32 codebooks of the same values are another table
    C32 = C_before.astype(np.float32)
    assert_array_equal(
        encode(X.astype(np.float32), C32, kind="additive"),
        _encode_numpy(X.astype(np.float32), C32, kind="additive"),
    )


@pytest.mark.parametrize("K", [64, 128, 256])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tiled_products_match_the_reference(K, dtype):
    # codebooks of whole tiles (K a multiple of 64): the scores come from the
    # products kernel instead of the BLAS product; on clustered data with
    # codebooks fitted to it (many near-ties), from the greedy start or given
    # codes, the codes are the numpy reference's; with duplicated codewords
    # (exact ties) the same codewords, each the lower index of its pair
    # (each score is one chain in order, so duplicates score alike; the
    # BLAS product of the reference rounds some columns differently at this
    # width, and it then picks the upper copy for 7 % of the codes)
    rng = np.random.RandomState(K)
    centers = rng.randn(15, 20)
    X = (centers[rng.randint(15, size=1200)] + 0.5 * rng.randn(1200, 20)).astype(dtype)
    C = kmeans_codebooks(X, 4, K, kind="additive", random_state=0)
    C = np.ascontiguousarray(C, dtype=dtype)
    assert E._tables(C, False)["C2tiles"].shape[1] == K // 64  # the tiled path
    init = rng.randint(K, size=(len(X), 4))
    for n_iter, start in ((0, None), (3, None), (3, init)):
        got = encode(X, C, kind="additive", n_iter=n_iter, init_codes=start)
        ref = _encode_numpy(X, C, kind="additive", n_iter=n_iter, init_codes=start)
        assert_array_equal(got, ref)
    C[:, K // 2 :] = C[:, : K // 2]
    got = encode(X, C, kind="additive")
    ref = _encode_numpy(X, C, kind="additive")
    assert_array_equal(got, ref % (K // 2))
