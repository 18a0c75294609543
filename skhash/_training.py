"""The pieces of skorch training the learners share.

The device and thread settings of a fit, skhash's own skorch callbacks (loss
watch, epoch count, the state kept with a checkpoint), the criteria's base
class, the dataset skorch iterates, skorch's ``NeuralNet`` with its
Accelerate integration, the epoch table's output, and the view of a net that
a fitted state is read from mid-training.
:class:`~skhash._base.BaseCodeLearner` assembles them in ``fit``.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import re
import sys

import numpy as np
import torch
from skorch import NeuralNet
from skorch.callbacks import Callback, Checkpoint, EarlyStopping
from threadpoolctl import threadpool_limits
from torch import nn

__all__ = ["resolve_device", "torch_threads"]


@contextlib.contextmanager
def torch_threads(n_jobs):
    """Use ``n_jobs`` CPU threads (torch, BLAS, OpenMP) in the block, then restore.

    Parameters
    ----------
    n_jobs : int or None
        None keeps the current setting; -1 means all cores; 0 is read as 1.

    Yields
    ------
    None

    Examples
    --------
    >>> import torch
    >>> from skhash._training import torch_threads
    >>> before = torch.get_num_threads()
    >>> with torch_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    if n_jobs is None:
        yield
        return
    before = torch.get_num_threads()
    n = (os.cpu_count() or 1) if n_jobs == -1 else max(1, int(n_jobs))
    torch.set_num_threads(n)
    try:
        # numpy's BLAS and OpenMP (k-means, codebook updates) follow suit, so
        # that a given n_jobs also gives the same floating-point results
        with threadpool_limits(limits=n):
            yield
    finally:
        torch.set_num_threads(before)


def resolve_device(device):
    """Check a device name and resolve ``"auto"``.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``,
        ``"cuda:1"`` or ``"mps"``. Other device types (``"meta"``, ...) and
        names torch does not parse (``"gpu"``, ``"cuda:x"``) raise.

    Returns
    -------
    device : str
        The device to use.

    Examples
    --------
    >>> from skhash._training import resolve_device
    >>> resolve_device("cpu")
    'cpu'
    """
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise ValueError(
            f"device={device!r} must be a string such as 'auto', 'cpu' or 'cuda'."
        )
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    hint = " (CUDA devices are named 'cuda')" if device.lower() == "gpu" else ""
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(
            f"device={device!r} is not a device name{hint}; use 'auto', 'cpu', "
            "'cuda', 'cuda:<index>' (e.g. 'cuda:0') or 'mps'."
        ) from None
    if parsed.type not in ("cpu", "cuda", "mps"):
        raise ValueError(
            f"device={device!r} is a {parsed.type!r} device, on which a learner "
            "cannot train; use 'auto', 'cpu', 'cuda' or 'mps'."
        )
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} was requested but CUDA is not available on "
                "this machine. Use device='auto' (CUDA when present, else CPU) "
                "or device='cpu'."
            )
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r}: this machine has {torch.cuda.device_count()} "
                f"CUDA device(s), numbered from 0; use 'cuda:0' .. "
                f"'cuda:{torch.cuda.device_count() - 1}' or 'cuda'."
            )
    if parsed.type == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ValueError(
            f"device={device!r} was requested but MPS is not available on this "
            "machine. Use device='auto' or device='cpu'."
        )
    return device


class _LossWatch(Callback):
    """Stops training with a clear error when the loss is not finite, and
    records the per-epoch mean of each loss term in the history (the terms
    of the validation batches with a ``valid_`` prefix)."""

    def __init__(self, learner):
        self.learner = learner

    def on_epoch_begin(self, net, **kwargs):
        net.criterion_.begin_epoch(len(net.history))

    def on_batch_end(self, net, batch=None, training=None, **kwargs):
        key = "train_loss" if training else "valid_loss"
        loss = net.history[-1, "batches", -1].get(key)
        if loss is not None and not math.isfinite(loss):
            what = "training" if training else "validation"
            raise self.learner._diverged(
                f"the {what} loss became {loss} at epoch {len(net.history)}"
            )

    def on_epoch_end(self, net, **kwargs):
        for name, value in net.criterion_.end_epoch().items():
            net.history.record(name, value)


class _EpochsDone(Callback):
    """Counts the epochs whose training, validation and skhash callbacks all
    ran to their end.

    skorch's ``partial_fit`` swallows a ``KeyboardInterrupt`` and returns
    normally, and the history already holds a row for the epoch that was
    interrupted; this callback, placed after skhash's own callbacks and
    before the user's, tells an interrupted epoch (re-raised) from a stop
    requested by a user callback at an epoch's end (skorch's
    ``EarlyStopping`` raises ``KeyboardInterrupt`` there).
    """

    def __init__(self):
        self.n_done = 0
        self.n_rows = None

    def on_train_begin(self, net, **kwargs):
        self.n_done = 0
        self.n_rows = None

    def on_epoch_end(self, net, **kwargs):
        self.n_done += 1

    def on_train_end(self, net, **kwargs):
        # the history's rows when training ended, before the user's
        # callbacks' on_train_end (a Checkpoint(load_best=True) reloads its
        # saved, shorter history there)
        self.n_rows = len(net.history)


def _restores_weights(cb):
    """Whether a user callback restores earlier weights at the end of
    training: ``Checkpoint`` or ``EarlyStopping`` with ``load_best=True``."""
    return isinstance(cb, (Checkpoint, EarlyStopping)) and bool(
        getattr(cb, "load_best", False)
    )


class _EpochStates(Callback):
    """Keeps the learner's fitted state (codebooks, α) of the epoch whose
    weights a ``Checkpoint(load_best=True)`` or ``EarlyStopping(load_best=
    True)`` restores at the end of training (the last such callback's: its
    ``on_train_end`` runs last), so that the codes after fit match the
    restored weights. Placed after the user's callbacks; the restoring
    callbacks are found among the net's initialised ones, so a
    ``load_best`` set by routing (``callbacks__cp__load_best=True``)
    counts."""

    def __init__(self, learner):
        self.learner = learner
        self.restorer = None
        self.state = None

    def on_train_begin(self, net, **kwargs):
        self.state = None
        found = [cb for _, cb in net.callbacks_ if _restores_weights(cb)]
        self.restorer = found[-1] if found else None

    def _saves(self, net):
        """Whether the restorer keeps the weights of the epoch just ended."""
        cb = self.restorer
        if isinstance(cb, EarlyStopping):
            return getattr(cb, "best_epoch_", None) == net.history[-1, "epoch"]
        if cb.monitor is None:
            return True
        if callable(cb.monitor):
            return bool(cb.monitor(net))
        return bool(net.history[-1].get(cb.monitor, False))

    def on_epoch_end(self, net, dataset_train=None, **kwargs):
        if self.restorer is not None and self._saves(net):
            emb = self.learner._embed_training_data(net, dataset_train.X)
            self.state = self.learner._epoch_state(net, emb)


class _CodebookRefresh(Callback):
    """Base of the learners' codebook callbacks: the codebooks are refitted
    on the embedded training set (``_refresh(net, X)``, of the subclass) at
    the end of every epoch from epoch ``quantization_warmup`` on, and before
    the first epoch of a fit whenever that epoch already trains with the
    quantization loss: with ``quantization_warmup=0``, or on a warm start
    whose earlier epochs (the copied history) passed the warm-up. The loss of
    epoch ``e`` thus uses codebooks from the end of epoch ``e − 1``, for
    every ``e > quantization_warmup``, whether the epochs ran in one fit or
    in several warm-started ones."""

    def _refresh(self, net, X):
        raise NotImplementedError

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        lrn = self.learner
        if lrn.lambda_q > 0 and len(net.history) >= lrn.quantization_warmup:
            self._refresh(net, getattr(X, "X", X))  # skhash's item dataset

    def on_epoch_end(self, net, dataset_train=None, **kwargs):
        lrn = self.learner
        if lrn.lambda_q == 0 or len(net.history) < lrn.quantization_warmup:
            return
        self._refresh(net, dataset_train.X)


class _Criterion(nn.Module):
    """Base of the learners' criteria: accumulates named loss terms.

    Terms computed without gradient (skorch's validation batches) are kept
    apart and reported with a ``valid_`` prefix.
    """

    def __init__(self):
        super().__init__()
        self._sums = {}
        self._count = 0
        self._valid_sums = {}
        self._valid_count = 0
        self.epoch = 0

    def begin_epoch(self, epoch):
        self.epoch = epoch
        self._sums, self._count = {}, 0
        self._valid_sums, self._valid_count = {}, 0

    def end_epoch(self):
        out = {}
        if self._count:
            out.update({k: v / self._count for k, v in self._sums.items()})
        if self._valid_count:
            out.update(
                {
                    f"valid_{k}": v / self._valid_count
                    for k, v in self._valid_sums.items()
                }
            )
        return out

    def __call__(self, *args, **kwargs):
        # skorch computes the validation loss without gradient
        self._training_batch = torch.is_grad_enabled()
        return super().__call__(*args, **kwargs)

    def _record(self, **terms):
        if getattr(self, "_training_batch", True):
            sums = self._sums
            self._count += 1
        else:
            sums = self._valid_sums
            self._valid_count += 1
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + float(v)


class _ItemDataset(torch.utils.data.Dataset):
    """The items of a fit, as skorch iterates them.

    Each item is ``({modality: tensor, index_key: position}, target)``; the
    arrays are read a row at a time and keep their dtype (a ``uint8`` image
    set stays ``uint8``: the towers' input layer converts each batch to
    float32). ``X`` is the dict of the arrays, for callbacks that embed the
    whole set.
    """

    def __init__(self, arrays, y, index_key="index"):
        self.X = arrays
        self.y = y
        self.index_key = index_key
        self._n = len(y)

    def __len__(self):
        return self._n

    def __getitem__(self, i):
        item = {name: torch.from_numpy(np.array(a[i])) for name, a in self.X.items()}
        item[self.index_key] = i
        return item, self.y[i]


def _bare_module(module):
    """The towers inside a data-parallel wrapper (accelerate's DDP), or as is."""
    while isinstance(module, nn.parallel.DistributedDataParallel):
        module = module.module
    return module


def _accelerated_net_class():
    """skorch's NeuralNet with its Accelerate integration (``accelerator=``)."""
    try:
        from skorch.hf import AccelerateMixin
    except ImportError as exc:  # pragma: no cover - skorch without hf module
        raise ImportError(
            "accelerator= needs skorch's Accelerate integration (skorch.hf) and "
            "accelerate: pip install 'skhash[accelerate]'."
        ) from exc
    global _ACCELERATED_NET
    if _ACCELERATED_NET is None:

        class AcceleratedNeuralNet(AccelerateMixin, NeuralNet):
            """skorch's NeuralNet trained through accelerate."""

            def _initialize_accelerator(self):
                # skhash's criteria hold no trainable parameter, and
                # accelerate would wrap them in DistributedDataParallel,
                # which refuses such a module: prepare the towers and the
                # optimizer only, and put the criteria on the device
                held = {}
                for name in self._criteria:
                    crit = getattr(self, name + "_")
                    if isinstance(crit, nn.Module) and not any(
                        p.requires_grad for p in crit.parameters()
                    ):
                        held[name] = crit
                        setattr(self, name + "_", None)
                try:
                    return super()._initialize_accelerator()
                finally:
                    for name, crit in held.items():
                        setattr(self, name + "_", crit.to(self.accelerator.device))

        _ACCELERATED_NET = AcceleratedNeuralNet
    return _ACCELERATED_NET


_ACCELERATED_NET = None


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _silent(text):
    """An epoch-table sink that prints nothing (accelerate's other ranks)."""


def _print_table(text):
    """skorch's epoch-table sink: ``print``, dropping the ANSI colour codes
    when standard output is not a terminal (a log file, a pipe, CI)."""
    out = sys.stdout
    if not (hasattr(out, "isatty") and out.isatty()):
        text = _ANSI.sub("", text)
    print(text, file=out)
    out.flush()


class _NetView:
    """What ``_finish_fit`` reads of a net, on copies of the stateful parts
    (the codebook callbacks, the criterion's per-item state), so that the
    fitted state of "training stopped now" can be computed mid-training."""

    def __init__(self, net):
        self.device = net.device
        self.module_ = net.module_
        self.history = net.history
        self.criterion_ = copy.copy(net.criterion_)
        self.callbacks_ = [(name, _copy_state(cb)) for name, cb in net.callbacks_]


def _copy_state(cb):
    out = copy.copy(cb)
    for key, value in vars(cb).items():
        if isinstance(value, (np.ndarray, np.random.RandomState)):
            setattr(out, key, copy.deepcopy(value))
    return out
