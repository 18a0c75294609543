"""Property tests (hypothesis) of the ranking metrics and the retriever.

The retriever data are small integers (codebooks, query embeddings), so every
AQD and Hamming distance is computed exactly and ties are frequent: the
expected rankings are plain ``np.lexsort`` references with ties broken by
lower database index.
"""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skhash import CodeSet, TwoStageRetriever, pack_bits, unpack_bits
from skhash.metrics import mean_average_precision, precision_at_k
from skhash.quantization import aqd, product_blocks

SETTINGS = settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
VARIANTS = ["djsrh", "deephash", "full"]


# --------------------------------------------------------------------------- #
# metrics
# --------------------------------------------------------------------------- #


@st.composite
def relevance_and_scores(draw, distinct=False):
    n_q = draw(st.integers(1, 5))
    n_db = draw(st.integers(1, 12))
    rng = np.random.RandomState(draw(st.integers(0, 2**31 - 1)))
    y_true = rng.rand(n_q, n_db) < draw(st.sampled_from([0.0, 0.3, 0.7, 1.0]))
    if distinct:
        y_score = np.array([rng.permutation(n_db) for _ in range(n_q)], float)
    else:  # few values: many ties
        y_score = rng.randint(0, draw(st.integers(1, 4)), size=(n_q, n_db)).astype(
            float
        )
    k = draw(st.one_of(st.none(), st.integers(1, 15)))
    return y_true, y_score, k


@SETTINGS
@given(
    relevance_and_scores(),
    st.sampled_from(VARIANTS),
    st.sampled_from(["index", "average"]),
)
def test_map_and_precision_in_unit_interval(data, variant, ties):
    y_true, y_score, k = data
    value = mean_average_precision(y_true, y_score, k=k, variant=variant, ties=ties)
    assert 0.0 <= value <= 1.0 + 1e-12
    assert 0.0 <= precision_at_k(y_true, y_score, k=k, ties=ties) <= 1.0 + 1e-12


@SETTINGS
@given(relevance_and_scores(), st.sampled_from(VARIANTS), st.integers(0, 2**31 - 1))
def test_map_ties_average_invariant_to_database_order(data, variant, seed):
    """ties="average" scores ties by expectation: any database order, same MAP."""
    y_true, y_score, k = data
    perm = np.random.RandomState(seed).permutation(y_true.shape[1])
    a = mean_average_precision(y_true, y_score, k=k, variant=variant, ties="average")
    b = mean_average_precision(
        y_true[:, perm], y_score[:, perm], k=k, variant=variant, ties="average"
    )
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@SETTINGS
@given(
    relevance_and_scores(distinct=True),
    st.sampled_from(VARIANTS),
    st.sampled_from(["index", "average"]),
    st.integers(0, 2**31 - 1),
)
def test_map_distinct_scores_invariant_to_database_order(data, variant, ties, seed):
    y_true, y_score, k = data
    perm = np.random.RandomState(seed).permutation(y_true.shape[1])
    a = mean_average_precision(y_true, y_score, k=k, variant=variant, ties=ties)
    b = mean_average_precision(
        y_true[:, perm], y_score[:, perm], k=k, variant=variant, ties=ties
    )
    assert a == b


# --------------------------------------------------------------------------- #
# retriever
# --------------------------------------------------------------------------- #

M, K, D = 2, 4, 4


@st.composite
def coded(draw, n_min=2):
    """(database CodeSet, query CodeSet, codebooks) of small integers."""
    rng = np.random.RandomState(draw(st.integers(0, 2**31 - 1)))
    n = draw(st.integers(n_min, 30))
    n_q = draw(st.integers(1, 4))
    n_bits = draw(st.sampled_from([4, 8, 12]))
    kind = draw(st.sampled_from(["additive", "product"]))
    C = rng.randint(-3, 4, size=(M, K, D)).astype(np.float32)
    if kind == "product":
        for m, block in enumerate(product_blocks(D, M)):
            mask = np.ones(D, bool)
            mask[block] = False
            C[m][:, mask] = 0.0

    def codeset(rows):
        return CodeSet(
            embedding=rng.randint(-2, 3, size=(rows, D)).astype(np.float32),
            bits=pack_bits(rng.randint(2, size=(rows, n_bits))),
            codes=rng.randint(K, size=(rows, M)),
            n_bits=n_bits,
            codebooks=C,
            codebook_kind=kind,
        )

    return codeset(n), codeset(n_q), C


def _hamming(q, db):
    a = unpack_bits(q.bits, q.n_bits)
    b = unpack_bits(db.bits, db.n_bits)
    return (a[:, None, :] != b[None, :, :]).sum(axis=2).astype(np.float64)


def _reference(dist, k):
    """First k of each row by (distance, database index)."""
    idx = np.array([np.lexsort((np.arange(len(row)), row))[:k] for row in dist])
    return np.take_along_axis(dist, idx, axis=1), idx


def _search(db, q, k, **params):
    return TwoStageRetriever(n_neighbors=k, **params).fit(db).kneighbors(q)


@SETTINGS
@given(coded(), st.sampled_from(["aqd", "aqd-l2"]), st.data())
def test_alpha_one_is_the_full_aqd_ranking(data, rerank, draw):
    db, q, C = data
    k = draw.draw(st.integers(1, len(db)))
    scores = aqd(q.embedding, db.codes, C, metric="ip" if rerank == "aqd" else "l2")
    dist = -scores if rerank == "aqd" else scores
    ref_d, ref_i = _reference(dist.astype(np.float64), k)
    got_d, got_i = _search(db, q, k, alpha=1.0, rerank=rerank)
    np.testing.assert_array_equal(got_i, ref_i)
    np.testing.assert_array_equal(got_d, ref_d)


@SETTINGS
@given(
    coded(),
    st.sampled_from([0, 0.0, 1e-9]),
    st.sampled_from(["aqd", "none"]),
    st.data(),
)
def test_alpha_zero_is_the_hamming_ranking(data, alpha, rerank, draw):
    db, q, _ = data
    k = draw.draw(st.integers(1, len(db)))
    ref_d, ref_i = _reference(_hamming(q, db), k)
    got_d, got_i = _search(db, q, k, alpha=alpha, rerank=rerank)
    np.testing.assert_array_equal(got_i, ref_i)
    np.testing.assert_array_equal(got_d, ref_d)


def _permuted(cs, perm):
    return cs[perm]


@SETTINGS
@given(
    coded(),
    st.sampled_from([(1.0, "aqd"), (1.0, "aqd-l2"), (0, "none")]),
    st.integers(0, 2**31 - 1),
)
def test_permuting_the_database_permutes_the_indices(data, setting, seed):
    """Same distances; the items at each distance are the same items (with
    ties, their order follows the new indices)."""
    db, q, _ = data
    alpha, rerank = setting
    n = len(db)
    perm = np.random.RandomState(seed).permutation(n)
    d0, i0 = _search(db, q, n, alpha=alpha, rerank=rerank)
    d1, i1 = _search(_permuted(db, perm), q, n, alpha=alpha, rerank=rerank)
    np.testing.assert_array_equal(d0, d1)
    for row in range(len(q)):
        for value in np.unique(d0[row]):
            same = d0[row] == value
            assert set(i0[row][same]) == set(perm[i1[row][same]])


@SETTINGS
@given(
    coded(n_min=3),
    st.sampled_from([0.0, 1.0]),
    st.sampled_from(["aqd", "hamming-codes", "none"]),
    st.data(),
)
def test_duplicated_items_tie_and_break_by_index(data, alpha, rerank, draw):
    db, q, _ = data
    n = len(db)
    j = draw.draw(st.integers(0, n - 1))
    at = draw.draw(st.integers(j + 1, n))  # where the copy of item j goes
    order = np.concatenate([np.arange(at), [j], np.arange(at, n)])
    dup = db[order]  # item j at rows j and `at`
    dist, idx = _search(dup, q, n + 1, alpha=alpha, rerank=rerank)
    for row in range(len(q)):
        pos_j = int(np.flatnonzero(idx[row] == j)[0])
        pos_copy = int(np.flatnonzero(idx[row] == at)[0])
        assert dist[row, pos_j] == dist[row, pos_copy]
        assert pos_j < pos_copy
        # every run of equal distances is in increasing index order
        ties = dist[row, 1:] == dist[row, :-1]
        assert (idx[row, 1:][ties] > idx[row, :-1][ties]).all()


@SETTINGS
@given(
    coded(),
    st.integers(0, 40),
    st.sampled_from(["aqd", "aqd-l2", "hamming-codes", "none"]),
    st.data(),
)
def test_two_stage_rows_sorted_within_each_stage(data, L, rerank, draw):
    """Any alpha: the re-ranked head and the Hamming tail are each sorted by
    (distance, index), and the head holds the L best of the Hamming order."""
    db, q, _ = data
    n = len(db)
    k = draw.draw(st.integers(1, n))
    dist, idx = _search(db, q, k, alpha=L, rerank=rerank)
    L_eff = min(L, n)
    ham_d, ham_i = _reference(_hamming(q, db), n)
    for row in range(len(q)):
        for part in (slice(0, min(L_eff, k)), slice(min(L_eff, k), k)):
            d, i = dist[row, part], idx[row, part]
            assert (np.diff(d) >= 0).all()
            ties = d[1:] == d[:-1]
            assert (i[1:][ties] > i[:-1][ties]).all()
        head = set(idx[row, : min(L_eff, k)])
        assert head <= set(ham_i[row, :L_eff])
        assert len(set(idx[row])) == k  # no item twice
