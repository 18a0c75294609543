"""The learners' training loop: the skorch net, its parameters and callbacks."""

import numpy as np
import pytest
import torch

from skhash import DQNQuantizer, HQHasher, MultiModal
from skhash.hashing import DJSRHHasher

_TOWER = dict(hidden_layer_sizes=(16,), device="cpu", random_state=0)
LEARNERS = [
    HQHasher(
        n_bits=16,
        n_codebooks=2,
        n_codewords=8,
        max_epochs=2,
        batch_size=32,
        quantization_warmup=1,
        **_TOWER,
    ),
    DQNQuantizer(
        n_codebooks=2, n_codewords=8, n_dims=8, max_epochs=2, batch_size=32, **_TOWER
    ),
    DJSRHHasher(n_bits=8, max_epochs=2, batch_size=16, **_TOWER),
]
IDS = ["hq", "dqn", "djsrh"]


@pytest.fixture(scope="module")
def data(small_cross_modal):
    X_img, X_txt, y = small_cross_modal
    return MultiModal(img=X_img, txt=X_txt), y


@pytest.mark.parametrize("learner", LEARNERS, ids=IDS)
def test_initialized_net_has_the_fitted_architecture(learner, data):
    X, y = data
    fitted = learner.fit(X, y)
    rng_state = torch.get_rng_state().clone()
    net = fitted._initialized_net()
    assert torch.equal(torch.get_rng_state(), rng_state)
    assert net.initialized_
    trained = fitted.net_.module_.state_dict()
    fresh = net.module_.state_dict()
    assert list(fresh) == list(trained)
    assert all(fresh[k].shape == trained[k].shape for k in trained)
    # fresh weights, not a copy of the trained ones
    assert not all(torch.equal(fresh[k], trained[k]) for k in trained)
    # the trained weights loaded into it give the same codes
    net.module_.load_state_dict(trained)
    before = fitted.transform(X)
    fitted.net_ = net
    after = fitted.transform(X)
    for m in ("img", "txt"):
        np.testing.assert_array_equal(before[m].embedding, after[m].embedding)
