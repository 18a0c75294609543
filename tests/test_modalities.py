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


def test_row_keys_keep_rows_a_first_axis():
    # a 0-d array, None or a 2-D index gave modalities of another rank (a
    # 0-d array read as row 2 gave 4 "items", the width); True read as row 1
    X = MultiModal(img=np.arange(24.0).reshape(6, 4), txt=sp.random(6, 3, 0.5))
    one = X[np.array(2)]
    assert len(one) == 1 and one["img"].shape == (1, 4) and one["txt"].shape == (1, 3)
    assert np.array_equal(one["img"], X[2]["img"])
    mask = np.array([True, False, True, False, False, True])
    assert np.array_equal(X[mask]["img"], X[[0, 2, 5]]["img"])
    assert X[mask]["txt"].shape == (3, 3)
    assert len(X[np.array([], dtype=int)]) == 0
    for bad in (True, np.True_, None, np.array([[0, 1]]), np.array([0.5])):
        with pytest.raises((IndexError, TypeError), match="MultiModal rows cannot"):
            X[bad]
    with pytest.raises(IndexError, match="mask has length 4 but the MultiModal"):
        X[mask[:4]]


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
def test_byte_order_long_double_and_matrix_inputs_become_plain_native_arrays():
    # torch reads native byte order only and has no long double; np.matrix
    # broke the scalers' broadcasting
    a = np.random.RandomState(0).randn(5, 3)
    X = MultiModal(
        big=a.astype(">f8"), long=a.astype(np.longdouble), mat=np.asmatrix(a)
    )
    for name in ("big", "long", "mat"):
        assert type(X[name]) is np.ndarray and X[name].dtype.isnative
        np.testing.assert_array_equal(X[name], a)
    assert X["big"].dtype == np.float64 and X["long"].dtype == np.float64
