"""Per-modality preprocessing: the ColumnTransformer idea keyed by modality."""

# Authors: The skhash developers
# SPDX-License-Identifier: BSD-3-Clause

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.base import TransformerMixin, _fit_context, clone
from sklearn.utils import Bunch, get_tags
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.metaestimators import _BaseComposition
from sklearn.utils.validation import check_is_fitted, validate_data

from skhash._inputs import _LearnerInputs
from skhash._modalities import SINGLE_MODALITY, MultiModal, as_modalities
from skhash.utils._atomic import all_or_nothing

__all__ = ["ModalityTransformer"]

_SPECIAL = ("drop", "passthrough")


def _is_special(trans, which=_SPECIAL):
    return isinstance(trans, str) and trans in which


class ModalityTransformer(TransformerMixin, _BaseComposition):
    """Apply a scikit-learn transformer to each named modality.

    The :class:`~sklearn.compose.ColumnTransformer` idea, keyed by modality
    instead of by column: ``ModalityTransformer([("img", StandardScaler()),
    ("txt", TfidfTransformer())])`` fits a clone of each transformer on its
    modality of a :class:`~skhash.MultiModal` and returns a ``MultiModal``
    of the outputs, so it can precede a code learner in a
    :class:`~skhash.pipeline.Pipeline`. Each modality is transformed on its
    own; rows stay paired.

    Read more in the :ref:`User Guide <pipeline>`.

    Parameters
    ----------
    transformers : list of (str, transformer) tuples
        ``(modality, transformer)`` pairs. The transformer is an estimator
        with ``fit`` and ``transform`` (cloned at fit), ``"passthrough"``
        (keep the modality unchanged) or ``"drop"`` (leave it out of the
        output). Names are modality names, each at most once; a plain 2-D
        input array is the modality ``"X"``.
    remainder : {"passthrough", "drop"}, default="passthrough"
        What happens to the modalities of the input that no transformer
        names: kept unchanged, or dropped.
    densify : bool, default=False
        Sparse outputs (``TfidfTransformer``, ``OneHotEncoder``...) are kept
        sparse (CSR) by default, which ``MultiModal`` stores as is and the
        learners densify batch by batch at fit; True converts them to dense
        arrays.

    Attributes
    ----------
    transformers_ : list of (str, transformer) tuples
        The fitted transformers, ``"drop"`` and ``"passthrough"`` entries
        included, in the order given, then the remainder's
        ``(name, "passthrough" | "drop")`` entries.
    named_transformers_ : :class:`~sklearn.utils.Bunch`
        The fitted transformers by modality.
    modalities_ : tuple of str
        The modalities of the data seen in ``fit`` (``("X",)`` for a plain
        array).
    n_features_per_modality_ : dict
        Number of input features of each modality.
    n_features_in_ : int
        Number of input features, set only when fit on a plain array.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Column names, set only when fit on a DataFrame with string columns.

    See Also
    --------
    sklearn.compose.ColumnTransformer : The same idea over columns.
    skhash.pipeline.Pipeline : Chains it with a learner and a retriever.

    Notes
    -----
    The output mirrors the input: a ``MultiModal`` (or a dict) in, a
    ``MultiModal`` out, in the input's order of modalities; a plain array
    in (the modality ``"X"``), the transformed plain array out, as
    scikit-learn's transformers do. ``transform`` accepts any subset of the
    modalities seen in ``fit`` (queries often carry one modality only).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.feature_extraction.text import TfidfTransformer
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skhash import MultiModal
    >>> from skhash.compose import ModalityTransformer
    >>> rng = np.random.RandomState(42)
    >>> X = MultiModal(img=rng.randn(6, 4), txt=rng.randint(0, 3, (6, 5)))
    >>> prep = ModalityTransformer(
    ...     [("img", StandardScaler()), ("txt", TfidfTransformer())], densify=True)
    >>> Xt = prep.fit_transform(X)
    >>> Xt
    MultiModal(img=(6, 4), txt=(6, 5))
    >>> np.allclose(Xt["img"].mean(axis=0), 0)
    True
    >>> prep.set_params(img__with_mean=False).get_params()["img__with_mean"]
    False
    >>> prep.transform(MultiModal(txt=X["txt"][:2]))
    MultiModal(txt=(2, 5))
    """

    _parameter_constraints: dict = {
        "transformers": [list],
        "remainder": [StrOptions(set(_SPECIAL))],
        "densify": ["boolean"],
    }

    def __init__(self, transformers, *, remainder="passthrough", densify=False):
        self.transformers = transformers
        self.remainder = remainder
        self.densify = densify

    # -- parameters --------------------------------------------------------
    def get_params(self, deep=True):
        """Get the parameters, with ``<modality>__<param>`` when deep.

        Parameters
        ----------
        deep : bool, default=True
            Also return the transformers and their parameters.

        Returns
        -------
        params : dict
            Parameter names mapped to their values.
        """
        return self._get_params("transformers", deep=deep)

    def set_params(self, **params):
        """Set the parameters, e.g. ``img__with_mean=False`` or ``txt="drop"``.

        Parameters
        ----------
        **params : dict
            Parameters of this estimator, transformers by modality name, or
            their parameters as ``<modality>__<param>``.

        Returns
        -------
        self : object
            This estimator.
        """
        self._set_params("transformers", **params)
        return self

    # -- validation --------------------------------------------------------
    def _validate_transformers(self):
        items = self.transformers
        try:
            names, transformers = zip(*items) if items else ((), ())
        except (TypeError, ValueError) as exc:
            raise ValueError(
                "transformers must be a list of (modality, transformer) tuples, "
                f"e.g. [('img', StandardScaler())]; got {items!r}."
            ) from exc
        for name in names:
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(
                    "Each transformer is named after its modality, an identifier "
                    f"such as 'img' or 'txt' ('X' for a plain array); got {name!r}."
                )
        self._validate_names(names)
        for name, trans in zip(names, transformers):
            if _is_special(trans):
                continue
            if not (
                hasattr(trans, "fit") or hasattr(trans, "fit_transform")
            ) or not hasattr(trans, "transform"):
                raise TypeError(
                    f"The transformer of modality {name!r} must implement fit and "
                    "transform, or be 'passthrough' or 'drop'; got "
                    f"{trans!r} ({type(trans).__name__})."
                )
        return list(zip(names, transformers))

    def _check_input(self, X, *, reset):
        """Return ``(arrays, plain)``: the modalities by name, and whether X was
        a plain array."""
        if isinstance(X, (MultiModal, dict)) and not sp.issparse(X):
            if reset:
                for attr in ("n_features_in_", "feature_names_in_"):
                    if hasattr(self, attr):
                        delattr(self, attr)
            return dict(as_modalities(X)), False
        tags = self.__sklearn_tags__().input_tags
        X = validate_data(
            self,
            X,
            reset=reset,
            accept_sparse=("csr", "csc") if tags.sparse else False,
            ensure_all_finite="allow-nan" if tags.allow_nan else True,
        )
        return {SINGLE_MODALITY: X}, True

    def _finish(self, name, Xt, n_rows):
        if not sp.issparse(Xt):
            Xt = np.asarray(Xt)
        if Xt.ndim != 2 or Xt.shape[0] != n_rows:
            raise ValueError(
                f"The transformer of modality {name!r} returned shape {Xt.shape}; "
                f"a 2-D output with one row per item ({n_rows}) is needed."
            )
        if sp.issparse(Xt):
            Xt = Xt.toarray() if self.densify else Xt.tocsr()
        return Xt

    @staticmethod
    def _passed_names(names, fitted):
        """The column names that pass through: of the passthrough modalities
        (a transformer's output has columns of its own)."""
        return {
            m: v
            for m, v in names.items()
            if _is_special(fitted.get(m), ("passthrough",))
        }

    def _output(self, out, plain, names=None):
        if not out:
            raise ValueError(
                "Every modality was dropped; ModalityTransformer has nothing to "
                "return. Keep at least one (remainder='passthrough' keeps the "
                "unnamed ones)."
            )
        if plain:
            return next(iter(out.values()))
        result = MultiModal(**out)
        # names carried over for the next step's own checks
        result._feature_names = {m: v for m, v in (names or {}).items() if m in out}
        return result

    # -- fit / transform ---------------------------------------------------
    @_fit_context(
        # the transformers are validated when they are fitted
        prefer_skip_nested_validation=False
    )
    def fit_transform(self, X, y=None):
        """Fit each modality's transformer and transform that modality.

        Parameters
        ----------
        X : MultiModal or array-like of shape (n_samples, n_features)
            The data; a plain array is the modality ``"X"``.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs), \
default=None
            Passed to each transformer's ``fit_transform``.

        Returns
        -------
        X_new : MultiModal or ndarray or sparse matrix
            A ``MultiModal`` for a ``MultiModal`` input, else the transformed
            array.
        """
        return self._fit_transform(X, y)

    @all_or_nothing  # a failed fit leaves the transformer as it was
    def _fit_transform(self, X, y):
        transformers = self._validate_transformers()
        if isinstance(X, dict) and not sp.issparse(X):
            X = as_modalities(X)
        names_in = X._feature_names if isinstance(X, MultiModal) else {}
        arrays, plain = self._check_input(X, reset=True)
        named = dict(transformers)
        missing = [name for name in named if name not in arrays]
        if missing:
            raise ValueError(
                f"ModalityTransformer has transformers for {missing}, but X holds "
                f"the modalities {tuple(arrays)}."
            )
        n_rows = next(iter(arrays.values())).shape[0]
        out, fitted = {}, {}
        for name, a in arrays.items():
            trans = named.get(name, self.remainder)
            if _is_special(trans, ("drop",)):
                fitted[name] = "drop"
            elif _is_special(trans, ("passthrough",)):
                fitted[name] = "passthrough"
                out[name] = self._finish(name, a, n_rows)
            else:
                est = clone(trans)
                if hasattr(est, "fit_transform"):
                    Xt = est.fit_transform(a, y)
                else:
                    Xt = est.fit(a, y).transform(a)
                fitted[name] = est
                out[name] = self._finish(name, Xt, n_rows)
        result = self._output(out, plain, self._passed_names(names_in, fitted))
        order = [name for name, _ in transformers] + [
            name for name in arrays if name not in named
        ]
        self.transformers_ = [(name, fitted[name]) for name in order]
        self.modalities_ = tuple(arrays)
        self.n_features_per_modality_ = {name: a.shape[1] for name, a in arrays.items()}
        if names_in:  # the column names of the modalities given as DataFrames
            self.feature_names_in_ = {m: v.copy() for m, v in names_in.items()}
        return result

    def fit(self, X, y=None):
        """Fit each modality's transformer.

        Parameters
        ----------
        X : MultiModal or array-like of shape (n_samples, n_features)
            The data; a plain array is the modality ``"X"``.
        y : array-like, default=None
            Passed to each transformer's ``fit``.

        Returns
        -------
        self : object
            The fitted ModalityTransformer.
        """
        self.fit_transform(X, y)
        return self

    def transform(self, X):
        """Transform each modality with its fitted transformer.

        Parameters
        ----------
        X : MultiModal or array-like of shape (n_samples, n_features)
            Any subset of the modalities seen in ``fit``; a plain array is
            the modality ``"X"``.

        Returns
        -------
        X_new : MultiModal or ndarray or sparse matrix
            As for :meth:`fit_transform`.
        """
        check_is_fitted(self)
        if isinstance(X, dict) and not sp.issparse(X):
            X = as_modalities(X)
            # scikit-learn's feature-name checks, per modality, as the
            # learners make them
            _LearnerInputs._check_feature_names(self, X)
        names_in = X._feature_names if isinstance(X, MultiModal) else {}
        arrays, plain = self._check_input(X, reset=False)
        unknown = [name for name in arrays if name not in self.modalities_]
        if unknown:
            hint = (
                f" Pass a MultiModal such as MultiModal({self.modalities_[0]}=...)."
                if plain
                else ""
            )
            raise ValueError(
                f"Unknown modalities {unknown}: ModalityTransformer was fitted on "
                f"{self.modalities_}.{hint}"
            )
        fitted = dict(self.transformers_)
        n_rows = next(iter(arrays.values())).shape[0]
        out = {}
        for name, a in arrays.items():
            expected = self.n_features_per_modality_[name]
            if a.shape[1] != expected:
                raise ValueError(
                    f"Modality {name!r} has {a.shape[1]} features, but "
                    f"ModalityTransformer was fitted with {expected} features "
                    "for it."
                )
            trans = fitted[name]
            if _is_special(trans, ("drop",)):
                continue
            if _is_special(trans, ("passthrough",)):
                out[name] = self._finish(name, a, n_rows)
            else:
                out[name] = self._finish(name, trans.transform(a), n_rows)
        return self._output(out, plain, self._passed_names(names_in, fitted))

    @property
    def named_transformers_(self):
        """The fitted transformers by modality name."""
        check_is_fitted(self)
        return Bunch(**dict(self.transformers_))

    def __sklearn_is_fitted__(self):
        return hasattr(self, "transformers_")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # a tag holds when every transformer's does ("passthrough" and "drop"
        # accept anything)
        try:
            inner = [get_tags(t) for _, t in self.transformers if not _is_special(t)]
        except (TypeError, ValueError, AttributeError):
            inner = None
        tags.input_tags.sparse = inner is not None and all(
            t.input_tags.sparse for t in inner
        )
        tags.input_tags.allow_nan = inner is not None and all(
            t.input_tags.allow_nan for t in inner
        )
        return tags
