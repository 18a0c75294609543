"""What runs on the workers of a ShardedRetriever, and the exact merge.

Module-level functions, so that Dask pickles them by reference.
"""

from __future__ import annotations

import copy
import threading
import weakref

import numpy as np

from skhash._codes import CodeSet
from skhash.metrics import n_relevant
from skhash.retrieval._retriever import TwoStageRetriever


# ---------------------------------------------------------------------- #
# what runs on a worker (module-level, so Dask pickles it by reference)
# ---------------------------------------------------------------------- #
def _fit_shard(params, X, y):
    return TwoStageRetriever(**params).fit(X, y)


def _fit_shard_from(params, data):
    X, y = data
    return _fit_shard(params, X, y)


def _load_shard(path, mmap_mode, params, verify=False):
    shard = TwoStageRetriever.load(path, mmap_mode=mmap_mode, verify=verify)
    return shard.set_params(**params)


def _add_to_shard(shard, X, y):
    # on a shallow copy: the held shard is unchanged until add() commits
    return copy.copy(shard).add(X, y)


def _save_shard(shard, path):
    return shard.save(path)


def _shard_info(shard):
    y = shard.y_
    return {
        "n": int(shard.n_samples_fit_),
        "modalities": list(shard.modalities_),
        "n_bits": shard.n_bits_,
        "codebooks": None if shard.codebooks_ is None else np.asarray(shard.codebooks_),
        "kind": shard.codebook_kind_,
        "plan": dict(shard.search_plan_),
        "rerank": shard.rerank,
        "has_y": y is not None,
        "y_tail": () if y is None else tuple(y.shape[1:]),
        "y_dtype": None if y is None else y.dtype.str,
        "n_features_in": getattr(shard, "n_features_in_", None),
        "model_fingerprint": getattr(shard, "model_fingerprint_", None),
    }


def _info_of(est):
    return {
        "modalities": list(est.modalities_),
        "n_bits": est.n_bits_,
        "codebooks": est.codebooks_,
        "kind": est.codebook_kind_,
        "plan": dict(est.search_plan_),
        "rerank": est._fit_rerank,
        "has_y": est._has_y,
        "y_tail": tuple(est._y_tail),
        "y_dtype": est._y_dtype,
        "n_features_in": getattr(est, "n_features_in_", None),
        "model_fingerprint": getattr(est, "model_fingerprint_", None),
    }


def _check_same_index(ref, info, what, adding=False):
    """Raise unless two shards index the same kind of codes."""
    fix = (
        "encode the new items with the same learner and quantizer"
        if adding
        else "every shard must be built with the same learner and parameters"
    )
    if list(info["modalities"]) != list(ref["modalities"]):
        raise ValueError(
            f"{what} holds the modalities {tuple(info['modalities'])} but the index "
            f"holds {tuple(ref['modalities'])}; {fix}."
        )
    if info["n_bits"] != ref["n_bits"]:
        raise ValueError(
            f"{what} has n_bits={info['n_bits']} but the index was built with "
            f"n_bits={ref['n_bits']}; {fix}."
        )
    a, b = ref["codebooks"], info["codebooks"]
    if (a is None) != (b is None) or (
        a is not None
        and (
            info["kind"] != ref["kind"]
            or a.shape != b.shape
            or not np.array_equal(a, b)
        )
    ):
        raise ValueError(
            f"{what} was quantized with other codebooks than the indexed items; {fix}."
        )
    if info.get("model_fingerprint") != ref.get("model_fingerprint"):
        raise ValueError(
            f"{what} was encoded by another model (model_fingerprint "
            f"{info.get('model_fingerprint')!r}) than the index "
            f"({ref.get('model_fingerprint')!r}); {fix}."
        )
    if info["plan"] != ref["plan"] or info["rerank"] != ref["rerank"]:
        raise ValueError(
            f"{what} is searched as {info['plan']} (rerank={info['rerank']!r}) but "
            f"the index as {ref['plan']} (rerank={ref['rerank']!r}); pass the same "
            f"parts as at fit ({fix})."
        )
    if info["has_y"] != ref["has_y"] or tuple(info["y_tail"]) != tuple(ref["y_tail"]):
        raise ValueError(
            f"{what} has labels {'of shape tail ' + str(info['y_tail']) if info['has_y'] else 'missing'}"  # noqa: E501
            f" but the index {'has labels' if ref['has_y'] else 'has none'}; {fix}."
        )


def _indexed_codes(shard, modality):
    """The indexed parts of ``modality`` as a CodeSet (queries for X=None).

    Uses ``TwoStageRetriever.indexed_codes(modality)`` when it exists (the
    hook this module asks for); until then it reads the retriever's private
    index dict, in this one place.
    """
    hook = getattr(shard, "indexed_codes", None)
    if callable(hook):
        return hook(modality)
    entry = shard._index[modality]
    has_codes = "codes" in entry
    return CodeSet(
        embedding=entry.get("embedding"),
        bits=entry.get("bits"),
        codes=entry.get("codes"),
        n_bits=shard.n_bits_ if "bits" in entry else None,
        codebooks=shard.codebooks_ if has_codes else None,
        codebook_kind=shard.codebook_kind_ if has_codes else None,
        modality=modality,
    )


def _export_items(shard, modality):
    if modality not in shard.modalities_:
        return None  # the direction check of the own-shard query raises
    return _indexed_codes(shard, modality)


_LOCKS = weakref.WeakKeyDictionary()
_LOCKS_LOCK = threading.Lock()


def _lock_of(shard):
    with _LOCKS_LOCK:
        lock = _LOCKS.get(shard)
        if lock is None:
            lock = _LOCKS[shard] = threading.Lock()
        return lock


# the ShardedRetriever's parameters read by each shard at query time
_QUERY_PARAMS = ("backend", "n_jobs", "stage1", "n_substrings")


def _query(shard, X, k, alpha, direction, params):
    # The held shard itself is searched (not a copy), so that what it builds
    # lazily for its search (e.g. stage-1 tables) is kept; the query-time
    # parameters are set for the call under the shard's lock and restored.
    with _lock_of(shard):
        saved = shard.get_params()
        if alpha is not None:
            params = {**params, "alpha": int(alpha)}
        try:
            shard.set_params(**params)
            return shard.kneighbors(X, k, direction=direction)
        finally:
            shard.set_params(**saved)


def _search_shard(shard, blocks, spec):
    """Per block of queries (``None``: this shard's own items, each
    excluding itself): the shard's Hamming ranking of ``n_h`` items and its
    re-ranking of its own first ``min(n_r, N_s)`` Hamming items."""
    direction, n_h, n_r, stage1, params = spec
    order = sorted(range(len(blocks)), key=lambda b: blocks[b] is not None)
    out = [None] * len(blocks)
    for b in order:  # the own block first: it raises what X=None would
        X = blocks[b]
        n_search = shard.n_samples_fit_ - (X is None)
        h = r = None
        if n_h and min(n_h, n_search) > 0:
            h = _query(shard, X, min(n_h, n_search), 0, direction, params)
        if n_r and min(n_r, n_search) > 0:
            kr = min(n_r, n_search)
            alpha = kr if stage1 else None
            r = _query(shard, X, kr, alpha, direction, params)
        n_q = shard.n_samples_fit_ if X is None else len(X)
        r_hd = _hamming_of(h, r, shard.n_samples_fit_) if h and r else None
        out[b] = (n_q, h, r, r_hd)
    return out


def _hamming_of(h, r, n):
    """The Hamming distance of each re-ranked item, looked up in the shard's
    Hamming ranking ``h``, whose first columns are the re-ranked items."""
    h_d, h_i = h
    r_i = r[1]
    n_q, width = h_i.shape
    rows = np.arange(n_q, dtype=np.int64)[:, None] * (n + 1)
    order = np.argsort(h_i, axis=1)
    keys = (np.take_along_axis(h_i, order, axis=1) + rows).ravel()
    want = (r_i + rows).ravel()
    pos = np.searchsorted(keys, want)
    if not np.array_equal(keys[np.minimum(pos, keys.size - 1)], want):
        raise RuntimeError(
            "A re-ranked item is missing from the shard's own Hamming ranking; "
            "the shard's stage 1 is not deterministic."
        )
    flat = (pos // width) * width + order.ravel()[pos]
    return h_d.ravel()[flat].reshape(r_i.shape)


def _labels_at(shard, local):
    return np.asarray(shard.y_[local])


def _count_relevant(shard, y):
    return n_relevant(y, np.asarray(shard.y_))


# ---------------------------------------------------------------------- #
# merging
# ---------------------------------------------------------------------- #
def _stack(blocks, which, offset, sentinel):
    """Rows of all query blocks of one shard: (distances, global indices[,
    Hamming distances of the re-ranked items]), padded with (inf, sentinel)."""
    got = [b[1 + which] for b in blocks]
    if all(g is None for g in got):
        return None
    width = max(g[0].shape[1] for g in got if g is not None)
    d_rows, i_rows, h_rows = [], [], []
    for block, g in zip(blocks, got):
        n_q = block[0]
        d = np.full((n_q, width), np.inf)
        i = np.full((n_q, width), sentinel, dtype=np.int64)
        h = np.full((n_q, width), np.inf)
        if g is not None:
            w = g[0].shape[1]
            d[:, :w] = g[0]
            i[:, :w] = g[1] + offset
            if which == 1 and block[3] is not None:
                h[:, :w] = block[3]
        d_rows.append(d)
        i_rows.append(i)
        h_rows.append(h)
    out = np.concatenate(d_rows, axis=0), np.concatenate(i_rows, axis=0)
    return out + (np.concatenate(h_rows, axis=0),) if which == 1 else out


def _top(dist, idx, k):
    """First ``k`` of each row by (distance, global index).

    The columns are the shards' lists side by side, in shard order (so in
    global index order between shards), each sorted by (distance, index):
    a stable sort on the distance alone orders ties by index.
    """
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return (
        np.take_along_axis(dist, order, axis=1),
        np.take_along_axis(idx, order, axis=1),
    )
