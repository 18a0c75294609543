"""The numpy search kernels against plain brute-force references."""

import numpy as np
import pytest

from skhash import pack_bits
from skhash.retrieval import get_backend
from skhash.retrieval._kernels import NumpyBackend, register_backend


def _random_bits(rng, n, n_bits):
    return pack_bits(rng.randint(2, size=(n, n_bits)))


def _plain_hamming(q_bits, db_bits, n_bits):
    qu = np.unpackbits(q_bits, axis=1, count=n_bits).astype(int)
    du = np.unpackbits(db_bits, axis=1, count=n_bits).astype(int)
    return (qu[:, None, :] != du[None, :, :]).sum(axis=2)


def _lexsort_reference(dist, L):
    """Full lexsort of each row by (distance, index), cut at L."""
    n = dist.shape[1]
    idx = np.array([np.lexsort((np.arange(n), row))[:L] for row in dist])
    return idx, np.take_along_axis(dist, idx, axis=1)


@pytest.mark.parametrize("n_bits", [3, 8, 12, 16, 40, 64, 130])
def test_hamming_matches_unpacked_count(n_bits):
    rng = np.random.RandomState(n_bits)
    q, db = _random_bits(rng, 7, n_bits), _random_bits(rng, 53, n_bits)
    got = get_backend("numpy").hamming(q, db)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, _plain_hamming(q, db, n_bits))


@pytest.mark.parametrize("n_bits", [3, 8, 12, 64, 130])
@pytest.mark.parametrize("L", [1, 5, 50, 299, 300, 305])
def test_shortlist_equals_lexsort(n_bits, L):
    # few bits: many ties (both tie-trimming branches, L > distinct distances);
    # L = N and L > N return the full ordering.
    rng = np.random.RandomState(n_bits * 1000 + L)
    q, db = _random_bits(rng, 11, n_bits), _random_bits(rng, 300, n_bits)
    ref_idx, ref_dist = _lexsort_reference(_plain_hamming(q, db, n_bits), L)
    for backend in (NumpyBackend(), NumpyBackend(chunk_bytes=1)):  # 1-row chunks
        idx, dist = backend.shortlist(q, db, L)
        assert idx.dtype == np.int64 and dist.dtype == np.int32
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_array_equal(dist, ref_dist)


def test_shortlist_all_equal_distances_keeps_lowest_indices():
    db = np.zeros((100, 1), dtype=np.uint8)
    idx, dist = get_backend().shortlist(np.zeros((2, 1), dtype=np.uint8), db, 7)
    np.testing.assert_array_equal(idx, np.tile(np.arange(7), (2, 1)))
    assert not dist.any()


def test_shortlist_zero_candidates_and_zero_queries():
    rng = np.random.RandomState(0)
    db = _random_bits(rng, 10, 8)
    idx, dist = get_backend().shortlist(db[:3], db, 0)
    assert idx.shape == (3, 0) and dist.shape == (3, 0)
    idx, dist = get_backend().shortlist(db[:0], db, 4)
    assert idx.shape == (0, 4)


def test_shortlist_rejects_mismatched_widths_and_negative_l():
    rng = np.random.RandomState(0)
    with pytest.raises(ValueError, match="bytes per item"):
        get_backend().shortlist(_random_bits(rng, 2, 16), _random_bits(rng, 5, 8), 2)
    with pytest.raises(ValueError, match="packed uint8"):
        get_backend().shortlist(np.zeros((2, 1), dtype=np.int64), np.zeros((2, 1)), 1)
    with pytest.raises(ValueError, match="n_candidates must be >= 0"):
        get_backend().shortlist(_random_bits(rng, 2, 8), _random_bits(rng, 5, 8), -1)


@pytest.mark.parametrize("L,k", [(10, 3), (500, 7), (500, 1), (500, 500)])
def test_topk_equals_lexsort_with_ties(L, k):
    # integer distances: many ties, broken by the candidate's database index
    rng = np.random.RandomState(L + k)
    dist = rng.randint(5, size=(9, L)).astype(np.float64)
    cand = np.array([rng.permutation(1000)[:L] for _ in range(9)])
    idx, d = get_backend().topk(dist, k, cand)
    order = np.array([np.lexsort((c, r))[:k] for c, r in zip(cand, dist)])
    np.testing.assert_array_equal(idx, np.take_along_axis(cand, order, axis=1))
    np.testing.assert_array_equal(d, np.take_along_axis(dist, order, axis=1))


def test_topk_without_candidates_ranks_columns():
    dist = np.array([[2.0, np.inf, 1.0, 2.0, 0.0]])
    idx, d = get_backend().topk(dist, 4)
    np.testing.assert_array_equal(idx, [[4, 2, 0, 3]])
    np.testing.assert_array_equal(d, [[0.0, 1.0, 2.0, 2.0]])


def test_rerank_kernels_equal_plain_formulas():
    rng = np.random.RandomState(0)
    n, M, K, d = 40, 3, 5, 6
    codes = rng.randint(K, size=(n, M)).astype(np.uint8)
    luts = rng.randn(4, M, K).astype(np.float32)
    cand = rng.randint(n, size=(4, 9))
    be = get_backend()
    want = np.array(
        [
            [sum(luts[q, m, codes[j, m]] for m in range(M)) for j in cand[q]]
            for q in range(4)
        ]
    )
    np.testing.assert_allclose(be.rerank_aqd(luts, cand, codes), want, rtol=1e-6)
    full = be.rerank_aqd(luts, None, codes)
    np.testing.assert_allclose(np.take_along_axis(full, cand, axis=1), want, rtol=1e-6)

    q_codes = rng.randint(K, size=(4, M)).astype(np.uint8)
    want = (q_codes[:, None, :] != codes[cand]).sum(axis=2)
    np.testing.assert_array_equal(be.rerank_code_hamming(q_codes, codes, cand), want)
    full = be.rerank_code_hamming(q_codes, codes, None)
    np.testing.assert_array_equal(np.take_along_axis(full, cand, axis=1), want)

    q_emb, db_emb = rng.randn(4, d), rng.randn(n, d)
    db_emb[3] = 0.0  # a zero vector has cosine 0
    norms = np.linalg.norm(db_emb, axis=1)
    norms[norms == 0] = 1
    cos = (q_emb / np.linalg.norm(q_emb, axis=1)[:, None]) @ (db_emb / norms[:, None]).T
    np.testing.assert_allclose(be.rerank_exact(q_emb, db_emb, None), cos, atol=1e-6)
    np.testing.assert_allclose(
        be.rerank_exact(q_emb, db_emb, cand),
        np.take_along_axis(cos, cand, axis=1),
        atol=1e-6,
    )


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("d", [1, 5, 8, 17, 64])
def test_exact_cosines_do_not_depend_on_the_split(d, backend):
    # a database split into shards, or queries into chunks, gives the same
    # bits: a BLAS product (even row by row) rounded an item's column by its
    # place in the call on an AVX-512 OpenBLAS kernel
    rng = np.random.RandomState(d)
    be = get_backend(backend)
    q, db = rng.randn(9, d).astype(np.float32), rng.randn(203, d).astype(np.float32)
    db[7] = 0.0  # a zero vector: cosine 0 with everything
    if backend == "numba":  # compiled now, not answered by the reference
        from skhash.quantization._products import WIDTH, tile_rows
        from skhash.quantization._products_kernel import products_kernel

        tiles = tile_rows(db, np.float32)
        products_kernel(q, tiles, np.empty((9, len(tiles) * WIDTH), np.float32))
    full = be.rerank_exact(q, db, None)
    assert full.dtype == np.float32 and full.shape == (9, 203)
    assert not full[:, 7].any()
    for a, b in [(0, 17), (17, 34), (3, 203), (1, 202), (101, 203), (5, 6), (64, 128)]:
        np.testing.assert_array_equal(be.rerank_exact(q, db[a:b], None), full[:, a:b])
        np.testing.assert_array_equal(
            be.rerank_exact(q[2:5], db[a:b].copy(), None), full[2:5, a:b]
        )
    # both backends give the same bits (the compiled kernel and its reference)
    ref = NumpyBackend().rerank_exact(q, db, None)
    np.testing.assert_array_equal(full, ref)


def test_get_backend_registry():
    assert get_backend("numpy") is get_backend()
    with pytest.raises(ValueError, match=r"Unknown search backend 'nope'.*'numpy'"):
        get_backend("nope")
    register_backend("numpy-test-copy", lambda: NumpyBackend(chunk_bytes=1))
    assert get_backend("numpy-test-copy").chunk_bytes == 1


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("L", [20, 300])
@pytest.mark.parametrize("where", ["one", "row", "all"])
def test_topk_refuses_nan_distances(backend, L, where):
    # NaN has no rank: a selection by comparisons returned arbitrary
    # neighbours (numba) or, when every row's k-th value was NaN, rows of
    # no neighbours at all (numpy); now both say so
    d = np.random.RandomState(0).rand(4, L)
    d0 = d.copy()
    if where == "one":
        d[2, L // 2] = np.nan
    elif where == "row":
        d[1] = np.nan
    else:
        d[:] = np.nan
    nan_before = np.isnan(d).copy()
    with pytest.raises(ValueError, match="NaN value.*no rank.*np.inf"):
        get_backend(backend).topk(d, 5)
    assert np.array_equal(np.isnan(d), nan_before)  # the input is untouched
    assert np.array_equal(d[~nan_before], d0[~nan_before])


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_topk_infinities_still_rank(backend):
    # inf marks excluded items and -inf is a distance like any other (the
    # NaN check must not mistake inf - inf in its sum for a NaN)
    d = np.random.RandomState(1).rand(3, 100)
    d[:, 10] = -np.inf
    d[:, 20:60] = np.inf
    idx, dist = get_backend(backend).topk(d, 70)
    assert (idx[:, 0] == 10).all() and np.isneginf(dist[:, 0]).all()
    assert np.isposinf(dist[:, -10:]).all()
    ref_idx, ref_dist = NumpyBackend().topk(d, 70)
    assert np.array_equal(idx, ref_idx) and np.array_equal(dist, ref_dist)
