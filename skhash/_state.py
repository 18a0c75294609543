"""Portable state of a fitted learner: no torch object, no device, no pickle.

A fitted learner's network (``net_``, a skorch :class:`~skorch.NeuralNet`)
holds torch tensors and skorch objects, which :mod:`skops.io` cannot write
and which a pickle ties to the device they lived on. :class:`PortableState`
replaces the network in ``__getstate__`` by a plain description of it: the
module's ``state_dict`` as numpy arrays, the training history as lists and
dicts of numbers, and the name of the format. ``__setstate__`` rebuilds the
same architecture from the learner's parameters and fitted attributes
(``_initialized_net``) and loads the weights into it.

So pickle, joblib and skops all go through one state: a model trained on
CUDA loads on a CPU-only machine, and ``skops.io.dump`` writes a fitted
learner or a whole fitted pipeline with nothing but skops' own node types
plus :func:`skhash.utils.trusted_types`.
"""

from __future__ import annotations

import hashlib
import numbers
import warnings

import numpy as np

from skhash._warnings import user_stacklevel

__all__ = ["PortableState"]

#: The format tag of a network's portable state (bump on any change).
NET_STATE_FORMAT = "skhash.net-state"
NET_STATE_VERSION = 1


def _plain(value):
    """``value`` with numpy scalars, tuples and nested containers made plain
    Python (lists, dicts, floats, ints, str, bool, None)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if value is None or isinstance(value, (bool, str, numbers.Number)):
        return value
    # skorch records only numbers, strings and lists of them; anything else
    # (a user callback's object) is kept as its text rather than pickled
    return repr(value)


def net_state(net):
    """The portable state of a skorch net: weights as arrays, history as lists.

    Parameters
    ----------
    net : skorch.NeuralNet
        An initialized net.

    Returns
    -------
    state : dict
        ``{"format", "version", "module", "history"}``; ``"module"`` maps
        each ``state_dict`` key to a CPU numpy array (a copy).
    """
    module = {
        key: value.detach().cpu().numpy().copy()
        for key, value in _bare(net.module_).state_dict().items()
    }
    return {
        "format": NET_STATE_FORMAT,
        "version": NET_STATE_VERSION,
        "module": module,
        "history": _plain(list(net.history)),
    }


def _bare(module):
    """The module inside data-parallel wrappers (they hold it as ``.module``)."""
    while type(module).__name__ == "DistributedDataParallel":
        module = module.module
    return module


def _digest_value(h, value):
    """Feed ``value`` (arrays, numbers, strings, containers) to the hash ``h``."""
    if isinstance(value, dict):
        for key in sorted(value, key=str):
            h.update(f"<{key}>".encode())
            _digest_value(h, value[key])
    elif isinstance(value, (list, tuple)):
        h.update(f"[{len(value)}]".encode())
        for v in value:
            _digest_value(h, v)
    elif isinstance(value, np.ndarray):
        a = np.ascontiguousarray(value)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    else:
        h.update(repr(_plain(value)).encode())


def model_fingerprint(learner, net, fitted):
    """Short hex digest of what a fitted learner's codes depend on.

    The class, the network's weights, and the learner's fitted arrays and
    numbers ``fitted`` (scalers, codebooks, DJSRH's alpha, ...): two fits
    that would encode items differently get different fingerprints, two
    identical ones (same data, parameters and ``random_state``) the same.
    The training history is left out (its timings differ between runs).

    Parameters
    ----------
    learner : BaseCodeLearner
        The learner.
    net : skorch.NeuralNet
        Its trained net.
    fitted : dict
        Its fitted attributes that the codes depend on.

    Returns
    -------
    fingerprint : str
        16 hex digits.
    """
    h = hashlib.sha256(f"{type(learner).__qualname__}|".encode())
    for key, value in sorted(_bare(net.module_).state_dict().items()):
        h.update(key.encode())
        _digest_value(h, value.detach().cpu().numpy())
    _digest_value(h, fitted)
    return h.hexdigest()[:16]


def _is_net_state(value):
    return isinstance(value, dict) and value.get("format") == NET_STATE_FORMAT


class PortableState:
    """Mixin: a fitted learner's state without torch objects.

    For learners whose fitted network lives in ``net_`` and which implement
    ``_initialized_net()`` (a freshly built, initialized net of the fitted
    architecture, on ``self.device_``). Put it left of ``BaseEstimator``.
    """

    def __getstate__(self):
        state = super().__getstate__()
        net = state.get("net_")
        if net is None or _is_net_state(net):
            return state
        state = dict(state)
        state["net_"] = net_state(net)
        if state.get("accelerator") is not None:
            # a handle of the running processes, not a setting to restore
            state["accelerator"] = None
        # the history is the net's own (one object); rebuilt with the net
        state.pop("history_", None)
        return state

    def __setstate__(self, state):
        saved = state.get("net_")
        if not _is_net_state(saved):
            super().__setstate__(state)
            return
        if saved.get("version") != NET_STATE_VERSION:
            raise ValueError(
                f"This {type(self).__name__} was saved in network-state version "
                f"{saved.get('version')!r}, but this skhash reads version "
                f"{NET_STATE_VERSION}; load it with the skhash version that "
                "saved it."
            )
        state = dict(state)
        del state["net_"]
        super().__setstate__(state)
        self._restore_net(saved)

    def _restore_net(self, saved):
        import torch
        from skorch.history import History

        from skhash.exceptions import DeviceWarning

        device = str(getattr(self, "device_", "cpu"))
        if device.startswith("cuda") and not torch.cuda.is_available():
            warnings.warn(
                f"{type(self).__name__} was fitted on device {device!r}, which "
                "this machine does not have; it is loaded on the CPU "
                "(device_='cpu'). Its codes are the same.",
                DeviceWarning,
                stacklevel=user_stacklevel(),
            )
            device = "cpu"
        self.device_ = device
        devices = [torch.cuda.current_device()] if device.startswith("cuda") else []
        # building the towers draws initial weights: keep the caller's torch
        # random state as it was (the weights are overwritten below anyway)
        # _initialized_net asks for a fitted learner: the rest of the state
        # is in place, the network is what is being rebuilt
        self.net_ = None
        with torch.random.fork_rng(devices=devices):
            net = self._initialized_net()
        weights = {
            key: torch.from_numpy(np.array(value, copy=True))
            for key, value in saved["module"].items()
        }
        try:
            net.module_.load_state_dict(weights)
        except RuntimeError as exc:
            raise ValueError(
                f"The saved weights of this {type(self).__name__} do not fit the "
                "network its parameters build (was a parameter such as "
                "hidden_layer_sizes or module changed in the file?): "
                f"{exc}"
            ) from exc
        net.module_.eval()
        net.history = History(saved["history"])
        self.net_ = net
        self.history_ = net.history
