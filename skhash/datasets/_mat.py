"""Loaders for the MIRFlickr-25K and NUS-WIDE .mat files users keep on disk."""

# Authors: The skhash developers
# SPDX-License-Identifier: BSD-3-Clause

from __future__ import annotations

import os
import warnings
from numbers import Integral
from pathlib import Path

import numpy as np
import scipy.io
import scipy.sparse as sp
from scipy.io.matlab import MatReadError
from sklearn.utils import Bunch, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from skhash._modalities import MultiModal

__all__ = ["load_mirflickr", "load_nuswide"]

# Variable names of the published files, and the file suffixes of the
# one-variable-per-file layout (DJSRH's ``settings.py``).
_LABELS, _TEXT, _PIXELS, _FEATURES = "LAll", "YAll", "IAll", "XAll"
_SUFFIXES = {
    _LABELS: ("lall",),
    _TEXT: ("yall",),
    _PIXELS: ("iall",),
    _FEATURES: ("xall-vgg", "xall"),
}
_PIXEL_KEYS = (_PIXELS, "images")  # DCMH's single file calls them "images"

_DATASETS = {
    "mirflickr": {
        "title": "MIRFlickr-25K",
        "prefixes": ("mirflickr25k",),
        "n_query": 2000,
        "n_train": 10000,
    },
    "nuswide": {
        "title": "NUS-WIDE",
        "prefixes": ("nus-wide-tc10", "nus-wide-tc21"),
        "n_query": 2100,
        "n_train": 10500,
    },
}


# --------------------------------------------------------------------------- #
# reading .mat files (v5/v7 through scipy, v7.3 through h5py)
# --------------------------------------------------------------------------- #
def _h5py(path):
    try:
        import h5py
    except ImportError:
        raise ImportError(
            f"{path} is a MATLAB v7.3 (HDF5) .mat file, which scipy cannot read; "
            "reading it needs the optional dependency h5py: pip install h5py"
        ) from None
    return h5py


def _hdf5_variable(h5py, path, node, key):
    """One variable of a v7.3 file, in MATLAB orientation."""
    if isinstance(node, h5py.Group):
        if "MATLAB_sparse" in node.attrs and {"ir", "jc"} <= set(node):
            n_rows = int(node.attrs["MATLAB_sparse"])
            jc = np.asarray(node["jc"][()], dtype=np.int64)
            ir = np.asarray(node["ir"][()], dtype=np.int64)
            data = (
                np.asarray(node["data"][()])
                if "data" in node
                else np.ones(ir.shape, dtype=np.float64)
            )
            return sp.csc_matrix((data, ir, jc), shape=(n_rows, len(jc) - 1))
        raise ValueError(
            f"{path}: variable {key!r} is a MATLAB struct or cell, not a numeric array."
        )
    # HDF5 stores MATLAB's column-major arrays with the axes reversed
    return np.asarray(node[()]).T


def _read_mat(path, keys):
    """Read those of ``keys`` that ``path`` holds; return ``(found, all_names)``.

    Arrays are in MATLAB orientation (items along the first axis for 2-D
    variables), whatever the file version.
    """
    try:
        names = [entry[0] for entry in scipy.io.whosmat(path)]
        data = scipy.io.loadmat(path, variable_names=[k for k in keys if k in names])
    except NotImplementedError:  # v7.3, an HDF5 file
        h5py = _h5py(path)
        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise ValueError(
                f"{path} has a MATLAB v7.3 header but is not a readable HDF5 "
                f"file: {exc}"
            ) from exc
        with f:
            names = [k for k in f.keys() if not k.startswith("#")]
            found = {k: _hdf5_variable(h5py, path, f[k], k) for k in keys if k in f}
        return found, names
    except (MatReadError, ValueError, TypeError, OSError) as exc:
        # MatReadError (empty or truncated file) is no ValueError subclass
        raise ValueError(f"{path} is not a readable MATLAB .mat file: {exc}") from exc
    return {k: data[k] for k in keys if k in data}, names


# --------------------------------------------------------------------------- #
# locating the variables of each layout
# --------------------------------------------------------------------------- #
def _variable_files(directory, prefixes, key):
    """Candidate paths of ``key`` in the one-variable-per-file layout."""
    out = []
    for prefix in prefixes:
        for suffix in _SUFFIXES[key]:
            name = f"{prefix}-{suffix}.mat"
            out += [directory / name, directory / key / name]
    return out


def _find_layout(path, spec, layout):
    """Return ``{key: path}`` of the files holding each variable, and the layout."""
    path = Path(os.fspath(path))
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist; pass the .mat file of the single-file "
            "layout (DCMH) or the folder of the one-variable-per-file layout "
            "(DJSRH)."
        )
    if layout == "auto":
        layout = "dcmh" if path.is_file() else "djsrh"
    if layout == "dcmh":
        if not path.is_file():
            raise ValueError(
                f"layout='dcmh' reads a single .mat file, but {path} is a folder."
            )
        return dict.fromkeys((_LABELS, _TEXT, _PIXELS, _FEATURES), path), layout
    if not path.is_dir():
        raise ValueError(
            f"layout='djsrh' reads a folder of one .mat file per variable, but "
            f"{path} is a file."
        )
    # the prefix is the one of the labels file found first
    prefixes = spec["prefixes"]
    for prefix in prefixes:
        if any(p.is_file() for p in _variable_files(path, (prefix,), _LABELS)):
            break
    else:
        tried = ", ".join(str(p) for p in _variable_files(path, prefixes, _LABELS))
        raise FileNotFoundError(
            f"No {spec['title']} labels file in {path}; looked for {tried}."
        )
    files = {}
    for key in (_LABELS, _TEXT, _PIXELS, _FEATURES):
        candidates = _variable_files(path, (prefix,), key)
        found = next((p for p in candidates if p.is_file()), None)
        files[key] = found if found is not None else candidates
    return files, layout


def _get(files, key, alternatives=None, *, required=True):
    """Read variable ``key`` (or one of ``alternatives``) from its file."""
    keys = alternatives or (key,)
    where = files[key]
    if isinstance(where, list):  # the file was not found
        if not required:
            return None, None, None
        tried = ", ".join(str(p) for p in where)
        hint = (
            " Pass images='none' to load the text and labels only."
            if key in (_PIXELS, _FEATURES)
            else ""
        )
        raise FileNotFoundError(
            f"No file for the variable {key!r}; looked for {tried}.{hint}"
        )
    found, names = _read_mat(where, keys)
    for k in keys:
        if k in found:
            return found[k], where, k
    if not required:
        return None, where, None
    wanted = " or ".join(repr(k) for k in keys)
    raise ValueError(
        f"{where} has no variable {wanted}; it holds {sorted(names)}. The published "
        f"files store the labels as 'LAll', the text as 'YAll', the images as "
        "'IAll' (or 'images') and image features as 'XAll'."
    )


def _check_labels_orientation(labels, labels_where, text, text_where):
    """Blame 'LAll' when it, rather than 'YAll', disagrees on the item count.

    The item count is taken from the labels; when the text's rows disagree
    with it but match the labels' columns (and the text does not itself look
    transposed), the labels are stored one item per column.
    """
    n_text = text.shape[0] if text.ndim >= 1 else None
    if n_text is None or n_text == labels.shape[0]:
        return
    text_transposed = text.ndim == 2 and text.shape[1] == labels.shape[0]
    if labels.shape[1] == n_text and not text_transposed:
        raise ValueError(
            f"{labels_where}: variable 'LAll' has shape {labels.shape}, but "
            f"{text_where} holds {n_text} items in 'YAll'. 'LAll' looks "
            f"transposed (one item per column, {labels.shape[0]} labels x "
            f"{labels.shape[1]} items); the published files store one item per "
            f"row, (n_items, n_labels) in MATLAB orientation: save it as "
            f"LAll.T (MATLAB: LAll')."
        )


def _check_rows(array, n, where, key, labels_where):
    if array.shape[0] == n:
        return
    hint = ""
    if array.ndim == 2 and array.shape[1] == n:
        hint = (
            " It looks transposed (one item per column); the published files "
            "store one item per row in MATLAB orientation."
        )
    raise ValueError(
        f"{where}: variable {key!r} has shape {array.shape}, but {labels_where} "
        f"holds {n} items in 'LAll'; expected {n} rows.{hint}"
    )


def _as_features(array, where, key):
    if sp.issparse(array):
        return sp.csr_matrix(array, dtype=np.float32)
    array = np.asarray(array)
    if array.ndim != 2 or not (
        np.issubdtype(array.dtype, np.number) or array.dtype == bool
    ):
        raise ValueError(
            f"{where}: variable {key!r} must be a 2-D numeric array (n_items, "
            f"n_features); got shape {array.shape} and dtype {array.dtype}."
        )
    return np.ascontiguousarray(array, dtype=np.float32)


# --------------------------------------------------------------------------- #
# the loaders
# --------------------------------------------------------------------------- #
def _load(dataset, path, *, layout, images, n_query, n_train, random_state):
    for name, value in (("n_query", n_query), ("n_train", n_train)):
        if isinstance(value, (bool, np.bool_)):
            raise ValueError(
                f"{name}={value!r} must be a positive int (bool is not "
                f"accepted); pass e.g. {name}=2000, or leave the default."
            )
    spec = _DATASETS[dataset]
    files, layout = _find_layout(path, spec, layout)

    labels, labels_where, _ = _get(files, _LABELS)
    read = {_LABELS: labels_where}
    if sp.issparse(labels):
        labels = labels.toarray()
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.size == 0 or not np.isin(labels, (0, 1)).all():
        raise ValueError(
            f"{labels_where}: variable 'LAll' must be a 0/1 label indicator "
            f"matrix (n_items, n_labels); got shape {labels.shape}"
            + ("" if labels.ndim != 2 else " with values other than 0 and 1")
            + "."
        )
    Y = labels.astype(np.int64)
    n = Y.shape[0]

    text, text_where, _ = _get(files, _TEXT)
    _check_labels_orientation(labels, labels_where, text, text_where)
    _check_rows(text, n, text_where, "YAll", labels_where)
    X_txt = _as_features(text, text_where, "YAll")
    read[_TEXT] = text_where

    X_img, image_shape, image_kind = None, None, None
    if images in ("auto", "features"):
        feats, where, key = _get(files, _FEATURES, required=images == "features")
        if feats is not None:
            _check_rows(feats, n, where, key, labels_where)
            X_img, image_kind = _as_features(feats, where, key), "features"
            read[_FEATURES] = where
    if X_img is None and images in ("auto", "pixels"):
        alternatives = _PIXEL_KEYS if layout == "dcmh" else (_PIXELS,)
        pixels, where, key = _get(files, _PIXELS, alternatives)
        pixels = np.asarray(pixels)
        if pixels.ndim != 4 or pixels.shape[-1] != n:
            raise ValueError(
                f"{where}: variable {key!r} has shape {pixels.shape}; raw images "
                f"are stored as height x width x channels x items in MATLAB "
                f"orientation, with {n} items (as in {labels_where})."
            )
        pixels = np.moveaxis(pixels, -1, 0)  # (items, H, W, C)
        image_shape = tuple(int(s) for s in pixels.shape[1:])
        X_img = pixels.reshape(n, -1).astype(np.float32)
        image_kind = "pixels"
        read[_PIXELS] = where

    n_unlabeled = int(np.count_nonzero(~Y.any(axis=1)))
    if n_unlabeled:
        warnings.warn(
            f"{labels_where}: {n_unlabeled} of the {n} items have no label (all-zero "
            "rows of 'LAll'); the supervised learners refuse them (every item "
            "needs a label for the pairwise similarity). Drop them from the "
            "split with keep = data.Y.any(axis=1), then e.g. "
            "train_idx = data.train_idx[keep[data.train_idx]] (likewise "
            "query_idx and database_idx).",
            UserWarning,
            stacklevel=4,  # _load, load_*, validate_params, the caller
        )

    n_query = spec["n_query"] if n_query == "default" else n_query
    n_train = spec["n_train"] if n_train == "default" else n_train
    if n_query >= n:
        raise ValueError(
            f"n_query={n_query} leaves no database: the data hold {n} items. Pass "
            "a smaller n_query."
        )
    n_db = n - n_query
    if n_train is None:
        n_train = n_db
    if n_train > n_db:
        raise ValueError(
            f"n_train={n_train} exceeds the {n_db} database items (n_items={n} "
            f"minus n_query={n_query}); pass n_train <= {n_db} or None."
        )
    perm = check_random_state(random_state).permutation(n)
    query_idx, database_idx = perm[:n_query], perm[n_query:]
    train_idx = database_idx[:n_train]

    modalities = {"txt": X_txt} if X_img is None else {"img": X_img, "txt": X_txt}
    X = MultiModal(**modalities)
    return Bunch(
        X_img=X_img,
        X_txt=X_txt,
        Y=Y,
        X=X,
        query_idx=query_idx,
        database_idx=database_idx,
        train_idx=train_idx,
        X_query=X[query_idx],
        X_train=X[train_idx],
        Y_query=Y[query_idx],
        Y_database=Y[database_idx],
        Y_train=Y[train_idx],
        image_kind=image_kind,
        image_shape=image_shape,
        layout=layout,
        files={k: str(v) for k, v in read.items()},
        DESCR=_DESCR.format(
            title=spec["title"], n=n, dq=spec["n_query"], dt=spec["n_train"]
        ),
    )


_DESCR = """{title}, read from local .mat files ({n} items).

Layouts read:

- single file (DCMH's, e.g. FLICKR-25K.mat): variables 'LAll' (labels),
  'YAll' (text), 'images' or 'IAll' (raw images) and/or 'XAll' (image
  features);
- one file per variable (DJSRH's): <prefix>-lall.mat ('LAll'),
  <prefix>-yall.mat ('YAll'), <prefix>-iall.mat ('IAll') and the optional
  <prefix>-xall-vgg.mat ('XAll'), each in the folder or in a subfolder named
  after its variable (LAll/, YAll/, IAll/, XAll/).

MATLAB v7.3 (HDF5) files are read through h5py and transposed back to MATLAB
orientation: labels and features have one item per row, raw images are
height x width x channels x items.

Default split (DCMH's protocol, seeded): {dq} random queries, the remaining
items are the retrieval database, and the first {dt} database items of the
same permutation are the training set.

Cite the data's authors: M. J. Huiskes and M. S. Lew, "The MIR Flickr
Retrieval Evaluation", ACM MIR 2008 (MIRFlickr-25K); T.-S. Chua et al.,
"NUS-WIDE: A Real-World Web Image Database from National University of
Singapore", ACM CIVR 2009 (NUS-WIDE); and for the preprocessed files
Q.-Y. Jiang and W.-J. Li, "Deep Cross-Modal Hashing", CVPR 2017, and S. Su,
Z. Zhong and C. Zhang, "Deep Joint-Semantics Reconstructing Hashing for
Large-Scale Unsupervised Cross-Modal Retrieval", ICCV 2019.
"""

_COMMON_PARAMS = {
    "path": [str, os.PathLike],
    "layout": [StrOptions({"auto", "dcmh", "djsrh"})],
    "images": [StrOptions({"auto", "features", "pixels", "none"})],
    "n_query": [Interval(Integral, 1, None, closed="left"), StrOptions({"default"})],
    "n_train": [
        Interval(Integral, 1, None, closed="left"),
        StrOptions({"default"}),
        None,
    ],
    "random_state": ["random_state"],
}

_DOC_COMMON = """
    Parameters
    ----------
    path : str or path-like
        The single .mat file (DCMH's layout, e.g. ``FLICKR-25K.mat``) or the
        folder of one file per variable (DJSRH's layout, ``{prefix}-lall.mat``,
        ``-yall.mat``, ``-iall.mat``, optional ``-xall-vgg.mat``, each in the
        folder or in a subfolder named ``LAll/``, ``YAll/``, ``IAll/``,
        ``XAll/``).
    layout : {{"auto", "dcmh", "djsrh"}}, default="auto"
        "auto" reads a file as the single-file layout and a folder as the
        one-file-per-variable layout.
    images : {{"auto", "features", "pixels", "none"}}, default="auto"
        The image modality: "features" reads precomputed features ('XAll',
        e.g. 4096-d VGG activations); "pixels" reads the raw images ('IAll',
        or 'images' in the single file) and flattens each to one float32 row
        of ``height * width * channels`` values in that order (reshape with
        ``image_shape`` in a CNN tower; 224x224x3 images take 0.6 MB each);
        "auto" takes the features when present, else the pixels; "none"
        skips the images (``X`` then holds the text only).
    n_query : int or "default", default="default"
        Number of random queries; "default" is {dq}.
    n_train : int, "default" or None, default="default"
        Size of the training set, taken from the database; "default" is
        {dt}, None the whole database.
    random_state : int, RandomState instance or None, default=0
        Seeds the split.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With ``X_img`` (float32, or None with ``images="none"``), ``X_txt``
        (float32; sparse CSR when stored sparse), ``Y`` the 0/1 multi-label
        indicator matrix (int64), ``X`` a :class:`~skhash.MultiModal` of all
        items (``img`` and ``txt``), the split as ``query_idx``,
        ``database_idx`` (all items but the queries) and ``train_idx`` (a
        subset of the database), ``X_query``, ``X_train``, ``Y_query``,
        ``Y_database``, ``Y_train`` (use ``X[database_idx]`` for the
        database's items), ``image_kind`` ("features", "pixels" or None),
        ``image_shape`` (height, width, channels for pixels, else None),
        ``layout``, ``files`` (the file of each variable read) and
        ``DESCR``. Items without any label (all-zero rows of 'LAll', common
        in NUS-WIDE) are kept, with a ``UserWarning``: the supervised
        learners refuse them, so drop them from the split, e.g. with
        ``keep = data.Y.any(axis=1)`` and
        ``data.train_idx[keep[data.train_idx]]``.

    Raises
    ------
    FileNotFoundError
        When ``path`` or a needed file is missing (the message lists the
        paths looked for).
    ValueError
        When a file is not a readable .mat file (empty or truncated, e.g. an
        interrupted download), lacks a variable, or a variable has the wrong
        shape or number of rows (the message names the file and the
        variable).
    ImportError
        For a MATLAB v7.3 (HDF5) file without the optional h5py installed.
"""


@validate_params(_COMMON_PARAMS, prefer_skip_nested_validation=True)
def load_mirflickr(
    path,
    *,
    layout="auto",
    images="auto",
    n_query="default",
    n_train="default",
    random_state=0,
):
    return _load(
        "mirflickr",
        path,
        layout=layout,
        images=images,
        n_query=n_query,
        n_train=n_train,
        random_state=random_state,
    )


@validate_params(_COMMON_PARAMS, prefer_skip_nested_validation=True)
def load_nuswide(
    path,
    *,
    layout="auto",
    images="auto",
    n_query="default",
    n_train="default",
    random_state=0,
):
    return _load(
        "nuswide",
        path,
        layout=layout,
        images=images,
        n_query=n_query,
        n_train=n_train,
        random_state=random_state,
    )


load_mirflickr.__doc__ = (
    """Load MIRFlickr-25K from the .mat files published with DCMH or DJSRH.

    Reads the cleaned MIRFlickr-25K set (20,015 image-tag pairs, 1,386-d
    bag-of-words tags, 24 labels, multi-label) from a local copy, in either
    published layout; nothing is downloaded.

    Read more in the :ref:`User Guide <datasets>`.
"""
    + _DOC_COMMON.format(prefix="mirflickr25k", dq=2000, dt=10000)
    + """
    See Also
    --------
    load_nuswide : The same for NUS-WIDE.
    load_wiki : The Wiki benchmark shipped with skhash.

    Examples
    --------
    >>> import numpy as np, scipy.io, tempfile, os
    >>> from skhash.datasets import load_mirflickr
    >>> rng = np.random.RandomState(42)
    >>> folder = tempfile.mkdtemp()
    >>> file = os.path.join(folder, "FLICKR-25K.mat")
    >>> labels = np.eye(3, dtype=np.uint8)[rng.randint(3, size=30)]
    >>> scipy.io.savemat(file, {"XAll": rng.rand(30, 8),
    ...                         "YAll": rng.randint(0, 2, (30, 12)),
    ...                         "LAll": labels})
    >>> data = load_mirflickr(file, n_query=5, n_train=10)
    >>> data.X
    MultiModal(img=(30, 8), txt=(30, 12))
    >>> data.Y.shape, len(data.query_idx), len(data.database_idx), len(data.train_idx)
    ((30, 3), 5, 25, 10)
"""
)

load_nuswide.__doc__ = (
    """Load NUS-WIDE from the .mat files published with DCMH or DJSRH.

    Reads the NUS-WIDE subset of the 10 (``nus-wide-tc10-*``) or 21
    (``nus-wide-tc21-*``) most frequent concepts (about 186,577 or 195,834
    image-tag pairs, 1,000-d bag-of-words tags, multi-label) from a local
    copy, in either published layout; nothing is downloaded. DJSRH stores
    the tags of NUS-WIDE as a MATLAB v7.3 file, which needs h5py.

    Read more in the :ref:`User Guide <datasets>`.
"""
    + _DOC_COMMON.format(prefix="nus-wide-tc10", dq=2100, dt=10500)
    + """
    See Also
    --------
    load_mirflickr : The same for MIRFlickr-25K.

    Examples
    --------
    >>> import numpy as np, scipy.io, tempfile, os
    >>> from skhash.datasets import load_nuswide
    >>> rng = np.random.RandomState(42)
    >>> folder = tempfile.mkdtemp()
    >>> L = np.eye(4, dtype=np.uint8)[rng.randint(4, size=40)]
    >>> for suffix, key, value in [("lall", "LAll", L),
    ...                            ("yall", "YAll", rng.randint(0, 2, (40, 10))),
    ...                            ("xall-vgg", "XAll", rng.rand(40, 16))]:
    ...     scipy.io.savemat(os.path.join(folder, f"nus-wide-tc10-{suffix}.mat"),
    ...                      {key: value})
    >>> data = load_nuswide(folder, n_query=10, n_train=None)
    >>> data.layout, data.X, len(data.train_idx)
    ('djsrh', MultiModal(img=(40, 16), txt=(40, 10)), 30)
"""
)
