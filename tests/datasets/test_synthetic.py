import numpy as np
import pytest
from numpy.testing import assert_array_equal

from skhash import MultiModal
from skhash.datasets import make_cross_modal


@pytest.mark.parametrize("multilabel", [False, True])
def test_deterministic_per_seed(multilabel):
    kw = {"n_classes": 5, "multilabel": multilabel}
    X1, y1 = make_cross_modal(80, random_state=7, **kw)
    X2, y2 = make_cross_modal(80, random_state=np.random.RandomState(7), **kw)
    X3, y3 = make_cross_modal(80, random_state=8, **kw)
    for m in ("img", "txt"):
        assert_array_equal(X1[m], X2[m])
        assert not np.allclose(X1[m], X3[m])
    assert_array_equal(y1, y2)


def test_shapes_and_labels():
    X, y = make_cross_modal(120, n_classes=6, n_features=(10, 7), random_state=0)
    assert isinstance(X, MultiModal) and X.n_features == {"img": 10, "txt": 7}
    assert y.shape == (120,) and y.dtype == np.int64
    assert set(np.unique(y)) <= set(range(6))
    X, Y = make_cross_modal(120, n_classes=6, multilabel=True, random_state=0)
    assert Y.shape == (120, 6) and Y.dtype == np.int64
    assert set(np.unique(Y)) == {0, 1}
    assert Y.sum(axis=1).min() >= 1 and Y.sum(axis=1).max() > 1
    X, _ = make_cross_modal(20, n_features=(5,), random_state=0)
    assert X.modalities == ("X",)
    X, _ = make_cross_modal(20, n_features={"a": 3, "b": 4, "c": 5}, random_state=0)
    assert X.n_features == {"a": 3, "b": 4, "c": 5}


def _separation(X, y, m):
    """Mean within-class distance over mean between-class distance."""
    A = X[m]
    d = np.linalg.norm(A[:, None] - A[None], axis=-1)
    same = y[:, None] == y[None]
    off = ~np.eye(len(y), dtype=bool)
    return d[same & off].mean() / d[~same].mean()


def test_difficulty_blurs_the_classes():
    X0, y0 = make_cross_modal(60, n_classes=3, difficulty=0.0, random_state=0)
    for m in ("img", "txt"):  # no noise: one point per class
        for c in np.unique(y0):
            rows = X0[m][y0 == c]
            assert np.allclose(rows, rows[0])
    ratios = [
        _separation(
            *make_cross_modal(90, n_classes=3, difficulty=d, random_state=0), "img"
        )
        for d in (0.1, 0.5, 2.0)
    ]
    assert ratios[0] < ratios[1] < ratios[2]


def test_modalities_share_the_semantics():
    # a text item's nearest image (after least squares) is usually of its class
    X, y = make_cross_modal(300, n_classes=4, difficulty=0.3, random_state=1)
    W, *_ = np.linalg.lstsq(X["txt"], X["img"], rcond=None)
    pred = X["txt"] @ W
    d = np.linalg.norm(pred[:, None] - X["img"][None], axis=-1)
    np.fill_diagonal(d, np.inf)
    assert (y[d.argmin(axis=1)] == y).mean() > 0.9


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_features": (3, 4, 5)}, "one width"),
        ({"n_features": (3, 0)}, "positive int"),
        ({"n_features": {}}, "at least one"),
        ({"n_classes": 1}, "n_classes"),
        ({"difficulty": -1}, "difficulty"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_cross_modal(10, **kwargs)


@pytest.mark.parametrize("multilabel", [False, True])
def test_generative_model_is_the_one_drawn(multilabel):
    # the benchmarks' Bayes ceiling reads the model: it must be the data's
    from sklearn.utils import check_random_state

    from skhash.datasets._synthetic import _draw_cross_modal

    kw = {"n_classes": 6, "multilabel": multilabel}
    X, y = make_cross_modal(90, difficulty=0.0, random_state=3, **kw)
    X2, y2, model = _draw_cross_modal(
        90, 6, {"img": 64, "txt": 32}, multilabel, 0.0, check_random_state(3)
    )
    assert_array_equal(y, y2)
    P = model["prototypes"]
    Y = y if multilabel else np.eye(6, dtype=np.int64)[y]
    mean = (Y @ P) / Y.sum(axis=1, keepdims=True)
    for m in ("img", "txt"):
        assert_array_equal(X[m], X2[m])
        # without noise each view is its label set's mean prototype, mapped
        np.testing.assert_allclose(X[m], mean @ model["mappings"][m], atol=1e-12)
    assert model["difficulty"] == 0.0
    assert (model["p_extra"] is None) == (not multilabel)
