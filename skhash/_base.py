"""The learners' shared base: validation, towers, skorch training, codes."""

from __future__ import annotations

import contextlib
import math
import numbers
import os
from abc import abstractmethod

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted
from skorch import NeuralNet
from skorch.callbacks import Callback
from skorch.helper import SliceDict
from threadpoolctl import threadpool_limits
from torch import nn

from skhash._modalities import SINGLE_MODALITY, MultiModal, as_modalities
from skhash._networks import MLPTower, MultiTower
from skhash._state import PortableState
from skhash.exceptions import TrainingError

__all__ = ["BaseCodeLearner", "resolve_device"]

_ROUTED_PREFIXES = ("module__", "optimizer__")


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
    >>> from skhash._base import torch_threads
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
    """Resolve ``"auto"`` to ``"cuda"`` when available, else ``"cpu"``.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...

    Returns
    -------
    device : str
        The device to use.

    Examples
    --------
    >>> from skhash._base import resolve_device
    >>> resolve_device("cpu")
    'cpu'
    """
    device = str(device)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was requested but CUDA is not available on this "
            "machine. Use device='auto' (CUDA when present, else CPU) or "
            "device='cpu'."
        )
    return device


class _LossWatch(Callback):
    """Stops training with a clear error when the loss is not finite, and
    records the per-epoch mean of each loss term in the history."""

    def __init__(self, learner):
        self.learner = learner

    def on_epoch_begin(self, net, **kwargs):
        net.criterion_.begin_epoch(len(net.history))

    def on_batch_end(self, net, batch=None, training=None, **kwargs):
        loss = net.history[-1, "batches", -1].get("train_loss")
        if loss is not None and not math.isfinite(loss):
            raise self.learner._diverged(
                f"the training loss became {loss} at epoch {len(net.history)}"
            )

    def on_epoch_end(self, net, **kwargs):
        for name, value in net.criterion_.end_epoch().items():
            net.history.record(name, value)


def _plain(value):
    """A numpy scalar as the Python value, for messages (0, not np.int64(0))."""
    return value.item() if isinstance(value, np.generic) else value


class _EpochsDone(Callback):
    """Counts the epochs that ran to their end, every callback included.

    skorch's ``partial_fit`` swallows a ``KeyboardInterrupt`` and returns
    normally, and the history already holds a row for the epoch that was
    interrupted; this callback, placed last, is the only reliable record of
    whether the final epoch completed.
    """

    def __init__(self):
        self.n_done = 0

    def on_train_begin(self, net, **kwargs):
        self.n_done = 0

    def on_epoch_end(self, net, **kwargs):
        self.n_done += 1


class _Criterion(nn.Module):
    """Base of the learners' criteria: accumulates named loss terms."""

    def __init__(self):
        super().__init__()
        self._sums = {}
        self._count = 0
        self.epoch = 0

    def begin_epoch(self, epoch):
        self.epoch = epoch
        self._sums, self._count = {}, 0

    def end_epoch(self):
        if not self._count:
            return {}
        return {k: v / self._count for k, v in self._sums.items()}

    def _record(self, **terms):
        self._count += 1
        for k, v in terms.items():
            self._sums[k] = self._sums.get(k, 0.0) + float(v)


class BaseCodeLearner(PortableState, TransformerMixin, BaseEstimator):
    """Base class of skhash's code learners (not for direct use).

    It owns what the three learners share: input validation (a plain 2-D
    array or a :class:`~skhash.MultiModal`), per-modality standardisation,
    the towers, a skorch :class:`~skorch.NeuralNet` built in ``fit`` and
    stored as ``net_``, device resolution, seeding from ``random_state``
    without touching global random state, the loss history, and
    ``transform`` to a :class:`~skhash.CodeSet`. Subclasses provide the
    criterion (:meth:`_make_criterion`), optional callbacks, and the codes
    (:meth:`_codes_from_embeddings`).
    """

    _parameter_constraints: dict = {
        "hidden_layer_sizes": [tuple, list],
        "dropout": [Interval(numbers.Real, 0, 1, closed="left")],
        "module": [None, type, dict],
        "standardize": ["boolean"],
        "max_epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "batch_size": [Interval(numbers.Integral, 2, None, closed="left")],
        "lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
        "device": [str],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "n_jobs": [None, Interval(numbers.Integral, -1, None, closed="left")],
    }

    #: whether ``fit`` needs labels
    _requires_y = True

    # -- routed parameters (skorch style: module__width=...) ----------------
    def _store_routed(self, kwargs):
        # __init__ only stores; the names are checked in fit
        for key, value in kwargs.items():
            setattr(self, key, value)

    def _check_routed(self):
        params = set(self._get_param_names())
        for key in vars(self):
            if key in params or key.startswith("_") or key.endswith("_"):
                continue
            if key.startswith(_ROUTED_PREFIXES):
                continue
            hint = ""
            for prefix in _ROUTED_PREFIXES:
                if key.startswith(prefix[:-1]):
                    hint = f" Did you mean {prefix}{key[len(prefix) - 1 :]}?"
            raise TypeError(
                f"{type(self).__name__} got an unexpected keyword argument "
                f"{key!r}. Extra arguments must start with 'module__' (passed "
                "to the tower class) or 'optimizer__' (passed to the "
                f"optimizer).{hint}"
            )

    def _routed(self, prefix):
        return {
            k[len(prefix) :]: v
            for k, v in vars(self).items()
            if k.startswith(prefix) and not k.endswith("_")
        }

    def get_params(self, deep=True):
        params = super().get_params(deep=deep)
        names = set(self._get_param_names())
        params.update(
            {
                k: v
                for k, v in vars(self).items()
                if k not in names and not k.startswith("_") and not k.endswith("_")
            }
        )
        return params

    def set_params(self, **params):
        routed = {k: v for k, v in params.items() if k.startswith(_ROUTED_PREFIXES)}
        for k, v in routed.items():
            setattr(self, k, v)
        rest = {k: v for k, v in params.items() if k not in routed}
        return super().set_params(**rest) if rest else self

    # -- validation ---------------------------------------------------------
    @staticmethod
    def _dense_float32(mm):
        out = {}
        for name, value in mm.items():
            dense = value.toarray() if sp.issparse(value) else value
            with np.errstate(over="ignore"):
                a = np.asarray(dense, dtype=np.float32)
            if not np.isfinite(a).all():  # finite input (checked): overflow
                who = "X" if name == SINGLE_MODALITY else f"Modality {name!r}"
                raise ValueError(
                    f"{who} has values too large for float32 (largest magnitude "
                    f"{float(np.abs(dense).max()):.3g}; float32 holds up to "
                    "3.4e+38), in which the towers compute; rescale the features."
                )
            out[name] = a
        return out

    def _validate_y(self, y, n_samples):
        if y is None:
            if self._requires_y:
                raise ValueError(
                    f"{type(self).__name__} requires y to be passed, but the target y "
                    "is None: it is supervised; fit(X, y) needs labels y "
                    "(class ids of shape (n_samples,) or a multi-label indicator "
                    "matrix of shape (n_samples, n_classes))."
                )
            return None
        y = np.asarray(y)
        if y.dtype.kind in "fc" and np.isnan(y).any():
            # np.unique would make NaN one more class, silently
            raise ValueError(
                f"y contains NaN ({int(np.isnan(y).sum())} values); labels must "
                "be class ids or a 0/1 indicator matrix. Drop or impute the items "
                "with missing labels."
            )
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.ravel()
        if y.ndim not in (1, 2) or y.shape[0] != n_samples:
            raise ValueError(
                f"y must have shape (n_samples,) or (n_samples, n_classes) with "
                f"n_samples={n_samples}; got {y.shape}."
            )
        if y.ndim == 1:
            classes, y = np.unique(y, return_inverse=True)
            if len(classes) < 2:
                raise ValueError(
                    f"y has a single class ({_plain(classes[0])!r}): every pair "
                    "would be similar and the codes could not learn anything. "
                    "Pass labels of at least two classes."
                )
            return y.astype(np.int64)
        if not np.isin(y, (0, 1)).all():
            raise ValueError(
                "A 2-D y must be a multi-label indicator matrix of 0/1 values."
            )
        if not y.any(axis=1).all():
            raise ValueError(
                f"{int((~y.any(axis=1)).sum())} rows of y have no label; every item "
                "needs at least one label for the pairwise similarity."
            )
        return y.astype(np.float32)

    # -- hooks for subclasses ------------------------------------------------
    @abstractmethod
    def _n_outputs(self):
        """Width of each tower's output."""

    @abstractmethod
    def _make_criterion(self, modalities, n_train):
        """Return the criterion module (a ``_Criterion``)."""

    def _check_params(self):
        """Checks across parameters, after the declared constraints."""

    def _callbacks(self, rng):
        """Extra skorch callbacks; ``rng`` is the fit's random state."""
        return []

    def _loss_weights_repr(self):
        return ", ".join(
            f"{k}={v}"
            for k, v in self.get_params(deep=False).items()
            if k.startswith("lambda")
        )

    @abstractmethod
    def _finish_fit(self, net, embeddings):
        """Set the subclass's fitted state (codebooks, ...) after training."""

    @abstractmethod
    def _codes_from_embeddings(self, modality, embedding):
        """Return the CodeSet of one modality."""

    # -- fit -----------------------------------------------------------------
    def _build_towers(self, n_features):
        n_out = self._n_outputs()
        towers = {}
        for name, width in n_features.items():
            cls = self.module
            if isinstance(cls, dict):
                if name not in cls:
                    raise ValueError(
                        f"module is a dict without an entry for modality {name!r}; "
                        f"it has {sorted(cls)}."
                    )
                cls = cls[name]
            if cls is None:
                tower = MLPTower(
                    width,
                    n_out,
                    hidden_layer_sizes=tuple(self.hidden_layer_sizes),
                    dropout=self.dropout,
                    **self._routed("module__"),
                )
            else:
                tower = cls(
                    n_features=width, n_outputs=n_out, **self._routed("module__")
                )
                if not isinstance(tower, nn.Module):
                    raise TypeError(
                        f"module must build a torch.nn.Module; {cls!r} built "
                        f"{type(tower).__name__}."
                    )
            towers[name] = tower
        return MultiTower(towers)

    def _make_net(
        self,
        input_shapes,
        n_train,
        device,
        *,
        rng=None,
        generator=None,
        epochs_done=None,
    ):
        """Build the (uninitialised) skorch net of this learner's parameters.

        Parameters
        ----------
        input_shapes : dict of str to tuple of int
            The per-item input shape of each modality, in the order of the
            modalities (``{"img": (4096,), "txt": (1000,)}``).
        n_train : int or None
            Number of training items (caps the batch size); None when the
            net is built for a fitted learner without training.
        device : str
            The resolved device.
        rng : RandomState, default=None
            The fit's random state, handed to the subclass's callbacks.
        generator : torch.Generator, default=None
            Shuffles the training batches.
        epochs_done : _EpochsDone, default=None
            The last callback, counting completed epochs.

        Returns
        -------
        net : skorch.NeuralNet
            Its module (the towers) is built, with weights drawn from torch's
            current global generator: call it under a seeded ``fork_rng``.
        """
        modalities = tuple(input_shapes)
        n_features = {
            name: int(np.prod(shape, dtype=np.int64))
            for name, shape in input_shapes.items()
        }
        module = self._build_towers(n_features)
        criterion = self._make_criterion(
            modalities, n_train if n_train is not None else 0
        )
        batch_size = (
            self.batch_size if n_train is None else min(self.batch_size, n_train)
        )
        iterator_train = {"iterator_train__shuffle": True}
        if generator is not None:
            iterator_train["iterator_train__generator"] = generator
        if n_train is not None:
            iterator_train["iterator_train__drop_last"] = n_train > batch_size
        return NeuralNet(
            module=module,
            criterion=criterion,
            optimizer=torch.optim.Adam,
            lr=self.lr,
            optimizer__weight_decay=self.weight_decay,
            max_epochs=self.max_epochs,
            batch_size=batch_size,
            train_split=None,
            callbacks=[
                ("loss_watch", _LossWatch(self)),
                *self._callbacks(rng if rng is not None else np.random.RandomState(0)),
                (
                    "epochs_done",
                    epochs_done if epochs_done is not None else _EpochsDone(),
                ),
            ],
            device=device,
            verbose=int(self.verbose),
            **iterator_train,
            **{f"optimizer__{k}": v for k, v in self._routed("optimizer__").items()},
        )

    def _initialized_net(self):
        """A freshly built, ``initialize()``-d net of the fitted architecture.

        The towers have the fitted learner's structure (the modalities,
        input shapes and device of ``fit``) and fresh weights: nothing is
        trained. Load a state into ``net.module_`` to restore a fitted
        learner without pickle. Global random state is not touched.

        Returns
        -------
        net : skorch.NeuralNet
            Initialised (``net.module_``, ``net.criterion_``,
            ``net.optimizer_`` exist).
        """
        check_is_fitted(self, "net_")
        input_shapes = getattr(self, "input_shapes_", None)
        if input_shapes is None:
            input_shapes = {
                name: (width,) for name, width in self.n_features_per_modality_.items()
            }
        fork_devices = (
            [torch.cuda.current_device()] if self.device_.startswith("cuda") else []
        )
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(0)
            net = self._make_net(input_shapes, None, self.device_)
            net.initialize()
        return net

    def fit(self, X, y=None):
        """Train the towers and learn the codes.

        Parameters
        ----------
        X : MultiModal or array-like of shape (n_samples, n_features)
            Training items: a :class:`~skhash.MultiModal` of paired
            modalities, or a plain 2-D array (single-modal retrieval).
        y : array-like of shape (n_samples,) or (n_samples, n_classes)
            Labels: class ids or a multi-label indicator matrix. Two items
            are similar when they share a label.

        Returns
        -------
        self : object
            The fitted learner.

        Notes
        -----
        A fit that fails (a :class:`~skhash.exceptions.TrainingError` when
        the loss turns NaN or infinite, a ``KeyboardInterrupt``, any other
        error) sets no fitted attribute: they are all set together once
        training and the codes succeeded. An unfitted learner stays
        unfitted, and a fitted one keeps its previous fit whole (the same
        ``net_``, codebooks and history), never a mix of the two.
        There is no ``warm_start`` or ``partial_fit``: every ``fit``
        trains from scratch.
        """
        self._validate_params()
        with torch_threads(self.n_jobs):
            return self._fit(X, y)

    def _fit(self, X, y):
        self._check_routed()
        self._check_params()
        if not self._requires_y:
            y = None  # unsupervised: labels are ignored, not validated
        arrays = self._dense_float32(as_modalities(X))
        n = next(iter(arrays.values())).shape[0]
        if n < 2:
            raise ValueError(
                f"{type(self).__name__} needs at least 2 training items; got "
                f"n_samples={n}."
            )
        y_checked = self._validate_y(y, n)
        device = resolve_device(self.device)
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(np.iinfo(np.int32).max))

        scaler = {}
        for name, a in arrays.items():
            if self.standardize:
                mean = a.mean(0)
                scale = a.std(0)
                scale[scale < 1e-8] = 1.0
            else:
                mean = np.zeros(a.shape[1], np.float32)
                scale = np.ones(a.shape[1], np.float32)
            scaler[name] = (mean.astype(np.float32), scale.astype(np.float32))
        inputs = {
            name: (a - scaler[name][0]) / scaler[name][1] for name, a in arrays.items()
        }
        n_features = {name: a.shape[1] for name, a in arrays.items()}
        input_shapes = {name: tuple(a.shape[1:]) for name, a in arrays.items()}
        modalities = tuple(arrays)

        generator = torch.Generator().manual_seed(seed)
        epochs_done = _EpochsDone()
        fork_devices = (
            [torch.cuda.current_device()] if device.startswith("cuda") else []
        )
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(seed)
            net = self._make_net(
                input_shapes,
                n,
                device,
                rng=rng,
                generator=generator,
                epochs_done=epochs_done,
            )
            train_X = SliceDict(**inputs, index=np.arange(n))
            target = np.zeros(n, dtype=np.int64) if y_checked is None else y_checked
            net.fit(train_X, target)
        if epochs_done.n_done < self.max_epochs:
            # skorch swallowed a KeyboardInterrupt (in the last epoch too,
            # whose row is already in the history): re-raise it
            raise KeyboardInterrupt(
                f"{type(self).__name__}.fit was interrupted during epoch "
                f"{epochs_done.n_done + 1} of {self.max_epochs}; the estimator "
                "was left as it was before fit (unfitted, or its previous fit)."
            )
        net.module_.eval()
        embeddings = {
            name: self._embed(net, name, inputs[name], device) for name in modalities
        }
        self._check_embeddings(embeddings, "after the last epoch")
        state = self._finish_fit(net, embeddings)
        # fitted state is set only once everything succeeded
        self.modalities_ = modalities
        if len(modalities) == 1:
            self.n_features_in_ = n_features[modalities[0]]
        self.n_features_per_modality_ = n_features
        self.input_shapes_ = input_shapes
        self.device_ = device
        self.scaler_ = scaler
        self.net_ = net
        self.history_ = net.history
        for key, value in state.items():
            setattr(self, key, value)
        return self

    @staticmethod
    def _embed(net, modality, inputs, device, batch_size=4096):
        module = net.module_
        was_training = module.training
        module.eval()
        out = []
        with torch.no_grad():
            for start in range(0, inputs.shape[0], batch_size):
                xb = torch.as_tensor(inputs[start : start + batch_size], device=device)
                out.append(module.encode(modality, xb).float().cpu().numpy())
        module.train(was_training)
        return np.concatenate(out, axis=0).astype(np.float32, copy=False)

    def _embed_training_data(self, net, X):
        """Embeddings of the training inputs (used by per-epoch callbacks)."""
        embeddings = {
            name: self._embed(net, name, X[name], net.device)
            for name in net.module_.towers
        }
        self._check_embeddings(embeddings, f"at the end of epoch {len(net.history)}")
        return embeddings

    def _check_embeddings(self, embeddings, when):
        # the last optimizer step can send the weights to NaN/inf while the
        # loss of its batch was still finite; k-means or CodeSet would then
        # fail on "Input X contains NaN" with no hint of the cause
        for name, emb in embeddings.items():
            if not np.isfinite(emb).all():
                who = "" if name == SINGLE_MODALITY else f" of modality {name!r}"
                raise self._diverged(
                    f"the embeddings{who} of the training items became NaN or "
                    f"infinite {when}"
                )

    def _diverged(self, what):
        """The TrainingError of a diverging fit: what happened and the fixes."""
        return TrainingError(
            f"{type(self).__name__}: {what}. Lower the learning rate (lr="
            f"{self.lr}) or the loss weights ({self._loss_weights_repr()}), or "
            "check the input scale (standardize=True). The estimator was left "
            "as it was before fit (unfitted, or its previous fit)."
        )

    # -- transform -------------------------------------------------------------
    def transform(self, X):
        """Encode items into compact codes.

        Parameters
        ----------
        X : MultiModal or array-like of shape (n_samples, n_features)
            Items with any subset of the modalities seen in ``fit``.

        Returns
        -------
        codes : CodeSet
            Embeddings and codes per modality (see the learner for which
            parts it produces), with the shared codebooks.
        """
        check_is_fitted(self, "net_")
        with torch_threads(self.n_jobs):
            return self._transform(X)

    def _transform(self, X):
        arrays = self._check_transform_X(X)
        from skhash._codes import CodeSet

        parts = {}
        for name, a in arrays.items():
            mean, scale = self.scaler_[name]
            emb = self._embed(self.net_, name, (a - mean) / scale, self.device_)
            parts[name] = self._codes_from_embeddings(name, emb)
        if len(parts) == 1 and tuple(parts) == self.modalities_:
            return next(iter(parts.values()))
        return CodeSet.from_modalities(**parts)

    def _check_transform_X(self, X):
        if isinstance(X, (MultiModal, dict)):
            mm = as_modalities(X)
        else:
            if len(self.modalities_) != 1:
                raise ValueError(
                    f"{type(self).__name__} was fitted on the modalities "
                    f"{self.modalities_}; pass a MultiModal such as "
                    f"MultiModal({self.modalities_[0]}=...), not a plain array."
                )
            mm = as_modalities(X)
            mm = MultiModal._from_checked({self.modalities_[0]: mm["X"]})
        unknown = [m for m in mm.modalities if m not in self.modalities_]
        if unknown:
            raise ValueError(
                f"Unknown modalities {unknown}: {type(self).__name__} was fitted on "
                f"{self.modalities_}."
            )
        arrays = self._dense_float32(mm)
        for name, value in arrays.items():
            expected = self.n_features_per_modality_[name]
            if value.shape[1] != expected:
                who = "X" if name == SINGLE_MODALITY else f"Modality {name!r}"
                raise ValueError(
                    f"{who} has {value.shape[1]} features, but "
                    f"{type(self).__name__} is expecting {expected} features as "
                    "input (the width seen in fit)."
                )
        return arrays

    def __sklearn_is_fitted__(self):
        return hasattr(self, "net_")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = self._requires_y
        tags.non_deterministic = False
        tags.input_tags.sparse = True  # densified per modality (bag-of-words)
        tags.transformer_tags.preserves_dtype = []
        return tags
