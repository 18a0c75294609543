"""The "dcmh" AP variant (DCMH's calc_map_k) and the peers' NaN cases."""

import numpy as np
import pytest

from skhash.metrics import average_precision_from_ranking, mean_average_precision


def dcmh_calc_map_k(score, relevant, k=None):
    """DCMH's calc_map_k, transcribed loop for loop (torch → numpy): sort by
    distance, skip queries without relevant items (they count 0 in the mean
    over all queries), mean of count / tindex over the first min(k, tsum)
    relevant positions."""
    num_query = relevant.shape[0]
    total_map = 0.0
    if k is None:
        k = relevant.shape[1]
    for it in range(num_query):
        gnd = relevant[it].astype(np.float32)
        tsum = gnd.sum()
        if tsum == 0:
            continue
        ind = np.argsort(-score[it], kind="stable")
        gnd = gnd[ind]
        total = min(k, int(tsum))
        count = np.arange(1, total + 1, dtype=np.float32)
        tindex = np.flatnonzero(gnd)[:total].astype(np.float32) + 1.0
        total_map += np.mean(count / tindex)
    return total_map / num_query


class TestDcmhHandBuilt:
    def test_counts_relevant_items_past_rank_k(self):
        # relevant at ranks 2 and 4: k=1 -> 1/2 (reciprocal rank),
        # k=2 -> (1/2 + 2/4) / 2
        rel = [[0, 1, 0, 1]]
        assert average_precision_from_ranking(rel, [2], variant="dcmh", k=1)[
            0
        ] == pytest.approx(0.5)
        assert average_precision_from_ranking(rel, [2], variant="dcmh", k=2)[
            0
        ] == pytest.approx(0.5)
        rel = [[1, 0, 0, 1, 1]]
        assert average_precision_from_ranking(rel, [3], variant="dcmh", k=2)[
            0
        ] == pytest.approx((1 / 1 + 2 / 4) / 2)
        assert average_precision_from_ranking(rel, [3], variant="dcmh")[
            0
        ] == pytest.approx((1 + 2 / 4 + 3 / 5) / 3)

    def test_differs_from_the_cut_forms(self):
        # the first relevant item at rank 3: MAP@2 is 0, dcmh@2 is not
        y_true = np.array([[0, 0, 1, 1, 0]])
        y_score = np.array([[5.0, 4.0, 3.0, 2.0, 1.0]])
        assert mean_average_precision(y_true, y_score, k=2) == 0.0
        got = mean_average_precision(y_true, y_score, k=2, variant="dcmh")
        assert got == pytest.approx((1 / 3 + 2 / 4) / 2)

    def test_k1_is_mean_reciprocal_rank(self):
        rng = np.random.RandomState(0)
        y_true = rng.rand(30, 40) < 0.2
        y_true[0] = False  # a query without any relevant item scores 0
        y_score = rng.randn(30, 40)
        order = np.argsort(-y_score, axis=1, kind="stable")
        ranked = np.take_along_axis(y_true, order, axis=1)
        rr = [1 / (np.argmax(r) + 1) if r.any() else 0.0 for r in ranked]
        got = mean_average_precision(y_true, y_score, k=1, variant="dcmh")
        assert got == pytest.approx(np.mean(rr))

    def test_all_relevant_is_full_map(self):
        rng = np.random.RandomState(1)
        y_true = rng.rand(20, 25) < 0.3
        y_score = rng.randn(20, 25)
        got = mean_average_precision(y_true, y_score, k=None, variant="dcmh")
        full = mean_average_precision(y_true, y_score, k=None, variant="full")
        assert got == pytest.approx(full)

    def test_no_relevant_item_scores_zero_not_nan(self):
        y_true = np.zeros((2, 4), dtype=bool)
        y_true[1, 2] = True
        y_score = np.tile([4.0, 3.0, 2.0, 1.0], (2, 1))
        got = mean_average_precision(y_true, y_score, k=5, variant="dcmh")
        assert got == pytest.approx((0 + 1 / 3) / 2)


@pytest.mark.parametrize("k", [1, 3, 10, 50, None])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_the_dcmh_reference_code(k, seed):
    rng = np.random.RandomState(seed)
    y_true = rng.rand(25, 60) < rng.uniform(0.02, 0.4)
    y_score = rng.randn(25, 60)  # no ties: the reference's sort is unstable
    got = mean_average_precision(y_true, y_score, k=k, variant="dcmh")
    assert got == pytest.approx(dcmh_calc_map_k(y_score, y_true, k), abs=1e-6)


def test_integer_hamming_scores_match_with_stable_order():
    # Hamming ranks tie; with the ties ordered by lower index on both sides
    # the two agree exactly
    rng = np.random.RandomState(3)
    y_true = rng.rand(15, 40) < 0.25
    y_score = -rng.randint(0, 9, size=(15, 40)).astype(float)
    got = mean_average_precision(y_true, y_score, k=5, variant="dcmh")
    assert got == pytest.approx(dcmh_calc_map_k(y_score, y_true, 5), abs=1e-6)


class TestDcmhErrors:
    def test_needs_n_relevant(self):
        with pytest.raises(ValueError, match="n_relevant is required"):
            average_precision_from_ranking([[1, 0]], variant="dcmh", k=1)

    def test_ranking_must_reach_the_relevant_items(self):
        with pytest.raises(ValueError, match="whole ranking"):
            average_precision_from_ranking([[1, 0]], [3], variant="dcmh", k=2)

    def test_k_only_for_dcmh(self):
        with pytest.raises(ValueError, match="variant='dcmh' only"):
            average_precision_from_ranking([[1, 0]], [1], variant="djsrh", k=1)

    def test_average_ties_rejected_with_the_fix(self):
        with pytest.raises(ValueError, match="ties='index'"):
            mean_average_precision(
                [[1, 0]], [[1.0, 0.0]], k=1, variant="dcmh", ties="average"
            )

    def test_bad_k(self):
        with pytest.raises(ValueError, match="k"):
            average_precision_from_ranking([[1, 0]], [1], variant="dcmh", k=0)


def test_deephash_zero_where_the_peers_give_nan():
    # DeepHash's code divides 0 by 0 for a query without hits; skhash gives
    # the query NaN but the mean over all-NaN queries 0.0
    rel = [[0, 0, 0]]
    assert np.isnan(average_precision_from_ranking(rel, variant="deephash")[0])
    got = mean_average_precision([[0, 0, 0]], [[3.0, 2.0, 1.0]], variant="deephash")
    assert got == 0.0 and not np.isnan(got)


def test_retriever_and_scorer_score_the_dcmh_variant():
    """score(variant="dcmh") is DCMH's calc_map_k over the retriever's whole
    ranking, cut at K inside: equal to the metric function on that ranking."""
    from skhash import CodeSet, pack_bits
    from skhash.metrics import (
        average_precision_from_ranking,
        make_map_scorer,
        n_relevant,
        ranked_relevance,
    )
    from skhash.retrieval import TwoStageRetriever

    rng = np.random.RandomState(0)
    y = rng.randint(4, size=80)
    emb = (rng.randn(80, 16) + 1.5 * np.eye(16)[y * 3]).astype(np.float32)
    db = CodeSet(embedding=emb, bits=pack_bits(emb), n_bits=16)
    search = TwoStageRetriever(alpha=0, n_neighbors=5).fit(db[:60], y[:60])
    q, yq = db[60:], y[60:]
    idx = search.kneighbors(q, 60, return_distance=False)
    rel = ranked_relevance(yq, y[:60], idx)
    want = average_precision_from_ranking(
        rel, n_relevant(yq, y[:60]), variant="dcmh", k=5
    ).mean()
    assert search.score(q, yq, variant="dcmh") == pytest.approx(want)
    assert make_map_scorer(5, variant="dcmh")(search, q, yq) == pytest.approx(want)
    # a different number from the top-K forms on the same ranking
    assert search.score(q, yq, variant="djsrh") != pytest.approx(want)
