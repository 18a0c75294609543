"""ShardedRetriever: a TwoStageRetriever split into shards, over Dask workers.

The estimator: its parameters, :meth:`fit`, :meth:`add`, :meth:`kneighbors`
with the exact merge of the shards' results, and :meth:`score`. Its mixins
hold the rest: running tasks on the shards in
:mod:`skhash.retrieval._shard_runner`, and :meth:`save` / :meth:`load` in
:mod:`skhash.retrieval._shard_persistence`; what runs on a shard is in
:mod:`skhash.retrieval._shard_tasks`.
"""

from __future__ import annotations

import math
import os
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, _fit_context, clone
from sklearn.utils import check_array
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from skhash._codes import CodeSet
from skhash.metrics import (
    harmonic_mean,
    ranked_relevance,
)
from skhash.metrics._ranking import _check_label_compat
from skhash.retrieval import _schema
from skhash.retrieval._retriever import TwoStageRetriever
from skhash.retrieval._scoring import _NEEDS_N_RELEVANT, _mean_ap, _score_plan
from skhash.retrieval._shard_manifest import _SHARD_PARAMS
from skhash.retrieval._shard_persistence import _ShardPersistence
from skhash.retrieval._shard_runner import _ShardRunner
from skhash.retrieval._shard_tasks import (
    _QUERY_PARAMS,
    _add_to_shard,
    _check_same_index,
    _count_relevant,
    _export_items,
    _fit_shard,
    _fit_shard_from,
    _info_of,
    _labels_at,
    _search_shard,
    _shard_info,
    _stack,
    _top,
)
from skhash.utils._atomic import all_or_nothing

__all__ = ["ShardedRetriever"]

# Query rows sent to the shards per round trip (bounds the per-shard results
# of (rows, max(L, k)) distances and indices held at once).
_QUERY_BATCH_BYTES = 64 * 2**20


class ShardedRetriever(_ShardRunner, _ShardPersistence, BaseEstimator):
    """Two-stage search over a database split into shards on Dask workers.

    The database is cut into ``n_shards`` contiguous shards, each indexed by
    its own :class:`TwoStageRetriever` held by a worker of a
    :class:`dask.distributed.Client` (or, without a client, in this process
    and searched from local threads). Every query batch is sent to every
    shard, and the per-shard results are merged so that :meth:`kneighbors`
    and :meth:`score` return **exactly** what one ``TwoStageRetriever`` fit on
    all the items returns: the same indices, distances and tie order.

    Read more in the :ref:`User Guide <distributed>`.

    Parameters
    ----------
    alpha : "auto", int or float, default="auto"
        Size ``L`` of the stage-1 shortlist, as for
        :class:`TwoStageRetriever`: ``"auto"`` is ``max(10 k, ceil(N /
        1000))``, an int is ``L`` itself, a float in [0, 1] the fraction
        ``round(alpha * N)``, with ``N`` the **whole** database (all
        shards). Read at query time.
    n_neighbors : int, default=50
        Number of neighbours ``k`` returned by :meth:`kneighbors` and the
        cut-off of :meth:`score`. Read at query time.
    rerank : {"aqd", "aqd-l2", "hamming-codes", "exact", "none"}, default="aqd"
        The stage-2 distance, as for :class:`TwoStageRetriever`. Applied at
        fit.
    n_jobs : int, default=None
        Threads of each shard's search (``TwoStageRetriever(n_jobs=...)``);
        ``None`` means 1, which is right for Dask workers that run one task
        per core.
    backend : str, default="auto"
        Search kernels of every shard, see
        :func:`~skhash.retrieval.get_backend`. Read at query time.
    stage1 : {"auto", "exhaustive", "mih"}, default="auto"
        How each shard's stage 1 finds its shortlist, as for
        :class:`TwoStageRetriever` (every choice returns the same results).
        Read at query time; ``"auto"`` decides per shard. The approximate
        ``TwoStageRetriever(stage1="ivf")`` is refused here: the shards'
        merged results equal one index's only for an exact stage 1.
    n_substrings : int, default=None
        Number of multi-index hashing tables of each shard, as for
        :class:`TwoStageRetriever`.
    n_shards : int, default=None
        Number of shards made by :meth:`fit`. None makes one per worker of
        ``client``, or one per CPU without a client. Never more than the
        number of items; see also ``max_shard_size``. Results do not depend
        on it.
    max_shard_size : int, default=None
        Largest number of items of a shard. :meth:`fit` makes at least
        ``ceil(N / max_shard_size)`` shards, and :meth:`add` fills the last
        shard up to this size, then starts new ones. None: no limit (``add``
        grows the last shard).
    client : dask.distributed.Client, default=None
        The cluster holding the shards. None keeps the shards in this
        process and searches them from one thread per shard.

    Attributes
    ----------
    n_samples_fit_ : int
        Number of indexed items ``N``, over all shards.
    shard_sizes_ : ndarray of shape (n_shards,), dtype int64
        Number of items of each shard; shard ``s`` holds the items
        ``shard_offsets_[s] .. shard_offsets_[s] + shard_sizes_[s] - 1``.
    shard_offsets_ : ndarray of shape (n_shards,), dtype int64
        Global index of the first item of each shard.
    n_shards_ : int
        Number of shards.
    modalities_ : tuple of str
        The indexed modalities.
    n_bits_ : int or None
        Bits of the binary codes, or None when none were indexed.
    codebooks_ : ndarray of shape (M, K, d) or None
        The shared codebooks.
    codebook_kind_ : {"additive", "product"} or None
        How the codebooks combine.
    search_plan_ : dict of str to str
        How each modality is searched, as for :class:`TwoStageRetriever`.
    n_features_in_ : int
        Embedding width, set only when fit on a plain array.

    See Also
    --------
    TwoStageRetriever : The single-process index each shard is.
    skhash.retrieval.build_sharded_index : Write a sharded index larger than
        memory, chunk by chunk.

    Notes
    -----
    **Exact merge.** The two-stage search is not decomposable naively: a
    shortlist of ``L`` items per shard is not the global shortlist of ``L``.
    For each query batch every shard ``s`` returns, in one round trip, its
    own Hamming ranking of ``max(L, k)`` items and the stage-2 re-ranking of
    its own first ``min(L, N_s)`` Hamming items. The driver merges the
    Hamming rankings by (distance, global index) into the global stage-1
    ranking, whose first ``L`` items are the global shortlist; since shards
    are contiguous, the part of the shortlist in shard ``s`` is a prefix of
    that shard's Hamming ranking, so it lies inside what the shard
    re-ranked. The re-ranked items of the global shortlist are merged by
    (distance, global index), and when ``L < k`` the global stage-1 items
    ``L .. k-1`` follow. ``alpha`` as a fraction uses the global ``N``. The
    network carries per query and shard ``max(L, k) + min(L, N_s)`` pairs
    (distance, index) of 16 bytes, and the merge sorts ``n_shards`` times
    that per query.

    Each shard is searched through :meth:`TwoStageRetriever.kneighbors`, so
    stage 1 runs twice per shard (once for the Hamming ranking, once inside
    the re-ranking call).

    **Failures.** The results of every shard are needed: if a worker dies
    during a query, a shard loaded from files (:meth:`load`) is re-mapped by
    another worker and the query completes; a shard fit from memory is lost
    with its worker and the query raises
    :class:`~skhash.exceptions.ShardUnavailableError`. A partial top-k is
    never returned.

    Examples
    --------
    >>> import numpy as np
    >>> from skhash import CodeSet, pack_bits
    >>> from skhash.quantization import encode
    >>> from skhash.retrieval import ShardedRetriever, TwoStageRetriever
    >>> rng = np.random.RandomState(42)
    >>> emb = rng.randn(300, 16).astype(np.float32)
    >>> C = rng.randn(4, 8, 16).astype(np.float32)
    >>> db = CodeSet(
    ...     embedding=emb, bits=pack_bits(emb), codes=encode(emb, C, kind="additive"),
    ...     codebooks=C, codebook_kind="additive")
    >>> sharded = ShardedRetriever(alpha=0.1, n_neighbors=10, n_shards=3).fit(db)
    >>> sharded.shard_sizes_
    array([100, 100, 100])
    >>> single = TwoStageRetriever(alpha=0.1, n_neighbors=10).fit(db)
    >>> d1, i1 = sharded.kneighbors(db[:5])
    >>> d2, i2 = single.kneighbors(db[:5])
    >>> np.array_equal(i1, i2) and np.array_equal(d1, d2)
    True
    """

    _parameter_constraints: dict = {
        **{p: TwoStageRetriever._parameter_constraints[p] for p in _SHARD_PARAMS},
        # exact stage 1 only: the merge of the shards' results equals one
        # index's only when each shard's shortlist is exact (not "ivf")
        "stage1": [StrOptions({"auto", "exhaustive", "mih"})],
        "n_shards": [None, Interval(Integral, 1, None, closed="left")],
        "max_shard_size": [None, Interval(Integral, 1, None, closed="left")],
        "client": [None, HasMethods(["submit", "gather", "scatter"])],
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
        n_shards=None,
        max_shard_size=None,
        client=None,
    ):
        self.alpha = alpha
        self.n_neighbors = n_neighbors
        self.rerank = rerank
        self.n_jobs = n_jobs
        self.backend = backend
        self.stage1 = stage1
        self.n_substrings = n_substrings
        self.n_shards = n_shards
        self.max_shard_size = max_shard_size
        self.client = client

    def __sklearn_clone__(self):
        # the client is a connection, shared by the clones (GridSearchCV,
        # cross_validate), never deep-copied
        params = {
            name: value if name == "client" else clone(value, safe=False)
            for name, value in self.get_params(deep=False).items()
        }
        return type(self)(**params)

    # ------------------------------------------------------------------ #
    # fit
    # ------------------------------------------------------------------ #
    def _check_database(self, X, *, reset):
        if isinstance(X, CodeSet):
            return X
        if isinstance(X, dict):  # MultiModal: raw features, not codes
            raise TypeError(
                "ShardedRetriever indexes codes, not raw features: pass "
                "learner.transform(X) (a CodeSet) or a 2-D array of embeddings; "
                f"got a {type(X).__name__} of {tuple(X)}."
            )
        if not reset and not hasattr(self, "n_features_in_"):
            raise ValueError(
                "This index was fit on a CodeSet; add items as a CodeSet "
                f"with the modalities {self.modalities_}."
            )
        X = validate_data(self, X, reset=reset, dtype=[np.float32, np.float64])
        return X

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Split the database ``X`` into shards and index each on a worker.

        All or nothing: a fit that fails leaves the estimator as it was,
        unfitted or with its previous shards.

        Parameters
        ----------
        X : CodeSet or array-like of shape (n_samples, d)
            The database codes, as for :meth:`TwoStageRetriever.fit`.
        y : array-like of shape (n_samples,) or (n_samples, n_labels), \
default=None
            Labels of the items; needed only by :meth:`score`.

        Returns
        -------
        self : object
            The fitted retriever.

        Examples
        --------
        >>> import numpy as np
        >>> from skhash.retrieval import ShardedRetriever
        >>> rng = np.random.RandomState(42)
        >>> ShardedRetriever(n_shards=4).fit(rng.randn(30, 4)).shard_sizes_
        array([8, 8, 7, 7])
        """
        return self._fit(X, y)

    @all_or_nothing
    def _fit(self, X, y):
        if isinstance(X, CodeSet) and hasattr(self, "n_features_in_"):
            del self.n_features_in_
        X = self._check_database(X, reset=True)
        n = len(X)
        if n == 0:
            raise ValueError(
                "X holds 0 items; fit needs a database of at least one item."
            )
        y = self._check_y(y, n)
        n_shards = self.n_shards
        if n_shards is None:
            n_shards = (
                len(self._workers()) if self.client is not None else os.cpu_count()
            ) or 1
        if self.max_shard_size is not None:
            n_shards = max(n_shards, math.ceil(n / self.max_shard_size))
        n_shards = min(n_shards, n)
        sizes = np.full(n_shards, n // n_shards, dtype=np.int64)
        sizes[: n % n_shards] += 1
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        pieces = [
            (X[a:b], None if y is None else y[a:b])
            for a, b in zip(bounds[:-1], bounds[1:])
        ]
        shards, infos = self._build_shards(pieces)
        self._commit(shards, infos)
        return self

    @staticmethod
    def _check_y(y, n):
        if y is None:
            return None
        y = _schema.check_y(y)  # the single index's label checks
        if y.ndim not in (1, 2) or y.shape[0] != n:
            raise ValueError(
                f"y must have one row per indexed item: X has {n} items but "
                f"y has shape {y.shape}."
            )
        return y

    def _build_shards(self, pieces):
        """Fit one TwoStageRetriever per (X, y) piece where it will live."""
        params = self._shard_params()
        if self.client is None:
            shards = [_fit_shard(params, X, y) for X, y in pieces]
            return shards, [_shard_info(s) for s in shards]
        workers = self._workers()
        first = len(getattr(self, "_shards", ()))
        shards = []
        try:
            for i, (X, y) in enumerate(pieces):
                w = workers[(first + i) % len(workers)]
                # scattered to its worker once; the fitted shard stays there
                data = self.client.scatter((X, y), workers=[w], hash=False)
                shards.append(
                    self.client.submit(
                        _fit_shard_from, params, data, workers=[w], pure=False
                    )
                )
            infos = self._gather(
                [self.client.submit(_shard_info, s, pure=False) for s in shards],
                [None] * len(shards),
            )
        except BaseException:
            for s in shards:
                s.cancel()
            raise
        return shards, infos

    def _commit(self, shards, infos):
        ref = infos[0]
        for i, info in enumerate(infos[1:], 1):
            _check_same_index(ref, info, f"shard {i}")
        sizes = np.array([info["n"] for info in infos], dtype=np.int64)
        self._shards = list(shards)
        self._has_y = ref["has_y"]
        self._y_tail = ref["y_tail"]
        # the widest of the shards' label dtypes (add widens the last shard's
        # and makes new shards with it; the others keep theirs)
        self._y_dtype = (
            np.result_type(*[np.dtype(info["y_dtype"]) for info in infos]).str
            if ref["has_y"]
            else None
        )
        self.model_fingerprint_ = ref.get("model_fingerprint")
        self.shard_sizes_ = sizes
        self.shard_offsets_ = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(
            np.int64
        )
        self.n_shards_ = len(shards)
        self.n_samples_fit_ = int(sizes.sum())
        self.modalities_ = tuple(ref["modalities"])
        self.n_bits_ = ref["n_bits"]
        self.codebooks_ = ref["codebooks"]
        self.codebook_kind_ = ref["kind"]
        self.search_plan_ = dict(ref["plan"])
        self._fit_rerank = ref["rerank"]

    # ------------------------------------------------------------------ #
    # add
    # ------------------------------------------------------------------ #
    def add(self, X, y=None):
        """Append items, to the last shard and then to new shards.

        The index after ``fit(A, y_a).add(B, y_b)`` searches like
        ``fit(A ⊕ B, y_a ⊕ y_b)``; new items get the indices ``N, N + 1,
        ...``. The last shard is filled up to ``max_shard_size`` (without a
        limit it takes all the new items); the rest goes to new shards of
        ``max_shard_size`` items, placed on the workers in turn. The shards
        are replaced only once every part succeeded, so a failure leaves the
        index as it was. A shard loaded from files is read into its worker's
        memory when it grows (the files are not changed).

        Parameters
        ----------
        X : CodeSet or array-like of shape (n_new, d)
            The new items, with the same modalities, parts, ``n_bits`` and
            codebooks as the indexed ones.
        y : array-like of shape (n_new,) or (n_new, n_labels), default=None
            Their labels; required exactly when the index holds labels.

        Returns
        -------
        self : object
            The retriever, with ``n_samples_fit_`` increased by ``n_new``.

        Examples
        --------
        >>> import numpy as np
        >>> from skhash import CodeSet, pack_bits
        >>> from skhash.retrieval import ShardedRetriever
        >>> bits = pack_bits(np.random.RandomState(0).randn(30, 16))
        >>> search = ShardedRetriever(n_shards=3, max_shard_size=8)
        >>> search.fit(CodeSet(bits=bits[:20])).shard_sizes_
        array([7, 7, 6])
        >>> search.add(CodeSet(bits=bits[20:])).shard_sizes_
        array([7, 7, 8, 8])
        """
        check_is_fitted(self)
        X = self._check_database(X, reset=False)
        n_new = len(X)
        if n_new == 0:
            raise ValueError("X holds 0 items; pass at least one item to add.")
        if self._has_y != (y is not None):
            raise ValueError(
                "y must be given exactly when the index holds labels: the index "
                f"{'has' if self._has_y else 'has no'} labels, and y is "
                f"{'None' if y is None else 'given'}."
            )
        y = self._check_y(y, n_new)
        if y is not None and tuple(y.shape[1:]) != tuple(self._y_tail):
            raise ValueError(
                f"y must be shaped like the indexed labels (n, "
                f"{', '.join(map(str, self._y_tail))}); got {y.shape}."
            )
        if y is not None:
            # as the single index: labels are stored exactly or refused, in
            # a dtype that holds the indexed ones too
            old = np.empty((0, *self._y_tail), dtype=self._y_dtype)
            y = y.astype(_schema.merged_label_dtype(old, y), copy=False)
        cap = self.max_shard_size
        room = n_new if cap is None else max(0, cap - int(self.shard_sizes_[-1]))
        room = min(room, n_new)
        last = self._shards[-1]
        new_last = None
        if room:
            self._check_shards_alive([last], [self.n_shards_ - 1])
            part = (X[:room], None if y is None else y[:room])
            if self.client is None:
                new_last = _add_to_shard(last, *part)
            else:
                new_last = self.client.submit(_add_to_shard, last, *part, pure=False)
        bounds = list(range(room, n_new, cap or n_new)) + [n_new]
        pieces = [
            (X[a:b], None if y is None else y[a:b])
            for a, b in zip(bounds[:-1], bounds[1:])
        ]
        try:
            new_shards, new_infos = self._build_shards(pieces) if pieces else ([], [])
            ref = _info_of(self)
            for info in new_infos:
                _check_same_index(ref, info, "X", adding=True)
            if new_last is not None:
                (info,) = self._run_on_shards(
                    _shard_info, [()], [self.n_shards_ - 1], [new_last]
                )
                shards = [*self._shards[:-1], new_last]
                infos = [*self._infos_of_unchanged(self.n_shards_ - 1), info]
            else:
                shards = list(self._shards)
                infos = self._infos_of_unchanged(self.n_shards_)
        except BaseException:
            if self.client is not None and new_last is not None:
                new_last.cancel()
            raise
        self._commit(shards + new_shards, infos + new_infos)
        return self

    def _infos_of_unchanged(self, n):
        """Infos of the first ``n`` shards (unchanged), for :meth:`_commit`."""
        ref = _info_of(self)
        return [dict(ref, n=int(self.shard_sizes_[i])) for i in range(n)]

    # ------------------------------------------------------------------ #
    # queries
    # ------------------------------------------------------------------ #
    # the same rules as the single index (they read modalities_, alpha and
    # n_samples_fit_ only, which this estimator has too)
    _resolve_direction = TwoStageRetriever._resolve_direction
    _n_candidates = TwoStageRetriever._n_candidates

    def _check_queries(self, X):
        if isinstance(X, CodeSet):
            if len(X) == 0:
                raise ValueError(
                    "X holds 0 queries; pass at least one query to kneighbors/score."
                )
            return X
        if isinstance(X, (str, bytes, dict)) or not hasattr(X, "__len__"):
            raise TypeError(
                "X must be a CodeSet or a 2-D array of query embeddings; got "
                f"{type(X).__name__}."
            )
        if hasattr(self, "n_features_in_"):
            return validate_data(self, X, reset=False, dtype=[np.float32, np.float64])
        return check_array(X, dtype=[np.float32, np.float64], input_name="X")

    def kneighbors(
        self, X=None, n_neighbors=None, *, direction=None, return_distance=True
    ):
        """Find the ``k`` nearest database items of each query, over all shards.

        Returns exactly what :meth:`TwoStageRetriever.kneighbors` returns for
        a single index of all the items (see the class Notes for how).

        Parameters
        ----------
        X : CodeSet or array-like of shape (n_queries, d), default=None
            The queries, as for :meth:`TwoStageRetriever.kneighbors`. ``None``
            queries the indexed items themselves, each excluding itself; the
            items of every shard are then sent to every other shard.
        n_neighbors : int, default=None
            ``k``; defaults to the ``n_neighbors`` parameter. Must not exceed
            the number of searchable items (``N``, or ``N - 1`` for X=None);
            it may exceed the size of a shard.
        direction : str, default=None
            ``"<query modality>-><database modality>"``, e.g. ``"img->txt"``.
        return_distance : bool, default=True
            Whether to return the distances.

        Returns
        -------
        distances : ndarray of shape (n_queries, k), float64
            Smaller is closer. Only if ``return_distance=True``.
        indices : ndarray of shape (n_queries, k), int64
            Global database rows, nearest first.

        Examples
        --------
        >>> import numpy as np
        >>> from skhash import CodeSet, pack_bits
        >>> from skhash.retrieval import ShardedRetriever
        >>> bits = pack_bits(np.random.RandomState(0).randn(40, 16))
        >>> search = ShardedRetriever(n_neighbors=5, n_shards=3)
        >>> search.fit(CodeSet(bits=bits)).kneighbors(return_distance=False).shape
        (40, 5)
        """
        check_is_fitted(self)
        self._validate_params()
        k = self.n_neighbors if n_neighbors is None else n_neighbors
        if not isinstance(k, Integral) or isinstance(k, bool) or k < 1:
            raise ValueError(
                f"n_neighbors must be a positive int; got {k!r}. Pass n_neighbors >= 1."
            )
        k = int(k)
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
        plan = self.search_plan_[dst]
        stage1 = plan == "hamming" or plan.startswith("hamming->")
        rerank = plan != "hamming"
        if stage1 and rerank and L > 0:
            n_h, n_r = max(L, k), L
        elif stage1:
            n_h, n_r = k, 0
        else:
            n_h, n_r = 0, k
        query_params = {p: getattr(self, p) for p in _QUERY_PARAMS}
        spec = (direction, n_h, n_r, stage1, query_params)
        if exclude_self:
            dist, idx = self._search_self(src, spec, k, L)
        else:
            X = self._check_queries(X)
            n_q = len(X)
            width = self.n_shards_ * (n_h + n_r) + max(n_h, n_r)
            step = max(1, _QUERY_BATCH_BYTES // (16 * max(width, 1)))
            parts = []
            for start in range(0, n_q, step):
                Xb = X[start : start + step]
                blocks = self._run_on_shards(
                    _search_shard, [([Xb], spec)] * self.n_shards_
                )
                parts.append(self._merge(blocks, k, L, stage1, n_r > 0 and stage1))
            dist = np.concatenate([p[0] for p in parts], axis=0)
            idx = np.concatenate([p[1] for p in parts], axis=0)
        return (dist, idx) if return_distance else idx

    def _search_self(self, src, spec, k, L):
        """kneighbors(X=None): every shard's items query every shard."""
        n_s = self.n_shards_
        if self.client is None:
            exported = [_export_items(s, src) for s in self._shards]
        else:
            exported = [
                self.client.submit(_export_items, s, src, pure=False)
                for s in self._shards
            ]
        args = []
        for t in range(n_s):
            blocks = [None if j == t else exported[j] for j in range(n_s)]
            args.append((blocks, spec))
        blocks = self._run_on_shards(_search_shard, args)
        n_r, stage1 = spec[2], spec[3]
        return self._merge(blocks, k, L, stage1, n_r > 0 and stage1)

    def _merge(self, shard_results, k, L, stage1, two_stage):
        """Global top-k from each shard's (Hamming, re-ranked) lists."""
        sentinel = self.n_samples_fit_
        h, r = [], []
        for off, blocks in zip(self.shard_offsets_, shard_results):
            h.append(_stack(blocks, 0, off, sentinel))
            r.append(_stack(blocks, 1, off, sentinel))
        h = [x for x in h if x is not None]
        r = [x for x in r if x is not None]
        if not stage1:
            return _top(np.hstack([x[0] for x in r]), np.hstack([x[1] for x in r]), k)
        hd, hi = _top(
            np.hstack([x[0] for x in h]),
            np.hstack([x[1] for x in h]),
            max(k, L) if two_stage else k,
        )
        if not two_stage:
            return hd, hi
        # the global shortlist is the first L of the global Hamming ranking:
        # an item is in it when (Hamming, index) <= that of the L-th one
        rd, ri, rh = (np.hstack([x[j] for x in r]) for j in range(3))
        last_d, last_i = hd[:, L - 1 : L], hi[:, L - 1 : L]
        member = (rh < last_d) | ((rh == last_d) & (ri <= last_i))
        top_d, top_i = _top(np.where(member, rd, np.inf), ri, min(k, L))
        if L >= k:
            return top_d, top_i
        return (
            np.concatenate([top_d, hd[:, L:k]], axis=1),
            np.concatenate([top_i, hi[:, L:k]], axis=1),
        )

    # ------------------------------------------------------------------ #
    # score
    # ------------------------------------------------------------------ #
    def score(
        self, X, y, *, n_neighbors=None, direction=None, variant="djsrh", metric="map"
    ):
        """MAP@K (or precision@K) of the queries ``X``, over all shards.

        Equals :meth:`TwoStageRetriever.score` of a single index of all the
        items. The labels stay with the shards: each returns the labels of
        its retrieved items (and, for ``variant="full"``, its count of
        relevant items).

        Parameters
        ----------
        X : CodeSet or array-like of shape (n_queries, d)
            The queries, as for :meth:`kneighbors`.
        y : array-like of shape (n_queries,) or (n_queries, n_labels)
            Their labels, in the form of the ``y`` given to :meth:`fit`.
        n_neighbors : int or "all", default=None
            The cut-off ``K``; None uses the ``n_neighbors`` parameter, "all"
            ranks the whole database. Clipped to ``N``.
        direction : str, default=None
            As for :meth:`TwoStageRetriever.score` (None with two modalities
            is the harmonic mean of both cross directions).
        variant : {"djsrh", "deephash", "full", "dcmh"}, default="djsrh"
            Normalisation of AP@K, see
            :func:`skhash.metrics.average_precision_from_ranking`.
        metric : {"map", "precision"}, default="map"
            Mean average precision or mean precision at ``K``.

        Returns
        -------
        score : float
            The score, in [0, 1]; greater is better.

        Examples
        --------
        >>> import numpy as np
        >>> from skhash.retrieval import ShardedRetriever
        >>> rng = np.random.RandomState(42)
        >>> X, y = rng.randn(60, 5), rng.randint(2, size=60)
        >>> search = ShardedRetriever(n_neighbors=10, n_shards=2).fit(X[:40], y[:40])
        >>> round(search.score(X[40:], y[40:], metric="precision"), 3)
        0.53
        """
        check_is_fitted(self)
        k, directions, depth = _score_plan(
            self, self._has_y, n_neighbors, direction, variant, metric
        )
        n_rel = None
        scores = []
        for d in directions:
            idx = self.kneighbors(X, depth, direction=d, return_distance=False)
            y_top = self._labels_of(idx)  # the database's labels, as stored
            y, _ = _check_label_compat(y, y_top)
            if y.shape[0] != idx.shape[0]:
                raise ValueError(
                    f"y has {y.shape[0]} rows but X holds {idx.shape[0]} queries."
                )
            flat = np.arange(idx.size, dtype=np.int64).reshape(idx.shape)
            rel = ranked_relevance(y, y_top, flat)
            if metric == "precision":
                scores.append(float(rel.mean()))
                continue
            if variant in _NEEDS_N_RELEVANT and n_rel is None:
                counts = self._run_on_shards(_count_relevant, [(y,)] * self.n_shards_)
                n_rel = np.sum(counts, axis=0).astype(np.int64)
            scores.append(_mean_ap(rel, n_rel, variant, k))
        if len(scores) == 2:
            return harmonic_mean(*scores)
        return scores[0]

    def _labels_of(self, idx):
        """Labels of the global rows ``idx``, fetched from their shards."""
        flat = idx.ravel()
        ends = self.shard_offsets_ + self.shard_sizes_
        owner = np.searchsorted(ends, flat, side="right")
        args, ids, picks = [], [], []
        for s in range(self.n_shards_):
            pick = np.flatnonzero(owner == s)
            if pick.size:
                args.append((flat[pick] - self.shard_offsets_[s],))
                ids.append(s)
                picks.append(pick)
        labels = self._run_on_shards(
            _labels_at, args, ids, [self._shards[s] for s in ids]
        )
        # the shards' label dtypes may differ (an add widens only some):
        # the widest holds every label exactly
        dtype = np.result_type(*[lab.dtype for lab in labels])
        out = np.empty((flat.size, *self._y_tail), dtype=dtype)
        for pick, lab in zip(picks, labels):
            out[pick] = lab
        return out

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
