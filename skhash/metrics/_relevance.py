"""Relevance for retrieval metrics: label checks and who is relevant to whom.

A query and a database item are *relevant* to each other when they share at
least one label. Labels are either class ids (1-D, numbers or strings) or a
multi-label indicator matrix (2-D, 0/1). Large inputs are processed in chunks of
queries (:func:`~skhash.metrics._ranking._chunks`).
"""

# Authors: The skhash developers
# SPDX-License-Identifier: BSD-3-Clause

from numbers import Integral, Real

import numpy as np
from sklearn.utils import check_array
from sklearn.utils._param_validation import validate_params

from skhash.metrics._chunking import _chunks

__all__ = ["n_relevant", "ranked_relevance", "relevance"]


_LABEL_FAMILIES = {"U": "strings", "S": "bytes"}


def _label_type(value):
    if value is None:
        return "None"
    if isinstance(value, (str, np.str_)):
        return "str"
    if isinstance(value, (bytes, np.bytes_)):
        return "bytes"
    if isinstance(value, (bool, np.bool_, Integral, Real)):
        return "number"
    return type(value).__name__


def _as_label_array(y, name):
    """``y`` as an array of labels of one type (numbers, strings or bytes).

    numpy turns a list mixing numbers and strings into strings without a
    word, and keeps None or other objects in an object array: both raise
    here, naming an example, instead of giving labels that silently differ.
    """
    try:
        arr = np.asarray(y)
    except ValueError as exc:  # ragged nested lists
        raise ValueError(
            f"{name} cannot be read as an array of labels ({exc}); pass one "
            "label per sample (1-D) or equal-length indicator rows (2-D)."
        ) from None
    if arr.dtype.kind == "O" or (
        arr.dtype.kind in "US" and not isinstance(y, np.ndarray)
    ):
        flat = np.asarray(y, dtype=object).ravel()
        seen = {}
        for i, v in enumerate(flat):
            seen.setdefault(_label_type(v), (i, v))
        if "None" in seen:
            i = seen["None"][0]
            raise ValueError(
                f"{name} holds None (a missing label) at position {i}; labels "
                "must all be class ids. Drop or label those samples."
            )
        if len(seen) > 1:
            (ta, (_, a)), (tb, (_, b)) = list(seen.items())[:2]
            raise ValueError(
                f"{name} mixes label types ({ta} {a!r} and {tb} {b!r}); give "
                "every label the same type, e.g. all int or all str."
            )
        kind = next(iter(seen), "number")
        if kind not in ("str", "bytes", "number"):
            raise ValueError(
                f"{name} holds values of type {kind}; labels must be ints, "
                "floats, bools or strings."
            )
        if arr.dtype.kind == "O":
            arr = np.array(arr.tolist())
    if arr.dtype.kind not in "biufUS":
        raise ValueError(
            f"{name} has dtype {arr.dtype}; labels must be ints, floats, bools or "
            "strings."
        )
    return arr


def _label_family(y):
    return _LABEL_FAMILIES.get(y.dtype.kind, "numbers")


def _check_label_compat(y_query, y_database):
    """Validate both label arrays and raise when they can never match.

    Cheaper than :func:`_check_label_pair` (no encoding): 1-D against 2-D,
    indicator matrices of other widths, and strings against numbers (or
    bytes) raise a ValueError saying so. Returns both arrays, checked.
    """
    yq = _check_labels(y_query, "y_query")
    yd = _check_labels(y_database, "y_database")
    if yq.ndim != yd.ndim:
        kinds = {1: "1-D (class ids)", 2: "2-D (label indicator matrix)"}
        raise ValueError(
            f"y_query is {kinds[yq.ndim]} but y_database is {kinds[yd.ndim]}; "
            "pass both as class ids or both as indicator matrices."
        )
    if yq.ndim == 2:
        if yq.shape[1] != yd.shape[1]:
            raise ValueError(
                f"y_query has {yq.shape[1]} label columns but y_database has "
                f"{yd.shape[1]}; both indicator matrices must use the same "
                "label columns."
            )
    elif _label_family(yq) != _label_family(yd):
        raise ValueError(
            f"y_query holds {_label_family(yq)} (dtype {yq.dtype}) but y_database "
            f"holds {_label_family(yd)} (dtype {yd.dtype}): no query can share a "
            "label with an item. Encode both label sets the same way (e.g. the "
            "same class ids)."
        )
    return yq, yd


def _reject_bool(value, name, example):
    """A count given as a bool (True is 1 to Python) is a mistake: raise."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(
            f"{name}={value!r} must be a positive int (bool is not accepted); "
            f"pass e.g. {name}={example}."
        )


def _check_labels(y, name):
    """Validate class ids (1-D) or a 0/1 indicator matrix (2-D)."""
    y = _as_label_array(y, name)
    if y.ndim not in (1, 2):
        raise ValueError(
            f"{name} must be 1-D class ids or a 2-D label indicator matrix, got "
            f"an array of shape {y.shape}. Reshape it to (n_samples,) or "
            "(n_samples, n_labels)."
        )
    if y.size == 0:
        raise ValueError(
            f"{name} is empty (shape {y.shape}); pass at least one sample and, "
            "for an indicator matrix, at least one label column."
        )
    if y.dtype.kind in "fc" and np.isnan(y).any():
        raise ValueError(
            f"{name} contains NaN; labels must be class ids or 0/1 indicators. "
            "Drop or impute the samples with missing labels."
        )
    if y.ndim == 2:
        if y.dtype.kind not in "biuf":
            raise ValueError(
                f"{name} is 2-D, so it must be a numeric 0/1 label indicator "
                f"matrix; got dtype {y.dtype}."
            )
        _check_binary(y, name)
        y = y.astype(bool, copy=False)
    return y


def _check_binary(y, name):
    """Raise unless every entry of ``y`` is 0 or 1 (or a bool)."""
    if y.dtype.kind == "b":
        return
    bad = (y != 0) & (y != 1)
    if bad.any():
        raise ValueError(
            f"{name} must contain only 0 and 1 (or booleans); got values such "
            f"as {np.unique(y[bad])[:5].tolist()}. Binarise it, e.g. "
            f"with {name} > 0."
        )


def _check_label_pair(y_query, y_database):
    """Validate both label arrays and their compatibility.

    Returns integer class codes for 1-D labels and bool matrices for 2-D ones.
    """
    yq, yd = _check_label_compat(y_query, y_database)
    if yq.ndim == 2:
        return yq, yd
    # Encode class ids as 0..n_classes-1 on the union of both label sets.
    _, codes = np.unique(np.concatenate([yq, yd]), return_inverse=True)
    codes = codes.reshape(-1)
    return codes[: yq.shape[0]], codes[yq.shape[0] :]


def _check_relevance_and_scores(y_true, y_score, score_name="y_score"):
    """Validate a binary (n_queries, n_database) matrix and matching scores."""
    y_true = check_array(
        y_true,
        dtype=None,
        input_name="y_true",
        ensure_min_samples=0,
        ensure_min_features=0,
    )
    # sklearn would speak of samples and features: name the retrieval axes
    if y_true.shape[0] == 0:
        raise ValueError(
            f"y_true has no query (shape {y_true.shape}); pass at least one row, "
            "one per query."
        )
    if y_true.shape[1] == 0:
        raise ValueError(
            f"y_true has an empty database (shape {y_true.shape}); pass at least "
            "one column, one per database item."
        )
    _check_binary(y_true, "y_true")
    y_score = check_array(y_score, dtype=np.float64, input_name=score_name)
    if y_true.shape != y_score.shape:
        raise ValueError(
            f"y_true and {score_name} must have the same shape (n_queries, "
            f"n_database); got {y_true.shape} and {y_score.shape}."
        )
    return y_true.astype(np.float64), y_score


# ---------------------------------------------------------------------------
# Relevance
# ---------------------------------------------------------------------------


@validate_params(
    {"y_query": ["array-like"], "y_database": ["array-like"]},
    prefer_skip_nested_validation=True,
)
def relevance(y_query, y_database):
    """Relevance of every database item to every query.

    A query and a database item are relevant when they share at least one label.

    Parameters
    ----------
    y_query : array-like of shape (n_queries,) or (n_queries, n_labels)
        Class ids (1-D) or a 0/1 label indicator matrix (2-D) of the queries.

    y_database : array-like of shape (n_database,) or (n_database, n_labels)
        Labels of the database, in the same form as ``y_query``.

    Returns
    -------
    relevance : ndarray of shape (n_queries, n_database), dtype=bool
        ``relevance[i, j]`` is True when query ``i`` and item ``j`` share a label.

    See Also
    --------
    ranked_relevance : Relevance of retrieved items only, without the full matrix.
    n_relevant : Number of relevant database items per query.

    Examples
    --------
    >>> import numpy as np
    >>> from skhash.metrics import relevance
    >>> relevance([0, 1], [1, 0, 0])
    array([[False,  True,  True],
           [ True, False, False]])
    >>> relevance([[1, 0, 1]], [[0, 0, 1], [0, 1, 0]])
    array([[ True, False]])
    """
    yq, yd = _check_label_pair(y_query, y_database)
    if yq.ndim == 1:
        return yq[:, None] == yd[None, :]
    # float32 sums of 0/1 values are exact below 2**24 labels.
    return (yq.astype(np.float32) @ yd.astype(np.float32).T) > 0


@validate_params(
    {
        "y_query": ["array-like"],
        "y_database": ["array-like"],
        "indices": ["array-like"],
    },
    prefer_skip_nested_validation=True,
)
def ranked_relevance(y_query, y_database, indices):
    """Relevance of the retrieved database items, in rank order.

    Unlike :func:`relevance`, this never builds the full
    (n_queries, n_database) matrix.

    Parameters
    ----------
    y_query : array-like of shape (n_queries,) or (n_queries, n_labels)
        Class ids (1-D) or a 0/1 label indicator matrix (2-D) of the queries.

    y_database : array-like of shape (n_database,) or (n_database, n_labels)
        Labels of the database, in the same form as ``y_query``.

    indices : array-like of shape (n_queries, k), dtype=int
        Database indices retrieved for each query, best first (for instance the
        second output of a ``kneighbors`` call).

    Returns
    -------
    ranked_relevance : ndarray of shape (n_queries, k), dtype=bool
        ``ranked_relevance[i, r]`` is True when the item retrieved at rank ``r``
        for query ``i`` is relevant to it.

    See Also
    --------
    average_precision_from_ranking : Per-query AP from this matrix.

    Examples
    --------
    >>> from skhash.metrics import ranked_relevance
    >>> ranked_relevance([0, 1], [1, 0, 0], [[1, 0], [0, 2]])
    array([[ True, False],
           [ True, False]])
    """
    yq, yd = _check_label_pair(y_query, y_database)
    indices = np.asarray(indices)
    if indices.ndim != 2 or indices.shape[0] != yq.shape[0]:
        raise ValueError(
            f"indices must have shape (n_queries, k) = ({yq.shape[0]}, k); got "
            f"shape {indices.shape}."
        )
    if indices.dtype.kind not in "iu":
        raise ValueError(
            f"indices must be integer positions into the database; got dtype "
            f"{indices.dtype}. Cast it with indices.astype(int) if the values "
            "are whole numbers."
        )
    n_database = yd.shape[0]
    if indices.size and (indices.min() < 0 or indices.max() >= n_database):
        bad = indices[(indices < 0) | (indices >= n_database)]
        raise ValueError(
            f"indices must lie in [0, n_database) = [0, {n_database}); got "
            f"values such as {np.unique(bad)[:5].tolist()}."
        )
    if yq.ndim == 1:
        return yd[indices] == yq[:, None]
    n_queries, k = indices.shape
    out = np.empty((n_queries, k), dtype=bool)
    yq_f = yq.astype(np.float32)
    yd_f = yd.astype(np.float32)
    for rows in _chunks(n_queries, k * yd.shape[1]):
        shared = np.einsum("qkl,ql->qk", yd_f[indices[rows]], yq_f[rows])
        out[rows] = shared > 0
    return out


@validate_params(
    {"y_query": ["array-like"], "y_database": ["array-like"]},
    prefer_skip_nested_validation=True,
)
def n_relevant(y_query, y_database):
    """Number of database items relevant to each query.

    Parameters
    ----------
    y_query : array-like of shape (n_queries,) or (n_queries, n_labels)
        Class ids (1-D) or a 0/1 label indicator matrix (2-D) of the queries.

    y_database : array-like of shape (n_database,) or (n_database, n_labels)
        Labels of the database, in the same form as ``y_query``.

    Returns
    -------
    n_relevant : ndarray of shape (n_queries,), dtype=int64
        How many database items share at least one label with each query.

    Examples
    --------
    >>> from skhash.metrics import n_relevant
    >>> n_relevant([0, 1, 2], [1, 0, 0])
    array([2, 1, 0])
    >>> n_relevant([[1, 1], [0, 1]], [[1, 0], [0, 1], [1, 1]])
    array([3, 2])
    """
    yq, yd = _check_label_pair(y_query, y_database)
    if yq.ndim == 1:
        n_classes = int(max(yq.max(), yd.max())) + 1
        counts = np.bincount(yd, minlength=n_classes)
        return counts[yq].astype(np.int64)
    out = np.empty(yq.shape[0], dtype=np.int64)
    yq_f = yq.astype(np.float32)
    yd_t = yd.astype(np.float32).T
    for rows in _chunks(yq.shape[0], yd.shape[0]):
        out[rows] = ((yq_f[rows] @ yd_t) > 0).sum(axis=1)
    return out
