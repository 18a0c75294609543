"""DJSRHHasher's affinity in the canonical space of the training pairs
(``affinity_features="cca"``, and ``"auto"``, the default)."""

import numpy as np
import pytest
import scipy.linalg
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import InvalidParameterError
from skorch.callbacks import Callback

from skhash import MultiModal, unpack_bits
from skhash.hashing import DJSRHHasher
from skhash.hashing import _affinity as affinity_module
from skhash.hashing import _djsrh as djsrh_module
from skhash.hashing._affinity import canonical_features, fit_canonical
from skhash.metrics import mean_average_precision, relevance

FAST = {
    "n_bits": 8,
    "hidden_layer_sizes": (16,),
    "max_epochs": 2,
    "batch_size": 16,
    "device": "cpu",
    "n_affinity_neighbors": 10,
}


@pytest.fixture(scope="module")
def data(small_cross_modal):
    X_img, X_txt, y = small_cross_modal
    return MultiModal(img=X_img, txt=X_txt), y


def _paired(n=60, seed=0):
    """Two views of a 3-d latent, plus noise of their own."""
    rng = np.random.RandomState(seed)
    z = rng.randn(n, 3)
    a = z @ rng.randn(3, 6) + 0.5 * rng.randn(n, 6)
    b = z @ rng.randn(3, 4) + 0.5 * rng.randn(n, 4)
    return a, b


def _covariances(a, b, ridge):
    a, b = a - a.mean(0), b - b.mean(0)
    n = len(a)
    caa, cbb, cab = a.T @ a / n, b.T @ b / n, a.T @ b / n
    caa = caa + ridge * np.trace(caa) / len(caa) * np.eye(len(caa))
    cbb = cbb + ridge * np.trace(cbb) / len(cbb) * np.eye(len(cbb))
    return caa, cbb, cab


# -- the closed-form CCA, against its definition ------------------------------


@pytest.mark.parametrize("ridge", [0.0, 0.1])
def test_correlations_match_the_generalised_eigenproblem(ridge):
    a, b = _paired()
    caa, cbb, cab = _covariances(a, b, ridge)
    # ρ² are the eigenvalues of C_ab C_bb⁻¹ C_ba against C_aa
    rho2 = scipy.linalg.eigh(cab @ np.linalg.solve(cbb, cab.T), caa, eigvals_only=True)
    expected = np.sqrt(np.clip(np.sort(rho2)[::-1][: b.shape[1]], 0, None))
    got = fit_canonical(a, b, ridge=ridge).correlations
    np.testing.assert_allclose(got, expected, rtol=1e-8, atol=1e-10)
    assert got[0] > 0.8 > got[-1]  # 3 shared directions, 1 of noise only


@pytest.mark.parametrize("ridge", [0.0, 0.1])
def test_directions_whiten_and_pair_the_modalities(ridge):
    a, b = _paired()
    caa, cbb, cab = _covariances(a, b, ridge)
    cca = fit_canonical(a, b, ridge=ridge, power=0.0)  # unscaled variates
    wa, wb = cca.weights
    np.testing.assert_allclose(wa.T @ caa @ wa, np.eye(4), atol=1e-8)
    np.testing.assert_allclose(wb.T @ cbb @ wb, np.eye(4), atol=1e-8)
    np.testing.assert_allclose(wa.T @ cab @ wb, np.diag(cca.correlations), atol=1e-8)
    # the default scales each direction by its correlation
    scaled = fit_canonical(a, b, ridge=ridge)
    np.testing.assert_allclose(scaled.weights[0], wa * cca.correlations, atol=1e-10)
    np.testing.assert_allclose(scaled.weights[1], wb * cca.correlations, atol=1e-10)


def test_projection_is_centred_by_the_training_means():
    a, b = _paired()
    cca = fit_canonical(a, b)
    pa, pb = canonical_features(cca, [a, b])
    assert pa.dtype == np.float32 and pa.shape == (60, 4) and pb.shape == (60, 4)
    np.testing.assert_allclose(pa.mean(0), 0, atol=1e-5)
    expected = (a[:5] - a.mean(0)) @ cca.weights[0]
    np.testing.assert_allclose(canonical_features(cca, [a[:5], b[:5]])[0], expected)


def test_blocks_of_rows_give_the_whole_arrays_result(monkeypatch):
    a, b = _paired(n=50)
    whole = fit_canonical(a, b)
    full = canonical_features(whole, [a, b])
    monkeypatch.setattr(affinity_module, "CCA_BLOCK_SIZE", 7)  # 8 blocks, 1 short
    blocked = fit_canonical(a.astype(np.float32), b.astype(np.float32))
    np.testing.assert_allclose(blocked.correlations, whole.correlations, rtol=1e-5)
    for x, y in zip(blocked.weights, whole.weights):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)
    for x, y in zip(canonical_features(whole, [a, b]), full):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-6)
    exact = fit_canonical(a, b)  # the same float64 inputs, blocked
    np.testing.assert_allclose(exact.correlations, whole.correlations, rtol=1e-12)


def test_deterministic_signs_and_degenerate_inputs():
    a, b = _paired()
    first, again = fit_canonical(a, b), fit_canonical(a.copy(), b.copy())
    for x, y in zip(first.weights, again.weights):
        np.testing.assert_array_equal(x, y)
    # the largest entry of each image direction is positive
    u = first.weights[0]
    assert np.all(u[np.abs(u).argmax(0), np.arange(u.shape[1])] > 0)
    # a constant modality, and more features than items: finite, no error
    flat = fit_canonical(np.ones((5, 3)), b[:5])
    assert np.all(np.isfinite(flat.weights[0])) and np.all(flat.correlations < 1e-6)
    wide = fit_canonical(a[:4], b[:4], ridge=0.0)
    assert all(np.all(np.isfinite(w)) for w in wide.weights)


# -- the learner ----------------------------------------------------------------


class _Spy(Callback):
    def on_train_begin(self, net, **kwargs):
        crit = net.criterion_
        self.features = {k: v.clone().numpy() for k, v in crit.features.items()}
        self.valid = None
        if crit.valid_features is not None:
            self.valid = {k: v.clone().numpy() for k, v in crit.valid_features.items()}


class _SpiedDJSRH(DJSRHHasher):
    def _callbacks(self, rng):
        self.spy = _Spy()
        return [*super()._callbacks(rng), ("spy", self.spy)]


@pytest.mark.parametrize("standardize", [True, False])
def test_affinity_features_are_the_canonical_projections(data, standardize):
    X, _ = data
    est = _SpiedDJSRH(
        affinity_features="cca", standardize=standardize, random_state=0, **FAST
    ).fit(X)
    inputs = [(X[m] - est.scaler_[m][0]) / est.scaler_[m][1] for m in ("img", "txt")]
    cca = fit_canonical(*[x.astype(np.float32) for x in inputs])
    for m, expected in zip(("img", "txt"), canonical_features(cca, inputs)):
        np.testing.assert_allclose(est.spy.features[m], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(est.canonical_correlations_, cca.correlations)
    assert est.net_.criterion_.features is None  # not kept after training


def test_cca_is_fitted_on_the_training_part_only(data):
    X, _ = data
    est = _SpiedDJSRH(
        affinity_features="cca", train_split=0.25, random_state=0, **FAST
    ).fit(X)
    valid = est.validation_indices_
    train = np.setdiff1d(np.arange(len(X)), valid)
    inputs = [(X[m] - est.scaler_[m][0]) / est.scaler_[m][1] for m in ("img", "txt")]
    cca = fit_canonical(*[x[train].astype(np.float32) for x in inputs])
    np.testing.assert_allclose(est.canonical_correlations_, cca.correlations)
    expected = canonical_features(cca, [x[valid] for x in inputs])
    for m, e in zip(("img", "txt"), expected):
        np.testing.assert_allclose(est.spy.valid[m], e, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("affinity", ["paper", "knn"])
@pytest.mark.parametrize("standardize", [True, False])
def test_cca_codes_are_reproducible(data, affinity, standardize):
    X, _ = data
    params = dict(affinity=affinity, standardize=standardize, random_state=3, **FAST)
    a = DJSRHHasher(affinity_features="cca", **params).fit(X).transform(X)
    b = DJSRHHasher(affinity_features="cca", **params).fit(X).transform(X)
    c = DJSRHHasher(affinity_features="inputs", **params).fit(X).transform(X)
    for m in ("img", "txt"):
        np.testing.assert_array_equal(a[m].bits, b[m].bits)
        np.testing.assert_array_equal(a[m].embedding, b[m].embedding)
    assert not np.array_equal(a["img"].embedding, c["img"].embedding)


def test_auto_is_the_default_and_resolves_by_modalities(data):
    X, _ = data
    assert DJSRHHasher().affinity_features == "auto"
    two = DJSRHHasher(random_state=0, **FAST).fit(X)
    cca = DJSRHHasher(affinity_features="cca", random_state=0, **FAST).fit(X)
    np.testing.assert_array_equal(
        two.canonical_correlations_, cca.canonical_correlations_
    )
    np.testing.assert_array_equal(
        two.transform(X)["txt"].bits, cca.transform(X)["txt"].bits
    )
    assert two.canonical_correlations_.shape == (5,)  # min(8, 5) directions
    assert np.all(np.diff(two.canonical_correlations_) <= 0)
    # one modality: "auto" falls back to the inputs' affinity
    single = DJSRHHasher(random_state=0, **FAST).fit(X["img"])
    inputs = DJSRHHasher(affinity_features="inputs", random_state=0, **FAST)
    np.testing.assert_array_equal(
        single.transform(X["img"]).bits, inputs.fit(X["img"]).transform(X["img"]).bits
    )
    assert single.canonical_correlations_ is None
    assert inputs.canonical_correlations_ is None
    # a refit with the inputs' affinity does not keep the stale correlations
    assert (
        cca.set_params(affinity_features="inputs").fit(X).canonical_correlations_
        is None
    )


def test_cca_needs_two_modalities(data):
    X, _ = data
    est = DJSRHHasher(affinity_features="cca", random_state=0, **FAST)
    with pytest.raises(ValueError, match=r"affinity_features='cca'.*one modality"):
        est.fit(X["img"])
    assert not hasattr(est, "net_")  # left unfitted
    with pytest.raises(ValueError, match="affinity_features='inputs'"):
        est.fit(MultiModal(img=X["img"]))


def test_cca_width_limit(data, monkeypatch):
    X, _ = data
    monkeypatch.setattr(djsrh_module, "MAX_CCA_WIDTH", 6)  # the image is 8 wide
    est = DJSRHHasher(affinity_features="cca", random_state=0, **FAST)
    with pytest.raises(ValueError, match=r"at most 6 features wide; \{'img': 8\}"):
        est.fit(X)
    assert not hasattr(est, "net_")
    auto = DJSRHHasher(random_state=0, **FAST).fit(X)  # falls back to the inputs
    assert auto.canonical_correlations_ is None


@pytest.mark.parametrize("bad", ["CCA", "canonical", 1, None])
def test_invalid_affinity_features(data, bad):
    X, _ = data
    with pytest.raises(InvalidParameterError, match="affinity_features"):
        DJSRHHasher(affinity_features=bad, **FAST).fit(X)


def test_inputs_are_not_modified(data):
    X, _ = data
    img, txt = X["img"].copy(), X["txt"].copy()
    est = DJSRHHasher(affinity_features="cca", random_state=0, **FAST).fit(X)
    np.testing.assert_array_equal(X["img"], img)
    np.testing.assert_array_equal(X["txt"], txt)
    params = est.get_params()
    assert params["affinity_features"] == "cca"


def _cross_modal_map(est, X, y):
    codes = est.transform(X)
    qi = unpack_bits(codes["img"].bits, est.n_bits).astype(float)
    dt = unpack_bits(codes["txt"].bits, est.n_bits).astype(float)
    return mean_average_precision(relevance(y, y), qi @ dt.T, k=10)


def test_clone_pipeline_and_grid_search(data):
    X, y = data
    est = DJSRHHasher(affinity_features="cca", random_state=0, **FAST)
    twin = clone(est)
    assert twin.get_params()["affinity_features"] == "cca"
    a = Pipeline([("djsrh", est)]).fit(X).transform(X)
    b = twin.fit(X).transform(X)
    np.testing.assert_array_equal(a["img"].bits, b["img"].bits)
    search = GridSearchCV(
        DJSRHHasher(random_state=0, **FAST),
        {"affinity_features": ["inputs", "cca"]},
        cv=2,
        scoring=_cross_modal_map,
    ).fit(X, y)
    assert search.best_params_["affinity_features"] in ("inputs", "cca")
    best = search.best_estimator_
    assert (
        best.canonical_correlations_ is None or len(best.canonical_correlations_) == 5
    )
