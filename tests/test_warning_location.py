"""skhash's warnings name the user's line, not a frame inside skhash or sklearn."""

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from skhash import DJSRHHasher, DQNQuantizer, HQHasher
from skhash.nn import MLPTower

LEARNERS = {
    "HQHasher": lambda **kw: HQHasher(8, max_epochs=1, batch_size=8, **kw),
    "DQNQuantizer": lambda **kw: DQNQuantizer(
        1, n_codewords=4, n_dims=8, max_epochs=1, batch_size=8, **kw
    ),
    "DJSRHHasher": lambda **kw: DJSRHHasher(
        8, max_epochs=1, batch_size=8, n_affinity_neighbors=5, **kw
    ),
}


def _data():
    rng = np.random.RandomState(0)
    return rng.randn(40, 5), np.arange(40) % 2


def _only(record, text):
    hits = [w for w in record if text in str(w.message)]
    assert len(hits) == 1, [str(w.message) for w in record]
    return hits[0]


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_ignored_tower_settings_warning_points_at_the_fit_call(name):
    X, y = _data()
    est = LEARNERS[name](module=MLPTower, hidden_layer_sizes=(16,), random_state=0)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        est.fit(X, y)
    hit = _only(record, "are ignored")
    assert hit.filename == __file__, hit.filename


def test_warning_points_at_the_pipeline_call_not_inside_sklearn():
    X, y = _data()
    pipe = Pipeline(
        [("hash", LEARNERS["HQHasher"](module=MLPTower, hidden_layer_sizes=(16,)))]
    )
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        pipe.fit(X, y)
    assert _only(record, "are ignored").filename == __file__


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_feature_name_warning_points_at_the_transform_call(name):
    X, y = _data()
    est = LEARNERS[name](random_state=0).fit(pd.DataFrame(X, columns=list("abcde")), y)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        est.transform(X)
    hit = _only(record, "does not have valid feature names")
    assert hit.filename == __file__, hit.filename
