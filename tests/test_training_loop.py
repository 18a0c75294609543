"""The learners' training loop: the skorch net, its parameters and callbacks."""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from skorch.callbacks import Callback, LRScheduler
from skorch.dataset import ValidSplit

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


# --------------------------------------------------------------------------- #
# skorch's training parameters
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("learner", LEARNERS, ids=IDS)
def test_sgd_schedule_and_validation_split(learner, data):
    X, y = data
    est = clone(learner).set_params(
        optimizer=torch.optim.SGD,
        optimizer__momentum=0.9,
        lr=0.05,
        max_epochs=3,
        callbacks=[LRScheduler(policy="StepLR", step_size=1, gamma=0.1)],
        train_split=ValidSplit(0.25, random_state=0),
    )
    est.fit(X, y)
    opt = est.net_.optimizer_
    assert isinstance(opt, torch.optim.SGD)
    assert opt.param_groups[0]["momentum"] == 0.9
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05 * 0.1**3)  # acted
    assert all(np.isfinite(row["valid_loss"]) for row in est.history_)
    assert len(est.validation_indices_) == 30
    # the validation items were not trained on: their loss terms are apart
    row = est.history_[-1]
    assert any(k.startswith("valid_loss_") or k == "valid_alpha" for k in row)


def test_lr_and_optimizer_lr_must_agree(data):
    X, y = data
    est = clone(LEARNERS[0]).set_params(lr=0.01, optimizer__lr=0.1)
    with pytest.raises(ValueError, match=r"optimizer__lr=0.1 contradicts lr=0.01"):
        est.fit(X, y)
    assert not hasattr(est, "net_")
    same = clone(LEARNERS[0]).set_params(lr=0.01, optimizer__lr=0.01).fit(X, y)
    assert same.net_.optimizer_.param_groups[0]["lr"] == 0.01


def test_per_modality_learning_rates(data):
    X, y = data
    est = clone(LEARNERS[0]).set_params(
        lr=1e-3, optimizer__param_groups=[("towers.img.*", {"lr": 1e-5})]
    )
    est.fit(X, y)
    groups = est.net_.optimizer_.param_groups
    assert [g["lr"] for g in groups] == [1e-5, 1e-3]
    img_params = {id(p) for p in est.net_.module_.towers["img"].parameters()}
    assert {id(p) for p in groups[0]["params"]} == img_params


class _Count(Callback):
    def __init__(self):
        self.epochs = 0

    def on_epoch_end(self, net, **kwargs):
        self.epochs += 1
        net.history.record("seen_loss_sim", "loss_sim" in net.history[-1])


def test_user_callbacks_run_after_skhash_ones_and_are_copied(data):
    X, y = data
    mine = _Count()
    est = clone(LEARNERS[0]).set_params(callbacks=[("count", mine)]).fit(X, y)
    assert mine.epochs == 0  # the user's object is not modified
    fitted = dict(est.net_.callbacks_)["count"]
    assert fitted.epochs == 2
    # skhash's loss terms were recorded before the user's callback ran
    assert all(row["seen_loss_sim"] for row in est.history_)


def test_get_set_params_clone_and_grid_search_round_trip(data):
    X, y = data
    est = clone(LEARNERS[0]).set_params(
        optimizer=torch.optim.SGD,
        optimizer__momentum=0.5,
        iterator_train__num_workers=0,
        callbacks=[LRScheduler(policy="StepLR", step_size=1)],
        train_split=0.2,
    )
    params = est.get_params()
    for key in (
        "optimizer",
        "optimizer__momentum",
        "iterator_train__num_workers",
        "callbacks",
        "train_split",
        "warm_start",
    ):
        assert key in params
    again = clone(est)
    assert again.get_params()["optimizer__momentum"] == 0.5
    assert again.optimizer is torch.optim.SGD
    assert again.callbacks[0] is not est.callbacks[0]
    grid = GridSearchCV(
        clone(LEARNERS[2]),
        {"optimizer__momentum": [0.0, 0.9], "optimizer": [torch.optim.SGD]},
        scoring=lambda e, X_, y_: float(np.mean(e.transform(X_)["img"].embedding)),
        cv=2,
    ).fit(X, y)
    assert grid.best_estimator_.net_.optimizer_.param_groups[0]["momentum"] in (
        0.0,
        0.9,
    )


@pytest.mark.parametrize("learner", LEARNERS, ids=IDS)
def test_warm_start_continues_the_fitted_net(learner, data):
    X, y = data
    first = clone(learner).fit(X, y)
    weights = {k: v.clone() for k, v in first.net_.module_.state_dict().items()}
    more = clone(learner).set_params(warm_start=True)
    more.fit(X, y)  # not fitted yet: trains from scratch
    assert len(more.history_) == 2
    more.fit(X, y)
    assert len(more.history_) == 4  # the history continues
    cold = clone(learner).fit(X, y)
    # the first two epochs are the cold fit's; continuing changed the weights
    state = more.net_.module_.state_dict()
    assert any(not torch.equal(state[k], weights[k]) for k in weights)
    np.testing.assert_array_equal(
        cold.transform(X)["img"].embedding, first.transform(X)["img"].embedding
    )
    with pytest.raises(ValueError, match="warm_start=True continues the fitted"):
        more.fit(MultiModal(img=X["img"]), y)
    with pytest.raises(Exception, match="fitted with another structure"):
        more.set_params(hidden_layer_sizes=(8,)).fit(X, y)


@pytest.mark.parametrize("learner", LEARNERS[:2], ids=IDS[:2])
@pytest.mark.parametrize("warmup", [0, 1, 3])
def test_warm_start_keeps_the_quantization_loss_past_the_warmup(learner, warmup, data):
    # the loss of every epoch after the warm-up has the quantization term,
    # whether the epochs run in one fit or in two warm-started ones
    X, y = data
    est = clone(learner).set_params(quantization_warmup=warmup, max_epochs=2)
    est.set_params(warm_start=True).fit(X, y).fit(X, y)
    on = [row["loss_q"] > 0 for row in est.history_]
    assert on == [epoch > warmup for epoch in range(1, 5)]
    straight = clone(learner).set_params(quantization_warmup=warmup, max_epochs=4)
    assert [row["loss_q"] > 0 for row in straight.fit(X, y).history_] == on


def test_fitted_structure_is_used_after_set_params(data):
    X, y = data
    hq = clone(LEARNERS[0]).fit(X, y)
    before = hq.transform(X)
    hq.set_params(n_bits=12, n_codebooks=3, hidden_layer_sizes=(4,))
    after = hq.transform(X)  # the codes of the fitted 16-bit model
    assert after.n_bits == 16 if hasattr(after, "n_bits") else True
    np.testing.assert_array_equal(after["img"].bits, before["img"].bits)
    np.testing.assert_array_equal(after["img"].codes, before["img"].codes)
    assert hq.structure_["n_bits"] == 16


def test_train_split_errors(data):
    X, y = data

    def overlapping(dataset, y=None):
        from torch.utils.data import Subset

        return Subset(dataset, np.arange(100)), Subset(dataset, np.arange(90, 120))

    with pytest.raises(ValueError, match="overlapping or out-of-range"):
        clone(LEARNERS[0]).set_params(train_split=overlapping).fit(X, y)
    with pytest.raises(ValueError, match="must split the dataset it is given"):
        clone(LEARNERS[0]).set_params(train_split=lambda ds, y=None: (1, 2)).fit(X, y)


def test_verbose_table_without_colour_codes_when_piped(data, capsys):
    X, y = data
    clone(LEARNERS[0]).set_params(verbose=1, train_split=0.25).fit(X, y)
    out = capsys.readouterr().out
    assert "loss_sim" in out and "valid_loss" in out
    assert "\x1b[" not in out
    clone(LEARNERS[0]).fit(X, y)  # verbose=0 prints nothing
    assert capsys.readouterr().out == ""


def test_progress_bar(data, capsys):
    from skorch.callbacks import ProgressBar

    X, y = data
    est = clone(LEARNERS[0]).set_params(callbacks=[ProgressBar()]).fit(X, y)
    assert len(est.history_) == 2


# --------------------------------------------------------------------------- #
# DJSRH: roles by name, affinity features
# --------------------------------------------------------------------------- #
def test_djsrh_roles_follow_names_not_order(data):
    X, _ = data
    a = clone(LEARNERS[2]).set_params(beta=0.9, lambda1=0.1, lambda2=0.6)
    b = clone(a)
    a.fit(MultiModal(img=X["img"], txt=X["txt"]))
    b.fit(MultiModal(txt=X["txt"], img=X["img"]))
    assert a.net_.criterion_.modalities == ("img", "txt")
    assert b.net_.criterion_.modalities == ("img", "txt")
    # beta and lambda1 weigh the image whatever the order of the MultiModal
    for est in (a, b):
        crit = est.net_.criterion_
        assert (crit.beta, crit.lambda1, crit.lambda2) == (0.9, 0.1, 0.6)
        assert "loss_within_img" in est.history_[-1]
    with pytest.raises(ValueError, match="cannot tell which of the modalities"):
        clone(a).fit(MultiModal(p=X["img"], q=X["txt"]))
    named = (
        clone(a).set_params(image_modality="q").fit(MultiModal(p=X["txt"], q=X["img"]))
    )
    assert named.net_.criterion_.modalities == ("q", "p")


def test_djsrh_affinity_from_side_features(data):
    X, _ = data
    rng = np.random.RandomState(0)
    frozen = X["img"] @ rng.randn(8, 12)
    side = MultiModal(img=X["img"], img_feat=frozen, txt=X["txt"])
    est = clone(LEARNERS[2]).set_params(affinity_features={"img": "img_feat"})
    est.fit(side)
    assert est.modalities_ == ("img", "txt")  # no tower for the side input
    assert est.net_.criterion_.features is None  # released after training
    codes = est.transform(MultiModal(img=X["img"], txt=X["txt"]))
    assert codes["img"].bits.shape == (120, 1)
    raw = clone(LEARNERS[2]).set_params(affinity_features="raw").fit(X)
    std = clone(LEARNERS[2]).fit(X)
    assert raw.history_[-1, "train_loss"] != std.history_[-1, "train_loss"]
    with pytest.raises(ValueError, match="names the modalities"):
        clone(LEARNERS[2]).set_params(affinity_features={"img": "nope"}).fit(X)


def test_alpha_schedule_returning_a_non_number(data):
    X, _ = data
    for bad in ("fast", None, True, [1.0]):
        est = clone(LEARNERS[2]).set_params(alpha_schedule=lambda t, b=bad: b)
        with pytest.raises(ValueError, match="alpha_schedule returned"):
            est.fit(X)


class _WrongWidthTower(torch.nn.Module):
    def __init__(self, n_features, n_outputs, delta=0):
        super().__init__()
        self.linear = torch.nn.Linear(n_features, n_outputs + delta)

    def forward(self, x):
        return self.linear(x)


@pytest.mark.parametrize("learner", LEARNERS, ids=IDS)
@pytest.mark.parametrize("delta", [-3, 3])
def test_a_tower_of_the_wrong_width_is_refused_before_training(learner, delta, data):
    # narrower towers trained silently into codes of another width, wider
    # ones failed only at transform
    X, y = data
    default = type(learner)().hidden_layer_sizes  # left at it: no warning
    custom = dict(module=_WrongWidthTower, hidden_layer_sizes=default)
    est = clone(learner).set_params(**custom, module__delta=delta)
    with pytest.raises(ValueError, match=r"tower of modality 'img' returns shape"):
        est.fit(X, y)
    assert not hasattr(est, "net_")
    clone(learner).set_params(**custom).fit(X, y)  # the right width


@pytest.mark.parametrize("learner", LEARNERS, ids=IDS)
def test_transform_of_no_rows_gives_empty_codes(learner, data):
    # an empty selection (X[:0]) was refused by HQ's and DQN's encoder
    X, y = data
    est = clone(learner).fit(X, y)
    full, empty = est.transform(X), est.transform(X[:0])
    assert len(empty) == 0 and empty.modalities == full.modalities
    for m in full.modalities:
        for part in ("embedding", "bits", "codes"):
            a, b = full.get(m, part), empty.get(m, part)
            assert (a is None) == (b is None)
            if a is not None:
                assert b.shape == (0, *a.shape[1:]) and b.dtype == a.dtype
