"""N-D modalities: images of any rank and dtype, custom towers, memory."""

import tracemalloc

import numpy as np
import pytest
import torch
from sklearn.base import clone
from torch import nn

from skhash import HQHasher, MultiModal, TwoStageRetriever
from skhash.hashing import DJSRHHasher
from skhash.quantization import DQNQuantizer


class SmallCNN(nn.Module):
    """A CNN built from the shape of one item."""

    def __init__(self, input_shape, n_outputs, width=4):
        super().__init__()
        channels = input_shape[0]
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(4 * width, n_outputs),
        )

    def forward(self, X):
        assert X.dtype == torch.float32  # converted per batch
        return self.body(X)


class LazyCNN(nn.Module):
    """Only ``n_outputs``: its lazy layers infer the rest."""

    def __init__(self, n_outputs):
        super().__init__()
        self.body = nn.Sequential(
            nn.LazyConv2d(3, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(n_outputs)
        )

    def forward(self, X):
        return self.body(X)


class FlatTower(nn.Module):
    def __init__(self, n_features, n_outputs):
        super().__init__()
        self.lin = nn.Linear(n_features, n_outputs)

    def forward(self, X):
        return self.lin(X)


def _images(n=90, seed=0):
    rng = np.random.RandomState(seed)
    y = np.arange(n) % 3
    img = rng.randint(0, 60, size=(n, 1, 8, 8))
    img[:, :, : 2 + 2 * 1, :] += (y * 60)[:, None, None, None]  # class shows
    vec = rng.randn(n, 6) + y[:, None]
    return img.astype(np.uint8), vec, y


HQ = dict(
    n_bits=16,
    n_codebooks=2,
    n_codewords=8,
    max_epochs=2,
    batch_size=32,
    device="cpu",
    random_state=0,
)


def test_uint8_images_train_a_cnn_end_to_end():
    img, vec, y = _images()
    X = MultiModal(img=img, txt=vec)
    assert X["img"].dtype == np.uint8 and np.shares_memory(X["img"], img)
    hq = HQHasher(module={"img": SmallCNN, "txt": None}, **HQ).fit(X, y)
    assert hq.input_shapes_ == {"img": (1, 8, 8), "txt": (6,)}
    assert isinstance(hq.net_.module_.towers["img"], SmallCNN)
    # per-channel standardisation of the images, per feature of the vectors
    assert hq.scaler_["img"][0].shape == (1,) and hq.scaler_["txt"][0].shape == (6,)
    codes = hq.transform(X)
    assert codes["img"].bits.shape == (90, 2)
    search = TwoStageRetriever(n_neighbors=10, backend="numpy").fit(codes, y)
    score = search.score(codes, y)
    assert 0.0 <= score <= 1.0
    with pytest.raises(ValueError, match=r"items of shape \(1, 4, 4\).*\(1, 8, 8\)"):
        hq.transform(MultiModal(img=img[:, :, :4, :4]))


def test_memmap_and_lazy_layers(tmp_path):
    img, vec, y = _images()
    path = tmp_path / "img.npy"
    np.save(path, img)
    mm = np.load(path, mmap_mode="r")
    X = MultiModal(img=mm, txt=vec)
    est = DJSRHHasher(
        n_bits=8,
        module={"img": LazyCNN, "txt": None},
        max_epochs=2,
        batch_size=16,
        device="cpu",
        random_state=0,
    ).fit(X)
    conv = est.net_.module_.towers["img"].body[0]
    assert conv.weight.shape == (3, 1, 3, 3)  # materialised before training
    a = est.transform(X)["img"].embedding
    b = est.transform(MultiModal(img=img))["img"].embedding
    np.testing.assert_array_equal(a, b)


def test_n_features_contract_and_default_mlp_refuses_images():
    img, vec, y = _images()
    X = MultiModal(img=img, txt=vec)
    with pytest.raises(ValueError, match=r"items of shape \(1, 8, 8\).*module="):
        HQHasher(**HQ).fit(X, y)

    # a tower that names n_features gets the number of values of one item
    # (flatten in it); one without input_shape never receives it
    class Flatten(FlatTower):
        def forward(self, X):
            return self.lin(X.flatten(1))

    dqn = DQNQuantizer(
        n_codebooks=2,
        n_codewords=8,
        n_dims=8,
        module=Flatten,
        max_epochs=1,
        device="cpu",
        random_state=0,
    ).fit(X, y)
    assert dqn.net_.module_.towers["img"].lin.in_features == 64


def test_standardize_per_channel_or_off():
    rng = np.random.RandomState(0)
    img = (rng.rand(40, 2, 3, 3) * [[[[10.0]], [[100.0]]]]).astype(np.float32)
    y = np.arange(40) % 2
    hq = HQHasher(module=SmallCNN, **{**HQ, "max_epochs": 1}).fit(img, y)
    mean, scale = hq.scaler_["X"]
    np.testing.assert_allclose(mean, img.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(scale, img.std(axis=(0, 2, 3)), rtol=1e-4)
    off = HQHasher(module=SmallCNN, standardize=False, **{**HQ, "max_epochs": 1})
    mean, scale = off.fit(img, y).scaler_["X"]
    assert (mean == 0).all() and (scale == 1).all()


def test_fit_on_uint8_images_does_not_copy_them_to_float():
    rng = np.random.RandomState(0)
    n = 1500
    img = rng.randint(0, 255, size=(n, 3, 16, 16)).astype(np.uint8)  # 1.1 MB
    y = np.arange(n) % 4
    X = MultiModal(img=img, txt=rng.randn(n, 4).astype(np.float32))
    est = HQHasher(
        module={"img": SmallCNN, "txt": None},
        hidden_layer_sizes=(8,),
        **{**HQ, "max_epochs": 1, "batch_size": 64},
    )
    model_bytes = 1 << 20  # towers, optimizer state, codebooks: well under 1 MB
    # a first small fit imports and compiles what fit uses (numba kernels,
    # torch ops), whose one-off allocations are not the data's
    clone(est).fit(X[:200], y[:200])
    tracemalloc.start()
    try:
        est.fit(X, y)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # a float32 copy of the images alone would be 4x their 1.1 MB
    assert peak < 1.5 * img.nbytes + model_bytes, peak / img.nbytes
