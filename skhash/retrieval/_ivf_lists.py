"""The inverted lists of ``stage1="ivf"``: the coarse k-means, the lists
(CSR, list-ordered copies of the codes or bits) and their queries (list
keys, probe, Hamming shortlist, IVF-ADC scan). What they are and how a
search uses them: :mod:`skhash.retrieval._ivf`."""

from __future__ import annotations

import math

import numpy as np

from skhash.retrieval._ivf_assign import (
    _smallest,
    group_members,
    nearest,
    nearest_grouped,
)

__all__ = ["InvertedLists", "default_nlist"]  # re-exported by _ivf

#: ``nlist=None`` is ``NLIST_FACTOR * sqrt(N)`` (4 sqrt(N) gained 0.04
#: recall@50 at 10**6 items for 2.7 times the build time) ...
NLIST_FACTOR = 2
#: ... with at least this many items per list (faiss warns below 39
#: training points per centroid).
MIN_ITEMS_PER_LIST = 39
#: k-means trains on at most this many items per list.
TRAIN_POINTS_PER_LIST = 32
#: Lloyd iterations of the coarse k-means.
N_ITER = 10
#: With at least this many lists (coded ones), an item is assigned to its
#: nearest centroid among the lists of its ``ASSIGN_GROUPS`` nearest groups
#: (:meth:`InvertedLists.groups`) rather than among all of them ...
GROUPED_ASSIGN_MIN_NLIST = 1024
#: ... (about ``ASSIGN_GROUPS / sqrt(nlist)`` of the lists, plus the groups:
#: 8 of 80 at 6,325 lists).
ASSIGN_GROUPS = 8
#: Item-list Hamming distances computed per block of the assignment.
_ASSIGN_ENTRIES = 1 << 22
#: Items decoded per block of the assignment (then scored by
#: :func:`~skhash.retrieval._ivf_assign.nearest`).
_DECODE_ROWS = 1 << 16


def default_nlist(n_items):
    """The number of lists of ``nlist=None``: ``round(2 sqrt(N))``, at most
    ``N // 39`` (at least 39 items per list) and at least 1.

    Parameters
    ----------
    n_items : int
        The number of items the lists are trained on.

    Returns
    -------
    nlist : int

    Examples
    --------
    >>> from skhash.retrieval._ivf_lists import default_nlist
    >>> default_nlist(10**6), default_nlist(10**7), default_nlist(1000)
    (2000, 6325, 25)
    """
    n = max(int(n_items), 1)
    return int(max(1, min(round(NLIST_FACTOR * math.sqrt(n)), n // MIN_ITEMS_PER_LIST)))


def _padded_words(bits):
    """Packed bits as little-endian uint64 words, zero-padded per row."""
    bits = np.asarray(bits)
    n, n_bytes = bits.shape
    n_words = max(1, -(-n_bytes // 8))
    out = np.zeros((n, 8 * n_words), dtype=np.uint8)
    out[:, :n_bytes] = bits
    return out.view("<u8").astype(np.uint64, copy=False)


def _decode(codes, codebooks):
    """``Σ_m codebooks[m, codes[:, m]]`` (float32), unchecked."""
    out = np.zeros((codes.shape[0], codebooks.shape[2]), dtype=np.float32)
    for m in range(codebooks.shape[0]):
        out += codebooks[m][codes[:, m].astype(np.intp)]
    return out


def _pm1(bits, n_bits):
    """The ``±1`` vectors of packed bits (float32)."""
    unpacked = np.unpackbits(np.asarray(bits), axis=1)[:, :n_bits]
    return unpacked.astype(np.float32) * 2.0 - 1.0


def _hamming(a, b):
    """All Hamming distances between the packed rows of ``a`` and ``b``."""
    aw, bw = _padded_words(a), _padded_words(b)
    out = np.zeros((aw.shape[0], bw.shape[0]), dtype=np.int32)
    for j in range(aw.shape[1]):
        out += np.bitwise_count(aw[:, j, None] ^ bw[None, :, j])
    return out


def _limit_threads():
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def _lloyd(X, n_clusters, rng, n_iter=N_ITER, n_jobs=1):
    """k-means centroids (float32) of the rows of ``X``, as faiss trains its
    coarse quantizers: initial centroids drawn among the rows (no k-means++,
    whose seeding cost more than the iterations here), then ``n_iter``
    Lloyd iterations (the nearest-centroid step is
    :func:`~skhash.retrieval._ivf_assign.nearest`, on ``n_jobs`` threads;
    from ``GROUPED_ASSIGN_MIN_NLIST`` centroids on, the nearest among those
    of each row's ``ASSIGN_GROUPS`` nearest groups of the iteration's
    centroids, as the build assigns the items); a centroid left with no
    point keeps its place. Deterministic given ``rng``, whatever
    ``n_jobs``."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    n, d = X.shape
    C = X[np.sort(rng.choice(n, n_clusters, replace=False))].copy()
    for _ in range(n_iter):
        if n_clusters >= GROUPED_ASSIGN_MIN_NLIST:
            sq = np.einsum("kd,kd->k", C, C).astype(np.float32)
            groups = _centroid_groups(C, rng)
            a = nearest_grouped(X, C, sq, groups, ASSIGN_GROUPS, n_jobs=n_jobs)
        else:
            a = nearest(X, C, n_jobs=n_jobs)
        counts = np.bincount(a, minlength=n_clusters)
        full = counts > 0
        sums = np.stack(
            [np.bincount(a, weights=X[:, j], minlength=n_clusters) for j in range(d)],
            axis=1,
        )
        C[full] = (sums[full] / counts[full, None]).astype(np.float32)
    return C


def _centroid_groups(C, rng):
    """``(G, gsq, ptr, lists)`` of :func:`~skhash.retrieval._ivf_assign.
    nearest_grouped` for the centroids ``C``: ``round(sqrt(len(C)))``
    k-means centroids of them (:func:`_lloyd`, seeded from ``rng``), and
    each centroid in the group of its nearest (ties to the lower group)."""
    n_groups = max(1, int(round(math.sqrt(len(C)))))
    G = _lloyd(C, n_groups, rng)
    gsq = np.einsum("gd,gd->g", G, G).astype(np.float32)
    return (G, gsq, *group_members(nearest(C, G, gsq), n_groups))


class InvertedLists:
    """The coarse quantizer and the inverted lists of one database modality.

    Parameters
    ----------
    bits : ndarray of shape (n_items, n_bytes), dtype uint8
        Packed codes of the items (padding bits zero).
    n_bits : int
        Code length.
    codes : ndarray of shape (n_items, M) or None
        Quantization codes; with ``codebooks``, the lists partition the
        items' reconstructions, else their bits.
    codebooks : ndarray of shape (M, K, d) or None
        The shared codebooks.
    metric : {"ip", "l2", "hamming"}
        How queries rank the lists: inner product or squared L2 of the query
        embedding with the coded centroids ``ĉ`` (from the query's
        inner-product look-up tables), Hamming distance of the query bits
        with the binarised centroids (``codes`` are then unused).
    nlist : int or None
        Number of lists; None uses :func:`default_nlist` of ``n_train``.
    seed : int
        Seed of the training sample and the k-means.
    n_train : int
        The centroids are trained on the first ``n_train`` items.
    kind : {"additive", "product"}, default="additive"
        The codebooks' kind, to encode the centroids with them.
    n_jobs : int, default=1
        Threads of the k-means and of the assignments (the lists do not
        depend on them).

    Attributes
    ----------
    nlist : int
        Number of lists.
    centroids : ndarray of shape (nlist, d) float32, or (nlist, n_bytes) uint8
        The coded centroids ``ĉ`` (reconstructions of ``centroid_codes``),
        or the packed binarised centroids with ``metric="hamming"``.
    centroid_codes : ndarray of shape (nlist, M) or None
        The centroids' own codes (None with ``metric="hamming"``).
    n_items : int
        Number of indexed items.
    offsets : ndarray of shape (nlist + 1,), dtype int64
        List ``l`` holds ``ids[offsets[l]:offsets[l + 1]]``.
    ids : ndarray of shape (n_items,)
        Item ids, by list, ascending within a list (int32 below ``2**31``).
    words : ndarray of shape (n_items, n_words), dtype uint64
        The items' bits in the order of ``ids`` (for lists of codes, built
        at the first search that scans bits: ``alpha=0``).
    list_codes : ndarray of shape (n_items, M) or None
        The items' quantization codes in the order of ``ids`` (lists of
        codes only).
    nbytes : int
        Memory of the centroids and lists.

    Examples
    --------
    >>> import numpy as np
    >>> from skhash import pack_bits
    >>> from skhash.retrieval._ivf_lists import InvertedLists
    >>> bits = pack_bits(np.random.RandomState(0).randn(500, 16))
    >>> ivf = InvertedLists(bits, 16, metric="hamming", nlist=8, seed=0, n_train=500)
    >>> ivf.nlist, int(ivf.offsets[-1])
    (8, 500)
    """

    def __init__(
        self,
        bits,
        n_bits,
        codes=None,
        codebooks=None,
        *,
        metric,
        nlist,
        seed,
        n_train,
        kind="additive",
        n_jobs=1,
    ):
        self.n_bits = int(n_bits)
        self.metric = metric
        self.seed = int(seed)
        self.n_train = int(n_train)
        self.n_jobs = max(1, int(n_jobs))
        self.requested = nlist
        self.codebooks = None if metric == "hamming" else codebooks
        self.kind = kind
        self._group_state = None
        nl = default_nlist(n_train) if nlist is None else int(nlist)
        check_nlist(nl, n_train)
        self.nlist = nl
        rng = np.random.RandomState(self.seed)
        n_sample = min(self.n_train, TRAIN_POINTS_PER_LIST * nl)
        if n_sample < self.n_train:
            rows = np.sort(rng.choice(self.n_train, n_sample, replace=False))
        else:
            rows = np.arange(self.n_train)
        sample = self._vectors(bits, codes, rows)
        centroids = _lloyd(sample, nl, rng, n_jobs=self.n_jobs)
        if metric == "hamming":
            bitvec = centroids > 0
            self.centroids = np.packbits(bitvec, axis=1)
            self.c_sqnorms = None
            self.centroid_codes = None
        else:
            from skhash.quantization import encode

            with _limit_threads():
                codes_c = encode(centroids, self.codebooks, kind=kind, n_jobs=1)
            dtype = np.uint8 if self.codebooks.shape[1] <= 256 else np.uint16
            self.centroid_codes = np.ascontiguousarray(codes_c, dtype=dtype)
            self.centroids = _decode(self.centroid_codes, self.codebooks)
            self.c_sqnorms = np.einsum(
                "ld,ld->l", self.centroids, self.centroids
            ).astype(np.float32)
        self.n_items = 0
        self.offsets = np.zeros(nl + 1, dtype=np.int64)
        self.ids = np.empty(0, dtype=np.int32)
        self._words = np.empty((0, max(1, -(-bits.shape[1] // 8))), dtype=np.uint64)
        self.list_codes = None
        self.bits = bits
        self.extend(bits, codes)

    def __setstate__(self, state):
        # lists pickled before the groups existed: no groups built yet, and
        # the codebooks' kind is set again by the retriever (_ivf.ensure)
        state.setdefault("_group_state", None)
        state.setdefault("kind", "additive")
        self.__dict__.update(state)

    def __repr__(self):
        return (
            f"InvertedLists(nlist={self.nlist}, n_items={self.n_items}, "
            f"metric={self.metric!r})"
        )

    @property
    def nbytes(self):
        return (
            self.centroids.nbytes
            + (0 if self.centroid_codes is None else self.centroid_codes.nbytes)
            + self.offsets.nbytes
            + self.ids.nbytes
            + (0 if self._words is None else self._words.nbytes)
            + (0 if self.list_codes is None else self.list_codes.nbytes)
            + sum(a.nbytes for a in self._group_state or ())
        )

    @property
    def words(self):
        """The items' bits in list order, as 64-bit words (built at the first
        use where the lists scan codes: a Hamming scan of them serves only
        searches with no re-ranking)."""
        if self._words is None:
            self._words = _padded_words(np.asarray(self.bits)[self.ids])
        return self._words

    def _vectors(self, bits, codes, rows):
        if self.metric == "hamming":
            return _pm1(bits[rows], self.n_bits)
        return _decode(np.asarray(codes[rows]), self.codebooks)

    def _assign_groups(self):
        """``(G, gsq, ptr, lists)`` of :func:`~skhash.retrieval._ivf_assign.
        nearest_grouped` (the decoded group centroids), or None where items
        are scored against every list (Hamming lists, or fewer than
        ``GROUPED_ASSIGN_MIN_NLIST``)."""
        if self.metric == "hamming" or self.nlist < GROUPED_ASSIGN_MIN_NLIST:
            return None
        codes, gsq, ptr, lists = self.groups()
        return _decode(codes, self.codebooks), gsq, ptr, lists

    def assign(self, bits, codes, start, stop):
        """The list of each item ``start .. stop - 1``: its nearest centroid
        (ties to the lower list id), among the lists of its
        ``ASSIGN_GROUPS`` nearest groups from ``GROUPED_ASSIGN_MIN_NLIST``
        coded lists on (about 11 % of the scores at 6,325 lists), in blocks of
        ``_ASSIGN_ENTRIES`` distances. Items with the same codes (learned
        codes share them often) are scored once; an item's list depends on
        its codes alone."""
        rows = bits if self.metric == "hamming" else codes
        rows = np.ascontiguousarray(rows[start:stop])
        if rows.shape[0] == 0:
            return np.empty(0, dtype=np.int64)
        width = rows.dtype.itemsize * rows.shape[1]
        # rows of 1-8 bytes sort as unsigned integers, several times faster
        # than as raw bytes (the distinct rows are the same either way)
        as_int = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
        keys = rows.view(as_int.get(width, np.dtype((np.void, width))))
        _, first, inverse = np.unique(
            keys.ravel(), return_index=True, return_inverse=True
        )
        distinct = rows[np.sort(first)]  # in item order
        where = np.empty(len(first), dtype=np.int64)
        where[np.argsort(first)] = np.arange(len(first))
        out = np.empty(len(distinct), dtype=np.int64)
        if self.metric == "hamming":
            step = max(64, _ASSIGN_ENTRIES // self.nlist)
            for s in range(0, len(distinct), step):
                d = _hamming(distinct[s : s + step], self.centroids)
                out[s : s + step] = np.argmin(d, axis=1)
        else:
            groups = self._assign_groups()
            for s in range(0, len(distinct), _DECODE_ROWS):
                x = _decode(distinct[s : s + _DECODE_ROWS], self.codebooks)
                if groups is None:
                    out[s : s + len(x)] = nearest(
                        x, self.centroids, self.c_sqnorms, n_jobs=self.n_jobs
                    )
                else:
                    out[s : s + len(x)] = nearest_grouped(
                        x,
                        self.centroids,
                        self.c_sqnorms,
                        groups,
                        ASSIGN_GROUPS,
                        n_jobs=self.n_jobs,
                    )
        return out[where[inverse.ravel()]]

    def extend(self, bits, codes=None):
        """Assign the rows of ``bits`` (and ``codes``) past ``n_items`` to
        their lists; the first ``n_items`` rows are the indexed ones.

        Returns
        -------
        self : InvertedLists
        """
        n_old, n = self.n_items, len(bits)
        if n < n_old:
            raise ValueError(f"bits has {n} rows but {n_old} are indexed.")
        if n > n_old:
            lists = np.empty(n, dtype=np.int64)
            sizes = np.diff(self.offsets)
            lists[self.ids] = np.repeat(np.arange(self.nlist), sizes)
            lists[n_old:] = self.assign(bits, codes, n_old, n)
            # stable: ids ascending within a list (a radix sort of int16)
            small = np.int16 if self.nlist < 2**15 else np.int64
            order = np.argsort(lists.astype(small), kind="stable")
            counts = np.bincount(lists, minlength=self.nlist)
            self.offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
            self.ids = order.astype(np.int32 if n < 2**31 else np.int64)
            if self.metric == "hamming":
                self._words = _padded_words(np.asarray(bits)[order])
            else:  # the lists scan the codes (see search); bits only if asked
                self.list_codes = np.ascontiguousarray(np.asarray(codes)[order])
                self._words = None
            self.n_items = n
        self.bits = bits
        return self

    # ------------------------------------------------------------------ #
    # queries
    # ------------------------------------------------------------------ #
    def list_keys(self, q_bits, luts, backend=None, norm_shift=0):
        """(n_queries, nlist) scores of the lists, smaller is better.

        ``luts`` are the queries' inner-product look-up tables (float32,
        ``(n_queries, M, K)``; unused with ``metric="hamming"``); the scores
        sum their entries at the centroids' codes with ``backend``'s
        ``rerank_aqd`` (None: the numpy reference, the same bits), so a
        query's scores depend on it alone. ``norm_shift``: the tables are
        those of queries scaled by ``2**-norm_shift`` more than the
        codebooks, and the centroids' squared norms (``metric="l2"``) are
        scaled alike (exact)."""
        if self.metric == "hamming":
            return _hamming(q_bits, self.centroids)
        return self._coded_keys(
            luts, self.centroid_codes, self.c_sqnorms, backend, norm_shift
        )

    def _coded_keys(self, luts, codes, sqnorms, backend, norm_shift, cand=None):
        """Keys of coded centroids (see :meth:`list_keys`): of every row of
        ``codes``, or of the rows ``cand`` (n_queries, n_cand) of each query."""
        if backend is None:
            from skhash.retrieval._kernels import NumpyBackend

            backend = NumpyBackend()
        ip = backend.rerank_aqd(luts, cand, codes)
        if self.metric == "ip":
            return np.negative(ip, out=ip)
        ip *= np.float32(-2.0)
        sq = self._shifted(sqnorms, norm_shift)
        ip += sq if cand is None else sq[cand]
        return ip

    @staticmethod
    def _shifted(sqnorms, norm_shift):
        return np.ldexp(sqnorms, -int(norm_shift)) if norm_shift else sqnorms

    # ------------------------------------------------------------------ #
    # groups of lists (quantizer_nprobe)
    # ------------------------------------------------------------------ #
    def groups(self):
        """The groups of lists that a grouped probe ranks first: about
        ``sqrt(nlist)`` k-means centroids of the coded centroids ``ĉ``
        (seeded by ``seed``, so a rebuilt or loaded index has the same),
        encoded with the codebooks as the centroids are, and each list in
        the group of its nearest coded group centroid (squared L2, ties to
        the lower group). Built at the first call (a few hundredths of a
        second at 6,325 lists) and kept.

        Returns
        -------
        codes : ndarray of shape (n_groups, M)
            The group centroids' codes.
        sqnorms : ndarray of shape (n_groups,), float32
            Their reconstructions' squared norms.
        ptr, lists : ndarray of shape (n_groups + 1,) and (nlist,), int64
            CSR: group ``g`` holds lists ``lists[ptr[g]:ptr[g + 1]]``,
            ascending.
        """
        if self.metric == "hamming":
            raise ValueError("lists ranked by Hamming distance are not grouped.")
        if self._group_state is None:
            from skhash.retrieval._ivf_groups import build_groups

            self._group_state = build_groups(self)
        return self._group_state

    def probe_lists(
        self,
        q_bits,
        luts,
        nprobe,
        n_short,
        quantizer_nprobe=None,
        *,
        compiled=True,
        backend=None,
        norm_shift=0,
    ):
        """The lists each query scans, as CSR ``(ptr, lists)``, best first.

        ``quantizer_nprobe=None`` ranks every list (:meth:`list_keys`, then
        :meth:`probe`). An int ranks the :meth:`groups` first, by the keys
        of their coded centroids, and only the lists of the best
        ``quantizer_nprobe`` groups, or of more (doubling) until they hold
        ``n_short`` items and ``_ivf_groups.CANDIDATE_FACTOR`` times the lists a probe
        first considers; among those it takes what :meth:`probe` takes. A
        list's key is the same bits either way, so with every group taken
        the lists are those of ``None``. Lists of Hamming keys are never
        grouped."""
        if quantizer_nprobe is None or self.metric == "hamming":
            keys = self.list_keys(q_bits, luts, backend, norm_shift)
            if compiled:
                return self._probe_compiled(keys, nprobe, n_short)
            return self.probe(keys, nprobe, n_short)
        g_codes, g_sq, gptr, glists = self.groups()
        gkeys = self._coded_keys(luts, g_codes, g_sq, backend, norm_shift)
        p = min(int(nprobe), self.nlist)
        q_groups = int(quantizer_nprobe)
        if compiled:
            from skhash.retrieval._ivf_groups import CANDIDATE_FACTOR
            from skhash.retrieval._ivf_kernels import _ivf_probe_grouped

            c_sq = (
                np.zeros(1, np.float32)
                if self.metric == "ip"
                else self._shifted(self.c_sqnorms, norm_shift)
            )
            ptr = np.empty(len(gkeys) + 1, dtype=np.int64)
            lists = np.empty(len(gkeys) * self.nlist, dtype=np.int64)
            _ivf_probe_grouped(
                np.ascontiguousarray(luts, dtype=np.float32),
                gkeys,
                gptr,
                glists,
                self.centroid_codes,
                0 if self.metric == "ip" else 1,
                c_sq,
                p,
                int(n_short),
                q_groups,
                CANDIDATE_FACTOR,
                self.offsets,
                ptr,
                lists,
            )
            return ptr, lists
        from skhash.retrieval._ivf_groups import probe_grouped

        return probe_grouped(
            self, luts, gkeys, p, int(n_short), q_groups, backend, norm_shift
        )

    def probe(self, keys, nprobe, n_short):
        """The lists each query scans: its ``nprobe`` best (ties to the lower
        list id), and more, in that order, while they hold fewer than
        ``n_short`` items. Returns CSR ``(ptr, lists)``."""
        c, nl = keys.shape
        p = min(int(nprobe), nl)
        take = np.zeros((c, nl), dtype=bool)
        np.put_along_axis(take, _smallest(keys, p), True, axis=1)
        sizes = np.diff(self.offsets)
        held = (take * sizes).sum(axis=1)
        short = np.flatnonzero(held < n_short)
        m = p
        while short.size:  # widen, in the order of (key, list id)
            m = min(nl, 4 * m)
            sub = keys[short]
            top = _smallest(sub, m)  # (rows, m) list ids, ascending
            order = np.argsort(np.take_along_axis(sub, top, 1), axis=1, kind="stable")
            ranked = np.take_along_axis(top, order, 1)
            cum = np.cumsum(sizes[ranked], axis=1)
            enough = cum[:, -1] >= n_short
            j = np.maximum(p, (cum < n_short).sum(axis=1) + 1)
            for r in np.flatnonzero(enough):
                take[short[r], ranked[r, : j[r]]] = True
            short = short[~enough]
        rows, lists = np.nonzero(take)
        ptr = np.zeros(c + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=c), out=ptr[1:])
        return ptr, lists.astype(np.int64)

    def _probe_compiled(self, keys, nprobe, n_short):
        """:meth:`probe` by the compiled kernel (the same lists)."""
        from skhash.retrieval._ivf_kernels import _ivf_probe

        ptr = np.empty(keys.shape[0] + 1, dtype=np.int64)
        lists = np.empty(keys.shape[0] * self.nlist, dtype=np.int64)
        p = min(int(nprobe), self.nlist)
        _ivf_probe(keys, p, n_short, self.offsets, ptr, lists)
        return ptr, lists

    def _positions(self, lists):
        """The list-order positions of the items of ``lists``, in order."""
        return np.concatenate(
            [np.arange(self.offsets[lst], self.offsets[lst + 1]) for lst in lists]
        )

    def shortlist(
        self,
        q_bits,
        luts,
        nprobe,
        n_short,
        compiled=True,
        ordered=True,
        backend=None,
        norm_shift=0,
        quantizer_nprobe=None,
    ):
        """The ``n_short`` nearest items of each query among its probed
        lists, by (Hamming distance, index).

        Parameters
        ----------
        q_bits : ndarray of shape (n_queries, n_bytes), dtype uint8
            Packed query codes.
        luts : ndarray of shape (n_queries, M, K) or None
            The queries' inner-product look-up tables (needed by the metrics
            "ip" and "l2").
        nprobe : int
            Lists probed per query (clipped to ``nlist``).
        n_short : int
            Shortlist length, ``<= n_items``.
        compiled : bool, default=True
            Use the numba kernel (else the numpy reference; same results).
        ordered : bool, default=True
            Return each row in (distance, index) order. False returns the
            same items in an order of the kernel's choosing (cheaper: a
            re-ranking that follows reorders them anyway); rows are then
            equal as sets to the ordered ones.
        backend : backend or None
            Sums the look-up tables for the list keys (see :meth:`list_keys`).
        norm_shift : int, default=0
            See :meth:`list_keys`.
        quantizer_nprobe : int or None, default=None
            Groups of lists ranked first (see :meth:`probe_lists`); None
            ranks every list.

        Returns
        -------
        indices : ndarray of shape (n_queries, n_short), dtype int64
        distances : ndarray of shape (n_queries, n_short), dtype int32
        """
        n_q = q_bits.shape[0]
        n_short = int(min(n_short, self.n_items))
        idx = np.empty((n_q, n_short), dtype=np.int64)
        dist = np.empty((n_q, n_short), dtype=np.int64)
        if n_q == 0 or n_short == 0:
            return idx, dist.astype(np.int32)
        ptr, lists = self.probe_lists(
            q_bits,
            luts,
            nprobe,
            n_short,
            quantizer_nprobe,
            compiled=compiled,
            backend=backend,
            norm_shift=norm_shift,
        )
        qw = _padded_words(q_bits)
        if compiled:
            from skhash.retrieval._ivf_kernels import _ivf_shortlist

            _ivf_shortlist(
                qw,
                ptr,
                lists,
                self.offsets,
                self.ids,
                self.words,
                n_short,
                bool(ordered),
                idx,
                dist,
            )
        else:
            for q in range(n_q):
                pos = self._positions(lists[ptr[q] : ptr[q + 1]])
                d = np.bitwise_count(self.words[pos] ^ qw[q]).sum(axis=1)
                cand = self.ids[pos].astype(np.int64)
                top = np.lexsort((cand, d))[:n_short]
                idx[q], dist[q] = cand[top], d[top]
        return idx, dist.astype(np.int32)

    def search(
        self,
        key_luts,
        luts,
        mode,
        q_sq,
        sqnorms,
        n_short,
        k,
        nprobe,
        exclude,
        compiled=True,
        backend=None,
        norm_shift=0,
        quantizer_nprobe=None,
    ):
        """The ``k`` nearest items of each query among every item of its
        probed lists, by asymmetric distance (faiss's IVF-ADC scan; lists
        with quantization codes only).

        Parameters
        ----------
        key_luts : ndarray of shape (n_queries, M, K), float32
            The queries' inner-product look-up tables (they rank the lists).
        luts : ndarray of shape (n_queries, M, K), float32
            The tables summed per item: ``key_luts``, or the squared-L2
            tables for ``mode=2``.
        mode : {0, 1, 2}
            The distance: 0 ``-Σ`` (inner product, ``rerank="aqd"``); 1
            ``max(‖q‖² - 2 Σ + ‖x‖², 0)`` (``"aqd-l2"``, additive codebooks,
            ``‖x‖²`` from ``sqnorms``); 2 ``max(‖q‖² + Σ, 0)`` (``"aqd-l2"``,
            product codebooks) -- each as the re-ranking computes it, so the
            distances are the same bits.
        q_sq : ndarray of shape (n_queries,), float64
            The queries' squared norms (modes 1 and 2).
        sqnorms : ndarray of shape (n_items,)
            The items' squared reconstruction norms (mode 1).
        n_short : int
            The probe takes lists until they hold at least this many items.
        k : int
            Neighbours returned per query.
        nprobe : int
            Lists probed at least (clipped to ``nlist``).
        exclude : ndarray of shape (n_queries,), int64
            An item each query skips (its own row), or -1.
        compiled : bool, default=True
            Use the numba kernel (else the numpy reference; same results).
        backend : backend or None
            Sums the look-up tables for the list keys (see :meth:`list_keys`).
        norm_shift : int, default=0
            See :meth:`list_keys`.
        quantizer_nprobe : int or None, default=None
            Groups of lists ranked first (see :meth:`probe_lists`); None
            ranks every list.

        Returns
        -------
        distances : ndarray of shape (n_queries, k), float64
        indices : ndarray of shape (n_queries, k), int64
            Nearest first, ties to the lower index.
        """
        n_q = luts.shape[0]
        n_short = int(min(n_short, self.n_items))
        idx = np.empty((n_q, k), dtype=np.int64)
        dist = np.empty((n_q, k), dtype=np.float64)
        if n_q == 0 or k == 0:
            return dist, idx
        ptr, lists = self.probe_lists(
            None,
            key_luts,
            nprobe,
            n_short,
            quantizer_nprobe,
            compiled=compiled,
            backend=backend,
            norm_shift=norm_shift,
        )
        if compiled:
            from skhash.retrieval._adc_scan import _ivf_adc, scan_words

            luts = np.ascontiguousarray(luts)
            _ivf_adc(
                luts,
                ptr,
                lists,
                self.offsets,
                self.ids,
                scan_words(self.list_codes, luts.shape[2]),
                int(mode),
                q_sq,
                sqnorms,
                exclude,
                int(k),
                idx,
                dist,
            )
            return dist, idx
        from skhash.retrieval._kernels import NumpyBackend

        for q in range(n_q):
            pos = self._positions(lists[ptr[q] : ptr[q + 1]])
            ids = self.ids[pos].astype(np.int64)
            keep = ids != exclude[q]
            pos, ids = pos[keep], ids[keep]
            row = luts[q : q + 1]
            s = NumpyBackend().rerank_aqd(row, pos[None], self.list_codes)[0]
            if mode == 0:
                d = np.negative(s, dtype=np.float64)
            elif mode == 1:
                sq = np.asarray(sqnorms, dtype=np.float64)[ids]
                d = np.maximum(q_sq[q] - 2.0 * s.astype(np.float64) + sq, 0.0)
            else:
                d = np.maximum(q_sq[q] + s.astype(np.float64), 0.0)
            top = np.lexsort((ids, d))[:k]
            idx[q, : len(top)], dist[q, : len(top)] = ids[top], d[top]
            idx[q, len(top) :], dist[q, len(top) :] = -1, np.inf
        return dist, idx


def _bad_int(name, value, example):
    return ValueError(
        f"{name}={value!r} must be a positive int (bool is not accepted); pass "
        f"e.g. {name}={example}."
    )


def check_nlist(nlist, n_items):
    """Raise unless ``1 <= nlist <= n_items`` (naming ``nlist``)."""
    if nlist > n_items:
        raise ValueError(
            f"nlist={nlist} is more lists than the {n_items} items they are "
            f"trained on; pass nlist <= {n_items}, or nlist=None for the default "
            f"({default_nlist(n_items)} here)."
        )
