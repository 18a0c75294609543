"""kneighbors validates the search parameters once per set of values.

What must hold: a parameter changed in any way (set_params, attribute
assignment, a numpy scalar replaced by another, an equal value of another
type) is validated again before the next search, and an invalid one is
refused there with its name; unchanged parameters are not re-validated.
"""

import numpy as np
import pytest
from sklearn.utils._param_validation import InvalidParameterError

from skhash import CodeSet, pack_bits
from skhash.retrieval import TwoStageRetriever


@pytest.fixture
def fitted():
    emb = np.random.RandomState(0).randn(60, 16).astype(np.float32)
    db = CodeSet(bits=pack_bits(emb), n_bits=16, embedding=emb)
    return TwoStageRetriever(n_neighbors=5, alpha=20).fit(db), db[:4]


def test_unchanged_parameters_are_validated_once(fitted, monkeypatch):
    est, q = fitted
    seen = []
    validate = TwoStageRetriever._validate_params
    monkeypatch.setattr(
        TwoStageRetriever,
        "_validate_params",
        lambda self: (seen.append(1), validate(self))[1],
    )
    est.kneighbors(q)
    est.kneighbors(q)
    assert len(seen) == 1
    est.set_params(alpha=30)
    est.kneighbors(q)
    assert len(seen) == 2


@pytest.mark.parametrize(
    "name,valid,invalid",
    [
        ("alpha", 20, -1),
        ("alpha", 100, 100.0),  # an int shortlist; a float is a fraction <= 1
        ("n_neighbors", np.int64(5), np.int64(-1)),  # the same type, new object
        ("stage1", "exhaustive", "nope"),
    ],
)
def test_a_changed_parameter_is_validated_again(fitted, name, valid, invalid):
    est, q = fitted
    setattr(est, name, valid)
    est.kneighbors(q)
    setattr(est, name, invalid)  # not through set_params
    with pytest.raises(InvalidParameterError, match=name):
        est.kneighbors(q)
    setattr(est, name, valid)
    est.kneighbors(q)  # valid again
