"""Search kernels of the two-stage retriever, behind one small interface.

A *backend* is an object with the seven methods of :class:`NumpyBackend`
(``hamming``, ``shortlist``, ``rerank_aqd``, ``rerank_exact``,
``rerank_code_hamming``, ``topk``) and a ``name``. The estimator
(:class:`~skhash.retrieval.TwoStageRetriever`) only ever talks to a backend
obtained from :func:`get_backend`, so a faster implementation (numba, faiss,
GPU) slots in by registering itself with :func:`register_backend` and
returning exactly what the numpy reference returns, ties included.

Conventions shared by every backend:

* ``q_bits`` / ``db_bits`` are packed ``uint8`` codes (:func:`skhash.pack_bits`
  order) with the same number of bytes; padding bits are zero, so the Hamming
  distance of the bytes is the Hamming distance of the ``n_bits`` bits.
* ``cand_idx`` is an ``(n_queries, L)`` int64 array of database rows per query,
  or ``None`` for "every database row, in index order".
* Every ranking is by ``(distance, database index)``: equal distances put the
  lower database index first.
* The estimator calls the methods on chunks of queries, from several threads
  when ``n_jobs > 1``; the methods must be thread-safe (pure functions are).
"""

from __future__ import annotations

import numpy as np

__all__ = ["NumpyBackend", "get_backend", "register_backend"]

# Temporary memory one call may use per chunk of queries (bytes).
_CHUNK_BYTES = 64 * 2**20

_BACKENDS = {}


def register_backend(name, factory):
    """Register a search backend under a name, for :func:`get_backend`.

    Parameters
    ----------
    name : str
        The name users pass as ``TwoStageRetriever(backend=name)``.
    factory : callable
        Called with no argument, returns the backend object (an object with
        the methods of :class:`NumpyBackend`). It is called lazily, the first
        time the backend is asked for, so an optional dependency (numba) is
        imported only then.

    Examples
    --------
    >>> from skhash.retrieval._kernels import NumpyBackend, register_backend
    >>> from skhash.retrieval import get_backend
    >>> register_backend("numpy-copy", NumpyBackend)
    >>> get_backend("numpy-copy").name
    'numpy'
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"A backend name must be a non-empty str; got {name!r}.")
    if not callable(factory):
        raise TypeError(f"factory must be callable; got {type(factory).__name__}.")
    _BACKENDS[name] = [factory, None]


def get_backend(name="numpy"):
    """Return the search backend registered under ``name``.

    Parameters
    ----------
    name : str, default="numpy"
        A registered backend name; ``"numpy"`` (vectorised numpy, always
        available) is the reference.

    Returns
    -------
    backend : object
        An object with the methods of :class:`NumpyBackend`.

    Raises
    ------
    ValueError
        If no backend has that name; the message lists the registered names.

    Examples
    --------
    >>> import numpy as np
    >>> from skhash import pack_bits
    >>> from skhash.retrieval import get_backend
    >>> rng = np.random.RandomState(42)
    >>> db = pack_bits(rng.randn(100, 16))
    >>> q = pack_bits(rng.randn(3, 16))
    >>> idx, dist = get_backend("numpy").shortlist(q, db, 10)
    >>> idx.shape, dist.shape, bool((np.diff(dist, axis=1) >= 0).all())
    ((3, 10), (3, 10), True)
    """
    entry = _BACKENDS.get(name) if isinstance(name, str) else None
    if entry is None:
        raise ValueError(
            f"Unknown search backend {name!r}; registered backends are "
            f"{sorted(_BACKENDS)}."
        )
    if entry[1] is None:
        entry[1] = entry[0]()
    return entry[1]


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #


def _check_bits(q_bits, db_bits):
    q = np.ascontiguousarray(q_bits)
    db = np.ascontiguousarray(db_bits)
    for name, a in (("q_bits", q), ("db_bits", db)):
        if a.dtype != np.uint8 or a.ndim != 2:
            raise ValueError(
                f"{name} must be packed uint8 codes of shape (n, n_bytes); got "
                f"dtype {a.dtype} and shape {a.shape}. Use skhash.pack_bits."
            )
    if q.shape[1] != db.shape[1]:
        raise ValueError(
            f"q_bits have {q.shape[1]} bytes per item but db_bits have "
            f"{db.shape[1]}; both must be packed from the same n_bits."
        )
    return q, db


def _words(bits):
    """View packed bytes as the widest unsigned words that divide the row."""
    n_bytes = bits.shape[1]
    for width, dtype in ((8, np.uint64), (4, np.uint32), (2, np.uint16)):
        if n_bytes % width == 0:
            return bits.view(dtype)
    return bits


def _distance_dtype(max_distance):
    if max_distance < 2**8:
        return np.uint8
    if max_distance < 2**16:
        return np.uint16
    return np.uint32


def _rows_per_chunk(n_items, bytes_per_entry, chunk_bytes=_CHUNK_BYTES):
    return max(1, int(chunk_bytes // (bytes_per_entry * max(n_items, 1))))


def _hamming_block(q_words, db_words_t, dtype):
    """Hamming distances ``(c, N)`` of ``dtype`` between word-packed codes."""
    c, n = q_words.shape[0], db_words_t.shape[1]
    n_words = db_words_t.shape[0]
    counts = np.empty((c, n), dtype=np.uint8)
    xor = np.empty((c, n), dtype=db_words_t.dtype)
    dist = np.zeros((c, n), dtype=dtype)
    for j in range(n_words):
        np.bitwise_xor(q_words[:, j : j + 1], db_words_t[j][None, :], out=xor)
        np.bitwise_count(xor, out=counts)
        if n_words == 1 and dtype == np.uint8:
            return counts
        np.add(dist, counts, out=dist)
    return dist


def _select_smallest(dist, n_candidates, n_values):
    """The ``L`` smallest small-integer distances of each row, by (value, index).

    ``dist`` is ``(c, N)`` of an unsigned dtype with values in
    ``[0, n_values)``. One ``bincount`` gives every row's histogram; its
    cumulative counts give the threshold distance ``t`` (the smallest with at
    least ``L`` items at or below it). All items below ``t`` are taken, and
    the lowest-index items at ``t`` up to ``L``. The ``L`` picks, in index
    order, are then ordered by distance with a stable radix (counting) sort,
    so equal distances stay in index order. Nothing sorts the ``N``
    distances of a row.
    """
    c, n = dist.shape
    L = n_candidates
    rows = np.arange(c)
    offsets = rows[:, None] * n_values
    hist = np.bincount((dist + offsets).ravel(), minlength=c * n_values)
    hist = hist.reshape(c, n_values)
    if L == n:
        cols = np.broadcast_to(np.arange(n), (c, n))
        picked = dist
    else:
        cum = np.cumsum(hist, axis=1)
        t = np.count_nonzero(cum < L, axis=1)
        at_t = hist[rows, t]
        need = L - (cum[rows, t] - at_t)  # how many items at distance t to keep
        t_col = t.astype(dist.dtype)[:, None]
        if cum[rows, t].sum() <= 2 * c * L:
            # Few items at distance t beyond the L: gather all <= t, trim ties.
            flat = np.flatnonzero(dist <= t_col)
            r = flat // n
            is_t = dist.ravel()[flat] == t_col[r, 0]
            rank = np.cumsum(is_t)  # 1-based rank of the at-t items in the row
            rank -= np.concatenate(([0], np.cumsum(at_t)[:-1]))[r]
            flat = flat[~is_t | (rank <= need[r])]
        else:
            # Many ties at t: a running count along each row picks the first.
            is_t = dist == t_col
            rank = np.cumsum(is_t, axis=1, dtype=np.int32 if n < 2**31 else np.int64)
            flat = np.flatnonzero((dist < t_col) | (is_t & (rank <= need[:, None])))
        cols = (flat % n).reshape(c, L)
        picked = dist.ravel()[flat].reshape(c, L)
    order = np.argsort(picked, axis=1, kind="stable")  # radix sort for uint8/16
    return (
        np.take_along_axis(cols, order, axis=1).astype(np.int64, copy=False),
        np.take_along_axis(picked, order, axis=1).astype(np.int32),
    )


def _check_no_nan(dist):
    """Raise if the float distances ``dist`` hold a NaN: it has no rank, and
    a selection by comparisons would return arbitrary neighbours (or, for
    whole rows of NaN, none). One summing pass; ``isnan`` only when the sum
    is NaN (``inf - inf`` also makes one)."""
    with np.errstate(invalid="ignore", over="ignore"):
        total = np.add.reduce(dist, axis=None) if dist.size else 0.0
    if not np.isnan(total):
        return
    bad = np.argwhere(np.isnan(dist))
    if bad.size:
        r, c = (int(v) for v in bad[0])
        raise ValueError(
            f"distances holds {len(bad)} NaN value(s), the first at row {r}, "
            f"column {c}: NaN has no rank. Pass finite distances, with np.inf "
            "for the items to exclude (e.g. np.nan_to_num(d, nan=np.inf))."
        )


def _take_rows(array, cand_idx):
    """``array[cand_idx]`` for a ``(c, L)`` index (or all rows when None)."""
    return array if cand_idx is None else array[cand_idx]


# --------------------------------------------------------------------------- #
# The numpy reference backend
# --------------------------------------------------------------------------- #


class NumpyBackend:
    """Vectorised numpy search kernels (the reference backend ``"numpy"``).

    Every method works on a batch of queries at once; the Hamming kernels
    process the queries in chunks so that their temporary memory stays near
    ``chunk_bytes`` whatever the database size. No method loops in Python
    over database items or over single queries.

    Parameters
    ----------
    chunk_bytes : int, default=64 MiB
        Temporary memory one chunk of queries may use in :meth:`hamming` and
        :meth:`shortlist` (about 16 bytes per query and database item).

    Attributes
    ----------
    name : str
        ``"numpy"``.

    See Also
    --------
    get_backend : Look a backend up by name.
    TwoStageRetriever : The estimator that drives the kernels.

    Examples
    --------
    >>> import numpy as np
    >>> from skhash import pack_bits
    >>> from skhash.retrieval._kernels import NumpyBackend
    >>> rng = np.random.RandomState(42)
    >>> db, q = pack_bits(rng.randn(50, 12)), pack_bits(rng.randn(2, 12))
    >>> be = NumpyBackend()
    >>> be.hamming(q, db).shape
    (2, 50)
    >>> idx, dist = be.shortlist(q, db, 5)
    >>> bool((dist == np.take_along_axis(be.hamming(q, db), idx, axis=1)).all())
    True
    """

    name = "numpy"
    #: whether :meth:`rerank_exact` may use the compiled products kernel
    _compiled_products = False

    def __init__(self, chunk_bytes=_CHUNK_BYTES):
        self.chunk_bytes = chunk_bytes

    def __repr__(self):
        return f"NumpyBackend(chunk_bytes={self.chunk_bytes})"

    def hamming(self, q_bits, db_bits):
        """Hamming distances between every query and every database item.

        Parameters
        ----------
        q_bits : ndarray of shape (n_queries, n_bytes), dtype uint8
            Packed query codes.
        db_bits : ndarray of shape (n_items, n_bytes), dtype uint8
            Packed database codes.

        Returns
        -------
        distances : ndarray of shape (n_queries, n_items), dtype int32
            Number of differing bits (XOR, then ``np.bitwise_count``).

        Examples
        --------
        >>> import numpy as np
        >>> from skhash.retrieval import get_backend
        >>> a = np.array([[0b11110000]], dtype=np.uint8)
        >>> b = np.array([[0b11110000], [0b00001111]], dtype=np.uint8)
        >>> get_backend().hamming(a, b)
        array([[0, 8]], dtype=int32)
        """
        q, db = _check_bits(q_bits, db_bits)
        qw, dbw_t = _words(q), np.ascontiguousarray(_words(db).T)
        dtype = _distance_dtype(8 * q.shape[1])
        out = np.empty((q.shape[0], db.shape[0]), dtype=np.int32)
        step = _rows_per_chunk(db.shape[0], 16, self.chunk_bytes)
        for s in range(0, q.shape[0], step):
            out[s : s + step] = _hamming_block(qw[s : s + step], dbw_t, dtype)
        return out

    def shortlist(self, q_bits, db_bits, n_candidates):
        """The ``L`` nearest database items of each query in Hamming distance.

        Ordered by (Hamming distance, database index). The selection uses
        the fact that distances are small integers: a per-query histogram
        gives the threshold distance, the items below it are taken with the
        lowest-index items at it, and a counting (radix) sort orders those
        ``L``; the ``N`` distances are never sorted.

        Parameters
        ----------
        q_bits : ndarray of shape (n_queries, n_bytes), dtype uint8
            Packed query codes.
        db_bits : ndarray of shape (n_items, n_bytes), dtype uint8
            Packed database codes.
        n_candidates : int
            ``L``; values above ``n_items`` are clipped to it.

        Returns
        -------
        indices : ndarray of shape (n_queries, L), dtype int64
            Database rows, nearest first.
        distances : ndarray of shape (n_queries, L), dtype int32
            Their Hamming distances, ascending.

        Examples
        --------
        >>> import numpy as np
        >>> from skhash.retrieval import get_backend
        >>> db = np.array([[3], [1], [0], [1]], dtype=np.uint8)
        >>> get_backend().shortlist(np.array([[1]], dtype=np.uint8), db, 3)
        (array([[1, 3, 0]]), array([[0, 0, 1]], dtype=int32))
        """
        q, db = _check_bits(q_bits, db_bits)
        n_q, n = q.shape[0], db.shape[0]
        if n_candidates < 0:
            raise ValueError(f"n_candidates must be >= 0; got {n_candidates}.")
        L = int(min(n_candidates, n))
        indices = np.empty((n_q, L), dtype=np.int64)
        distances = np.empty((n_q, L), dtype=np.int32)
        if L == 0 or n_q == 0:
            return indices, distances
        qw, dbw_t = _words(q), np.ascontiguousarray(_words(db).T)
        max_distance = 8 * q.shape[1]
        dtype = _distance_dtype(max_distance)
        step = _rows_per_chunk(n, 16, self.chunk_bytes)
        for s in range(0, n_q, step):
            dist = _hamming_block(qw[s : s + step], dbw_t, dtype)
            idx, d = _select_smallest(dist, L, max_distance + 1)
            indices[s : s + step] = idx
            distances[s : s + step] = d
        return indices, distances

    def rerank_aqd(self, luts, cand_idx, db_codes):
        """Sum look-up-table entries of the candidates' quantization codes.

        ``out[q, j] = Σ_m luts[q, m, db_codes[cand_idx[q, j], m]]``: the
        asymmetric quantizer distance (or inner product) of each query to
        each candidate's reconstruction, depending on the tables.

        Parameters
        ----------
        luts : ndarray of shape (n_queries, M, K), float32
            Per-query tables, e.g. from
            :func:`skhash.quantization.lookup_tables`.
        cand_idx : ndarray of shape (n_queries, L), int64, or None
            Candidate rows per query; ``None`` scores every database item.
        db_codes : ndarray of shape (n_items, M), uint8 or uint16
            Quantization codes of the database.

        Returns
        -------
        sums : ndarray of shape (n_queries, L) or (n_queries, n_items), float32
            The summed table entries.

        Examples
        --------
        >>> import numpy as np
        >>> from skhash.retrieval import get_backend
        >>> luts = np.arange(8, dtype=np.float32).reshape(1, 2, 4)
        >>> codes = np.array([[0, 0], [3, 1]], dtype=np.uint8)
        >>> get_backend().rerank_aqd(luts, np.array([[1, 0]]), codes)
        array([[8., 4.]], dtype=float32)
        """
        luts = np.asarray(luts, dtype=np.float32)
        n_q, n_books, _ = luts.shape
        codes = _take_rows(np.asarray(db_codes), cand_idx)
        width = codes.shape[0] if cand_idx is None else codes.shape[1]
        out = np.zeros((n_q, width), dtype=np.float32)
        for m in range(n_books):
            if cand_idx is None:
                out += luts[:, m, :][:, codes[:, m]]
            else:
                out += np.take_along_axis(
                    luts[:, m, :], codes[:, :, m].astype(np.intp), axis=1
                )
        return out

    def rerank_exact(self, q_emb, db_emb, cand_idx):
        """Cosine similarities between query and candidate embeddings.

        Zero vectors have cosine 0 with everything.

        Parameters
        ----------
        q_emb : ndarray of shape (n_queries, d)
            Query embeddings.
        db_emb : ndarray of shape (n_items, d)
            Database embeddings.
        cand_idx : ndarray of shape (n_queries, L), int64, or None
            Candidate rows per query; ``None`` compares with every item.

        Returns
        -------
        cosine : ndarray of shape (n_queries, L) or (n_queries, n_items), float32
            The similarities (larger is closer).

        Examples
        --------
        >>> import numpy as np
        >>> from skhash.retrieval import get_backend
        >>> db = np.array([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])
        >>> get_backend().rerank_exact(np.array([[2.0, 0.0]]), db, None)
        array([[ 1.,  0., -1.]], dtype=float32)
        """
        q = _normalize(np.asarray(q_emb, dtype=np.float32))
        db = np.asarray(db_emb, dtype=np.float32)
        if cand_idx is None:
            # an entry's sum over d runs in an order fixed by d alone, so it
            # is the same bits whatever rows and items the call holds (query
            # chunks, database shards). A BLAS product, even one query row at
            # a time (gemv), rounds an item's column by where it falls in the
            # call's blocks: on an AVX-512 OpenBLAS kernel 129 of 165 shard
            # splits differed in the last bit. The compiled products kernel
            # (numba backend) and its numpy reference give the same bits;
            # 64 queries x 10**5 items x 64 dims: 29 ms against 98 with
            # einsum and 400 with the reference.
            from skhash.quantization._products import ordered_products, tile_rows

            x = _normalize(db)
            return ordered_products(
                q,
                tile_rows(x, np.float32),
                x.shape[0],
                compiled=self._compiled_products,
            )
        x = _normalize(db[cand_idx])
        return np.einsum("qd,qld->ql", q, x)

    def rerank_code_hamming(self, q_codes, db_codes, cand_idx):
        """Number of differing quantization code indices (HQ-b re-ranking).

        Parameters
        ----------
        q_codes : ndarray of shape (n_queries, M)
            Query quantization codes.
        db_codes : ndarray of shape (n_items, M)
            Database quantization codes.
        cand_idx : ndarray of shape (n_queries, L), int64, or None
            Candidate rows per query; ``None`` compares with every item.

        Returns
        -------
        n_differ : ndarray of shape (n_queries, L) or (n_queries, n_items), int32
            How many of the ``M`` code indices differ.

        Examples
        --------
        >>> import numpy as np
        >>> from skhash.retrieval import get_backend
        >>> db = np.array([[0, 1, 2], [0, 1, 3], [4, 4, 4]], dtype=np.uint8)
        >>> q = np.array([[0, 1, 2]], dtype=np.uint8)
        >>> get_backend().rerank_code_hamming(q, db, None)
        array([[0, 1, 3]], dtype=int32)
        """
        q = np.asarray(q_codes)
        codes = _take_rows(np.asarray(db_codes), cand_idx)
        n_q, n_books = q.shape
        width = codes.shape[0] if cand_idx is None else codes.shape[1]
        out = np.zeros((n_q, width), dtype=np.int32)
        for m in range(n_books):
            db_m = codes[None, :, m] if cand_idx is None else codes[:, :, m]
            out += q[:, m, None] != db_m
        return out

    def topk(self, distances, n_neighbors, cand_idx=None):
        """The ``k`` smallest distances of each row, by (distance, index).

        Parameters
        ----------
        distances : ndarray of shape (n_queries, L)
            Distances (smaller is closer); ``inf`` marks excluded items. NaN
            has no rank and raises a ``ValueError``.
        n_neighbors : int
            ``k``; clipped to ``L``.
        cand_idx : ndarray of shape (n_queries, L), int64, default=None
            The database row of each column, used to break ties (and
            returned); ``None`` means column ``j`` is item ``j``.

        Returns
        -------
        indices : ndarray of shape (n_queries, k), int64
            Database rows, nearest first; equal distances put the lower
            database index first.
        distances : ndarray of shape (n_queries, k), float64
            Their distances, ascending.

        Examples
        --------
        >>> import numpy as np
        >>> from skhash.retrieval import get_backend
        >>> get_backend().topk(np.array([[0.5, 0.1, 0.5, 0.2]]), 3)
        (array([[1, 3, 0]]), array([[0.1, 0.2, 0.5]]))
        """
        dist = np.asarray(distances, dtype=np.float64)
        _check_no_nan(dist)
        n_q, L = dist.shape
        k = int(min(n_neighbors, L))
        if cand_idx is None:
            cand_idx = np.broadcast_to(np.arange(L, dtype=np.int64), (n_q, L))
        if k == 0 or n_q == 0:
            empty = np.empty((n_q, 0))
            return empty.astype(np.int64), empty
        if L <= max(2 * k, 64):
            pos = np.lexsort((cand_idx, dist), axis=-1)[:, :k]
        else:
            kth = np.partition(dist, k - 1, axis=1)[:, k - 1 : k]
            keep = dist <= kth
            n_keep = keep.sum(axis=1)
            width = int(n_keep.max())
            # bring each row's kept columns to the front (a radix sort of bools)
            pos = np.argsort(~keep, axis=1, kind="stable")[:, :width]
            pad = np.arange(width)[None, :] >= n_keep[:, None]
            sub_d = np.where(pad, np.inf, np.take_along_axis(dist, pos, axis=1))
            sub_i = np.where(
                pad, np.iinfo(np.int64).max, np.take_along_axis(cand_idx, pos, axis=1)
            )
            order = np.lexsort((sub_i, sub_d), axis=-1)[:, :k]
            pos = np.take_along_axis(pos, order, axis=1)
        return (
            np.take_along_axis(cand_idx, pos, axis=1).astype(np.int64, copy=False),
            np.take_along_axis(dist, pos, axis=1),
        )


#: Below this float32 norm a row's squares may have lost digits to
#: underflow (a square vanishes below about 1e-19).
_TINY_NORM = 1e-15


def _normalize(x):
    """The rows of ``x`` (float32) divided by their norms; zero rows stay zero.

    A row whose squared norm overflows float32 (entries beyond about 1e19) or
    underflows it is normalised in float64 after dividing by its largest
    magnitude, so that cosines are scale-free at any finite magnitude; the
    other rows keep the float32 arithmetic (the same bits as before)."""
    with np.errstate(over="ignore", under="ignore"):
        norms = np.sqrt(np.einsum("...d,...d->...", x, x))
    bad = ~np.isfinite(norms) | (norms < _TINY_NORM)
    norms[norms == 0] = 1.0
    out = x / norms[..., None]
    if bad.any():
        rows = x[bad].astype(np.float64)
        peak = np.abs(rows).max(axis=-1, keepdims=True)
        peak[peak == 0] = 1.0
        rows /= peak
        n = np.sqrt(np.einsum("...d,...d->...", rows, rows))[..., None]
        n[n == 0] = 1.0
        out[bad] = (rows / n).astype(np.float32)
    return out


register_backend("numpy", NumpyBackend)
