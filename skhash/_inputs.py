"""The learners' input checks: features, labels and feature names."""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np
import scipy.sparse as sp

from skhash._modalities import SINGLE_MODALITY, MultiModal, as_modalities
from skhash._warnings import user_stacklevel

#: Elements of float32 per chunk when a whole set is embedded or scanned.
_CHUNK_ELEMENTS = 1 << 20


def _plain(value):
    """A numpy scalar as the Python value, for messages (0, not np.int64(0))."""
    return value.item() if isinstance(value, np.generic) else value


class _LearnerInputs:
    """Mixin of :class:`~skhash._base.BaseCodeLearner`: the checks of what
    ``fit`` and ``transform`` are given (arrays, labels, feature names)."""

    # -- validation ---------------------------------------------------------
    @staticmethod
    def _model_inputs(mm):
        """The arrays the towers read: dense arrays as they are (any rank
        and numeric dtype), sparse ones densified to float32 (cast while
        sparse: no float64 dense copy on the way)."""
        out = {}
        for name, value in mm.items():
            if sp.issparse(value):
                with np.errstate(over="ignore"):
                    a = value.astype(np.float32).toarray()
            else:
                a = value
            who = "X" if name == SINGLE_MODALITY else f"Modality {name!r}"
            if a.dtype.kind == "f" and a.dtype.itemsize > 4:
                per_item = int(np.prod(a.shape[1:], dtype=np.int64))
                rows = max(1, _CHUNK_ELEMENTS // max(per_item, 1))
                for start in range(0, a.shape[0], rows):
                    big = np.abs(a[start : start + rows]).max()
                    if big > np.finfo(np.float32).max:
                        raise ValueError(
                            f"{who} has values too large for float32 (largest "
                            f"magnitude {float(big):.3g}; float32 holds up to "
                            "3.4e+38), in which the towers compute; rescale the "
                            "features."
                        )
            if sp.issparse(value) and not np.isfinite(a).all():
                raise ValueError(
                    f"{who} has values too large for float32, in which the "
                    "towers compute; rescale the features."
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
        if not isinstance(y, np.ndarray) or y.dtype == object:
            flat = np.asarray(y, dtype=object).ravel()
            kinds = set()
            for v in flat:
                if v is None or (isinstance(v, float) and math.isnan(v)):
                    raise ValueError(
                        "y holds missing labels (None or NaN); every item needs "
                        "a label. Drop or impute the items with missing labels."
                    )
                if isinstance(v, str):
                    kinds.add("str")
                elif isinstance(v, (numbers.Number, np.bool_)):
                    kinds.add("number")
                else:
                    raise ValueError(
                        f"Unknown label type: y holds a {type(v).__name__} "
                        f"({v!r}); labels must be numbers or strings."
                    )
            if len(kinds) > 1:
                raise ValueError(
                    "y mixes strings and numbers (e.g. 'cat' and 1), which would "
                    "silently become the strings '1', 'cat'; pass labels of one "
                    "type, e.g. y.astype(str) or integer class ids."
                )
            shape = np.asarray(y, dtype=object).shape
            y = np.array(flat.tolist()).reshape(shape) if flat.size else np.asarray(y)
        y = np.asarray(y)
        if y.dtype.kind not in "biufUS":
            raise ValueError(
                f"Unknown label type: y has dtype {y.dtype}; labels must be "
                "numbers or strings."
            )
        if y.dtype.kind in "fc" and np.isnan(y).any():
            # np.unique would make NaN one more class, silently
            raise ValueError(
                f"y contains NaN ({int(np.isnan(y).sum())} values); labels must "
                "be class ids or a 0/1 indicator matrix. Drop or impute the items "
                "with missing labels."
            )
        if y.dtype.kind == "f" and np.isinf(y).any():
            raise ValueError(
                "y contains infinity; labels must be class ids or a 0/1 "
                "indicator matrix."
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
            mm = MultiModal._from_checked(
                {self.modalities_[0]: mm["X"]},
                {self.modalities_[0]: v for v in mm._feature_names.values()},
            )
        side = set(self._side_modalities())
        if side:
            mm = MultiModal._from_checked(
                {k: v for k, v in mm.items() if k not in side} or dict(mm.items()),
                mm._feature_names,
            )
        unknown = [m for m in mm.modalities if m not in self.modalities_]
        if unknown:
            raise ValueError(
                f"Unknown modalities {unknown}: {type(self).__name__} was fitted on "
                f"{self.modalities_}."
            )
        self._check_feature_names(mm)
        arrays = self._model_inputs(mm)
        for name, value in arrays.items():
            expected = self.input_shapes_[name]
            got = tuple(value.shape[1:])
            if got != expected:
                who = "X" if name == SINGLE_MODALITY else f"Modality {name!r}"
                if len(expected) == 1 and len(got) == 1:
                    raise ValueError(
                        f"{who} has {got[0]} features, but "
                        f"{type(self).__name__} is expecting {expected[0]} features "
                        "as input (the width seen in fit)."
                    )
                raise ValueError(
                    f"{who} has items of shape {got}, but {type(self).__name__} "
                    f"is expecting items of shape {expected} (the shape seen in "
                    "fit)."
                )
        return arrays

    def _check_feature_names(self, mm):
        """scikit-learn's feature-name checks, per modality: a warning when
        names are present at only one of fit and transform, an error when
        they differ."""
        fitted = getattr(self, "feature_names_in_", None)
        if not isinstance(fitted, dict):
            fitted = {} if fitted is None else {self.modalities_[0]: fitted}
        est = type(self).__name__
        for name in mm.modalities:
            who = "X" if name == SINGLE_MODALITY else f"Modality {name!r}"
            seen, now = fitted.get(name), mm._feature_names.get(name)
            if seen is None and now is None:
                continue
            if seen is None:
                warnings.warn(
                    f"{who} has feature names, but {est} was fitted without "
                    "feature names",
                    UserWarning,
                    stacklevel=user_stacklevel(),
                )
            elif now is None:
                warnings.warn(
                    f"{who} does not have valid feature names, but {est} was "
                    "fitted with feature names",
                    UserWarning,
                    stacklevel=user_stacklevel(),
                )
            elif len(seen) != len(now) or np.any(seen != now):
                unseen = sorted(set(now) - set(seen))[:5]
                missing = sorted(set(seen) - set(now))[:5]
                msg = (
                    f"The feature names of {who} should match those that were "
                    "passed during fit."
                )
                if unseen:
                    msg += f" Feature names unseen at fit time: {unseen}."
                if missing:
                    msg += (
                        f" Feature names seen at fit time, yet now missing: {missing}."
                    )
                if not unseen and not missing:
                    msg += " The columns are in another order: reorder them as in fit."
                raise ValueError(msg)
