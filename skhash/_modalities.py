"""MultiModal: a row-indexable container of named modality arrays."""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp
from sklearn.utils.validation import check_array
from skorch.helper import SliceDict

from skhash._constants import SINGLE_MODALITY

__all__ = ["MultiModal", "SINGLE_MODALITY", "as_modalities"]


def _check_modality(name, value):
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(
            f"Modality names must be identifiers such as 'img' or 'txt'; got {name!r}."
        )
    if isinstance(value, MultiModal):
        raise TypeError(f"Modality {name!r} is itself a MultiModal; pass its arrays.")
    try:
        return check_array(
            value,
            accept_sparse="csr",
            dtype=[np.float64, np.float32],
            ensure_all_finite=True,
            ensure_2d=True,
            ensure_min_samples=1,
            ensure_min_features=1,
            input_name=f"modality {name!r}",
        )
    except (ValueError, TypeError) as exc:
        shape = getattr(value, "shape", None)
        raise type(exc)(
            f"Modality {name!r} (shape {shape}) is not valid: {exc}"
        ) from exc


class MultiModal(SliceDict):
    """Paired features of several modalities, indexable by rows.

    Row ``i`` of every modality describes the same item (an image and its
    text, say). Indexing with a string gives a modality's array; indexing
    with rows (an integer array, a boolean mask or a slice) gives a new
    ``MultiModal`` with those rows of every modality, which is what
    scikit-learn's cross-validation splitters and
    :class:`~sklearn.model_selection.GridSearchCV` do. It builds on skorch's
    :class:`~skorch.helper.SliceDict`, so skorch feeds each modality to the
    network by name.

    Read more in the :ref:`User Guide <data>`.

    Parameters
    ----------
    **modalities : array-like or sparse matrix of shape (n_samples, n_features_m)
        One 2-D numeric array per modality, all with the same number of rows.
        Integer and boolean arrays are converted to float; float32 and
        float64 are kept; scipy sparse matrices are kept as CSR. The inputs
        are never modified.

    Attributes
    ----------
    modalities : tuple of str
        The modality names, in the order given.
    shape : tuple of int
        ``(n_samples,)``, as scikit-learn's indexing helpers expect.

    See Also
    --------
    CodeSet : What a learner's ``transform`` returns for a ``MultiModal``.

    Examples
    --------
    >>> import numpy as np
    >>> from skhash import MultiModal
    >>> rng = np.random.RandomState(42)
    >>> X = MultiModal(img=rng.rand(6, 4), txt=rng.rand(6, 3))
    >>> X.modalities, len(X)
    (('img', 'txt'), 6)
    >>> X[:2]["txt"].shape
    (2, 3)
    >>> X[np.array([0, 5])].n_features
    {'img': 4, 'txt': 3}
    """

    def __init__(self, **modalities):
        if not modalities:
            raise ValueError(
                "MultiModal needs at least one modality, e.g. "
                "MultiModal(img=X_img, txt=X_txt)."
            )
        checked = {name: _check_modality(name, v) for name, v in modalities.items()}
        rows = {name: v.shape[0] for name, v in checked.items()}
        if len(set(rows.values())) != 1:
            shapes = ", ".join(f"{n}: {checked[n].shape}" for n in checked)
            raise ValueError(
                "All modalities must have the same number of rows (one row per "
                f"item); got {shapes}."
            )
        super().__init__(**checked)

    @classmethod
    def _from_checked(cls, mapping):
        obj = dict.__new__(cls)
        dict.update(obj, mapping)
        obj._len = next(iter(mapping.values())).shape[0]
        return obj

    def __getitem__(self, key):
        if isinstance(key, str):
            try:
                return dict.__getitem__(self, key)
            except KeyError:
                raise KeyError(
                    f"No modality {key!r}; this MultiModal has {self.modalities}."
                ) from None
        if isinstance(key, tuple):  # sklearn indexes with (rows, Ellipsis)
            key = key[0]
        if isinstance(key, numbers.Integral):
            if not -len(self) <= key < len(self):
                raise IndexError(f"row {key} is out of range for {len(self)} rows.")
            key = slice(key, key + 1 if key != -1 else None)
        return self._from_checked({k: v[key] for k, v in self.items()})

    def __setitem__(self, key, value):
        raise TypeError(
            "MultiModal is read-only; build a new one with "
            "MultiModal(**{**X, name: array})."
        )

    def update(self, *args, **kwargs):
        raise TypeError("MultiModal is read-only.")

    def __reduce__(self):
        return (self.__class__._from_checked, (dict(self),))

    def __repr__(self):
        parts = ", ".join(f"{k}={v.shape}" for k, v in self.items())
        return f"MultiModal({parts})"

    @property
    def modalities(self):
        return tuple(self.keys())

    @property
    def n_features(self):
        """Number of features of each modality, as a dict."""
        return {k: v.shape[1] for k, v in self.items()}

    def copy(self):
        return self._from_checked(dict(self))


def as_modalities(X, *, input_name="X"):
    """Return ``X`` as a :class:`MultiModal`, wrapping a plain 2-D array.

    A plain array (dense or sparse) becomes the single modality named
    ``"X"``; a ``MultiModal`` is returned as it is; a dict is converted.

    Parameters
    ----------
    X : MultiModal, dict of array-like, or array-like of shape (n_samples, n_features)
        The input.
    input_name : str, default="X"
        Name used in error messages.

    Returns
    -------
    X_mm : MultiModal
        The modalities.

    Examples
    --------
    >>> import numpy as np
    >>> from skhash._modalities import as_modalities
    >>> as_modalities(np.ones((3, 2))).modalities
    ('X',)
    """
    if isinstance(X, MultiModal):
        return X
    if isinstance(X, dict) and not sp.issparse(X):  # dok_matrix is a dict
        return MultiModal(**X)
    if X is None:
        raise ValueError(f"{input_name} is None; pass a 2-D array or a MultiModal.")
    if not sp.issparse(X):
        X = np.asarray(X) if not hasattr(X, "__array__") else X
    try:
        return MultiModal(**{SINGLE_MODALITY: X})
    except (ValueError, TypeError) as exc:
        # a plain array is not a modality to the user: name it as they did
        msg = (
            str(exc)
            .replace(f"Modality {SINGLE_MODALITY!r}", input_name, 1)
            .replace(f"Input modality {SINGLE_MODALITY!r}", f"Input {input_name}")
        )
        raise type(exc)(msg) from exc
