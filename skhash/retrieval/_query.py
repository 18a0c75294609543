"""How :class:`~skhash.retrieval.TwoStageRetriever` answers a query.

The mixin :class:`_QueryEngine` holds the query side of the retriever: the
search direction, the query's parts (bits, codes, embedding) and their
checks against the index, the shortlist size, and the search itself (query
chunks over threads, stage 1 through :mod:`~skhash.retrieval._mih` or
:mod:`~skhash.retrieval._ivf`, stage 2 through the backend's kernels and the
look-up tables). The public :meth:`kneighbors
<skhash.retrieval.TwoStageRetriever.kneighbors>` stays on the estimator.
"""

from __future__ import annotations

import functools
import math
from numbers import Integral

import numpy as np
from sklearn.utils import check_array
from sklearn.utils.validation import validate_data

from skhash._codes import CodeSet
from skhash.quantization import product_blocks
from skhash.quantization._distances import query_shifts, tables_from_tiles
from skhash.quantization._products import tile_rows
from skhash.retrieval import _ivf, _mih
from skhash.retrieval._kernels import _CHUNK_BYTES, get_backend
from skhash.utils._threads import map_threads
from skhash.utils._threads import n_threads as _n_threads
from skhash.utils._validation import check_real_float32

#: Bytes of look-up tables and list keys per chunk of a scan of lists of
#: codes, and the fewest queries per chunk (each chunk costs some Python).
_ADC_CHUNK_BYTES = 8 * 2**20
_MIN_CHUNK = 64

# alpha="auto": L = max(_AUTO_FACTOR * k, ceil(N / _AUTO_FRACTION))
_AUTO_FACTOR = 10
_AUTO_FRACTION = 1000


@functools.lru_cache(maxsize=1)
def _threadpool_controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _lut_blocks(codebooks, kind):
    """``[(start, stop)]`` per codebook when the codebooks are block-diagonal
    product codebooks (so their look-up tables need only their block)."""
    if codebooks is None or kind != "product":
        return None
    n_books, _, d = codebooks.shape
    if n_books > d:
        return None
    blocks = [(int(b[0]), int(b[-1]) + 1) for b in product_blocks(d, n_books)]
    for m, (a, b) in enumerate(blocks):
        if np.any(codebooks[m, :, :a]) or np.any(codebooks[m, :, b:]):
            return None
    return blocks


def _drop_self(idx, dist, rows):
    """Remove each row's own index (or its last column if absent)."""
    c, width = idx.shape
    drop = idx == rows[:, None]
    drop[~drop.any(axis=1), width - 1] = True
    keep = ~drop
    return idx[keep].reshape(c, width - 1), dist[keep].reshape(c, width - 1)


class _QueryEngine:
    """Mixin of :class:`~skhash.retrieval.TwoStageRetriever`: the query side."""

    def _resolve_direction(self, direction, X):
        mods = self.modalities_
        valid = [f"{a}->{b}" for a in mods for b in mods]
        if direction is None:
            if len(mods) != 1:
                raise ValueError(
                    f"This retriever indexes the modalities {mods}; pass "
                    f"direction=, one of {valid}."
                )
            dst = mods[0]
            if X is None or not isinstance(X, CodeSet):
                return dst, dst
            if dst in X.modalities:
                return dst, dst
            if len(X.modalities) == 1:
                return X.modalities[0], dst
            raise ValueError(
                f"X holds the modalities {X.modalities} and the database "
                f"{mods}; pass direction='<query modality>->{dst}'."
            )
        if not isinstance(direction, str) or direction.count("->") != 1:
            raise ValueError(
                f"direction must look like 'img->txt' (query modality -> "
                f"database modality); got {direction!r}. Valid: {valid}."
            )
        src, dst = (s.strip() for s in direction.split("->"))
        if dst not in mods:
            raise ValueError(
                f"Unknown direction {direction!r}: the database modality {dst!r} "
                f"is not indexed (indexed: {mods}). Valid directions: {valid}."
            )
        if X is None and src not in mods:
            raise ValueError(
                f"Unknown direction {direction!r}: with X=None the queries are "
                f"indexed items, and {src!r} is not indexed (indexed: {mods}). "
                f"Valid directions: {valid}."
            )
        return src, dst

    def _query_parts(self, X, src, dst, need):
        """The query parts ``need`` (a set) of modality ``src``, validated."""
        if isinstance(X, CodeSet):
            if src not in X.modalities:
                raise ValueError(
                    f"The queries X hold the modalities {X.modalities}, but the "
                    f"direction '{src}->{dst}' queries with {src!r}; pass a "
                    f"CodeSet with modality {src!r} (e.g. codes[{src!r}]) or "
                    "change direction."
                )
            parts = {p: X.get(src, p) for p in ("bits", "codes", "embedding")}
            n_bits, q_fingerprint = X.n_bits, X.fingerprint
        elif X is None:
            raise TypeError("X must not be None here.")
        else:
            if isinstance(X, (str, bytes, dict)) or not hasattr(X, "__len__"):
                raise TypeError(
                    "X must be a CodeSet or a 2-D array of query embeddings; got "
                    f"{type(X).__name__}."
                )
            if hasattr(self, "n_features_in_"):
                X = validate_data(self, X, reset=False, dtype=[np.float32, np.float64])
            else:
                X = check_array(X, dtype=[np.float32, np.float64], input_name="X")
            parts = {
                "bits": None,
                "codes": None,
                "embedding": check_real_float32(
                    X,
                    "the query embeddings X",
                    "check the model that made them or the inputs.",
                ),
            }
            n_bits, q_fingerprint = None, None
        n_q = next(len(v) for v in parts.values() if v is not None)
        if n_q == 0:
            raise ValueError(
                "X holds 0 queries; pass at least one query to kneighbors/score."
            )
        self._check_query_parts(parts, need, src, n_bits, q_fingerprint, dst)
        if isinstance(X, CodeSet):
            self._check_model(X, "The queries X")
        if "bits" in need:  # junk in the padding bits would change distances
            parts["bits"] = _clean_bits(parts["bits"], self.n_bits_)
        if "codes" in need:
            _check_code_range(
                parts["codes"], self.codebooks_.shape[1], "the query codes"
            )
        return parts, n_q

    def _check_query_parts(self, parts, need, src, n_bits, q_fingerprint, dst):
        if "bits" in need and n_bits is not None and n_bits != self.n_bits_:
            raise ValueError(
                f"The queries have n_bits={n_bits} but the database was indexed "
                f"with n_bits={self.n_bits_}; encode the queries with the same "
                "hasher."
            )
        for p in sorted(need):
            if parts[p] is None:
                why = {
                    "bits": f"the database {dst!r} is indexed with n_bits="
                    f"{self.n_bits_} binary codes (stage 1)",
                    "embedding": "the re-ranking compares float query embeddings "
                    f"(search plan {self.search_plan_[dst]!r})",
                    "codes": "rerank='hamming-codes' compares quantization codes",
                }[p]
                raise ValueError(
                    f"The queries of modality {src!r} carry no {p}, but {why}; "
                    f"pass queries with {p}."
                )
        if "embedding" in need:
            d = parts["embedding"].shape[1]
            if self._plans[dst][1] == "exact":
                want = self._index[dst]["embedding"].shape[1]
                what = "the indexed embeddings"
            else:
                want, what = self.codebooks_.shape[2], "the codebooks"
            if d != want:
                raise ValueError(
                    f"The query embeddings have {d} dimensions but {what} have "
                    f"d={want}; pass embeddings from the same model."
                )
            if not np.isfinite(parts["embedding"]).all():
                raise ValueError("The query embeddings contain NaN or inf.")
        uses_codebooks = "codes" in need or (
            "embedding" in need and self._plans[dst][1] in ("aqd", "aqd-l2")
        )
        if (
            uses_codebooks
            and q_fingerprint is not None
            and q_fingerprint != self.codebooks_fingerprint_
        ):
            what = "quantization codes" if "codes" in need else "embeddings"
            raise ValueError(
                f"The queries' {what} come with other codebooks (fingerprint "
                f"{q_fingerprint}) than the indexed ones (fingerprint "
                f"{self.codebooks_fingerprint_}); encode the queries with the "
                "model that encoded the database."
            )

    def _check_model(self, codes, what):
        """Refuse codes of another model than the indexed ones (when both
        carry a model fingerprint: hand-made codes carry none)."""
        mine = getattr(self, "model_fingerprint_", None)
        theirs = codes.model_fingerprint
        if mine is not None and theirs is not None and mine != theirs:
            raise ValueError(
                f"{what} were encoded by another model (model_fingerprint "
                f"{theirs!r}) than the indexed items ({mine!r}): their codes "
                "are not comparable. Encode them with the learner that made "
                "the index (the same fit), or re-index."
            )

    def _needs(self, dst, n_candidates):
        stage1, stage2 = self._plans[dst]
        need = set()
        # a scan of inverted lists of codes ranks lists and items by the
        # query embedding alone (see _ivf.search): no query bits
        if stage1 and not _ivf.scans_codes(self, dst, n_candidates):
            need.add("bits")
        if stage2 != "none" and (not stage1 or n_candidates > 0):
            need.add("codes" if stage2 == "hamming-codes" else "embedding")
        if _ivf.needs_embedding(self, dst):  # it ranks the lists
            need.add("embedding")
        return need

    def _n_candidates(self, n_search, k):
        if isinstance(self.alpha, str):  # "auto"
            L = max(_AUTO_FACTOR * k, -(-self.n_samples_fit_ // _AUTO_FRACTION))
        elif isinstance(self.alpha, Integral):
            L = int(self.alpha)
        else:
            L = round(float(self.alpha) * self.n_samples_fit_)
        return int(min(max(L, 0), n_search))

    def _index_query_parts(self, src, dst, need):
        entry = self._index[src]
        parts = {p: entry.get(p) for p in ("bits", "codes", "embedding")}
        for p in sorted(need):
            if parts[p] is None:
                stored = (
                    "embeddings are indexed only with rerank='exact'"
                    if p == "embedding"
                    else f"modality {src!r} was indexed without {p}"
                )
                raise ValueError(
                    f"kneighbors(X=None) queries with the indexed items of "
                    f"{src!r}, but the search '{src}->{dst}' needs their {p} and "
                    f"{stored}; pass the queries as X instead."
                )
        if "embedding" in need:
            self._check_query_parts(parts, need, src, None, None, dst)
        return parts

    def _validate_search_params(self):
        """``_validate_params``, skipped while every parameter is the very
        object (or, for a str, int or float, an equal value of the same
        type) last validated: a short search spent half its time there
        (70 of 140 us for one query at ``10**6``). The values are held, so
        an object's id cannot be reused by a new value."""
        names = tuple(self._parameter_constraints)
        now = tuple(self.__dict__.get(n, _MISSING) for n in names)
        last = self.__dict__.get("_validated_params")
        if last is not None and len(last) == len(now):
            if all(_same_value(a, b) for a, b in zip(now, last)):
                return
        self._validate_params()
        self.__dict__["_validated_params"] = now

    def _search(self, parts, n_q, dst, k, L, exclude_self):
        backend = get_backend(self.backend)
        n_threads = _n_threads(self.n_jobs)
        if self._plans[dst][0]:  # build / extend MIH tables or lists before threads
            if self.stage1 == "ivf":
                _ivf.ensure(self, dst)
            else:
                _mih.stage1_index(self, dst, max(L, k) + exclude_self)
            # stage 1 chunks its Hamming matrices itself; bound the stage-2
            # gathers of (chunk, max(L, k)) codes, tables and distances
            n_books, n_words = (
                (0, 0) if self.codebooks_ is None else self.codebooks_.shape[:2]
            )
            per_query = (max(L, k) + 1) * (n_books + 40) + 4 * n_books * n_words
        else:  # stage 2 scores (chunk, N) items at once
            per_query = 24 * max(self.n_samples_fit_, 1)
        per_chunk = _CHUNK_BYTES // per_query
        if _ivf.scans_codes(self, dst, L):
            # the scan of lists of codes keeps no (chunk, L) arrays: chunks
            # small enough that a chunk's look-up tables and list keys stay
            # in the cache from one kernel to the next
            n_lists = self._ivf_cache[dst].nlist
            per_query = 4 * n_books * n_words + 12 * n_lists
            per_chunk = max(_MIN_CHUNK, _ADC_CHUNK_BYTES // per_query)
        n_chunks = math.ceil(n_q / max(1, per_chunk))
        # whole rounds of equal chunks: with 3 chunks on 2 threads one thread
        # would run 2 while the other idles (1.1-1.2x at L = 2,000-4,000)
        n_chunks = math.ceil(n_chunks / n_threads) * n_threads
        step = max(1, math.ceil(n_q / n_chunks))
        slices = [slice(s, min(s + step, n_q)) for s in range(0, n_q, step)]

        fused = None  # lists of codes: one compiled call per chunk, if it can
        if self._plans[dst][0] and _ivf.scans_codes(self, dst, L):
            rows = np.arange(n_q) if exclude_self else None
            n_short = max(L, k) + exclude_self
            fused = _ivf.fused_scan(self, backend, parts, rows, dst, k, n_short)
        if fused is not None:  # compiled kernels only: no BLAS to hold back
            scan, dist, idx = fused
            map_threads(scan, slices, n_threads)
            return dist, idx

        def run(sl):
            q = {p: v[sl] for p, v in parts.items()}
            rows = np.arange(sl.start, sl.stop) if exclude_self else None
            return self._search_chunk(backend, q, rows, dst, k, L)

        with _threadpool_controller().limit(limits=1, user_api="blas"):
            results = map_threads(run, slices, n_threads)
        dist = np.concatenate([r[0] for r in results], axis=0)
        idx = np.concatenate([r[1] for r in results], axis=0)
        return dist, idx

    def _search_chunk(self, backend, q, rows, dst, k, L):
        """Both stages for the queries ``q`` (a chunk); the queries whose
        look-up tables need scaling (see :meth:`_table_shifts`) are searched
        in groups of one scale, the others as they always were."""
        shifts = self._table_shifts(q, dst)
        if shifts is None:
            return self._search_rows(backend, q, rows, dst, k, L)
        e = self._lut_shift
        parts, order = [], []
        for a in np.unique(shifts):
            sel = np.flatnonzero(shifts == a)
            sub = {p: v[sel] for p, v in q.items()}
            sub["lut_shift"] = (e, int(a))
            sub_rows = None if rows is None else rows[sel]
            parts.append(self._search_rows(backend, sub, sub_rows, dst, k, L))
            order.append(sel)
        back = np.argsort(np.concatenate(order), kind="stable")
        dist = np.concatenate([d for d, _ in parts], axis=0)[back]
        idx = np.concatenate([i for _, i in parts], axis=0)[back]
        return dist, idx

    def _table_shifts(self, q, dst):
        """Per query of ``q``, the exponent ``a`` of its look-up tables'
        scaling (int64 array), or None where no table is scaled (codebooks
        and queries of ordinary magnitude: the tables, distances and
        results are those of the plain float32 computation, bit for bit).

        Codebooks of extreme magnitude are kept scaled by ``2**-e``
        (``_lut_shift``, from ``_distances.codebook_shift``), and each
        query is scaled by ``2**-(e + a)`` (``_distances.query_shifts``,
        from its largest magnitude and the scaled codebooks'): powers of
        two, so the tables are exactly those of the data at an ordinary
        magnitude, and the distances are scaled back by ``2**(2 e + a)`` in
        float64."""
        stage2 = self._plans[dst][1]
        if "embedding" not in q or stage2 not in ("aqd", "aqd-l2"):
            return None
        e = getattr(self, "_lut_shift", 0)
        peak = getattr(self, "_lut_peak", None)
        if peak is None:  # an index made before the scaling was kept
            return None
        metric = "ip" if stage2 == "aqd" else "l2"
        a = query_shifts(q["embedding"], e, peak, metric)
        if a is None and e:
            a = np.zeros(len(q["embedding"]), dtype=np.int64)
        return a

    def _search_rows(self, backend, q, rows, dst, k, L):
        stage1, stage2 = self._plans[dst]
        db = self._index[dst]
        if not stage1:
            d2 = self._stage2(backend, q, None, stage2, db)
            if rows is not None:
                d2[np.arange(len(rows)), rows] = np.inf
            idx, dist = backend.topk(d2, k)
            return dist, idx
        n_short = max(L, k)
        ip_luts = None  # the queries' inner-product tables, when both stages use them
        if _ivf.scans_codes(self, dst, L):
            # inverted lists of codes: every item of the probed lists re-ranked
            ip_luts = self._tables(q, "ip")
            return _ivf.search(
                self, backend, q, rows, dst, k, n_short + (rows is not None), ip_luts
            )
        if self.stage1 == "ivf":
            # the shortlist's order only matters where it is returned or cut
            ordered = rows is not None or stage2 == "none" or L < k
            if _ivf.needs_embedding(self, dst):  # the lists are ranked by them
                ip_luts = self._tables(q, "ip")
            idx, hd = _ivf.stage1_shortlist(
                self, backend, q, dst, n_short + (rows is not None), ordered, ip_luts
            )
        else:
            idx, hd = _mih.stage1_shortlist(
                self, backend, q["bits"], dst, n_short + (rows is not None)
            )
        if rows is not None:
            idx, hd = _drop_self(idx, hd, rows)
        if stage2 == "none" or L == 0:
            return hd[:, :k].astype(np.float64), idx[:, :k]
        cand = idx[:, :L]
        d2 = self._stage2(backend, q, cand, stage2, db, ip_luts)
        top_idx, top_d = backend.topk(d2, min(k, L), cand)
        if L >= k:
            return top_d, top_idx
        return (
            np.concatenate([top_d, hd[:, L:k].astype(np.float64)], axis=1),
            np.concatenate([top_idx, idx[:, L:k]], axis=1),
        )

    def _stage2(self, backend, q, cand, mode, db, ip_luts=None):
        """Stage-2 distances (smaller is closer), float64, (c, L) or (c, N);
        ``ip_luts``: the queries' inner-product tables, if already made."""
        if mode == "hamming-codes":
            d = backend.rerank_code_hamming(q["codes"], db["codes"], cand)
            return d.astype(np.float64)
        if mode == "exact":
            cos = backend.rerank_exact(q["embedding"], db["embedding"], cand)
            return 1.0 - cos.astype(np.float64)
        emb = q["embedding"]
        e, a = q.get("lut_shift", (0, 0))
        scale = 2 * e + a  # distances are 2**scale times the tables' sums
        if mode == "aqd":
            luts = self._tables(q, "ip") if ip_luts is None else ip_luts
            # negated and widened in one pass (a (c, L) temporary fewer)
            d = np.negative(
                backend.rerank_aqd(luts, cand, db["codes"]), dtype=np.float64
            )
            return np.ldexp(d, scale, out=d) if scale else d
        # aqd-l2: ‖q‖² + Σ_m (‖C_m‖² − 2⟨q, C_m⟩) for product codebooks;
        # ‖q‖² − 2⟨q, x⟩ + ‖x‖² (stored) for additive ones.
        q_sq = np.einsum("qd,qd->q", emb, emb, dtype=np.float64)[:, None]
        if self.codebook_kind_ == "additive":
            luts = self._tables(q, "ip") if ip_luts is None else ip_luts
            ip = backend.rerank_aqd(luts, cand, db["codes"]).astype(np.float64)
            sq = np.asarray(db["sqnorms"], dtype=np.float64)
            sq = sq[None, :] if cand is None else sq[cand]
            if scale:  # the stored norms are those of the scaled codebooks
                ip = np.ldexp(ip, scale, out=ip)
                sq = np.ldexp(sq, 2 * e)
            d = q_sq - 2.0 * ip + sq
        else:
            luts = self._tables(q, "l2")
            s = backend.rerank_aqd(luts, cand, db["codes"])
            d = q_sq + (np.ldexp(s.astype(np.float64), scale) if scale else s)
        return np.maximum(d, 0.0)

    def _tables(self, q, metric):
        """The look-up tables of the queries ``q`` (a chunk), of their
        embeddings scaled as their ``"lut_shift"`` says (see
        :meth:`_table_shifts`; none: the embeddings themselves)."""
        e, a = q.get("lut_shift", (0, 0))
        emb = q["embedding"]
        if e or a:
            emb = np.ldexp(emb, -(e + a))
        return self._lookup_tables(emb, metric, a)

    def _lookup_tables(self, emb, metric, norm_shift=0):
        """:func:`~skhash.quantization.lookup_tables` (the same bits for
        codebooks of ordinary magnitude), from the tiles kept by the index
        (of the codebooks scaled by ``2**-e``, see :meth:`_table_shifts`);
        for block-diagonal (product) codebooks block by block: ``M`` times
        fewer flops. ``norm_shift``: see
        :func:`~skhash.quantization._distances.tables_from_tiles`."""
        tiles = getattr(self, "_lut_tiles", None)
        C = getattr(self, "_lut_codebooks", None)
        if C is None:
            C = self.codebooks_
        if tiles is None or emb.dtype != np.float32:
            C = np.ascontiguousarray(C, dtype=np.float32)
            flat = C.reshape(-1, C.shape[-1])
            return tables_from_tiles(
                emb, tile_rows(flat, emb.dtype), C, metric, norm_shift=norm_shift
            )
        if self._lut_blocks is None:
            return tables_from_tiles(emb, tiles, C, metric, norm_shift=norm_shift)
        luts = np.empty((emb.shape[0], *C.shape[:2]), dtype=np.float32)
        for m, (a, b) in enumerate(self._lut_blocks):
            block = np.ascontiguousarray(emb[:, a:b])
            luts[:, m, :] = tables_from_tiles(
                block, tiles[m], C[m : m + 1, :, a:b], metric, norm_shift=norm_shift
            )[:, 0]
        return luts


_MISSING = object()


def _same_value(a, b):
    """Whether parameter value ``a`` is ``b`` (or equals it, for a str,
    int or float of the same type)."""
    if a is b:
        return True
    return type(a) is type(b) and type(a) in (str, int, float) and a == b


def _lut_tiles(codebooks, blocks):
    """The codewords' tiles for :meth:`_QueryEngine._lookup_tables`: one set
    for the whole codebooks, or one per block of product codebooks."""
    if codebooks is None:
        return None
    C = np.asarray(codebooks, dtype=np.float32)
    if blocks is None:
        return tile_rows(C.reshape(-1, C.shape[-1]), np.float32)
    return [tile_rows(C[m, :, a:b], np.float32) for m, (a, b) in enumerate(blocks)]


def _check_code_range(codes, n_codewords, what):
    """Raise unless every code is below ``n_codewords`` (the kernels index
    look-up tables with them, unchecked)."""
    if codes.size and int(codes.max()) >= n_codewords:
        raise ValueError(
            f"{what} must lie in [0, {n_codewords}) for n_codewords={n_codewords}; "
            f"got {int(codes.max())}. The array was changed after the CodeSet "
            "was made; encode the items again."
        )


def _clean_bits(bits, n_bits):
    """Zero the padding bits of the last byte (copying only if needed)."""
    pad = (-n_bits) % 8
    if pad == 0 or bits.shape[1] == 0:
        return bits
    mask = np.uint8((0xFF << pad) & 0xFF)
    if np.any(bits[:, -1] & ~mask):
        bits = bits.copy()
        bits[:, -1] &= mask
    return bits
