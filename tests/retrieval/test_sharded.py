"""ShardedRetriever: exactly TwoStageRetriever's results, over local threads
and over a real dask.distributed LocalCluster of 2 worker processes."""

import json
import os
import shutil
import signal
import sys
import threading
import time

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.base import clone

from skhash import CodeSet, pack_bits
from skhash.exceptions import ShardUnavailableError
from skhash.quantization import encode
from skhash.retrieval import ShardedRetriever, TwoStageRetriever, build_sharded_index

RERANKS = ["aqd", "aqd-l2", "hamming-codes", "exact", "none"]
ALPHAS = [0, 1, 7, 0.0, 0.25, 1.0]


def _modality(rng, n, C, kind, n_bits=12, coarse=False):
    emb = rng.randn(n, C.shape[2]).astype(np.float32)
    if coarse:  # few distinct codes: many Hamming ties
        emb = np.round(emb)
    return CodeSet(
        embedding=emb,
        bits=pack_bits(emb[:, :n_bits]),
        codes=encode(emb, C, kind=kind),
        n_bits=n_bits,
        codebooks=C,
        codebook_kind=kind,
    )


def _codebooks(rng, kind, d=16, M=4, K=8):
    if kind == "additive":
        return rng.randn(M, K, d).astype(np.float32)
    C = np.zeros((M, K, d), np.float32)
    w = d // M
    for m in range(M):
        C[m, :, m * w : (m + 1) * w] = rng.randn(K, w)
    return C


def _cross_modal(n, kind="additive", seed=0, coarse=False, C=None):
    rng = np.random.RandomState(seed)
    C = _codebooks(rng, kind) if C is None else C
    return CodeSet.from_modalities(
        img=_modality(rng, n, C, kind, coarse=coarse),
        txt=_modality(rng, n, C, kind, coarse=coarse),
    )


def _assert_same(a, b):
    assert_array_equal(a[1], b[1])  # indices, tie order included
    assert_array_equal(a[0], b[0])  # distances, bit for bit
    assert a[0].dtype == b[0].dtype and a[1].dtype == b[1].dtype


@pytest.fixture(scope="module")
def data():
    db = _cross_modal(61, coarse=True)
    queries = _cross_modal(9, seed=1, coarse=True, C=db.codebooks)
    y = np.random.RandomState(2).randint(4, size=61)
    return db, queries, y


# ---------------------------------------------------------------------- #
# exactness, local threads
# ---------------------------------------------------------------------- #
@pytest.mark.parametrize("rerank", RERANKS)
@pytest.mark.parametrize("alpha", ALPHAS)
def test_equals_single_retriever_every_mode(data, rerank, alpha):
    db, queries, y = data
    single = TwoStageRetriever(alpha=alpha, n_neighbors=10, rerank=rerank).fit(db, y)
    # 61 items in 4 uneven shards (16, 15, 15, 15)
    sharded = ShardedRetriever(alpha=alpha, n_neighbors=10, rerank=rerank, n_shards=4)
    sharded.fit(db, y)
    assert list(sharded.shard_sizes_) == [16, 15, 15, 15]
    for direction in ("img->txt", "txt->img", "img->img"):
        for k in (1, 10, 20, 61):  # k > every shard's size
            _assert_same(
                sharded.kneighbors(queries, k, direction=direction),
                single.kneighbors(queries, k, direction=direction),
            )
    assert sharded.score(queries, y[:9]) == single.score(queries, y[:9])


@pytest.mark.parametrize("rerank", ["exact", "none"])
@pytest.mark.parametrize("alpha", [0, 5, 0.5, 1.0])
def test_self_queries_exclude_themselves(data, rerank, alpha):
    # X=None needs the re-ranked parts indexed: embeddings (exact) or none
    db, _, y = data
    single = TwoStageRetriever(alpha=alpha, n_neighbors=7, rerank=rerank).fit(db, y)
    sharded = ShardedRetriever(alpha=alpha, n_neighbors=7, rerank=rerank, n_shards=5)
    sharded.fit(db, y)
    for direction in ("img->txt", "txt->txt"):
        for k in (1, 7, 60):
            _assert_same(
                sharded.kneighbors(None, k, direction=direction),
                single.kneighbors(None, k, direction=direction),
            )


def test_self_queries_with_hamming_only_aqd_index(data):
    # alpha=0 with rerank='aqd' needs only the bits: X=None works there too
    db, _, _ = data
    single = TwoStageRetriever(alpha=0, n_neighbors=5).fit(db)
    sharded = ShardedRetriever(alpha=0, n_neighbors=5, n_shards=3).fit(db)
    _assert_same(
        sharded.kneighbors(direction="img->txt"),
        single.kneighbors(direction="img->txt"),
    )
    sharded.set_params(alpha=10)
    with pytest.raises(ValueError, match="embeddings are indexed only"):
        sharded.kneighbors(direction="img->txt")


@pytest.mark.parametrize("kind", ["additive", "product"])
@pytest.mark.parametrize("n_shards", [1, 2, 7, 30])
def test_shard_count_never_changes_results(kind, n_shards):
    db = _cross_modal(30, kind=kind, seed=3)
    queries = _cross_modal(6, kind=kind, seed=4, C=db.codebooks)["img"]
    for rerank in ("aqd", "aqd-l2", "hamming-codes"):
        single = TwoStageRetriever(alpha=0.3, n_neighbors=8, rerank=rerank).fit(db)
        sharded = ShardedRetriever(
            alpha=0.3, n_neighbors=8, rerank=rerank, n_shards=n_shards
        ).fit(db)
        assert sharded.n_shards_ == n_shards
        _assert_same(
            sharded.kneighbors(queries, direction="img->txt"),
            single.kneighbors(queries, direction="img->txt"),
        )


def test_float_alpha_uses_the_global_n():
    # alpha=0.1 of 100 items is L=10, not 10% of each shard's 20
    rng = np.random.RandomState(5)
    emb = rng.randn(100, 16).astype(np.float32)
    db = CodeSet(embedding=emb, bits=pack_bits(emb[:, :8]), n_bits=8)
    single = TwoStageRetriever(alpha=0.1, n_neighbors=15, rerank="exact").fit(db)
    sharded = ShardedRetriever(alpha=0.1, n_neighbors=15, rerank="exact", n_shards=5)
    sharded.fit(db)
    q = db[:20]
    _assert_same(sharded.kneighbors(q), single.kneighbors(q))
    # L=10 < k=15: the tail is in Hamming order, and it is there
    assert not np.array_equal(
        sharded.kneighbors(q)[1],
        TwoStageRetriever(alpha=0.0, n_neighbors=15).fit(db).kneighbors(q)[1],
    )


def test_plain_arrays_and_stage2_only_plans():
    rng = np.random.RandomState(6)
    X = rng.randn(50, 5)
    single = TwoStageRetriever(n_neighbors=6).fit(X)
    sharded = ShardedRetriever(n_neighbors=6, n_shards=3).fit(X)
    assert sharded.search_plan_ == {"X": "exact"} and sharded.n_features_in_ == 5
    _assert_same(sharded.kneighbors(X[:7]), single.kneighbors(X[:7]))
    _assert_same(sharded.kneighbors(), single.kneighbors())
    # codes without bits: stage 2 over the whole database
    C = _codebooks(rng, "additive", d=5, M=2)
    db = CodeSet(
        embedding=X.astype(np.float32),
        codes=encode(X.astype(np.float32), C, kind="additive"),
        codebooks=C,
        codebook_kind="additive",
    ).without("embedding")
    q = X[:4].astype(np.float32)
    single = TwoStageRetriever(n_neighbors=9).fit(db)
    sharded = ShardedRetriever(n_neighbors=9, n_shards=4).fit(db)
    assert sharded.search_plan_ == {"X": "aqd"}
    _assert_same(sharded.kneighbors(q), single.kneighbors(q))


@pytest.mark.parametrize("variant", ["djsrh", "deephash", "full"])
@pytest.mark.parametrize("metric", ["map", "precision"])
def test_score_equals_single(data, variant, metric):
    db, queries, y = data
    yq = np.random.RandomState(7).randint(4, size=9)
    single = TwoStageRetriever(alpha=20, n_neighbors=10).fit(db, y)
    sharded = ShardedRetriever(alpha=20, n_neighbors=10, n_shards=3).fit(db, y)
    for kw in ({}, {"direction": "img->txt"}, {"n_neighbors": "all"}):
        assert sharded.score(queries, yq, variant=variant, metric=metric, **kw) == (
            single.score(queries, yq, variant=variant, metric=metric, **kw)
        )


def test_multilabel_score():
    db = _cross_modal(40, seed=8)
    queries = _cross_modal(6, seed=9, C=db.codebooks)
    rng = np.random.RandomState(10)
    Y, Yq = rng.randint(2, size=(40, 3)), rng.randint(2, size=(6, 3))
    single = TwoStageRetriever(alpha=10, n_neighbors=5).fit(db, Y)
    sharded = ShardedRetriever(alpha=10, n_neighbors=5, n_shards=3).fit(db, Y)
    assert sharded.score(queries, Yq, variant="full") == single.score(
        queries, Yq, variant="full"
    )


# ---------------------------------------------------------------------- #
# add, errors
# ---------------------------------------------------------------------- #
def test_add_fills_the_last_shard_then_opens_new_ones(data):
    db, queries, y = data
    sharded = ShardedRetriever(alpha=12, n_neighbors=10, n_shards=2, max_shard_size=25)
    sharded.fit(db[:40], y[:40])
    assert list(sharded.shard_sizes_) == [20, 20]
    sharded.add(db[40:], y[40:])
    assert list(sharded.shard_sizes_) == [20, 25, 16]
    assert list(sharded.shard_offsets_) == [0, 20, 45]
    single = TwoStageRetriever(alpha=12, n_neighbors=10).fit(db, y)
    _assert_same(
        sharded.kneighbors(queries, direction="img->txt"),
        single.kneighbors(queries, direction="img->txt"),
    )
    assert sharded.score(queries, y[:9]) == single.score(queries, y[:9])
    # without a size limit the last shard takes everything
    grow = ShardedRetriever(n_shards=2).fit(db[:40], y[:40]).add(db[40:], y[40:])
    assert list(grow.shard_sizes_) == [20, 41]


def test_failed_add_leaves_the_index_unchanged(data):
    db, queries, y = data
    sharded = ShardedRetriever(alpha=12, n_neighbors=5, n_shards=2, max_shard_size=30)
    sharded.fit(db[:50], y[:50])
    before = sharded.kneighbors(queries, direction="img->txt")
    other = _cross_modal(20, seed=11)  # other codebooks
    with pytest.raises(ValueError, match="codebooks"):
        sharded.add(other, y[:20])
    with pytest.raises(ValueError, match="y must be given exactly"):
        sharded.add(db[50:])
    assert list(sharded.shard_sizes_) == [25, 25]
    assert sharded.n_samples_fit_ == 50
    _assert_same(sharded.kneighbors(queries, direction="img->txt"), before)


def test_errors_name_the_parameter(data):
    db, queries, _ = data
    with pytest.raises(ValueError, match="n_shards"):
        ShardedRetriever(n_shards=0).fit(db)
    with pytest.raises(ValueError, match="client"):
        ShardedRetriever(client="tcp://localhost:8786").fit(db)
    sharded = ShardedRetriever(n_shards=3).fit(db)
    with pytest.raises(ValueError, match="n_neighbors=62 must be <="):
        sharded.kneighbors(queries, 62, direction="img->txt")
    with pytest.raises(ValueError, match="minus the query itself"):
        sharded.kneighbors(None, 61, direction="img->txt")
    with pytest.raises(ValueError, match="pass direction="):
        sharded.kneighbors(queries)
    with pytest.raises(ValueError, match="n_neighbors must be a positive int"):
        sharded.kneighbors(queries, True, direction="img->txt")
    with pytest.raises(TypeError, match="indexes codes"):
        ShardedRetriever().fit({"img": np.ones((3, 2))})
    with pytest.raises(ValueError, match="score needs the labels"):
        sharded.score(queries, np.zeros(9))


# ---------------------------------------------------------------------- #
# persistence and out-of-core builds
# ---------------------------------------------------------------------- #
def test_save_load_round_trip(data, tmp_path):
    db, queries, y = data
    sharded = ShardedRetriever(alpha=15, n_neighbors=6, n_shards=3).fit(db, y)
    path = sharded.save(tmp_path / "index")
    meta = json.loads((tmp_path / "index" / "manifest.json").read_text())
    assert meta["sizes"] == [21, 20, 20] and len(meta["shards"]) == 3
    loaded = ShardedRetriever.load(path)
    for d in ("img->txt", "txt->img"):
        _assert_same(
            loaded.kneighbors(queries, direction=d),
            sharded.kneighbors(queries, direction=d),
        )
    assert loaded.score(queries, y[:9]) == sharded.score(queries, y[:9])
    assert loaded.get_params() == sharded.get_params()


def test_load_refuses_incomplete_or_changed_index(data, tmp_path):
    db, _, y = data
    path = ShardedRetriever(n_shards=2).fit(db, y).save(tmp_path / "index")
    manifest = os.path.join(path, "manifest.json")
    meta = json.loads(open(manifest).read())
    good = dict(meta)
    meta["sizes"], meta["n_samples_fit"] = [31, 31], 62
    with open(manifest, "w") as f:
        json.dump(meta, f)
    with pytest.raises(ValueError, match="changed after it was written"):
        ShardedRetriever.load(path)
    # a shard listed twice, the shards reordered, one dropped, the total
    # changed: each would load as another index
    for shards, sizes, total in (
        (["shard-00000", "../elsewhere"], [31, 30], 61),
        (["shard-00000", "shard-00000"], [31, 31], 62),
        (["shard-00001", "shard-00000"], [30, 31], 61),
        (["shard-00001"], [30], 30),
        (["shard-00000", "shard-00001"], [31, 30], 60),
    ):
        meta.update(shards=shards, sizes=sizes, n_samples_fit=total)
        with open(manifest, "w") as f:
            json.dump(meta, f)
        with pytest.raises(ValueError, match="damaged"):
            ShardedRetriever.load(path)
    with open(manifest, "w") as f:
        json.dump(good, f)
    ShardedRetriever.load(path, verify=True)
    # a flipped byte inside a shard: loads unverified, refused with verify
    npy = os.path.join(path, "shard-00001", "img.bits.npy")
    raw = bytearray(open(npy, "rb").read())
    raw[-1] ^= 0x80  # a valid bit (the padding bits are the low ones)
    with open(npy, "wb") as f:
        f.write(raw)
    ShardedRetriever.load(path)
    with pytest.raises(Exception, match="checksum"):
        ShardedRetriever.load(path, verify=True)
    os.remove(manifest)
    with pytest.raises(ValueError, match="no manifest.json"):
        ShardedRetriever.load(path)
    with open(manifest, "w") as f:
        json.dump({"format": "something else"}, f)
    with pytest.raises(ValueError, match="not written by ShardedRetriever"):
        ShardedRetriever.load(path)
    with pytest.raises(ValueError, match="mmap_mode"):
        ShardedRetriever.load(path, mmap_mode="r+")


def test_build_from_memmaps_equals_in_memory_fit(tmp_path):
    rng = np.random.RandomState(12)
    n = 257
    bits = np.lib.format.open_memmap(
        tmp_path / "bits.npy", mode="w+", dtype=np.uint8, shape=(n, 2)
    )
    bits[:] = rng.randint(256, size=(n, 2))
    C = _codebooks(rng, "product")
    codes = np.lib.format.open_memmap(
        tmp_path / "codes.npy", mode="w+", dtype=np.uint8, shape=(n, 4)
    )
    codes[:] = rng.randint(8, size=(n, 4))
    y = rng.randint(3, size=n)
    src = CodeSet(bits=bits, codes=codes, codebooks=C, codebook_kind="product")
    params = dict(alpha=30, n_neighbors=12)
    path = build_sharded_index(
        src,
        tmp_path / "index",
        y=y,
        shard_size=100,
        chunk_size=33,
        retriever=ShardedRetriever(**params),
        progress=False,
    )
    loaded = ShardedRetriever.load(path)
    assert list(loaded.shard_sizes_) == [100, 100, 57]
    single = TwoStageRetriever(**params).fit(
        CodeSet(
            bits=np.array(bits),
            codes=np.array(codes),
            codebooks=C,
            codebook_kind="product",
        ),
        y,
    )
    emb = rng.randn(5, 16).astype(np.float32)
    q = CodeSet(embedding=emb, bits=rng.randint(256, size=(5, 2)).astype(np.uint8))
    _assert_same(loaded.kneighbors(q), single.kneighbors(q))
    assert loaded.score(q, y[:5]) == single.score(q, y[:5])


def test_build_from_batches_and_dask_array(tmp_path):
    da = pytest.importorskip("dask.array")
    rng = np.random.RandomState(13)
    X = rng.randn(90, 6)
    y = rng.randint(2, size=90)
    path = build_sharded_index(
        ((X[a : a + 20], y[a : a + 20]) for a in range(0, 90, 20)),
        tmp_path / "a",
        shard_size=40,
        retriever=TwoStageRetriever(n_neighbors=5),
        progress=False,
    )
    single = TwoStageRetriever(n_neighbors=5).fit(X, y)
    loaded = ShardedRetriever.load(path)
    assert list(loaded.shard_sizes_) == [40, 40, 10] and loaded.n_features_in_ == 6
    _assert_same(loaded.kneighbors(X[:8]), single.kneighbors(X[:8]))
    path = build_sharded_index(
        da.from_array(X, chunks=(25, 6)),
        tmp_path / "b",
        y=y,
        shard_size=64,
        chunk_size=25,
        retriever=TwoStageRetriever(n_neighbors=5),
        progress=False,
    )
    _assert_same(
        ShardedRetriever.load(path).kneighbors(X[:8]), single.kneighbors(X[:8])
    )


def test_build_rejects_mixed_batches_and_leaves_no_manifest(tmp_path):
    rng = np.random.RandomState(14)
    good = CodeSet(bits=rng.randint(256, size=(10, 2)).astype(np.uint8))
    bad = CodeSet(bits=rng.randint(256, size=(10, 1)).astype(np.uint8))
    with pytest.raises(ValueError, match="differs from the first"):
        build_sharded_index(iter([good, bad]), tmp_path / "i", progress=False)
    assert not os.path.exists(tmp_path / "i" / "manifest.json")
    with pytest.raises(ValueError, match="shard_size"):
        build_sharded_index([good], tmp_path / "j", shard_size=0)


def _bits(seed, n=20, model=None):
    rng = np.random.RandomState(seed)
    return CodeSet(
        bits=rng.randint(256, size=(n, 2)).astype(np.uint8),
        n_bits=16,
        model_fingerprint=model,
    )


def test_labels_are_stored_exactly_across_shards(tmp_path):
    # longer strings added to the last shard and to new ones: every label
    # read back whole (they were cut to the first shard's dtype), and the
    # scores equal the single index's; 2.7 into int labels is refused
    db, more = _bits(0), _bits(1, n=12)
    y, y_more = np.array(list("ab") * 10), np.array(["bxx", "axx"] * 6)
    single = TwoStageRetriever(n_neighbors=5).fit(db, y).add(more, y_more)
    sharded = ShardedRetriever(n_shards=2, max_shard_size=10, n_neighbors=5)
    sharded.fit(db, y).add(more, y_more)
    assert sharded.n_shards_ == 4
    assert_array_equal(sharded._labels_of(np.arange(32)), single.y_)
    queries, y_q = _bits(2, n=6), np.array(["bxx", "a", "b"] * 2)
    for metric in ("map", "precision"):
        assert sharded.score(queries, y_q, metric=metric) == single.score(
            queries, y_q, metric=metric
        )
    ints = ShardedRetriever(n_shards=2).fit(db, np.arange(20))
    with pytest.raises(ValueError, match="2.7, which is not a whole number"):
        ints.add(more, np.full(12, 2.7))
    # build_sharded_index widens its buffer alike
    batches = [(db, y), (more, y_more)]
    path = build_sharded_index(
        iter(batches), tmp_path / "b", shard_size=15, progress=False
    )
    built = ShardedRetriever.load(path)
    assert_array_equal(built._labels_of(np.arange(32)), single.y_)
    with pytest.raises(ValueError, match="not a whole number"):
        build_sharded_index(
            iter([(db, np.arange(20)), (more, np.full(12, 2.7))]), tmp_path / "c",
            shard_size=15, progress=False,
        )  # fmt: skip


def test_codes_of_another_model_are_refused(tmp_path):
    # bits-only codes carry only the model fingerprint: add, load and the
    # build refuse another model's (the index then refused every query)
    a, b = _bits(0, model="a" * 16), _bits(1, model="b" * 16)
    est = ShardedRetriever(n_shards=2, max_shard_size=20).fit(a)
    assert est.model_fingerprint_ == "a" * 16
    with pytest.raises(ValueError, match="encoded by another model"):
        est.add(b)
    assert est.n_samples_fit_ == 20
    with pytest.raises(ValueError, match="encoded by another model"):
        build_sharded_index(iter([a, b]), tmp_path / "i", shard_size=15, progress=False)
    assert not os.path.exists(tmp_path / "i" / "manifest.json")
    path = build_sharded_index(
        iter([a, a]), tmp_path / "j", shard_size=15, progress=False
    )
    assert ShardedRetriever.load(path).model_fingerprint_ == "a" * 16
    # a shard copied from another model's index is refused at load
    other = build_sharded_index(
        iter([b, b]), tmp_path / "k", shard_size=15, progress=False
    )
    victim = sorted(d for d in os.listdir(path) if d.startswith("shard-"))[1]
    shutil.rmtree(os.path.join(path, victim))
    shutil.copytree(os.path.join(other, victim), os.path.join(path, victim))
    with pytest.raises(ValueError, match="encoded by another model"):
        ShardedRetriever.load(path)


def test_a_failed_fit_leaves_the_sharded_index_as_it_was(data):
    db, queries, y = data
    est = ShardedRetriever(n_shards=3).fit(db, y)
    ref = est.kneighbors(queries, direction="img->txt")
    fitted = {k: v for k, v in vars(est).items() if k.endswith("_")}
    for bad in (np.random.RandomState(0).randn(30, 8), db):
        with pytest.raises(ValueError, match="one row per indexed item"):
            est.fit(bad, y[:3])
        after = {k: v for k, v in vars(est).items() if k.endswith("_")}
        assert after.keys() == fitted.keys()
        assert all(after[k] is v for k, v in fitted.items())
        _assert_same(est.kneighbors(queries, direction="img->txt"), ref)


def test_the_index_holds_its_own_labels(data):
    db, queries, y = data
    y = y.copy()
    single = TwoStageRetriever().fit(db, y)
    sharded = ShardedRetriever(n_shards=3).fit(db, y)
    before = single.score(queries, y[:9]), sharded.score(queries, y[:9])
    y_q = y[:9].copy()
    y[:] = 99  # the caller reuses its array
    assert (single.score(queries, y_q), sharded.score(queries, y_q)) == before


# ---------------------------------------------------------------------- #
# on a real cluster: 2 worker processes
# ---------------------------------------------------------------------- #
class _SlowNumpy:
    """The numpy backend, sleeping in each shortlist (a query in flight)."""

    name = "slow"

    def __init__(self):
        from skhash.retrieval._kernels import NumpyBackend

        self._inner = NumpyBackend()

    def shortlist(self, *args, **kwargs):
        time.sleep(1.5)
        return self._inner.shortlist(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def _register_slow_backend(**kwargs):
    from skhash.retrieval._kernels import register_backend

    register_backend("slow", _SlowNumpy)


@pytest.fixture(scope="module")
def client(dask_client):
    import cloudpickle
    import distributed

    # the workers get this module's backend and plugin by value
    cloudpickle.register_pickle_by_value(sys.modules[__name__])

    class SlowBackend(distributed.WorkerPlugin):
        def setup(self, worker):  # runs on restarted workers too
            _register_slow_backend()

    dask_client.wait_for_workers(2, timeout=120)
    dask_client.register_plugin(SlowBackend())
    return dask_client


def test_cluster_equals_single_and_reloads(client, data, tmp_path):
    db, queries, y = data
    single = TwoStageRetriever(alpha=0.3, n_neighbors=10).fit(db, y)
    sharded = ShardedRetriever(alpha=0.3, n_neighbors=10, n_shards=3, client=client)
    sharded.fit(db, y)
    # the shards live on the two workers, not here
    holders = client.who_has(sharded._shards)
    assert len({w for ws in holders.values() for w in ws}) == 2
    for d in ("img->txt", "txt->img"):
        _assert_same(
            sharded.kneighbors(queries, 20, direction=d),
            single.kneighbors(queries, 20, direction=d),
        )
    assert sharded.score(queries, y[:9]) == single.score(queries, y[:9])
    sharded.add(db[:5], y[:5])
    assert sharded.n_samples_fit_ == 66
    path = sharded.save(tmp_path / "index")
    loaded = ShardedRetriever.load(path, client=client)
    bigger = TwoStageRetriever(alpha=0.3, n_neighbors=10).fit(
        CodeSet.from_modalities(
            img=CodeSet(**_parts(db, "img", 5)), txt=CodeSet(**_parts(db, "txt", 5))
        ),
        np.concatenate([y, y[:5]]),
    )
    _assert_same(
        loaded.kneighbors(queries, direction="img->txt"),
        bigger.kneighbors(queries, direction="img->txt"),
    )
    assert loaded.score(queries, y[:9]) == bigger.score(queries, y[:9])


def _parts(db, m, n_extra):
    cs = db[m]
    cat = {
        p: np.concatenate([cs.get(m, p), cs.get(m, p)[:n_extra]])
        for p in ("embedding", "bits", "codes")
    }
    return dict(
        cat, n_bits=cs.n_bits, codebooks=cs.codebooks, codebook_kind=cs.codebook_kind
    )


def test_cluster_self_queries(client, data):
    db, _, _ = data
    # clones (GridSearchCV, cross_validate) share the client, never copy it
    assert clone(ShardedRetriever(client=client)).client is client
    single = TwoStageRetriever(alpha=9, n_neighbors=6, rerank="exact").fit(db)
    sharded = ShardedRetriever(
        alpha=9, n_neighbors=6, rerank="exact", n_shards=2, client=client
    ).fit(db)
    _assert_same(
        sharded.kneighbors(direction="txt->img"),
        single.kneighbors(direction="txt->img"),
    )


def test_worker_lost_mid_query(client, data, tmp_path):
    # two indexes with shard 0 on the same worker: one fit from memory, one
    # loaded from files; that worker is killed while both queries run
    db, queries, _ = data
    params = dict(alpha=10, n_neighbors=5, n_shards=2)
    expected = TwoStageRetriever(alpha=10, n_neighbors=5).fit(db)
    expected = expected.kneighbors(queries, direction="img->txt")
    in_memory = ShardedRetriever(**params, client=client).fit(db)
    path = ShardedRetriever(**params).fit(db).save(tmp_path / "index")
    loaded = ShardedRetriever.load(path, client=client)
    (worker,) = client.who_has(in_memory._shards[:1])[in_memory._shards[0].key]
    assert client.who_has(loaded._shards[:1])[loaded._shards[0].key] == (worker,)
    pid = client.run(os.getpid, workers=[worker])[worker]
    outcome = {}

    def query(name, est):
        try:
            outcome[name] = est.kneighbors(queries, direction="img->txt")
        except Exception as exc:  # noqa: BLE001 (recorded for the assertion)
            outcome[name] = exc

    threads = []
    for name, est in (("in_memory", in_memory), ("loaded", loaded)):
        est.set_params(backend="slow")
        threads.append(threading.Thread(target=query, args=(name, est)))
        threads[-1].start()
    time.sleep(0.7)  # the shards' tasks are sleeping in their shortlist
    assert all(t.is_alive() for t in threads)
    os.kill(pid, signal.SIGKILL)
    for t in threads:
        t.join(90)
    assert not any(t.is_alive() for t in threads)
    # a shard fit from memory died with its worker: an error, never a
    # partial top-k of the other shard
    assert isinstance(outcome["in_memory"], ShardUnavailableError)
    assert "did not answer" in str(outcome["in_memory"])
    in_memory.set_params(backend="numpy")
    with pytest.raises(ShardUnavailableError, match="lost"):
        in_memory.kneighbors(queries, direction="img->txt")
    # a loaded shard is re-mapped by another worker: the complete answer
    assert not isinstance(outcome["loaded"], Exception), outcome["loaded"]
    _assert_same(outcome["loaded"], expected)


def test_score_accepts_and_refuses_what_the_single_index_does():
    """One set of score rules for both estimators: the same scores for every
    variant (DCMH's whole-ranking form included), the same refusals of a bool
    cut-off and of labels that can never match."""
    rng = np.random.RandomState(3)
    y = rng.randint(4, size=90)
    emb = (rng.randn(90, 16) + 1.5 * np.eye(16)[y * 3]).astype(np.float32)
    db = CodeSet(embedding=emb, bits=pack_bits(emb), n_bits=16)
    single = TwoStageRetriever(alpha=20, n_neighbors=7).fit(db[:70], y[:70])
    sharded = ShardedRetriever(alpha=20, n_neighbors=7, n_shards=3).fit(db[:70], y[:70])
    q, yq = db[70:], y[70:]
    for variant in ("djsrh", "deephash", "full", "dcmh"):
        assert sharded.score(q, yq, variant=variant) == single.score(
            q, yq, variant=variant
        )
    for est in (single, sharded):
        with pytest.raises(ValueError, match="bool is not accepted"):
            est.score(q, yq, n_neighbors=True)
        with pytest.raises(ValueError, match="no query can share a label"):
            est.score(q, yq.astype(str))
