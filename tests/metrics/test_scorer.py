"""Tests for skhash.metrics._scorer: retrieval scorers and their registry."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import GridSearchCV, KFold, cross_validate
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils._param_validation import InvalidParameterError

from skhash.metrics import (
    get_scorer,
    get_scorer_names,
    make_map_scorer,
    make_precision_scorer,
    mean_average_precision,
    precision_at_k,
    relevance,
)
from skhash.metrics._scorer import _SCORERS

# Every call of FakeRetriever.score, in order (GridSearchCV clones estimators,
# so the record lives outside them).
CALLS = []


@pytest.fixture(autouse=True)
def _clear_calls():
    CALLS.clear()


class FakeRetriever(BaseEstimator):
    """Index the training fold; score queries by exact negative distance."""

    def __init__(self, shift=0.0):
        self.shift = shift

    def fit(self, X, y):
        self.X_ = np.asarray(X, dtype=float)
        self.y_ = np.asarray(y)
        return self

    def score(self, X, y, *, n_neighbors, direction, variant, metric):
        X = np.asarray(X, dtype=float)
        CALLS.append(
            {
                "X": X,
                "n_neighbors": n_neighbors,
                "direction": direction,
                "variant": variant,
                "metric": metric,
            }
        )
        scores = -((X[:, None, :] - self.X_[None, :, :] - self.shift) ** 2).sum(-1)
        y_true = relevance(y, self.y_)
        if n_neighbors == "all":  # the retriever's spelling of "whole database"
            n_neighbors = None
        if metric == "precision":
            return precision_at_k(y_true, scores, k=n_neighbors)
        return mean_average_precision(y_true, scores, k=n_neighbors, variant=variant)


def _affine(X):
    return 2.0 * np.asarray(X) + 1.0


def _data():
    rng = np.random.RandomState(0)
    y = rng.randint(0, 3, size=40)
    X = rng.randn(40, 3) + 2.0 * y[:, None]
    return X, y


def _pipeline():
    return Pipeline(
        [
            ("affine", FunctionTransformer(_affine)),
            ("skip", "passthrough"),
            ("search", FakeRetriever()),
        ]
    )


def test_map_scorer_on_pipeline_transforms_and_passes_arguments():
    X, y = _data()
    pipe = _pipeline().fit(X[:30], y[:30])
    scorer = make_map_scorer(k=5, direction="img->txt")
    value = scorer(pipe, X[30:], y[30:])
    (call,) = CALLS
    assert_array_equal(call["X"], _affine(X[30:]))  # the transform step ran
    assert call["n_neighbors"] == 5
    assert call["direction"] == "img->txt"
    assert call["variant"] == "djsrh"
    assert call["metric"] == "map"
    scores = -((_affine(X[30:])[:, None] - _affine(X[:30])[None]) ** 2).sum(-1)
    expected = mean_average_precision(relevance(y[30:], y[:30]), scores, k=5)
    assert_allclose(value, expected)
    assert isinstance(value, float)


def test_scorer_on_bare_estimator_and_none_step():
    X, y = _data()
    retriever = FakeRetriever().fit(X[:30], y[:30])
    make_precision_scorer(k=7)(retriever, X[30:], y[30:])
    assert_array_equal(CALLS[-1]["X"], X[30:])  # no transform
    assert CALLS[-1]["metric"] == "precision"
    assert CALLS[-1]["n_neighbors"] == 7
    pipe = Pipeline([("none", None), ("search", FakeRetriever())]).fit(X, y)
    get_scorer("map")(pipe, X[:5], y[:5])
    assert_array_equal(CALLS[-1]["X"], X[:5])
    assert CALLS[-1]["n_neighbors"] == "all"
    assert CALLS[-1]["variant"] == "full"


def test_scorer_rejects_pipeline_without_final_retriever():
    X, y = _data()
    pipe = Pipeline(
        [("affine", FunctionTransformer(_affine)), ("end", "passthrough")]
    ).fit(X, y)
    with pytest.raises(ValueError, match="last step of Pipeline is 'passthrough'"):
        make_map_scorer()(pipe, X, y)


def test_grid_search_with_make_map_scorer():
    X, y = _data()
    cv = KFold(2, shuffle=True, random_state=0)
    search = GridSearchCV(
        _pipeline(),
        {"search__shift": [0.0, 3.0]},
        scoring=make_map_scorer(k=5),
        cv=cv,
        error_score="raise",
    ).fit(X, y)
    scoring_calls = [c for c in CALLS if c["n_neighbors"] == 5]
    assert len(scoring_calls) == 4  # 2 candidates x 2 folds
    assert all(c["direction"] is None and c["metric"] == "map" for c in scoring_calls)
    # The scores are those of the scorer on each split, computed by hand.
    for i, (train, test) in enumerate(cv.split(X)):
        pipe = _pipeline().set_params(search__shift=0.0).fit(X[train], y[train])
        expected = make_map_scorer(k=5)(pipe, X[test], y[test])
        assert_allclose(search.cv_results_[f"split{i}_test_score"][0], expected)
    # A shifted database ranks worse than the exact one on these clusters.
    assert search.best_params_ == {"search__shift": 0.0}


def test_nested_cross_validation_scores_the_best_estimator():
    # cross_validate(GridSearchCV(...), scoring=<a retrieval scorer>): the
    # outer scorer scores the search's refitted best estimator (it sent the
    # retriever's arguments to GridSearchCV.score, which refused them)
    X, y = _data()
    inner = GridSearchCV(
        _pipeline(), {"search__shift": [0.0, 3.0]}, scoring=make_map_scorer(k=5), cv=2
    )
    outer = cross_validate(
        inner, X, y, scoring=make_map_scorer(k=10), cv=2, error_score="raise"
    )
    assert np.all((outer["test_score"] >= 0) & (outer["test_score"] <= 1))
    search = clone(inner).fit(X[:30], y[:30])
    scorer = make_map_scorer(k=10)
    assert scorer(search, X[30:], y[30:]) == scorer(
        search.best_estimator_, X[30:], y[30:]
    )
    no_refit = clone(inner).set_params(refit=False).fit(X[:30], y[:30])
    with pytest.raises(ValueError, match="refit=False"):
        scorer(no_refit, X[30:], y[30:])


def test_grid_search_with_named_scorer():
    X, y = _data()
    search = GridSearchCV(
        _pipeline(),
        {"search__shift": [0.0]},
        scoring=get_scorer("map@50"),
        cv=2,
        error_score="raise",
    ).fit(X, y)
    assert {c["n_neighbors"] for c in CALLS} == {50}
    assert all(c["variant"] == "djsrh" for c in CALLS)
    assert 0.0 <= search.best_score_ <= 1.0


def test_registry_names_and_copies():
    names = get_scorer_names()
    assert names == sorted(names)
    assert set(names) == {
        "map",
        "map@10",
        "map@20",
        "map@50",
        "map@100",
        "map@500",
        "map@1000",
        "precision@10",
        "precision@50",
        "precision@100",
    }
    scorer = get_scorer("map@10")
    assert scorer is not _SCORERS["map@10"]
    scorer.k = 3
    assert get_scorer("map@10").k == 10
    assert get_scorer("precision@100").metric == "precision"

    def custom(estimator, X, y):
        return 0.0

    assert get_scorer(custom) is custom


def test_unknown_scorer_name_lists_valid_names():
    with pytest.raises(
        ValueError,
        match=r"'xyz' is not a valid scoring value. Valid names: map, map@10, "
        r"map@100, .*precision@50. Use skhash.metrics.get_scorer_names\(\)",
    ):
        get_scorer("xyz")


def test_scorer_repr_and_validation():
    assert repr(make_map_scorer()) == "make_map_scorer(k=50, direction=None)"
    assert (
        repr(make_map_scorer(k=None, direction="txt->img", variant="deephash"))
        == "make_map_scorer(k=None, direction='txt->img', variant='deephash')"
    )
    assert repr(get_scorer("precision@10")) == (
        "make_precision_scorer(k=10, direction=None)"
    )
    with pytest.raises(InvalidParameterError, match="'k' parameter of make_map_sc"):
        make_map_scorer(k=0)
    with pytest.raises(InvalidParameterError, match="'variant' parameter"):
        make_map_scorer(variant="trec")
