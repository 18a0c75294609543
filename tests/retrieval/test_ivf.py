"""Inverted-file stage 1 (stage1="ivf"): approximate, sublinear, deterministic.

What must hold: with every list probed the results are exactly the
exhaustive scan's; with fewer, they are the same for any n_jobs, chunking
and backend; the probed sets grow with nprobe; add, save and load keep the
lists (a loaded index rebuilds the same lists from the saved record).
"""

import copy

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.utils._param_validation import InvalidParameterError

from skhash import CodeSet, pack_bits
from skhash.quantization import encode
from skhash.retrieval import ShardedRetriever, TwoStageRetriever
from skhash.retrieval import _query as query_module
from skhash.retrieval._ivf import InvertedLists, default_nlist

N, D, N_BITS = 1500, 16, 16


def _data(seed=0, n=N, n_bits=N_BITS, kind="additive"):
    rng = np.random.RandomState(seed)
    C = (0.5 * rng.randn(4, 16, D)).astype(np.float32)  # first: same for any n
    centers = rng.randn(25, D)
    emb = centers[rng.randint(25, size=n)] + 0.4 * rng.randn(n, D)
    emb = emb.astype(np.float32)
    if kind == "product":
        for m in range(4):
            C[m, :, : 4 * m] = 0
            C[m, :, 4 * m + 4 :] = 0
    return CodeSet(
        embedding=emb,
        bits=pack_bits(emb[:, :n_bits] if n_bits <= D else np.tile(emb, 8)[:, :n_bits]),
        n_bits=n_bits,
        codes=encode(emb, C, kind=kind),
        codebooks=C,
        codebook_kind=kind,
    )


def _of_codes(codes, C, emb=None):
    """Items of the additive ``codes`` of ``C`` (4 codebooks) whose embedding
    is ``emb``, by default their reconstruction (every item then sits on its
    code: many items share one distance)."""
    emb = C[np.arange(4), codes].sum(axis=1) if emb is None else emb
    return CodeSet(
        embedding=emb,
        bits=pack_bits(emb),
        n_bits=D,
        codes=codes,
        codebooks=C,
        codebook_kind="additive",
    )


def _split(seed, n_queries=200):
    """A database of N items and queries encoded with the same codebooks."""
    both = _data(seed, n=N + n_queries)
    return both[:N], both[N:]


def _bits_only(seed=0, n=N):
    rng = np.random.RandomState(seed)
    pool = rng.randint(2, size=(12, N_BITS))
    signs = pool[rng.randint(12, size=n)]
    flip = rng.rand(n, N_BITS) < 0.1
    return CodeSet(bits=pack_bits(signs ^ flip), n_bits=N_BITS)


def _ivf(**kw):
    params = dict(alpha=40, n_neighbors=10, stage1="ivf", nlist=20, random_state=0)
    params.update(kw)
    return TwoStageRetriever(**params)


def _same(a, b):
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0], b[0])


def _ip_tables(est, q):
    """The queries' inner-product look-up tables, as the search makes them."""
    return est._lookup_tables(np.asarray(q.get("X", "embedding"), np.float32), "ip")


def _recall(found, ref):
    return np.mean([len(np.intersect1d(f, r)) / len(r) for f, r in zip(found, ref)])


# --------------------------------------------------------------------------- #
# exactness and determinism
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "rerank,kind",
    [
        ("aqd", "additive"),
        ("aqd-l2", "additive"),
        ("aqd-l2", "product"),
        ("hamming-codes", "additive"),
        ("exact", "additive"),
        ("none", "additive"),
    ],
)
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_all_lists_probed_equals_exhaustive(rerank, kind, backend):
    db = _data(kind=kind)
    q = db[:60] if backend == "numba" else db[:15]  # numpy: a per-query loop
    for alpha in (0, 40, 0.05):
        # lists of codes re-rank every item of the probed lists: all of them
        # probed is the re-ranking of the whole database (alpha=1.0); lists
        # of bits (or alpha=0, no re-ranking) give the exhaustive two-stage
        # search of the same alpha
        scans_codes = rerank in ("aqd", "aqd-l2") and alpha != 0
        ref = TwoStageRetriever(
            alpha=1.0 if scans_codes else alpha,
            n_neighbors=10,
            rerank=rerank,
            stage1="exhaustive",
        ).fit(db)
        est = _ivf(alpha=alpha, rerank=rerank, backend=backend, nprobe=20).fit(db)
        _same(est.kneighbors(q), ref.kneighbors(q))
        est.set_params(nprobe=10**6)  # clipped to nlist
        _same(est.kneighbors(q), ref.kneighbors(q))
        if rerank in ("exact", "none") and backend == "numba":  # X=None
            _same(est.kneighbors(), ref.kneighbors())


def test_bits_only_database_all_lists_equals_exhaustive():
    db = _bits_only()
    ref = TwoStageRetriever(alpha=40, n_neighbors=10, stage1="exhaustive").fit(db)
    est = _ivf(nprobe=20).fit(db)
    assert est._ivf_cache["X"].metric == "hamming"
    _same(est.kneighbors(db[:50]), ref.kneighbors(db[:50]))
    _same(est.kneighbors(), ref.kneighbors())


@pytest.mark.parametrize("make", [_data, _bits_only])
def test_same_results_for_any_jobs_backend_and_chunking(make, monkeypatch):
    both = make(seed=1, n=N + 200)
    db, q = both[:N], both[N:]
    want = _ivf(nprobe=3, backend="numpy").fit(db).kneighbors(q)
    for backend, n_jobs in (("numba", None), ("numba", 3), ("auto", 2), ("numpy", 2)):
        est = _ivf(nprobe=3, backend=backend, n_jobs=n_jobs).fit(db)
        _same(est.kneighbors(q), want)
    # tiny chunks, and the queries searched in two batches
    monkeypatch.setattr(query_module, "_CHUNK_BYTES", 1)
    monkeypatch.setattr(query_module, "_ADC_CHUNK_BYTES", 1)
    monkeypatch.setattr(query_module, "_MIN_CHUNK", 1)
    est = _ivf(nprobe=3, backend="numba").fit(db)
    _same(est.kneighbors(q), want)
    halves = [est.kneighbors(q[:77]), est.kneighbors(q[77:])]
    _same(tuple(np.concatenate([h[i] for h in halves]) for i in (0, 1)), want)
    # refitting with the same random_state rebuilds the same lists
    again = _ivf(nprobe=3).fit(db)
    np.testing.assert_array_equal(again._ivf_cache["X"].ids, est._ivf_cache["X"].ids)


def test_recall_grows_with_nprobe():
    db, q = _split(3)
    # all lists probed re-ranks every item: the re-ranking of the database
    ref = TwoStageRetriever(alpha=1.0, n_neighbors=10, stage1="exhaustive").fit(db)
    want = ref.kneighbors(q)[1]
    est = _ivf(nlist=30).fit(db)
    ivf = est._ivf_cache["X"]
    keys = ivf.list_keys(q.get("X", "bits"), _ip_tables(est, q))
    recalls, probed = [], None
    for nprobe in (1, 2, 4, 8, 16, 30):
        est.set_params(nprobe=nprobe)
        recalls.append(_recall(est.kneighbors(q)[1], want))
        ptr, lists = ivf.probe(keys, nprobe, 40)
        sets = [set(lists[ptr[i] : ptr[i + 1]]) for i in range(len(q))]
        assert all(len(s) >= min(nprobe, 30) for s in sets)
        if probed is not None:  # the probed lists are nested
            assert all(a <= b for a, b in zip(probed, sets))
        probed = sets
    assert recalls[0] < 0.9 < recalls[-2] and recalls[-1] == 1.0
    assert all(b >= a - 0.02 for a, b in zip(recalls, recalls[1:])), recalls


def test_probe_widens_until_the_shortlist_fits():
    db = _data(seed=5)
    est = _ivf(nlist=30, nprobe=1, alpha=400).fit(db)
    ivf = est._ivf_cache["X"]
    q = db[:20]
    keys = ivf.list_keys(q.get("X", "bits"), _ip_tables(est, q))
    ptr, lists = ivf.probe(keys, 1, 400)
    sizes = np.diff(ivf.offsets)
    held = [sizes[lists[ptr[i] : ptr[i + 1]]].sum() for i in range(len(q))]
    assert min(held) >= 400
    # the best list is always probed (ties to the lower id)
    best = np.lexsort((np.tile(np.arange(ivf.nlist), (len(q), 1)), keys), axis=1)
    assert all(best[i, 0] in lists[ptr[i] : ptr[i + 1]] for i in range(len(q)))
    dist, idx = est.kneighbors(q)
    assert idx.shape == (20, 10) and (idx >= 0).all()


def test_lists_partition_the_items_in_index_order():
    db = _data(seed=6)
    ivf = _ivf(nlist=37).fit(db)._ivf_cache["X"]
    assert ivf.nlist == 37 and ivf.offsets[0] == 0 and ivf.offsets[-1] == N
    np.testing.assert_array_equal(np.sort(ivf.ids), np.arange(N))
    for lst in range(ivf.nlist):
        seg = ivf.ids[ivf.offsets[lst] : ivf.offsets[lst + 1]]
        assert np.all(np.diff(seg) > 0)
    bits = db.get("X", "bits")
    np.testing.assert_array_equal(
        ivf.words.view(np.uint8)[:, : bits.shape[1]], bits[ivf.ids]
    )


def test_default_nlist_and_stage1_auto_stays_exact():
    assert default_nlist(10**6) == 2000 and default_nlist(100) == 2
    assert default_nlist(1) == 1
    db = _data(seed=7)
    est = _ivf(nlist=None).fit(db)
    assert est._ivf_cache["X"].nlist == default_nlist(N)
    auto = TwoStageRetriever(alpha=40, n_neighbors=10).fit(db)
    exh = TwoStageRetriever(alpha=40, n_neighbors=10, stage1="exhaustive").fit(db)
    _same(auto.kneighbors(db[:30]), exh.kneighbors(db[:30]))
    assert not getattr(auto, "_ivf_cache", {})


# --------------------------------------------------------------------------- #
# add, save, load
# --------------------------------------------------------------------------- #


def test_add_assigns_new_items_to_the_trained_lists():
    db = _data(seed=8)
    a, b = db[:1000], db[1000:]
    grown = _ivf(nprobe=4).fit(a)
    before = grown._ivf_cache["X"]
    centroids = before.centroids.copy()
    grown.add(b)
    q = _data(seed=8, n=N + 100)[N:]
    got = grown.kneighbors(q)
    ivf = grown._ivf_cache["X"]
    assert ivf is before and ivf.n_items == N  # extended, not rebuilt
    np.testing.assert_array_equal(ivf.centroids, centroids)
    # = an index of a + b whose lists were trained on a with the same seed
    state = copy.deepcopy(grown._ivf_state)
    assert state["X"]["n_train"] == 1000
    full = _ivf(nprobe=4, stage1="exhaustive").fit(db)
    full._ivf_state = state
    full.set_params(stage1="ivf")
    _same(full.kneighbors(q), got)
    np.testing.assert_array_equal(full._ivf_cache["X"].ids, ivf.ids)
    # each new item is in the list of its nearest centroid
    x = (db.codebooks[np.arange(4), db.get("X", "codes")[1000:]]).sum(axis=1)
    d = ((x[:, None, :] - centroids[None]) ** 2).sum(axis=2)
    lists = np.repeat(np.arange(ivf.nlist), np.diff(ivf.offsets))
    where = np.empty(N, np.int64)
    where[ivf.ids] = lists
    assert np.mean(where[1000:] == np.argmin(d, axis=1)) > 0.99
    # and every list probed is still the re-ranking of every item
    grown.set_params(nprobe=ivf.nlist)
    exh = TwoStageRetriever(alpha=1.0, n_neighbors=10, stage1="exhaustive").fit(db)
    _same(grown.kneighbors(q), exh.kneighbors(q))


@pytest.mark.parametrize("random_state", [0, None, np.random.RandomState(3)])
@pytest.mark.parametrize("layout", ["index.npz", "index"])
def test_save_load_gives_the_same_results(tmp_path, layout, random_state):
    db, q = _split(10, 100)
    est = _ivf(nprobe=3, random_state=random_state).fit(db[:1200])
    est.add(db[1200:])  # trained on the first 1200 items
    want = est.kneighbors(q)
    path = est.save(tmp_path / layout)
    modes = [None] if layout.endswith(".npz") else [None, "r"]
    for mode in modes:
        loaded = TwoStageRetriever.load(path, mmap_mode=mode)
        assert loaded._ivf_state == est._ivf_state
        _same(loaded.kneighbors(q), want)
        np.testing.assert_array_equal(
            loaded._ivf_cache["X"].ids, est._ivf_cache["X"].ids
        )


def test_add_on_disk_then_load(tmp_path):
    db = _data(seed=12)
    q = db[:50]
    est = _ivf(nprobe=2).fit(db[:1000])
    path = est.save(tmp_path / "index")
    disk = TwoStageRetriever.load(path, mmap_mode="r+")
    disk.kneighbors(q)
    disk.add(db[1000:])
    est.add(db[1000:])
    _same(disk.kneighbors(q), est.kneighbors(q))
    _same(TwoStageRetriever.load(path, mmap_mode="r").kneighbors(q), est.kneighbors(q))


# --------------------------------------------------------------------------- #
# parameters
# --------------------------------------------------------------------------- #


def test_params_contract_and_query_time_nprobe():
    est = _ivf(nprobe=2)
    params = est.get_params()
    assert params["nlist"] == 20 and params["nprobe"] == 2
    assert params["random_state"] == 0 and params["stage1"] == "ivf"
    assert clone(est).get_params() == params
    db, q = _split(13, 100)
    est.fit(db)
    ivf = est._ivf_cache["X"]
    few = est.kneighbors(q)
    est.set_params(nprobe=20)
    many = est.kneighbors(q)
    assert est._ivf_cache["X"] is ivf  # nprobe is read at query time
    assert not np.array_equal(few[1], many[1])
    _same(many, _ivf(nprobe=20).fit(db).kneighbors(q))
    est.set_params(nlist=10)  # rebuilt at the next search
    est.kneighbors(q)
    assert est._ivf_cache["X"].nlist == 10
    est.set_params(nlist=20, nprobe=2)
    _same(est.kneighbors(q), few)


@pytest.mark.parametrize(
    "params,match",
    [
        ({"nprobe": 0}, "nprobe"),
        ({"nprobe": True}, "nprobe=True"),
        ({"nprobe": 2.5}, "nprobe"),
        ({"nlist": 0}, "nlist"),
        ({"nlist": True}, "nlist=True"),
        ({"nlist": 1501}, "nlist=1501"),
        ({"stage1": "IVF"}, "stage1"),
        ({"random_state": "x"}, "random_state"),
    ],
)
def test_invalid_parameters_are_refused(params, match):
    db = _data(seed=15)
    with pytest.raises((ValueError, InvalidParameterError), match=match):
        _ivf(**params).fit(db)
    est = _ivf().fit(db)
    if "nlist" in params or "nprobe" in params:
        est.set_params(**params)
        with pytest.raises((ValueError, InvalidParameterError), match=match):
            est.kneighbors(db[:5])


def test_nlist_above_n_names_the_fix():
    with pytest.raises(ValueError, match=r"nlist=2000 .* pass nlist <= 1500"):
        _ivf(nlist=2000).fit(_data(seed=16))


def test_queries_need_an_embedding_to_rank_the_lists():
    db = _data(seed=17)
    est = _ivf(alpha=0).fit(db)  # Hamming ranking, but the lists use q's embedding
    with pytest.raises(ValueError, match="carry no embedding"):
        est.kneighbors(CodeSet(bits=db.get("X", "bits")[:5], n_bits=N_BITS))


def test_sharded_retriever_refuses_ivf():
    with pytest.raises(InvalidParameterError, match="stage1"):
        ShardedRetriever(stage1="ivf", n_shards=2).fit(_data(seed=18))


def test_inverted_lists_direct():
    bits = _bits_only(seed=19).get("X", "bits")
    ivf = InvertedLists(bits, N_BITS, metric="hamming", nlist=10, seed=1, n_train=N)
    again = InvertedLists(bits, N_BITS, metric="hamming", nlist=10, seed=1, n_train=N)
    np.testing.assert_array_equal(ivf.centroids, again.centroids)
    np.testing.assert_array_equal(ivf.ids, again.ids)
    q = bits[:30]
    a = ivf.shortlist(q, None, 3, 25, compiled=True)
    b = ivf.shortlist(q, None, 3, 25, compiled=False)
    _same(a, b)
    assert ivf.nbytes > 0 and "nlist=10" in repr(ivf)


@pytest.mark.parametrize("kind", ["additive", "product"])
@pytest.mark.parametrize("rerank", ["aqd", "aqd-l2"])
def test_lists_are_ranked_by_the_coded_centroids(kind, rerank):
    from skhash.quantization import decode
    from skhash.retrieval import get_backend

    both = _data(seed=25, n=N + 200, kind=kind)
    db, q = both[:N], both[N:]
    est = _ivf(nlist=30, rerank=rerank).fit(db)
    ivf = est._ivf_cache["X"]
    C = db.codebooks
    # each centroid is the reconstruction of its own codes ...
    np.testing.assert_allclose(
        ivf.centroids, decode(ivf.centroid_codes, C), rtol=1e-5, atol=1e-6
    )
    # ... every item sits in the list of its nearest one ...
    x = decode(db.get("X", "codes"), C).astype(np.float64)
    c = ivf.centroids.astype(np.float64)
    d2 = (x**2).sum(1)[:, None] - 2 * x @ c.T + (c**2).sum(1)[None, :]
    lists = np.repeat(np.arange(ivf.nlist), np.diff(ivf.offsets))
    own = d2[ivf.ids, lists]
    assert (own <= d2[ivf.ids].min(axis=1) + 1e-4).all()
    # ... and the queries' keys, read from their tables, are <q, c> or
    # ||c||^2 - 2 <q, c>, the same bits from either backend
    emb = np.asarray(q.get("X", "embedding"), np.float64)
    keys = ivf.list_keys(None, _ip_tables(est, q))
    want = -emb @ c.T if rerank == "aqd" else (c**2).sum(1) - 2 * emb @ c.T
    np.testing.assert_allclose(keys, want, rtol=1e-4, atol=1e-4)
    compiled = ivf.list_keys(None, _ip_tables(est, q), get_backend("numba"))
    np.testing.assert_array_equal(compiled, keys)


@pytest.mark.parametrize("n_short", [1, 25, 140, 400])
def test_unordered_shortlist_holds_the_ordered_items(n_short):
    # 12 distinct codes, 10 % of bits flipped: the threshold distance is
    # shared by many items, so which of them are kept (lowest indices) matters
    bits = _bits_only(seed=23).get("X", "bits")
    ivf = InvertedLists(bits, N_BITS, metric="hamming", nlist=10, seed=1, n_train=N)
    q = bits[:40]
    for nprobe in (1, 3, 10):
        idx, dist = ivf.shortlist(q, None, nprobe, n_short, compiled=True)
        idx_u, dist_u = ivf.shortlist(
            q, None, nprobe, n_short, compiled=True, ordered=False
        )
        assert idx_u.shape == idx.shape
        for r in range(len(q)):
            # the same (index, distance) pairs, in another order
            order = np.argsort(idx_u[r], kind="stable")
            np.testing.assert_array_equal(idx_u[r][order], np.sort(idx[r]))
            np.testing.assert_array_equal(
                dist_u[r][order], dist[r][np.argsort(idx[r], kind="stable")]
            )


@pytest.mark.parametrize("alpha", [10, 40, 300])
def test_search_on_unordered_shortlists_keeps_the_ordered_results(alpha, monkeypatch):
    from skhash.retrieval import _ivf as ivf_module

    db, q = _split(seed=24)
    # lists of bits (exact re-ranking): a Hamming shortlist, then the re-ranking
    est = _ivf(alpha=alpha, nprobe=2, rerank="exact").fit(db)
    got = est.kneighbors(q)
    calls = []
    original = ivf_module.stage1_shortlist

    def ordered_only(est_, backend, q_, dst, n_short, ordered, luts):
        calls.append(ordered)
        return original(est_, backend, q_, dst, n_short, True, luts)

    monkeypatch.setattr(ivf_module, "stage1_shortlist", ordered_only)
    _same(got, est.kneighbors(q))
    assert calls and not any(calls)  # the re-ranked search asked for unordered


@pytest.mark.parametrize("dtype", [np.int32, np.float32])
def test_compiled_probe_picks_the_numpy_probe_lists(dtype):
    from skhash.retrieval._ivf_kernels import _ivf_probe

    ivf = _ivf(nlist=30).fit(_data(seed=20))._ivf_cache["X"]
    rng = np.random.RandomState(0)
    keys = rng.randint(0, 4, size=(64, 30)).astype(dtype)  # many ties
    for nprobe, n_short in ((1, 10), (3, 10), (1, 400), (5, 900), (30, 10)):
        ptr, lists = ivf.probe(keys, nprobe, n_short)
        ptr2 = np.empty(65, np.int64)
        lists2 = np.empty(64 * 30, np.int64)
        _ivf_probe(keys, nprobe, n_short, ivf.offsets, ptr2, lists2)
        for q in range(64):
            want = set(lists[ptr[q] : ptr[q + 1]])
            assert set(lists2[ptr2[q] : ptr2[q + 1]]) == want


def test_cross_modal_refit_and_pickle():
    import pickle

    a, b = _data(seed=21), _data(seed=21)
    db = CodeSet.from_modalities(img=a, txt=b)
    q = db[:40]
    ref = TwoStageRetriever(alpha=1.0, n_neighbors=10, stage1="exhaustive").fit(db)
    est = _ivf(nprobe=20).fit(db)
    assert set(est._ivf_cache) == {"img", "txt"}
    for direction in ("img->txt", "txt->img"):
        _same(
            est.kneighbors(q, direction=direction),
            ref.kneighbors(q, direction=direction),
        )
    est.set_params(nprobe=2)
    want = est.kneighbors(q, direction="img->txt")
    back = pickle.loads(pickle.dumps(est))
    _same(back.kneighbors(q, direction="img->txt"), want)
    small = _data(seed=22)[:300]
    est.fit(small)  # a refit replaces the lists
    assert set(est._ivf_cache) == {"X"} and est._ivf_cache["X"].n_items == 300


# --------------------------------------------------------------------------- #
# lists of codes: every probed item re-ranked (IVF-ADC)
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "rerank,kind", [("aqd", "additive"), ("aqd-l2", "additive"), ("aqd-l2", "product")]
)
def test_lists_of_codes_rerank_every_probed_item(rerank, kind):
    both = _data(seed=30, n=N + 40, kind=kind)
    db, q = both[:N], both[N:]
    est = _ivf(alpha=60, rerank=rerank, nprobe=3).fit(db)
    ivf = est._ivf_cache["X"]
    assert ivf.list_codes is not None and ivf._words is None  # no copy of bits
    dist, idx = est.kneighbors(q)
    # brute force: the whole database ranked by the exhaustive re-ranking,
    # restricted to the items of each query's probed lists
    full = TwoStageRetriever(
        alpha=1.0, n_neighbors=N, rerank=rerank, stage1="exhaustive"
    ).fit(db)
    fd, fi = full.kneighbors(q)
    ptr, lists = ivf.probe(ivf.list_keys(None, _ip_tables(est, q)), 3, 60)
    for r in range(len(q)):
        rows = [
            np.arange(ivf.offsets[lst], ivf.offsets[lst + 1])
            for lst in lists[ptr[r] : ptr[r + 1]]
        ]
        member = np.isin(fi[r], ivf.ids[np.concatenate(rows)])
        assert member.sum() >= 60
        np.testing.assert_array_equal(idx[r], fi[r][member][:10])
        np.testing.assert_array_equal(dist[r], fd[r][member][:10])


@pytest.mark.parametrize(
    "mode,rerank,kind",
    [(0, "aqd", "additive"), (1, "aqd-l2", "additive"), (2, "aqd-l2", "product")],
)
def test_compiled_scan_of_codes_is_the_reference_with_exclusions(mode, rerank, kind):
    from skhash.retrieval import _ivf as ivf_module

    db = _data(seed=31, kind=kind)
    est = _ivf(alpha=60, rerank=rerank).fit(db)
    assert ivf_module.adc_mode(est, "X") == mode
    ivf = est._ivf_cache["X"]
    q = db[:50]
    emb = q.get("X", "embedding")
    ip = _ip_tables(est, q)
    luts = est._lookup_tables(emb, "l2") if mode == 2 else ip
    q_sq = np.einsum("qd,qd->q", emb, emb, dtype=np.float64)
    sq = est._index["X"]["sqnorms"] if mode == 1 else np.zeros(1)
    exclude = np.where(np.arange(50) % 2 == 0, np.arange(50), -1).astype(np.int64)
    for nprobe, n_short, k in ((1, 11, 10), (2, 60, 10), (20, 5, 7), (1, 1, 1)):
        args = (ip, luts, mode, q_sq, sq, n_short, k, nprobe, exclude)
        got = ivf.search(*args, compiled=True)
        want = ivf.search(*args, compiled=False)
        _same(got, want)
        assert not (got[1] == exclude[:, None]).any()
        assert np.all(np.diff(got[0], axis=1) >= 0)


@pytest.mark.parametrize("rerank", ["aqd", "aqd-l2"])
def test_scan_of_codes_ranks_many_equal_distances_by_index(rerank):
    # 6 distinct codes over 1,500 items: most distances tie, and the scan's
    # selection must keep the lowest indices among them (its tie path)
    db = _data(seed=32)
    codes = db.get("X", "codes")[np.random.RandomState(0).randint(6, size=N)]
    C = db.codebooks
    db = _of_codes(codes, C)
    q = db[::50]
    est = _ivf(alpha=300, rerank=rerank, nprobe=2, nlist=4).fit(db)
    got = est.kneighbors(q)
    _same(
        got,
        _ivf(alpha=300, rerank=rerank, nprobe=2, nlist=4, backend="numpy")
        .fit(db)
        .kneighbors(q),
    )
    for r in range(len(q)):  # equal distances come by ascending index
        d, i = got[0][r], got[1][r]
        same = d[1:] == d[:-1]
        assert np.all(i[1:][same] > i[:-1][same])


@pytest.mark.parametrize("k", [1, 10, 300])
@pytest.mark.parametrize("mode,rerank", [(0, "aqd"), (1, "aqd-l2")])
def test_long_scans_keep_the_k_best_of_every_item(k, mode, rerank):
    # a scan of thousands of items with 6 codes (most distances tie) and the
    # queries' own items skipped must give the k best of all items by
    # (distance, index), as the numpy scan does and as the exhaustive
    # re-ranking does when every list is probed
    rng = np.random.RandomState(33)
    n = 6000
    db = _data(seed=33, n=n)
    codes = db.get("X", "codes")[rng.randint(6, size=n)]
    mixed = rng.rand(n) < 0.3  # and some items of their own codes
    codes[mixed] = db.get("X", "codes")[mixed]
    C = db.codebooks
    db = _of_codes(codes, C)
    est = _ivf(alpha=40, rerank=rerank, nlist=3).fit(db)
    ivf = est._ivf_cache["X"]
    q = db[::97]
    n_q = len(q)
    qe = q.get("X", "embedding").copy()
    # a zero query: every inner product ties, so the k best are the k lowest
    # indices whatever list holds them (later lists hold lower ones)
    qe[-1] = 0.0
    ip = est._lookup_tables(qe, "ip")
    q_sq = np.einsum("qd,qd->q", qe, qe, dtype=np.float64)
    sq = est._index["X"]["sqnorms"] if mode == 1 else np.zeros(1)
    exclude = (np.arange(n_q) * 97).astype(np.int64)
    exclude[1::2] = -1
    for nprobe in (1, 3):
        args = (ip, ip, mode, q_sq, sq, 40, k, nprobe, exclude)
        got = ivf.search(*args, compiled=True)
        _same(got, ivf.search(*args, compiled=False))
        if nprobe == 3:  # every item scanned: the exhaustive ranking
            ref = TwoStageRetriever(
                alpha=1.0, n_neighbors=k, rerank=rerank, stage1="exhaustive"
            ).fit(db)
            queries = _of_codes(encode(qe, C, kind="additive"), C, emb=qe)
            r_d, r_i = ref.kneighbors(queries, n_neighbors=k + 1)
            for r in range(n_q):  # drop the skipped item where there is one
                keep = r_i[r] != exclude[r]
                np.testing.assert_array_equal(got[1][r], r_i[r][keep][:k])
                np.testing.assert_array_equal(got[0][r], r_d[r][keep][:k])


def test_scan_of_codes_takes_embeddings_without_bits():
    db, q = _split(seed=34, n_queries=40)
    est = _ivf(alpha=60, nprobe=2).fit(db)
    want = est.kneighbors(q)
    emb = np.asarray(q.get("X", "embedding"))
    _same(est.kneighbors(emb), want)  # an array: no bits needed
    est.set_params(alpha=0)  # no re-ranking: the Hamming stage needs bits
    with pytest.raises(ValueError, match="carry no bits"):
        est.kneighbors(emb)
