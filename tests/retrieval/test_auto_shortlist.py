"""alpha="auto": the default shortlist size rule, L = max(10 k, ceil(N / 1000))."""

import math

import numpy as np
import pytest
from sklearn.utils._param_validation import InvalidParameterError

from skhash import CodeSet, TwoStageRetriever, pack_bits
from skhash.retrieval import ShardedRetriever


def _codes(n, seed=0, n_bits=16, M=2, K=16, d=8):
    rng = np.random.RandomState(seed)
    E = rng.randn(n, d).astype(np.float32)
    C = np.random.RandomState(99).randn(M, K, d).astype(np.float32)  # shared
    return CodeSet(
        embedding=E,
        bits=pack_bits(rng.randint(2, size=(n, n_bits))),
        codes=rng.randint(K, size=(n, M)),
        n_bits=n_bits,
        codebooks=C,
        codebook_kind="additive",
    )


def test_default_is_auto():
    assert TwoStageRetriever().alpha == "auto"
    assert ShardedRetriever().alpha == "auto"


@pytest.mark.parametrize(
    "n, k, expected",
    [
        (2000, 50, 500),  # 10 k on a small database
        (300, 50, 300),  # clipped to the database
        (2000, 5, 50),
        (1_200_000, 50, 1200),  # ceil(N / 1000) on a large one
        (1_000_001, 50, 1001),
    ],
)
def test_auto_rule(n, k, expected):
    r = TwoStageRetriever()
    r.n_samples_fit_ = n  # the rule reads only N (the index is not needed)
    assert r._n_candidates(n, k) == expected
    assert expected == min(n, max(10 * k, math.ceil(n / 1000)))


@pytest.mark.parametrize("k", [3, 20])
def test_auto_searches_like_its_explicit_shortlist(k):
    db, q = _codes(400), _codes(30, seed=1)
    auto = TwoStageRetriever(n_neighbors=k).fit(db)
    explicit = TwoStageRetriever(alpha=min(400, 10 * k), n_neighbors=k).fit(db)
    d1, i1 = auto.kneighbors(q)
    d2, i2 = explicit.kneighbors(q)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(d1, d2)
    # a per-call n_neighbors sets the shortlist too
    _, i3 = auto.kneighbors(q, n_neighbors=2)
    _, i4 = TwoStageRetriever(alpha=20, n_neighbors=2).fit(db).kneighbors(q)
    np.testing.assert_array_equal(i3, i4)
    # and so does score's cut-off
    y_db, y_q = np.arange(400) % 7, np.arange(30) % 7
    got = TwoStageRetriever(n_neighbors=4).fit(db, y_db).score(q, y_q)
    want = TwoStageRetriever(alpha=40, n_neighbors=4).fit(db, y_db).score(q, y_q)
    assert got == want


def test_sharded_auto_uses_the_whole_database():
    db, q = _codes(500), _codes(20, seed=2)
    single = TwoStageRetriever(n_neighbors=10).fit(db)
    sharded = ShardedRetriever(n_neighbors=10, n_shards=3).fit(db)
    np.testing.assert_array_equal(
        single.kneighbors(q, return_distance=False),
        sharded.kneighbors(q, return_distance=False),
    )


@pytest.mark.parametrize("alpha", ["Auto", "all", ""])
def test_other_strings_are_refused(alpha):
    with pytest.raises(InvalidParameterError, match="alpha"):
        TwoStageRetriever(alpha=alpha).fit(_codes(50))
