import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.model_selection import KFold, train_test_split
from sklearn.utils import _safe_indexing

from skhash import MultiModal
from skhash._modalities import as_modalities


@pytest.fixture
def mm():
    rng = np.random.RandomState(0)
    return MultiModal(img=rng.rand(10, 4), txt=rng.rand(10, 3))


def test_row_indexing_keeps_pairs(mm):
    idx = np.array([3, 1, 7])
    sub = mm[idx]
    assert isinstance(sub, MultiModal)
    np.testing.assert_array_equal(sub["img"], mm["img"][idx])
    np.testing.assert_array_equal(sub["txt"], mm["txt"][idx])
    assert len(mm[2:5]) == 3
    assert len(mm[4]) == 1  # an integer keeps 2-D rows
    mask = np.zeros(10, bool)
    mask[[0, 9]] = True
    assert len(mm[mask]) == 2


def test_sklearn_splitters_slice(mm):
    a, b = train_test_split(mm, random_state=0)
    assert isinstance(a, MultiModal) and len(a) + len(b) == 10
    for tr, te in KFold(3).split(mm):
        np.testing.assert_array_equal(_safe_indexing(mm, te)["txt"], mm["txt"][te])


def test_validation_messages():
    with pytest.raises(ValueError, match="at least one modality"):
        MultiModal()
    with pytest.raises(ValueError, match=r"img: \(3, 2\), txt: \(4, 2\)"):
        MultiModal(img=np.ones((3, 2)), txt=np.ones((4, 2)))
    with pytest.raises(ValueError, match="Modality 'img'.*NaN"):
        MultiModal(img=np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="Modality 'txt'.*2D array"):
        MultiModal(txt=np.ones(3))
    with pytest.raises(ValueError, match="Modality 'img'"):
        MultiModal(img=np.array([["a", "b"]]))
    with pytest.raises(KeyError, match="No modality 'aud'"):
        MultiModal(img=np.ones((2, 2)))["aud"]


def test_read_only_and_inputs_untouched():
    x = np.arange(6, dtype=np.float64).reshape(3, 2)
    before = x.copy()
    mm = MultiModal(img=x)
    with pytest.raises(TypeError, match="read-only"):
        mm["txt"] = x
    np.testing.assert_array_equal(x, before)


def test_dtypes_and_sparse():
    # numeric dtypes are kept (the learners convert per batch): no copy
    a, b = np.ones((2, 2), dtype=int), np.ones((2, 2), dtype=bool)
    mm = MultiModal(a=a, b=b)
    assert mm["a"].dtype == a.dtype and mm["b"].dtype == np.bool_
    assert np.shares_memory(mm["a"], a)
    assert MultiModal(a=np.array([["1.5", "2"]]))["a"].dtype == np.float64
    assert MultiModal(a=np.ones((2, 2), np.float32))["a"].dtype == np.float32
    s = MultiModal(a=sp.random(5, 4, density=0.5, format="coo", random_state=0))
    assert sp.issparse(s["a"]) and s["a"].format == "csr"
    assert s[np.array([0, 2])]["a"].shape == (2, 4)


def test_pickle_and_as_modalities(mm):
    again = pickle.loads(pickle.dumps(mm))
    np.testing.assert_array_equal(again["img"], mm["img"])
    assert as_modalities(mm) is mm
    assert as_modalities(np.ones((3, 2))).modalities == ("X",)
    with pytest.raises(ValueError, match="X is None"):
        as_modalities(None)
