import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from torch import nn

from skhash import MultiModal
from skhash.exceptions import TrainingError
from skhash.hashing import HQHasher
from skhash.hashing._hq import _AlternateCodebooks
from skhash.quantization import decode, quantization_error

FAST = dict(
    n_bits=16,
    n_codebooks=2,
    n_codewords=8,
    hidden_layer_sizes=(16,),
    max_epochs=3,
    quantization_warmup=1,
    batch_size=32,
    device="cpu",
)


@pytest.fixture(scope="module")
def data(small_cross_modal):
    X_img, X_txt, y = small_cross_modal
    return MultiModal(img=X_img, txt=X_txt), y


@pytest.fixture(scope="module")
def fitted(data):
    X, y = data
    return HQHasher(random_state=0, **FAST).fit(X, y)


def test_transform_codeset_contract(fitted, data):
    X, _ = data
    codes = fitted.transform(X)
    assert codes.modalities == ("img", "txt")
    img = codes["img"]
    assert img.embedding.shape == (120, 16) and img.embedding.dtype == np.float32
    assert img.bits.shape == (120, 2) and img.bits.dtype == np.uint8
    assert img.codes.shape == (120, 2)
    assert codes.codebooks.shape == (2, 8, 16) and codes.codebook_kind == "additive"
    # bits are the signs of the embedding
    signs = np.unpackbits(img.bits, axis=1, count=16).astype(bool)
    np.testing.assert_array_equal(signs, img.embedding >= 0)
    # one modality alone
    only_txt = fitted.transform(MultiModal(txt=X["txt"][:5]))
    assert only_txt.modalities == ("txt",) and len(only_txt) == 5


def test_history_records_each_loss_term(fitted):
    assert len(fitted.history_) == 3
    for term in ("train_loss", "loss_sim", "loss_h", "loss_b", "loss_q"):
        assert term in fitted.history_[-1]
    assert fitted.history_[0, "loss_q"] == 0.0  # warm-up epoch
    assert fitted.history_[-1, "loss_q"] > 0.0


def test_same_seed_same_codes_and_global_rng_untouched(data):
    X, y = data
    np_state = np.random.get_state()[1].copy()
    torch_state = torch.get_rng_state().clone()
    a = HQHasher(random_state=3, **FAST).fit(X, y).transform(X)
    b = HQHasher(random_state=3, **FAST).fit(X, y).transform(X)
    c = HQHasher(random_state=4, **FAST).fit(X, y).transform(X)
    np.testing.assert_array_equal(np.random.get_state()[1], np_state)
    assert torch.equal(torch.get_rng_state(), torch_state)
    for m in ("img", "txt"):
        np.testing.assert_array_equal(a[m].embedding, b[m].embedding)
        np.testing.assert_array_equal(a[m].bits, b[m].bits)
        np.testing.assert_array_equal(a[m].codes, b[m].codes)
    assert not np.array_equal(a["img"].embedding, c["img"].embedding)


def test_codebook_update_lowers_quantization_error():
    rng = np.random.RandomState(0)
    F = rng.randn(200, 8).astype(np.float32)
    learner = HQHasher(
        n_codebooks=2, n_codewords=8, n_quantization_rounds=1, n_icm_iter=2
    )
    cb = _AlternateCodebooks(learner, np.random.RandomState(0))
    cb.fit_codebooks(F)
    err1 = quantization_error(F, cb.codes, cb.codebooks)
    cb.fit_codebooks(F)
    err2 = quantization_error(F, cb.codes, cb.codebooks)
    assert err2 <= err1 + 1e-6
    assert err1 < quantization_error(F, cb.codes, np.zeros_like(cb.codebooks))


def test_quantization_loss_pulls_embeddings_to_codebooks(data):
    X, y = data
    params = {**FAST, "max_epochs": 6}
    with_q = HQHasher(random_state=0, lambda_q=1.0, **{**params}).fit(X, y)
    no_q = HQHasher(random_state=0, lambda_q=0.0, **params).fit(X, y)
    assert no_q.codebooks_ is None and no_q.transform(X)["img"].codes is None
    codes = with_q.transform(X)["img"]
    err = ((codes.embedding - decode(codes.codes, codes.codebooks)) ** 2).sum(1)
    assert err.mean() < (codes.embedding**2).sum(1).mean()


def test_single_modal_plain_array(small_cross_modal):
    X_img, _, y = small_cross_modal
    hq = HQHasher(random_state=0, **FAST).fit(X_img, y)
    codes = hq.transform(X_img)
    assert codes.modalities == ("X",) and hq.n_features_in_ == 8
    msg = "X has 3 features, but HQHasher is expecting 8"
    with pytest.raises(ValueError, match=msg):
        hq.transform(X_img[:, :3])


def test_clone_and_gridsearch_over_lambda_q(small_cross_modal):
    X_img, _, y = small_cross_modal

    def scorer(est, X, y):
        emb = est.transform(X).embedding
        return float(-np.var(emb))

    search = GridSearchCV(
        HQHasher(random_state=0, **FAST),
        {"lambda_q": [0.0, 0.5]},
        cv=2,
        scoring=scorer,
    ).fit(X_img, y)
    assert search.best_params_["lambda_q"] in (0.0, 0.5)
    assert clone(search.best_estimator_).get_params()["n_bits"] == 16


def test_pickle_roundtrip(fitted, data):
    X, _ = data
    again = pickle.loads(pickle.dumps(fitted))
    a, b = fitted.transform(X), again.transform(X)
    np.testing.assert_array_equal(a["txt"].bits, b["txt"].bits)
    np.testing.assert_array_equal(a["txt"].codes, b["txt"].codes)


class _LinearTower(nn.Module):
    def __init__(self, n_features, n_outputs, scale=1.0):
        super().__init__()
        self.lin = nn.Linear(n_features, n_outputs)
        self.scale = scale

    def forward(self, X):
        return self.lin(X) * self.scale


class _NaNTower(_LinearTower):
    def forward(self, X):
        return self.lin(X) * float("nan")


def test_custom_module_with_routed_params(data):
    X, y = data
    tower = {k: v for k, v in FAST.items() if k != "hidden_layer_sizes"}
    hq = HQHasher(random_state=0, module=_LinearTower, module__scale=0.5, **tower)
    assert hq.get_params()["module__scale"] == 0.5
    assert clone(hq).get_params()["module__scale"] == 0.5
    hq.fit(X, y)
    assert isinstance(hq.net_.module_.towers["img"], _LinearTower)
    assert hq.net_.module_.towers["txt"].scale == 0.5
    with pytest.raises(TypeError, match="Did you mean module__scale"):
        HQHasher(module_scale=1.0, **FAST).fit(X, y)


def test_nan_loss_stops_with_clear_error_and_leaves_unfitted(data):
    X, y = data
    tower = {k: v for k, v in FAST.items() if k != "hidden_layer_sizes"}
    hq = HQHasher(random_state=0, module=_NaNTower, **tower)
    with pytest.raises(TrainingError, match=r"loss became nan at epoch 1.*lr=0.001"):
        hq.fit(X, y)
    assert not hasattr(hq, "net_")


def test_bad_input_errors(data):
    X, y = data
    with pytest.raises(ValueError, match="requires y to be passed.*supervised"):
        HQHasher(**FAST).fit(X)
    with pytest.raises(ValueError, match="single class"):
        HQHasher(**FAST).fit(X, np.zeros(120))
    with pytest.raises(ValueError, match="n_bits"):
        HQHasher(n_bits=0).fit(X, y)
    with pytest.raises(ValueError, match="device='cuda' was requested but CUDA"):
        if torch.cuda.is_available():
            pytest.skip("CUDA present")
        HQHasher(**{**FAST, "device": "cuda"}).fit(X, y)


def test_not_fitted_error(data):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        HQHasher().transform(data[0])


@pytest.mark.gpu
def test_cuda_fit_loads_on_cpu(data, tmp_path):
    X, y = data
    hq = HQHasher(random_state=0, **{**FAST, "device": "cuda"}).fit(X, y)
    path = tmp_path / "hq.pkl"
    path.write_bytes(pickle.dumps(hq))
    import subprocess
    import sys

    code = (
        "import pickle, torch, sys; "
        "torch.cuda.is_available = lambda: False; "
        f"m = pickle.loads(open({str(path)!r}, 'rb').read()); "
        "print(next(m.net_.module_.parameters()).device)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "cpu" in out.stdout
