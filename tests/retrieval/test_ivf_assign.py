"""The nearest-centroid assignment of the inverted lists' build."""

import numpy as np
import pytest

from skhash.retrieval._ivf_assign import _top_groups, nearest, nearest_grouped


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


# --------------------------------------------------------------------------- #
# Assignment among the lists of an item's nearest groups
# --------------------------------------------------------------------------- #


def _grouped_problem(seed, n=2000, d=10, n_lists=150, n_groups=12, empty=()):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, d).astype(np.float32)
    C = rng.randn(n_lists, d).astype(np.float32)
    sq = np.einsum("kd,kd->k", C, C).astype(np.float32)
    G = rng.randn(n_groups, d).astype(np.float32)
    gsq = np.einsum("gd,gd->g", G, G).astype(np.float32)
    member = nearest(C, G, gsq)
    for g in empty:  # a group that holds no list
        member[member == g] = (g + 1) % n_groups
    ptr = np.zeros(n_groups + 1, dtype=np.int64)
    np.cumsum(np.bincount(member, minlength=n_groups), out=ptr[1:])
    lists = np.argsort(member, kind="stable").astype(np.int64)
    return X, C, sq, (G, gsq, ptr, lists), member


def _brute_grouped(X, C, sq, groups, n_probe, member):
    """float32 scores of every list, restricted to each row's n_probe
    nearest non-empty groups, first of the smallest."""
    G, gsq, ptr, _ = groups
    gkeys = gsq - 2 * (X.astype(np.float64) @ G.T.astype(np.float64))
    gkeys[:, np.diff(ptr) == 0] = np.inf
    top = np.argsort(gkeys, axis=1, kind="stable")[:, :n_probe]
    keys = sq - 2 * (X.astype(np.float64) @ C.T.astype(np.float64))
    allowed = (member[None, :, None] == top[:, None, :]).any(axis=2)
    keys[~allowed] = np.inf
    return np.argmin(keys, axis=1), top


@pytest.mark.parametrize("n_probe", [1, 3, 5])
@pytest.mark.parametrize("empty", [(), (4,)])
def test_grouped_compiled_equals_reference_and_keeps_to_the_groups(n_probe, empty):
    X, C, sq, groups, member = _grouped_problem(n_probe, empty=empty)
    got = nearest_grouped(X, C, sq, groups, n_probe)
    assert got.dtype == np.int64 and got.shape == (len(X),)
    np.testing.assert_array_equal(
        got, nearest_grouped(X, C, sq, groups, n_probe, compiled=False)
    )
    brute, top = _brute_grouped(X, C, sq, groups, n_probe, member)
    # float32 scores differ from float64 ones only on near-ties
    assert np.mean(got == brute) > 0.99
    # every row's list lies in one of its n_probe nearest non-empty groups
    assert np.mean((member[got][:, None] == top).any(axis=1)) > 0.99
    assert not np.isin(member[got], empty).any()
    # fewer groups probed than exist: not always the nearest of all lists
    if n_probe == 1:
        assert np.mean(got == nearest(X, C, sq)) < 1.0


def test_grouped_with_every_group_is_the_nearest_of_all_lists():
    X, C, sq, groups, _ = _grouped_problem(7, empty=(2,))
    full = nearest(X, C, sq)
    # 11 non-empty groups: probing 11 or more is the whole set of lists
    for n_probe in (11, 12, 50):
        np.testing.assert_array_equal(nearest_grouped(X, C, sq, groups, n_probe), full)
    assert np.mean(nearest_grouped(X, C, sq, groups, 2) == full) < 1.0


def test_grouped_does_not_depend_on_threads_or_the_other_items():
    X, C, sq, groups, _ = _grouped_problem(8, n=6000)
    one = nearest_grouped(X, C, sq, groups, 3, n_jobs=1)
    np.testing.assert_array_equal(nearest_grouped(X, C, sq, groups, 3, n_jobs=2), one)
    np.testing.assert_array_equal(nearest_grouped(X[::-1], C, sq, groups, 3)[::-1], one)
    np.testing.assert_array_equal(nearest_grouped(X[7:8], C, sq, groups, 3), one[7:8])
    assert nearest_grouped(X[:0], C, sq, groups, 3).shape == (0,)


def test_grouped_ties_go_to_the_lower_list():
    rng = np.random.RandomState(3)
    base = rng.randn(30, 6).astype(np.float32)
    C = np.repeat(base, 2, axis=0)[rng.permutation(60)]  # each list twice
    sq = np.einsum("kd,kd->k", C, C).astype(np.float32)
    # three groups; the two copies of a list often sit in different groups
    member = (np.arange(60) % 3).astype(np.int64)
    G = (0.01 * rng.randn(3, 6)).astype(np.float32)  # all about as near
    gsq = np.einsum("gd,gd->g", G, G).astype(np.float32)
    ptr = np.array([0, 20, 40, 60], dtype=np.int64)
    lists = np.argsort(member, kind="stable").astype(np.int64)
    groups = (G, gsq, ptr, lists)
    got = nearest_grouped(base, C, sq, groups, 2)
    np.testing.assert_array_equal(
        got, nearest_grouped(base, C, sq, groups, 2, compiled=False)
    )
    gkeys = _top_groups(base, G, gsq, np.zeros(3, bool), 2, False)
    split = 0
    for i, c in enumerate(got):
        copies = np.flatnonzero((C == base[i]).all(axis=1))
        held = copies[np.isin(member[copies], gkeys[i])]
        if len(held):  # a copy among the candidates: the first of them
            assert c == held.min()
        split += len(held) == 2 and member[held[0]] != member[held[1]]
    assert split > 0  # ties across two groups were met


@pytest.mark.parametrize("n_probe", [1, 2, 7, 19])
def test_compiled_top_groups_are_the_smallest_by_key_then_group(n_probe):
    from skhash.retrieval._ivf_assign import _smallest
    from skhash.retrieval._ivf_nearest import top_groups_kernel

    rng = np.random.RandomState(n_probe)
    keys = rng.randint(0, 6, size=(500, 20)).astype(np.float32)  # many ties
    keys[:50, 3] = np.inf  # as an empty group's
    top = np.empty((500, n_probe), dtype=np.int64)
    top_groups_kernel(keys, n_probe, top)
    np.testing.assert_array_equal(np.sort(top, axis=1), _smallest(keys, n_probe))
