"""The row keys of skhash's containers (``CodeSet``, ``MultiModal``).

Kept apart from both (and free of torch, which :mod:`skhash._modalities`
imports through skorch), so that indexing a CodeSet in a search-only
process imports nothing more.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["row_key"]

_ROW_KEYS = (
    "an int (one row, kept 2-D), a slice, Ellipsis, a 1-D integer array or "
    "list of rows, or a 1-D boolean mask of length n_samples={n}"
)


def row_key(key, n_rows, what):
    """``key`` as a key selecting rows of the 2-D arrays of a container
    (``what``: ``"MultiModal"``, ``"CodeSet"``) of ``n_rows`` rows, or an
    error.

    An int (or numpy integer, or 0-d integer array) selects one row as a
    slice, so the arrays stay 2-D; slices, Ellipsis and 1-D integer arrays
    or lists pass through; a 1-D boolean mask of ``n_rows`` (a pandas
    boolean Series too) becomes the indices of its rows, which sparse
    arrays take as well. Anything else (bool scalars, None, N-D or float
    arrays) would silently select row 0 or 1 or give arrays of another
    rank, so it is refused.
    """
    if key is Ellipsis or isinstance(key, slice):
        return key
    accepted = _ROW_KEYS.format(n=n_rows)
    shown = repr(key)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    refused = TypeError(
        f"{what} rows cannot be indexed with {shown} (of type "
        f"{type(key).__name__}); pass {accepted}."
    )
    if key is None or isinstance(key, (bool, np.bool_)):
        raise refused
    if not isinstance(key, numbers.Integral):
        try:
            arr = np.asarray(key)
        except (TypeError, ValueError):
            raise refused from None
        if arr.ndim == 0 and arr.dtype.kind in "iu":
            key = arr.item()  # a 0-d integer array is one row, as an int
        elif arr.ndim == 0 or arr.dtype.kind not in "iub":
            if arr.size == 0 and arr.ndim == 1 and isinstance(key, list):
                return arr.astype(np.intp)  # [] selects no rows, as in numpy
            raise refused
        elif arr.ndim != 1:
            raise IndexError(
                f"{what} rows cannot be indexed with a {arr.ndim}-D "
                f"{arr.dtype} array of shape {arr.shape} (it would give "
                f"arrays of {arr.ndim + 1} dimensions); pass {accepted}."
            )
        elif arr.dtype.kind == "b":
            if arr.shape[0] != n_rows:
                raise IndexError(
                    f"The boolean mask has length {arr.shape[0]} but the "
                    f"{what} has {n_rows} rows; pass {accepted}."
                )
            return np.flatnonzero(arr)
        else:
            return arr
    if not -n_rows <= key < n_rows:
        raise IndexError(f"row {key} is out of range for {n_rows} rows.")
    key = int(key)
    return slice(key, key + 1 if key != -1 else None)
