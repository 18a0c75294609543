"""The nearest-centroid assignment of the inverted lists' build."""

import numpy as np
import pytest

from skhash.retrieval._ivf_assign import nearest


def _brute(X, C):
    """Nearest centroid by float64 distances (ties to the lower index)."""
    X, C = X.astype(np.float64), C.astype(np.float64)
    d = ((X[:, None, :] - C[None, :, :]) ** 2).sum(-1)
    return np.argmin(d, axis=1)


@pytest.mark.parametrize("n_centroids", [1, 5, 64, 65, 200])
def test_nearest_compiled_equals_reference_and_brute_force(n_centroids):
    rng = np.random.RandomState(n_centroids)
    X = rng.randn(703, 12).astype(np.float32)  # 256-row blocks, 4-row groups, a tail
    C = rng.randn(n_centroids, 12).astype(np.float32)
    got = nearest(X, C)
    assert got.dtype == np.int64 and got.shape == (703,)
    np.testing.assert_array_equal(got, nearest(X, C, compiled=False))
    # float32 scores can only differ from float64 distances on near-ties
    assert np.mean(got == _brute(X, C)) > 0.99


def test_nearest_ties_go_to_the_lower_centroid():
    rng = np.random.RandomState(0)
    base = rng.randn(40, 6).astype(np.float32)
    # every centroid three times, shuffled: each item ties between copies
    C = np.repeat(base, 3, axis=0)[rng.permutation(120)]
    X = np.concatenate([base, rng.randn(300, 6).astype(np.float32)])
    got = nearest(X, C)
    np.testing.assert_array_equal(got, nearest(X, C, compiled=False))
    for i, c in enumerate(got):
        copies = np.flatnonzero((C == C[c]).all(axis=1))
        assert c == copies.min()
    # an item equal to a centroid goes to (the first copy of) it
    for i in range(40):
        assert (C[got[i]] == base[i]).all()


def test_nearest_does_not_depend_on_threads_or_the_other_items():
    rng = np.random.RandomState(1)
    X = rng.randn(20000, 16).astype(np.float32)
    C = rng.randn(300, 16).astype(np.float32)
    one = nearest(X, C, n_jobs=1)
    np.testing.assert_array_equal(nearest(X, C, n_jobs=2), one)
    # a row's result is the same alone, in another block, or reversed
    np.testing.assert_array_equal(nearest(X[::-1], C)[::-1], one)
    np.testing.assert_array_equal(nearest(X[5:6], C), one[5:6])
    np.testing.assert_array_equal(nearest(X[1234:9000], C), one[1234:9000])


def test_nearest_leaves_its_inputs_alone_and_accepts_empty():
    rng = np.random.RandomState(2)
    X = rng.randn(50, 4).astype(np.float32)
    C = rng.randn(7, 4).astype(np.float32)
    X0, C0 = X.copy(), C.copy()
    nearest(X, C, n_jobs=2)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(C, C0)
    assert nearest(X[:0], C).shape == (0,)
