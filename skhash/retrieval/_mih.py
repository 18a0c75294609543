"""Multi-index hashing: an exact Hamming shortlist that is sublinear in N.

Norouzi, Punjani and Fleet's multi-index hashing (MIH) [1]_ splits each
``n_bits`` code into ``m`` disjoint substrings of about ``n_bits / m`` bits
and indexes each substring position in a direct-address hash table (one
bucket per substring value, items in index order). By the pigeonhole
principle, two codes at Hamming distance ``d`` have at least one substring
at distance ``<= d // m``. A query therefore visits, for ``r = 0, 1, ...``,
the buckets of every table whose key differs from the query's substring in
exactly ``r`` bits, and computes the full distance of each item it meets
(once). After radius ``r`` in tables ``0 .. a``, every item of full
distance ``<= m r + a`` has been met: an unmet item differs by ``>= r + 1``
in the first ``a + 1`` substrings and by ``>= r`` in the others. The search
stops as soon as ``n`` met items lie within that bound; the ``n`` best by
(distance, database index) among the met items are then the ``n`` best of
the whole database, ties included, i.e. exactly what the exhaustive scan
(:meth:`NumpyBackend.shortlist <skhash.retrieval._kernels.NumpyBackend.shortlist>`)
returns.

Learned codes concentrate (many items share a code, so some buckets hold a
large part of the database) and a query far from every item needs a large
radius (``C(s, r)`` buckets per table). Under ``stage1="auto"`` both are
bounded: a query stops after reading ``max_items`` item ids or probing
``max_probes`` buckets (about the time of the exhaustive scan, see
:meth:`MultiIndexHashing.budget`) and is answered by the exhaustive scan
instead, with the same result; ``stage1="mih"`` searches without a
budget. Either way the results are exact.

References
----------
.. [1] M. Norouzi, A. Punjani and D. J. Fleet, "Fast Exact Search in Hamming
   Space with Multi-Index Hashing", IEEE TPAMI 36(6), 2014.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["MultiIndexHashing", "default_n_substrings"]

# Longest substring (bits) of a direct-address table: 2**24 buckets.
MAX_SUBSTRING_BITS = 24
# Smallest database "auto" searches with MIH (the exhaustive scan of fewer
# items takes a few microseconds per query).
AUTO_MIN_ITEMS = 2**15
# Cost of reading one item through a bucket, in exhaustive-scan items: a
# random read of its code against one streamed, vectorised XOR-popcount
# (measured on 64-bit codes, 1 thread, 2-core AMD EPYC: 60-330 ns against
# 0.7-1.4 ns per scanned item, worse at 10**7 items than at 10**6).
ITEM_COST = 128
# Cost of probing one (possibly empty) bucket, in exhaustive-scan items
# (random reads of the bucket bounds and its first item id).
PROBE_COST = 128


# --------------------------------------------------------------------------- #
# The index
# --------------------------------------------------------------------------- #


def default_n_substrings(n_items, n_bits):
    """The number of substrings ``m`` MIH uses by default.

    Substrings of at most ``floor(log2 N)`` bits (the MIH paper's choice of
    about ``n_bits / log2(N)`` tables: buckets then hold about one item each
    for uniformly spread codes, and the ``2**s`` bucket offsets of a table
    take no more memory than its ``N`` item ids), and at most
    ``MAX_SUBSTRING_BITS`` bits.

    Parameters
    ----------
    n_items : int
        Database size ``N``.
    n_bits : int
        Code length.

    Returns
    -------
    m : int
        The number of substrings, in ``[1, n_bits]``.

    Examples
    --------
    >>> from skhash.retrieval._mih import default_n_substrings
    >>> default_n_substrings(10**6, 64), default_n_substrings(10**7, 64)
    (4, 3)
    >>> default_n_substrings(10**6, 128), default_n_substrings(100, 8)
    (7, 2)
    """
    width = min(MAX_SUBSTRING_BITS, max(1, int(math.log2(max(n_items, 2)))))
    m = -(-n_bits // width)
    return int(min(m, n_bits))


def _kernels():
    try:
        from skhash.retrieval import _mih_kernels
    except ImportError as exc:
        raise ImportError(
            "stage1='mih' needs numba (pip install numba); use "
            "stage1='exhaustive' or 'auto' without it."
        ) from exc
    return _mih_kernels


def _has_numba():
    try:
        _kernels()
    except ImportError:
        return False
    return True


def _split(n_bits, m):
    """``(starts, lengths)`` of ``m`` near-equal substrings of ``n_bits``."""
    lengths = np.full(m, n_bits // m, dtype=np.int64)
    lengths[: n_bits % m] += 1
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    return starts, lengths


def _substring_masks(starts, lengths, n_bytes):
    """``(m, n_words + 1)`` uint64 masks of each substring's bits, in the
    kernel's word layout (bytes little-endian, last word zero-padded)."""
    n_words = n_bytes // 8
    masks = np.zeros((len(starts), 8 * (n_words + 1)), dtype=np.uint8)
    for j, (a, s) in enumerate(zip(starts, lengths)):
        bitvec = np.zeros(8 * n_bytes, dtype=bool)
        bitvec[a : a + s] = True
        masks[j, :n_bytes] = np.packbits(bitvec)
    return masks.view("<u8").astype(np.uint64)


class MultiIndexHashing:
    """Substring hash tables over packed binary codes, for exact k-NN search.

    The stage-1 index of :class:`~skhash.retrieval.TwoStageRetriever` with
    ``stage1="mih"`` (see the module docstring for the algorithm). Its
    :meth:`shortlist` returns exactly what the exhaustive
    :meth:`NumpyBackend.shortlist
    <skhash.retrieval._kernels.NumpyBackend.shortlist>` returns: indices,
    distances and tie order.

    Parameters
    ----------
    bits : ndarray of shape (n_items, n_bytes), dtype uint8
        Packed database codes (:func:`skhash.pack_bits` order, padding bits
        zero). Not copied: the tables refer to rows of this array.
    n_bits : int
        Code length.
    n_substrings : int, default=None
        Number of tables ``m``; None uses :func:`default_n_substrings`.
        Each substring holds at most ``MAX_SUBSTRING_BITS`` (24) bits.

    Attributes
    ----------
    n_items : int
        Number of indexed items.
    n_substrings : int
        Number of tables.
    lengths : ndarray of shape (m,)
        Bits of each substring.
    nbytes : int
        Memory of the tables (bucket offsets and item ids).

    Examples
    --------
    >>> import numpy as np
    >>> from skhash import pack_bits
    >>> from skhash.retrieval import get_backend
    >>> from skhash.retrieval._mih import MultiIndexHashing
    >>> rng = np.random.RandomState(0)
    >>> db, q = pack_bits(rng.randn(2000, 32)), pack_bits(rng.randn(5, 32))
    >>> mih = MultiIndexHashing(db, 32)
    >>> mih.n_substrings, mih.lengths.tolist()
    (4, [8, 8, 8, 8])
    >>> idx, dist = mih.shortlist(q, 20)
    >>> ref_idx, ref_dist = get_backend("numpy").shortlist(q, db, 20)
    >>> bool((idx == ref_idx).all() and (dist == ref_dist).all())
    True
    """

    def __init__(self, bits, n_bits, n_substrings=None):
        bits = np.asarray(bits)
        if bits.dtype != np.uint8 or bits.ndim != 2:
            raise ValueError(
                "bits must be packed uint8 codes of shape (n, n_bytes); got "
                f"dtype {bits.dtype} and shape {bits.shape}."
            )
        n_bits = int(n_bits)
        if not 0 < n_bits <= 8 * bits.shape[1]:
            raise ValueError(
                f"n_bits={n_bits} does not fit the {bits.shape[1]} bytes per code."
            )
        m = default_n_substrings(len(bits), n_bits) if n_substrings is None else None
        m = int(n_substrings) if m is None else m
        check_n_substrings(m, n_bits)
        self.n_bits = n_bits
        self.requested = n_substrings
        self.n_substrings = m
        self.load = None  # bucket_load().sum(), computed on demand
        self.n_queries = 0
        self.n_fallbacks = 0
        self.last_fallbacks = 0
        self.starts, self.lengths = _split(n_bits, m)
        self._sub_masks = _substring_masks(self.starts, self.lengths, bits.shape[1])
        self.bits = bits
        self.n_items = 0
        sizes = [2 ** int(x) + 1 for x in self.lengths]
        self._bases = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
        self._dtype = np.int32
        self._offsets = np.zeros(sum(sizes), dtype=self._dtype)
        self._items = np.empty(0, dtype=self._dtype)
        self._extend(bits)

    def __repr__(self):
        return (
            f"MultiIndexHashing(n_items={self.n_items}, n_bits={self.n_bits}, "
            f"n_substrings={self.n_substrings})"
        )

    @property
    def nbytes(self):
        return self._offsets.nbytes + self._items.nbytes

    def _table_offsets(self, j):
        base = self._bases[j]
        return self._offsets[base : base + 2 ** int(self.lengths[j]) + 1]

    def _keys(self, bits, j):
        keys = np.empty(len(bits), dtype=np.int64)
        if len(bits):
            _kernels()._substring_keys(
                np.ascontiguousarray(bits), self.starts[j], self.lengths[j], keys
            )
        return keys

    def _extend(self, new_bits):
        """Append the rows ``new_bits`` (ids ``n_items, n_items + 1, ...``).

        Table ``j`` holds its item ids at ``_items[j N : (j + 1) N]``, bucket
        after bucket, in index order within a bucket; the bucket ``b`` of
        table ``j`` is ``_offsets[_bases[j] + b : _bases[j] + b + 2]``.
        """
        n_old, n_new = self.n_items, len(new_bits)
        n = n_old + n_new
        dtype = np.int32 if n < 2**31 else np.int64
        offsets_all = self._offsets.astype(dtype, copy=False)
        items_all = np.empty(self.n_substrings * n, dtype=dtype)
        for j, s in enumerate(self.lengths):
            keys = self._keys(new_bits, j)
            new_counts = np.bincount(keys, minlength=2 ** int(s))
            old_off = self._table_offsets(j).astype(np.int64)
            shift = np.concatenate(([0], np.cumsum(new_counts)))  # new before b
            items = items_all[j * n : (j + 1) * n]
            if n_old:
                old_counts = np.diff(old_off)
                # an old item moves by the number of new items in lower buckets
                pos = np.arange(n_old, dtype=np.int64)
                pos += np.repeat(shift[:-1], old_counts)
                items[pos] = self._items[j * n_old : (j + 1) * n_old]
            order = np.argsort(keys, kind="stable")
            sorted_keys = keys[order]
            # new position: after the old items of the bucket, by rank
            pos = np.arange(n_new, dtype=np.int64) - shift[sorted_keys]
            pos += old_off[sorted_keys + 1] + shift[sorted_keys]
            items[pos] = order + n_old
            base = self._bases[j]
            offsets_all[base : base + len(shift)] = old_off + shift
        self._offsets, self._items, self._dtype = offsets_all, items_all, dtype
        self.n_items = n

    def extend(self, bits):
        """Index the rows of ``bits`` beyond the ``n_items`` already indexed.

        ``bits`` is the whole database after an append (its first
        ``n_items`` rows are the indexed ones, unchanged); only the new rows
        are hashed, and the tables grow in ``O(N + 2**s)`` without re-sorting.

        Parameters
        ----------
        bits : ndarray of shape (n_total, n_bytes), dtype uint8
            The database codes, old rows first.

        Returns
        -------
        self : MultiIndexHashing
            The index, over all ``n_total`` rows.

        Examples
        --------
        >>> import numpy as np
        >>> from skhash import pack_bits
        >>> from skhash.retrieval._mih import MultiIndexHashing
        >>> bits = pack_bits(np.random.RandomState(0).randn(300, 16))
        >>> mih = MultiIndexHashing(bits[:200], 16, n_substrings=2).extend(bits)
        >>> mih.n_items
        300
        """
        bits = np.asarray(bits)
        if len(bits) < self.n_items:
            raise ValueError(
                f"bits has {len(bits)} rows but {self.n_items} are indexed."
            )
        if len(bits) > self.n_items:
            self._extend(bits[self.n_items :])
            self.load = None
        self.bits = bits
        return self

    def bucket_load(self):
        """Mean size of the bucket of a database item, per table.

        ``Σ_b c_b² / N`` for the bucket sizes ``c_b``: the number of items a
        query drawn like the database meets at radius 0 in that table. Codes
        spread over the buckets give about 1; concentrated codes (many items
        with the same substring) give a large fraction of ``N``.

        Returns
        -------
        load : ndarray of shape (n_substrings,)
            The size-biased mean bucket size of each table.

        Examples
        --------
        >>> import numpy as np
        >>> from skhash.retrieval._mih import MultiIndexHashing
        >>> same = np.zeros((100, 2), dtype=np.uint8)  # 100 identical codes
        >>> MultiIndexHashing(same, 16, n_substrings=2).bucket_load()
        array([100., 100.])
        """
        n = max(self.n_items, 1)
        return np.array(
            [
                float(np.square(np.diff(self._table_offsets(j)).astype(float)).sum())
                / n
                for j in range(self.n_substrings)
            ]
        )

    def budget(self, scale=1.0):
        """``(max_items, max_probes)`` above which a query falls back to the
        exhaustive scan: about ``scale`` times the time of scanning the
        ``N`` codes (``N / ITEM_COST`` item ids read, ``N / PROBE_COST``
        buckets probed).

        ``stage1="auto"`` uses ``scale=1``; ``stage1="mih"`` uses
        ``scale=8`` and at least ``2**16`` of each, so that MIH answers
        nearly every query yet a pathological one (a large radius over long
        substrings) costs a bounded multiple of the scan.

        Parameters
        ----------
        scale : float, default=1.0
            The budget in scan times.

        Returns
        -------
        max_items, max_probes : int
            The two budgets.

        Examples
        --------
        >>> import numpy as np
        >>> from skhash.retrieval._mih import MultiIndexHashing
        >>> bits = np.zeros((2**20, 8), dtype=np.uint8)
        >>> MultiIndexHashing(bits, 64, n_substrings=4).budget()
        (8192, 8192)
        """
        n = self.n_items
        return (
            max(1, int(scale * n / ITEM_COST)),
            max(1, int(scale * n / PROBE_COST)),
        )

    def shortlist(self, q_bits, n_candidates, fallback=None, budget=None):
        """The ``L`` nearest items of each query, by (distance, index).

        Parameters
        ----------
        q_bits : ndarray of shape (n_queries, n_bytes), dtype uint8
            Packed query codes (padding bits zero).
        n_candidates : int
            ``L``; clipped to ``n_items``.
        fallback : object, default=None
            A search backend (:func:`~skhash.retrieval.get_backend`) whose
            exhaustive ``shortlist`` answers the queries that exceed the
            budget of :meth:`budget`; None uses the numpy reference.
        budget : tuple of (int, int) or "unbounded", default=None
            ``(max_items, max_probes)`` instead of :meth:`budget`'s (item ids
            read, duplicates across tables included, and buckets probed);
            ``"unbounded"``: MIH answers every query.

        Returns
        -------
        indices : ndarray of shape (n_queries, L), dtype int64
            Database rows, nearest first.
        distances : ndarray of shape (n_queries, L), dtype int32
            Their Hamming distances, ascending.
        """
        q = np.ascontiguousarray(q_bits)
        if q.dtype != np.uint8 or q.ndim != 2 or q.shape[1] != self.bits.shape[1]:
            raise ValueError(
                f"q_bits must be packed uint8 codes of shape (n, "
                f"{self.bits.shape[1]}); got dtype {q.dtype} and shape {q.shape}."
            )
        n_q, n = q.shape[0], self.n_items
        L = int(min(max(n_candidates, 0), n))
        indices = np.empty((n_q, L), dtype=np.int64)
        dist = np.empty((n_q, L), dtype=np.int64)
        if L == 0 or n_q == 0:
            return indices, dist.astype(np.int32)
        ok = np.zeros(n_q, dtype=np.bool_)
        work = np.zeros((n_q, 2), dtype=np.int64)
        if budget is None:
            budget = self.budget()
        elif isinstance(budget, str) and budget == "unbounded":
            budget = (self.n_substrings * n + 1, sum(2**s for s in self.lengths) + 1)
        max_items, max_probes = (max(1, int(b)) for b in budget)
        _kernels()._mih_kernel(
            q,
            np.ascontiguousarray(self.bits),
            self.starts,
            self.lengths,
            self._bases,
            self._offsets,
            self._items,
            self._sub_masks,
            L,
            max_items,
            max_probes,
            indices,
            dist,
            ok,
            work,
        )
        self.last_work = work
        if not ok.all():
            if fallback is None:
                from skhash.retrieval._kernels import get_backend

                fallback = get_backend("numpy")
            redo = np.flatnonzero(~ok)
            ri, rd = fallback.shortlist(q[redo], self.bits, L)
            indices[redo], dist[redo] = ri, rd
        self.last_fallbacks = int(n_q - ok.sum())
        self.n_queries += n_q  # statistics for stage1="auto" (not exact
        self.n_fallbacks += self.last_fallbacks  # under threads; fine)
        return indices, dist.astype(np.int32)


def check_n_substrings(m, n_bits):
    """Raise a ValueError naming ``n_substrings`` unless ``m`` fits ``n_bits``.

    Examples
    --------
    >>> from skhash.retrieval._mih import check_n_substrings
    >>> check_n_substrings(4, 64)
    >>> check_n_substrings(1, 64)
    Traceback (most recent call last):
    ...
    ValueError: n_substrings=1 splits the 64-bit codes into substrings of 64 bits, ...
    """
    longest = -(-n_bits // m) if m >= 1 else n_bits
    if not 1 <= m <= n_bits or longest > MAX_SUBSTRING_BITS:
        lo = -(-n_bits // MAX_SUBSTRING_BITS)
        raise ValueError(
            f"n_substrings={m} splits the {n_bits}-bit codes into substrings of "
            f"{longest} bits, but a substring table holds at most "
            f"{MAX_SUBSTRING_BITS} bits and at least 1; pass n_substrings "
            f"between {lo} and {n_bits}, or None for the default "
            f"({default_n_substrings(2**20, n_bits)} at N = 2**20)."
        )


# --------------------------------------------------------------------------- #
# TwoStageRetriever's stage 1
# --------------------------------------------------------------------------- #

STAGE1_OPTIONS = ("auto", "exhaustive", "mih")


def check_params(est, n_bits):
    """Check ``est.stage1`` / ``est.n_substrings`` against ``n_bits``.

    Raises
    ------
    ValueError
        Naming the parameter, the value and the fix.

    Examples
    --------
    >>> from skhash.retrieval import TwoStageRetriever
    >>> from skhash.retrieval._mih import check_params
    >>> check_params(TwoStageRetriever(stage1="mih", n_substrings=4), 64)
    >>> check_params(TwoStageRetriever(n_substrings=True), 64)
    Traceback (most recent call last):
    ...
    ValueError: n_substrings=True must be None or a positive int (bool is not ...
    """
    stage1 = getattr(est, "stage1", "exhaustive")
    if not isinstance(stage1, str) or stage1 not in STAGE1_OPTIONS:
        raise ValueError(
            f"stage1={stage1!r} is not a stage-1 search; pass one of "
            f"{list(STAGE1_OPTIONS)} (e.g. stage1='auto')."
        )
    m = getattr(est, "n_substrings", None)
    if m is None:
        return
    if isinstance(m, (bool, np.bool_)) or not isinstance(m, (int, np.integer)):
        raise ValueError(
            f"n_substrings={m!r} must be None or a positive int (bool is not "
            "accepted); pass n_substrings=None for the default."
        )
    if n_bits is not None:
        check_n_substrings(int(m), int(n_bits))


def _uses_mih(est, n_items):
    return est.stage1 == "mih" or (
        est.stage1 == "auto" and n_items >= AUTO_MIN_ITEMS and _has_numba()
    )


def prepare(est):
    """Build the MIH tables of every modality with bits for
    ``stage1="mih"`` (called at the end of ``fit``).

    ``"auto"`` builds them at the first search that tries them, and drops
    them when the timed trial finds the scan faster; a loaded or grown index
    builds (or extends) its tables at its first search.
    """
    est._mih_cache = {}
    est._mih_auto = {}
    if getattr(est, "stage1", None) != "mih":
        return
    for m, entry in est._index.items():
        if "bits" in entry and _has_numba():
            _tables(est, m)


def _tables(est, dst):
    """The tables of modality ``dst``, built, extended or rebuilt so that
    they index exactly the current bits (compared by content, not by how the
    index changed: a refit, an ``add`` or a ``load`` are all seen)."""
    bits = est._index[dst]["bits"]
    cache = est.__dict__.setdefault("_mih_cache", {})
    mih = cache.get(dst)
    if mih is not None and mih.bits is not bits:
        same_prefix = (
            mih.requested == est.n_substrings
            and mih.n_bits == est.n_bits_
            and len(bits) >= mih.n_items
            and bits.shape[1:] == mih.bits.shape[1:]
            and np.array_equal(bits[: mih.n_items], mih.bits[: mih.n_items])
        )
        mih = mih.extend(bits) if same_prefix else None
    elif mih is not None and mih.requested != est.n_substrings:
        mih = None
    if mih is None:
        mih = MultiIndexHashing(bits, est.n_bits_, est.n_substrings)
        cache[dst] = mih
    return mih


def stage1_index(est, dst, n_short):
    """The MIH tables that answer stage 1 of ``dst``, or None for the
    exhaustive scan.

    ``"mih"`` always uses them. ``"auto"`` uses them only where they are
    measured to be faster: when ``N >= AUTO_MIN_ITEMS``, the shortlist is
    short against ``N`` (``4 n_short <= N / ITEM_COST``), the codes do not
    concentrate in a few buckets (the mean bucket load of
    :meth:`MultiIndexHashing.bucket_load`, summed over the tables, is below
    an eighth of that budget), and a timed trial on 64 database codes as
    queries (:func:`_calibrate`, once per index and power of two of
    ``n_short``) finds MIH faster than the scan by a third; and, once 256
    queries have been searched, at most a quarter of them fell back to the
    scan. Tables that no trial found faster are dropped (no memory is
    spent on them); the decisions hold until the indexed bits change. The
    choice never changes results, only their speed.
    """
    stage1 = est.stage1
    if stage1 == "exhaustive":
        return None
    check_params(est, est.n_bits_)
    bits = est._index[dst]["bits"]
    n = len(bits)
    if stage1 == "mih":
        return _tables(est, dst)
    if n < AUTO_MIN_ITEMS or 4 * n_short * ITEM_COST > n or not _has_numba():
        return None
    decisions = est.__dict__.setdefault("_mih_auto", {})
    if dst not in decisions or decisions[dst][0] is not bits:
        decisions[dst] = (bits, {})
    faster = decisions[dst][1]
    key = int(n_short).bit_length()
    if faster.get("load") is False or faster.get(key) is False:
        return None
    mih = _tables(est, dst)
    if "load" not in faster:
        faster["load"] = float(mih.bucket_load().sum()) * 8 * ITEM_COST <= n
    if faster["load"] and key not in faster:
        decided = _calibrate(est, mih, n_short)
        if decided is None:  # kernels still compiling: the scan answers
            return None
        faster[key] = decided
    if not (faster["load"] and faster[key]):
        if not any(v is True for k, v in faster.items() if k != "load"):
            est._mih_cache.pop(dst, None)  # no trial found them faster
        return None
    if mih.n_queries >= 256 and 4 * mih.n_fallbacks > mih.n_queries:
        return None
    return mih


_BACKGROUND = set()  # ids of tables whose kernel compiles in a thread


def _calibrate(est, mih, n_short, n_trial=64):
    """Whether MIH answers ``n_trial`` database codes (as queries, evenly
    spaced) in at most 2/3 of the exhaustive scan's time (both warmed up).

    Under a lazy backend (``backend="auto"``, whose first small calls are
    answered by numpy while numba compiles in the background) nothing is
    timed until both the scan kernel and the MIH kernel are compiled: the
    MIH kernel is then compiled on a background thread, and None (no
    decision yet: the scan answers) is returned meanwhile, so the first
    queries never wait for a compile.
    """
    import threading
    import time

    from skhash.retrieval._kernels import get_backend

    backend = get_backend(est.backend)
    if getattr(backend, "lazy", False):
        from skhash.retrieval import _numba

        kernels = _kernels()
        if not kernels._mih_kernel.overloads:
            if id(mih) not in _BACKGROUND:
                _BACKGROUND.add(id(mih))
                threading.Thread(
                    target=mih.shortlist,
                    args=(np.ascontiguousarray(mih.bits[:1]), min(n_short, 1)),
                    name="skhash-mih-compile",
                    daemon=True,
                ).start()
            return None
        if not _numba._shortlist_kernel.overloads:
            return None
        backend = type(backend)(chunk_bytes=backend.chunk_bytes)  # not lazy
    bits = mih.bits
    rows = np.linspace(0, len(bits) - 1, n_trial).astype(np.int64)
    q = np.ascontiguousarray(bits[rows])
    n_q, n_f = mih.n_queries, mih.n_fallbacks
    times = []
    for fn in (
        lambda x: backend.shortlist(x, bits, n_short),
        lambda x: mih.shortlist(x, n_short, fallback=backend),
    ):
        fn(q[:2])  # compile / load the kernels
        t0 = time.perf_counter()
        fn(q)
        times.append(time.perf_counter() - t0)
    mih.n_queries, mih.n_fallbacks = n_q, n_f  # trials are not statistics
    return times[1] <= 2 / 3 * times[0]


def stage1_shortlist(est, backend, q_bits, dst, n_short):
    """Stage 1 of :class:`~skhash.retrieval.TwoStageRetriever`: the
    ``n_short`` nearest items of ``dst`` by (Hamming distance, index), from
    the MIH tables or the backend's exhaustive scan (identical results)."""
    db_bits = est._index[dst]["bits"]
    mih = stage1_index(est, dst, n_short)
    if mih is None:
        return backend.shortlist(q_bits, db_bits, n_short)
    budget = None
    if est.stage1 == "mih":
        budget = tuple(max(b, 2**16) for b in mih.budget(8.0))
    return mih.shortlist(q_bits, n_short, fallback=backend, budget=budget)
