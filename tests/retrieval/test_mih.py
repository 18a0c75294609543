"""Multi-index hashing (stage1="mih"): exactly the exhaustive scan's results.

Every comparison is exact: same indices, same distances, same tie order, on
random codes and on concentrated codes (a few codes with many duplicates,
so that distances tie massively and some buckets hold most of the items).
"""

import numpy as np
import pytest
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.validation import check_is_fitted

from skhash import CodeSet, pack_bits
from skhash.quantization import encode
from skhash.retrieval import TwoStageRetriever, _mih, get_backend
from skhash.retrieval._mih import MultiIndexHashing, default_n_substrings

pytest.importorskip("numba")

BIT_LENGTHS = [8, 12, 16, 32, 64, 128]
NO_FALLBACK = "unbounded"  # MIH answers every query


def _codes(rng, n, n_bits, kind):
    if kind == "random":
        return pack_bits(rng.randn(n, n_bits))
    # concentrated: 4 codes, most items exact duplicates, a few bits flipped
    pool = rng.randint(2, size=(4, n_bits))
    signs = pool[rng.choice(4, size=n, p=[0.7, 0.2, 0.07, 0.03])]
    flip = rng.rand(n, n_bits) < 0.5 / n_bits
    return pack_bits(signs ^ flip)


def _assert_same(got, want):
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert got[0].dtype == want[0].dtype and got[1].dtype == want[1].dtype


@pytest.mark.parametrize("kind", ["random", "concentrated"])
@pytest.mark.parametrize("n_bits", BIT_LENGTHS)
def test_shortlist_equals_exhaustive(n_bits, kind):
    rng = np.random.RandomState(n_bits)
    db, q = _codes(rng, 800, n_bits, kind), _codes(rng, 13, n_bits, kind)
    ref = get_backend("numpy")
    # the default tables, short substrings, and the longest ones (for long
    # random codes these need a huge radius: only with the default budget)
    widths = {default_n_substrings(len(db), n_bits), n_bits, -(-n_bits // 24)}
    for m in sorted(widths):
        mih = MultiIndexHashing(db, n_bits, n_substrings=m)
        assert mih.n_substrings == m and mih.lengths.sum() == n_bits
        unbounded = mih.lengths.max() <= 11
        # k beyond the number of distinct distances, all items, more than N
        for L in (1, 5, 2 * n_bits + 3, 400, 800, 900):
            want = ref.shortlist(q, db, L)
            if unbounded:
                _assert_same(mih.shortlist(q, L, budget=NO_FALLBACK), want)
                assert mih.last_fallbacks == 0
            _assert_same(mih.shortlist(q, L), want)  # default budget


def test_budget_fallback_is_exact_and_counted():
    rng = np.random.RandomState(0)
    db, q = _codes(rng, 3000, 64, "concentrated"), _codes(rng, 20, 64, "random")
    mih = MultiIndexHashing(db, 64)
    want = get_backend("numpy").shortlist(q, db, 50)
    _assert_same(mih.shortlist(q, 50, budget=(60, 10)), want)
    assert mih.last_fallbacks > 0
    assert mih.n_fallbacks == mih.last_fallbacks and mih.n_queries == 20
    got = mih.shortlist(q, 50, fallback=get_backend("numba"), budget=(60, 10))
    _assert_same(got, want)


@pytest.mark.parametrize("n_bits", [12, 64])
def test_extend_equals_fresh_build(n_bits):
    rng = np.random.RandomState(1)
    db = _codes(rng, 2000, n_bits, "concentrated")
    grown = MultiIndexHashing(db[:700], n_bits, n_substrings=3)
    grown.extend(db[:1300]).extend(db[:1300]).extend(db)
    fresh = MultiIndexHashing(db, n_bits, n_substrings=3)
    np.testing.assert_array_equal(grown._offsets, fresh._offsets)
    np.testing.assert_array_equal(grown._items, fresh._items)
    q = db[::97]
    _assert_same(grown.shortlist(q, 40), fresh.shortlist(q, 40))
    with pytest.raises(ValueError, match="rows but 2000 are indexed"):
        grown.extend(db[:10])


def test_bucket_load_sees_concentration():
    rng = np.random.RandomState(2)
    spread = MultiIndexHashing(_codes(rng, 4000, 64, "random"), 64, 4)
    dense = MultiIndexHashing(_codes(rng, 4000, 64, "concentrated"), 64, 4)
    assert spread.bucket_load().max() < 10
    assert dense.bucket_load().min() > 0.4 * 4000


def _db(rng, n, n_bits=32, kind="random"):
    emb = rng.randn(n, n_bits).astype(np.float32)
    bits = _codes(rng, n, n_bits, kind) if kind != "random" else pack_bits(emb)
    C = rng.randn(4, 16, n_bits).astype(np.float32)
    return CodeSet(
        embedding=emb,
        bits=bits,
        codes=encode(emb, C, kind="additive", n_iter=1),
        codebooks=C,
        codebook_kind="additive",
    )


@pytest.mark.parametrize("kind", ["random", "concentrated"])
@pytest.mark.parametrize("alpha", [0, 7, 60])
def test_retriever_mih_equals_exhaustive(alpha, kind):
    rng = np.random.RandomState(alpha)
    db = _db(rng, 2400, 32, kind)
    y = rng.randint(5, size=2400)
    params = dict(alpha=alpha, n_neighbors=20)
    ref = TwoStageRetriever(stage1="exhaustive", **params).fit(db[:2000], y[:2000])
    mih = TwoStageRetriever(stage1="mih", **params).fit(db[:2000], y[:2000])
    assert set(mih._mih_cache) == {"X"}  # built at fit
    q = db[2000:2100]
    for a, b in zip(ref.kneighbors(q), mih.kneighbors(q)):
        np.testing.assert_array_equal(a, b)
    # X=None (Hamming ranking: the embeddings are not indexed): each
    # item's own row excluded
    ref.set_params(alpha=0)
    mih.set_params(alpha=0)
    for a, b in zip(ref.kneighbors(), mih.kneighbors()):
        np.testing.assert_array_equal(a, b)
    ref.set_params(alpha=alpha)
    mih.set_params(alpha=alpha)
    # after add: the tables grow, and still match
    ref.add(db[2000:], y[2000:])
    mih.add(db[2000:], y[2000:])
    for a, b in zip(ref.kneighbors(q, 45), mih.kneighbors(q, 45)):
        np.testing.assert_array_equal(a, b)
    assert mih._mih_cache["X"].n_items == 2400
    mih.set_params(n_jobs=2)
    ref.set_params(n_jobs=2)  # (the AQD floats depend on the chunking)
    q = db[::7]
    for a, b in zip(ref.kneighbors(q), mih.kneighbors(q)):
        np.testing.assert_array_equal(a, b)


def test_tables_follow_refit_params_and_load(tmp_path):
    rng = np.random.RandomState(3)
    a, b = _db(rng, 1000), _db(rng, 1000)
    est = TwoStageRetriever(30, 10, stage1="mih").fit(a)
    ref = TwoStageRetriever(30, 10, stage1="exhaustive")
    est.kneighbors(a[:5])
    est.fit(b)  # same N, other codes: the tables must not be reused
    for x, z in zip(est.kneighbors(b[:50]), ref.fit(b).kneighbors(b[:50])):
        np.testing.assert_array_equal(x, z)
    est.set_params(n_substrings=2)
    est.kneighbors(b[:5])
    assert est._mih_cache["X"].n_substrings == 2
    loaded = TwoStageRetriever.load(est.save(str(tmp_path / "index")))
    assert loaded.stage1 == "mih" and loaded.n_substrings == 2
    assert not getattr(loaded, "_mih_cache", {})  # not saved: built lazily
    for x, z in zip(loaded.kneighbors(b[:50]), ref.kneighbors(b[:50])):
        np.testing.assert_array_equal(x, z)
    assert loaded._mih_cache["X"].n_items == 1000


def test_auto_chooses_by_size_and_concentration(monkeypatch):
    rng = np.random.RandomState(4)
    small = TwoStageRetriever(stage1="auto").fit(
        CodeSet(bits=_codes(rng, 500, 64, "random"))
    )
    assert not small._mih_cache and _mih.stage1_index(small, "X", 50) is None
    n = _mih.AUTO_MIN_ITEMS
    trials = []
    monkeypatch.setattr(  # the timed trial says "faster" (machine-independent)
        _mih, "_calibrate", lambda est, mih, n_short: trials.append(n_short) or True
    )
    spread = TwoStageRetriever(stage1="auto").fit(
        CodeSet(bits=_codes(rng, n, 64, "random"))
    )
    assert not spread._mih_cache  # "auto" builds its tables when it tries them
    assert _mih.stage1_index(spread, "X", 50) is not None
    assert _mih.stage1_index(spread, "X", 60) is not None
    assert trials == [50]  # one trial per power of two of n_short
    spread._mih_auto["X"][1][(50).bit_length()] = False  # trial: slower
    assert _mih.stage1_index(spread, "X", 50) is None
    assert _mih.stage1_index(spread, "X", n // 2) is None  # shortlist too long
    dense_bits = _codes(rng, n, 64, "concentrated")
    dense = TwoStageRetriever(stage1="auto", n_neighbors=10).fit(
        CodeSet(bits=dense_bits)
    )
    assert _mih.stage1_index(dense, "X", 50) is None
    ref = TwoStageRetriever(stage1="exhaustive", n_neighbors=10).fit(
        CodeSet(bits=dense_bits)
    )
    q = CodeSet(bits=dense_bits[:30])
    for x, z in zip(dense.kneighbors(q), ref.kneighbors(q)):
        np.testing.assert_array_equal(x, z)


def test_calibration_is_a_timed_choice_with_identical_results():
    rng = np.random.RandomState(6)
    bits = _codes(rng, _mih.AUTO_MIN_ITEMS, 64, "random")
    params = dict(alpha=10, n_neighbors=10, backend="numba")  # not lazy
    auto = TwoStageRetriever(stage1="auto", **params).fit(CodeSet(bits=bits))
    ref = TwoStageRetriever(stage1="exhaustive", **params)
    q = CodeSet(bits=bits[::1000])
    for x, z in zip(auto.kneighbors(q), ref.fit(CodeSet(bits=bits)).kneighbors(q)):
        np.testing.assert_array_equal(x, z)
    decisions = auto._mih_auto["X"][1]
    assert set(decisions) == {"load", (10).bit_length()}
    faster = decisions[(10).bit_length()]
    # tables kept only when the trial found them faster
    assert ("X" in auto._mih_cache) == faster
    tables = _mih._tables(auto, "X")
    assert tables.n_queries in (0, len(bits[::1000]))  # trials not counted
    assert isinstance(_mih._calibrate(auto, tables, 10), bool)
    auto.add(CodeSet(bits=bits[:5]))  # new bits: the decisions are measured again
    auto.kneighbors(q)
    assert auto._mih_auto["X"][0] is auto._index["X"]["bits"]


def test_lazy_backend_decides_only_once_kernels_are_compiled(monkeypatch):
    from skhash.retrieval import _mih_kernels, _numba

    rng = np.random.RandomState(7)
    bits = _codes(rng, _mih.AUTO_MIN_ITEMS, 64, "random")
    est = TwoStageRetriever(alpha=10, n_neighbors=10, stage1="auto")
    est.fit(CodeSet(bits=bits))
    assert getattr(get_backend("auto"), "lazy", False)
    monkeypatch.setattr(_mih_kernels._mih_kernel, "overloads", {})
    tables = _mih._tables(est, "X")
    assert _mih._calibrate(est, tables, 10) is None  # compiles in a thread
    assert _mih.stage1_index(est, "X", 10) is None  # the scan answers
    assert (10).bit_length() not in est._mih_auto["X"][1]  # undecided
    monkeypatch.undo()
    monkeypatch.setattr(_numba._shortlist_kernel, "overloads", {})
    assert _mih._calibrate(est, tables, 10) is None
    monkeypatch.undo()
    assert isinstance(_mih._calibrate(est, tables, 10), bool)


def test_parameter_validation_names_parameter_and_value():
    db = CodeSet(bits=pack_bits(np.random.RandomState(5).randn(100, 64)))
    with pytest.raises(InvalidParameterError, match="'stage1'.*'scan'"):
        TwoStageRetriever(stage1="scan").fit(db)
    with pytest.raises(InvalidParameterError, match="'n_substrings'"):
        TwoStageRetriever(n_substrings=0).fit(db)
    est = TwoStageRetriever(stage1="mih", n_substrings=True)
    with pytest.raises(ValueError, match=r"n_substrings=True .*bool"):
        est.fit(db)
    est = TwoStageRetriever(stage1="mih", n_substrings=2)
    with pytest.raises(ValueError, match=r"n_substrings=2 .*32 bits.*between 3 and 64"):
        est.fit(db)
    with pytest.raises(Exception):  # a failed fit leaves no fitted state
        check_is_fitted(est)
    est = TwoStageRetriever(stage1="mih", n_neighbors=5).fit(db)
    est.set_params(n_substrings=1)
    with pytest.raises(ValueError, match="n_substrings=1 "):
        est.kneighbors(db[:3])
    est.set_params(n_substrings=None, stage1="fast")
    with pytest.raises(InvalidParameterError, match="'stage1'.*'fast'"):
        est.kneighbors(db[:3])
