"""Saving and loading a :class:`~skhash.retrieval.TwoStageRetriever`.

The mixin :class:`_Persistence` holds the estimator's public :meth:`save
<skhash.retrieval.TwoStageRetriever.save>` and :meth:`load
<skhash.retrieval.TwoStageRetriever.load>`: ``save`` hands the fitted index
to :mod:`skhash.retrieval._storage`, and ``load`` rebuilds a fitted
retriever from the arrays and metadata that module read and
:mod:`skhash.retrieval._schema` checked (its parameters, index arrays,
codebooks and, through :mod:`skhash.retrieval._ivf`, how its inverted lists
were built).
"""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import check_is_fitted

from skhash._codes import codebook_fingerprint
from skhash.exceptions import IndexFormatError
from skhash.retrieval import _ivf, _storage


class _Persistence:
    """Mixin of :class:`~skhash.retrieval.TwoStageRetriever`: save and load."""

    def save(self, path):
        """Save the fitted index without pickle, all or nothing.

        The write is transactional: ``path`` holds the old index or the new
        one, never a mix, even if the process is killed part-way (the new
        files are written beside the old ones, flushed to disk, and switched
        in by an atomic rename). The metadata records a format version, the
        dtype, shape and sha256 checksum of every array and the fingerprint
        of the codebooks, which :meth:`load` checks.

        Parameters
        ----------
        path : str or os.PathLike
            A path ending in ``.npz`` writes one ``.npz`` file (arrays plus a
            JSON string of the parameters and metadata). Any other path is a
            directory (created if needed) of one ``.npy`` file per array and
            a ``meta.json`` manifest, which :meth:`load` can memory-map.
            Saving over an index directory replaces it; a directory whose
            ``meta.json`` was written by something else is refused.

        Returns
        -------
        path : str
            The path written.

        Examples
        --------
        >>> import os, tempfile
        >>> import numpy as np
        >>> from skhash.retrieval import TwoStageRetriever
        >>> rng = np.random.RandomState(42)
        >>> search = TwoStageRetriever(n_neighbors=3).fit(rng.randn(20, 4))
        >>> path = search.save(os.path.join(tempfile.mkdtemp(), "index.npz"))
        >>> TwoStageRetriever.load(path).n_samples_fit_
        20
        """
        check_is_fitted(self)
        return _storage.save(self, path)

    @classmethod
    def load(cls, path, mmap_mode=None, *, verify=False):
        """Rebuild a fitted retriever saved with :meth:`save`, checking it.

        Every array is checked against the metadata before the retriever is
        built: present, one row per item, dtypes and widths (``ceil(n_bits /
        8)`` bytes of bits with the padding bits clear, ``M`` codes per item
        below ``K``), finite codebooks of the recorded fingerprint, finite
        embeddings, labels of a storable dtype. A file that fails is reported
        with a :class:`~skhash.exceptions.IndexFormatError` naming it and
        what is wrong, so nothing damaged reaches a search kernel.

        Parameters
        ----------
        path : str or os.PathLike
            A ``.npz`` file or a directory written by :meth:`save`.
        mmap_mode : {None, "r", "r+", "c"}, default=None
            Memory-map the arrays (``numpy.load``'s argument) instead of
            reading them, so that a database larger than memory is searched
            from disk; ``"r+"`` lets :meth:`add` grow the files in place.
            Only a directory can be memory-mapped: a ``.npz`` file is always
            read into memory and this argument is ignored.
        verify : bool, default=False
            Also recompute the sha256 checksum of every array and compare it
            with the one :meth:`save` (or :meth:`add` on disk) recorded: for
            index files received from someone else. Reads every byte.

        Returns
        -------
        retriever : TwoStageRetriever
            The fitted retriever; its results equal the saved one's.

        Raises
        ------
        skhash.exceptions.IndexFormatError
            When ``path`` was not written by :meth:`save` (a pickle, another
            ``.npz``, a foreign ``meta.json``), is truncated or damaged, or
            (``verify=True``) does not match its checksums.

        Examples
        --------
        >>> import os, tempfile
        >>> import numpy as np
        >>> from skhash.retrieval import TwoStageRetriever
        >>> rng = np.random.RandomState(42)
        >>> X = rng.randn(20, 4)
        >>> search = TwoStageRetriever(n_neighbors=3).fit(X)
        >>> path = search.save(os.path.join(tempfile.mkdtemp(), "index"))
        >>> loaded = TwoStageRetriever.load(path, mmap_mode="r", verify=True)
        >>> np.array_equal(loaded.kneighbors(X)[1], search.kneighbors(X)[1])
        True
        """
        meta, arrays, store = _storage.read(path, mmap_mode, verify)
        where = f"{_storage.where_meta(path)}"
        params = meta["params"]
        unknown = set(params) - set(cls().get_params())
        if unknown:  # parameters added since keep their defaults
            raise IndexFormatError(
                f"{where}: the parameters {sorted(unknown)} are not parameters of "
                "TwoStageRetriever."
            )
        est = cls(**params)
        try:
            est._validate_params()
        except (ValueError, TypeError) as exc:
            raise IndexFormatError(f"{where}: invalid parameters ({exc}).") from None
        index = {
            m: {p: arrays[f"{m}.{p}"] for p in meta["parts"][m]}
            for m in meta["modalities"]
        }
        codebooks = arrays.get("codebooks")
        if codebooks is not None:
            codebooks = np.array(codebooks)
        est._set_index(
            index,
            n_samples=meta["n_samples_fit"],
            n_bits=meta["n_bits"],
            codebooks=codebooks,
            kind=meta["codebook_kind"],
            y=arrays.get("y"),
            rerank=meta["rerank_fit"],
            fingerprint=codebook_fingerprint(codebooks, meta["codebook_kind"]),
        )
        if meta["n_features_in"] is not None:
            est.n_features_in_ = int(meta["n_features_in"])
        est.model_fingerprint_ = meta.get("model_fingerprint")
        est._store = store
        _ivf.restore(est, meta, where)
        return est
