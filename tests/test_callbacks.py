"""skhash.callbacks.RetrievalScoring with skorch's EarlyStopping and Checkpoint."""

import copy

import numpy as np
import pytest
import torch
from sklearn.base import clone
from skorch import NeuralNet
from skorch.callbacks import Callback, Checkpoint, EarlyStopping

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


class _Pick(Callback):
    """Records ``pick``: 1 at epoch ``best``, else 0 (a monitor whose best
    epoch is known)."""

    def __init__(self, best):
        self.best = best

    def on_epoch_end(self, net, **kwargs):
        net.history.record("pick", float(len(net.history) == self.best))


@pytest.mark.parametrize("name", sorted(LEARNERS))
@pytest.mark.parametrize("how", ["checkpoint", "routed", "early_stopping"])
def test_restoring_callbacks_restore_the_best_epoch_and_its_codes(
    name, how, data, tmp_path
):
    # Checkpoint(load_best=True), the same with load_best set by routing
    # (it was read before routing applied), and EarlyStopping(load_best=True)
    # (its restored weights were paired with the last epoch's codebooks and
    # alpha): the fitted model scores what was recorded at the restored epoch
    X, y = data
    best_epoch = 2  # of 4, whatever the scores
    params = {}
    if how == "early_stopping":
        restorer = EarlyStopping(
            monitor="pick", lower_is_better=False, patience=100, load_best=True
        )
    else:
        restorer = Checkpoint(
            monitor=lambda net: len(net.history) == best_epoch,
            load_best=how == "checkpoint",
            dirname=str(tmp_path),
        )
        if how == "routed":
            params["callbacks__restorer__load_best"] = True
    est = clone(LEARNERS[name]).set_params(
        max_epochs=4,
        lr=0.01,
        train_split=0.25,
        callbacks=[
            RetrievalScoring(k=10),
            _Pick(best_epoch),
            ("restorer", restorer),
        ],
        **params,
    )
    est.fit(X, y)
    # skorch's Checkpoint restores the saved history with the weights;
    # EarlyStopping keeps the whole history
    assert len(est.history_) == (4 if how == "early_stopping" else best_epoch)
    assert dict(est.net_.callbacks_)["epochs_done"].n_done == 4
    assert _public_map(est, X, y, 10) == est.history_[best_epoch - 1, "valid_map"]
    if how == "early_stopping":  # not trivially the last epoch's
        assert _public_map(est, X, y, 10) != est.history_[-1, "valid_map"]
    if name == "djsrh":
        assert est.alpha_ == pytest.approx(np.sqrt(best_epoch))


class _InterruptIn(Callback):
    """Raises KeyboardInterrupt in the first training batch of epoch
    ``epoch`` (counted in this fit)."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_train_begin(self, net, **kwargs):
        self.start = len(net.history)

    def on_batch_end(self, net, training=None, **kwargs):
        if training and len(net.history) - self.start == self.epoch:
            raise KeyboardInterrupt


def _saving_epoch_1(tmp_path):
    """A Checkpoint(load_best=True) that saves epoch 1 of the history only."""
    return Checkpoint(
        monitor=lambda net: len(net.history) == 1,
        load_best=True,
        dirname=str(tmp_path),
    )


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_an_interrupt_is_raised_even_when_a_checkpoint_restores(name, data, tmp_path):
    # Checkpoint(load_best=True) reloads a shorter history at the end of
    # training, which hid an interrupt: fit returned, fitted on epoch 1
    X, y = data
    est = clone(LEARNERS[name]).set_params(
        max_epochs=4,
        train_split=0.25,
        callbacks=[
            _saving_epoch_1(tmp_path),
            _InterruptIn(3),
        ],
    )
    with pytest.raises(KeyboardInterrupt, match="interrupted during epoch 3"):
        est.fit(X, y)
    assert not hasattr(est, "net_")


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_warm_start_with_a_checkpoint_that_saves_no_new_epoch(name, data, tmp_path):
    # the second fit saves nothing: its Checkpoint reloads the first fit's
    # files, a shorter history, which read as an interrupt
    X, y = data
    est = clone(LEARNERS[name]).set_params(
        max_epochs=2,
        train_split=0.25,
        warm_start=True,
        callbacks=[_saving_epoch_1(tmp_path)],
    )
    est.fit(X, y).fit(X, y)
    assert len(est.history_) == 1


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_a_failed_warm_fit_leaves_the_previous_optimizer_state(name, data):
    # the new optimizer was loaded with the previous one's very state
    # tensors, so the failed fit's steps changed the kept fit's optimizer
    X, y = data
    est = clone(LEARNERS[name]).set_params(max_epochs=2).fit(X, y)
    opt = est.net_.optimizer_
    before = copy.deepcopy(opt.state_dict())
    est.set_params(warm_start=True, callbacks=[_InterruptIn(2)])
    with pytest.raises(KeyboardInterrupt):
        est.fit(X, y)
    assert est.net_.optimizer_ is opt
    after = opt.state_dict()
    for key, state in before["state"].items():
        for part, value in state.items():
            assert torch.equal(
                torch.as_tensor(after["state"][key][part]), torch.as_tensor(value)
            )


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
