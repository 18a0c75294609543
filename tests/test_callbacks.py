"""skhash.callbacks.RetrievalScoring with skorch's EarlyStopping and Checkpoint."""

import numpy as np
import pytest
from sklearn.base import clone
from skorch import NeuralNet
from skorch.callbacks import Checkpoint, EarlyStopping

from skhash import DQNQuantizer, HQHasher, MultiModal, TwoStageRetriever
from skhash.callbacks import RetrievalScoring
from skhash.hashing import DJSRHHasher

_TOWER = dict(hidden_layer_sizes=(16,), device="cpu", random_state=0)
LEARNERS = {
    "hq": HQHasher(
        n_bits=16,
        n_codebooks=2,
        n_codewords=8,
        batch_size=32,
        quantization_warmup=1,
        max_epochs=3,
        **_TOWER,
    ),
    "dqn": DQNQuantizer(
        n_codebooks=2, n_codewords=8, n_dims=8, batch_size=32, max_epochs=3, **_TOWER
    ),
    "djsrh": DJSRHHasher(n_bits=8, batch_size=16, max_epochs=3, **_TOWER),
}


@pytest.fixture(scope="module")
def data(small_cross_modal):
    X_img, X_txt, y = small_cross_modal
    return MultiModal(img=X_img, txt=X_txt), y


def _public_map(est, X, y, k, retriever=None):
    """The MAP of the fitted learner's codes on its own validation split."""
    valid = est.validation_indices_
    train = np.setdiff1d(np.arange(len(y)), valid)
    search = TwoStageRetriever(n_neighbors=k) if retriever is None else retriever
    search.fit(est.transform(X[train]), y[train])
    return search.score(est.transform(X[valid]), y[valid])


@pytest.mark.parametrize("name", sorted(LEARNERS))
@pytest.mark.parametrize("single", [False, True], ids=["cross", "single"])
def test_recorded_value_equals_the_public_retrievers(name, single, data):
    X, y = data
    if single:
        X = MultiModal(img=X["img"])
    est = clone(LEARNERS[name]).set_params(
        train_split=0.25, callbacks=[RetrievalScoring(k=10)]
    )
    est.fit(X, y)
    recorded = [row["valid_map"] for row in est.history_]
    assert all(0.0 <= v <= 1.0 for v in recorded)
    assert est.history_[0, "valid_map_best"] is True
    assert est.history_[-1, "valid_map"] == _public_map(est, X, y, 10)


def test_custom_retriever_and_direction(data):
    X, y = data
    search = TwoStageRetriever(alpha=0, backend="numpy")
    est = (
        clone(LEARNERS["hq"])
        .set_params(
            train_split=0.25,
            callbacks=[
                RetrievalScoring(
                    k=5, retriever=search, direction="img->txt", name="i2t"
                )
            ],
        )
        .fit(X, y)
    )
    valid = est.validation_indices_
    train = np.setdiff1d(np.arange(len(y)), valid)
    ref = clone(search).set_params(n_neighbors=5).fit(est.transform(X[train]), y[train])
    expected = ref.score(est.transform(X[valid]), y[valid], direction="img->txt")
    assert est.history_[-1, "i2t"] == expected
    assert search.get_params()["n_neighbors"] == 50  # the user's is untouched


def test_early_stopping_on_a_plateau_ends_fit_normally(data):
    X, y = data
    est = clone(LEARNERS["djsrh"]).set_params(
        max_epochs=40,
        lr=1e-6,  # next to no progress: the MAP plateaus at once
        train_split=0.25,
        callbacks=[
            RetrievalScoring(k=10),
            EarlyStopping(monitor="valid_map", lower_is_better=False, patience=2),
        ],
    )
    est.fit(X, y)
    assert len(est.history_) < 40
    assert hasattr(est, "alpha_")


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_checkpoint_restores_the_best_epoch_and_its_codes(name, data, tmp_path):
    X, y = data
    # the epoch saved is epoch 2 of 4, whatever the scores
    best_epoch = 2
    est = clone(LEARNERS[name]).set_params(
        max_epochs=4,
        lr=0.01,
        train_split=0.25,
        callbacks=[
            RetrievalScoring(k=10),
            Checkpoint(
                monitor=lambda net: len(net.history) == best_epoch,
                load_best=True,
                dirname=str(tmp_path),
            ),
        ],
    )
    est.fit(X, y)
    # skorch's load_best restores the saved history with the weights
    assert len(est.history_) == best_epoch
    assert dict(est.net_.callbacks_)["epochs_done"].n_done == 4
    # the fitted model scores what was recorded at the restored epoch
    assert _public_map(est, X, y, 10) == est.history_[best_epoch - 1, "valid_map"]
    if name == "djsrh":
        assert est.alpha_ == pytest.approx(np.sqrt(best_epoch))


def test_monitor_valid_map_best_with_checkpoint(data, tmp_path):
    X, y = data
    est = (
        clone(LEARNERS["hq"])
        .set_params(
            max_epochs=4,
            train_split=0.25,
            callbacks=[
                RetrievalScoring(k=10),
                Checkpoint(
                    monitor="valid_map_best", load_best=True, dirname=str(tmp_path)
                ),
            ],
        )
        .fit(X, y)
    )
    scores = [row["valid_map"] for row in est.history_]
    best = [i for i, row in enumerate(est.history_) if row["valid_map_best"]][-1]
    assert scores[best] == max(scores)
    assert _public_map(est, X, y, 10) == scores[best]


def test_on_train_scores_the_training_items(data):
    X, y = data
    est = (
        clone(LEARNERS["hq"])
        .set_params(callbacks=[RetrievalScoring(k=10, on_train=True, name="train_map")])
        .fit(X, y)
    )
    codes = est.transform(X)
    expected = TwoStageRetriever(n_neighbors=10).fit(codes, y).score(codes, y)
    assert est.history_[-1, "train_map"] == expected


def test_errors(data):
    X, y = data
    with pytest.raises(ValueError, match="learner has train_split=None"):
        clone(LEARNERS["hq"]).set_params(callbacks=[RetrievalScoring()]).fit(X, y)
    djsrh = clone(LEARNERS["djsrh"]).set_params(
        train_split=0.25, callbacks=[RetrievalScoring()]
    )
    with pytest.raises(ValueError, match="pass the items' labels y to fit"):
        djsrh.fit(X)
    assert not hasattr(djsrh, "net_")
    for bad in (0, True, 2.5):
        with pytest.raises(ValueError, match="k must be a positive int"):
            clone(LEARNERS["hq"]).set_params(
                train_split=0.25, callbacks=[RetrievalScoring(k=bad)]
            ).fit(X, y)
    net = NeuralNet(
        module=__import__("torch").nn.Linear(8, 2),
        criterion=__import__("torch").nn.MSELoss,
        callbacks=[RetrievalScoring()],
        max_epochs=1,
    )
    with pytest.raises(TypeError, match="scores the codes of a skhash learner"):
        net.fit(X["img"].astype(np.float32), np.zeros((120, 2), np.float32))
