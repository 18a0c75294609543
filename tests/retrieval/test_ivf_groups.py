"""Groups of inverted lists (quantizer_nprobe): a two-level coarse quantizer.

What must hold: the groups partition the lists, deterministically; the
compiled probe picks the numpy reference's lists in the same order; with
every group probed the results are those of ranking every list; fewer groups
stay deterministic (jobs, backend, chunking, save/load), keep the shortlist
whole and lose little; "auto" groups from GROUPED_MIN_NLIST lists on only;
bad values are refused with the parameter's name.
"""

import numpy as np
import pytest
from sklearn.utils._param_validation import InvalidParameterError
from test_ivf import _data, _ip_tables, _ivf, _same, _split

from skhash.retrieval import TwoStageRetriever
from skhash.retrieval import _ivf as ivf_module
from skhash.retrieval import _query as query_module

CASES = [("aqd", "additive"), ("aqd-l2", "additive"), ("aqd-l2", "product")]


def _db_queries(kind, seed=3, n_queries=100):
    if kind == "additive":
        return _split(seed, n_queries)
    both = _data(seed, n=1500 + n_queries, kind="product")
    return both[:1500], both[1500:]


def _lists(ptr, lists, q):
    return list(lists[ptr[q] : ptr[q + 1]])


def test_groups_partition_the_lists_deterministically():
    db, _ = _split(1)
    ivf = _ivf(nlist=36, rerank="aqd").fit(db)._ivf_cache["X"]
    codes, sq, ptr, lists = ivf.groups()
    assert len(ptr) - 1 == 6  # round(sqrt(36))
    assert np.array_equal(np.sort(lists), np.arange(36))  # each list once
    for g in range(6):  # ascending inside a group
        assert np.all(np.diff(lists[ptr[g] : ptr[g + 1]]) > 0)
    assert codes.shape == (6, ivf.centroid_codes.shape[1]) and sq.dtype == np.float32
    assert ivf.groups() is ivf.groups()  # built once
    again = _ivf(nlist=36, rerank="aqd").fit(db)._ivf_cache["X"].groups()
    for a, b in zip(ivf.groups(), again):
        np.testing.assert_array_equal(a, b)


def test_hamming_lists_are_never_grouped():
    db, q = _split(2)
    est = _ivf(nlist=36, rerank="hamming-codes", quantizer_nprobe=1).fit(db)
    _same(est.kneighbors(q), est.set_params(quantizer_nprobe=None).kneighbors(q))
    with pytest.raises(ValueError, match="not grouped"):
        est._ivf_cache["X"].groups()


@pytest.mark.parametrize("rerank,kind", CASES)
def test_compiled_grouped_probe_is_the_numpy_reference(rerank, kind):
    db, q = _db_queries(kind)
    est = _ivf(nlist=36, rerank=rerank, quantizer_nprobe=2).fit(db)
    ivf = est._ivf_cache["X"]
    tables = _ip_tables(est, q)
    for nprobe, n_short in ((1, 10), (3, 10), (1, 400), (5, 900), (36, 10), (2, 1500)):
        for groups in (1, 2, 3, 6):
            a = ivf.probe_lists(None, tables, nprobe, n_short, groups, compiled=True)
            b = ivf.probe_lists(None, tables, nprobe, n_short, groups, compiled=False)
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1][: a[0][-1]], b[1])
            sizes = np.diff(ivf.offsets)
            for i in range(len(q)):  # the shortlist is never cut
                got = _lists(*a, i)
                assert len(got) >= min(nprobe, 36) and len(set(got)) == len(got)
                assert sizes[got].sum() >= n_short


@pytest.mark.parametrize("rerank,kind", CASES)
def test_every_group_probed_equals_every_list_ranked(rerank, kind):
    db, q = _db_queries(kind, seed=4)
    est = _ivf(nlist=36, rerank=rerank, quantizer_nprobe=None).fit(db)
    ivf = est._ivf_cache["X"]
    tables = _ip_tables(est, q)
    for nprobe, n_short in ((1, 10), (4, 200), (2, 1500)):
        full = ivf.probe_lists(None, tables, nprobe, n_short, None)
        grouped = ivf.probe_lists(None, tables, nprobe, n_short, 6)
        for i in range(len(q)):
            assert set(_lists(*full, i)) == set(_lists(*grouped, i))
    ref = est.kneighbors(q)
    _same(est.set_params(quantizer_nprobe=6).kneighbors(q), ref)
    _same(est.set_params(quantizer_nprobe=100).kneighbors(q), ref)
    one = est.set_params(quantizer_nprobe=1).kneighbors(q)[1]
    assert not np.array_equal(one, ref[1])  # one group of six: other lists


def test_fewer_groups_lose_little_and_more_groups_recover():
    db, q = _split(5, 200)
    est = _ivf(nlist=100, alpha=40, quantizer_nprobe=None).fit(db)
    ref = est.kneighbors(q)[1]

    def overlap(groups):
        found = est.set_params(quantizer_nprobe=groups).kneighbors(q)[1]
        return np.mean([len(np.intersect1d(f, r)) / len(r) for f, r in zip(found, ref)])

    # 10 groups: one is widened to the lists of 4 (they must number 4 times
    # the 6 lists a probe of L = 40 first considers), 8 of 10 miss little
    few, most, every = overlap(1), overlap(8), overlap(10)
    assert every == 1.0
    assert 0.5 < few < most < every
    assert most >= 0.95


@pytest.mark.parametrize("make", ["jobs", "backend", "chunks", "save"])
def test_grouped_search_is_deterministic(make, monkeypatch, tmp_path):
    db, q = _split(6, 150)
    est = _ivf(nlist=49, alpha=30, quantizer_nprobe=2, n_jobs=1).fit(db)
    ref = est.kneighbors(q)
    if make == "jobs":
        other = est.set_params(n_jobs=2).kneighbors(q)
    elif make == "backend":
        other = est.set_params(backend="numpy").kneighbors(q)
    elif make == "chunks":
        monkeypatch.setattr(query_module, "_ADC_CHUNK_BYTES", 1)
        monkeypatch.setattr(query_module, "_MIN_CHUNK", 7)
        other = est.kneighbors(q)
    else:
        est.save(tmp_path / "idx")
        other = TwoStageRetriever.load(tmp_path / "idx").kneighbors(q)
    _same(other, ref)


def test_auto_groups_from_the_threshold_on(monkeypatch):
    db, q = _split(7)
    est = _ivf(nlist=36).fit(db)
    ivf = est._ivf_cache["X"]
    assert est.quantizer_nprobe == "auto"
    assert ivf_module.quantizer_nprobe(est, ivf) is None  # 36 < 1024 lists
    _same(est.kneighbors(q), est.set_params(quantizer_nprobe=None).kneighbors(q))
    monkeypatch.setattr(ivf_module, "GROUPED_MIN_NLIST", 36)
    monkeypatch.setattr(ivf_module, "DEFAULT_QUANTIZER_NPROBE", 1)
    est.set_params(quantizer_nprobe="auto")
    assert ivf_module.quantizer_nprobe(est, ivf) == 1
    _same(est.kneighbors(q), est.set_params(quantizer_nprobe=1).kneighbors(q))


@pytest.mark.parametrize("value", [0, -1, True, 2.5, "all", np.bool_(True)])
def test_invalid_quantizer_nprobe_is_refused(value):
    db = _data(seed=8)
    with pytest.raises((ValueError, InvalidParameterError), match="quantizer_nprobe"):
        _ivf(quantizer_nprobe=value).fit(db)
    est = _ivf().fit(db)
    est.set_params(quantizer_nprobe=value)
    with pytest.raises(ValueError, match="quantizer_nprobe"):
        est.kneighbors(db[:5])
    _same(  # nothing was left changed by the refusal
        est.set_params(quantizer_nprobe="auto").kneighbors(db[:5]),
        _ivf().fit(db).kneighbors(db[:5]),
    )


def _scaled(codes, exp):
    """The same codes with codebooks and embeddings scaled by ``2**exp``."""
    parts = dict(
        codes=codes.get("X", "codes"),
        bits=codes.get("X", "bits"),
        n_bits=codes.n_bits,
        codebooks=np.ldexp(codes.codebooks, exp),
        codebook_kind=codes.codebook_kind,
    )
    return type(codes)(embedding=np.ldexp(codes.get("X", "embedding"), exp), **parts)


@pytest.mark.parametrize("rerank,kind", CASES)
@pytest.mark.parametrize("exp", [66, -83, 100, -100])
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_grouped_search_at_a_power_of_two_scale_is_the_unscaled_one(
    rerank, kind, exp, backend
):
    db, q = _db_queries(kind, seed=9, n_queries=40)
    params = dict(nlist=36, rerank=rerank, quantizer_nprobe=1, backend=backend)
    d0, i0 = _ivf(**params).fit(db).kneighbors(q)
    d, i = _ivf(**params).fit(_scaled(db, exp)).kneighbors(_scaled(q, exp))
    np.testing.assert_array_equal(i, i0)
    np.testing.assert_array_equal(d, np.ldexp(d0, 2 * exp))


def test_groups_follow_add_and_count_in_nbytes():
    db, q = _split(10, 60)
    est = _ivf(nlist=36, quantizer_nprobe=2).fit(db[:1000])
    est.kneighbors(q)
    ivf = est._ivf_cache["X"]
    before = ivf.nbytes
    groups = ivf.groups()
    assert before == (
        sum(a.nbytes for a in groups)
        + ivf.centroids.nbytes
        + ivf.centroid_codes.nbytes
        + ivf.offsets.nbytes
        + ivf.ids.nbytes
        + ivf.list_codes.nbytes
        + (0 if ivf._words is None else ivf._words.nbytes)
    )
    est.add(db[1000:])  # the same centroids, so the same groups
    d, i = est.kneighbors(q)
    assert est._ivf_cache["X"].groups() is groups
    assert i.max() >= 1000  # the new items are found
    _same(
        est.set_params(quantizer_nprobe=6).kneighbors(q),
        est.set_params(quantizer_nprobe=None).kneighbors(q),
    )


def test_lists_pickled_before_the_groups_still_search():
    import pickle

    both = _data(11, n=1540, kind="product")
    db, q = both[:1500], both[1500:]
    est = _ivf(nlist=36, rerank="aqd-l2", quantizer_nprobe=2).fit(db)
    ref = est.kneighbors(q)
    old = pickle.loads(pickle.dumps(est))
    ivf = old._ivf_cache["X"]
    del ivf.__dict__["_group_state"], ivf.__dict__["kind"]  # an older pickle
    old = pickle.loads(pickle.dumps(old))
    _same(old.kneighbors(q), ref)  # the groups rebuilt, with the product kind
    assert old._ivf_cache["X"].kind == "product"


@pytest.mark.parametrize("rerank,kind", CASES)
def test_build_assigns_among_the_nearest_groups_from_the_threshold(
    monkeypatch, rerank, kind
):
    from skhash.retrieval import _ivf_lists
    from skhash.retrieval._ivf_assign import nearest, nearest_grouped

    db = _data(seed=9, kind=kind)  # 1,500 items
    monkeypatch.setattr(_ivf_lists, "GROUPED_ASSIGN_MIN_NLIST", 30)
    monkeypatch.setattr(_ivf_lists, "ASSIGN_GROUPS", 2)

    def where(ivf):
        out = np.empty(ivf.n_items, np.int64)
        out[ivf.ids] = np.repeat(np.arange(ivf.nlist), np.diff(ivf.offsets))
        return out

    ivf = _ivf(nlist=36, rerank=rerank).fit(db)._ivf_cache["X"]
    x = (db.codebooks[np.arange(4), db.get("X", "codes")]).sum(axis=1)
    x = x.astype(np.float32)
    groups = ivf._assign_groups()
    expect = nearest_grouped(x, ivf.centroids, ivf.c_sqnorms, groups, 2)
    np.testing.assert_array_equal(where(ivf), expect)
    # 2 of 6 groups: some items leave the nearest of all lists, few
    exact = nearest(x, ivf.centroids, ivf.c_sqnorms)
    assert 0.7 < np.mean(where(ivf) == exact) < 1.0
    # items added later are assigned the same way as in one build
    grown = _ivf(nlist=36, rerank=rerank).fit(db[:1200])
    grown.add(db[1200:])
    grown.kneighbors(db[:3])  # the lists are extended at the next search
    ivf2 = grown._ivf_cache["X"]
    assert ivf2.n_train == 1200 and ivf2.n_items == 1500
    expect2 = nearest_grouped(
        x, ivf2.centroids, ivf2.c_sqnorms, ivf2._assign_groups(), 2
    )
    np.testing.assert_array_equal(where(ivf2), expect2)
    # below the threshold: the nearest of all lists
    monkeypatch.setattr(_ivf_lists, "GROUPED_ASSIGN_MIN_NLIST", 37)
    ivf3 = _ivf(nlist=36, rerank=rerank).fit(db)._ivf_cache["X"]
    assert ivf3._assign_groups() is None
    np.testing.assert_array_equal(
        where(ivf3), nearest(x, ivf3.centroids, ivf3.c_sqnorms)
    )


def test_kmeans_from_the_threshold_assigns_among_groups(monkeypatch):
    from skhash.retrieval import _ivf_lists

    rng = np.random.RandomState(5)
    X = rng.randn(40, 8)[rng.randint(40, size=4000)] + 0.5 * rng.randn(4000, 8)
    X = X.astype(np.float32)

    def objective(C):
        d = ((X[:, None, :] - C[None]) ** 2).sum(-1)
        return d.min(axis=1).mean()

    monkeypatch.setattr(_ivf_lists, "GROUPED_ASSIGN_MIN_NLIST", 10**9)
    exact = _ivf_lists._lloyd(X, 64, np.random.RandomState(0))
    monkeypatch.setattr(_ivf_lists, "GROUPED_ASSIGN_MIN_NLIST", 64)
    monkeypatch.setattr(_ivf_lists, "ASSIGN_GROUPS", 2)  # of 8 groups
    grouped = _ivf_lists._lloyd(X, 64, np.random.RandomState(0))
    assert not np.array_equal(grouped, exact)  # the grouped steps ran
    np.testing.assert_array_equal(
        _ivf_lists._lloyd(X, 64, np.random.RandomState(0), n_jobs=2), grouped
    )
    # approximate steps, about the same clustering
    assert objective(grouped) < 1.02 * objective(exact)
