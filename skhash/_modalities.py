"""MultiModal: a row-indexable container of named modality arrays."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.utils.validation import check_array
from skorch.helper import SliceDict

from skhash._constants import SINGLE_MODALITY
from skhash.utils._rows import row_key

__all__ = ["MultiModal", "SINGLE_MODALITY", "as_modalities"]


#: Rows checked at a time for non-finite values (bounds the temporary memory).
_CHUNK_ROWS = 4096


def _column_names(value):
    """The column names of a DataFrame-like input, else None."""
    columns = getattr(value, "columns", None)
    if columns is None or not hasattr(value, "iloc"):
        return None
    names = np.asarray(columns, dtype=object)
    if not all(isinstance(c, str) for c in names):
        return None  # as scikit-learn: only all-string column names count
    return names


def _read_only(a):
    """A read-only view of ``a`` (the caller's array keeps its flags)."""
    if sp.issparse(a):
        parts = []
        for part in (a.data, a.indices, a.indptr):
            view = part.view()
            view.flags.writeable = False
            parts.append(view)
        out = sp.csr_matrix(a.shape, dtype=a.dtype)
        out.data, out.indices, out.indptr = parts
        out.has_sorted_indices = a.has_sorted_indices
        return out
    view = a.view()
    view.flags.writeable = False
    return view


def _check_finite(name, a):
    """Raise when a float array holds NaN or infinity, a chunk at a time."""
    if a.dtype.kind != "f":
        return
    for start in range(0, a.shape[0], _CHUNK_ROWS):
        chunk = a[start : start + _CHUNK_ROWS]
        if not np.isfinite(chunk).all():
            what = (
                "NaN"
                if np.isnan(chunk).any()
                else f"infinity or a value too large for dtype({a.dtype.name!r})"
            )
            raise ValueError(
                f"Modality {name!r} (shape {a.shape}) is not valid: Input "
                f"modality {name!r} contains {what}."
            )


def _check_modality(name, value):
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(
            f"Modality names must be identifiers such as 'img' or 'txt'; got {name!r}."
        )
    if isinstance(value, MultiModal):
        raise TypeError(f"Modality {name!r} is itself a MultiModal; pass its arrays.")
    if sp.issparse(value):
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
            raise type(exc)(
                f"Modality {name!r} (shape {value.shape}) is not valid: {exc}"
            ) from exc
    a = value if type(value) is np.ndarray else None
    if a is None:  # np.matrix and other subclasses become plain arrays
        try:
            a = np.asarray(value)
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"Modality {name!r} is not valid: {exc}") from exc
        if type(a) is not np.ndarray:
            a = a.view(np.ndarray)
    if a.dtype.kind in "biuf" and not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))  # torch reads native order only
    if a.dtype.kind == "f" and a.dtype.itemsize > 8:
        # long double: torch has no such type, and the learners compute in
        # float32; float64 holds any value the model can use
        a = a.astype(np.float64)
    shape = a.shape
    if a.ndim < 2:
        raise ValueError(
            f"Modality {name!r} (shape {shape}) is not valid: Expected 2D array, "
            f"got {a.ndim}D array instead (one row per item). Reshape your data "
            "either using array.reshape(-1, 1) if your data has a single feature "
            "or array.reshape(1, -1) if it contains a single sample."
        )
    if a.dtype.kind == "c":
        raise ValueError(
            f"Modality {name!r} (shape {shape}) is not valid: Complex data not "
            "supported; pass the real features (e.g. np.abs or the real and "
            "imaginary parts as separate features)."
        )
    if a.dtype.kind not in "biuf":
        # strings, objects: numbers written as text are converted, as
        # scikit-learn does; anything else is refused with its reason
        try:
            a = check_array(
                a,
                dtype=np.float64,
                ensure_all_finite=False,
                ensure_2d=False,
                allow_nd=True,
                input_name=f"modality {name!r}",
            )
        except (ValueError, TypeError) as exc:
            raise type(exc)(
                f"Modality {name!r} (shape {shape}) is not valid: {exc}"
            ) from exc
    if shape[0] < 1:
        raise ValueError(
            f"Modality {name!r} (shape {shape}) is not valid: Found array with "
            f"0 sample(s) (shape={shape}) while a minimum of 1 is required."
        )
    if 0 in shape[1:]:
        raise ValueError(
            f"Modality {name!r} (shape {shape}) is not valid: Found array with "
            f"0 feature(s) (shape={shape}) while a minimum of 1 is required."
        )
    _check_finite(name, a)
    return a


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

    A modality may have any rank: ``(n, n_features)`` feature vectors, or
    ``(n, C, H, W)`` images (``uint8`` and memory-mapped arrays included),
    and keeps its dtype: the learners convert each batch to float32, so a
    large ``uint8`` image set is never copied to float as a whole.

    The container is immutable: modalities cannot be added, replaced or
    removed (``x[name] = ...``, ``del``, ``pop``, ``popitem``,
    ``setdefault``, ``clear``, ``update``, ``|=`` raise ``TypeError``), and
    the dense arrays it hands out are read-only views (the arrays passed in
    are neither copied nor modified; their own flags are left as they were).

    Read more in the :ref:`User Guide <data>`.

    Parameters
    ----------
    **modalities : array-like or sparse matrix of shape (n_samples, ...)
        One numeric array per modality, all with the same number of rows, of
        any rank of at least 2. Boolean, integer and float arrays keep their
        dtype (no copy); numbers written as text are converted to float64;
        scipy sparse matrices (2-D) are kept as CSR. A pandas DataFrame
        gives its values and its string column names (see
        :attr:`feature_names`). The inputs are never modified.

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
    >>> pixels = MultiModal(img=np.zeros((6, 1, 8, 8), np.uint8), txt=rng.rand(6, 3))
    >>> pixels.item_shapes, pixels["img"].dtype
    ({'img': (1, 8, 8), 'txt': (3,)}, dtype('uint8'))
    """

    def __init__(self, **modalities):
        if not modalities:
            raise ValueError(
                "MultiModal needs at least one modality, e.g. "
                "MultiModal(img=X_img, txt=X_txt)."
            )
        names = {name: _column_names(v) for name, v in modalities.items()}
        checked = {name: _check_modality(name, v) for name, v in modalities.items()}
        rows = {name: v.shape[0] for name, v in checked.items()}
        if len(set(rows.values())) != 1:
            shapes = ", ".join(f"{n}: {checked[n].shape}" for n in checked)
            raise ValueError(
                "All modalities must have the same number of rows (one row per "
                f"item); got {shapes}."
            )
        super().__init__(**{name: _read_only(v) for name, v in checked.items()})
        self._feature_names = {k: v for k, v in names.items() if v is not None}

    @classmethod
    def _from_checked(cls, mapping, feature_names=None):
        obj = dict.__new__(cls)
        dict.update(obj, {k: _read_only(v) for k, v in mapping.items()})
        obj._len = next(iter(mapping.values())).shape[0]
        obj._feature_names = {
            k: v for k, v in (feature_names or {}).items() if k in mapping
        }
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
        key = row_key(key, len(self), "MultiModal")
        return self._from_checked(
            {k: v[key] for k, v in self.items()}, self._feature_names
        )

    def _read_only_error(self, *args, **kwargs):
        raise TypeError(
            "MultiModal is read-only; build a new one with "
            "MultiModal(**{**X, name: array})."
        )

    __setitem__ = _read_only_error
    __delitem__ = _read_only_error
    update = _read_only_error
    pop = _read_only_error
    popitem = _read_only_error
    setdefault = _read_only_error
    clear = _read_only_error
    __ior__ = _read_only_error

    def __reduce__(self):
        return (self.__class__._from_checked, (dict(self), self._feature_names))

    def __repr__(self):
        parts = ", ".join(f"{k}={v.shape}" for k, v in self.items())
        return f"MultiModal({parts})"

    @property
    def modalities(self):
        return tuple(self.keys())

    @property
    def n_features(self):
        """Number of features of each item (the product of its shape), by modality."""
        return {k: int(np.prod(v.shape[1:], dtype=np.int64)) for k, v in self.items()}

    @property
    def item_shapes(self):
        """Shape of one item (the array's shape without its first axis), by modality."""
        return {k: tuple(v.shape[1:]) for k, v in self.items()}

    @property
    def feature_names(self):
        """Column names of the modalities given as DataFrames, by modality.

        Only modalities that had string column names appear.
        """
        return {k: v.copy() for k, v in self._feature_names.items()}

    def copy(self):
        return self._from_checked(dict(self), self._feature_names)


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
