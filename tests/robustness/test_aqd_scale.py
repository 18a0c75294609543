"""Asymmetric (AQD) distances at any finite magnitude.

The look-up tables hold inner products of the queries with the codewords in
float32: with queries and codebooks both near 1e20 the products (1e40)
overflowed (tables inf, distances inf or nan), near 1e-25 they vanished
(tables 0, every item tied), and the re-ranking order was garbage, silently.
Now :func:`~skhash.quantization.lookup_tables` and
:func:`~skhash.quantization.aqd` compute such tables in float64, and
:class:`~skhash.retrieval.TwoStageRetriever` makes its float32 tables from
codebooks and queries scaled by exact powers of two: at a power-of-two
scale its results are those of the unscaled data, bit for bit, with the
distances scaled back in float64.
"""

import numpy as np
import pytest

from skhash import CodeSet, pack_bits
from skhash.quantization import (
    AdditiveQuantizer,
    ProductQuantizer,
    aqd,
    decode,
    lookup_tables,
)
from skhash.quantization._checks import _tables_dtype
from skhash.quantization._distances import tables_from_tiles
from skhash.quantization._products import tile_rows
from skhash.retrieval import ShardedRetriever, TwoStageRetriever

N, D, N_Q, K = 300, 8, 24, 8
# powers of two near 1e20, 1e-25, 1e30, 1e-30: the scaled data are the
# ordinary data exactly, so the results must be exactly the unscaled ones
EXPONENTS = [66, -83, 100, -100]
# stage-1 options; "none": no bits indexed, stage 2 over every item
STAGE1 = ["exhaustive", "mih", "ivf", "none"]


def _data():
    rng = np.random.RandomState(0)
    X = rng.randn(N, D).astype(np.float32)
    Q = rng.randn(N_Q, D).astype(np.float32)
    proj = rng.randn(D, 16)
    return X, Q, pack_bits(X @ proj), pack_bits(Q @ proj)


_X, _Q, _BITS, _QBITS = _data()
_QUANTIZERS = {
    "product": ProductQuantizer(n_codebooks=4, n_codewords=16, random_state=0),
    "additive": AdditiveQuantizer(n_codebooks=2, n_codewords=16, random_state=0),
}
_FITTED = {}


def _codebooks(kind):
    """Codebooks and codes fitted once per kind on the ordinary data."""
    if kind not in _FITTED:
        q = _QUANTIZERS[kind].fit(_X)
        _FITTED[kind] = (q.codebooks_, q.transform(_X))
    return _FITTED[kind]


def _sets(kind, c_exp=0, q_exp=0, stage1="exhaustive"):
    C, codes = _codebooks(kind)
    C = np.ldexp(C, c_exp)
    emb = np.ldexp(_Q, q_exp)
    book = {"codebooks": C, "codebook_kind": kind}
    if stage1 == "none":
        return CodeSet(codes=codes, **book), CodeSet(embedding=emb, **book)
    db = CodeSet(bits=_BITS, n_bits=16, codes=codes, **book)
    return db, CodeSet(bits=_QBITS, n_bits=16, embedding=emb, **book)


def _retriever(rerank, stage1, backend="numpy"):
    return TwoStageRetriever(
        n_neighbors=K,
        rerank=rerank,
        alpha=0.2,
        stage1="exhaustive" if stage1 == "none" else stage1,
        nlist=6,
        nprobe=2,
        backend=backend,
        random_state=0,
    )


def _search(kind, rerank, stage1, c_exp=0, q_exp=0, backend="numpy"):
    db, queries = _sets(kind, c_exp, q_exp, stage1)
    r = _retriever(rerank, stage1, backend).fit(db)
    return r, queries, r.kneighbors(queries)


_BASE = {}


def _base(kind, rerank, stage1, c_exp=0, backend="numpy"):
    """``(distances, indices)`` of the queries at their own scale (kept)."""
    key = (kind, rerank, stage1, c_exp, backend)
    if key not in _BASE:
        _BASE[key] = _search(kind, rerank, stage1, c_exp, 0, backend)[2]
    return _BASE[key]


# --------------------------------------------------------------------------- #
# public functions
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("kind", ["product", "additive"])
@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("scale", [1e20, 1e-25, 1e30, 1e-30])
def test_lookup_tables_and_aqd_scale_with_the_data(kind, metric, scale):
    C, codes = _codebooks(kind)
    base_lut = lookup_tables(_Q, C, metric=metric)
    base = aqd(_Q, codes, C, metric=metric)
    Cs = (C.astype(np.float64) * scale).astype(np.float32)
    Qs = (_Q.astype(np.float64) * scale).astype(np.float32)
    Cs0, Qs0 = Cs.copy(), Qs.copy()
    lut = lookup_tables(Qs, Cs, metric=metric)
    scores = aqd(Qs, codes, Cs, metric=metric)
    np.testing.assert_array_equal(Cs, Cs0)  # inputs not modified
    np.testing.assert_array_equal(Qs, Qs0)
    assert lut.dtype == np.float64 and scores.dtype == np.float64
    tol = 1e-5 * np.abs(base_lut).max()
    np.testing.assert_allclose(lut / scale**2, base_lut, rtol=1e-5, atol=tol)
    tol = 1e-5 * np.abs(base).max()
    np.testing.assert_allclose(scores / scale**2, base, rtol=1e-5, atol=tol)
    # the rankings are the unscaled ones
    sign = -1.0 if metric == "ip" else 1.0
    exact = decode(codes, C).astype(np.float64)
    ref = _Q.astype(np.float64) @ exact.T
    if metric == "l2":
        ref = (_Q.astype(np.float64) ** 2).sum(1)[:, None] - 2 * ref
        ref += (exact**2).sum(1)[None]
    top = np.argsort(sign * scores, axis=1, kind="stable")[:, :K]
    got = np.take_along_axis(sign * ref, top, 1)
    want = np.sort(sign * ref, axis=1)[:, :K]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_lookup_tables_of_ordinary_data_keep_their_float32_bits(metric):
    C, codes = _codebooks("additive")
    assert _tables_dtype(_Q, C) is None
    for Q in (_Q, _Q.astype(np.float64), _Q * 1e-6, _Q * 1e6):
        flat = C.reshape(-1, D)
        want = tables_from_tiles(Q, tile_rows(flat, Q.dtype), C, metric)
        got = lookup_tables(Q, C, metric=metric)
        assert got.dtype == np.float32
        assert got.tobytes() == want.tobytes()
    assert aqd(_Q, codes, C, metric=metric).dtype == np.float32


# --------------------------------------------------------------------------- #
# TwoStageRetriever
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("kind", ["product", "additive"])
@pytest.mark.parametrize("rerank", ["aqd", "aqd-l2"])
@pytest.mark.parametrize("stage1", STAGE1)
@pytest.mark.parametrize("exp", EXPONENTS)
def test_search_at_a_power_of_two_scale_is_the_unscaled_search(
    kind, rerank, stage1, exp
):
    d0, i0 = _base(kind, rerank, stage1)
    db, queries = _sets(kind, exp, exp, stage1)
    C0 = db.codebooks.copy()
    emb0 = queries.get("X", "embedding").copy()
    r = _retriever(rerank, stage1).fit(db)
    d, i = r.kneighbors(queries)
    np.testing.assert_array_equal(db.codebooks, C0)  # inputs not modified
    np.testing.assert_array_equal(queries.get("X", "embedding"), emb0)
    np.testing.assert_array_equal(r.codebooks_, C0)  # reported as given
    np.testing.assert_array_equal(i, i0)
    assert d.dtype == np.float64
    np.testing.assert_array_equal(d, np.ldexp(d0, 2 * exp))


@pytest.mark.parametrize("kind", ["product", "additive"])
@pytest.mark.parametrize("rerank", ["aqd", "aqd-l2"])
@pytest.mark.parametrize("stage1", ["exhaustive", "ivf"])
def test_decimal_scale_finds_the_exact_neighbours(kind, rerank, stage1):
    # x 1e20 (not a power of two): the neighbours by the float64 distances
    # of the reconstructions, which are finite and s**2 times the unscaled
    C, codes = _codebooks(kind)
    s = 1e20
    Cs = (C.astype(np.float64) * s).astype(np.float32)
    Qs = (_Q.astype(np.float64) * s).astype(np.float32)
    book = {"codebooks": Cs, "codebook_kind": kind}
    db = CodeSet(bits=_BITS, n_bits=16, codes=codes, **book)
    queries = CodeSet(bits=_QBITS, n_bits=16, embedding=Qs, **book)
    r = _retriever(rerank, stage1)
    r.set_params(alpha=1.0, nprobe=6)  # every item re-ranked
    d, i = r.fit(db).kneighbors(queries)
    R, Qd = decode(codes, Cs).astype(np.float64), Qs.astype(np.float64)
    if rerank == "aqd":
        ref = -(Qd @ R.T)
    else:
        ref = ((Qd[:, None] - R[None]) ** 2).sum(-1)
    span = np.abs(ref).max()
    want = np.sort(ref, axis=1)[:, :K]
    np.testing.assert_allclose(np.take_along_axis(ref, i, 1), want, atol=1e-5 * span)
    np.testing.assert_allclose(d, want, atol=1e-5 * span)


@pytest.mark.parametrize("kind", ["product", "additive"])
@pytest.mark.parametrize("stage1", ["exhaustive", "ivf"])
@pytest.mark.parametrize(
    ("c_exp", "q_exp"), [(0, 100), (40, 100), (-55, -72), (-83, 66), (0, -100)]
)
def test_inner_product_ranking_ignores_the_query_scale(kind, stage1, c_exp, q_exp):
    # "aqd" ranks by <q, x>: the queries' scale never changes the neighbours,
    # and the distances are the true ones, 2**q_exp times those at q_exp = 0
    # (codebooks of ordinary magnitude 2**40 or 2**-55 with queries whose
    # products with them overflow or vanish in float32)
    d0, i0 = _base(kind, "aqd", stage1, c_exp)
    _, _, (d, i) = _search(kind, "aqd", stage1, c_exp, q_exp)
    np.testing.assert_array_equal(i, i0)
    np.testing.assert_array_equal(d, np.ldexp(d0, q_exp))


@pytest.mark.parametrize("kind", ["product", "additive"])
@pytest.mark.parametrize("stage1", ["exhaustive", "ivf"])
@pytest.mark.parametrize(("c_exp", "q_exp"), [(66, 0), (0, 100), (-83, 66)])
def test_l2_with_queries_and_codebooks_of_different_magnitudes(
    kind, stage1, c_exp, q_exp
):
    # ||q - x||^2 in float64: finite, and the neighbours are the k smallest
    # exact distances. Where one side dominates, the distances are its
    # squared norm to float64 precision (the other side's part rounds away),
    # as they are in any float64 computation of them.
    r, queries, (d, i) = _search(kind, "aqd-l2", stage1, c_exp, q_exp)
    r.set_params(alpha=1.0, nprobe=6)
    d, i = r.kneighbors(queries)
    C, codes = _codebooks(kind)
    R = decode(codes, np.ldexp(C, c_exp)).astype(np.float64)
    Qd = queries.get("X", "embedding").astype(np.float64)
    ref = ((Qd[:, None] - R[None]) ** 2).sum(-1)
    assert np.isfinite(d).all()
    want = np.sort(ref, axis=1)[:, :K]
    np.testing.assert_allclose(np.take_along_axis(ref, i, 1), want, rtol=1e-5)
    np.testing.assert_allclose(d, want, rtol=1e-5)


def test_ordinary_data_take_the_unscaled_path():
    r, queries, _ = _search("additive", "aqd-l2", "ivf")
    assert r._lut_shift == 0
    assert r._lut_codebooks is r.codebooks_
    parts = {"embedding": queries.get("X", "embedding")}
    assert r._table_shifts(parts, "X") is None
    emb = queries.get("X", "embedding")
    for metric in ("ip", "l2"):
        want = lookup_tables(emb, r.codebooks_, metric=metric)
        assert r._lookup_tables(emb, metric).tobytes() == want.tobytes()


@pytest.mark.parametrize("backend", ["numba"])
@pytest.mark.parametrize("kind", ["product", "additive"])
def test_compiled_kernels_at_extreme_scales(backend, kind):
    pytest.importorskip("numba")
    for rerank in ("aqd", "aqd-l2"):
        for stage1 in ("exhaustive", "ivf"):
            d0, i0 = _base(kind, rerank, stage1, backend=backend)
            for exp in (66, -100):
                _, _, (d, i) = _search(kind, rerank, stage1, exp, exp, backend)
                np.testing.assert_array_equal(i, i0)
                np.testing.assert_array_equal(d, np.ldexp(d0, 2 * exp))
            # queries far larger than the codebooks (l2: their own scale)
            _, _, (d, i) = _search(kind, rerank, stage1, 0, 100, backend)
            _, _, (dn, i_n) = _search(kind, rerank, stage1, 0, 100)
            np.testing.assert_array_equal(i, i_n)
            np.testing.assert_array_equal(d, dn)


@pytest.mark.parametrize("name", ["index.npz", "index"])
def test_save_load_keeps_the_scaled_tables(tmp_path, name):
    # the stored squared norms are those of the scaled codebooks (finite),
    # and the scale is recomputed from the codebooks at load
    for kind, rerank, stage1 in [
        ("additive", "aqd-l2", "ivf"),
        ("product", "aqd", "exhaustive"),
    ]:
        r, queries, (d, i) = _search(kind, rerank, stage1, 66, 66)
        path = r.save(tmp_path / f"{kind}-{name}")
        loaded = TwoStageRetriever.load(path, verify=True)
        assert loaded._lut_shift == r._lut_shift != 0
        d2, i2 = loaded.kneighbors(queries)
        np.testing.assert_array_equal(i2, i)
        np.testing.assert_array_equal(d2, d)


def test_sharded_search_at_extreme_scale():
    # each shard is a TwoStageRetriever: its own scaling, distances in the
    # true units, so the merge is that of one index
    for rerank in ("aqd", "aqd-l2"):
        db, queries = _sets("additive", 66, 66)
        kw = {"alpha": 0.2, "n_neighbors": K, "rerank": rerank, "backend": "numpy"}
        sharded = ShardedRetriever(n_shards=3, stage1="exhaustive", **kw).fit(db)
        single = TwoStageRetriever(**kw).fit(db)
        d1, i1 = sharded.kneighbors(queries)
        d2, i2 = single.kneighbors(queries)
        np.testing.assert_array_equal(i1, i2)
        np.testing.assert_array_equal(d1, d2)
        d0, i0 = _base("additive", rerank, "exhaustive")
        np.testing.assert_array_equal(i1, i0)
        np.testing.assert_array_equal(d1, np.ldexp(d0, 132))


@pytest.mark.parametrize("kind", ["product", "additive"])
@pytest.mark.parametrize("rerank", ["aqd", "aqd-l2"])
@pytest.mark.parametrize(("stage1", "alpha"), [("ivf", 0), ("ivf", 3), ("mih", 3)])
def test_lists_and_short_shortlists_at_extreme_scales(kind, rerank, stage1, alpha):
    # ivf, alpha=0: the lists are ranked by the tables, the items by Hamming
    # distance; ivf, alpha=3: the probed lists (at least k items) are all
    # re-ranked; mih, alpha=3 < k: a re-ranked head and a Hamming tail
    def run(exp):
        db, queries = _sets(kind, exp, exp)
        r = _retriever(rerank, stage1).set_params(alpha=alpha)
        return r.fit(db).kneighbors(queries)

    d0, i0 = run(0)
    head = {0: 0, 3: K}[alpha] if stage1 == "ivf" else alpha
    for exp in (66, -100):
        d, i = run(exp)
        np.testing.assert_array_equal(i, i0)
        np.testing.assert_array_equal(d[:, :head], np.ldexp(d0[:, :head], 2 * exp))
        np.testing.assert_array_equal(d[:, head:], d0[:, head:])  # Hamming


def test_add_at_extreme_scale_equals_one_fit():
    # the squared norms of the added items are those of the scaled codebooks
    db, queries = _sets("additive", 66, 66)
    kw = {"alpha": 1.0, "n_neighbors": K, "rerank": "aqd-l2", "backend": "numpy"}
    grown = TwoStageRetriever(**kw).fit(db[:150]).add(db[150:])
    full = TwoStageRetriever(**kw).fit(db)
    d1, i1 = grown.kneighbors(queries)
    d2, i2 = full.kneighbors(queries)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(d1, d2)
    assert np.isfinite(d1).all()
