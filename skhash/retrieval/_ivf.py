"""Inverted-file (IVF) stage 1: probe a few coarse lists, scan their codes.

The stage 1 of :class:`~skhash.retrieval.TwoStageRetriever` with
``stage1="ivf"``, in the vocabulary of faiss's ``IndexIVF``: ``nlist``
coarse centroids partition the database (each item in the list of its
nearest centroid; from 1,024 lists of codes on, of its nearest centroid
among the lists of its 8 nearest groups of lists, the groups of
``quantizer_nprobe``), and a query scans only the items of the ``nprobe``
lists whose centroids score best for it (and of the next ones, in that
order, while they hold fewer items than the shortlist needs: ``L`` is never
cut). Approximate: with ``nprobe <
nlist`` an item outside the probed lists is never a candidate; with
``nprobe = nlist`` every item is.

**Two kinds of lists.** Lists of quantization codes (``rerank="aqd"`` or
``"aqd-l2"``) keep a list-ordered copy of the codes, and a search scores
*every* item of its probed lists by its asymmetric distance (faiss's
IVF-ADC scan, :meth:`InvertedLists.search`): the probed lists are the
shortlist, and all of it is re-ranked, so with ``nprobe = nlist`` the
results are those of re-ranking the whole database (``alpha=1.0``). A
Hamming filter inside the lists only lost recall: on learned HQ codes at
``N = 10**6`` (64 bits + 8 x 256 codes) the scan of the same lists gave
recall@50 0.23 where keeping the ``L = 100`` nearest in Hamming distance
gave 0.11, at about the same speed. Lists of bits (the other re-rankings, or
``alpha=0``) keep a list-ordered copy of the bits, and a search keeps the
``L`` items of its probed lists nearest in Hamming distance, then re-ranks
them; with ``nprobe = nlist`` the results are exactly those of the
exhaustive scan.

**Coarse space.** Where the re-ranking compares the float query with the
items' reconstructions (``rerank="aqd"`` or ``"aqd-l2"`` over quantization
codes), the centroids are k-means centroids of the reconstructions
``x = Σ_m C_m[c_m]`` (rebuilt from the codes and ``codebooks_``, block by
block: the index keeps no embeddings), themselves encoded with the same
codebooks: a centroid is the reconstruction ``ĉ`` of its own codes. An item
belongs to the list of its nearest ``ĉ`` in squared L2 (its Voronoi cell),
and a query probes the lists of largest ``⟨q, ĉ⟩`` for ``"aqd"`` and of
smallest ``‖q - ĉ‖²`` for ``"aqd-l2"``, both read from the query's inner-
product look-up tables (``M`` additions per list, the cost of re-ranking
``nlist`` items, instead of a ``d``-dimensional product per list: at
``N = 10**6``, 2,000 lists, 64 dimensions and 8 x 256 codes, the list
ranking fell from 13 to about 3 us per query, for recall@50 within 0.015).
Elsewhere (bits only, ``"hamming-codes"``, ``"exact"``, ``"none"``) the
centroids are k-means centroids of the ``±1`` bits, binarised (faiss's
``IndexBinaryIVF``); items and queries go by Hamming distance to them.
Ties go to the lower list id everywhere.

**Groups of lists** (``quantizer_nprobe``). Ranking every list costs
``nlist * M`` table additions per query. :meth:`InvertedLists.groups`
clusters the coded centroids into about ``sqrt(nlist)`` groups (their
centres encoded with the codebooks too), and a grouped probe
(:meth:`InvertedLists.probe_lists`) ranks the groups first and then the
lists of its best groups only, each list's key the same bits as in the full
ranking: with every group probed the lists are those of the full ranking.
``"auto"`` groups from ``GROUPED_MIN_NLIST`` lists on. Lists of bits
(Hamming keys, one word per list) are never grouped.

**One call per chunk.** Where it applies (numba backend, additive
codebooks, tables of ordinary magnitude), :func:`fused_scan` prepares a
whole call once and each chunk of queries is one compiled call
(``_ivf_kernels._ivf_scan``: tables, keys, probe and scan, without the GIL
in between), which lets two threads scale; elsewhere the chunks run
:func:`search`. The same kernels on the same numbers: the same bits.

**Build.** k-means (:func:`_lloyd`: centroids drawn among the sample,
then ``N_ITER`` Lloyd iterations) on a sample of at most
``TRAIN_POINTS_PER_LIST * nlist`` items drawn from the first ``n_train``
items with a recorded seed; then every item is assigned in blocks (each
distinct code scored once). From ``GROUPED_ASSIGN_MIN_NLIST`` lists on,
both assign a row among the lists of its ``ASSIGN_GROUPS`` nearest groups
of centroids (k-means groups of each Lloyd iteration's centroids; for the
items, the groups of ``quantizer_nprobe``). Both score items against centroids with the
ordered sums of :mod:`~skhash.retrieval._ivf_assign`, on ``n_jobs``
threads, so a rebuild from the same seed and items gives the same lists
whatever the threads. The lists are stored as CSR:
``offsets`` (``nlist + 1``), the item ids sorted by list then by id, and a
copy of the items' codes (or bits, padded to 64-bit words) in that order,
so that a probe reads contiguous memory.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.utils import check_random_state

from skhash.exceptions import IndexFormatError
from skhash.retrieval._ivf_lists import (  # noqa: F401 (re-exported)
    InvertedLists,
    _bad_int,
    check_nlist,
    default_nlist,
)
from skhash.utils._threads import n_threads

__all__ = ["InvertedLists", "default_nlist"]

#: ``nprobe``'s default: with the widening rule of :meth:`InvertedLists.probe`
#: it scans the nearest lists that hold the shortlist, which measured best in
#: recall and speed on learned codes (User Guide, "Approximate stage 1").
DEFAULT_NPROBE = 1
#: ``quantizer_nprobe="auto"``: from this many lists on (``nlist=None``
#: from about ``N = 2.6 * 10**5``), a query ranks groups of lists first and
#: ranks only the lists of its ``DEFAULT_QUANTIZER_NPROBE`` best groups
#: (a two-level coarse quantizer, as faiss's ``quantizer_nprobe``). Ranking
#: every list costs ``nlist * M`` table additions per query, the largest
#: part of a short search at scale (User Guide, "Approximate stage 1").
GROUPED_MIN_NLIST = 1024
#: Groups probed by ``quantizer_nprobe="auto"`` (of about ``sqrt(nlist)``).
DEFAULT_QUANTIZER_NPROBE = 8


# --------------------------------------------------------------------------- #
# TwoStageRetriever's side
# --------------------------------------------------------------------------- #


def check_params(est, n_items=None):
    """Check ``nlist``, ``nprobe`` (bool refused) and, with ``n_items``,
    ``nlist <= n_items`` for ``stage1="ivf"``.

    Examples
    --------
    >>> from skhash.retrieval import TwoStageRetriever
    >>> from skhash.retrieval._ivf import check_params
    >>> check_params(TwoStageRetriever(stage1="ivf", nlist=10), 100)
    >>> check_params(TwoStageRetriever(nprobe=True))
    Traceback (most recent call last):
    ...
    ValueError: nprobe=True must be a positive int (bool is not accepted); ...
    """
    nlist = getattr(est, "nlist", None)
    nprobe = getattr(est, "nprobe", DEFAULT_NPROBE)
    q_nprobe = getattr(est, "quantizer_nprobe", "auto")
    if not (
        q_nprobe is None
        or (isinstance(q_nprobe, str) and q_nprobe == "auto")
        or (
            isinstance(q_nprobe, Integral)
            and not isinstance(q_nprobe, (bool, np.bool_))
            and q_nprobe >= 1
        )
    ):
        raise ValueError(
            f"quantizer_nprobe={q_nprobe!r} must be 'auto', None (rank every "
            f"list) or a positive int (groups of lists probed), e.g. "
            f"quantizer_nprobe={DEFAULT_QUANTIZER_NPROBE}."
        )
    if nlist is not None and (
        isinstance(nlist, (bool, np.bool_))
        or not isinstance(nlist, Integral)
        or nlist < 1
    ):
        raise _bad_int("nlist", nlist, 1024)
    if (
        isinstance(nprobe, (bool, np.bool_))
        or not isinstance(nprobe, Integral)
        or nprobe < 1
    ):
        raise _bad_int("nprobe", nprobe, DEFAULT_NPROBE)
    if n_items is not None and nlist is not None and est.stage1 == "ivf":
        check_nlist(int(nlist), int(n_items))


def _metric(est, dst):
    stage2 = est._plans[dst][1]
    if stage2 in ("aqd", "aqd-l2") and "codes" in est._index[dst]:
        return "ip" if stage2 == "aqd" else "l2"
    return "hamming"


def needs_embedding(est, dst):
    """Whether the IVF of ``dst`` ranks its lists with the query embedding."""
    return est.stage1 == "ivf" and est._plans[dst][0] and _metric(est, dst) != "hamming"


def _seed_token(random_state):
    """What identifies ``random_state`` across save/load: an int, else None."""
    if isinstance(random_state, Integral) and not isinstance(random_state, bool):
        return int(random_state)
    return None


def prepare(est):
    """Reset the lists at ``fit``; build them for ``stage1="ivf"``."""
    est._ivf_cache = {}
    est._ivf_state = {}
    if getattr(est, "stage1", None) != "ivf":
        return
    rng = check_random_state(est.random_state)
    for m, entry in est._index.items():
        if "bits" in entry and est._plans[m][0]:
            _build(est, m, rng)


def _build(est, dst, rng=None):
    entry = est._index[dst]
    bits = entry["bits"]
    state = est._ivf_state.get(dst)
    token = _seed_token(est.random_state)
    if (
        state is None
        or state["nlist"] != est.nlist
        or state["random_state"] != token
        or state["n_train"] > len(bits)
    ):
        if rng is None:
            rng = check_random_state(est.random_state)
        state = {
            "seed": int(rng.randint(np.iinfo(np.int32).max)),
            "n_train": len(bits),
            "nlist": None if est.nlist is None else int(est.nlist),
            "random_state": token,
        }
    # the codebooks the look-up tables are made from (scaled by a power of
    # two where their magnitude is extreme): centroids and keys of the same
    # magnitude as the tables
    codebooks = getattr(est, "_lut_codebooks", None)
    ivf = InvertedLists(
        bits,
        est.n_bits_,
        entry.get("codes"),
        est.codebooks_ if codebooks is None else codebooks,
        metric=_metric(est, dst),
        nlist=state["nlist"],
        seed=state["seed"],
        n_train=state["n_train"],
        kind=est.codebook_kind_ or "additive",
        n_jobs=_n_jobs(est),
    )
    est._ivf_state[dst] = state
    est._ivf_cache[dst] = ivf
    return ivf


def ensure(est, dst):
    """The inverted lists of ``dst``, built or extended so that they index
    exactly the current items (called before a search's threads start)."""
    est.__dict__.setdefault("_ivf_cache", {})
    est.__dict__.setdefault("_ivf_state", {})
    check_params(est, est.n_samples_fit_)
    entry = est._index[dst]
    bits = entry["bits"]
    ivf = est._ivf_cache.get(dst)
    state = est._ivf_state.get(dst)
    if ivf is not None and (
        state is None
        or state["nlist"] != est.nlist
        or state["random_state"] != _seed_token(est.random_state)
    ):
        ivf = None
    if ivf is not None:
        ivf.n_jobs = _n_jobs(est)
        ivf.kind = est.codebook_kind_ or "additive"
    if ivf is not None and ivf.bits is not bits:
        same_prefix = (
            len(bits) >= ivf.n_items
            and bits.shape[1:] == ivf.bits.shape[1:]
            and np.array_equal(bits[: ivf.n_items], ivf.bits[: ivf.n_items])
        )
        ivf = ivf.extend(bits, entry.get("codes")) if same_prefix else None
    if ivf is None:
        ivf = _build(est, dst)
    if quantizer_nprobe(est, ivf) is not None:
        ivf.groups()  # built once, before the threads
    return ivf


def _n_jobs(est):
    """Threads of the lists' build (k-means and assignment): the search's
    ``n_jobs``; the lists do not depend on it."""
    return n_threads(est.n_jobs)


def quantizer_nprobe(est, ivf):
    """The groups of lists a query of ``ivf`` probes (None: every list
    is ranked), from ``est.quantizer_nprobe``; lists of bits, ranked by
    Hamming distance, are never grouped."""
    q = getattr(est, "quantizer_nprobe", "auto")
    if q is None or ivf.metric == "hamming":  # Hamming keys are not grouped
        return None
    if isinstance(q, str):  # "auto"
        return DEFAULT_QUANTIZER_NPROBE if ivf.nlist >= GROUPED_MIN_NLIST else None
    return int(q)


def _compiled(backend):
    """Whether ``backend`` runs the compiled kernels of the lists (numba)."""
    return type(backend).__module__ == "skhash.retrieval._numba"


def stage1_shortlist(est, backend, q, dst, n_short, ordered, luts):
    """Stage 1 of ``dst`` from its inverted lists (see :func:`ensure`);
    ``ordered=False`` when a re-ranking of the whole shortlist follows.
    ``luts`` are the queries' inner-product look-up tables where
    :func:`needs_embedding` (the lists are ranked by them), else None."""
    ivf = est._ivf_cache[dst]
    compiled = _compiled(backend)
    return ivf.shortlist(
        q["bits"],
        luts,
        est.nprobe,
        n_short,
        compiled=compiled,
        ordered=ordered,
        backend=backend,
        norm_shift=q.get("lut_shift", (0, 0))[1],
        quantizer_nprobe=quantizer_nprobe(est, ivf),
    )


def adc_mode(est, dst):
    """The distance mode of :meth:`InvertedLists.search` for ``dst``, or
    None where its lists are scanned by Hamming distance (no codes)."""
    metric = _metric(est, dst) if est.stage1 == "ivf" and est._plans[dst][0] else None
    if metric in (None, "hamming"):
        return None
    if metric == "ip":
        return 0
    return 1 if est.codebook_kind_ == "additive" else 2


def scans_codes(est, dst, L):
    """Whether a search of ``dst`` with a shortlist of ``L`` (``L > 0``:
    a re-ranking) is the scan of lists of codes of :func:`search`."""
    return L > 0 and adc_mode(est, dst) is not None


def search(est, backend, q, rows, dst, k, n_short, ip_luts):
    """Both stages of ``dst`` from its inverted lists (see :func:`ensure`):
    every item of the probed lists (at least ``n_short``) is scored by its
    asymmetric distance and the ``k`` best kept. ``rows``: the queries' own
    rows, skipped (``X=None``), or None. Returns ``(distances, indices)``."""
    ivf = est._ivf_cache[dst]
    mode = adc_mode(est, dst)
    emb = q["embedding"]
    luts = est._tables(q, "l2") if mode == 2 else ip_luts
    q_sq = np.einsum("qd,qd->q", emb, emb, dtype=np.float64)
    sq = est._index[dst]["sqnorms"] if mode == 1 else np.zeros(1, np.float64)
    # tables of queries and codebooks scaled by 2**-(e + a) and 2**-e (see
    # _QueryEngine._table_shifts): the scan computes the distances divided
    # by 2**(2 e + a), exactly, and they are scaled back
    e, a = q.get("lut_shift", (0, 0))
    scale = 2 * e + a
    if scale:
        q_sq = np.ldexp(q_sq, -scale)
    if mode == 1 and a:
        sq = np.ldexp(np.asarray(sq, dtype=np.float64), -a)
    exclude = np.full(len(emb), -1, np.int64) if rows is None else rows.astype(np.int64)
    compiled = _compiled(backend)
    dist, idx = ivf.search(
        ip_luts,
        luts,
        mode,
        q_sq,
        np.asarray(sq),
        n_short,
        k,
        est.nprobe,
        exclude,
        compiled=compiled,
        backend=backend,
        norm_shift=a,
        quantizer_nprobe=quantizer_nprobe(est, ivf),
    )
    if scale:
        dist = np.ldexp(dist, scale, out=dist)
    return dist, idx


def fused_scan(est, backend, q, rows, dst, k, n_short):
    """:func:`search` of a whole call as one compiled call per chunk
    (``_ivf_scan``: tables, list keys, probe and scan without the GIL in
    between; the same bits), prepared once for all the queries ``q`` (the
    call's parts; ``rows`` their own rows to skip, or None).

    Returns ``(scan, distances, indices)``, ``scan(sl)`` searching the
    queries of the slice ``sl`` into those rows of the two arrays (from any
    thread, each slice once), or None where the kernel does not apply (a
    numpy backend, product codebooks' block tables, scaled look-up tables,
    float64 embeddings) or is still compiling in the background (a lazy
    backend): the chunks then run :func:`search`.
    """
    mode = adc_mode(est, dst)
    tiles = getattr(est, "_lut_tiles", None)
    emb = q["embedding"]
    if (
        not _compiled(backend)
        or mode not in (0, 1)
        or tiles is None
        or getattr(est, "_lut_blocks", None) is not None
        or emb.dtype != np.float32
        or tiles.dtype != np.float32
        or est._table_shifts(q, dst) is not None
    ):
        return None
    from skhash.retrieval._adc_scan import scan_words
    from skhash.retrieval._ivf_groups import CANDIDATE_FACTOR
    from skhash.retrieval._ivf_kernels import _ivf_scan
    from skhash.retrieval._numba import _kernel_ready, code_words

    ivf = est._ivf_cache[dst]
    emb = np.ascontiguousarray(emb)
    n_q = len(emb)
    idx = np.empty((n_q, k), dtype=np.int64)
    dist = np.empty((n_q, k), dtype=np.float64)
    groups = quantizer_nprobe(est, ivf)
    metric = 0 if ivf.metric == "ip" else 1
    no_sq = np.zeros(1, np.float32)
    if groups is None:
        key_codes, key_sq = ivf.centroid_codes, ivf.c_sqnorms
        gptr = glists = np.zeros(1, np.int64)
    else:
        key_codes, key_sq, gptr, glists = ivf.groups()
    # uint8 codes are read 8 to a word, as the backend's rerank_aqd reads them
    words = code_words(key_codes)
    if words is None:
        words = np.empty((0, 1), np.uint64)
    sq = est._index[dst]["sqnorms"] if mode == 1 else np.zeros(1, np.float64)
    sq = np.asarray(sq)
    exclude = np.full(n_q, -1, np.int64) if rows is None else rows.astype(np.int64)
    q_sq = np.einsum("qd,qd->q", emb, emb, dtype=np.float64)
    n_books, n_words = est.codebooks_.shape[:2]
    head = (
        tiles,
        n_books,
        n_words,
        words,
        key_codes,
        no_sq if metric == 0 else key_sq,
        metric,
        groups is not None,
        gptr,
        glists,
        ivf.centroid_codes,
        no_sq if metric == 0 else ivf.c_sqnorms,
        min(int(est.nprobe), ivf.nlist),
        int(min(n_short, ivf.n_items)),
        0 if groups is None else int(groups),
        CANDIDATE_FACTOR,
        ivf.offsets,
        ivf.ids,
        scan_words(ivf.list_codes, n_words),
        mode,
    )
    k = int(k)

    def scan(sl):
        _ivf_scan(emb[sl], *head, q_sq[sl], sq, exclude[sl], k, idx[sl], dist[sl])

    args = (emb, *head, q_sq, sq, exclude, k, idx, dist)
    if not _kernel_ready(_ivf_scan, args, 0, getattr(backend, "lazy", False)):
        return None
    return scan, dist, idx


def saved_state(est):
    """The build record (seed, training items) saved with the index, or
    None: a loaded index rebuilds the same lists from it."""
    state = getattr(est, "_ivf_state", None)
    return {m: dict(s) for m, s in state.items()} if state else None


def restore(est, meta, where):
    """Read the build record of :func:`saved_state` from the metadata."""
    est._ivf_cache = {}
    est._ivf_state = {}
    state = meta.get("ivf")
    if state is None:
        return
    ok = isinstance(state, dict)
    for m, s in state.items() if ok else ():
        ok &= (
            m in est._index
            and isinstance(s, dict)
            and set(s) == {"seed", "n_train", "nlist", "random_state"}
            and all(
                v is None or (isinstance(v, int) and not isinstance(v, bool))
                for v in s.values()
            )
            and isinstance(s["seed"], int)
            and isinstance(s["n_train"], int)
            and 1 <= s["n_train"] <= est.n_samples_fit_
            and (s["nlist"] is None or 1 <= s["nlist"] <= s["n_train"])
        )
    if not ok:
        raise IndexFormatError(
            f"{where}: the inverted-file record 'ivf'={state!r} is malformed; the "
            "index is damaged or not from save."
        )
    est._ivf_state = {m: dict(s) for m, s in state.items()}
