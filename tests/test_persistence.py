"""Fitted learners and pipelines persist without pickle (skops), and their
pickles carry no torch object, so a CUDA-trained model loads on a CPU."""

import io
import pickle
import warnings

import joblib
import numpy as np
import pytest
import skops.io as sio
import torch
from sklearn.preprocessing import StandardScaler

from skhash import (
    DJSRHHasher,
    DQNQuantizer,
    HQHasher,
    MultiModal,
    Pipeline,
    TwoStageRetriever,
)
from skhash._state import NET_STATE_FORMAT
from skhash.exceptions import DeviceWarning
from skhash.utils import trusted_types

RNG = np.random.RandomState(0)
N = 60
Y = RNG.randint(3, size=N)
X_IMG = (RNG.randn(N, 6) + Y[:, None]).astype(np.float32)
X_TXT = (RNG.randn(N, 4) - Y[:, None]).astype(np.float32)
X = MultiModal(img=X_IMG, txt=X_TXT)

SMALL = dict(hidden_layer_sizes=(8,), max_epochs=2, device="cpu", random_state=0)
LEARNERS = {
    "HQHasher": lambda: HQHasher(
        n_bits=8, n_codebooks=2, n_codewords=4, quantization_warmup=0, **SMALL
    ),
    "DQNQuantizer": lambda: DQNQuantizer(n_codebooks=2, n_codewords=4, **SMALL),
    "DJSRHHasher": lambda: DJSRHHasher(n_bits=8, batch_size=16, **SMALL),
}


def _same_codes(a, b):
    assert a.modalities == b.modalities
    for m in a.modalities:
        for part in ("embedding", "bits", "codes"):
            pa, pb = a.get(m, part), b.get(m, part)
            assert (pa is None) == (pb is None), (m, part)
            if pa is not None:
                np.testing.assert_array_equal(pa, pb)
    if a.codebooks is not None:
        np.testing.assert_array_equal(a.codebooks, b.codebooks)


@pytest.fixture(scope="module", params=list(LEARNERS))
def fitted(request):
    return request.param, LEARNERS[request.param]().fit(X, Y)


@pytest.fixture(scope="module")
def pipelines():
    return {
        name: Pipeline(
            [("learn", make()), ("search", TwoStageRetriever(alpha=20))]
        ).fit(X_IMG, X_TXT, Y)
        for name, make in LEARNERS.items()
    }


def _torch_objects(obj, path="state", seen=None):
    """Paths of torch/skorch objects reachable from ``obj``'s containers."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    module = type(obj).__module__ or ""
    if module.startswith(("torch", "skorch")) and not isinstance(obj, type):
        return [path]
    found = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            found += _torch_objects(v, f"{path}[{k!r}]", seen)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            found += _torch_objects(v, f"{path}[{i}]", seen)
    return found


def test_state_holds_no_torch_object(fitted):
    _, est = fitted
    state = est.__getstate__()
    assert state["net_"]["format"] == NET_STATE_FORMAT
    assert "history_" not in state
    assert _torch_objects(state) == []
    # the live estimator is untouched by taking its state
    assert isinstance(est.net_.module_, torch.nn.Module)


@pytest.mark.parametrize("how", ["pickle", "joblib"])
def test_pickle_round_trip_gives_the_same_codes(fitted, how):
    _, est = fitted
    if how == "pickle":
        loaded = pickle.loads(pickle.dumps(est))
    else:
        buf = io.BytesIO()
        joblib.dump(est, buf)
        buf.seek(0)
        loaded = joblib.load(buf)
    _same_codes(loaded.transform(X), est.transform(X))
    assert loaded.history_ is loaded.net_.history
    assert [r["epoch"] for r in loaded.history_] == [r["epoch"] for r in est.history_]
    assert loaded.history_[-1, "train_loss"] == pytest.approx(
        est.history_[-1, "train_loss"]
    )


def test_loading_leaves_the_global_torch_random_state_alone(fitted):
    _, est = fitted
    blob = pickle.dumps(est)
    before = torch.get_rng_state().clone()
    pickle.loads(blob)
    assert torch.equal(torch.get_rng_state(), before)


def test_a_cuda_model_loads_on_a_cpu_machine(fitted, monkeypatch):
    name, est = fitted
    state = est.__getstate__()
    state["device_"] = "cuda:0"  # as written by a model fitted on a GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    loaded = type(est).__new__(type(est))
    with pytest.warns(DeviceWarning, match="loaded on the CPU"):
        loaded.__setstate__(state)
    assert loaded.device_ == "cpu"
    _same_codes(loaded.transform(X), est.transform(X))


def test_an_unknown_state_version_is_refused(fitted):
    _, est = fitted
    state = est.__getstate__()
    state["net_"] = {**state["net_"], "version": 99}
    loaded = type(est).__new__(type(est))
    with pytest.raises(ValueError, match="network-state version 99"):
        loaded.__setstate__(state)


def test_weights_that_do_not_fit_the_architecture_are_refused(fitted):
    _, est = fitted
    state = est.__getstate__()
    module = dict(state["net_"]["module"])
    key = next(iter(module))
    module[key] = np.zeros((3, 3), dtype=np.float32)
    state["net_"] = {**state["net_"], "module": module}
    loaded = type(est).__new__(type(est))
    with pytest.raises(ValueError, match="do not fit the network"):
        loaded.__setstate__(state)


def test_skops_round_trip_of_a_fitted_learner(fitted, tmp_path):
    _, est = fitted
    path = tmp_path / "learner.skops"
    sio.dump(est, path)
    untrusted = sio.get_untrusted_types(file=path)
    assert set(untrusted) <= set(trusted_types()), sorted(
        set(untrusted) - set(trusted_types())
    )
    with pytest.raises(sio.exceptions.UntrustedTypesFoundException):
        sio.load(path)
    loaded = sio.load(path, trusted=trusted_types())
    assert type(loaded) is type(est)
    _same_codes(loaded.transform(X), est.transform(X))


@pytest.mark.parametrize("name", list(LEARNERS))
def test_skops_round_trip_of_a_fitted_pipeline(name, pipelines, tmp_path):
    pipe = pipelines[name]
    path = tmp_path / "pipe.skops"
    sio.dump(pipe, path)
    assert set(sio.get_untrusted_types(file=path)) <= set(trusted_types())
    loaded = sio.load(path, trusted=trusted_types())
    Q_IMG, Q_TXT = X_IMG[:20] + 0.1, X_TXT[:20] - 0.1
    assert loaded.score(Q_IMG, Q_TXT, Y[:20]) == pipe.score(Q_IMG, Q_TXT, Y[:20])
    for a, b in zip(
        loaded.kneighbors(Q_IMG, Q_TXT, direction="img->txt"),
        pipe.kneighbors(Q_IMG, Q_TXT, direction="img->txt"),
    ):
        np.testing.assert_array_equal(a, b)


def test_skops_round_trip_of_a_pipeline_with_a_scaler(tmp_path):
    pipe = Pipeline(
        [
            ("scale", StandardScaler()),
            ("learn", LEARNERS["DQNQuantizer"]()),
            ("search", TwoStageRetriever()),
        ],
        modalities=None,
    ).fit(X_IMG, Y)
    path = tmp_path / "pipe.skops"
    sio.dump(pipe, path)
    loaded = sio.load(path, trusted=trusted_types())
    assert loaded.score(X_IMG, Y) == pipe.score(X_IMG, Y)


def test_a_loaded_learner_refits_like_a_fresh_one(fitted):
    _, est = fitted
    loaded = pickle.loads(pickle.dumps(est))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        refit = loaded.fit(X, Y)
    fresh = type(est)(**est.get_params()).fit(X, Y)
    _same_codes(refit.transform(X), fresh.transform(X))
