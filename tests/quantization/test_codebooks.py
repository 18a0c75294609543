"""Tests of skhash.quantization._codebooks: codebooks, encoding, AQD."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.utils._param_validation import InvalidParameterError

from skhash.quantization import (
    AdditiveQuantizer,
    ProductQuantizer,
    aqd,
    decode,
    encode,
    kmeans_codebooks,
    lookup_tables,
    product_blocks,
    quantization_error,
    reconstruction_sqnorms,
    update_codebooks,
)

KINDS = ["additive", "product"]


def _data(n=120, d=7, seed=0):
    return np.random.RandomState(seed).randn(n, d)


def _one_hot(codes, n_codewords):
    n, n_codebooks = codes.shape
    B = np.zeros((n, n_codebooks * n_codewords))
    for m in range(n_codebooks):
        B[np.arange(n), m * n_codewords + codes[:, m]] = 1.0
    return B


def _outside_blocks(d, n_codebooks):
    outside = np.ones((n_codebooks, d), dtype=bool)
    for m, block in enumerate(product_blocks(d, n_codebooks)):
        outside[m, block] = False
    return outside


# --------------------------------------------------------------------------- #
# product_blocks and k-means initialisation
# --------------------------------------------------------------------------- #


def test_product_blocks_partition_uneven_dims():
    blocks = product_blocks(10, 4)
    assert [len(b) for b in blocks] == [3, 3, 2, 2]
    assert_array_equal(np.concatenate(blocks), np.arange(10))


def test_product_blocks_too_many_codebooks():
    with pytest.raises(ValueError, match=r"n_codebooks=5 .* n_features=3"):
        product_blocks(3, 5)


@pytest.mark.parametrize("kind", KINDS)
def test_kmeans_codebooks_shape_dtype_and_determinism(kind):
    X = _data()
    C1 = kmeans_codebooks(X, 3, 8, kind=kind, random_state=0)
    C2 = kmeans_codebooks(X, 3, 8, kind=kind, random_state=0)
    C3 = kmeans_codebooks(X, 3, 8, kind=kind, random_state=1)
    assert C1.shape == (3, 8, 7) and C1.dtype == np.float32
    assert_array_equal(C1, C2)
    assert not np.array_equal(C1, C3)


def test_kmeans_codebooks_product_zero_outside_blocks():
    X = _data()
    C = kmeans_codebooks(X, 3, 8, kind="product", random_state=0)
    outside = _outside_blocks(7, 3)
    for m in range(3):
        assert np.all(C[m][:, outside[m]] == 0)
        assert np.any(C[m][:, ~outside[m]] != 0)


def test_kmeans_codebooks_additive_is_residual():
    # The first codebook is k-means on X itself: its quantization error alone is
    # larger than with all codebooks.
    X = _data(n=200)
    C = kmeans_codebooks(X, 3, 8, kind="additive", random_state=0)
    err_1 = quantization_error(X, encode(X, C[:1], kind="additive"), C[:1])
    err_3 = quantization_error(X, encode(X, C, kind="additive"), C)
    assert err_3 < err_1 < np.mean(np.sum(X**2, axis=1))


@pytest.mark.parametrize("kind", KINDS)
def test_kmeans_codebooks_fewer_samples_than_codewords(kind):
    X = _data(n=5, d=4)
    C = kmeans_codebooks(X, 2, 16, kind=kind, random_state=0)
    assert C.shape == (2, 16, 4) and np.all(np.isfinite(C))
    # Jittered copies of the samples: all codewords of a codebook are distinct.
    assert len(np.unique(C[0], axis=0)) == 16
    codes = encode(X, C, kind=kind)
    assert quantization_error(X, codes, C) < 1e-6
    assert_array_equal(C, kmeans_codebooks(X, 2, 16, kind=kind, random_state=0))


@pytest.mark.parametrize("kind", KINDS)
def test_kmeans_codebooks_learn_on_a_bounded_sample(kind):
    # max_points_per_centroid * n_codewords rows are drawn once (without
    # replacement, from random_state): the other rows do not matter
    X = _data(n=400, d=6, seed=2)
    C = kmeans_codebooks(X, 2, 4, kind=kind, random_state=0, max_points_per_centroid=5)
    keep = np.sort(np.random.RandomState(0).choice(400, 20, replace=False))
    other = np.setdiff1d(np.arange(400), keep)
    X2 = X.copy()
    X2[other] = 100.0  # far away: would pull a codeword if it were used
    C2 = kmeans_codebooks(
        X2, 2, 4, kind=kind, random_state=0, max_points_per_centroid=5
    )
    assert_array_equal(C, C2)
    assert np.abs(C).max() < 10
    # no subsample when there are few enough rows: None gives the same codebooks
    assert_array_equal(
        kmeans_codebooks(X, 2, 4, kind=kind, random_state=0),
        kmeans_codebooks(
            X, 2, 4, kind=kind, random_state=0, max_points_per_centroid=None
        ),
    )


def test_kmeans_codebooks_seeding_subset_is_deterministic():
    # more rows than the k-means++ seeding subset (8 per codeword, >= 1024),
    # all of them used by the Lloyd iterations (no max_points_per_centroid)
    X = _data(n=3000, d=3, seed=3)
    kw = {"kind": "additive", "n_iter": 2, "max_points_per_centroid": None}
    C1 = kmeans_codebooks(X, 2, 4, random_state=0, **kw)
    C2 = kmeans_codebooks(X, 2, 4, random_state=0, **kw)
    assert_array_equal(C1, C2)
    assert not np.array_equal(C1, kmeans_codebooks(X, 2, 4, random_state=1, **kw))
    err = quantization_error(X, encode(X, C1, kind="additive"), C1)
    assert err < 0.8 * np.mean(np.sum(X**2, axis=1))


@pytest.mark.parametrize("bad", [0, -3, 2.5, "all"])
def test_kmeans_codebooks_max_points_per_centroid_is_validated(bad):
    with pytest.raises(InvalidParameterError, match="max_points_per_centroid"):
        kmeans_codebooks(_data(), 2, 4, kind="additive", max_points_per_centroid=bad)


# --------------------------------------------------------------------------- #
# encode / decode
# --------------------------------------------------------------------------- #


def test_encode_product_equals_brute_force():
    X = _data(n=150, d=7)
    C = kmeans_codebooks(X, 3, 8, kind="product", random_state=0)
    # Shift the codebooks so that the encoding is not trivially k-means labels.
    for m, block in enumerate(product_blocks(7, 3)):
        C[m][:, block] += np.float32(0.3)
    codes = encode(X, C, kind="product")
    assert codes.dtype == np.uint8 and codes.shape == (150, 3)
    for m, block in enumerate(product_blocks(7, 3)):
        dist = ((X[:, None, block] - C[m][None][:, :, block]) ** 2).sum(-1)
        assert_array_equal(codes[:, m], dist.argmin(1))
    # Per item, the product codes minimise the full reconstruction error too.
    err = ((X - decode(codes, C)) ** 2).sum(1)
    rng = np.random.RandomState(1)
    for _ in range(20):
        other = rng.randint(8, size=codes.shape)
        assert np.all(err <= ((X - decode(other, C)) ** 2).sum(1) + 1e-5)


def test_encode_additive_one_codebook_equals_brute_force():
    X = _data(n=100, d=5)
    C = np.random.RandomState(3).randn(1, 12, 5).astype(np.float32)
    codes = encode(X, C, kind="additive")
    dist = ((X[:, None, :] - C[0][None]) ** 2).sum(-1)
    assert_array_equal(codes[:, 0], dist.argmin(1))


def _exhaustive_two_codebooks(X, C):
    rec = C[0][:, None, :] + C[1][None, :, :]  # (K, K, d)
    err = ((X[:, None, None, :] - rec[None]) ** 2).sum(-1).reshape(len(X), -1)
    best = err.argmin(1)
    K = C.shape[1]
    return np.stack([best // K, best % K], axis=1), err.min(1)


def test_encode_additive_icm_against_exhaustive_search():
    X = _data(n=300, d=6)
    C = kmeans_codebooks(X, 2, 8, kind="additive", random_state=0)
    greedy = encode(X, C, kind="additive", n_iter=0)
    icm = encode(X, C, kind="additive", n_iter=3)
    _, opt_err = _exhaustive_two_codebooks(X, C)
    greedy_err = ((X - decode(greedy, C)) ** 2).sum(1)
    icm_err = ((X - decode(icm, C)) ** 2).sum(1)
    # ICM never worsens an item, improves some, and stays near the optimum.
    assert np.all(icm_err <= greedy_err + 1e-6)
    assert icm_err.mean() < greedy_err.mean()
    assert np.all(icm_err >= opt_err - 1e-6)
    assert icm_err.mean() <= 1.1 * opt_err.mean()


def test_encode_additive_icm_finds_optimum_on_easy_case():
    # Items are exact sums of one codeword per codebook, plus tiny noise, and the
    # codebooks are far apart in scale: ICM must recover the generating codes.
    rng = np.random.RandomState(0)
    C = np.stack([5.0 * rng.randn(8, 6), rng.randn(8, 6)]).astype(np.float32)
    true = rng.randint(8, size=(200, 2))
    X = decode(true, C) + 1e-3 * rng.randn(200, 6)
    codes = encode(X, C, kind="additive")
    best, _ = _exhaustive_two_codebooks(X, C)
    assert_array_equal(codes, best)
    assert_array_equal(codes, true)


def test_encode_init_codes_never_worse():
    X = _data(n=200, d=6)
    C = kmeans_codebooks(X, 3, 8, kind="additive", random_state=0)
    init = np.random.RandomState(1).randint(8, size=(200, 3))
    codes = encode(X, C, kind="additive", n_iter=2, init_codes=init)
    init_err = ((X - decode(init, C)) ** 2).sum(1)
    err = ((X - decode(codes, C)) ** 2).sum(1)
    assert np.all(err <= init_err + 1e-6)
    assert err.mean() < 0.8 * init_err.mean()
    # n_iter=0 keeps the given codes unchanged.
    assert_array_equal(encode(X, C, kind="additive", n_iter=0, init_codes=init), init)


def test_codes_dtype_uint16_above_256_codewords():
    X = _data(n=20, d=3)
    C = np.random.RandomState(0).randn(2, 300, 3).astype(np.float32)
    codes = encode(X, C, kind="additive")
    assert codes.dtype == np.uint16
    assert codes.max() < 300


def test_decode_sums_one_codeword_per_codebook():
    C = np.random.RandomState(0).randn(3, 5, 4).astype(np.float32)
    codes = np.array([[0, 1, 2], [4, 4, 0]], dtype=np.uint8)
    X_rec = decode(codes, C)
    assert X_rec.dtype == np.float32
    assert_allclose(X_rec[1], C[0, 4] + C[1, 4] + C[2, 0], rtol=1e-6)


# --------------------------------------------------------------------------- #
# update_codebooks
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("kind", KINDS)
def test_update_codebooks_does_not_raise_error(kind):
    X = _data(n=200, d=6)
    C = kmeans_codebooks(X, 2, 8, kind=kind, random_state=0)
    C += np.float32(0.2) * np.random.RandomState(1).randn(*C.shape).astype(np.float32)
    if kind == "product":
        C[np.broadcast_to(_outside_blocks(6, 2)[:, None, :], C.shape)] = 0
    codes = encode(X, C, kind=kind)
    new = update_codebooks(X, codes, 8, kind=kind)
    assert new.shape == C.shape and new.dtype == np.float32
    assert quantization_error(X, codes, new) < quantization_error(X, codes, C)


def test_update_codebooks_additive_equals_least_squares():
    X = _data(n=150, d=5)
    codes = np.random.RandomState(2).randint(6, size=(150, 3))
    B = _one_hot(codes, 6)
    C_lstsq = np.linalg.lstsq(B, X, rcond=None)[0]  # minimum-norm solution
    for ridge in [0.0, 1e-8]:
        C = update_codebooks(X, codes, 6, kind="additive", ridge=ridge)
        assert_allclose(C.reshape(18, 5), C_lstsq, atol=1e-4)
        assert_allclose(B @ C.reshape(18, 5), B @ C_lstsq, atol=1e-4)
    # A large ridge shrinks the codebooks and costs reconstruction error.
    C_big = update_codebooks(X, codes, 6, kind="additive", ridge=100.0)
    assert np.linalg.norm(C_big) < np.linalg.norm(C_lstsq)
    assert quantization_error(X, codes, C_big) > quantization_error(
        X, codes, C_lstsq.reshape(3, 6, 5)
    )


def test_update_codebooks_product_equals_blockwise_least_squares():
    X = _data(n=150, d=7)
    codes = np.random.RandomState(2).randint(5, size=(150, 3))
    C = update_codebooks(X, codes, 5, kind="product", ridge=0.0)
    for m, block in enumerate(product_blocks(7, 3)):
        B = _one_hot(codes[:, [m]], 5)
        expected = np.linalg.lstsq(B, X[:, block], rcond=None)[0]
        assert_allclose(C[m][:, block], expected, atol=1e-5)
    assert np.all(C[np.broadcast_to(_outside_blocks(7, 3)[:, None, :], C.shape)] == 0)


@pytest.mark.parametrize("kind", KINDS)
def test_update_codebooks_empty_codewords(kind):
    X = _data(n=40, d=4)
    codes = np.random.RandomState(0).randint(3, size=(40, 2))  # codeword 3 unused
    previous = np.random.RandomState(1).randn(2, 4, 4).astype(np.float32)
    if kind == "product":
        previous[np.broadcast_to(_outside_blocks(4, 2)[:, None, :], (2, 4, 4))] = 0
    fresh = update_codebooks(X, codes, 4, kind=kind)
    kept = update_codebooks(X, codes, 4, kind=kind, previous=previous)
    assert_array_equal(fresh[:, 3], 0)
    assert_array_equal(kept[:, 3], previous[:, 3])
    assert_allclose(kept[:, :3], fresh[:, :3])


# --------------------------------------------------------------------------- #
# look-up tables and AQD
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("kind", KINDS)
def test_aqd_equals_brute_force(kind):
    rng = np.random.RandomState(0)
    X = rng.randn(60, 6)
    Q = rng.randn(7, 6)
    C = kmeans_codebooks(X, 3, 8, kind=kind, random_state=0)
    codes = encode(X, C, kind=kind)
    rec = decode(codes, C).astype(np.float64)
    ip = aqd(Q, codes, C, metric="ip")
    l2 = aqd(Q, codes, C, metric="l2")
    assert ip.shape == l2.shape == (7, 60)
    assert ip.dtype == l2.dtype == np.float32
    assert_allclose(ip, Q @ rec.T, rtol=1e-5, atol=1e-5)
    assert_allclose(l2, ((Q[:, None] - rec[None]) ** 2).sum(-1), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_lookup_tables_match_definitions(kind):
    rng = np.random.RandomState(0)
    X = rng.randn(60, 6)
    Q = rng.randn(4, 6)
    C = kmeans_codebooks(X, 3, 8, kind=kind, random_state=0)
    ip = lookup_tables(Q, C, metric="ip")
    l2 = lookup_tables(Q, C, metric="l2")
    assert ip.shape == (4, 3, 8) and ip.dtype == np.float32
    assert_allclose(ip, np.einsum("qd,mkd->qmk", Q, C), rtol=1e-5, atol=1e-6)
    assert_allclose(l2, (C**2).sum(-1)[None] - 2 * ip, rtol=1e-5, atol=1e-5)

    codes = encode(X, C, kind=kind)
    rec = decode(codes, C).astype(np.float64)
    true = ((Q[:, None] - rec[None]) ** 2).sum(-1)
    gathered = sum(l2[:, m, codes[:, m]] for m in range(3))
    from_table = (Q**2).sum(1)[:, None] + gathered
    if kind == "product":  # exact: the codewords of different blocks are orthogonal
        assert_allclose(from_table, true, rtol=1e-5, atol=1e-4)
    else:  # the cross terms are missing; the sqnorms restore them
        assert not np.allclose(from_table, true, atol=1e-3)
        sq = reconstruction_sqnorms(codes, C)
        ip_sum = sum(ip[:, m, codes[:, m]] for m in range(3))
        exact = (Q**2).sum(1)[:, None] - 2 * ip_sum + sq[None]
        assert_allclose(exact, true, rtol=1e-5, atol=1e-4)


def test_reconstruction_sqnorms_exact():
    rng = np.random.RandomState(0)
    C = rng.randn(4, 6, 5).astype(np.float32)
    codes = rng.randint(6, size=(30, 4))
    sq = reconstruction_sqnorms(codes, C)
    assert sq.dtype == np.float32 and sq.shape == (30,)
    assert_allclose(sq, (decode(codes, C).astype(np.float64) ** 2).sum(1), rtol=1e-5)


def test_aqd_ranking_of_exact_items():
    # The l2 nearest coded item of a query equal to a reconstruction is itself.
    rng = np.random.RandomState(0)
    C = rng.randn(2, 8, 5).astype(np.float32)
    codes = rng.permutation(
        np.stack(np.meshgrid(range(8), range(8)), -1).reshape(-1, 2)
    )
    Q = decode(codes[:10], C)
    assert_array_equal(aqd(Q, codes, C, metric="l2").argmin(1), np.arange(10))


# --------------------------------------------------------------------------- #
# Estimators
# --------------------------------------------------------------------------- #


def test_additive_quantizer_error_decreases_over_iterations():
    X = _data(n=300, d=8, seed=1)
    aq = AdditiveQuantizer(3, 8, n_iter=8, random_state=0).fit(X)
    # Training error, warm-started rounds: never increases.
    curve = aq.quantization_errors_
    assert curve.shape == (8,)
    assert np.all(np.diff(curve) <= 1e-6 * curve[0]), curve
    assert curve[-1] < curve[0]
    # decode(encode(X)) from scratch: clearly lower after training than at init.
    errors = []
    for n_iter in [0, 2, 8]:
        est = AdditiveQuantizer(3, 8, n_iter=n_iter, random_state=0).fit(X)
        errors.append(quantization_error(X, est.transform(X), est.codebooks_))
    assert errors[2] < errors[1] < errors[0], errors
    assert errors[2] < 0.98 * errors[0], errors


def test_additive_beats_product_at_same_code_length():
    X = _data(n=300, d=8, seed=1)
    aq = AdditiveQuantizer(2, 16, random_state=0).fit(X)
    pq = ProductQuantizer(2, 16, random_state=0).fit(X)
    err_aq = quantization_error(X, aq.transform(X), aq.codebooks_)
    err_pq = quantization_error(X, pq.transform(X), pq.codebooks_)
    assert err_aq < err_pq


@pytest.mark.parametrize("Estimator", [ProductQuantizer, AdditiveQuantizer])
def test_quantizer_fit_transform_roundtrip_and_determinism(Estimator):
    X = _data(n=100, d=6)
    est = Estimator(3, 8, random_state=0).fit(X)
    codes = est.transform(X)
    assert codes.shape == (100, 3) and codes.dtype == np.uint8
    assert est.codebooks_.shape == (3, 8, 6) and est.n_features_in_ == 6
    X_rec = est.inverse_transform(codes)
    assert_allclose(X_rec, decode(codes, est.codebooks_))
    assert np.mean(((X - X_rec) ** 2).sum(1)) < np.mean((X**2).sum(1))
    again = Estimator(3, 8, random_state=0).fit(X)
    assert_array_equal(again.codebooks_, est.codebooks_)
    other = Estimator(3, 8, random_state=1).fit(X)
    assert not np.array_equal(other.codebooks_, est.codebooks_)


def test_product_quantizer_codebooks_block_diagonal():
    X = _data(n=100, d=10)
    pq = ProductQuantizer(4, 8, random_state=0).fit(X)
    outside = _outside_blocks(10, 4)
    assert np.all(pq.codebooks_[np.broadcast_to(outside[:, None], (4, 8, 10))] == 0)


# --------------------------------------------------------------------------- #
# Errors
# --------------------------------------------------------------------------- #


def test_error_width_mismatch():
    C = np.zeros((2, 4, 5), dtype=np.float32)
    with pytest.raises(ValueError, match=r"X has 3 features .* d=5"):
        encode(np.zeros((2, 3)), C, kind="additive")
    with pytest.raises(ValueError, match=r"Q has 3 features .* d=5"):
        aqd(np.zeros((2, 3)), np.zeros((1, 2), int), C, metric="ip")


def test_error_codes_out_of_range():
    C = np.zeros((2, 4, 5), dtype=np.float32)
    with pytest.raises(ValueError, match=r"\[0, n_codewords\) = \[0, 4\).*\[0, 7\]"):
        decode([[0, 7]], C)
    with pytest.raises(ValueError, match=r"shape \(n_samples, n_codebooks=2\)"):
        decode([[0, 1, 2]], C)
    with pytest.raises(ValueError, match="integer codeword indices"):
        decode([[0.5, 1.0]], C)
    with pytest.raises(ValueError, match=r"n_codewords\) = \[0, 3\)"):
        update_codebooks(np.zeros((1, 5)), [[0, 3]], 3, kind="additive")
    with pytest.raises(ValueError, match="codes has 1 rows but X has 2"):
        update_codebooks(np.zeros((2, 5)), [[0, 1]], 3, kind="additive")


def test_error_product_kind():
    C = np.random.RandomState(0).randn(2, 4, 5).astype(np.float32)
    with pytest.raises(ValueError, match='use kind="additive"'):
        encode(np.zeros((3, 5)), C, kind="product")
    with pytest.raises(ValueError, match="init_codes"):
        encode(np.zeros((1, 5)), C, kind="product", init_codes=[[0, 0]])
    with pytest.raises(ValueError, match=r"n_codebooks=4 .* n_features=3"):
        ProductQuantizer(4, 2).fit(_data(n=10, d=3))


def test_error_invalid_parameters():
    C = np.zeros((2, 4, 5), dtype=np.float32)
    with pytest.raises(InvalidParameterError, match="'kind' parameter"):
        encode(np.zeros((2, 5)), C, kind="residual")
    with pytest.raises(InvalidParameterError, match="'metric' parameter"):
        aqd(np.zeros((2, 5)), np.zeros((1, 2), int), C, metric="cosine")
    with pytest.raises(InvalidParameterError, match="'n_codewords' parameter"):
        AdditiveQuantizer(n_codewords=0).fit(_data())
    with pytest.raises(ValueError, match="3-D array"):
        decode([[0]], np.zeros((4, 5)))


def test_codebooks_of_data_beyond_float32_are_refused_clearly():
    # finite float64 data past float32's range: its float32 codewords would
    # be infinite (k-means and the update returned inf codebooks)
    X = np.random.RandomState(0).randn(60, 4) * 1e39
    for kind in KINDS:
        with pytest.raises(ValueError, match="beyond float32's range"):
            kmeans_codebooks(X, 2, 4, kind=kind, random_state=0)
        codes = np.zeros((60, 2), dtype=np.uint8)
        with pytest.raises(ValueError, match="beyond float32's range"):
            update_codebooks(X, codes, 4, kind=kind)
    for est in (ProductQuantizer(2, 4), AdditiveQuantizer(2, 4)):
        with pytest.raises(ValueError, match="beyond float32's range"):
            est.fit(X)


@pytest.mark.parametrize("make", [ProductQuantizer, AdditiveQuantizer, "opq"])
def test_a_failed_refit_keeps_the_previous_fit(make):
    # the refit fails after validate_data reset n_features_in_ (fewer
    # features than codebooks): the previous fit is kept whole
    if make == "opq":
        from skhash.quantization import OPQ as make
    X = np.random.RandomState(0).randn(80, 6)
    est = make(3, 4, random_state=0).fit(X)
    before = {k: v for k, v in vars(est).items() if k.endswith("_")}
    codes = est.transform(X)
    with pytest.raises(ValueError):
        est.fit(X[:, :2] if make is not AdditiveQuantizer else X[:, :0])
    after = {k: v for k, v in vars(est).items() if k.endswith("_")}
    assert after.keys() == before.keys()
    assert all(after[k] is v for k, v in before.items())
    assert_array_equal(est.transform(X), codes)
