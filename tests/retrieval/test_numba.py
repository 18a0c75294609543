"""The numba backend against the numpy reference, and the large-index features.

Every comparison is exact: same indices, same distances, same tie order.
"""

import json
import os

import numpy as np
import pytest

from skhash import CodeSet, pack_bits
from skhash.retrieval import TwoStageRetriever, get_backend
from skhash.retrieval._numba import NumbaBackend

BIT_LENGTHS = [8, 12, 33, 64, 100, 128]


def _tied_bits(rng, n, n_bits, n_distinct=7):
    """Codes drawn from a few random codes with a few flipped bits: heavy ties."""
    pool = rng.randint(2, size=(n_distinct, n_bits))
    signs = pool[rng.randint(n_distinct, size=n)]
    flip = rng.rand(n, n_bits) < 2.0 / n_bits
    return pack_bits(signs ^ flip)


@pytest.fixture(scope="module")
def backends():
    return get_backend("numba"), get_backend("numpy")


def test_registry_and_auto_default():
    assert isinstance(get_backend("numba"), NumbaBackend)
    # "auto" is the lazy numba backend: a cold first call is answered by the
    # numpy reference while the kernels compile (tests/test_imports.py)
    auto = get_backend("auto")
    assert isinstance(auto, NumbaBackend) and auto.lazy
    assert not get_backend("numba").lazy
    assert TwoStageRetriever().backend == "auto"


@pytest.mark.parametrize("n_bits", BIT_LENGTHS)
def test_shortlist_identical_to_numpy(n_bits, backends):
    numba_be, numpy_be = backends
    rng = np.random.RandomState(n_bits)
    # N not a multiple of the 64-item groups; L from 1 to beyond N
    db, q = _tied_bits(rng, 1000, n_bits), _tied_bits(rng, 23, n_bits)
    for L in [1, 5, 64, 100, 999, 1000, 1005]:
        got = numba_be.shortlist(q, db, L)
        want = numpy_be.shortlist(q, db, L)
        assert got[0].dtype == np.int64 and got[1].dtype == np.int32
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("n", [1, 50, 64, 129, 3000])
def test_shortlist_sizes_blocks_and_edges(n, backends):
    numba_be, numpy_be = backends
    rng = np.random.RandomState(n)
    db, q = _tied_bits(rng, n, 20), _tied_bits(rng, 9, 20)
    # a tiny state budget: one query per pass over the database; a tiny
    # buffer compacts often (L small against N)
    for be in (numba_be, NumbaBackend(state_bytes=1)):
        for L in {1, 3, n // 2, n}:
            got, want = be.shortlist(q, db, L), numpy_be.shortlist(q, db, L)
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])
    idx, dist = numba_be.shortlist(q, db, 0)
    assert idx.shape == (9, 0) and dist.shape == (9, 0)
    assert numba_be.shortlist(q[:0], db, 4)[0].shape == (0, min(4, n))
    with pytest.raises(ValueError, match="n_candidates must be >= 0"):
        numba_be.shortlist(q, db, -1)


@pytest.mark.parametrize("n_bits", [40, 64, 100])
def test_long_shortlists_from_a_sampled_threshold(n_bits, backends):
    # L >= 4096 starts from a threshold estimated on a strided sample
    numba_be, numpy_be = backends
    rng = np.random.RandomState(n_bits)
    db, q = _tied_bits(rng, 30_000, n_bits), _tied_bits(rng, 5, n_bits)
    for L in [4096, 6000]:
        got, want = numba_be.shortlist(q, db, L), numpy_be.shortlist(q, db, L)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


def test_unrepresentative_sample_is_searched_again(backends):
    # the strided sample sees only exact matches: its threshold lets too few
    # items through, which is detected, and the query searched again
    n, L = 50_000, 5000
    db = np.full((n, 8), 255, dtype=np.uint8)
    db[:: n // -(-16 * n // L)] = 0
    q = np.zeros((2, 8), dtype=np.uint8)
    got, want = backends[0].shortlist(q, db, L), backends[1].shortlist(q, db, L)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_shortlist_all_equal_keeps_lowest_indices(backends):
    db = np.zeros((300, 2), dtype=np.uint8)
    idx, dist = backends[0].shortlist(np.zeros((2, 2), dtype=np.uint8), db, 70)
    np.testing.assert_array_equal(idx, np.tile(np.arange(70), (2, 1)))
    assert not dist.any()


@pytest.mark.parametrize("dtype,K", [(np.uint8, 16), (np.uint16, 300)])
def test_rerank_aqd_bit_identical(dtype, K, backends):
    numba_be, numpy_be = backends
    rng = np.random.RandomState(K)
    codes = rng.randint(K, size=(200, 5)).astype(dtype)
    luts = rng.randn(7, 5, K).astype(np.float32)
    cand = rng.randint(200, size=(7, 40))
    for c in (cand, None):
        got = numba_be.rerank_aqd(luts, c, codes)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, numpy_be.rerank_aqd(luts, c, codes))


@pytest.mark.parametrize("M", [8, 16, 12])
@pytest.mark.parametrize("width", range(10))
def test_rerank_aqd_bit_identical_for_any_width(width, M, backends):
    # the kernels sum four candidates (items) side by side: every remainder;
    # M = 8, 16: uint8 codes read a word (8 codes) at a time, M = 12 one by one
    numba_be, numpy_be = backends
    rng = np.random.RandomState(width)
    codes = rng.randint(256, size=(width + 3, M)).astype(np.uint8)
    luts = (rng.randn(3, M, 256) * 10.0 ** rng.randint(-3, 4, (3, M, 1))).astype(
        np.float32
    )
    cand = rng.randint(width + 3, size=(3, width))
    np.testing.assert_array_equal(
        numba_be.rerank_aqd(luts, cand, codes), numpy_be.rerank_aqd(luts, cand, codes)
    )
    all_items = numba_be.rerank_aqd(luts, None, codes[:width])
    np.testing.assert_array_equal(
        all_items, numpy_be.rerank_aqd(luts, None, codes[:width])
    )


@pytest.mark.parametrize("L,k", [(10, 3), (100, 50), (500, 7), (64, 64)])
def test_topk_identical_with_ties_and_inf(L, k, backends):
    numba_be, numpy_be = backends
    rng = np.random.RandomState(L + k)
    dist = rng.randint(4, size=(11, L)).astype(np.float64)
    dist[rng.rand(11, L) < 0.1] = np.inf
    cand = np.array([rng.permutation(5 * L)[:L] for _ in range(11)])
    for c in (cand, None):
        got, want = numba_be.topk(dist, k, c), numpy_be.topk(dist, k, c)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


# --------------------------------------------------------------------------- #
# The estimator
# --------------------------------------------------------------------------- #


def _codeset(rng, n, n_bits, C, modality="X"):
    emb = (rng.randint(2, size=(n, C.shape[2])) - 0.5).astype(np.float32)
    return CodeSet(
        embedding=emb,
        bits=_tied_bits(rng, n, n_bits),
        codes=rng.randint(C.shape[1], size=(n, C.shape[0])),
        n_bits=n_bits,
        codebooks=C,
        codebook_kind="product",
        modality=modality,
    )


def _product_codebooks(rng, M=2, K=4, d=4):
    C = rng.randint(-2, 3, size=(M, K, d)).astype(np.float32)
    for m in range(M):
        outside = np.ones(d, dtype=bool)
        outside[m * d // M : (m + 1) * d // M] = False
        C[m][:, outside] = 0.0
    return C


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    C = _product_codebooks(rng)
    db, q = _codeset(rng, 700, 33, C), _codeset(rng, 40, 33, C)
    y = rng.randint(3, size=700)
    return db, q, y


@pytest.mark.parametrize("rerank", ["aqd", "aqd-l2", "hamming-codes", "none"])
@pytest.mark.parametrize("alpha", [0, 30, 0.5, 1.0])
def test_retriever_numba_equals_numpy_and_threads(rerank, alpha, data):
    db, q, y = data
    ref = TwoStageRetriever(alpha, 10, rerank=rerank, backend="numpy").fit(db, y)
    want = ref.kneighbors(q)
    for params in ({}, {"n_jobs": 2}):
        est = TwoStageRetriever(alpha, 10, rerank=rerank, backend="numba", **params)
        got = est.fit(db, y).kneighbors(q)
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(got[0], want[0])
    if rerank in ("hamming-codes", "none"):  # the others need query embeddings
        # X=None (each item excluded from its own neighbours), threaded
        np.testing.assert_array_equal(est.kneighbors()[1], ref.kneighbors()[1])


def test_index_stores_compact_codes(data):
    db, _, y = data
    est = TwoStageRetriever().fit(db, y)
    assert est._index["X"]["codes"].dtype == np.uint8
    n_bytes = sum(a.nbytes for a in est._index["X"].values())
    assert n_bytes == len(db) * (5 + 2)  # ceil(33 / 8) + M * log2(K) / 8 bytes


def test_memory_mapped_load_identical(data, tmp_path):
    db, q, y = data
    est = TwoStageRetriever(alpha=50, n_neighbors=10).fit(db, y)
    path = est.save(tmp_path / "index")
    loaded = TwoStageRetriever.load(path, mmap_mode="r")
    assert isinstance(loaded._index["X"]["bits"], np.memmap)
    for n_jobs in (None, 2):
        loaded.set_params(n_jobs=n_jobs)
        for a, b in zip(loaded.kneighbors(q), est.kneighbors(q)):
            np.testing.assert_array_equal(a, b)
    assert loaded.score(q, y[:40]) == est.score(q, y[:40])


def test_add_equals_fit_on_concatenation(data, tmp_path):
    db, q, y = data
    full = TwoStageRetriever(alpha=50, n_neighbors=10).fit(db, y)
    parts = TwoStageRetriever(alpha=50, n_neighbors=10).fit(db[:400], y[:400])
    parts.add(db[400:650], y[400:650]).add(db[650:], y[650:])
    assert parts.n_samples_fit_ == len(db)
    for a, b in zip(parts.kneighbors(q), full.kneighbors(q)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(parts.y_, y)

    # on disk: a directory loaded with mmap_mode="r+" grows in place
    path = (
        TwoStageRetriever(alpha=50, n_neighbors=10)
        .fit(db[:400], y[:400])
        .save(tmp_path / "index")
    )
    on_disk = TwoStageRetriever.load(path, mmap_mode="r+")
    on_disk.add(db[400:], y[400:])
    assert isinstance(on_disk._index["X"]["bits"], np.memmap)
    with open(os.path.join(path, "meta.json"), encoding="utf-8") as f:
        assert json.load(f)["n_samples_fit"] == len(db)
    reloaded = TwoStageRetriever.load(path, mmap_mode="r")
    for est in (on_disk, reloaded):
        for a, b in zip(est.kneighbors(q), full.kneighbors(q)):
            np.testing.assert_array_equal(a, b)


def test_add_rejects_mismatched_items(data):
    db, _, y = data
    est = TwoStageRetriever().fit(db[:100], y[:100])
    with pytest.raises(ValueError, match="y must be given exactly"):
        est.add(db[100:110])
    other = CodeSet(bits=db.bits[:5], n_bits=33)
    with pytest.raises(ValueError, match="other codebooks"):
        est.add(other, y[:5])
    with pytest.raises(ValueError, match="n_bits=64"):
        est.add(CodeSet(bits=np.zeros((5, 8), dtype=np.uint8)), y[:5])
    plain = TwoStageRetriever().fit(np.ones((5, 3)))
    assert plain.add(np.ones((2, 3))).n_samples_fit_ == 7


# --------------------------------------------------------------------------- #
# faiss export
# --------------------------------------------------------------------------- #


def _same_ranking_with_ties(dist_a, idx_a, dist_b, idx_b):
    """Equal distances, and equal items except in the order of equal distances."""
    np.testing.assert_allclose(dist_a, dist_b, rtol=1e-5, atol=1e-5)
    for da, ia, ib in zip(dist_a, idx_a, idx_b):
        boundary = np.isclose(da, da[-1], rtol=1e-5, atol=1e-5)
        assert set(ia[~boundary]) == set(ib[~boundary])


def test_to_faiss_binary_equals_hamming_ranking(data):
    faiss = pytest.importorskip("faiss")
    from skhash.retrieval._faiss import to_faiss

    db, q, y = data
    est = TwoStageRetriever(alpha=0, n_neighbors=25).fit(db, y)
    index = to_faiss(est, "X", kind="binary")
    assert isinstance(index, faiss.IndexBinaryFlat) and index.ntotal == len(db)
    f_dist, f_idx = index.search(q.bits, 25)
    dist, idx = est.kneighbors(q)
    np.testing.assert_array_equal(f_dist, dist)
    np.testing.assert_array_equal(f_idx, idx)  # faiss breaks ties by index too


@pytest.mark.parametrize("rerank,K", [("aqd", 16), ("aqd-l2", 256)])
def test_to_faiss_pq_equals_aqd_ranking(rerank, K):
    pytest.importorskip("faiss")
    from skhash.quantization import encode, kmeans_codebooks
    from skhash.retrieval._faiss import to_faiss

    rng = np.random.RandomState(K)
    X = rng.randn(600, 8).astype(np.float32)
    C = kmeans_codebooks(X, 4, K, kind="product", random_state=0, n_iter=3)
    db = CodeSet(
        codes=encode(X, C, kind="product"), codebooks=C, codebook_kind="product"
    )
    est = TwoStageRetriever(alpha=1.0, n_neighbors=20, rerank=rerank).fit(db)
    f_dist, f_idx = to_faiss(est, kind="pq").search(X[:30], 20)
    dist, idx = est.kneighbors(X[:30])
    # faiss orders equal inner products differently: compare up to ties
    _same_ranking_with_ties(-f_dist if rerank == "aqd" else f_dist, f_idx, dist, idx)


@pytest.mark.parametrize("scale", [2.0**70, 2.0**-70])
def test_to_faiss_warns_where_its_float32_tables_break(scale):
    # skhash's own search rescales such codebooks exactly; faiss would not
    pytest.importorskip("faiss")
    import warnings

    from skhash.quantization import encode, kmeans_codebooks
    from skhash.retrieval._faiss import to_faiss

    X = np.random.RandomState(0).randn(300, 8).astype(np.float32)
    C = kmeans_codebooks(X, 4, 16, kind="product", random_state=0, n_iter=3)
    codes = encode(X, C, kind="product")
    ordinary = CodeSet(codes=codes, codebooks=C, codebook_kind="product")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        to_faiss(ordinary, kind="pq")
    extreme = CodeSet(
        codes=codes, codebooks=C * np.float32(scale), codebook_kind="product"
    )
    with pytest.warns(RuntimeWarning, match="faiss computes its look-up tables"):
        index = to_faiss(extreme, kind="pq")
    assert index.ntotal == len(X)


def test_to_faiss_errors(data):
    pytest.importorskip("faiss")
    from skhash.retrieval._faiss import to_faiss

    db, _, _ = data
    with pytest.raises(ValueError, match="kind must be"):
        to_faiss(db, kind="ivf")
    with pytest.raises(ValueError, match="has none"):
        to_faiss(CodeSet(bits=db.bits, n_bits=33), kind="pq")
    rng = np.random.RandomState(0)
    additive = CodeSet(
        codes=np.zeros((3, 2), dtype=np.uint8),
        codebooks=rng.randn(2, 4, 4),
        codebook_kind="additive",
    )
    with pytest.raises(ValueError, match="product codebooks"):
        to_faiss(additive, kind="pq")
    with pytest.raises(TypeError, match="CodeSet"):
        to_faiss(np.zeros((3, 2)))
