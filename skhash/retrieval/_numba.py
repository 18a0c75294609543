"""Compiled search kernels (numba): the ``"numba"`` backend.

Same interface and results as :class:`~skhash.retrieval._kernels.NumpyBackend`
(the reference), ties included, with the two hot paths compiled:

* **Stage 1** (:meth:`NumbaBackend.shortlist`) fuses the XOR-popcount with
  the selection of the ``L`` nearest codes, with no distance matrix and no
  sort of the ``N`` distances. The database streams through the cache in
  chunks of about 16 KiB, copied into a scratch of zero-padded 32- or
  64-bit words (so any bit length works, from any array of packed bytes,
  memory-mapped or not); every query of a block scans the chunk while it
  is hot, so the database is read once per block of queries, and a block of
  queries is as large as a bounded amount of per-query state allows (all
  queries of a call for ``L = 100``). Per query, a *running threshold* ``t``
  (the smallest distance with at least ``L`` items at or below it among the
  items seen so far) rejects items 64 at a time with one vectorised
  compare; the rare survivors go to a bounded buffer of ``2 L + 64``
  entries and a histogram of their distances. As the database is scanned
  in index order, an item at distance ``t`` is never better than the ``L``
  already kept, so ``d < t`` is the exact acceptance test and ties keep
  the lower database index. When the buffer fills it is compacted back to
  the current ``L`` best. At the end a counting sort over the distance
  orders the ``L`` by (distance, database index).
* **Stage 2** (:meth:`NumbaBackend.rerank_aqd`) sums the look-up-table
  entries of each candidate in float32, codebook after codebook, exactly
  as the numpy reference does (so the sums are bit-identical), prefetching
  the scattered code rows of the candidates ahead of use, and
  :meth:`NumbaBackend.topk` selects the ``k`` best by (distance, index)
  with an insertion buffer (``k <= 64``) or a bounded heap.

The stage-1 kernels are in :mod:`skhash.retrieval._numba_scan`, the bit
intrinsics in :mod:`skhash.retrieval._numba_bits`; this module keeps the
stage-2 and top-k kernels, the lazy compilation and the backend.

Every kernel is compiled with ``cache=True`` (the machine code is stored
next to this file, in ``__pycache__``, and reused by later processes) and
``nogil=True``, so the estimator runs them on several threads at once.

Compiling the kernels takes 10 to 30 s on a fresh install, loading them from
the cache about half a second. The backend of ``backend="auto"``
(``NumbaBackend(lazy=True)``) never makes a small call wait for that: a call
whose kernel (for its argument types, e.g. its code width) is not loaded yet
starts loading or compiling it on a background thread and is answered by the
numpy reference, which returns exactly the same results; later calls use the
kernel once it is ready. Calls large enough to amortise the compile time
(``_EAGER_WORK``) wait for it instead. :func:`warmup` loads the kernels
ahead of time.
"""

from __future__ import annotations

import sys
import threading

import numpy as np
from numba import njit, typeof

from skhash.retrieval._kernels import NumpyBackend, _check_bits, _check_no_nan
from skhash.retrieval._numba_bits import _popcount, _prefetch  # noqa: F401 (_popcount: re-exported)
from skhash.retrieval._numba_scan import GROUP, _shortlist_kernel

__all__ = ["NumbaBackend", "warmup"]

# Bytes of database words per streamed chunk (L1-sized).
_CHUNK_BYTES = 16 * 2**10
# Bytes of per-query selection state (buffers, histograms) of one block.
_STATE_BYTES = 32 * 2**20
# Candidates ahead whose codes stage 2 prefetches.
_PREFETCH = 16
# Shortest shortlist that starts from a sampled threshold (for shorter ones
# the running threshold settles after few acceptances).
_SAMPLE_MIN_L = 4096
# Work (pairs scored) from which a lazy backend compiles in the foreground:
# the numpy reference would take longer than compiling (about 10 s).
_EAGER_WORK = 2**31


# --------------------------------------------------------------------------- #
# Lazy compilation
# --------------------------------------------------------------------------- #

_compiling = {}  # (kernel, argument types) -> threading.Event, set when done
_compiling_lock = threading.Lock()


def _background_compile(kernel, sig, done):
    try:
        kernel.compile(sig)  # loads from the on-disk cache when it can
    except Exception:  # noqa: BLE001 - the numpy path keeps answering
        pass
    finally:
        done.set()


def _kernel_ready(kernel, args, work, lazy):
    """Whether to call ``kernel(*args)`` now.

    True when it is compiled for these argument types, or when the backend
    is not lazy or the call is big (``work >= _EAGER_WORK``): calling then
    compiles (or loads) it in the foreground. Otherwise a background thread
    compiles it, and False tells the caller to use the numpy reference.
    """
    if not lazy or work >= _EAGER_WORK:
        return True
    sig = tuple(typeof(a) for a in args)
    if sig in kernel.overloads:
        return True
    with _compiling_lock:
        done = _compiling.get((kernel, sig))
        if done is None:
            done = _compiling[(kernel, sig)] = threading.Event()
            threading.Thread(
                target=_background_compile,
                args=(kernel, sig, done),
                name="skhash-numba-compile",
                daemon=True,
            ).start()
    return done.is_set() and sig in kernel.overloads


# --------------------------------------------------------------------------- #
# Stage 2 and top-k
# --------------------------------------------------------------------------- #


@njit(cache=True, nogil=True, boundscheck=False)
def _aqd_candidates(luts, cand, codes, out):
    """``out[q, j] = Σ_m luts[q, m, codes[cand[q, j], m]]`` in float32.

    The candidates' code rows are scattered over the database: each is
    prefetched ``_PREFETCH`` candidates ahead, so their cache misses overlap.
    Four candidates are summed side by side (four independent chains of
    additions instead of one; each sum still runs over ``m`` in order, so
    the bits are those of the numpy reference).
    """
    n_books = luts.shape[1]
    flat = codes.reshape(-1)
    n_cand = cand.shape[1]
    for q in range(cand.shape[0]):
        lq = luts[q]
        for j in range(min(_PREFETCH, n_cand)):
            _prefetch(flat, cand[q, j] * n_books)
        j = 0
        while j + 4 <= n_cand:
            for t in range(j + _PREFETCH, min(j + _PREFETCH + 4, n_cand)):
                _prefetch(flat, cand[q, t] * n_books)
            r0, r1, r2, r3 = cand[q, j], cand[q, j + 1], cand[q, j + 2], cand[q, j + 3]
            s0 = s1 = s2 = s3 = np.float32(0.0)
            for m in range(n_books):
                lm = lq[m]
                s0 += lm[codes[r0, m]]
                s1 += lm[codes[r1, m]]
                s2 += lm[codes[r2, m]]
                s3 += lm[codes[r3, m]]
            out[q, j], out[q, j + 1], out[q, j + 2], out[q, j + 3] = s0, s1, s2, s3
            j += 4
        for j in range(j, n_cand):
            r = cand[q, j]
            s = np.float32(0.0)
            for m in range(n_books):
                s += lq[m, codes[r, m]]
            out[q, j] = s


@njit(cache=True, nogil=True, boundscheck=False)
def _aqd_all(luts, codes, out):
    """``out[q, i] = Σ_m luts[q, m, codes[i, m]]`` for every item, float32;
    four items side by side, as :func:`_aqd_candidates`."""
    n_books = luts.shape[1]
    n = codes.shape[0]
    for q in range(luts.shape[0]):
        lq = luts[q]
        i = 0
        while i + 4 <= n:
            s0 = s1 = s2 = s3 = np.float32(0.0)
            for m in range(n_books):
                lm = lq[m]
                s0 += lm[codes[i, m]]
                s1 += lm[codes[i + 1, m]]
                s2 += lm[codes[i + 2, m]]
                s3 += lm[codes[i + 3, m]]
            out[q, i], out[q, i + 1], out[q, i + 2], out[q, i + 3] = s0, s1, s2, s3
            i += 4
        for i in range(i, n):
            s = np.float32(0.0)
            for m in range(n_books):
                s += lq[m, codes[i, m]]
            out[q, i] = s


#: Byte ``b`` of a code word is ``(word >> _BYTE_SHIFT * b) & 255`` on a
#: little-endian machine; a big-endian one holds byte ``b`` at ``7 - b``.
_LITTLE = sys.byteorder == "little"


def code_words(codes):
    """The rows of uint8 ``codes`` as uint64 words, 8 codes each (read
    with :func:`_code`), where they are C-contiguous with a multiple of 8
    codes a row; else None. The kernels then load each word once."""
    if (
        codes.dtype == np.uint8
        and codes.ndim == 2
        and codes.shape[1]
        and codes.shape[1] % 8 == 0
        and codes.flags.c_contiguous
    ):
        return codes.view(np.uint64)
    return None


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _code(word, b):
    """Byte ``b`` (in memory order) of a 64-bit word of uint8 codes."""
    shift = 8 * b if _LITTLE else 8 * (7 - b)
    return (word >> np.uint64(shift)) & np.uint64(255)


@njit(cache=True, nogil=True, boundscheck=False)
def _aqd_candidates_words(luts, cand, words, out):
    """:func:`_aqd_candidates` on uint8 codes read 8 at a time: ``words``
    is the ``(n_items, M / 8)`` uint64 view of the ``(n_items, M)`` codes.

    One load brings a candidate's 8 codes and shifts take them apart, where
    the byte kernel loads each code on its own: half the loads for the same
    table reads (the keys of the inverted lists: 7.6 -> 3.4 us per query for
    2,000 lists of 8 x 256 codes). Same sums in the same order (``m``
    ascending), so the same bits."""
    n_words = words.shape[1]
    flat = words.reshape(-1)
    n_cand = cand.shape[1]
    for q in range(cand.shape[0]):
        lq = luts[q]
        for j in range(min(_PREFETCH, n_cand)):
            _prefetch(flat, cand[q, j] * n_words)
        j = 0
        while j + 4 <= n_cand:
            for t in range(j + _PREFETCH, min(j + _PREFETCH + 4, n_cand)):
                _prefetch(flat, cand[q, t] * n_words)
            r0, r1, r2, r3 = cand[q, j], cand[q, j + 1], cand[q, j + 2], cand[q, j + 3]
            s0 = s1 = s2 = s3 = np.float32(0.0)
            for wi in range(n_words):
                w0, w1, w2, w3 = (
                    words[r0, wi],
                    words[r1, wi],
                    words[r2, wi],
                    words[r3, wi],
                )
                for b in range(8):
                    lm = lq[8 * wi + b]
                    s0 += lm[_code(w0, b)]
                    s1 += lm[_code(w1, b)]
                    s2 += lm[_code(w2, b)]
                    s3 += lm[_code(w3, b)]
            out[q, j], out[q, j + 1], out[q, j + 2], out[q, j + 3] = s0, s1, s2, s3
            j += 4
        for j in range(j, n_cand):
            r = cand[q, j]
            s = np.float32(0.0)
            for wi in range(n_words):
                w = words[r, wi]
                for b in range(8):
                    s += lq[8 * wi + b, _code(w, b)]
            out[q, j] = s


@njit(cache=True, nogil=True, boundscheck=False)
def _aqd_all_words(luts, words, out):
    """:func:`_aqd_all` on uint8 codes read 8 at a time (see
    :func:`_aqd_candidates_words`)."""
    n, n_words = words.shape
    for q in range(luts.shape[0]):
        lq = luts[q]
        i = 0
        while i + 4 <= n:
            s0 = s1 = s2 = s3 = np.float32(0.0)
            for wi in range(n_words):
                w0, w1, w2, w3 = (
                    words[i, wi],
                    words[i + 1, wi],
                    words[i + 2, wi],
                    words[i + 3, wi],
                )
                for b in range(8):
                    lm = lq[8 * wi + b]
                    s0 += lm[_code(w0, b)]
                    s1 += lm[_code(w1, b)]
                    s2 += lm[_code(w2, b)]
                    s3 += lm[_code(w3, b)]
            out[q, i], out[q, i + 1], out[q, i + 2], out[q, i + 3] = s0, s1, s2, s3
            i += 4
        for i in range(i, n):
            s = np.float32(0.0)
            for wi in range(n_words):
                w = words[i, wi]
                for b in range(8):
                    s += lq[8 * wi + b, _code(w, b)]
            out[q, i] = s


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _worse(d1, i1, d2, i2):
    """(d1, i1) ranks after (d2, i2)."""
    return d1 > d2 or (d1 == d2 and i1 > i2)


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _sift_down(hd, hi, pos, size):
    d, i = hd[pos], hi[pos]
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        if child + 1 < size and _worse(
            hd[child + 1], hi[child + 1], hd[child], hi[child]
        ):
            child += 1
        if not _worse(hd[child], hi[child], d, i):
            break
        hd[pos] = hd[child]
        hi[pos] = hi[child]
        pos = child
    hd[pos] = d
    hi[pos] = i


@njit(cache=True, nogil=True, boundscheck=False)
def _topk_insertion(dist, cand, has_cand, q, k, od, oi):
    """Row ``q``'s ``k`` best into ``od``/``oi`` by insertion (small ``k``)."""
    n = 0
    for j in range(dist.shape[1]):
        d = dist[q, j]
        i = cand[q, j] if has_cand else j
        if n == k:
            if not _worse(od[k - 1], oi[k - 1], d, i):
                continue
            p = k - 1
        else:
            p = n
            n += 1
        while p > 0 and _worse(od[p - 1], oi[p - 1], d, i):
            od[p] = od[p - 1]
            oi[p] = oi[p - 1]
            p -= 1
        od[p] = d
        oi[p] = i


@njit(cache=True, nogil=True, boundscheck=False)
def _topk_heap(dist, cand, has_cand, q, k, od, oi):
    """Row ``q``'s ``k`` best into ``od``/``oi`` with a max-heap (large ``k``)."""
    for j in range(k):
        od[j] = dist[q, j]
        oi[j] = cand[q, j] if has_cand else j
    for pos in range(k // 2 - 1, -1, -1):
        _sift_down(od, oi, pos, k)
    for j in range(k, dist.shape[1]):
        d = dist[q, j]
        i = cand[q, j] if has_cand else j
        if _worse(od[0], oi[0], d, i):
            od[0] = d
            oi[0] = i
            _sift_down(od, oi, 0, k)
    for size in range(k - 1, 0, -1):  # heap sort: move the worst to the back
        d, i = od[0], oi[0]
        od[0], oi[0] = od[size], oi[size]
        od[size], oi[size] = d, i
        _sift_down(od, oi, 0, size)


@njit(cache=True, nogil=True, boundscheck=False)
def _topk_kernel(dist, cand, has_cand, k, out_idx, out_dist):
    """The ``k`` smallest (distance, index) of each row, ascending."""
    for q in range(dist.shape[0]):
        if k <= 64:
            _topk_insertion(dist, cand, has_cand, q, k, out_dist[q], out_idx[q])
        else:
            _topk_heap(dist, cand, has_cand, q, k, out_dist[q], out_idx[q])


# --------------------------------------------------------------------------- #
# The backend
# --------------------------------------------------------------------------- #


def _word_layout(n_bytes):
    """``(word dtype, bytes per word)``: one uint32 for 25 to 32-bit codes
    (twice the SIMD lanes), else uint64 words."""
    return (np.uint32, 4) if n_bytes == 4 else (np.uint64, 8)


def _readonly(a):
    """A read-only view: the kernels see one array type, memory-mapped or not
    (numba compiles writable and read-only arguments separately)."""
    view = a.view()
    view.flags.writeable = False
    return view


def _query_words(q_bits, dtype):
    """Queries as zero-padded words of ``dtype``, shape ``(n, W)``."""
    size = np.dtype(dtype).itemsize
    n, n_bytes = q_bits.shape
    n_words = max(1, -(-n_bytes // size))
    padded = np.zeros((n, n_words * size), dtype=np.uint8)
    padded[:, :n_bytes] = q_bits
    return padded.view(dtype)


class NumbaBackend(NumpyBackend):
    """Compiled search kernels (the backend ``"numba"``).

    Returns exactly what :class:`~skhash.retrieval._kernels.NumpyBackend`
    returns (indices, distances and tie order), with :meth:`shortlist`,
    :meth:`rerank_aqd` and :meth:`topk` compiled by numba, and
    :meth:`rerank_exact` over the whole database on the compiled products
    kernel (the bits of the numpy backend's reference); the other methods
    are the numpy ones. The kernels release the GIL, so
    :class:`~skhash.retrieval.TwoStageRetriever` runs them on ``n_jobs``
    threads.

    Parameters
    ----------
    chunk_bytes : int, default=64 MiB
        Temporary memory of the inherited numpy methods.
    state_bytes : int, default=32 MiB
        Memory of the stage-1 selection state of one block of queries
        (about ``24 L`` bytes per query for a shortlist of ``L``). All
        queries of a call share one pass over the database when their state
        fits; a larger ``L`` splits them into blocks, one pass each.
    lazy : bool, default=False
        When True, a call whose kernel is not compiled yet is answered by
        the numpy reference (same results) while the kernel compiles on a
        background thread, unless the call is large enough to amortise the
        compile; the backend of ``backend="auto"`` is lazy. When False,
        the first call of each kernel compiles it (or loads it from the
        on-disk cache) before answering.

    Attributes
    ----------
    name : str
        ``"numba"``.

    See Also
    --------
    skhash.retrieval.get_backend : Look a backend up by name.
    skhash.retrieval.TwoStageRetriever : The estimator that drives the kernels.

    Notes
    -----
    Stage 1 holds no distance matrix: its memory is the selection state
    (bounded by ``state_bytes``) plus a 16 KiB chunk of the database, so a
    memory-mapped database is streamed from disk, once per block of
    queries. The first call of each kernel compiles it (a few seconds);
    the machine code is cached on disk (``cache=True``) and later processes
    load it in a fraction of a second. :func:`warmup` compiles the common
    variants ahead of time.

    Examples
    --------
    >>> import numpy as np
    >>> from skhash import pack_bits
    >>> from skhash.retrieval import get_backend
    >>> rng = np.random.RandomState(42)
    >>> db, q = pack_bits(rng.randn(500, 33)), pack_bits(rng.randn(3, 33))
    >>> idx, dist = get_backend("numba").shortlist(q, db, 10)
    >>> ref_idx, ref_dist = get_backend("numpy").shortlist(q, db, 10)
    >>> bool((idx == ref_idx).all() and (dist == ref_dist).all())
    True
    """

    name = "numba"
    _compiled_products = True

    def __init__(self, chunk_bytes=64 * 2**20, state_bytes=_STATE_BYTES, lazy=False):
        super().__init__(chunk_bytes=chunk_bytes)
        self.state_bytes = state_bytes
        self.lazy = lazy

    def __repr__(self):
        return (
            f"NumbaBackend(chunk_bytes={self.chunk_bytes}, "
            f"state_bytes={self.state_bytes}, lazy={self.lazy})"
        )

    def shortlist(self, q_bits, db_bits, n_candidates):
        """The ``L`` nearest database items of each query in Hamming distance.

        Same contract as :meth:`NumpyBackend.shortlist
        <skhash.retrieval._kernels.NumpyBackend.shortlist>`: ordered by
        (Hamming distance, database index).

        Parameters
        ----------
        q_bits : ndarray of shape (n_queries, n_bytes), dtype uint8
            Packed query codes.
        db_bits : ndarray of shape (n_items, n_bytes), dtype uint8
            Packed database codes (may be a memory map).
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
        >>> get_backend("numba").shortlist(np.array([[1]], dtype=np.uint8), db, 3)
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
        dtype, bytes_per_word = _word_layout(q.shape[1])
        qw = _query_words(q, dtype)
        n_words = qw.shape[1]
        word_bytes = n_words * qw.itemsize
        chunk = max(GROUP, (_CHUNK_BYTES // word_bytes) // GROUP * GROUP)
        per_query = 16 * (2 * L + 64) + 8 * (8 * word_bytes + 2) + 24
        block = int(max(1, min(n_q, self.state_bytes // per_query)))
        # a sampled starting threshold pays off for long shortlists
        n_sample = -(-16 * n // L) if L >= _SAMPLE_MIN_L else n
        n_sample = n_sample if n_sample <= n // 8 else 0
        db = _readonly(db)
        dist64 = np.empty((n_q, L), dtype=np.int64)
        ok = np.empty(n_q, dtype=np.bool_)
        args = (qw, db, bytes_per_word, L, chunk, block, n_sample, indices, dist64, ok)
        if not _kernel_ready(_shortlist_kernel, args, n_q * n, self.lazy):
            return NumpyBackend.shortlist(self, q_bits, db_bits, n_candidates)
        _shortlist_kernel(*args)
        if not ok.all():  # unlucky samples: search those queries again
            redo = np.flatnonzero(~ok)
            idx2 = np.empty((len(redo), L), dtype=np.int64)
            dist2 = np.empty((len(redo), L), dtype=np.int64)
            _shortlist_kernel(
                np.ascontiguousarray(qw[redo]),
                db,
                bytes_per_word,
                L,
                chunk,
                block,
                0,
                idx2,
                dist2,
                np.empty(len(redo), dtype=np.bool_),
            )
            indices[redo], dist64[redo] = idx2, dist2
        distances[:] = dist64
        return indices, distances

    def rerank_aqd(self, luts, cand_idx, db_codes):
        """Sum look-up-table entries of the candidates' quantization codes.

        Same contract (and bit-identical float32 sums) as
        :meth:`NumpyBackend.rerank_aqd
        <skhash.retrieval._kernels.NumpyBackend.rerank_aqd>`.

        Parameters
        ----------
        luts : ndarray of shape (n_queries, M, K), float32
            Per-query tables.
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
        >>> get_backend("numba").rerank_aqd(luts, np.array([[1, 0]]), codes)
        array([[8., 4.]], dtype=float32)
        """
        luts = np.ascontiguousarray(luts, dtype=np.float32)
        codes = np.asarray(db_codes)
        if codes.dtype not in (np.uint8, np.uint16) or not codes.flags.c_contiguous:
            codes = np.ascontiguousarray(
                codes, dtype=codes.dtype if codes.dtype.kind == "u" else np.intp
            )
        luts, codes = _readonly(luts), _readonly(codes)
        words = code_words(codes)
        if cand_idx is None:
            out = np.empty((luts.shape[0], codes.shape[0]), dtype=np.float32)
            if words is None:
                kernel, args = _aqd_all, (luts, codes, out)
            else:
                kernel, args = _aqd_all_words, (luts, words, out)
        else:
            cand = _readonly(np.ascontiguousarray(cand_idx, dtype=np.int64))
            out = np.empty(cand.shape, dtype=np.float32)
            if words is None:
                kernel, args = _aqd_candidates, (luts, cand, codes, out)
            else:
                kernel, args = _aqd_candidates_words, (luts, cand, words, out)
        if not _kernel_ready(kernel, args, out.size * codes.shape[1], self.lazy):
            return NumpyBackend.rerank_aqd(self, luts, cand_idx, db_codes)
        kernel(*args)
        return out

    def topk(self, distances, n_neighbors, cand_idx=None):
        """The ``k`` smallest distances of each row, by (distance, index).

        Same contract as :meth:`NumpyBackend.topk
        <skhash.retrieval._kernels.NumpyBackend.topk>`; per row a sorted
        insertion buffer for ``k <= 64``, else a bounded max-heap
        (``O(L log k)``).

        Parameters
        ----------
        distances : ndarray of shape (n_queries, L)
            Distances (smaller is closer); ``inf`` marks excluded items. NaN
            has no rank and raises a ``ValueError``.
        n_neighbors : int
            ``k``; clipped to ``L``.
        cand_idx : ndarray of shape (n_queries, L), int64, default=None
            The database row of each column; ``None`` means column ``j`` is
            item ``j``.

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
        >>> get_backend("numba").topk(np.array([[0.5, 0.1, 0.5, 0.2]]), 3)
        (array([[1, 3, 0]]), array([[0.1, 0.2, 0.5]]))
        """
        dist = np.ascontiguousarray(distances, dtype=np.float64)
        _check_no_nan(dist)
        n_q, L = dist.shape
        k = int(min(n_neighbors, L))
        out_idx = np.empty((n_q, k), dtype=np.int64)
        out_dist = np.empty((n_q, k), dtype=np.float64)
        if k == 0 or n_q == 0:
            return out_idx, out_dist
        if cand_idx is None:
            cand, has_cand = np.zeros((1, 1), dtype=np.int64), False
        else:
            cand, has_cand = np.ascontiguousarray(cand_idx, dtype=np.int64), True
        args = (_readonly(dist), _readonly(cand), has_cand, k, out_idx, out_dist)
        if not _kernel_ready(_topk_kernel, args, dist.size, self.lazy):
            return NumpyBackend.topk(self, distances, n_neighbors, cand_idx)
        _topk_kernel(*args)
        return out_idx, out_dist


def warmup():
    """Compile (or load from the on-disk cache) the common kernel variants.

    Runs each kernel once on tiny inputs: stage 1 for 32-bit words (codes
    of 25 to 32 bits) and 64-bit words (any other length), stage 2 for
    uint8 and uint16 codes, and top-k. Call it at start-up to keep the
    compile time off the first query; it returns the seconds it took.

    Returns
    -------
    seconds : float
        Wall time of the warm-up (compile time on a cold cache).

    Examples
    --------
    >>> from skhash.retrieval._numba import warmup
    >>> warmup() >= 0.0
    True
    """
    import time

    t0 = time.perf_counter()
    be = NumbaBackend()
    rng = np.random.RandomState(0)
    for n_bytes in (4, 8):
        db = rng.randint(256, size=(70, n_bytes)).astype(np.uint8)
        be.shortlist(db[:2], db, 3)
    luts = np.zeros((1, 2, 4), dtype=np.float32)
    for dtype in (np.uint8, np.uint16):
        codes = np.zeros((3, 2), dtype=dtype)
        be.rerank_aqd(luts, np.zeros((1, 2), dtype=np.int64), codes)
        be.rerank_aqd(luts, None, codes)
    be.topk(np.zeros((1, 3)), 2, np.zeros((1, 3), dtype=np.int64))
    be.topk(np.zeros((1, 3)), 2)
    return time.perf_counter() - t0
