"""The learners' shared base: validation, towers, skorch training, codes."""

from __future__ import annotations

import contextlib
import copy
import numbers
from abc import abstractmethod

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted
from skorch import NeuralNet
from skorch.dataset import ValidSplit
from skorch.helper import predefined_split
from torch import nn

from skhash._embedding import _LearnerEmbedding
from skhash._inputs import _LearnerInputs
from skhash._modalities import SINGLE_MODALITY, as_modalities
from skhash._networks import MLPTower, MultiTower, _tower_kwargs
from skhash._params import _LearnerParams
from skhash._scaling import fit_scaler
from skhash._state import PortableState, model_fingerprint
from skhash._training import (
    _accelerated_net_class,
    _bare_module,
    _Criterion,  # noqa: F401 (the learners subclass it from here)
    _EpochsDone,
    _EpochStates,
    _ItemDataset,
    _LossWatch,
    _NetView,
    _print_table,
    _silent,
    resolve_device,
    torch_threads,
)
from skhash.exceptions import NotFittedError, TrainingError

__all__ = ["BaseCodeLearner", "resolve_device"]

#: The widest code, tower output or hidden layer accepted (a clear error
#: instead of a memory error for a typo such as n_bits=10**9).
MAX_WIDTH = 65536


class BaseCodeLearner(
    _LearnerParams,
    _LearnerInputs,
    _LearnerEmbedding,
    PortableState,
    TransformerMixin,
    BaseEstimator,
):
    """Base class of skhash's code learners (not for direct use).

    It owns what the three learners share: input validation (a plain
    array or a :class:`~skhash.MultiModal` of any rank), per-modality
    standardisation (done per batch by the towers' input layer), the towers,
    a skorch :class:`~skorch.NeuralNet` built in ``fit`` and stored as
    ``net_`` (with skorch's optimizer, callbacks, validation split and warm
    start), device resolution, seeding from ``random_state`` without
    touching global random state, the loss history, and ``transform`` to a
    :class:`~skhash.CodeSet`. Subclasses provide the criterion
    (:meth:`_make_criterion`), optional callbacks, and the codes
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
        "optimizer": [callable],
        "callbacks": [None, list, tuple],
        "train_split": [None, Interval(numbers.Real, 0, 1, closed="neither"), callable],
        "warm_start": ["boolean"],
        "accelerator": "no_validation",  # checked in _training_device
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "n_jobs": [None, Interval(numbers.Integral, -1, None, closed="left")],
    }

    #: whether ``fit`` needs labels
    _requires_y = True
    #: parameters fixed by a fit: changing them afterwards needs a new fit
    #: (``module__*`` parameters are always structural)
    _structural_params = ("hidden_layer_sizes", "module", "standardize")

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

    def _tower_modalities(self, modalities):
        """The modalities that get a tower (the others are side inputs)."""
        return tuple(modalities)

    def _start_training(self, net, data):
        """Hand training-time inputs to the net (after ``initialize``).

        ``data`` holds ``train`` and ``valid`` (dicts of the arrays, or
        None), ``side`` (the side inputs: modalities without a tower, split
        alike) and ``scaler``.
        """

    def _stop_training(self, net):
        """Drop the training-time state of the net (after training)."""

    def _warm_start(self, net):
        """Carry the fitted state into ``net`` before a warm-started fit."""

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

    # -- structure ---------------------------------------------------------------
    def _structure(self):
        """The structural parameters, as they are now."""
        out = {name: getattr(self, name) for name in self._structural_params}
        out.update({f"module__{k}": v for k, v in self._routed("module__").items()})
        if isinstance(out.get("hidden_layer_sizes"), list):
            out["hidden_layer_sizes"] = tuple(out["hidden_layer_sizes"])
        return out

    def _check_structure(self):
        fitted = getattr(self, "structure_", None)
        if fitted is None:
            return
        now = self._structure()
        changed = [
            k
            for k in sorted(set(fitted) | set(now))
            if not _same(fitted.get(k, _MISSING), now.get(k, _MISSING))
        ]
        if changed:
            diffs = ", ".join(
                f"{k}={_show(fitted.get(k, _MISSING))} at fit, now "
                f"{_show(now.get(k, _MISSING))}"
                for k in changed
            )
            back = ", ".join(f"{k}={fitted[k]!r}" for k in changed if k in fitted)
            raise NotFittedError(
                f"{type(self).__name__} was fitted with another structure "
                f"({diffs}; changed by set_params after fit), so its network "
                "cannot produce codes of the new structure. Call fit again to "
                "use the new parameters"
                + (f", or set_params({back}) to use the fitted model." if back else ".")
            )

    def _fitted_view(self):
        """A shallow copy of the learner with its parameters as at fit."""
        view = copy.copy(self)
        for key in [k for k in vars(view) if k.startswith("module__")]:
            delattr(view, key)
        for key, value in (getattr(self, "structure_", None) or {}).items():
            setattr(view, key, value)
        return view

    # -- the net -----------------------------------------------------------------
    def _build_towers(self, input_shapes, scaler=None):
        n_out = self._n_outputs()
        towers = {}
        for name, shape in input_shapes.items():
            cls = self.module
            if isinstance(cls, dict):
                if name not in cls:
                    raise ValueError(
                        f"module is a dict without an entry for modality {name!r}; "
                        f"it has {sorted(cls)}."
                    )
                cls = cls[name]
            n_features = int(np.prod(shape, dtype=np.int64))
            if cls is None:
                if len(shape) != 1:
                    raise ValueError(
                        f"Modality {name!r} has items of shape {shape}: the "
                        "default MLP tower reads feature vectors (2-D input). "
                        "Pass a tower for it, e.g. module={"
                        f"{name!r}: MyCNN}} (a torch.nn.Module class), or "
                        "flatten the items with X.reshape(len(X), -1)."
                    )
                tower = MLPTower(
                    n_features,
                    n_out,
                    hidden_layer_sizes=tuple(self.hidden_layer_sizes),
                    dropout=self.dropout,
                    **self._routed("module__"),
                )
            else:
                kwargs = _tower_kwargs(
                    cls,
                    n_features=n_features,
                    input_shape=tuple(shape),
                    n_outputs=n_out,
                    routed=self._routed("module__"),
                )
                tower = cls(**kwargs)
                if not isinstance(tower, nn.Module):
                    raise TypeError(
                        f"module must build a torch.nn.Module; {cls!r} built "
                        f"{type(tower).__name__}."
                    )
            towers[name] = tower
        module = MultiTower(towers, scalers=scaler)
        module.materialize(input_shapes, n_outputs=n_out)
        return module

    def _make_net(
        self,
        input_shapes,
        n_train,
        device,
        *,
        rng=None,
        generator=None,
        epochs_done=None,
        scaler=None,
        valid_dataset=None,
    ):
        """Build the (uninitialised) skorch net of this learner's parameters.

        Parameters
        ----------
        input_shapes : dict of str to tuple of int
            The per-item input shape of each towered modality, in order
            (``{"img": (4096,), "txt": (1000,)}``, ``{"img": (3, 32, 32)}``).
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
            Counts completed epochs.
        scaler : dict, default=None
            Per-modality ``(mean, scale)`` applied by the towers' input layer.
        valid_dataset : torch Dataset, default=None
            The validation items (skorch's ``train_split`` is then
            ``predefined_split(valid_dataset)``).

        Returns
        -------
        net : skorch.NeuralNet
            Its module (the towers) is built, with weights drawn from torch's
            current global generator: call it under a seeded ``fork_rng``.
        """
        modalities = tuple(input_shapes)
        module = self._build_towers(input_shapes, scaler)
        criterion = self._make_criterion(
            modalities, n_train if n_train is not None else 0
        )
        batch_size = (
            self.batch_size if n_train is None else min(self.batch_size, n_train)
        )
        iterators = {"iterator_train__shuffle": True}
        if generator is not None:
            iterators["iterator_train__generator"] = generator
        if n_train is not None:
            iterators["iterator_train__drop_last"] = n_train > batch_size
        if int(self.verbose) > 0:
            # skorch's epoch table, without colour codes when piped
            iterators["callbacks__print_log__sink"] = _print_table
        for prefix in ("iterator_train__", "iterator_valid__", "callbacks__"):
            iterators.update({prefix + k: v for k, v in self._routed(prefix).items()})
        user = [
            cb if isinstance(cb, tuple) else cb
            for cb in copy.deepcopy(self.callbacks or [])
        ]
        callbacks = [
            ("loss_watch", _LossWatch(self)),
            *self._callbacks(rng if rng is not None else np.random.RandomState(0)),
            ("epochs_done", epochs_done if epochs_done is not None else _EpochsDone()),
            *user,
        ]
        callbacks.append(("epoch_states", _EpochStates(self)))
        optimizer_params = {
            f"optimizer__{k}": v for k, v in self._routed("optimizer__").items()
        }
        optimizer_params.setdefault("optimizer__weight_decay", self.weight_decay)
        optimizer_params.pop("optimizer__lr", None)  # equal to lr (checked)
        net_class, placement = NeuralNet, {"device": device}
        if self.accelerator is not None and n_train is not None:
            # training through accelerate; a net rebuilt for a fitted learner
            # (n_train None) is a plain one
            net_class = _accelerated_net_class()
            placement = {"device": None, "accelerator": self.accelerator}
            # accelerate's own sink prints whatever verbose says: the table
            # only with verbose > 0, once (on the main process)
            main = getattr(self.accelerator, "is_main_process", True)
            if int(self.verbose) <= 0:
                sink = print  # skorch's PrintLog stays silent with print
            else:
                sink = _print_table if main else _silent
            iterators["callbacks__print_log__sink"] = sink
        return net_class(
            module=module,
            criterion=criterion,
            optimizer=self.optimizer,
            lr=self.lr,
            max_epochs=self.max_epochs,
            batch_size=batch_size,
            train_split=None
            if valid_dataset is None
            else predefined_split(valid_dataset),
            callbacks=callbacks,
            verbose=int(self.verbose),
            **placement,
            **iterators,
            **optimizer_params,
        )

    def _training_device(self):
        """The device of the training: the accelerator's, or ``device``'s."""
        acc = self.accelerator
        if acc is None:
            return resolve_device(self.device)
        if not (hasattr(acc, "prepare") and hasattr(acc, "device")):
            raise ValueError(
                f"accelerator={acc!r} must be an accelerate.Accelerator (it has "
                "no prepare() or device); pass accelerator=Accelerator() or None."
            )
        if str(self.device) != "auto":
            raise ValueError(
                f"device={self.device!r} was given together with an accelerator, "
                "which places the network itself; leave device='auto' (or pass "
                "accelerator=None to choose the device)."
            )
        return str(acc.device)

    def _initialized_net(self):
        """A freshly built, ``initialize()``-d net of the fitted architecture.

        The towers have the fitted learner's structure (its structural
        parameters, modalities, input shapes and device at ``fit``, even if
        parameters were changed since) and fresh weights: nothing is
        trained. Load a state into ``net.module_`` (the towers' weights and
        the input scaler's buffers) to restore a fitted learner without
        pickle. Global random state is not touched.

        Returns
        -------
        net : skorch.NeuralNet
            Initialised (``net.module_``, ``net.criterion_``,
            ``net.optimizer_`` exist).
        """
        check_is_fitted(self, "net_")
        view = self._fitted_view()
        fork_devices = (
            [torch.cuda.current_device()] if self.device_.startswith("cuda") else []
        )
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(0)
            input_shapes = getattr(self, "input_shapes_", None) or {
                name: (width,) for name, width in self.n_features_per_modality_.items()
            }
            net = view._make_net(input_shapes, None, self.device_, scaler=self.scaler_)
            net.initialize()
        return net

    # -- fit -----------------------------------------------------------------
    def fit(self, X, y=None):
        """Train the towers and learn the codes.

        Parameters
        ----------
        X : MultiModal or array-like of shape (n_samples, ...)
            Training items: a :class:`~skhash.MultiModal` of paired
            modalities (of any rank: feature vectors, images), or a plain
            array (single-modal retrieval).
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
        ``net_``, codebooks and history), never a mix of the two. A stop
        requested by a callback at the end of an epoch (skorch's
        ``EarlyStopping``) ends the fit normally.

        With ``warm_start=True`` a fitted learner continues training its
        network (``max_epochs`` more epochs, the history continued, the
        optimizer state and codebooks carried over) on ``X``, which must
        have the fitted modalities and shapes; the input scaling of the
        first fit is kept.
        """
        self._validate_params()
        with torch_threads(self.n_jobs):
            return self._fit(X, y)

    def _fit(self, X, y):
        self._check_routed()
        self._check_widths()
        self._check_optimizer_params()
        self._check_params()
        warm = bool(self.warm_start) and self.__sklearn_is_fitted__()
        if warm:
            self._check_structure()
        mm = as_modalities(X)
        feature_names = mm._feature_names
        arrays = self._model_inputs(mm)
        n = next(iter(arrays.values())).shape[0]
        if n < 2:
            raise ValueError(
                f"{type(self).__name__} needs at least 2 training items; got "
                f"n_samples={n}."
            )
        towered = self._tower_modalities(tuple(arrays))
        side = {m: a for m, a in arrays.items() if m not in towered}
        arrays = {m: arrays[m] for m in towered}
        if warm and tuple(arrays) != self.modalities_:
            raise ValueError(
                f"warm_start=True continues the fitted network, but X has the "
                f"modalities {tuple(arrays)} and {type(self).__name__} was fitted "
                f"on {self.modalities_}; pass the same modalities or set "
                "warm_start=False to train from scratch."
            )
        input_shapes = {name: tuple(a.shape[1:]) for name, a in arrays.items()}
        if warm and input_shapes != self.input_shapes_:
            raise ValueError(
                f"warm_start=True continues the fitted network, but X has items of "
                f"shapes {input_shapes} and the network was fitted on "
                f"{self.input_shapes_}; pass items of the fitted shapes or set "
                "warm_start=False."
            )
        user_scoring = self._has_retrieval_scoring()
        if not self._requires_y and not user_scoring:
            y = None  # unsupervised: labels are ignored, not validated
        if user_scoring and y is None:
            raise ValueError(
                "RetrievalScoring scores retrieval by shared labels: pass the "
                f"items' labels y to fit ({type(self).__name__} "
                + (
                    "trains without them; they are used for the score only)."
                    if not self._requires_y
                    else "needs them anyway)."
                )
            )
        y_checked = self._validate_y(y, n)
        device = self._training_device()
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(np.iinfo(np.int32).max))

        scaler = self.scaler_ if warm else self._fit_scaler(arrays)
        train_idx, valid_idx = self._split(n, y_checked, rng)
        target = np.zeros(n, dtype=np.int64) if y_checked is None else y_checked
        n_train = len(train_idx)

        def take(d, idx):
            if idx is None:
                return None
            if len(idx) == n and np.array_equal(idx, np.arange(n)):
                return dict(d)
            return {m: a[idx] for m, a in d.items()}

        train_arrays = take(arrays, train_idx)
        valid_arrays = take(arrays, valid_idx)
        train_ds = _ItemDataset(train_arrays, target[train_idx])
        valid_ds = (
            None
            if valid_idx is None
            else _ItemDataset(valid_arrays, target[valid_idx], "valid_index")
        )

        generator = torch.Generator().manual_seed(seed)
        epochs_done = _EpochsDone()
        fork_devices = (
            [torch.cuda.current_device()] if device.startswith("cuda") else []
        )
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(seed)
            net = self._make_net(
                input_shapes,
                n_train,
                device,
                rng=rng,
                generator=generator,
                epochs_done=epochs_done,
                scaler=scaler,
                valid_dataset=valid_ds,
            )
            net.initialize()
            n_before = 0
            if warm:
                n_before = len(self.history_)
                _bare_module(net.module_).load_state_dict(
                    _bare_module(self.net_.module_).state_dict()
                )
                if type(self.net_.optimizer_) is type(net.optimizer_):
                    with contextlib.suppress(ValueError, KeyError):
                        # a copy: load_state_dict keeps the very tensors it is
                        # given, which training would then change in the
                        # previous fit's optimizer (a failed fit changed it)
                        net.optimizer_.load_state_dict(
                            copy.deepcopy(self.net_.optimizer_.state_dict())
                        )
                net.history_ = copy.deepcopy(self.history_)
                self._warm_start(net)
            self._start_training(
                net,
                {
                    "train": train_arrays,
                    "valid": valid_arrays,
                    "side": {
                        "train": take(side, train_idx),
                        "valid": take(side, valid_idx),
                    },
                    "scaler": scaler,
                },
            )
            try:
                net.partial_fit(train_ds, None)
            finally:
                self._stop_training(net)
        # rows at the end of training, before a restoring callback reloaded a
        # shorter history
        rows = (
            epochs_done.n_rows if epochs_done.n_rows is not None else len(net.history)
        )
        n_rows = rows - n_before
        if epochs_done.n_done < n_rows or n_rows < 1:
            # skorch swallowed a KeyboardInterrupt (in the last epoch too,
            # whose row is already in the history): re-raise it
            raise KeyboardInterrupt(
                f"{type(self).__name__}.fit was interrupted during epoch "
                f"{epochs_done.n_done + 1} of {self.max_epochs}; the estimator "
                "was left as it was before fit (unfitted, or its previous fit)."
            )
        net.module_.eval()
        epoch_states = dict(net.callbacks_).get("epoch_states")
        embeddings = self._embed_training_data(
            net, train_arrays, "after the last epoch"
        )
        state = self._finish_fit(net, embeddings)  # also drops training state
        if epoch_states is not None and epoch_states.state is not None:
            state = epoch_states.state  # the epoch whose weights were restored
        # fitted state is set only once everything succeeded
        n_features = {
            name: int(np.prod(shape, dtype=np.int64))
            for name, shape in input_shapes.items()
        }
        self.modalities_ = tuple(arrays)
        for stale in ("n_features_in_", "feature_names_in_"):
            if stale in vars(self):
                delattr(self, stale)
        if len(self.modalities_) == 1:
            self.n_features_in_ = n_features[self.modalities_[0]]
        names = {m: feature_names[m] for m in self.modalities_ if m in feature_names}
        if names:
            if self.modalities_ == (SINGLE_MODALITY,):
                self.feature_names_in_ = names[SINGLE_MODALITY]
            else:
                self.feature_names_in_ = names
        self.n_features_per_modality_ = n_features
        self.input_shapes_ = input_shapes
        self.device_ = device
        self.scaler_ = scaler
        self.structure_ = self._structure()
        self.validation_indices_ = valid_idx
        self.net_ = net
        self.history_ = net.history
        for key, value in state.items():
            setattr(self, key, value)
        # marks the codes of this fit, so the retriever refuses codes of another
        self._model_fingerprint = model_fingerprint(
            self, net, {"scaler": scaler, "structure": self.structure_, **state}
        )
        return self

    def _has_retrieval_scoring(self):
        from skhash.callbacks import RetrievalScoring

        for cb in self.callbacks or []:
            item = cb[1] if isinstance(cb, tuple) else cb
            if isinstance(item, RetrievalScoring) or (
                isinstance(item, type) and issubclass(item, RetrievalScoring)
            ):
                return True
        return False

    def _fit_scaler(self, arrays):
        """Per-modality ``(mean, scale)``, see :func:`fit_scaler`."""
        return fit_scaler(arrays, self.standardize)

    def _split(self, n, y, rng):
        """Training and validation positions (``valid`` None without split)."""
        split = self.train_split
        if split is None:
            return np.arange(n), None
        if isinstance(split, numbers.Real):
            split = ValidSplit(
                float(split),
                stratified=False,
                random_state=int(rng.randint(np.iinfo(np.int32).max)),
            )
        from skorch.dataset import Dataset

        target = np.zeros(n, dtype=np.int64) if y is None else y
        ds = Dataset(np.arange(n), target)
        try:
            parts = split(ds, target)
        except ValueError as exc:
            raise ValueError(
                f"train_split={self.train_split!r} could not split the "
                f"{n} training items: {exc}"
            ) from exc
        try:
            ds_train, ds_valid = parts
            # in the order of X: the training part is then X minus
            # validation_indices_, as a user rebuilds it
            train_idx = np.sort(np.asarray(ds_train.indices, dtype=np.int64))
            valid_idx = np.sort(np.asarray(ds_valid.indices, dtype=np.int64))
        except (TypeError, ValueError, AttributeError):
            raise ValueError(
                f"train_split={self.train_split!r} must split the dataset it is "
                "given into two torch.utils.data.Subset of it (as skorch's "
                "ValidSplit does); for a fixed validation set, pass a callable "
                "returning Subsets of chosen positions."
            ) from None
        if (
            np.intersect1d(train_idx, valid_idx).size
            or train_idx.min(initial=0) < 0
            or max(train_idx.max(initial=0), valid_idx.max(initial=0)) >= n
        ):
            raise ValueError(
                f"train_split={self.train_split!r} gave overlapping or out-of-range "
                "training and validation positions; the two parts must be "
                f"disjoint subsets of the {n} items."
            )
        if len(train_idx) < 2 or len(valid_idx) < 1:
            raise ValueError(
                f"train_split={self.train_split!r} left {len(train_idx)} training "
                f"and {len(valid_idx)} validation items of {n}; at least 2 and 1 "
                "are needed. Use a smaller validation fraction or more items."
            )
        return train_idx, valid_idx

    def _epoch_state(self, net, embeddings):
        """The fitted state (``_finish_fit``'s) that training would end with
        now, computed on copies: the training state is left as it is."""
        return self._finish_fit(_NetView(net), embeddings)

    def _epoch_view(self, state):
        """A shallow copy of the learner with ``state`` as its fitted state."""
        view = copy.copy(self)
        for key, value in state.items():
            setattr(view, key, value)
        return view

    def _diverged(self, what):
        """The TrainingError of a diverging fit: what happened and the fixes."""
        return TrainingError(
            f"{type(self).__name__}: {what}. Lower the learning rate (lr="
            f"{self.lr}) or the loss weights ({self._loss_weights_repr()}), or "
            "check the input scale (standardize=True). The estimator was left "
            "as it was before fit (unfitted, or its previous fit)."
        )

    def _side_modalities(self):
        """Modalities accepted in ``fit`` without a tower (ignored later)."""
        return ()

    def __sklearn_is_fitted__(self):
        return hasattr(self, "net_")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = self._requires_y
        tags.non_deterministic = False
        tags.input_tags.sparse = True  # densified per modality (bag-of-words)
        tags.transformer_tags.preserves_dtype = []
        return tags


_MISSING = object()


def _show(value):
    return "(unset)" if value is _MISSING else repr(value)


def _same(a, b):
    if a is _MISSING or b is _MISSING:
        return a is b
    try:
        return bool(a == b)
    except Exception:  # arrays, objects without a boolean ==
        return a is b
