"""The learners' parameters: skorch-style routed names and their checks."""

from __future__ import annotations

import numbers
import warnings

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, InvalidParameterError
from skorch.callbacks import Callback

from skhash._warnings import user_stacklevel

_ROUTED_PREFIXES = (
    "module__",
    "optimizer__",
    "iterator_train__",
    "iterator_valid__",
    "callbacks__",
)
_ROUTED_WHAT = {
    "module__": "passed to the tower class",
    "optimizer__": "passed to the optimizer",
    "iterator_train__": "passed to the training DataLoader",
    "iterator_valid__": "passed to the validation DataLoader",
    "callbacks__": "set on a named callback",
}
_MAX_HIDDEN = 1 << 20


def _is_count_constraint(constraints):
    return any(
        isinstance(c, Interval) and c.type in (numbers.Integral, numbers.Real)
        for c in constraints
    )


class _LearnerParams:
    """Mixin of :class:`~skhash._base.BaseCodeLearner`: the routed
    parameters (``module__width=...``, skorch's convention) and the checks of
    the declared parameters that sklearn's constraints do not make."""

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
            allowed = ", ".join(f"'{p}' ({w})" for p, w in _ROUTED_WHAT.items())
            raise TypeError(
                f"{type(self).__name__} got an unexpected keyword argument "
                f"{key!r}. Extra arguments must start with {allowed}.{hint}"
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

    # -- parameter validation ---------------------------------------------------
    def _validate_params(self):
        # bools pass sklearn's Integral/Real intervals (True == 1): a count
        # given as True is a mistake, refused by name before anything else
        for name, constraints in self._parameter_constraints.items():
            value = getattr(self, name, None)
            if isinstance(value, (bool, np.bool_)) and (
                _is_count_constraint(constraints) or name == "random_state"
            ):
                kind = "an int" if name == "random_state" else "a number"
                raise InvalidParameterError(
                    f"The {name!r} parameter of {type(self).__name__} must be "
                    f"{kind}, not a bool: got {name}={value!r}. Pass "
                    f"{name}={int(value)} if you meant the number {int(value)}."
                )
        super()._validate_params()

    def _check_widths(self):
        sizes = self.hidden_layer_sizes
        for width in sizes:
            if (
                isinstance(width, (bool, np.bool_))
                or not isinstance(width, numbers.Integral)
                or not 1 <= width <= _MAX_HIDDEN
            ):
                raise InvalidParameterError(
                    f"hidden_layer_sizes={tuple(sizes)!r}: every width must be a "
                    f"positive int of at most {_MAX_HIDDEN} (no bool, float, zero "
                    f"or negative); got {width!r}. Pass e.g. "
                    "hidden_layer_sizes=(512,), or () for a linear tower."
                )
        if self.module is not None:
            ignored = []
            for name in ("hidden_layer_sizes", "dropout"):
                default = self._default(name)
                value = getattr(self, name)
                if name == "hidden_layer_sizes":
                    value, default = tuple(value), tuple(default)
                if value != default:
                    ignored.append(f"{name}={value!r}")
            if ignored and not (
                isinstance(self.module, dict) and None in self.module.values()
            ):
                warnings.warn(
                    f"{', '.join(ignored)} set the default MLP towers, but "
                    f"module={self.module!r} replaces them, so they are ignored. "
                    "Pass the custom tower's own settings as module__<name>=value, "
                    "or leave these at their defaults.",
                    UserWarning,
                    stacklevel=user_stacklevel(),
                )

    @classmethod
    def _default(cls, name):
        import inspect

        return inspect.signature(cls.__init__).parameters[name].default

    def _check_optimizer_params(self):
        routed = self._routed("optimizer__")
        for name, param in (("lr", "lr"), ("weight_decay", "weight_decay")):
            if param in routed and routed[param] != getattr(self, name):
                raise ValueError(
                    f"optimizer__{param}={routed[param]!r} contradicts "
                    f"{name}={getattr(self, name)!r}: they are the same setting. "
                    f"Pass only {name}={routed[param]!r}."
                )
        if isinstance(self.optimizer, type) and not issubclass(
            self.optimizer, torch.optim.Optimizer
        ):
            raise ValueError(
                f"optimizer={self.optimizer!r} is not a torch.optim.Optimizer "
                "class; pass e.g. optimizer=torch.optim.SGD."
            )
        callbacks = self.callbacks or []
        for cb in callbacks:
            item = cb[1] if isinstance(cb, tuple) and len(cb) == 2 else cb
            if isinstance(cb, tuple) and (len(cb) != 2 or not isinstance(cb[0], str)):
                item = None
            if not isinstance(item, Callback) and not (
                isinstance(item, type) and issubclass(item, Callback)
            ):
                raise ValueError(
                    f"callbacks must be skorch callbacks or (name, callback) "
                    f"pairs; got {cb!r}."
                )
