"""TwoStageRetriever against a plain brute-force two-stage reference."""

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError

from skhash import CodeSet, pack_bits
from skhash.metrics import harmonic_mean
from skhash.retrieval import TwoStageRetriever

N, N_QUERIES, D, M, K = 300, 20, 4, 2, 4
RERANKS = ["aqd", "aqd-l2", "hamming-codes", "exact", "none"]
ALPHAS = [7, 0.1, 0, 1.0, 400]  # int < k, float, zero, everything, int > N
K_NEIGHBORS = 10


# --------------------------------------------------------------------------- #
# Data: small integers / dyadic values, so every distance is computed exactly
# and there are many ties.
# --------------------------------------------------------------------------- #


def _codebooks(rng, kind):
    C = rng.randint(-2, 3, size=(M, K, D)).astype(np.float32)
    if kind == "product":  # codebook m lives on dims [2m, 2m + 2)
        for m in range(M):
            mask = np.ones(D, dtype=bool)
            mask[2 * m : 2 * m + 2] = False
            C[m][:, mask] = 0.0
    return C


def _half_signs(rng, n):
    """Vectors of ±0.5 (norm exactly 1): exact cosines, many ties."""
    return (rng.randint(2, size=(n, D)) - 0.5).astype(np.float32)


def _codeset(rng, n, n_bits, C, kind, modality="X"):
    return CodeSet(
        embedding=_half_signs(rng, n),
        bits=pack_bits(rng.randint(2, size=(n, n_bits))),
        codes=rng.randint(K, size=(n, M)),
        n_bits=n_bits,
        codebooks=C,
        codebook_kind=kind,
        modality=modality,
    )


def _data(n_bits, kind, seed=0):
    rng = np.random.RandomState(seed)
    C = _codebooks(rng, kind)
    return _codeset(rng, N, n_bits, C, kind), _codeset(rng, N_QUERIES, n_bits, C, kind)


def _stage2_distance(mode, q, db, i, j, C):
    """One plainly computed stage-2 distance between query i and item j."""
    if mode == "hamming-codes":
        return float((q.codes[i] != db.codes[j]).sum())
    if mode == "exact":
        a, b = q.embedding[i].astype(float), db.embedding[j].astype(float)
        return 1.0 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    x = sum(C[m, db.codes[j, m]] for m in range(M)).astype(float)
    if mode == "aqd":
        return -float(q.embedding[i] @ x)
    return float(((q.embedding[i] - x) ** 2).sum())


def _brute_force(q, db, n_bits, alpha, k, mode, exclude_self=False):
    """Stage 1 by full lexsort over (Hamming, index), stage 2 by lexsort."""
    n = len(db)
    ham = (
        np.unpackbits(q.bits, axis=1, count=n_bits)[:, None, :]
        != np.unpackbits(db.bits, axis=1, count=n_bits)[None, :, :]
    ).sum(axis=2)
    n_search = n - 1 if exclude_self else n
    L = alpha if isinstance(alpha, int) else round(alpha * n)
    L = min(L, n_search)
    all_idx, all_dist = [], []
    for i in range(len(q)):
        items = np.array([j for j in range(n) if not (exclude_self and j == i)])
        order = items[np.lexsort((items, ham[i, items]))]
        short = order[: max(L, k)]
        if mode == "none" or L == 0:
            idx = short[:k]
            dist = ham[i, idx].astype(float)
        else:
            cand = short[:L]
            d2 = np.array(
                [_stage2_distance(mode, q, db, i, j, db.codebooks) for j in cand]
            )
            o = np.lexsort((cand, d2))
            idx = np.concatenate([cand[o], short[L:k]])[:k]
            dist = np.concatenate([d2[o], ham[i, short[L:k]]])[:k]
        all_idx.append(idx)
        all_dist.append(dist)
    return np.array(all_dist), np.array(all_idx)


# --------------------------------------------------------------------------- #
# Exactness against the reference
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("n_bits", [8, 12])
@pytest.mark.parametrize("kind", ["additive", "product"])
@pytest.mark.parametrize("rerank", RERANKS)
def test_kneighbors_equals_brute_force(n_bits, kind, rerank):
    db, q = _data(n_bits, kind)
    for alpha in ALPHAS:
        search = TwoStageRetriever(alpha, K_NEIGHBORS, rerank=rerank).fit(db)
        dist, idx = search.kneighbors(q)
        ref_dist, ref_idx = _brute_force(q, db, n_bits, alpha, K_NEIGHBORS, rerank)
        assert idx.dtype == np.int64 and dist.dtype == np.float64
        np.testing.assert_array_equal(idx, ref_idx, err_msg=f"alpha={alpha}")
        np.testing.assert_array_equal(dist, ref_dist, err_msg=f"alpha={alpha}")
        L = min(alpha if isinstance(alpha, int) else round(alpha * N), N)
        if L >= K_NEIGHBORS or rerank == "none" or L == 0:
            assert (np.diff(dist, axis=1) >= 0).all()


@pytest.mark.parametrize("rerank", ["hamming-codes", "exact", "none"])
def test_x_none_excludes_own_row(rerank):
    db, _ = _data(12, "additive", seed=1)
    search = TwoStageRetriever(0.1, K_NEIGHBORS, rerank=rerank).fit(db)
    dist, idx = search.kneighbors()
    assert not (idx == np.arange(N)[:, None]).any()
    ref_dist, ref_idx = _brute_force(
        db, db, 12, 0.1, K_NEIGHBORS, rerank, exclude_self=True
    )
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(dist, ref_dist)


def test_alpha_one_is_full_aqd_ranking_and_alpha_zero_is_hamming():
    db, q = _data(12, "additive", seed=2)
    full = TwoStageRetriever(1.0, 25).fit(db).kneighbors(q)
    # AQD over the whole database, with no stage 1 at all
    no_bits = TwoStageRetriever(0, 25).fit(db.without("bits", "embedding"))
    assert no_bits.search_plan_ == {"X": "aqd"}
    np.testing.assert_array_equal(full[1], no_bits.kneighbors(q)[1])
    np.testing.assert_array_equal(full[0], no_bits.kneighbors(q)[0])
    aqd = np.array(
        [
            [_stage2_distance("aqd", q, db, i, j, db.codebooks) for j in range(N)]
            for i in range(len(q))
        ]
    )
    ref = np.array([np.lexsort((np.arange(N), row))[:25] for row in aqd])
    np.testing.assert_array_equal(full[1], ref)

    zero = TwoStageRetriever(0, 25).fit(db).kneighbors(q)
    # alpha is read at query time: no refit needed to sweep it
    swept = TwoStageRetriever(1.0, 25).fit(db).set_params(alpha=0).kneighbors(q)
    np.testing.assert_array_equal(swept[1], zero[1])
    hamming = TwoStageRetriever(100, 25, rerank="none").fit(db).kneighbors(q)
    np.testing.assert_array_equal(zero[1], hamming[1])
    np.testing.assert_array_equal(zero[0], hamming[0])


def test_cross_modal_directions():
    rng = np.random.RandomState(3)
    C = _codebooks(rng, "product")
    img, txt = (_codeset(rng, N, 12, C, "product") for _ in range(2))
    db = CodeSet.from_modalities(img=img, txt=txt)
    search = TwoStageRetriever(20, K_NEIGHBORS, rerank="aqd-l2").fit(db, None)
    assert search.modalities_ == ("img", "txt")
    queries = db[:15]
    for src, dst in [("img", "txt"), ("txt", "img"), ("img", "img")]:
        dist, idx = search.kneighbors(queries, direction=f"{src}->{dst}")
        ref = _brute_force(queries[src], db[dst], 12, 20, K_NEIGHBORS, "aqd-l2")
        np.testing.assert_array_equal(idx, ref[1])
        np.testing.assert_array_equal(dist, ref[0])
    # a query CodeSet carrying only the query modality works too
    only_img = search.kneighbors(queries["img"], direction="img->txt")
    np.testing.assert_array_equal(
        only_img[1], search.kneighbors(queries, direction="img->txt")[1]
    )
    # X=None cross-modal: queries are the indexed txt items, own row excluded
    hc = TwoStageRetriever(20, K_NEIGHBORS, rerank="hamming-codes").fit(db)
    dist, idx = hc.kneighbors(direction="txt->img")
    ref = _brute_force(db["txt"], db["img"], 12, 20, K_NEIGHBORS, "hamming-codes", True)
    np.testing.assert_array_equal(idx, ref[1])


def test_n_jobs_gives_identical_results():
    db, q = _data(12, "additive", seed=4)
    q = db[np.arange(0, N, 3)]
    one = TwoStageRetriever(30, K_NEIGHBORS).fit(db).kneighbors(q)
    two = TwoStageRetriever(30, K_NEIGHBORS, n_jobs=2).fit(db).kneighbors(q)
    np.testing.assert_array_equal(one[1], two[1])
    np.testing.assert_array_equal(one[0], two[0])


@pytest.mark.parametrize("stage1", ["exhaustive", "ivf"])
def test_n_jobs_zero_is_refused_clearly_before_fit_sets_anything(stage1):
    db, q = _data(12, "additive", seed=4)
    est = TwoStageRetriever(30, K_NEIGHBORS, stage1=stage1, n_jobs=0)
    with pytest.raises(ValueError, match=r"n_jobs=0 .*pass n_jobs=1"):
        est.fit(db)
    with pytest.raises(NotFittedError):
        est.kneighbors(q)
    # set after a fit: the search says the same, and leaves the index usable
    est.set_params(n_jobs=None).fit(db)
    ref = est.kneighbors(q)
    est.set_params(n_jobs=0)
    with pytest.raises(ValueError, match=r"n_jobs=0 .*pass n_jobs=1"):
        est.kneighbors(q)
    est.set_params(n_jobs=-1)
    np.testing.assert_array_equal(est.kneighbors(q)[1], ref[1])


@pytest.mark.parametrize("first", ["unfitted", "array", "codes"])
@pytest.mark.parametrize("second", ["array", "codes"])
def test_a_failed_fit_leaves_the_retriever_as_it_was(first, second):
    # every check of fit (here y's length) runs before anything is set: a
    # failed refit keeps the previous index whole, a failed first fit
    # leaves the estimator unfitted
    rng = np.random.RandomState(0)
    X, y = rng.randn(30, 5), rng.randint(3, size=30)
    db, q = _data(12, "additive", seed=4)
    est = TwoStageRetriever(n_neighbors=3)
    if first == "array":
        est.fit(X, y)
    elif first == "codes":
        est.fit(db)
    before = dict(vars(est))
    bad = rng.randn(30, 7) if second == "array" else db
    with pytest.raises(ValueError, match="one row per indexed item"):
        est.fit(bad, y[:3])
    assert vars(est).keys() == before.keys()
    assert all(vars(est)[k] is v for k, v in before.items())
    if first == "unfitted":
        with pytest.raises(NotFittedError):
            est.kneighbors(X[:2])
    elif first == "array":
        assert est.n_features_in_ == 5
        assert est.kneighbors(X[:2], return_distance=False).shape == (2, 3)
    else:
        assert not hasattr(est, "n_features_in_")
        assert est.kneighbors(q, return_distance=False).shape == (len(q), 3)


def test_the_index_does_not_share_the_callers_embeddings():
    rng = np.random.RandomState(1)
    X = rng.randn(20, 4).astype(np.float32)
    queries = X[:3].copy()
    est = TwoStageRetriever(n_neighbors=5).fit(X)
    ref = est.kneighbors(queries)
    X[:] = rng.randn(20, 4)  # the caller reuses its array
    X[0, 0] = np.nan
    got = est.kneighbors(queries)
    np.testing.assert_array_equal(got[1], ref[1])
    np.testing.assert_array_equal(got[0], ref[0])


def test_float64_rows_below_float32_are_refused():
    # float64 values all below float32's smallest number would be rows of
    # zeros (every cosine alike): refused, as values beyond its range are
    X = np.random.RandomState(2).randn(10, 4)
    X[3] *= 1e-50
    with pytest.raises(ValueError, match="below float32's smallest number"):
        TwoStageRetriever(n_neighbors=3).fit(X)
    est = TwoStageRetriever(n_neighbors=3).fit(X[[0, 1, 2, 4, 5]])
    with pytest.raises(ValueError, match="below float32's smallest number"):
        est.kneighbors(X[[3]])


def test_stage_options_are_checked_only_where_they_are_used():
    # n_substrings is used by MIH (stage1 "mih" or "auto") and nlist by the
    # lists built on bits: neither refuses a fit that does not use it
    db, q = _data(40, "additive", seed=4)  # one substring of 40 bits: too wide
    TwoStageRetriever(n_neighbors=3, stage1="exhaustive", n_substrings=1).fit(db)
    with pytest.raises(ValueError, match="n_substrings"):
        TwoStageRetriever(n_neighbors=3, stage1="mih", n_substrings=1).fit(db)
    X = np.random.RandomState(0).randn(10, 4)
    TwoStageRetriever(n_neighbors=3, stage1="ivf", nlist=50).fit(X)
    with pytest.raises(ValueError, match="nlist"):
        TwoStageRetriever(n_neighbors=3, stage1="ivf", nlist=50).fit(db[:10])


@pytest.mark.parametrize("factor", [1e20, 1e30, 1e-20, 1e-30])
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_exact_cosine_search_is_scale_free_at_any_finite_magnitude(factor, backend):
    # float32 squares overflow past ~1e19 and vanish below ~1e-19: the norms
    # were inf (every cosine 0) or 0, and the neighbours arbitrary
    rng = np.random.RandomState(3)
    X = rng.randn(200, 12).astype(np.float32)
    Q = rng.randn(15, 12).astype(np.float32)
    X[7] = 0.0  # a zero row keeps cosine 0 with everything
    ref = TwoStageRetriever(n_neighbors=6, backend=backend).fit(X).kneighbors(Q)
    big = TwoStageRetriever(n_neighbors=6, backend=backend).fit(X * np.float32(factor))
    dist, idx = big.kneighbors(Q * np.float32(factor))
    np.testing.assert_array_equal(idx, ref[1])
    np.testing.assert_allclose(dist, ref[0], rtol=1e-5, atol=1e-6)
    assert np.isfinite(dist).all()


def test_plain_array_is_exact_cosine_search():
    rng = np.random.RandomState(5)
    X, Q = rng.randn(80, 6), rng.randn(9, 6)
    search = TwoStageRetriever(n_neighbors=5).fit(X)
    assert search.search_plan_ == {"X": "exact"} and search.n_features_in_ == 6
    dist, idx = search.kneighbors(Q)
    cos = (Q / np.linalg.norm(Q, axis=1)[:, None]) @ (
        X / np.linalg.norm(X, axis=1)[:, None]
    ).T
    np.testing.assert_array_equal(idx, np.argsort(-cos, axis=1)[:, :5])
    np.testing.assert_allclose(
        dist, 1 - np.sort(cos, axis=1)[:, ::-1][:, :5], atol=1e-6
    )
    # X=None excludes self
    assert not (
        search.kneighbors(return_distance=False) == np.arange(80)[:, None]
    ).any()


def test_search_plan_adapts_to_the_codes():
    db, q = _data(12, "additive", seed=6)
    assert TwoStageRetriever().fit(db).search_plan_ == {"X": "hamming->aqd"}
    bits_only = TwoStageRetriever(30, 10).fit(db.without("codes", "embedding"))
    assert bits_only.search_plan_ == {"X": "hamming"}
    np.testing.assert_array_equal(
        bits_only.kneighbors(q)[1],
        TwoStageRetriever(30, 10, rerank="none").fit(db).kneighbors(q)[1],
    )
    emb_only = TwoStageRetriever().fit(db.without("codes", "bits"))
    assert emb_only.search_plan_ == {"X": "exact"}
    assert TwoStageRetriever(rerank="exact").fit(db).search_plan_ == {
        "X": "hamming->exact"
    }


def test_padding_bits_are_ignored():
    db, q = _data(12, "additive", seed=7)
    dirty = db.get("X", "bits").copy()
    dirty[:, -1] |= 0x0F  # the 4 padding bits of 12
    dirty_db = CodeSet(
        embedding=db.embedding, bits=dirty, codes=db.codes, n_bits=12,
        codebooks=db.codebooks, codebook_kind="additive",
    )  # fmt: skip
    a = TwoStageRetriever(0, 10).fit(db).kneighbors(q)
    b = TwoStageRetriever(0, 10).fit(dirty_db).kneighbors(q)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0], b[0])


# --------------------------------------------------------------------------- #
# score
# --------------------------------------------------------------------------- #


def _bits_with_popcounts(counts):
    return pack_bits(np.array([[1] * c + [0] * (8 - c) for c in counts]))


def _known_ranking_db():
    """Query bits 0: img ranks items 1, 2, 3, 0, 5, 4; txt ranks 0, 1, 2, 3."""
    img = CodeSet(bits=_bits_with_popcounts([3, 0, 1, 2, 5, 4]), modality="img")
    txt = CodeSet(bits=_bits_with_popcounts([0, 1, 2, 3, 4, 5]), modality="txt")
    y = np.array([0, 1, 0, 1, 1, 0])
    zero = CodeSet(bits=np.zeros((1, 1), dtype=np.uint8))
    query = CodeSet.from_modalities(img=zero, txt=zero)
    return CodeSet.from_modalities(img=img, txt=txt), y, query


def test_score_hand_computed():
    db, y, query = _known_ranking_db()
    search = TwoStageRetriever(n_neighbors=4).fit(db, y)
    # txt->img: items 1, 2, 3, 0 -> relevant to label 1: [1, 0, 1, 0]
    assert search.score(query, [1], direction="txt->img") == pytest.approx(
        (1 / 1 + 2 / 3) / 2
    )
    assert search.score(
        query, [1], direction="txt->img", variant="full"
    ) == pytest.approx((1 + 2 / 3) / 3)
    assert search.score(query, [1], direction="txt->img", metric="precision") == 0.5
    # img->txt: items 0, 1, 2, 3 -> [0, 1, 0, 1]: AP = (1/2 + 2/4) / 2
    assert search.score(query, [1], direction="img->txt") == pytest.approx(0.5)
    # both directions: harmonic mean
    assert search.score(query, [1]) == pytest.approx(harmonic_mean(0.5, 5 / 6))
    assert search.score(query, [1]) == pytest.approx(0.625)
    # K larger than N is clipped; "all" ranks everything
    assert search.score(query, [1], n_neighbors="all", direction="img->txt") == (
        search.score(query, [1], n_neighbors=100, direction="img->txt")
    )
    # deephash drops queries without hits (label 2 has none)
    assert search.score(query, [2], direction="img->txt", variant="deephash") == 0.0


def test_score_single_modality_with_multilabel_y():
    rng = np.random.RandomState(8)
    X = rng.randn(50, 5)
    Y = rng.randint(2, size=(50, 3))
    search = TwoStageRetriever(n_neighbors=5).fit(X, Y)
    idx = search.kneighbors(X[:10], return_distance=False)
    rel = (Y[:10, None, :] & Y[idx]).any(axis=2)
    assert search.score(X[:10], Y[:10], metric="precision") == pytest.approx(rel.mean())


# --------------------------------------------------------------------------- #
# scikit-learn conventions and errors
# --------------------------------------------------------------------------- #


def test_bad_inputs_raise_clear_errors():
    db, q = _data(12, "additive", seed=9)
    search = TwoStageRetriever(n_neighbors=5).fit(db)
    with pytest.raises(NotFittedError):
        TwoStageRetriever().kneighbors(q)
    with pytest.raises(ValueError, match="y must have one row per indexed item"):
        TwoStageRetriever().fit(db, np.zeros(N + 1))
    with pytest.raises(ValueError, match="NaN"):
        TwoStageRetriever().fit(np.full((4, 2), np.nan))
    X = np.random.RandomState(0).randn(10, 3)
    fitted_arr = TwoStageRetriever(n_neighbors=2).fit(X)
    with pytest.raises(ValueError, match="NaN"):
        fitted_arr.kneighbors(np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match="X has 4 features"):
        fitted_arr.kneighbors(np.ones((2, 4)))
    q16 = CodeSet(bits=pack_bits(np.ones((3, 16))), n_bits=16)
    with pytest.raises(ValueError, match="n_bits=16 but the database .* n_bits=12"):
        search.kneighbors(q16)
    rng = np.random.RandomState(0)
    wide = CodeSet(embedding=rng.randn(3, D + 1), bits=q.bits[:3], n_bits=12)
    with pytest.raises(ValueError, match=r"5 dimensions but the codebooks have d=4"):
        search.kneighbors(wide)
    with pytest.raises(ValueError, match="carry no bits"):
        search.kneighbors(q.without("bits"))
    with pytest.raises(ValueError, match="carry no embedding"):
        search.kneighbors(q.without("embedding"))
    with pytest.raises(ValueError, match="0 queries"):
        search.kneighbors(q[:0])
    with pytest.raises(TypeError, match="CodeSet or a 2-D array"):
        search.kneighbors(5)
    with pytest.raises(ValueError, match="pass the queries as X"):
        search.kneighbors()  # AQD needs query embeddings, not indexed
    with pytest.raises(ValueError, match=r"n_neighbors=301 must be <= .* N=300"):
        search.kneighbors(q, n_neighbors=301)
    with pytest.raises(ValueError, match=r"n_neighbors=300 must be <= .* itself"):
        TwoStageRetriever(rerank="none").fit(db).kneighbors(n_neighbors=300)
    with pytest.raises(ValueError, match="n_neighbors must be a positive int"):
        search.kneighbors(q, n_neighbors=0)
    with pytest.raises(ValueError, match="fit with fit\\(X, y\\)"):
        search.score(q, np.zeros(N_QUERIES))
    labelled = TwoStageRetriever(n_neighbors=5).fit(db, np.arange(N) % 3)
    with pytest.raises(ValueError, match="y has 5 rows but X holds 20 queries"):
        labelled.score(q, np.zeros(5))
    with pytest.raises(ValueError, match="rerank='exact' .* has none"):
        TwoStageRetriever(rerank="exact").fit(db.without("embedding"))


@pytest.mark.parametrize(
    "params, match",
    [
        ({"alpha": 1.5}, "'alpha' parameter"),
        ({"alpha": -1}, "'alpha' parameter"),
        ({"n_neighbors": 0}, "'n_neighbors' parameter"),
        ({"rerank": "cosine"}, "'rerank' parameter"),
    ],
)
def test_invalid_parameters(params, match):
    db, _ = _data(8, "product")
    with pytest.raises(InvalidParameterError, match=match):
        TwoStageRetriever(**params).fit(db)


def test_unknown_backend():
    db, _ = _data(8, "product")
    with pytest.raises(ValueError, match="Unknown search backend 'gpu'"):
        TwoStageRetriever(backend="gpu").fit(db)


def test_direction_errors():
    db, _, query = _known_ranking_db()
    search = TwoStageRetriever(n_neighbors=2).fit(db)
    with pytest.raises(ValueError, match=r"pass direction=, one of \['img->img'"):
        search.kneighbors(query)
    with pytest.raises(ValueError, match="Unknown direction 'img->aud'"):
        search.kneighbors(query, direction="img->aud")
    with pytest.raises(ValueError, match="must look like 'img->txt'"):
        search.kneighbors(query, direction="img2txt")
    with pytest.raises(ValueError, match="queries with 'aud'"):
        search.kneighbors(query, direction="aud->txt")
    with pytest.raises(ValueError, match="'aud' is not indexed"):
        search.kneighbors(direction="aud->txt")


def test_query_codes_from_other_codebooks_are_rejected():
    db, q = _data(8, "additive", seed=10)
    search = TwoStageRetriever(20, 5, rerank="hamming-codes").fit(db)
    other = CodeSet(
        bits=q.bits, codes=q.codes, n_bits=8,
        codebooks=db.codebooks + 1, codebook_kind="additive",
    )  # fmt: skip
    with pytest.raises(ValueError, match="other codebooks"):
        search.kneighbors(other)


# --------------------------------------------------------------------------- #
# save / load
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("suffix", ["index.npz", "index_dir"])
def test_save_load_round_trip(tmp_path, suffix):
    rng = np.random.RandomState(11)
    C = _codebooks(rng, "additive")
    db = CodeSet.from_modalities(
        img=_codeset(rng, N, 12, C, "additive"), txt=_codeset(rng, N, 12, C, "additive")
    )
    y = rng.randint(4, size=N)
    search = TwoStageRetriever(0.2, 8, rerank="aqd-l2").fit(db, y)
    path = search.save(tmp_path / suffix)
    mmap = None if suffix.endswith(".npz") else "r"
    loaded = TwoStageRetriever.load(path, mmap_mode=mmap)
    assert loaded.get_params() == search.get_params()
    assert loaded.search_plan_ == search.search_plan_
    if mmap:
        assert isinstance(loaded._index["img"]["bits"], np.memmap)
    q = db[:30]
    for direction in ("img->txt", "txt->img"):
        a = search.kneighbors(q, direction=direction)
        b = loaded.kneighbors(q, direction=direction)
        np.testing.assert_array_equal(a[1], b[1])
        np.testing.assert_array_equal(a[0], b[0])
    assert loaded.score(q, y[:30]) == search.score(q, y[:30])


def test_save_load_plain_array(tmp_path):
    X = np.random.RandomState(12).randn(30, 4)
    search = TwoStageRetriever(n_neighbors=4).fit(X)
    loaded = TwoStageRetriever.load(search.save(tmp_path / "a.npz"))
    assert loaded.n_features_in_ == 4
    np.testing.assert_array_equal(loaded.kneighbors()[1], search.kneighbors()[1])


@pytest.mark.parametrize("kind", ["additive", "product"])
@pytest.mark.parametrize("rerank", ["aqd", "aqd-l2", "exact"])
@pytest.mark.parametrize("with_bits", [True, False])
def test_distances_do_not_depend_on_how_queries_are_batched(kind, rerank, with_bits):
    """The same query gets the same bits whatever chunk it is searched in:
    n_jobs, one query at a time, or among many (a BLAS product over a whole
    chunk rounds differently with the chunk's size)."""
    from skhash.quantization import AdditiveQuantizer, ProductQuantizer

    rng = np.random.RandomState(0)
    E = rng.randn(600, 32).astype(np.float32)
    quantizer = AdditiveQuantizer if kind == "additive" else ProductQuantizer
    Q = quantizer(4, 16, random_state=0).fit(E)
    cs = CodeSet(
        embedding=E,
        bits=pack_bits(E) if with_bits else None,
        codes=Q.transform(E),
        n_bits=32 if with_bits else None,
        codebooks=Q.codebooks_,
        codebook_kind=kind,
    )
    r = TwoStageRetriever(alpha=100, n_neighbors=10, rerank=rerank).fit(cs)
    d_all, i_all = r.kneighbors(cs[:300])
    d_two, i_two = r.set_params(n_jobs=2).kneighbors(cs[:300])
    one = [r.set_params(n_jobs=1).kneighbors(cs[i : i + 1]) for i in range(0, 300, 37)]
    np.testing.assert_array_equal(d_all, d_two)
    np.testing.assert_array_equal(i_all, i_two)
    np.testing.assert_array_equal(d_all[::37], np.concatenate([d for d, _ in one]))
    np.testing.assert_array_equal(i_all[::37], np.concatenate([i for _, i in one]))
