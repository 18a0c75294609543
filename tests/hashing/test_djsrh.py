import math
import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.utils._param_validation import InvalidParameterError
from skorch.callbacks import Callback

from skhash import MultiModal, unpack_bits
from skhash.hashing import DJSRHHasher
from skhash.hashing._djsrh import _DJSRHCriterion
from skhash.metrics import mean_average_precision, relevance
from skhash.nn import djsrh_affinity, djsrh_loss

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


@pytest.fixture(scope="module")
def fitted(data):
    X, _ = data
    return DJSRHHasher(random_state=0, **FAST).fit(X)


# -- the paper's formulas on hand-made tensors --------------------------------


def _np_affinity(features, beta, eta, mu):
    """The affinity written from the paper and the authors' code, in numpy."""
    sims = []
    for x in features:
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        sims.append(2 * xn @ xn.T - 1)
    s = sims[0] if len(sims) == 1 else beta * sims[0] + (1 - beta) * sims[1]
    m = s.shape[0]
    return mu * ((1 - eta) * s + eta * s @ s.T / m)


def _np_loss(codes, target, lambda1, lambda2):
    b = [c / np.linalg.norm(c, axis=1, keepdims=True) for c in codes]

    def mse(a, c):
        return ((a @ c.T - target) ** 2).mean()

    if len(b) == 1:
        return mse(b[0], b[0])
    return mse(b[0], b[1]) + lambda1 * mse(b[0], b[0]) + lambda2 * mse(b[1], b[1])


def test_affinity_hand_computed():
    # S_I = 2 I - 1; texts identical, so S_T = 1 everywhere
    img = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    txt = torch.tensor([[1.0, 0.0], [2.0, 0.0]])
    # S~ = 0.25 [[1, -1], [-1, 1]] + 0.75 = [[1, .5], [.5, 1]]
    # S~ S~^T / 2 = [[.625, .5], [.5, .625]];  S = .5 S~ + .5 S~S~^T/2
    S = djsrh_affinity([img, txt], beta=0.25, eta=0.5, mu=2.0)
    expected = torch.tensor([[1.625, 1.0], [1.0, 1.625]])
    torch.testing.assert_close(S, expected)


def test_affinity_matches_formula_on_random_batch():
    rng = np.random.RandomState(0)
    img, txt = rng.rand(7, 5), rng.randn(7, 3)
    for beta, eta, mu in [(0.3, 0.4, 1.5), (1.0, 0.0, 1.0), (0.0, 1.0, 0.7)]:
        got = djsrh_affinity(
            [torch.tensor(img), torch.tensor(txt)], beta=beta, eta=eta, mu=mu
        )
        np.testing.assert_allclose(
            got.numpy(), _np_affinity([img, txt], beta, eta, mu), rtol=1e-10
        )
    # one modality: S~ = S_1 and beta is unused
    got = djsrh_affinity([torch.tensor(img)], beta=0.9, eta=0.4, mu=1.5)
    np.testing.assert_allclose(
        got.numpy(), _np_affinity([img], None, 0.4, 1.5), rtol=1e-10
    )


def test_loss_hand_computed():
    b1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b2 = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    target = torch.tensor([[1.625, 1.0], [1.0, 1.625]])
    # cross 4.03125 / 4, within-1 2.78125 / 4, within-2 0.78125 / 4
    expected = 1.0078125 + 0.5 * 0.6953125 + 2.0 * 0.1953125
    loss = djsrh_loss([b1, b2], target, lambda1=0.5, lambda2=2.0)
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    # cosines: the scale of the codes does not matter
    loss3 = djsrh_loss([3 * b1, 0.1 * b2], target, lambda1=0.5, lambda2=2.0)
    assert loss3.item() == pytest.approx(expected, abs=1e-6)
    single = djsrh_loss([b1], target, lambda1=0.5, lambda2=2.0)
    assert single.item() == pytest.approx(0.6953125, abs=1e-6)


@pytest.mark.parametrize("modalities", [("img", "txt"), ("X",)])
def test_criterion_uses_batch_inputs_and_alpha(modalities):
    rng = np.random.RandomState(1)
    n, m, d = 20, 6, 4
    feats = {name: rng.randn(n, 3 + i) for i, name in enumerate(modalities)}
    idx = np.array([3, 17, 0, 9, 12, 5])
    H = {name: rng.randn(m, d) for name in modalities}
    crit = _DJSRHCriterion(
        modalities,
        beta=0.3,
        eta=0.4,
        mu=1.5,
        lambda1=0.2,
        lambda2=0.7,
        alpha=math.sqrt,
    )
    crit.features = {k: torch.tensor(v) for k, v in feats.items()}
    crit.begin_epoch(4)  # alpha = sqrt(4) = 2
    y_pred = {k: torch.tensor(v) for k, v in H.items()}
    y_pred["index"] = torch.tensor(idx)
    loss = crit(y_pred, torch.zeros(m))
    target = _np_affinity([feats[k][idx] for k in modalities], 0.3, 0.4, 1.5)
    codes = [np.tanh(2.0 * H[k]) for k in modalities]
    assert loss.item() == pytest.approx(_np_loss(codes, target, 0.2, 0.7), rel=1e-9)
    terms = crit.end_epoch()
    assert terms["alpha"] == 2.0
    if len(modalities) == 2:
        assert terms["loss_within_img"] == pytest.approx(
            _np_loss(codes[:1], target, 0, 0), rel=1e-9
        )


def test_criterion_outside_fit_raises():
    crit = _DJSRHCriterion(
        ("X",), beta=0.3, eta=0.4, mu=1.5, lambda1=0.3, lambda2=0.3, alpha=math.sqrt
    )
    with pytest.raises(RuntimeError, match="no training inputs"):
        crit({"X": torch.zeros(2, 3), "index": torch.arange(2)}, torch.zeros(2))


# -- the estimator ---------------------------------------------------------------


def test_transform_codeset_contract(fitted, data):
    X, _ = data
    codes = fitted.transform(X)
    assert codes.modalities == ("img", "txt")
    assert not codes.has("codes") and codes.codebooks is None
    img = codes["img"]
    assert img.embedding.shape == (120, 8) and img.embedding.dtype == np.float32
    assert img.bits.shape == (120, 1) and img.bits.dtype == np.uint8
    # the embedding is tanh(alpha H) with the last epoch's alpha; bits = sgn H
    assert fitted.alpha_ == pytest.approx(math.sqrt(3))
    mean, scale = fitted.scaler_["img"]
    standardized = torch.as_tensor(((X["img"] - mean) / scale).astype(np.float32))
    H = fitted.net_.module_.towers["img"](standardized).detach().numpy()
    np.testing.assert_allclose(img.embedding, np.tanh(fitted.alpha_ * H), atol=1e-6)
    np.testing.assert_array_equal(unpack_bits(img.bits, 8) > 0, H > 0)
    only_txt = fitted.transform(MultiModal(txt=X["txt"][:5]))
    assert only_txt.modalities == ("txt",) and len(only_txt) == 5


def test_history_and_alpha_schedule(fitted, data):
    X, _ = data
    assert len(fitted.history_) == 3
    for term in ("train_loss", "loss_cross", "loss_within_img", "loss_within_txt"):
        assert term in fitted.history_[-1]
    np.testing.assert_allclose(fitted.history_[:, "alpha"], np.sqrt([1, 2, 3]))
    params = {**FAST, "max_epochs": 2}
    const = DJSRHHasher(alpha_schedule=2.5, random_state=0, **params).fit(X)
    assert const.history_[:, "alpha"] == [2.5, 2.5] and const.alpha_ == 2.5
    lin = DJSRHHasher(alpha_schedule=lambda t: 0.5 * t, random_state=0, **params)
    assert lin.fit(X).history_[:, "alpha"] == [0.5, 1.0]
    with pytest.raises(ValueError, match="alpha_schedule gave"):
        DJSRHHasher(alpha_schedule=lambda t: -1.0, **params).fit(X)


def test_labels_change_nothing(data, fitted):
    X, y = data
    ref = fitted.transform(X)
    for labels in (y, np.zeros(120), np.eye(3)[y]):
        got = DJSRHHasher(random_state=0, **FAST).fit(X, labels).transform(X)
        for m in ("img", "txt"):
            np.testing.assert_array_equal(got[m].embedding, ref[m].embedding)
            np.testing.assert_array_equal(got[m].bits, ref[m].bits)
    assert DJSRHHasher.__sklearn_tags__(DJSRHHasher()).target_tags.required is False


def test_same_seed_same_codes_refit(data):
    X, _ = data
    np_state = np.random.get_state()[1].copy()
    torch_state = torch.get_rng_state().clone()
    est = DJSRHHasher(random_state=3, **FAST)
    a = est.fit(X).transform(X)
    b = est.fit(X).transform(X)  # refitting the same object
    c = DJSRHHasher(random_state=3, **FAST).fit(X).transform(X)
    d = DJSRHHasher(random_state=4, **FAST).fit(X).transform(X)
    np.testing.assert_array_equal(np.random.get_state()[1], np_state)
    assert torch.equal(torch.get_rng_state(), torch_state)
    for other in (b, c):
        for m in ("img", "txt"):
            np.testing.assert_array_equal(a[m].embedding, other[m].embedding)
            np.testing.assert_array_equal(a[m].bits, other[m].bits)
    assert not np.array_equal(a["img"].embedding, d["img"].embedding)


class _Spy(Callback):
    def on_train_begin(self, net, **kwargs):
        self.features = {k: v.clone() for k, v in net.criterion_.features.items()}


class _SpiedDJSRH(DJSRHHasher):
    def _callbacks(self, rng):
        self.spy = _Spy()
        return [*super()._callbacks(rng), ("spy", self.spy)]


@pytest.mark.parametrize("standardize", [True, False])
@pytest.mark.parametrize("source", ["inputs", "dict"])
def test_affinity_uses_the_towers_inputs(data, standardize, source):
    # "inputs", and with a dict the modalities it does not name: each tower's
    # (standardised) input; a side modality as given
    X, _ = data
    side = 3.0 * X["img"][:, ::-1] + 5.0
    if source == "dict":
        X = MultiModal(img=X["img"], txt=X["txt"], img_side=side)
        source = {"img": "img_side"}
    est = _SpiedDJSRH(
        standardize=standardize, affinity_features=source, random_state=0, **FAST
    ).fit(X)
    for m in ("img", "txt"):
        mean, scale = est.scaler_[m]
        expected = side if isinstance(source, dict) and m == "img" else X[m]
        if expected is X[m]:
            expected = (X[m] - mean) / scale
        np.testing.assert_allclose(
            est.spy.features[m].numpy(), expected, rtol=1e-5, atol=1e-6
        )
    assert est.standardize or np.all(est.scaler_["img"][1] == 1)
    # the training inputs are not kept in the fitted network
    assert est.net_.criterion_.features is None


def test_single_modal_plain_array(small_cross_modal):
    X_img, _, _ = small_cross_modal
    est = DJSRHHasher(random_state=0, **FAST).fit(X_img)
    codes = est.transform(X_img)
    assert codes.modalities == ("X",) and est.n_features_in_ == 8
    assert codes.bits.shape == (120, 1)
    assert "loss_cross" not in est.history_[-1]
    with pytest.raises(ValueError, match="X has 3 features"):
        est.transform(X_img[:, :3])


def test_more_than_two_modalities_raise(small_cross_modal):
    X_img, X_txt, _ = small_cross_modal
    X = MultiModal(a=X_img, b=X_txt, c=X_txt)
    with pytest.raises(ValueError, match="one or two modalities; got 3"):
        DJSRHHasher(**FAST).fit(X)


def test_invalid_params(data):
    X, _ = data
    for bad in (
        {"alpha_schedule": "linear"},
        {"alpha_schedule": 0.0},
        {"beta": 1.5},
        {"eta": -0.1},
        {"mu": 0},
        {"lambda1": -1},
        {"n_bits": 0},
    ):
        with pytest.raises(InvalidParameterError):
            DJSRHHasher(**{**FAST, **bad}).fit(X)


def _cross_modal_map(est, X, y):
    """MAP@10 of image queries over the text codes of the same fold."""
    codes = est.transform(X)
    qi = unpack_bits(codes["img"].bits, est.n_bits).astype(float)
    dt = unpack_bits(codes["txt"].bits, est.n_bits).astype(float)
    return mean_average_precision(relevance(y, y), qi @ dt.T, k=10)


def test_gridsearch_over_paper_weights(data):
    X, y = data
    grid = {
        "beta": [0.3, 0.7],
        "eta": [0.0, 0.4],
        "mu": [1.5],
        "lambda1": [0.3],
        "lambda2": [0.3],
        "n_bits": [8],
        "max_epochs": [2],
    }
    search = GridSearchCV(
        DJSRHHasher(random_state=0, **FAST), grid, cv=2, scoring=_cross_modal_map
    ).fit(X, y)
    assert search.best_params_["beta"] in (0.3, 0.7)
    assert 0.0 <= search.best_score_ <= 1.0
    assert clone(search.best_estimator_).get_params()["eta"] in (0.0, 0.4)


def test_pickle_roundtrip(fitted, data):
    X, _ = data
    again = pickle.loads(pickle.dumps(fitted))
    a, b = fitted.transform(X), again.transform(X)
    for m in ("img", "txt"):
        np.testing.assert_array_equal(a[m].bits, b[m].bits)
        np.testing.assert_array_equal(a[m].embedding, b[m].embedding)
    assert again.net_.criterion_.features is None


def test_not_fitted_error(data):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        DJSRHHasher().transform(data[0])


@pytest.mark.gpu
def test_cuda_fit(data):
    X, _ = data
    est = DJSRHHasher(random_state=0, **{**FAST, "device": "cuda"}).fit(X)
    assert est.device_ == "cuda" and est.net_.criterion_.features is None
    # the default affinity's CCA runs on the host copies of the CUDA features
    assert est.canonical_correlations_.shape == (5,)
    codes = est.transform(X)
    assert codes["img"].bits.shape == (120, 1)
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.transform(X)["txt"].bits, codes["txt"].bits)
