"""DJSRHHasher's global neighbourhood affinity (``affinity="knn"``)."""

import math

import numpy as np
import pytest
import torch
from sklearn.utils._param_validation import InvalidParameterError

from skhash import MultiModal, unpack_bits
from skhash.hashing import DJSRHHasher, _affinity
from skhash.hashing._affinity import (
    joint_cosine_knn,
    knn_affinity,
    shared_neighbor_affinity,
)
from skhash.hashing._djsrh import _DJSRHCriterion
from skhash.nn import djsrh_affinity

FAST = {
    "n_bits": 8,
    "hidden_layer_sizes": (16,),
    "max_epochs": 3,
    "batch_size": 16,
    "device": "cpu",
}


@pytest.fixture(scope="module")
def data(small_cross_modal):
    X_img, X_txt, y = small_cross_modal
    return MultiModal(img=X_img, txt=X_txt), y


def _np_cos(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return a @ b.T


def _brute_knn(train, weights, k, queries=None, candidates=None):
    """Neighbour lists written out one item at a time."""
    n = len(train[0])
    candidates = np.arange(n) if candidates is None else np.sort(candidates)
    rows = train if queries is None else queries
    out = []
    for i in range(len(rows[0])):
        sims = {
            j: sum(
                w * _np_cos(r[i : i + 1], t[j : j + 1])[0, 0]
                for w, r, t in zip(weights, rows, train)
            )
            for j in candidates
            if queries is not None or j != i
        }
        # nearest first, ties by lower index
        ranked = sorted(sims, key=lambda j: (-sims[j], j))
        out.append(([i] if queries is None else []) + ranked)
    width = min(k, len(candidates))
    return np.array([row[:width] for row in out])


# -- the helpers, against brute force -------------------------------------------


@pytest.mark.parametrize("k", [1, 4, 9])
def test_knn_lists_match_brute_force(k):
    rng = np.random.RandomState(0)
    img, txt = rng.randn(9, 4), rng.randn(9, 3)
    got = joint_cosine_knn([torch.tensor(img), torch.tensor(txt)], [0.3, 0.7], k)
    expected = _brute_knn([img, txt], [0.3, 0.7], k)
    np.testing.assert_array_equal(got.numpy(), expected)
    assert np.all(got[:, 0].numpy() == np.arange(9))  # each item lists itself first


def test_knn_query_lists_and_blocks():
    rng = np.random.RandomState(1)
    train = [rng.randn(12, 5)]
    queries = [rng.randn(7, 5)]
    got = joint_cosine_knn(
        [torch.tensor(train[0])],
        [1.0],
        4,
        queries=[torch.tensor(queries[0])],
        block_size=3,  # blocks of rows give the same lists
    )
    np.testing.assert_array_equal(got.numpy(), _brute_knn(train, [1.0], 4, queries))


def test_knn_ties_ordered_by_index():
    # items 1, 2, 3 are the same point: equally near to item 0
    x = torch.tensor([[1.0, 0.1], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    got = joint_cosine_knn([x], [1.0], 4)
    assert got[0].tolist() == [0, 1, 2, 3]
    assert got[3].tolist() == [3, 1, 2, 0]
    first, *tied = joint_cosine_knn([x], [1.0], 3)[0].tolist()
    assert first == 0 and tied == sorted(tied) and set(tied) < {1, 2, 3}


def test_knn_clipped_to_the_training_set():
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    got = joint_cosine_knn([x], [1.0], 50)
    assert got.shape == (4, 4)
    assert all(sorted(row) == [0, 1, 2, 3] for row in got.tolist())


def test_shared_neighbor_affinity_brute_force():
    rng = np.random.RandomState(2)
    lists = np.array([rng.choice(30, size=5, replace=False) for _ in range(8)])
    got = shared_neighbor_affinity(torch.tensor(lists)).numpy()
    expected = np.array(
        [[len(set(a) & set(b)) / 5 for b in lists] for a in lists], dtype=np.float32
    )
    np.testing.assert_allclose(got, expected)
    np.testing.assert_array_equal(got, got.T)
    assert np.all(np.diag(got) == 1) and got.min() >= 0 and got.max() <= 1


def test_knn_affinity_formula_and_range():
    rng = np.random.RandomState(3)
    feats = [torch.tensor(rng.randn(10, 4)), torch.tensor(rng.randn(10, 6))]
    lists = joint_cosine_knn(feats, [0.3, 0.7], 4)
    paper = djsrh_affinity(feats, beta=0.3, eta=0.4, mu=1.5)
    got = knn_affinity(paper, lists, weight=0.25, mu=1.5)
    coh = shared_neighbor_affinity(lists).double()
    torch.testing.assert_close(got, 0.75 * paper + 0.25 * 1.5 * (2 * coh - 1))
    torch.testing.assert_close(got, got.T)
    # the kNN part alone lies in [-mu, mu], mu on the diagonal
    alone = knn_affinity(paper, lists, weight=1.0, mu=1.5)
    assert alone.min() >= -1.5 and alone.max() <= 1.5
    assert torch.all(torch.diagonal(alone) == 1.5)
    torch.testing.assert_close(knn_affinity(paper, lists, weight=0.0, mu=1.5), paper)


def test_sampled_candidates_beyond_max_exact():
    rng = np.random.RandomState(4)
    img, txt = rng.randn(40, 4), rng.randn(40, 3)
    feats = [torch.tensor(img), torch.tensor(txt)]

    def sampled(seed):
        gen = torch.Generator().manual_seed(seed)
        return joint_cosine_knn(feats, [0.5, 0.5], 5, max_exact=12, generator=gen)

    got = sampled(0)
    cand = torch.randperm(40, generator=torch.Generator().manual_seed(0))[:12]
    expected = _brute_knn([img, txt], [0.5, 0.5], 5, candidates=cand.numpy())
    np.testing.assert_array_equal(got.numpy(), expected)
    assert torch.equal(got, sampled(0))  # the same generator seed, the same lists
    assert not torch.equal(got, sampled(1))
    # exact lists once the threshold is above the training set
    exact = joint_cosine_knn(feats, [0.5, 0.5], 5, max_exact=40)
    np.testing.assert_array_equal(exact.numpy(), _brute_knn([img, txt], [0.5] * 2, 5))


# -- the estimator ---------------------------------------------------------------


def _bits(est, X):
    codes = est.transform(X)
    return {m: unpack_bits(codes[m].bits, est.n_bits) for m in ("img", "txt")}


def test_paper_affinity_is_eq3_and_ignores_the_knn_params(data):
    X, _ = data
    base = DJSRHHasher(affinity="paper", random_state=0, **FAST).fit(X)
    other = DJSRHHasher(
        affinity="paper",
        n_affinity_neighbors=3,
        affinity_weight=0.9,
        random_state=0,
        **FAST,
    ).fit(X)
    for m, b in _bits(base, X).items():
        np.testing.assert_array_equal(b, _bits(other, X)[m])
    crit = _DJSRHCriterion(
        ("img", "txt"),
        beta=0.3,
        eta=0.4,
        mu=1.5,
        lambda1=0.3,
        lambda2=0.3,
        alpha=math.sqrt,
        affinity="paper",
        affinity_weight=0.9,
    )
    inputs = [torch.tensor(X["img"][:6]), torch.tensor(X["txt"][:6])]
    torch.testing.assert_close(
        crit._target(inputs, None),
        djsrh_affinity(inputs, beta=0.3, eta=0.4, mu=1.5),
        rtol=0,
        atol=0,
    )


def test_knn_weight_zero_is_the_paper(data):
    X, _ = data
    paper = DJSRHHasher(affinity="paper", random_state=0, **FAST).fit(X)
    knn0 = DJSRHHasher(affinity="knn", affinity_weight=0.0, random_state=0, **FAST)
    knn0.fit(X)
    for m, b in _bits(paper, X).items():
        np.testing.assert_array_equal(b, _bits(knn0, X)[m])


def test_knn_fit_reproducible_and_different(data, monkeypatch):
    X, _ = data
    params = dict(affinity="knn", n_affinity_neighbors=10, affinity_weight=0.5)
    a = DJSRHHasher(random_state=0, **params, **FAST).fit(X)
    b = DJSRHHasher(random_state=0, **params, **FAST).fit(X)
    paper = DJSRHHasher(affinity="paper", random_state=0, **FAST).fit(X)
    for m, bits in _bits(a, X).items():
        np.testing.assert_array_equal(bits, _bits(b, X)[m])
    assert any(
        not np.array_equal(bits, _bits(paper, X)[m]) for m, bits in _bits(a, X).items()
    )
    assert a.history_[-1, "train_loss"] != paper.history_[-1, "train_loss"]
    # the training-time lists are not kept in the fitted network
    assert a.net_.criterion_.neighbors is None
    assert a.net_.criterion_.valid_neighbors is None
    # the bounded path (sampled candidates) inside fit, on a small training set
    monkeypatch.setattr(_affinity, "MAX_EXACT", 30)
    s1 = DJSRHHasher(random_state=0, **params, **FAST).fit(X)
    s2 = DJSRHHasher(random_state=0, **params, **FAST).fit(X)
    for m, bits in _bits(s1, X).items():
        np.testing.assert_array_equal(bits, _bits(s2, X)[m])
    assert s1.history_[-1, "train_loss"] != a.history_[-1, "train_loss"]


def test_knn_with_validation_split_and_single_modality(data, small_cross_modal):
    X, _ = data
    est = DJSRHHasher(
        affinity="knn", n_affinity_neighbors=500, train_split=0.25, **FAST
    ).fit(X)  # more neighbours than items: clipped
    assert np.isfinite(est.history_[-1, "valid_loss"])
    single = DJSRHHasher(affinity="knn", n_affinity_neighbors=5, **FAST)
    codes = single.fit(small_cross_modal[0]).transform(small_cross_modal[0])
    assert codes.bits.shape == (120, 1)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"affinity": "global"}, "affinity"),
        ({"n_affinity_neighbors": 0}, "n_affinity_neighbors"),
        ({"n_affinity_neighbors": 2.5}, "n_affinity_neighbors"),
        ({"affinity_weight": -0.1}, "affinity_weight"),
        ({"affinity_weight": 1.5}, "affinity_weight"),
    ],
)
def test_invalid_affinity_params(data, params, match):
    X, _ = data
    with pytest.raises(InvalidParameterError, match=match):
        DJSRHHasher(**params, **FAST).fit(X)


@pytest.mark.parametrize("value", [True, np.bool_(True)])
def test_bool_neighbors_refused(data, value):
    X, _ = data
    with pytest.raises(ValueError, match=r"n_affinity_neighbors=(True|np\.True_)"):
        DJSRHHasher(affinity="knn", n_affinity_neighbors=value, **FAST).fit(X)


@pytest.mark.parametrize("value", [True, np.bool_(False)])
def test_bool_weight_refused(data, value):
    X, _ = data
    with pytest.raises(ValueError, match=r"affinity_weight=(True|np\.False_|False)"):
        DJSRHHasher(affinity_weight=value, **FAST).fit(X)


@pytest.mark.parametrize("factor", [1e-25, 1e-20, 1e20, 1e25])
def test_affinity_and_neighbours_are_scale_free_at_any_magnitude(factor):
    # float32 norms overflow past ~1.8e19 (rows became zeros) and fell under
    # F.normalize's 1e-12 floor (rows left unnormalised): every cosine ~0
    x = torch.randn(12, 5, generator=torch.Generator().manual_seed(0))
    ref = djsrh_affinity([x], mu=1.0)
    got = djsrh_affinity([x * factor], mu=1.0)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    assert torch.equal(
        joint_cosine_knn([x * factor], [1.0], 4), joint_cosine_knn([x], [1.0], 4)
    )
