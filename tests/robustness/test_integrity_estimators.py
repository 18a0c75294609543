"""Issue 12, estimators: structure after fit, validation by name, immutability,
feature names per modality."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.utils._param_validation import InvalidParameterError

from skhash import DQNQuantizer, HQHasher, MultiModal
from skhash.hashing import DJSRHHasher

_TOWER = dict(hidden_layer_sizes=(8,), device="cpu", random_state=0, max_epochs=1)
LEARNERS = {
    "HQHasher": HQHasher(n_bits=16, n_codebooks=2, n_codewords=4, **_TOWER),
    "DQNQuantizer": DQNQuantizer(n_codebooks=2, n_codewords=4, n_dims=8, **_TOWER),
    "DJSRHHasher": DJSRHHasher(n_bits=16, batch_size=16, **_TOWER),
}
COUNTS = {
    "HQHasher": (
        "n_bits",
        "n_codebooks",
        "max_epochs",
        "batch_size",
        "quantization_warmup",
        "n_icm_iter",
        "n_jobs",
    ),
    "DQNQuantizer": (
        "n_dims",
        "n_codebooks",
        "max_epochs",
        "batch_size",
        "quantization_warmup",
        "n_jobs",
    ),
    "DJSRHHasher": ("n_bits", "max_epochs", "batch_size", "n_jobs"),
}


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    y = np.arange(48) % 3
    X = MultiModal(img=rng.randn(48, 6) + y[:, None], txt=rng.randn(48, 4) - y[:, None])
    return X, y


def _y(name, y):
    return None if name == "DJSRHHasher" else y


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_bools_are_refused_where_counts_are_expected(name, data):
    X, y = data
    for param in COUNTS[name]:
        for value in (True, False, np.bool_(True)):
            est = clone(LEARNERS[name]).set_params(**{param: value})
            with pytest.raises(InvalidParameterError, match=f"{param}={value!r}"):
                est.fit(X, _y(name, y))
            assert not hasattr(est, "net_")
    with pytest.raises(InvalidParameterError, match="random_state"):
        clone(LEARNERS[name]).set_params(random_state=True).fit(X, _y(name, y))


@pytest.mark.parametrize("name", sorted(LEARNERS))
@pytest.mark.parametrize(
    "sizes", [(0,), (-1,), (8.0,), (True,), (8, 0), ("8",), (2**21,)]
)
def test_hidden_layer_sizes_must_be_positive_ints(name, sizes, data):
    X, y = data
    est = clone(LEARNERS[name]).set_params(hidden_layer_sizes=sizes)
    with pytest.raises(InvalidParameterError, match="hidden_layer_sizes="):
        est.fit(X, _y(name, y))


@pytest.mark.parametrize(
    "device, match",
    [
        ("gpu", "named 'cuda'"),
        ("meta", "'meta' device"),
        ("cuda:x", "not a device name"),
        ("", "not a device name"),
        ("xla", "not a device name|'xla' device"),
    ],
)
def test_device_names_are_checked(device, match, data):
    X, y = data
    with pytest.raises(ValueError, match=match):
        clone(LEARNERS["HQHasher"]).set_params(device=device).fit(X, y)


@pytest.mark.parametrize("name", ["HQHasher", "DJSRHHasher"])
def test_huge_n_bits_is_a_clear_error(name, data):
    X, y = data
    for n_bits in (65537, 10**9):
        est = clone(LEARNERS[name]).set_params(n_bits=n_bits)
        with pytest.raises(InvalidParameterError, match=r"n_bits.*\[1, 65536\]"):
            est.fit(X, _y(name, y))
    est = clone(LEARNERS["DQNQuantizer"]).set_params(n_dims=10**7)
    with pytest.raises(InvalidParameterError, match="n_dims"):
        est.fit(X, y)


@pytest.mark.parametrize(
    "labels, match",
    [
        (lambda y: ["a", 1] * (len(y) // 2), "mixes strings and numbers"),
        (lambda y: [None, *y[1:]], "missing labels"),
        (lambda y: np.array([*y[:-1], None], dtype=object), "missing labels"),
        (lambda y: [float("nan"), *y[1:].tolist()], "missing labels"),
        (lambda y: [{"a": 1}] * len(y), "Unknown label type"),
        (lambda y: np.r_[y[:-1], np.inf], "infinity"),
    ],
)
def test_labels_of_mixed_or_missing_types(labels, match, data):
    X, y = data
    with pytest.raises(ValueError, match=match):
        clone(LEARNERS["HQHasher"]).fit(X, labels(y))


def test_object_labels_of_one_type_are_accepted(data):
    X, y = data
    a = clone(LEARNERS["HQHasher"]).fit(X, y.astype(object))
    b = clone(LEARNERS["HQHasher"]).fit(X, np.array([f"c{v}" for v in y], object))
    np.testing.assert_array_equal(
        a.transform(X)["img"].bits, b.transform(X)["img"].bits
    )


@pytest.mark.parametrize(
    "name, changes",
    [
        ("HQHasher", {"n_bits": 12}),
        ("HQHasher", {"n_codebooks": 3, "n_codewords": 8}),
        ("HQHasher", {"hidden_layer_sizes": (4,)}),
        ("DQNQuantizer", {"n_dims": 4, "similarity": "ip"}),
        ("DJSRHHasher", {"n_bits": 8}),
    ],
)
def test_structure_changed_after_fit_keeps_codes_consistent(name, changes, data):
    X, y = data
    est = clone(LEARNERS[name]).fit(X, _y(name, y))
    before = est.transform(X)
    est.set_params(**changes)
    after = est.transform(X)  # codes of the fitted structure
    for m in ("img", "txt"):
        np.testing.assert_array_equal(after[m].embedding, before[m].embedding)
        if before[m].bits is not None:
            np.testing.assert_array_equal(after[m].bits, before[m].bits)
            assert after[m].n_bits == before[m].n_bits
        if before[m].codes is not None:
            np.testing.assert_array_equal(after[m].codes, before[m].codes)
    # a warm start cannot continue a network of another structure
    est.set_params(warm_start=True)
    with pytest.raises(Exception, match="fitted with another structure"):
        est.fit(X, _y(name, y))
    # a plain refit uses the new structure
    est.set_params(warm_start=False).fit(X, _y(name, y))
    assert all(est.structure_[k] == v for k, v in changes.items())


def test_multimodal_is_immutable_and_its_arrays_read_only():
    a = np.zeros((4, 3))
    X = MultiModal(img=a, txt=np.ones((4, 2)))
    for call in (
        lambda: X.pop("img"),
        lambda: X.popitem(),
        lambda: X.__delitem__("img"),
        lambda: X.setdefault("aud", np.ones((3, 2))),
        lambda: X.clear(),
        lambda: X.update(aud=np.ones((4, 1))),
        lambda: X.__ior__({"aud": np.ones((4, 1))}),
        lambda: X.__setitem__("img", a),
    ):
        with pytest.raises(TypeError, match="read-only"):
            call()
    assert X.modalities == ("img", "txt") and len(X) == 4
    with pytest.raises(ValueError, match="read-only"):
        X["img"][0, 0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        X[1:3]["img"][0, 0] = 1.0  # row slices are read-only views too
    a[0, 0] = 5.0  # the user's own array keeps its flags
    assert a.flags.writeable and X["img"][0, 0] == 5.0
    with pytest.raises(TypeError, match="read-only"):
        X |= {"aud": np.ones((4, 1))}


def test_feature_names_per_modality():
    pd = pytest.importorskip("pandas")
    rng = np.random.RandomState(0)
    y = np.arange(40) % 2
    img = pd.DataFrame(rng.randn(40, 3), columns=["r", "g", "b"])
    txt = rng.randn(40, 2)
    hq = clone(LEARNERS["HQHasher"]).fit(MultiModal(img=img, txt=txt), y)
    assert list(hq.feature_names_in_) == ["img"]
    assert list(hq.feature_names_in_["img"]) == ["r", "g", "b"]
    hq.transform(MultiModal(img=img, txt=txt))  # no warning
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        hq.transform(MultiModal(img=img.to_numpy(), txt=txt))
    with pytest.warns(UserWarning, match="has feature names, but HQHasher was fitted"):
        hq.transform(MultiModal(txt=pd.DataFrame(txt, columns=["u", "v"])))
    with pytest.raises(ValueError, match="unseen at fit time"):
        hq.transform(MultiModal(img=img.rename(columns={"b": "blue"})))
    with pytest.raises(ValueError, match="another order"):
        hq.transform(MultiModal(img=img[["b", "g", "r"]]))
    single = clone(LEARNERS["HQHasher"]).fit(img, y)
    assert list(single.feature_names_in_) == ["r", "g", "b"]
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        single.transform(img.to_numpy())
    # refit on plain arrays drops the names
    assert not hasattr(single.fit(img.to_numpy(), y), "feature_names_in_")
