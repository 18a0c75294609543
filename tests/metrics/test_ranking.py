"""Tests for skhash.metrics._ranking: relevance, AP/MAP variants, ties, PR."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.metrics import average_precision_score
from sklearn.utils._param_validation import InvalidParameterError

from skhash.metrics import (
    _chunking,
    average_precision_from_ranking,
    harmonic_mean,
    mean_average_precision,
    n_relevant,
    precision_at_k,
    precision_at_top_r,
    precision_recall_hamming,
    ranked_relevance,
    relevance,
)

VARIANTS = ["djsrh", "deephash", "full"]


@pytest.fixture
def small_chunks(monkeypatch):
    """Force the chunked code paths to use many tiny chunks."""
    monkeypatch.setattr(_chunking, "_CHUNK_ELEMENTS", 7)


def _random_problem(seed, n_queries=7, n_database=15, n_levels=None):
    rng = np.random.RandomState(seed)
    y_true = rng.rand(n_queries, n_database) < 0.35
    if n_levels is None:
        y_score = rng.randn(n_queries, n_database)
    else:  # few distinct values: many ties, like Hamming distances
        y_score = rng.randint(0, n_levels, size=(n_queries, n_database)).astype(float)
    return y_true, y_score


# ---------------------------------------------------------------------------
# relevance, ranked_relevance, n_relevant
# ---------------------------------------------------------------------------


def test_relevance_class_ids_and_indicator_agree():
    y_query = np.array([3, 7, 3])
    y_database = np.array([7, 3, 5, 3])
    expected = np.array(
        [
            [False, True, False, True],  # class 3
            [True, False, False, False],  # class 7
            [False, True, False, True],  # class 3
        ]
    )
    assert_array_equal(relevance(y_query, y_database), expected)
    # The same labels as one-hot indicator columns (3, 5, 7).
    classes = np.array([3, 5, 7])
    onehot_q = (y_query[:, None] == classes).astype(int)
    onehot_d = (y_database[:, None] == classes).astype(int)
    assert_array_equal(relevance(onehot_q, onehot_d), expected)
    assert_array_equal(n_relevant(y_query, y_database), [2, 1, 2])
    assert_array_equal(n_relevant(onehot_q, onehot_d), [2, 1, 2])
    indices = np.array([[1, 0], [0, 3], [3, 2]])
    assert_array_equal(
        ranked_relevance(y_query, y_database, indices),
        ranked_relevance(onehot_q, onehot_d, indices),
    )


def test_relevance_multilabel_shares_any_label():
    y_query = [[1, 1, 0], [0, 0, 1]]
    y_database = [[0, 1, 0], [0, 0, 1], [1, 0, 1], [0, 0, 0]]
    expected = [[True, False, True, False], [False, True, True, False]]
    assert_array_equal(relevance(y_query, y_database), expected)
    assert relevance(y_query, y_database).dtype == bool
    assert_array_equal(n_relevant(y_query, y_database), [2, 2])
    assert n_relevant(y_query, y_database).dtype == np.int64


@pytest.mark.parametrize("multilabel", [False, True])
def test_ranked_relevance_and_n_relevant_match_full_matrix(multilabel, small_chunks):
    rng = np.random.RandomState(0)
    if multilabel:
        y_query = rng.rand(9, 4) < 0.3
        y_database = rng.rand(20, 4) < 0.3
    else:
        y_query = rng.randint(-2, 3, size=9)  # any ints, negative included
        y_database = rng.randint(-2, 3, size=20)
    full = relevance(y_query, y_database)
    indices = rng.randint(0, 20, size=(9, 6))
    assert_array_equal(
        ranked_relevance(y_query, y_database, indices),
        np.take_along_axis(full, indices, axis=1),
    )
    assert_array_equal(n_relevant(y_query, y_database), full.sum(axis=1))


def test_class_ids_absent_from_database_have_no_relevant_item():
    assert_array_equal(n_relevant([9, 1], [1, 1, 2]), [0, 2])


# ---------------------------------------------------------------------------
# average_precision_from_ranking: hand-computed variants
# ---------------------------------------------------------------------------


def test_average_precision_variants_by_hand():
    rel = [[1, 0, 1, 0, 1], [0, 0, 0, 0, 0]]
    # Query 0: hits at ranks 1, 3, 5 with P = 1, 2/3, 3/5; sum = 34/15.
    # djsrh: 34/15 / 3 hits = 34/45; full: 34/15 / 4 relevant = 17/30.
    # Query 1: no hit: djsrh 0, deephash NaN (dropped), full 0.
    assert_allclose(average_precision_from_ranking(rel), [34 / 45, 0.0])
    deephash = average_precision_from_ranking(rel, variant="deephash")
    assert_allclose(deephash[0], 34 / 45)
    assert np.isnan(deephash[1])
    assert_allclose(
        average_precision_from_ranking(rel, [4, 2], variant="full"), [17 / 30, 0.0]
    )


def test_average_precision_full_needs_consistent_n_relevant():
    with pytest.raises(ValueError, match="n_relevant is required"):
        average_precision_from_ranking([[1, 0]], variant="full")
    with pytest.raises(ValueError, match=r"n_relevant\[0\]=1 is smaller than the 2"):
        average_precision_from_ranking([[1, 1]], [1], variant="full")
    with pytest.raises(ValueError, match="n_relevant must have shape"):
        average_precision_from_ranking([[1, 1]], [3, 3], variant="full")
    with pytest.raises(ValueError, match="must contain only 0 and 1"):
        average_precision_from_ranking([[2, 0]])


# ---------------------------------------------------------------------------
# mean_average_precision: hand-computed values
# ---------------------------------------------------------------------------


def test_map_variants_with_zero_hit_query_by_hand():
    y_true = [[1, 0, 1, 0, 1, 1], [0, 0, 0, 0, 0, 1]]
    y_score = [[6, 5, 4, 3, 2, 1], [6, 5, 4, 3, 2, 1]]
    # Top 5 of query 0: rel 1,0,1,0,1 -> sum P(r) rel(r) = 34/15, 3 hits, 4 rel.
    # Query 1 has its only relevant item at rank 6, outside the top 5.
    assert_allclose(mean_average_precision(y_true, y_score, k=5), (34 / 45 + 0) / 2)
    assert_allclose(
        mean_average_precision(y_true, y_score, k=5, variant="deephash"), 34 / 45
    )
    assert_allclose(
        mean_average_precision(y_true, y_score, k=5, variant="full"),
        (17 / 30 + 0) / 2,
    )
    # Full ranking: query 0 adds P(6) = 4/6 -> (34/15 + 2/3) / 4 = 11/15;
    # query 1 has one hit at rank 6: P = 1/6.
    assert_allclose(
        mean_average_precision(y_true, y_score, k=None, variant="full"),
        (11 / 15 + 1 / 6) / 2,
    )


def test_map_deephash_all_queries_without_hits_is_zero():
    y_true = [[0, 0, 1], [0, 0, 1]]
    y_score = [[3, 2, 1], [3, 2, 1]]
    assert mean_average_precision(y_true, y_score, k=2, variant="deephash") == 0.0
    assert mean_average_precision(y_true, y_score, k=2, variant="djsrh") == 0.0


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("ties", ["index", "average"])
def test_k_larger_than_database_is_whole_database(variant, ties):
    y_true, y_score = _random_problem(1, n_levels=3)
    whole = mean_average_precision(y_true, y_score, k=None, variant=variant, ties=ties)
    n_database = y_true.shape[1]
    for k in (n_database, n_database + 1, 10**6):
        assert_allclose(
            mean_average_precision(y_true, y_score, k=k, variant=variant, ties=ties),
            whole,
        )


def test_map_ties_by_hand():
    y_true = [[1, 0, 1, 0]]
    y_score = [[0.9, 0.9, 0.5, 0.5]]
    # ties="index": order 0, 1, 2, 3 -> rel 1, 0, 1, 0.
    # k=2: djsrh = 1/1 = 1; full = 1/2.
    assert mean_average_precision(y_true, y_score, k=2) == 1.0
    assert mean_average_precision(y_true, y_score, k=2, variant="full") == 0.5
    # ties="average", k=2: the first tie group {0, 1} holds one relevant item.
    # E[rel(1) hits(1)]/1 = 1/2, E[rel(2) hits(2)]/2 = (1/2)/2 -> numerator 3/4;
    # E[R_2] = 1 (the group lies inside the top 2, so djsrh is exact: the two
    # orders give AP 1 and 1/2). full = (3/4) / 2.
    assert_allclose(mean_average_precision(y_true, y_score, k=2, ties="average"), 0.75)
    assert_allclose(
        mean_average_precision(y_true, y_score, k=2, ties="average", variant="full"),
        3 / 8,
    )
    # k=3 cuts the second group {2, 3} (one relevant) in half.
    # Its rank 3 adds E = (1/2)(1 hit before + 1)/3 = 1/3 -> numerator 13/12.
    # full (exact): 13/12 / 2 = 13/24.
    # djsrh: E[num]/E[R_3] = (13/12) / (1 + 1/2) = 13/18, while the exact mean
    # over the four orders is (5/6 + 1 + 7/12 + 1/2)/4 = 35/48: ratio of
    # expectations, documented as an approximation.
    assert_allclose(
        mean_average_precision(y_true, y_score, k=3, ties="average", variant="full"),
        13 / 24,
    )
    assert_allclose(
        mean_average_precision(y_true, y_score, k=3, ties="average"), 13 / 18
    )
    # ties="index" at k=3: rel 1, 0, 1 -> (1 + 2/3) / 2 = 5/6.
    assert_allclose(mean_average_precision(y_true, y_score, k=3), 5 / 6)


def _brute_force_tie_expectations(rel, score, k):
    """Enumerate every order of every tie group: E[num], E[R_K], E[num / R_K]."""
    values = np.unique(score)[::-1]
    groups = [np.flatnonzero(score == v) for v in values]
    numerators, founds, ratios = [], [], []
    for perm in itertools.product(*(itertools.permutations(g) for g in groups)):
        order = np.concatenate(perm)[:k]
        ranked = rel[order]
        hits = np.cumsum(ranked)
        num = (ranked * hits / np.arange(1, len(ranked) + 1)).sum()
        numerators.append(num)
        founds.append(hits[-1])
        ratios.append(num / hits[-1] if hits[-1] else 0.0)
    return np.mean(numerators), np.mean(founds), np.mean(ratios)


@pytest.mark.parametrize("seed", range(12))
def test_tie_average_against_brute_force_permutations(seed):
    rng = np.random.RandomState(seed)
    n_database = 6
    rel = (rng.rand(n_database) < 0.5).astype(float)
    score = rng.randint(0, 3, size=n_database).astype(float)
    n_rel = rel.sum()
    for k in range(1, n_database + 1):
        e_num, e_found, e_ratio = _brute_force_tie_expectations(rel, score, k)
        full = mean_average_precision(
            [rel], [score], k=k, variant="full", ties="average"
        )
        # "full" has a fixed denominator: exact expected AP@K.
        assert_allclose(full, e_num / n_rel if n_rel else 0.0, atol=1e-12)
        djsrh = mean_average_precision([rel], [score], k=k, ties="average")
        assert_allclose(djsrh, e_num / e_found if e_found else 0.0, atol=1e-12)
        # No tie group straddles the cut: R_K is fixed and djsrh is exact.
        kth = np.sort(score)[::-1]
        if k == n_database or kth[k - 1] != kth[k]:
            assert_allclose(djsrh, e_ratio, atol=1e-12)
        assert_allclose(
            precision_at_k([rel], [score], k=k, ties="average"), e_found / k
        )


@pytest.mark.parametrize("variant", VARIANTS)
def test_tie_average_equals_index_without_ties(variant):
    y_true, y_score = _random_problem(2)
    for k in (1, 4, None):
        assert_allclose(
            mean_average_precision(y_true, y_score, k=k, variant=variant),
            mean_average_precision(
                y_true, y_score, k=k, variant=variant, ties="average"
            ),
        )


# ---------------------------------------------------------------------------
# Agreement with other implementations
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("k", [1, 5, None])
def test_from_ranking_agrees_with_mean_average_precision(variant, k, small_chunks):
    y_true, y_score = _random_problem(3, n_levels=4)
    order = np.argsort(-y_score, axis=1, kind="stable")[:, :k]
    ranked = np.take_along_axis(y_true, order, axis=1)
    ap = average_precision_from_ranking(ranked, y_true.sum(axis=1), variant=variant)
    expected = np.nanmean(ap) if not np.isnan(ap).all() else 0.0
    assert_allclose(
        mean_average_precision(y_true, y_score, k=k, variant=variant), expected
    )


def test_full_ranking_agrees_with_sklearn_average_precision_score():
    y_true, y_score = _random_problem(4, n_queries=10, n_database=30)
    y_true[:, 0] = True  # every query has a relevant item
    order = np.argsort(-y_score, axis=1)
    ranked = np.take_along_axis(y_true, order, axis=1)
    ap = average_precision_from_ranking(ranked, y_true.sum(axis=1), variant="full")
    expected = [average_precision_score(t, s) for t, s in zip(y_true, y_score)]
    assert_allclose(ap, expected)
    assert_allclose(
        mean_average_precision(y_true, y_score, k=None, variant="full"),
        np.mean(expected),
    )


@pytest.mark.parametrize("ties", ["index", "average"])
def test_chunked_equals_unchunked(ties, monkeypatch):
    y_true, y_score = _random_problem(5, n_levels=3)
    before = [
        mean_average_precision(y_true, y_score, k=4, variant=v, ties=ties)
        for v in VARIANTS
    ] + [precision_at_k(y_true, y_score, k=4, ties=ties)]
    monkeypatch.setattr(_chunking, "_CHUNK_ELEMENTS", 7)
    after = [
        mean_average_precision(y_true, y_score, k=4, variant=v, ties=ties)
        for v in VARIANTS
    ] + [precision_at_k(y_true, y_score, k=4, ties=ties)]
    assert_allclose(after, before)


# ---------------------------------------------------------------------------
# Property tests
# ---------------------------------------------------------------------------


@st.composite
def _problems(draw):
    n_queries = draw(st.integers(1, 4))
    n_database = draw(st.integers(1, 8))
    shape = (n_queries, n_database)
    y_true = draw(hnp.arrays(bool, shape))
    y_score = draw(hnp.arrays(np.int8, shape, elements=st.integers(-2, 2)))
    k = draw(st.one_of(st.none(), st.integers(1, 10)))
    return y_true, y_score.astype(float), k


@settings(max_examples=50, deadline=None)
@given(_problems(), st.sampled_from(VARIANTS), st.sampled_from(["index", "average"]))
def test_map_lies_in_unit_interval(problem, variant, ties):
    y_true, y_score, k = problem
    value = mean_average_precision(y_true, y_score, k=k, variant=variant, ties=ties)
    assert 0.0 <= value <= 1.0 + 1e-12
    assert 0.0 <= precision_at_k(y_true, y_score, k=k, ties=ties) <= 1.0 + 1e-12


@settings(max_examples=50, deadline=None)
@given(_problems(), st.sampled_from(VARIANTS), st.randoms(use_true_random=False))
def test_tie_average_map_invariant_to_database_order(problem, variant, random):
    y_true, y_score, k = problem
    perm = np.array(random.sample(range(y_true.shape[1]), y_true.shape[1]))
    kwargs = {"k": k, "variant": variant, "ties": "average"}
    assert_allclose(
        mean_average_precision(y_true[:, perm], y_score[:, perm], **kwargs),
        mean_average_precision(y_true, y_score, **kwargs),
        atol=1e-12,
    )


# ---------------------------------------------------------------------------
# Precision metrics
# ---------------------------------------------------------------------------


def test_precision_at_k_by_hand():
    y_true = [[1, 0, 1, 0], [0, 0, 0, 1]]
    y_score = [[4, 3, 2, 1], [4, 3, 2, 1]]
    # k=2: query 0 has 1/2, query 1 has 0/2 -> 1/4.
    assert precision_at_k(y_true, y_score, k=2) == 0.25
    # k=10 > 4 items: divide by 4 -> (2/4 + 1/4) / 2.
    assert precision_at_k(y_true, y_score, k=10) == 0.375
    # Ties: {0, 1} tied at the top with one relevant item -> E[precision@1] = 1/2.
    assert precision_at_k([[1, 0, 1, 0]], [[1, 1, 0, 0]], k=1) == 1.0
    assert precision_at_k([[1, 0, 1, 0]], [[1, 1, 0, 0]], k=1, ties="average") == 0.5


def test_precision_at_top_r_against_loop():
    y_true, y_score = _random_problem(6, n_levels=3)
    n_database = y_true.shape[1]
    r_values = [1, 3, 7, n_database, n_database + 5]
    expected = []
    for r in r_values:
        per_query = []
        for t, s in zip(y_true, y_score):
            # stable order: score descending, then lower index first
            order = sorted(range(n_database), key=lambda j: (-s[j], j))
            per_query.append(sum(t[j] for j in order[:r]) / min(r, n_database))
        expected.append(np.mean(per_query))
    assert_allclose(precision_at_top_r(y_true, y_score, r_values=r_values), expected)
    assert_allclose(
        precision_at_top_r(y_true, y_score, r_values=3),
        [precision_at_k(y_true, y_score, k=3)],
    )


def test_precision_recall_hamming_against_loop(small_chunks):
    rng = np.random.RandomState(7)
    n_bits = 6
    y_true = rng.rand(8, 12) < 0.3
    y_true[0] = False  # a query without relevant items: left out of recall
    dist = rng.randint(1, n_bits + 1, size=(8, 12))  # nothing at radius 0
    dist[1, 3] = 0  # ... except for one query
    precision, recall, radii = precision_recall_hamming(y_true, dist, n_bits=n_bits)
    assert_array_equal(radii, np.arange(n_bits + 1))
    for r in radii:
        precisions, recalls = [], []
        for t, d in zip(y_true, dist):
            retrieved = d <= r
            if retrieved.sum():
                precisions.append((t & retrieved).sum() / retrieved.sum())
            if t.sum():
                recalls.append((t & retrieved).sum() / t.sum())
        assert_allclose(precision[r], np.mean(precisions))
        assert_allclose(recall[r], np.mean(recalls))
    assert recall[-1] == 1.0


def test_precision_recall_hamming_undefined_values_are_nan():
    precision, recall, _ = precision_recall_hamming([[0, 0]], [[1, 2]], n_bits=2)
    # Radius 0 retrieves nothing; no query has a relevant item.
    assert np.isnan(precision[0])
    assert_allclose(precision[1:], [0.0, 0.0])
    assert np.isnan(recall).all()


def test_precision_recall_hamming_rejects_bad_distances():
    with pytest.raises(ValueError, match=r"whole numbers in \[0, n_bits\] = \[0, 2\]"):
        precision_recall_hamming([[1, 0]], [[0, 3]], n_bits=2)
    with pytest.raises(ValueError, match="whole numbers"):
        precision_recall_hamming([[1, 0]], [[0.5, 1]], n_bits=2)


def test_harmonic_mean():
    assert_allclose(harmonic_mean(0.5, 1.0), 2 / 3)
    assert harmonic_mean(0.0, 0.7) == 0.0
    assert harmonic_mean(0.7, 0.0) == 0.0
    assert_allclose(harmonic_mean(0.4, 0.4), 0.4)
    with pytest.raises(InvalidParameterError, match="'a' parameter"):
        harmonic_mean(-0.1, 0.5)


# ---------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"k": 0}, r"'k' parameter of mean_average_precision must be an int"),
        ({"variant": "trec"}, "'variant' parameter"),
        ({"ties": "random"}, "'ties' parameter"),
    ],
)
def test_map_rejects_bad_parameters(kwargs, match):
    with pytest.raises(InvalidParameterError, match=match):
        mean_average_precision([[1, 0]], [[1, 0]], **kwargs)


def test_precision_functions_reject_bad_parameters():
    with pytest.raises(InvalidParameterError, match="'k' parameter"):
        precision_at_k([[1, 0]], [[1, 0]], k=0)
    with pytest.raises(ValueError, match="r_values must all be at least 1"):
        precision_at_top_r([[1, 0]], [[1, 0]], r_values=[2, 0])
    with pytest.raises(InvalidParameterError, match="'n_bits' parameter"):
        precision_recall_hamming([[1, 0]], [[0, 0]], n_bits=0)


def test_score_inputs_shape_and_values():
    with pytest.raises(ValueError, match=r"same shape .* got \(1, 2\) and \(1, 3\)"):
        mean_average_precision([[1, 0]], [[1, 0, 2]])
    with pytest.raises(ValueError, match="Expected 2D array"):
        mean_average_precision([1, 0], [1, 0])
    with pytest.raises(ValueError, match="y_true must contain only 0 and 1"):
        mean_average_precision([[2, 0]], [[1, 0]])
    with pytest.raises(ValueError, match="NaN"):
        mean_average_precision([[1, 0]], [[np.nan, 0]])


def test_label_validation():
    with pytest.raises(ValueError, match=r"y_query is 1-D \(class ids\) but y_datab"):
        relevance([0, 1], [[0, 1], [1, 0]])
    with pytest.raises(ValueError, match="y_query has 2 label columns but y_database"):
        relevance([[0, 1]], [[0, 1, 1]])
    with pytest.raises(ValueError, match="y_database is empty"):
        n_relevant([0], [])
    with pytest.raises(ValueError, match="y_query contains NaN"):
        relevance([0.0, np.nan], [0.0])
    with pytest.raises(ValueError, match="y_database must contain only 0 and 1"):
        relevance([[0, 1]], [[0, 3]])
    with pytest.raises(ValueError, match="y_query must be 1-D class ids or a 2-D"):
        relevance(np.zeros((1, 1, 1)), [0])


def test_ranked_relevance_validates_indices():
    with pytest.raises(ValueError, match=r"\[0, n_database\) = \[0, 3\).*\[3\]"):
        ranked_relevance([0], [0, 1, 0], [[0, 3]])
    with pytest.raises(ValueError, match=r"indices must have shape \(n_queries, k\)"):
        ranked_relevance([0, 1], [0, 1, 0], [[0, 1]])
    with pytest.raises(ValueError, match="integer positions"):
        ranked_relevance([0], [0, 1, 0], [[0.0, 1.0]])
