"""Saving and loading a :class:`~skhash.retrieval.ShardedRetriever`.

The mixin :class:`_ShardPersistence` holds the estimator's public
:meth:`save <skhash.retrieval.ShardedRetriever.save>` (each shard written
by its worker, then the manifest, last) and :meth:`load
<skhash.retrieval.ShardedRetriever.load>` (each shard memory-mapped by the
worker that will hold it, its size checked against the manifest). The
manifest's format is in :mod:`skhash.retrieval._shard_manifest`, the tasks
that save and load one shard in :mod:`skhash.retrieval._shard_tasks`.
"""

from __future__ import annotations

import os

from sklearn.utils.validation import check_is_fitted

from skhash.retrieval._shard_manifest import (
    _MANIFEST,
    _read_manifest,
    _saved_params,
    _shard_dir,
    _write_manifest,
)
from skhash.retrieval._shard_tasks import _load_shard, _save_shard, _shard_info


class _ShardPersistence:
    """Mixin of :class:`~skhash.retrieval.ShardedRetriever`: save and load."""

    def save(self, path):
        """Save every shard to its own directory, then a manifest.

        Shard ``s`` is written by its worker with
        :meth:`TwoStageRetriever.save` to ``path/shard-<s>/`` (plain ``.npy``
        files), so ``path`` must be on a file system the workers and this
        process see (a shared file system for a real cluster). The manifest
        ``path/manifest.json`` (parameters, shard directories and sizes) is
        written last, atomically: a save that fails half-way leaves no
        manifest, which :meth:`load` refuses. An older manifest in ``path``
        is removed before the shards are written.

        Parameters
        ----------
        path : str or os.PathLike
            The directory (created if needed).

        Returns
        -------
        path : str
            The absolute path written.

        Examples
        --------
        >>> import os, tempfile
        >>> import numpy as np
        >>> from skhash.retrieval import ShardedRetriever
        >>> rng = np.random.RandomState(42)
        >>> search = ShardedRetriever(n_shards=2).fit(rng.randn(20, 4))
        >>> path = search.save(os.path.join(tempfile.mkdtemp(), "index"))
        >>> sorted(os.listdir(path))
        ['manifest.json', 'shard-00000', 'shard-00001']
        """
        check_is_fitted(self)
        path = os.path.abspath(os.fspath(path))
        os.makedirs(path, exist_ok=True)
        manifest = os.path.join(path, _MANIFEST)
        if os.path.exists(manifest):
            os.remove(manifest)
        names = [_shard_dir(s) for s in range(self.n_shards_)]
        self._run_on_shards(_save_shard, [(os.path.join(path, d),) for d in names])
        _write_manifest(
            path,
            params={p: getattr(self, p) for p in _saved_params()},
            shards=names,
            sizes=self.shard_sizes_,
            n_features_in=getattr(self, "n_features_in_", None),
        )
        return path

    @classmethod
    def load(cls, path, client=None, *, mmap_mode="r", verify=False):
        """Open a sharded index saved with :meth:`save` or built on disk.

        Each shard is opened by :meth:`TwoStageRetriever.load` on the worker
        that will hold it (in turn over the workers of ``client``), which
        memory-maps its files: ``path`` must be visible from the workers. If a
        worker is lost later, its shards are re-mapped by another worker.

        Parameters
        ----------
        path : str or os.PathLike
            A directory with a ``manifest.json`` written by :meth:`save` or
            :func:`~skhash.retrieval.build_sharded_index`.
        client : dask.distributed.Client, default=None
            The cluster to hold the shards; None opens them in this process.
        mmap_mode : {"r", "c", None}, default="r"
            How each shard maps its files (``None`` reads them into memory).
            ``"r+"`` is refused: shards are never grown on disk in place.
        verify : bool, default=False
            Check every shard's arrays against the checksums its ``save``
            wrote, as :meth:`TwoStageRetriever.load` does (it reads every
            byte once); a flipped byte then raises instead of loading.

        Returns
        -------
        retriever : ShardedRetriever
            The fitted retriever; its results equal the saved one's.

        Examples
        --------
        >>> import os, tempfile
        >>> import numpy as np
        >>> from skhash.retrieval import ShardedRetriever
        >>> rng = np.random.RandomState(42)
        >>> X = rng.randn(20, 4)
        >>> search = ShardedRetriever(n_neighbors=3, n_shards=2).fit(X)
        >>> loaded = ShardedRetriever.load(search.save(tempfile.mkdtemp()))
        >>> np.array_equal(loaded.kneighbors(X)[1], search.kneighbors(X)[1])
        True
        """
        if mmap_mode not in (None, "r", "c"):
            raise ValueError(
                f"mmap_mode must be 'r', 'c' or None; got {mmap_mode!r} (shards "
                "are never grown on disk in place: add() works in memory)."
            )
        path = os.path.abspath(os.fspath(path))
        meta = _read_manifest(path)
        est = cls(**meta["params"], client=client)
        dirs = [os.path.join(path, d) for d in meta["shards"]]
        params = est._shard_params()
        if client is None:
            shards = [_load_shard(d, mmap_mode, params, verify) for d in dirs]
            infos = [_shard_info(s) for s in shards]
        else:
            shards = est._submit_all(
                _load_shard,
                [(d, mmap_mode, params, verify) for d in dirs],
                workers=est._workers(),
            )
            infos = est._gather(
                [client.submit(_shard_info, s, pure=False) for s in shards],
                list(range(len(shards))),
            )
        for i, (info, n) in enumerate(zip(infos, meta["sizes"])):
            if info["n"] != n:
                raise ValueError(
                    f"{dirs[i]!r} holds {info['n']} items but the manifest of "
                    f"{path!r} says {n}; the index was changed after it was "
                    "written. Save or build it again."
                )
        est._commit(shards, infos)
        if meta.get("n_features_in") is not None:
            est.n_features_in_ = int(meta["n_features_in"])
        return est
