"""Out-of-core builds: write a sharded index chunk by chunk, in bounded memory."""

from __future__ import annotations

import os
from numbers import Integral

import numpy as np
from tqdm.auto import tqdm

from skhash._codes import CodeSet
from skhash.retrieval._retriever import TwoStageRetriever
from skhash.retrieval._schema import merged_label_dtype
from skhash.retrieval._shard_manifest import (
    _MANIFEST,
    _SHARD_PARAMS,
    _saved_params,
    _shard_dir,
    _write_manifest,
)
from skhash.retrieval._shard_tasks import _check_same_index, _shard_info
from skhash.retrieval._sharded import ShardedRetriever

__all__ = ["build_sharded_index"]

_PARTS = ("embedding", "bits", "codes")


def build_sharded_index(
    source,
    path,
    *,
    y=None,
    encoder=None,
    shard_size=10_000_000,
    chunk_size=1_000_000,
    retriever=None,
    progress=True,
):
    """Build a sharded index on disk from data larger than memory.

    The items are read ``chunk_size`` at a time (and encoded by ``encoder``
    when they are raw features), copied into a buffer of ``shard_size``
    items, and each full buffer is indexed by a
    :class:`~skhash.retrieval.TwoStageRetriever` and written to its own shard
    directory with :meth:`~skhash.retrieval.TwoStageRetriever.save`. So the
    memory used is about one shard's compact codes plus one chunk, whatever
    the number of items. The manifest is written last: an interrupted build
    leaves a directory that :meth:`ShardedRetriever.load` refuses. Open the
    result with ``ShardedRetriever.load(path, client=...)``; it searches
    exactly like one ``TwoStageRetriever`` fit on all the items.

    Parameters
    ----------
    source : CodeSet, array-like or iterable
        The database items, in order:

        - a :class:`~skhash.CodeSet`, e.g. over :func:`numpy.memmap` parts,
          read in slices of ``chunk_size``;
        - an array-like with ``shape`` and slicing (a ``numpy.memmap``, a
          ``dask.array.Array``, an ``h5py`` dataset) of raw features for
          ``encoder``, or of embeddings without one; each slice is read with
          ``numpy.asarray`` (which computes a dask array's chunk);
        - any other iterable of batches: CodeSets, arrays, or ``(batch,
          y_batch)`` pairs.
    path : str or os.PathLike
        The directory to write (created if needed; an older manifest in it is
        removed first).
    y : array-like of shape (n_samples,) or (n_samples, n_labels), default=None
        Labels of the items, sliced like ``source`` (not with an iterable of
        ``(batch, y_batch)`` pairs, which carry their own).
    encoder : object, default=None
        A fitted learner whose ``transform`` turns a chunk of raw features
        into a CodeSet (e.g. :class:`~skhash.HQHasher`); None when the source
        already holds codes.
    shard_size : int, default=10_000_000
        Items per shard (the last one may be smaller).
    chunk_size : int, default=1_000_000
        Items read (and encoded) at a time from an array-like source.
    retriever : ShardedRetriever or TwoStageRetriever, default=None
        Whose search parameters (``alpha``, ``n_neighbors``, ``rerank``,
        ``n_jobs``, ``backend``) the index is built and saved with; None uses
        the defaults.
    progress : bool, default=True
        Show a progress bar (tqdm) of the items written.

    Returns
    -------
    path : str
        The absolute path of the index directory.

    See Also
    --------
    ShardedRetriever.load : Open the result on a cluster.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from skhash import CodeSet
    >>> from skhash.retrieval import ShardedRetriever, build_sharded_index
    >>> rng = np.random.RandomState(0)
    >>> batches = (CodeSet(bits=rng.randint(256, size=(25, 8), dtype=np.uint8))
    ...            for _ in range(4))
    >>> path = build_sharded_index(batches, tempfile.mkdtemp(), shard_size=40,
    ...                            progress=False)
    >>> ShardedRetriever.load(path).shard_sizes_
    array([40, 40, 20])
    """
    for name, value in (("shard_size", shard_size), ("chunk_size", chunk_size)):
        if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
            raise ValueError(
                f"{name}={value!r} must be a positive int; pass e.g. {name}=1_000_000."
            )
    if retriever is None:
        retriever = ShardedRetriever()
    if not isinstance(retriever, (ShardedRetriever, TwoStageRetriever)):
        raise TypeError(
            "retriever must be a ShardedRetriever or TwoStageRetriever whose "
            f"parameters the index uses; got {type(retriever).__name__}."
        )
    params = {p: getattr(retriever, p) for p in _SHARD_PARAMS}
    TwoStageRetriever(**params)._validate_params()
    path = os.path.abspath(os.fspath(path))
    os.makedirs(path, exist_ok=True)
    manifest = os.path.join(path, _MANIFEST)
    if os.path.exists(manifest):
        os.remove(manifest)

    batches, total = _batches(source, y, chunk_size)
    buffer = _ShardBuffer(int(shard_size))
    names, sizes, ref = [], [], None
    n_features = None

    def flush():
        nonlocal ref, n_features
        X, y_shard = buffer.take()
        # multi-index hashing tables are not saved (a loaded shard builds
        # them at its first search): fit with the scan, save the parameters
        shard = TwoStageRetriever(**{**params, "stage1": "exhaustive"})
        shard.fit(X, y_shard).set_params(stage1=params["stage1"])
        info = _shard_info(shard)
        if ref is None:
            ref = info
        else:
            _check_same_index(ref, info, f"the items of shard {len(names)}")
        n_features = info["n_features_in"]
        name = _shard_dir(len(names))
        shard.save(os.path.join(path, name))
        names.append(name)
        sizes.append(info["n"])

    with tqdm(total=total, unit="item", disable=not progress, unit_scale=True) as bar:
        for X, y_batch in batches:
            if encoder is not None:
                X = encoder.transform(X)
            start = 0
            while start < len(X):
                stop = start + buffer.room
                buffer.put(
                    X[start:stop], None if y_batch is None else y_batch[start:stop]
                )
                bar.update(min(stop, len(X)) - start)
                start = stop
                if buffer.room == 0:
                    flush()
        if buffer.n:
            flush()
    if not names:
        raise ValueError("source holds 0 items; nothing to index.")
    saved = {p: getattr(retriever, p, None) for p in _saved_params()}
    saved.update(params, n_shards=len(names), max_shard_size=int(shard_size))
    _write_manifest(
        path, params=saved, shards=names, sizes=sizes, n_features_in=n_features
    )
    return path


def _batches(source, y, chunk_size):
    """``((X, y), ...)`` batches of the source, and its length if known."""
    if isinstance(source, CodeSet) or (
        hasattr(source, "shape") and hasattr(source, "__getitem__")
    ):
        n = len(source)
        if y is not None and len(y) != n:
            raise ValueError(
                f"y must have one row per item: source has {n} items but y has "
                f"{len(y)} rows."
            )

        def sliced():
            for a in range(0, n, chunk_size):
                X = source[a : a + chunk_size]
                if not isinstance(X, (CodeSet, dict)):  # MultiModal stays
                    X = np.asarray(X)
                yield X, None if y is None else np.asarray(y[a : a + chunk_size])

        return sliced(), n
    if y is not None:
        raise ValueError(
            "y cannot be given with an iterable source; yield (batch, y_batch) "
            "pairs instead."
        )
    if isinstance(source, (str, bytes, dict)) or not hasattr(source, "__iter__"):
        raise TypeError(
            "source must be a CodeSet, an array-like or an iterable of batches; "
            f"got {type(source).__name__}."
        )

    def pairs():
        for item in source:
            if isinstance(item, tuple) and len(item) == 2:
                yield item[0], None if item[1] is None else np.asarray(item[1])
            else:
                yield item, None

    return pairs(), None


class _ShardBuffer:
    """Preallocated arrays of one shard, filled chunk by chunk and reused."""

    def __init__(self, size):
        self.size = size
        self.n = 0
        self._arrays = None  # {(modality, part): array} or {"X": array}
        self._y = None
        self._meta = None

    @property
    def room(self):
        return self.size - self.n

    def put(self, X, y):
        if isinstance(X, CodeSet):
            parts = {
                (m, p): X.get(m, p)
                for m in X.modalities
                for p in _PARTS
                if X.get(m, p) is not None
            }
            meta = (
                "codes",
                X.modalities,
                X.n_bits,
                X.codebooks,
                X.codebook_kind,
                X.model_fingerprint,
            )
        elif isinstance(X, dict):
            raise TypeError(
                "A batch is raw features of several modalities (a "
                f"{type(X).__name__}); pass encoder=<a fitted learner> to turn "
                "each chunk into codes."
            )
        else:
            X = np.asarray(X)
            if X.ndim != 2:
                raise ValueError(f"A batch of embeddings must be 2-D; got {X.shape}.")
            parts, meta = {"X": X}, ("array",)
        if self._arrays is None:
            self._meta = meta
            self._arrays = {
                key: np.empty((self.size, *a.shape[1:]), dtype=a.dtype)
                for key, a in parts.items()
            }
            if y is not None:
                self._y = np.empty((self.size, *y.shape[1:]), dtype=y.dtype)
        else:
            self._check_like(parts, meta, y)
            if y is not None:
                self._widen_labels(y)
        c = len(X)
        for key, a in parts.items():
            self._arrays[key][self.n : self.n + c] = a
        if y is not None:
            self._y[self.n : self.n + c] = y
        self.n += c

    def _check_like(self, parts, meta, y):
        same = set(parts) == set(self._arrays) and all(
            a.shape[1:] == self._arrays[key].shape[1:] for key, a in parts.items()
        )
        if same and meta[0] == "codes":
            same = meta[1:3] == self._meta[1:3] and meta[4] == self._meta[4]
            same = same and (
                (meta[3] is None) == (self._meta[3] is None)
                and (meta[3] is None or np.array_equal(meta[3], self._meta[3]))
            )
        if not same or meta[0] != self._meta[0]:
            raise ValueError(
                "A batch differs from the first one (its modalities, parts, "
                "n_bits, widths or codebooks); every batch must come from the "
                "same learner and quantizer."
            )
        if meta[0] == "codes" and meta[5] != self._meta[5]:
            raise ValueError(
                f"A batch was encoded by another model (model_fingerprint "
                f"{meta[5]!r}) than the first one ({self._meta[5]!r}); every "
                "batch must come from the same fitted learner."
            )
        if (y is None) != (self._y is None) or (
            y is not None and y.shape[1:] != self._y.shape[1:]
        ):
            raise ValueError(
                "Every batch must carry labels shaped like the first batch's, or "
                "none must."
            )

    def _widen_labels(self, y):
        """Store the labels exactly, as the single index's ``add``: in a
        wider dtype of the same family when ``y`` needs one (longer strings,
        a wider int), or a ValueError (2.7 into int labels)."""
        dtype = merged_label_dtype(self._y[: self.n], y)
        if dtype != self._y.dtype:
            wider = np.empty(self._y.shape, dtype=dtype)
            wider[: self.n] = self._y[: self.n]
            self._y = wider

    def take(self):
        """The buffered items as (X, y) views; the buffer is then emptied."""
        n, self.n = self.n, 0
        y = None if self._y is None else self._y[:n]
        if self._meta[0] == "array":
            return self._arrays["X"][:n], y
        _, modalities, n_bits, codebooks, kind, model = self._meta
        per = []
        for m in modalities:
            got = {p: self._arrays.get((m, p)) for p in _PARTS}
            has_codes = got["codes"] is not None
            per.append(
                CodeSet(
                    **{p: None if a is None else a[:n] for p, a in got.items()},
                    n_bits=n_bits if got["bits"] is not None else None,
                    codebooks=codebooks if has_codes else None,
                    codebook_kind=kind if has_codes else None,
                    modality=m,
                    model_fingerprint=model,
                )
            )
        if len(per) == 1:
            return per[0], y
        return CodeSet.from_modalities(**dict(zip(modalities, per))), y
