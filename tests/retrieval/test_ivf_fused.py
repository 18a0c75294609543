"""The fused scan of lists of codes (``_ivf_scan``: one compiled call per chunk).

What must hold: wherever it applies, the results are those of the separate
kernels, bit for bit (rankings, grouping, exclusions, code widths, table
padding, several blocks); it runs where it should and steps aside where it
does not apply (numpy backend, product codebooks' block tables, scaled
tables), and a lazy backend answers while it compiles.
"""

import numpy as np
import pytest

from skhash import CodeSet, pack_bits
from skhash.quantization import encode
from skhash.retrieval import TwoStageRetriever, _adc_scan, _ivf_kernels
from skhash.retrieval import _ivf as ivf_module


def _data(n_books, n_words, n=1300, d=16, seed=0):
    rng = np.random.RandomState(seed)
    C = (0.5 * rng.randn(n_books, n_words, d)).astype(np.float32)
    centers = rng.randn(20, d)
    emb = (centers[rng.randint(20, size=n)] + 0.4 * rng.randn(n, d)).astype(np.float32)
    return CodeSet(
        embedding=emb,
        bits=pack_bits(emb),
        n_bits=d,
        codes=encode(emb, C, kind="additive"),
        codebooks=C,
        codebook_kind="additive",
    )


@pytest.fixture
def calls(monkeypatch):
    """Counts the fused kernel's calls."""
    seen = []
    kernel = _ivf_kernels._ivf_scan

    def spy(*args):
        seen.append(len(args[0]))
        return kernel(*args)

    monkeypatch.setattr(_ivf_kernels, "_ivf_scan", spy)
    return seen


def _numba_ivf(**params):
    return TwoStageRetriever(stage1="ivf", backend="numba", random_state=0, **params)


def _unfused(est, *args, **kwargs):
    orig = ivf_module.fused_scan
    ivf_module.fused_scan = lambda *a, **k: None
    try:
        return est.kneighbors(*args, **kwargs)
    finally:
        ivf_module.fused_scan = orig


# (M, K): uint8 codes read 8 to a word (the list keys; and the scan's where
# K = 256); M not a multiple of 8; K below the tables' tile width (padding
# dropped); uint16 codes
@pytest.mark.parametrize("n_books,n_words", [(8, 32), (8, 256), (3, 16), (2, 300)])
@pytest.mark.parametrize("rerank", ["aqd", "aqd-l2"])
@pytest.mark.parametrize("groups", [None, 2])
def test_fused_scan_is_the_separate_kernels(n_books, n_words, rerank, groups, calls):
    both = _data(n_books, n_words)
    db, q = both[:1200], both[1200:]  # 100 queries: several blocks
    est = _numba_ivf(
        alpha=60, n_neighbors=10, nlist=25, nprobe=2, rerank=rerank,
        quantizer_nprobe=groups,
    ).fit(db)  # fmt: skip
    for n_jobs in (None, 2):
        est.set_params(n_jobs=n_jobs)
        del calls[:]
        got = est.kneighbors(q)
        assert sum(calls) == len(q)  # every query went through the fused call
        want = _unfused(est, q)
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(got[0], want[0])
    # exclusions (kneighbors(X=None) with embeddings indexed): each query
    # skips the row given for it
    from skhash.retrieval import get_backend

    backend = get_backend("numba")
    emb = q.get("X", "embedding")
    parts = {"embedding": emb, "bits": q.get("X", "bits")}
    rows = np.where(np.arange(len(q)) % 2 == 0, want[1][:, 0], -1)
    for k, n_short in ((10, 61), (1, 1), (7, 400)):
        fused = ivf_module.fused_scan(est, backend, parts, rows, "X", k, n_short)
        scan, *got = fused
        for sl in (slice(0, 33), slice(33, 40), slice(40, len(q))):  # any chunks
            scan(sl)
        want_ex = ivf_module.search(
            est, backend, parts, rows, "X", k, n_short, est._tables(parts, "ip")
        )
        np.testing.assert_array_equal(got[1], want_ex[1])
        np.testing.assert_array_equal(got[0], want_ex[0])
        assert not np.any(got[1] == rows[:, None])


def test_fused_scan_steps_aside_where_it_does_not_apply(calls):
    both = _data(4, 16)
    db, q = both[:1200], both[1200:]
    params = dict(alpha=60, n_neighbors=10, stage1="ivf", nlist=25, random_state=0)
    ref = TwoStageRetriever(backend="numba", **params).fit(db).kneighbors(q)
    del calls[:]
    # the numpy backend runs its own reference, the same results
    got = TwoStageRetriever(backend="numpy", **params).fit(db).kneighbors(q)
    assert calls == []
    np.testing.assert_array_equal(got[1], ref[1])
    np.testing.assert_array_equal(got[0], ref[0])
    # queries of extreme magnitude get scaled tables: the separate kernels
    est = TwoStageRetriever(backend="numba", **params).fit(db)
    big = CodeSet(
        embedding=q.get("X", "embedding") * np.float32(1e30),
        bits=q.get("X", "bits"),
        n_bits=q.n_bits,
    )
    scaled = est.kneighbors(big)
    assert calls == []
    np.testing.assert_array_equal(scaled[1], ref[1])


def test_product_codebooks_keep_the_separate_kernels(calls):
    rng = np.random.RandomState(1)
    emb = rng.randn(1300, 16).astype(np.float32)
    C = (0.5 * rng.randn(4, 16, 16)).astype(np.float32)
    for m in range(4):  # block-diagonal: a product quantizer
        C[m, :, : 4 * m] = 0
        C[m, :, 4 * m + 4 :] = 0
    both = CodeSet(
        embedding=emb,
        bits=pack_bits(emb),
        n_bits=16,
        codes=encode(emb, C, kind="product"),
        codebooks=C,
        codebook_kind="product",
    )
    est = TwoStageRetriever(
        alpha=60,
        n_neighbors=10,
        stage1="ivf",
        nlist=25,
        rerank="aqd-l2",
        random_state=0,
    ).fit(both[:1200])
    got = est.kneighbors(both[1200:])
    assert calls == []
    want = est.set_params(backend="numpy").kneighbors(both[1200:])
    np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("n", [1, 7, 199, 257, 1999, 2000, 2001, 5003, 20011])
@pytest.mark.parametrize("k", [1, 3, 50])
@pytest.mark.parametrize("values", ["distinct", "few", "one", "negative", "sampled"])
def test_selection_is_the_k_best_by_distance_then_id(n, k, values):
    # the scan's selection (a sampled threshold from n >= 40 max(k, 50) on,
    # one histogram below) against a full sort by (distance, id), on
    # distinct distances, a few repeated ones (learned codes), a single one
    # and negative ones, with ids in no particular order; "sampled": the
    # smallest distances sit exactly at the sampled positions (every
    # floor(sqrt(n / k))-th), so the threshold must keep k of them itself
    from skhash.retrieval._adc_scan import _select

    if k > n:
        pytest.skip("the scan selects at most the items it has")
    rng = np.random.RandomState(n + 7 * k)
    sampled = 1e6 + rng.rand(n)
    stride = max(2, int(np.sqrt(n / k)))
    sampled[::stride] = rng.permutation(len(sampled[::stride]))
    dist = {
        "distinct": rng.randn(n),
        "few": rng.randint(4, size=n).astype(np.float64),
        "one": np.full(n, 2.5),
        "negative": -np.abs(rng.standard_cauchy(n)),
        "sampled": sampled,
    }[values]
    ids = rng.permutation(10 * n)[:n].astype(np.int64)
    order = np.lexsort((ids, dist))[:k]
    bd, bi = np.empty(n), np.empty(n, np.int64)
    _select(dist.copy(), ids.copy(), n, k, np.empty(256, np.int64), bd, bi)
    np.testing.assert_array_equal(bi[:k], ids[order])
    np.testing.assert_array_equal(bd[:k], dist[order])


@pytest.mark.parametrize("read", ["bytes", "words"])
@pytest.mark.parametrize("mode", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 3, 50, 200])
@pytest.mark.parametrize("n_codes", [3, 40, 5000])
def test_adc_scan_is_the_k_best_of_every_scanned_item(read, mode, k, n_codes):
    # _ivf_adc keeps its candidates in a bounded buffer, narrowed to the k
    # best whenever it fills, with their k-th distance as a threshold: the
    # result must still be the k best of all the probed lists' items by
    # (distance, id), on up to 6,000 items a query (several narrowings), with
    # many items sharing a code (ties at the threshold: n_codes=3 or 40),
    # the excluded item skipped, lists of every length modulo 4; and on
    # queries whose lists are few enough to be ranked at once; codes read
    # one at a time, or 8 to a word (16 codebooks of 256 words: two words)
    from skhash.retrieval._adc_scan import _ivf_adc, scan_words

    rng = np.random.RandomState(k + 11 * mode + n_codes)
    n_books, n_words = (4, 16) if read == "bytes" else (16, 256)
    nlist, n_q = 16, 6
    sizes = rng.randint(400, 900, size=nlist)
    sizes[:4] = [0, 1, 2, 3]
    offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    n = int(offsets[-1])
    pool = rng.randint(n_words, size=(n_codes, n_books))
    codes = pool[rng.randint(n_codes, size=n)].astype(np.uint8)
    ids = rng.permutation(n).astype(np.int32)
    # luts on a coarse grid: equal sums from different codes as well
    luts = (rng.randint(-8, 8, size=(n_q, n_books, n_words)) / 4).astype(np.float32)
    sq = (rng.randint(0, 16, size=n) / 2).astype(np.float32)
    q_sq = rng.randint(0, 40, size=n_q).astype(np.float64)
    # query 0 probes every list, query 1 the four shortest and one more
    probes = [rng.permutation(nlist), rng.permutation([0, 1, 2, 3, 4])]
    probes += [rng.permutation(nlist)[: rng.randint(1, nlist + 1)] for _ in range(4)]
    lists = np.concatenate(probes).astype(np.int64)
    ptr = np.concatenate(([0], np.cumsum([len(p) for p in probes])))
    exclude = np.where(rng.rand(n_q) < 0.5, rng.randint(n, size=n_q), -1)
    exclude = exclude.astype(np.int64)
    out_idx = np.empty((n_q, k), np.int64)
    out_dist = np.empty((n_q, k), np.float64)
    scanned = scan_words(codes, n_words)
    assert scanned.dtype == (np.uint64 if read == "words" else np.uint8)
    _ivf_adc(luts, ptr, lists, offsets, ids, scanned, mode, q_sq, sq, exclude,
             k, out_idx, out_dist)  # fmt: skip
    totals = [sizes[lists[ptr[q] : ptr[q + 1]]].sum() for q in range(n_q)]
    assert max(totals) > 2 * _adc_scan._ADC_WHOLE  # narrowed more than once
    assert min(totals) <= _adc_scan._ADC_WHOLE  # and ranked at once
    for q in range(n_q):
        probed = lists[ptr[q] : ptr[q + 1]]
        rows = np.concatenate([np.arange(offsets[j], offsets[j + 1]) for j in probed])
        rows = rows.astype(np.int64)
        s = np.zeros(len(rows), np.float32)
        for m in range(n_books):
            s += luts[q, m, codes[rows, m]]
        item = ids[rows].astype(np.int64)
        s64 = s.astype(np.float64)
        d = {0: -s64, 1: np.maximum(q_sq[q] - 2 * s64 + sq[item], 0.0),
             2: np.maximum(q_sq[q] + s64, 0.0)}[mode]  # fmt: skip
        keep = item != exclude[q]
        d, item = d[keep], item[keep]
        order = np.lexsort((item, d))[:k]
        m = len(order)
        np.testing.assert_array_equal(out_idx[q, :m], item[order])
        np.testing.assert_array_equal(out_dist[q, :m], d[order])
        assert (out_idx[q, m:] == -1).all() and np.isinf(out_dist[q, m:]).all()


@pytest.mark.parametrize("n_books", [8, 16])
@pytest.mark.parametrize("rerank", ["aqd", "aqd-l2"])
def test_scan_reads_codes_as_words_with_the_same_results(n_books, rerank, monkeypatch):
    # uint8 codes of 256-word codebooks, 8 or 16 of them, are scanned 8 to a
    # uint64 word (one or two words an item): the same neighbours and the
    # same distances as scanning them one code at a time, fused or not
    both = _data(n_books, 256, n=2600)
    db, q = both[:2500], both[2500:]
    est = _numba_ivf(
        alpha=300, n_neighbors=20, nlist=16, nprobe=3, rerank=rerank
    ).fit(db)  # fmt: skip
    read = []
    scan_words = _adc_scan.scan_words

    def spy(codes, n_words):
        out = scan_words(codes, n_words)
        read.append(out.dtype)
        return out

    monkeypatch.setattr(_adc_scan, "scan_words", spy)
    fused, unfused = est.kneighbors(q), _unfused(est, q)
    assert read == [np.dtype(np.uint64)] * 2  # both scans read words
    monkeypatch.setattr(_adc_scan, "scan_words", lambda codes, n_words: codes)
    for got in (fused, unfused):
        want = est.kneighbors(q)
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(got[0], want[0])
