"""Training faults: a diverging loss, an interrupted fit, a failed refit.

The contract (``BaseCodeLearner.fit`` Notes): a fit that fails sets no
fitted attribute. An unfitted learner stays unfitted; a fitted one keeps its
previous fit whole (same objects, same codes), never a mix of old and new.
There is no ``warm_start`` or ``partial_fit``.
"""

import inspect
import re

import pytest
import torch
from robust_cases import LEARNERS, make_learner, same_codes
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted
from skorch.callbacks import Callback
from torch import nn

from skhash.exceptions import TrainingError


class PoisonTower(nn.Module):
    """A linear tower whose output turns NaN from its ``poison_at``-th
    training call on (one call per epoch with full batches)."""

    def __init__(self, n_features, n_outputs, poison_at=2, value=float("nan")):
        super().__init__()
        self.lin = nn.Linear(n_features, n_outputs)
        self.poison_at = poison_at
        self.value = value
        self.calls = 0

    def forward(self, x):
        out = self.lin(x)
        if self.training:
            self.calls += 1
            if self.calls >= self.poison_at:
                out = out * self.value
        return out


class NaNGradTower(nn.Module):
    """A linear tower whose ``poison_at``-th training call back-propagates a
    NaN gradient: the loss of that batch is finite, the weights after the
    optimizer step are not."""

    def __init__(self, n_features, n_outputs, poison_at=2):
        super().__init__()
        self.lin = nn.Linear(n_features, n_outputs)
        self.poison_at = poison_at
        self.calls = 0

    def forward(self, x):
        out = self.lin(x)
        if self.training:
            self.calls += 1
            if self.calls == self.poison_at:
                out.register_hook(lambda grad: grad * float("nan"))
        return out


class InterruptTower(nn.Module):
    """A tower whose forward raises KeyboardInterrupt (Ctrl-C in training)."""

    def __init__(self, n_features, n_outputs):
        super().__init__()
        self.lin = nn.Linear(n_features, n_outputs)

    def forward(self, x):
        if self.training:
            raise KeyboardInterrupt
        return self.lin(x)


class InterruptAt(Callback):
    """Raises KeyboardInterrupt at the end of a batch or an epoch."""

    def __init__(self, where, epoch):
        self.where = where
        self.epoch = epoch

    def _maybe(self, net, where):
        if where == self.where and len(net.history) == self.epoch:
            raise KeyboardInterrupt

    def on_batch_end(self, net, **kwargs):
        self._maybe(net, "batch")

    def on_epoch_end(self, net, **kwargs):
        self._maybe(net, "epoch")


def _with_callback(est, callback):
    """``est`` with one more skorch callback (a subclass, built per test)."""
    base = type(est)

    class WithCallback(base):
        def _callbacks(self, rng):
            return [*super()._callbacks(rng), ("interrupt", callback)]

    WithCallback.__name__ = base.__name__
    new = WithCallback.__new__(WithCallback)
    new.__dict__.update(est.__dict__)
    return new


def _labels(name, ctx):
    return None if name == "DJSRHHasher" else ctx.y


def _fitted_state(est):
    return {k: v for k, v in vars(est).items() if k.endswith("_") or k.startswith("_")}


def _assert_unfitted(est):
    with pytest.raises(NotFittedError):
        check_is_fitted(est)
    assert not [k for k in vars(est) if k.endswith("_") and not k.startswith("__")]


@pytest.mark.parametrize("name", LEARNERS)
@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_diverging_loss_names_epoch_and_causes(name, value, ctx):
    est = make_learner(
        name,
        module=PoisonTower,
        module__value=value,
        max_epochs=3,
        batch_size=len(ctx.y),  # one batch per epoch: poisoned from epoch 2
    )
    with pytest.raises(TrainingError) as info:
        est.fit(ctx.X, _labels(name, ctx))
    msg = str(info.value)
    # DJSRH's tanh(α·inf) = ±1 keeps the epoch-2 loss finite; its gradient
    # (0 · inf) sends the weights to NaN, and the loss of epoch 3 is NaN
    epoch = 3 if (name == "DJSRHHasher" and value == float("inf")) else 2
    assert msg.startswith(f"{name}: the training loss became ")
    assert (
        f" at epoch {epoch}. Lower the learning rate (lr=0.001) or the loss "
        "weights (" in msg
    )
    assert "lambda" in msg  # the loss weights are named with their values
    assert "check the input scale (standardize=True)" in msg
    _assert_unfitted(est)


@pytest.mark.parametrize("warmup", [0, 5], ids=["codebooks-each-epoch", "no-codebooks"])
def test_realistic_divergence_from_a_huge_learning_rate(warmup, ctx):
    """The first step sends the weights to NaN while its loss was finite: the
    epoch-end codebook refresh (warmup=0), or else the next epoch's loss,
    reports it as a TrainingError, not k-means' "Input X contains NaN"."""
    est = make_learner(
        "HQHasher", lr=1e30, lambda_sim=1e30, max_epochs=3, quantization_warmup=warmup
    )
    what = (
        "the embeddings of modality 'img' of the training items became NaN or "
        "infinite at the end of epoch 1"
        if warmup == 0
        else "the training loss became nan at epoch 2"
    )
    with pytest.raises(TrainingError, match=re.escape(f"HQHasher: {what}. Lower")):
        est.fit(ctx.X, ctx.y)
    _assert_unfitted(est)


@pytest.mark.parametrize("name", LEARNERS)
def test_divergence_in_the_last_step_is_caught(name, ctx):
    """Weights that turn NaN in the very last step (finite loss) are caught
    when the training set is embedded after the last epoch."""
    est = make_learner(
        name, module=NaNGradTower, max_epochs=1, batch_size=len(ctx.y) // 2
    )
    with pytest.raises(TrainingError, match="of the training items became NaN or "):
        est.fit(ctx.X, _labels(name, ctx))
    _assert_unfitted(est)


@pytest.mark.parametrize("name", LEARNERS)
def test_interrupt_in_forward_leaves_unfitted(name, ctx):
    est = make_learner(name, module=InterruptTower, max_epochs=1)
    with pytest.raises(KeyboardInterrupt, match="interrupted during epoch 1 of 1"):
        est.fit(ctx.X, _labels(name, ctx))
    _assert_unfitted(est)


@pytest.mark.parametrize("name", LEARNERS)
@pytest.mark.parametrize("where", ["batch", "epoch"])
@pytest.mark.parametrize("epoch", [1, 2], ids=["first-epoch", "last-epoch"])
def test_interrupt_in_callback_leaves_unfitted(name, where, epoch, ctx):
    # epoch 2 of 2 is the case skorch hides: the history already has its row
    est = _with_callback(make_learner(name, max_epochs=2), InterruptAt(where, epoch))
    with pytest.raises(KeyboardInterrupt, match=f"during epoch {epoch} of 2"):
        est.fit(ctx.X, _labels(name, ctx))
    _assert_unfitted(est)


@pytest.mark.parametrize("name", LEARNERS)
@pytest.mark.parametrize(
    "fault", ["nan-loss", "interrupt-forward", "interrupt-last-epoch"]
)
def test_failed_refit_keeps_previous_fit_whole(name, fault, ctx):
    y = _labels(name, ctx)
    est = make_learner(name).fit(ctx.X, y)
    before = _fitted_state(est)
    codes = est.transform(ctx.X)
    # the custom towers replace the default ones: their width back at its
    # default, so that the learner has nothing to warn about
    width = inspect.signature(type(est)).parameters["hidden_layer_sizes"].default
    if fault == "nan-loss":
        est.set_params(
            module=PoisonTower, module__poison_at=1, hidden_layer_sizes=width
        )
        expected = TrainingError
    elif fault == "interrupt-forward":
        est.set_params(module=InterruptTower, hidden_layer_sizes=width)
        expected = KeyboardInterrupt
    else:
        est = _with_callback(est, InterruptAt("epoch", 1))
        expected = KeyboardInterrupt
    with pytest.raises(expected):
        est.fit(ctx.X, y)
    after = _fitted_state(est)
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert after[key] is value, f"{key} was replaced by the failed refit"
    assert same_codes(est.transform(ctx.X), codes)


@pytest.mark.parametrize("name", LEARNERS)
def test_warm_start_off_by_default_and_no_partial_fit(name):
    # warm_start is skorch's (continue the fitted net, tests/test_training_loop.py)
    est = make_learner(name)
    assert not hasattr(est, "partial_fit")
    assert est.get_params()["warm_start"] is False


@pytest.mark.parametrize("name", LEARNERS)
def test_refit_starts_from_scratch(name, ctx):
    """A second fit gives the codes of a first fit: nothing carries over."""
    y = _labels(name, ctx)
    once = make_learner(name).fit(ctx.X, y)
    twice = make_learner(name).fit(ctx.X, y).fit(ctx.X, y)
    assert same_codes(once.transform(ctx.X), twice.transform(ctx.X))


def test_torch_state_restored_after_failure(ctx):
    """A failed fit leaves torch's global RNG and thread count as they were."""
    rng_state = torch.get_rng_state()
    threads = torch.get_num_threads()
    with pytest.raises(TrainingError):
        make_learner("HQHasher", module=PoisonTower, module__poison_at=1, n_jobs=2).fit(
            ctx.X, ctx.y
        )
    assert torch.equal(torch.get_rng_state(), rng_state)
    assert torch.get_num_threads() == threads
