"""TwoStageRetriever: Hamming shortlist, then quantization re-ranking.

The estimator: its parameters and their checks, :meth:`fit`, :meth:`add`,
:meth:`kneighbors` and :meth:`score`. Its mixins hold the rest: the query
side in :mod:`skhash.retrieval._query`, the fitted state and what is indexed
per modality in :mod:`skhash.retrieval._index`, and :meth:`save` /
:meth:`load` in :mod:`skhash.retrieval._persistence`.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils._param_validation import (
    Interval,
    InvalidParameterError,
    StrOptions,
)
from sklearn.utils.validation import check_is_fitted, validate_data

from skhash._codes import CodeSet
from skhash._constants import SINGLE_MODALITY
from skhash.metrics import harmonic_mean, n_relevant, ranked_relevance
from skhash.metrics._ranking import _check_label_compat
from skhash.retrieval import _ivf, _mih, _schema, _storage
from skhash.retrieval._index import _index_entry, _IndexState, _new_items
from skhash.retrieval._kernels import get_backend, register_backend
from skhash.retrieval._persistence import _Persistence
from skhash.retrieval._query import _QueryEngine
from skhash.retrieval._scoring import _NEEDS_N_RELEVANT, _mean_ap, _score_plan
from skhash.utils._atomic import all_or_nothing
from skhash.utils._threads import n_threads

__all__ = ["TwoStageRetriever"]

_RERANKS = _schema._RERANKS


def _numba_backend():
    try:
        from skhash.retrieval._numba import NumbaBackend
    except ImportError as exc:
        raise ImportError(
            "The search backend 'numba' needs numba (pip install numba); use "
            "backend='numpy' or 'auto' without it."
        ) from exc
    return NumbaBackend()


def _auto_backend():
    # lazy: a fresh process answers its first small queries with the numpy
    # reference (same results) while the kernels compile in the background
    try:
        from skhash.retrieval._numba import NumbaBackend
    except ImportError:
        return get_backend("numpy")
    return NumbaBackend(lazy=True)


register_backend("numba", _numba_backend)
register_backend("auto", _auto_backend)


class TwoStageRetriever(_QueryEngine, _IndexState, _Persistence, BaseEstimator):
    """Two-stage nearest-neighbour search over compact codes.

    Indexes a :class:`~skhash.CodeSet` (the database) and answers queries in
    two stages, as in the HQ paper [1]_: a Hamming-distance shortlist of
    ``L`` candidates from the packed binary codes, then a re-ranking of those
    ``L`` by the asymmetric quantizer distance (AQD) of the float query
    embedding to each candidate's quantization codes, computed through
    ``M x K`` look-up tables. Cross-modal databases are searched in a
    direction such as ``"img->txt"``.

    Read more in the :ref:`User Guide <retrieval>`.

    Parameters
    ----------
    alpha : "auto", int or float, default="auto"
        Size of the stage-1 shortlist. ``"auto"`` is
        ``L = max(10 k, ceil(N / 1000))`` for ``k`` neighbours among ``N``
        items: ten times the neighbours asked for on a small database, and a
        fixed fraction of a large one, at which recall does not fall as the
        database grows (see :ref:`the measured rule <shortlist-rule>`). An
        int is the number of candidates ``L`` itself; a float in [0, 1] is
        the fraction of the database, ``L = round(alpha * N)`` (Python's
        round). ``L`` is clipped to the number of searchable items.
        ``alpha=0`` (or ``0.0``) is pure Hamming ranking and ``alpha=1.0``
        re-ranks the whole database (the paper's Figure 4 sweeps alpha
        between them). Note that ``1`` (int) is one candidate while ``1.0``
        is all of them. Read at query time, so
        ``set_params(alpha=...)`` takes effect without refitting.
    n_neighbors : int, default=50
        Number of neighbours ``k`` returned by :meth:`kneighbors` and the
        cut-off of :meth:`score` (MAP@50 by default). Read at query time.
    rerank : {"aqd", "aqd-l2", "hamming-codes", "exact", "none"}, default="aqd"
        The stage-2 distance between a query and a candidate with
        quantization codes ``c`` (reconstruction ``x = Σ_m C_m[c_m]``):

        - ``"aqd"``: inner product ``⟨q, x⟩`` via look-up tables (HQ);
          returned as the distance ``-⟨q, x⟩``.
        - ``"aqd-l2"``: squared Euclidean ``‖q - x‖²`` via look-up tables
          (DQN [2]_); exact for additive codebooks too, through the squared
          norms of the reconstructions stored at fit.
        - ``"hamming-codes"``: number of differing code indices between the
          query's and the item's quantization codes (the HQ paper's HQ-b);
          queries need their quantization codes.
        - ``"exact"``: cosine similarity of the float embeddings, returned as
          ``1 - cos``; the indexed embeddings are stored. With
          ``alpha=1.0`` this is the lossless reference.
        - ``"none"``: no re-ranking, Hamming distance only.

        Applied at fit, because it decides what is indexed.
    n_jobs : int, default=None
        Number of threads over chunks of queries, and of the build of the
        inverted lists (``stage1="ivf"``). ``None`` means 1, ``-1`` all
        processors (joblib's convention). Results and lists do not depend
        on it. BLAS is held to one thread inside a search, so ``n_jobs``
        threads (the caller and helpers kept for the process: a call starts
        none) are all the search uses.
    backend : str, default="auto"
        Name of the search kernels, see :func:`~skhash.retrieval.get_backend`:
        ``"numba"`` (compiled, several times faster), ``"numpy"`` (the
        reference) or ``"auto"``, numba when it can be imported and numpy
        otherwise. Both return identical results. Read at query time.
    stage1 : {"auto", "exhaustive", "mih", "ivf"}, default="auto"
        How stage 1 finds the shortlist; every choice but ``"ivf"`` returns
        the same items, distances and tie order. ``"exhaustive"`` scans every code
        (``O(N)`` per query, the reference). ``"mih"`` searches multi-index
        hash tables over substrings of the codes (Norouzi et al. [3]_):
        exact, and sublinear in ``N`` when the shortlist's Hamming radius is
        small against ``n_bits / n_substrings``; a query whose search would
        cost several scans (codes concentrated in a few buckets, or a large
        radius) is answered by the scan. ``"auto"`` tries the tables when
        ``N >= 2**15``, the shortlist is short against ``N`` and the codes
        spread over the buckets, and keeps them only where a timed trial
        (64 database codes as queries, once per index and power of two of
        the shortlist size) finds them faster than the scan; on learned
        codes the scan usually wins (see the User Guide). The tables take
        ``n_substrings * 4`` bytes per item plus ``4 * 2**s`` per table of
        ``s``-bit substrings; they are built at fit for ``"mih"`` (at the
        first search that tries them for ``"auto"``), are not saved (a
        loaded index builds them at its first search) and grow with
        :meth:`add`. ``"ivf"`` (opt-in, approximate; ``"auto"`` never
        chooses it) is an inverted file, faiss's ``IndexIVF``: ``nlist``
        k-means lists partition the database, and a query searches the
        items of its ``nprobe`` best lists only, about ``nprobe / nlist``
        of the database. For ``rerank="aqd"`` / ``"aqd-l2"`` the lists
        partition the reconstructions of the quantization codes (from
        1,024 lists on, an item goes to its nearest centroid among the
        lists of its 8 nearest groups, see ``quantizer_nprobe``), queries
        rank them by inner product / squared L2 of their embedding (which
        they then need even with ``alpha=0``), and *every* item of the
        probed lists is re-ranked (faiss's IVF-ADC: the probed lists are the
        shortlist; with ``nprobe >= nlist`` the results are those of
        re-ranking the whole database, ``alpha=1.0``). Otherwise the lists
        partition the ``±1`` bits (binarised centroids, Hamming distance),
        the ``L`` items of the probed lists nearest in Hamming distance are
        re-ranked, and with ``nprobe >= nlist`` the results are exactly the
        exhaustive ones. Read at query time.
    n_substrings : int, default=None
        Number of MIH tables (substrings per code), each of at most 24
        bits; None uses ``ceil(n_bits / min(24, floor(log2 N)))``. Used
        only by ``stage1="mih"`` or ``"auto"``.
    nlist : int, default=None
        Number of inverted lists of ``stage1="ivf"``; None uses
        ``round(2 sqrt(N))``, at most ``N // 39``. Must not exceed ``N``.
        Applied when the lists are built (at fit; changed with
        ``set_params``, the lists are rebuilt from all items at the next
        search).
    nprobe : int, default=1
        Lists searched per query by ``stage1="ivf"`` (values above
        ``nlist`` mean ``nlist``). A query searches more lists, in their
        order, while the probed ones hold fewer than ``max(L, k)`` items, so
        that ``L`` is never cut: the default scans the nearest lists that
        hold the shortlist. With lists of codes, ``alpha`` (``L``) and
        ``nprobe`` both set how many items are re-ranked, and recall grows
        with either; with lists of bits more lists give the Hamming stage
        more candidates to choose from: closer to the exhaustive result
        (``nprobe = nlist`` is exact) and slower (see :ref:`the measurements
        <ivf-stage1>`). Read at query time.
    quantizer_nprobe : int, "auto" or None, default="auto"
        How ``stage1="ivf"`` finds a query's best lists where they are
        ranked by the query's embedding (lists of quantization codes, or
        ``rerank="aqd"`` / ``"aqd-l2"``): None ranks all ``nlist`` of them,
        ``M`` table additions each; an int ranks about ``sqrt(nlist)``
        groups of lists first (k-means of the lists' centroids) and then
        only the lists of the best ``quantizer_nprobe`` groups, or of more
        where those hold fewer than ``max(L, k)`` items or under four times
        the lists the probe considers (a two-level coarse quantizer, as
        faiss's ``quantizer_nprobe``). Faster at scale, approximate: a list
        outside those groups is not probed; with every group probed the
        results are those of None. ``"auto"`` is None below 1,024 lists
        and 8 from there on (at 6,325 lists, ``N = 10**7``, 1.4-2.2 times
        the queries per second at the same ``L`` for up to 0.008 less
        recall@50, in two runs; see :ref:`the measurements <ivf-stage1>`).
        Read at query time.
    random_state : int, RandomState instance or None, default=None
        Seeds the k-means of ``stage1="ivf"`` (the training sample and its
        initialisation); an int gives the same lists at every fit. The
        seed drawn is recorded with the index (and saved), so a fitted,
        grown or loaded index always searches the same lists.

    Attributes
    ----------
    n_samples_fit_ : int
        Number of indexed items ``N``.
    modalities_ : tuple of str
        The indexed modalities (``("X",)`` for a plain array).
    n_bits_ : int or None
        Bits of the binary codes, or None when none were indexed.
    codebooks_ : ndarray of shape (M, K, d) or None
        The shared codebooks.
    codebook_kind_ : {"additive", "product"} or None
        How the codebooks combine.
    model_fingerprint_ : str or None
        :attr:`CodeSet.model_fingerprint <skhash.CodeSet.model_fingerprint>`
        of the indexed codes: the learner that made them. Queries and
        additions from another learner (another fit) are rejected; codes
        without one (built by hand) are not checked.
    codebooks_fingerprint_ : str or None
        :attr:`CodeSet.fingerprint <skhash.CodeSet.fingerprint>` of the
        indexed codebooks; queries and additions from other codebooks are
        refused.
    y_ : ndarray of shape (N,) or (N, n_labels) or None
        Labels of the database items, used by :meth:`score`.
    search_plan_ : dict of str to str
        How each modality is searched as the database, e.g.
        ``{"img": "hamming->aqd"}``. Adapts to what the codes carry: without
        quantization codes, ``"aqd"``, ``"aqd-l2"`` and ``"hamming-codes"``
        fall back to Hamming ranking (``"hamming"``); without bits, stage 2
        runs over the whole database (``"aqd"``, ``"exact"`` ...); with only
        embeddings, exact cosine search (``"exact"``).
    n_features_in_ : int
        Embedding width, set only when fit on a plain array.

    See Also
    --------
    skhash.CodeSet : The codes it indexes and queries.
    skhash.quantization.lookup_tables : The AQD look-up tables.
    sklearn.neighbors.NearestNeighbors : The ``kneighbors`` convention followed.

    Notes
    -----
    **Search semantics.** For a query and a database of ``N`` items:

    1. Stage 1 ranks the items by Hamming distance between packed codes and
       keeps ``max(L, k)`` of them, ties broken by lower database index.
    2. Stage 2 computes the ``rerank`` distance of the first ``L`` and sorts
       them by (distance, database index).
    3. The ``k`` results are the first ``k`` re-ranked items; if ``L < k``,
       positions ``L .. k-1`` are the following stage-1 items in Hamming
       order. So ``alpha=0`` is exactly Hamming ranking.

    Returned distances are "smaller is closer": Hamming counts, ``-⟨q, x⟩``
    for ``"aqd"``, squared L2 for ``"aqd-l2"``, differing codes for
    ``"hamming-codes"``, ``1 - cos`` for ``"exact"``. Entries ranked by stage
    1 (all of them for ``"none"``, the tail beyond ``L``) carry their Hamming
    distance. Each row is ascending within the re-ranked part and within the
    Hamming-ranked tail; when ``L >= k`` (the usual case) the whole row is
    ascending.

    **Magnitudes.** The look-up tables are float32, yet ``"aqd"`` and
    ``"aqd-l2"`` hold at any finite magnitude of the queries and codebooks:
    codebooks whose largest magnitude is beyond ``1e18`` or below ``1e-18``
    make their tables scaled by a power of two (exact), the queries are
    scaled alike (and further, per query, where their products with the
    codewords would pass ``1e30`` or, for ``"aqd"``, fall below
    ``1e-30``), and the distances are scaled back in float64: the results
    at a power-of-two scale are exactly those of the unscaled data, with
    distances times the scale squared. Ordinary data are not scaled. With
    ``"aqd-l2"``, where one side is many orders of magnitude larger than
    the other its squared norm dominates the distances, which then round to
    it in float64 (as any float64 computation of them); the neighbours are
    those of the rounded distances.

    Only the compact codes are indexed (packed bits, quantization codes, the
    shared codebooks, and for ``"aqd-l2"`` with additive codebooks one float
    per item); the float embeddings are kept only with ``rerank="exact"`` or
    for a modality that has neither bits nor codes. Quantization codes are
    stored as ``uint8`` (``K <= 256``) or ``uint16``, so an index of ``N``
    items takes ``N * (ceil(n_bits / 8) + M * ceil(log2 K) / 8)`` bytes per
    modality, plus the labels and the codebooks.

    ``stage1="ivf"`` adds, per modality searched through bits, ``nlist``
    centroids (``4 d`` bytes each and their ``M`` codes, or ``ceil(n_bits /
    8)`` binarised), the list offsets (``8 (nlist + 1)`` bytes), and per
    item its id in list order (4 bytes) and a list-ordered copy of its
    quantization codes (lists of codes: ``M`` bytes for ``K <= 256``) or of
    its bits padded to 64-bit words (``8 ceil(n_bits / 64)`` bytes), so
    that a probe reads contiguous memory: 12 bytes per item at 64 bits or
    ``M = 8``. The lists are not saved: the
    index saves how they were built (the seed and the number of items the
    k-means was trained on), and a loaded index rebuilds the same lists at
    its first search, in the build time of a fit. The
    k-means trains on at most 32 items per list drawn from the items
    indexed at fit, for 10 iterations; :meth:`add` assigns the new items
    to the existing lists (as at fit, see ``stage1``) without retraining.

    **Large databases.** Queries are searched in chunks: stage 1 streams the
    database codes through the cache and keeps per query only its shortlist
    state (never a distance matrix), and stage 2 touches only the ``L``
    candidates, so the memory of a search does not grow with ``N`` (except
    for the stage-2-only plans, which score the database in chunks of a few
    queries). An index saved with :meth:`save` to a directory is plain
    ``.npy`` arrays; ``load(path, mmap_mode="r")`` memory-maps them and the
    search streams them from disk with the same results. :meth:`add`
    appends items to a fitted index without touching the others: in memory,
    or to the files on disk for an index loaded with ``mmap_mode="r+"``.

    References
    ----------
    .. [1] Y. Shi and Y.-J. Chung, "Efficient Cross-Modal Retrieval via Deep
       Binary Hashing and Quantization", BMVC 2021.
    .. [2] Y. Cao, M. Long, J. Wang, H. Zhu and Q. Wen, "Deep Quantization
       Network for Efficient Image Retrieval", AAAI 2016.
    .. [3] M. Norouzi, A. Punjani and D. J. Fleet, "Fast Exact Search in
       Hamming Space with Multi-Index Hashing", IEEE TPAMI 36(6), 2014.

    Examples
    --------
    >>> import numpy as np
    >>> from skhash import CodeSet, pack_bits
    >>> from skhash.quantization import encode
    >>> from skhash.retrieval import TwoStageRetriever
    >>> rng = np.random.RandomState(42)
    >>> emb = rng.randn(200, 16).astype(np.float32)
    >>> C = rng.randn(4, 8, 16).astype(np.float32)
    >>> db = CodeSet(
    ...     embedding=emb, bits=pack_bits(emb), codes=encode(emb, C, kind="additive"),
    ...     codebooks=C, codebook_kind="additive")
    >>> y = rng.randint(3, size=200)
    >>> search = TwoStageRetriever(alpha=0.2, n_neighbors=10).fit(db, y)
    >>> search.search_plan_
    {'X': 'hamming->aqd'}
    >>> dist, idx = search.kneighbors(db[:5])
    >>> dist.shape, idx.shape
    ((5, 10), (5, 10))
    >>> 0.0 <= search.score(db[:50], y[:50]) <= 1.0
    True
    """

    _parameter_constraints: dict = {
        "alpha": [
            StrOptions({"auto"}),
            Interval(Integral, 0, None, closed="left"),
            Interval(Real, 0, 1, closed="both"),
        ],
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "rerank": [StrOptions(set(_RERANKS))],
        "n_jobs": [None, Integral],
        "backend": [str],
        "stage1": [StrOptions({"auto", "exhaustive", "mih", "ivf"})],
        "n_substrings": [None, Interval(Integral, 1, None, closed="left")],
        "nlist": [None, Interval(Integral, 1, None, closed="left")],
        "nprobe": [Interval(Integral, 1, None, closed="left")],
        "quantizer_nprobe": [
            None,
            StrOptions({"auto"}),
            Interval(Integral, 1, None, closed="left"),
        ],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        alpha="auto",
        n_neighbors=50,
        *,
        rerank="aqd",
        n_jobs=None,
        backend="auto",
        stage1="auto",
        n_substrings=None,
        nlist=None,
        nprobe=_ivf.DEFAULT_NPROBE,
        quantizer_nprobe="auto",
        random_state=None,
    ):
        self.alpha = alpha
        self.n_neighbors = n_neighbors
        self.rerank = rerank
        self.n_jobs = n_jobs
        self.backend = backend
        self.stage1 = stage1
        self.n_substrings = n_substrings
        self.nlist = nlist
        self.nprobe = nprobe
        self.quantizer_nprobe = quantizer_nprobe
        self.random_state = random_state

    # ------------------------------------------------------------------ #
    # fit
    # ------------------------------------------------------------------ #
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Index the database ``X``.

        All or nothing: a fit that fails (bad input, an interrupt) leaves
        the estimator as it was, unfitted or with its previous index.

        Parameters
        ----------
        X : CodeSet or array-like of shape (n_samples, d)
            The database codes, one or several modalities. A plain 2-D float
            array is a single-modality database of embeddings only, searched
            by exact cosine similarity.
        y : array-like of shape (n_samples,) or (n_samples, n_labels), \
default=None
            Class ids or a 0/1 label indicator matrix of the items; needed
            only by :meth:`score`.

        Returns
        -------
        self : object
            The fitted retriever.

        Examples
        --------
        >>> import numpy as np
        >>> from skhash.retrieval import TwoStageRetriever
        >>> rng = np.random.RandomState(42)
        >>> TwoStageRetriever().fit(rng.randn(30, 4)).n_samples_fit_
        30
        """
        return self._fit(X, y)

    @all_or_nothing
    def _fit(self, X, y):
        get_backend(self.backend)
        if isinstance(X, CodeSet):
            if hasattr(self, "n_features_in_"):
                del self.n_features_in_
            codes = X
        elif isinstance(X, dict):  # MultiModal: raw features, not codes
            raise TypeError(
                "TwoStageRetriever indexes codes, not raw features: pass "
                "learner.transform(X) (a CodeSet) or a 2-D array of embeddings; "
                f"got a {type(X).__name__} of {tuple(X)}."
            )
        else:
            X = validate_data(self, X, reset=True, dtype=[np.float32, np.float64])
            codes = CodeSet(embedding=X, modality=SINGLE_MODALITY)
        n = len(codes)
        if n == 0:
            raise ValueError(
                "X holds 0 items; fit needs a database of at least one item."
            )
        if y is not None:
            y = _schema.check_y(y)
            if y.ndim not in (1, 2) or y.shape[0] != n:
                raise ValueError(
                    f"y must have one row per indexed item: X has {n} items but "
                    f"y has shape {y.shape}."
                )
        index = {m: _index_entry(codes, m, self.rerank) for m in codes.modalities}
        has_bits = any("bits" in e for e in index.values())
        # n_substrings against n_bits only where MIH may search, nlist
        # against N only where lists are built (on bits)
        uses_mih = has_bits and self.stage1 in ("mih", "auto")
        if self.stage1 != "ivf":
            _mih.check_params(self, codes.n_bits if uses_mih else None)
        _ivf.check_params(self, n if has_bits else None)
        self._store = None
        self._set_index(
            index,
            n_samples=n,
            n_bits=codes.n_bits if any("bits" in e for e in index.values()) else None,
            codebooks=codes.codebooks,
            kind=codes.codebook_kind,
            y=y,
            rerank=self.rerank,
            fingerprint=codes.fingerprint,
        )
        self.model_fingerprint_ = codes.model_fingerprint
        _mih.prepare(self)
        _ivf.prepare(self)
        return self

    def _validate_params(self):
        super()._validate_params()
        for name in ("alpha", "n_neighbors", "n_jobs"):
            value = getattr(self, name)
            if isinstance(value, (bool, np.bool_)):
                raise InvalidParameterError(
                    f"The {name!r} parameter of TwoStageRetriever must be a number, "
                    f"not a bool; got {name}={value!r}. Pass an int, e.g. "
                    f"{name}={ {'alpha': 100, 'n_neighbors': 50, 'n_jobs': 1}[name] }."
                )
        n_threads(self.n_jobs)  # n_jobs=0: a clear error before anything is set
        _ivf.check_params(self)

    def add(self, X, y=None):
        """Append items to the fitted index, without re-indexing the others.

        The index after ``fit(A, y_a).add(B, y_b)`` equals the index of
        ``fit(A ⊕ B, y_a ⊕ y_b)`` (``⊕`` appends the items of B after those
        of A); new items get the indices ``N, N + 1, ...``. Only the new
        items are processed: their bits, quantization codes (and, where the
        index stores them, squared norms or embeddings) are appended to the
        index arrays. Search parameters are unchanged. With
        ``stage1="ivf"`` the inverted lists keep the centroids trained at
        fit and each new item joins its list as at fit (nearest centroid): the
        index equals that of ``fit(A ⊕ B)`` with the lists trained on A.

        For an index loaded with ``load(directory, mmap_mode="r+")`` the
        items are appended to the ``.npy`` files on disk (and ``meta.json``
        is updated) and the arrays re-mapped, so a database larger than
        memory grows in place. Otherwise the arrays are extended in memory
        (a memory map opened ``"r"`` or ``"c"`` is read into memory; the
        files are not changed).

        ``add`` is all or nothing: everything is checked before anything is
        written, and an error part-way (or a process killed part-way) leaves
        the index as it was, in memory and on disk (see
        :ref:`the persistence guide <index-integrity>`). Labels are never
        cast with a loss: the stored label dtype is widened when that is
        exact (longer strings, a wider int, float labels that are whole
        numbers into an int index), and labels that cannot be stored exactly
        (2.7 into an int index, strings into a numeric one) raise. Adding 0
        items (after the same checks) is a no-op.

        Parameters
        ----------
        X : CodeSet or array-like of shape (n_new, d)
            The new items, with the same modalities and parts as the indexed
            ones, the same ``n_bits`` and the same codebooks (a plain array
            only for an index fit on a plain array).
        y : array-like of shape (n_new,) or (n_new, n_labels), default=None
            Their labels; required when the index holds labels, and not
            accepted when it does not.

        Returns
        -------
        self : object
            The retriever, with ``n_samples_fit_`` increased by ``n_new``.

        Examples
        --------
        >>> import numpy as np
        >>> from skhash import CodeSet, pack_bits
        >>> from skhash.retrieval import TwoStageRetriever
        >>> rng = np.random.RandomState(42)
        >>> bits = pack_bits(rng.randn(30, 16))
        >>> search = TwoStageRetriever(n_neighbors=3).fit(CodeSet(bits=bits[:20]))
        >>> search.add(CodeSet(bits=bits[20:])).n_samples_fit_
        30
        >>> full = TwoStageRetriever(n_neighbors=3).fit(CodeSet(bits=bits))
        >>> q = CodeSet(bits=bits[:5])
        >>> np.array_equal(search.kneighbors(q)[1], full.kneighbors(q)[1])
        True
        """
        check_is_fitted(self)
        new, dtypes, n_new = _new_items(self, X, y)
        if n_new == 0:  # validated, nothing to append: the index is unchanged
            return self
        store = getattr(self, "_store", None)
        if store is not None and store.mode == "r+":
            _storage.append(self, new, dtypes)
            return self
        old = _storage.index_arrays(self)
        merged = {}
        for name, a in new.items():
            dtype = dtypes.get(name, old[name].dtype)
            merged[name] = np.concatenate(
                [np.asarray(old[name]).astype(dtype, copy=False), a.astype(dtype)]
            )
        self._install(merged, n_samples=self.n_samples_fit_ + n_new)
        self._store = None
        return self

    # ------------------------------------------------------------------ #
    # queries
    # ------------------------------------------------------------------ #

    def kneighbors(
        self, X=None, n_neighbors=None, *, direction=None, return_distance=True
    ):
        """Find the ``k`` nearest database items of each query.

        See the Notes of the class for the exact two-stage semantics; ties
        break by lower database index at both stages.

        Parameters
        ----------
        X : CodeSet or array-like of shape (n_queries, d), default=None
            The queries. A ``CodeSet`` needs (at least) the query modality of
            ``direction`` with the parts the search uses: bits for stage 1,
            embeddings for AQD or exact re-ranking, quantization codes for
            ``"hamming-codes"``. A plain array holds query embeddings of the
            query modality. ``None`` queries the indexed items themselves
            (of the query modality) and excludes each item's own row, as
            scikit-learn's ``kneighbors(X=None)``; this needs the parts the
            re-ranking uses to be indexed (embeddings are indexed only with
            ``rerank="exact"``).
        n_neighbors : int, default=None
            ``k``; defaults to the ``n_neighbors`` parameter. Must not exceed
            the number of searchable items (``N``, or ``N - 1`` for X=None).
        direction : str, default=None
            ``"<query modality>-><database modality>"``, e.g. ``"img->txt"``
            (or ``"img->img"``). May be None for a single-modality database.
        return_distance : bool, default=True
            Whether to return the distances.

        Returns
        -------
        distances : ndarray of shape (n_queries, k), float64
            Smaller is closer (see the class Notes). Only if
            ``return_distance=True``.
        indices : ndarray of shape (n_queries, k), int64
            Database rows, nearest first.

        Examples
        --------
        >>> import numpy as np
        >>> from skhash import CodeSet, pack_bits
        >>> from skhash.retrieval import TwoStageRetriever
        >>> rng = np.random.RandomState(42)
        >>> e_img, e_txt = rng.randn(2, 40, 8).astype(np.float32)
        >>> db = CodeSet.from_modalities(
        ...     img=CodeSet(bits=pack_bits(e_img), n_bits=8),
        ...     txt=CodeSet(bits=pack_bits(e_txt), n_bits=8))
        >>> search = TwoStageRetriever(n_neighbors=5).fit(db)
        >>> dist, idx = search.kneighbors(db[:3], direction="img->txt")
        >>> idx.shape, dist.dtype
        ((3, 5), dtype('float64'))
        >>> search.kneighbors(direction="txt->txt", return_distance=False).shape
        (40, 5)
        """
        check_is_fitted(self)
        self._validate_search_params()
        k = _check_count(self.n_neighbors if n_neighbors is None else n_neighbors)
        src, dst = self._resolve_direction(direction, X)
        n = self.n_samples_fit_
        exclude_self = X is None
        n_search = n - 1 if exclude_self else n
        if k > n_search:
            extra = " minus the query itself (X=None)" if exclude_self else ""
            raise ValueError(
                f"n_neighbors={k} must be <= the number of indexed items N={n}"
                f"{extra}; pass a smaller n_neighbors."
            )
        L = self._n_candidates(n_search, k)
        need = self._needs(dst, L)
        if exclude_self:
            parts = self._index_query_parts(src, dst, need)
            n_q = n
        else:
            parts, n_q = self._query_parts(X, src, dst, need)
        parts = {p: v for p, v in parts.items() if p in need}
        dist, idx = self._search(parts, n_q, dst, k, L, exclude_self)
        return (dist, idx) if return_distance else idx

    # ------------------------------------------------------------------ #
    # score
    # ------------------------------------------------------------------ #
    def score(
        self, X, y, *, n_neighbors=None, direction=None, variant="djsrh", metric="map"
    ):
        """MAP@K (or precision@K) of the queries ``X`` against the database.

        A database item is relevant to a query when they share a label.

        Parameters
        ----------
        X : CodeSet or array-like of shape (n_queries, d)
            The queries, as for :meth:`kneighbors`.
        y : array-like of shape (n_queries,) or (n_queries, n_labels)
            Their labels, in the form of the ``y`` given to :meth:`fit`.
        n_neighbors : int or "all", default=None
            The cut-off ``K``; None uses the ``n_neighbors`` parameter, and
            "all" ranks the whole database. Clipped to the number of indexed
            items ``N``.
        direction : str, default=None
            As for :meth:`kneighbors`. None with a two-modality database
            scores both cross directions (``"a->b"`` and ``"b->a"``) and
            returns their harmonic mean, as the HQ paper reports; ``X`` must
            then carry both modalities.
        variant : {"djsrh", "deephash", "full", "dcmh"}, default="djsrh"
            Normalisation of AP@K, see
            :func:`skhash.metrics.average_precision_from_ranking`; queries
            scoring NaN under "deephash" are left out of the mean.
        metric : {"map", "precision"}, default="map"
            Mean average precision or mean precision at ``K``.

        Returns
        -------
        score : float
            The score, in [0, 1]; greater is better.

        Examples
        --------
        >>> import numpy as np
        >>> from skhash.retrieval import TwoStageRetriever
        >>> rng = np.random.RandomState(42)
        >>> X, y = rng.randn(60, 5), rng.randint(2, size=60)
        >>> search = TwoStageRetriever(n_neighbors=10).fit(X[:40], y[:40])
        >>> round(search.score(X[40:], y[40:], metric="precision"), 3)
        0.53
        """
        check_is_fitted(self)
        k, directions, depth = _score_plan(
            self, self.y_ is not None, n_neighbors, direction, variant, metric
        )
        self._validate_params()
        y, _ = _check_label_compat(y, self.y_)
        scores = []
        for d in directions:
            idx = self.kneighbors(X, depth, direction=d, return_distance=False)
            if y.shape[0] != idx.shape[0]:
                raise ValueError(
                    f"y has {y.shape[0]} rows but X holds {idx.shape[0]} queries."
                )
            rel = ranked_relevance(y, self.y_, idx)
            if metric == "precision":
                scores.append(float(rel.mean()))
                continue
            n_rel = n_relevant(y, self.y_) if variant in _NEEDS_N_RELEVANT else None
            scores.append(_mean_ap(rel, n_rel, variant, k))
        if len(scores) == 2:
            return harmonic_mean(*scores)
        return scores[0]

    # ------------------------------------------------------------------ #
    # tags
    # ------------------------------------------------------------------ #
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = True
        tags.target_tags.required = False
        tags.input_tags.two_d_array = True
        tags.input_tags.sparse = False
        return tags


def _check_count(k, name="n_neighbors"):
    """``k`` as an int >= 1; bools and other types raise, naming ``name``."""
    if isinstance(k, (bool, np.bool_)):
        raise ValueError(
            f"{name}={k!r} must be a positive int (bool is not accepted); pass "
            f"e.g. {name}=10."
        )
    if not isinstance(k, Integral) or k < 1:
        raise ValueError(f"{name} must be a positive int; got {k!r}. Pass {name} >= 1.")
    return int(k)
