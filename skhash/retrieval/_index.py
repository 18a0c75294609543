"""What a fitted :class:`~skhash.retrieval.TwoStageRetriever` holds.

The arrays indexed per modality (packed bits, quantization codes, squared
norms of additive reconstructions, embeddings: :func:`_index_entry`, which
copies whatever a caller could still write to), the search plan each
modality's parts allow (:func:`_plan`, shown as ``search_plan_``), the
checks of the items :meth:`add <skhash.retrieval.TwoStageRetriever.add>`
appends against the index (:func:`_new_items`), and the
mixin :class:`_IndexState`, which sets the fitted attributes and the
look-up-table codebooks from those arrays, at fit, :meth:`add
<skhash.retrieval.TwoStageRetriever.add>` and :meth:`load
<skhash.retrieval.TwoStageRetriever.load>`.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import validate_data

from skhash._codes import CodeSet
from skhash._constants import SINGLE_MODALITY
from skhash.quantization import reconstruction_sqnorms
from skhash.quantization._checks import _peak
from skhash.quantization._distances import codebook_shift, shift_codebooks
from skhash.retrieval import _schema
from skhash.retrieval._query import (
    _check_code_range,
    _clean_bits,
    _lut_blocks,
    _lut_tiles,
)
from skhash.retrieval._schema import _NEEDS_CODES


class _IndexState:
    """Mixin of :class:`~skhash.retrieval.TwoStageRetriever`: the fitted state."""

    def _set_index(
        self, index, *, n_samples, n_bits, codebooks, kind, y, rerank, fingerprint
    ):
        plans = {m: _plan(e, rerank) for m, e in index.items()}
        lut_blocks = _lut_blocks(codebooks, kind)
        self._index = index
        self._fit_rerank = rerank
        self.modalities_ = tuple(index)
        self.n_samples_fit_ = int(n_samples)
        self.n_bits_ = None if n_bits is None else int(n_bits)
        self.codebooks_ = codebooks
        self.codebook_kind_ = kind
        self.codebooks_fingerprint_ = fingerprint
        self.y_ = y
        self._plans = plans
        self.search_plan_ = {m: _describe(*plan) for m, plan in plans.items()}
        self._lut_blocks = lut_blocks
        # codebooks of extreme magnitude make their float32 tables from the
        # codebooks scaled by 2**-e (exact; e = 0 for ordinary ones), the
        # queries scaled alike (see _QueryEngine._table_shifts)
        self._lut_shift = codebook_shift(codebooks)
        self._lut_codebooks = shift_codebooks(codebooks, self._lut_shift)
        self._lut_peak = None if codebooks is None else _peak(self._lut_codebooks)
        # the tables' codewords in the tiles of the ordered products (for
        # the whole codebooks, or per block of block-diagonal ones)
        self._lut_tiles = _lut_tiles(self._lut_codebooks, lut_blocks)

    def _install(self, arrays, *, n_samples):
        """Replace the index arrays by ``arrays`` (by name), same structure."""
        index = {m: {p: arrays[f"{m}.{p}"] for p in e} for m, e in self._index.items()}
        self._set_index(
            index,
            n_samples=n_samples,
            n_bits=self.n_bits_,
            codebooks=self.codebooks_,
            kind=self.codebook_kind_,
            y=arrays.get("y"),
            rerank=self._fit_rerank,
            fingerprint=self.codebooks_fingerprint_,
        )


def _new_items(est, X, y):
    """The arrays :meth:`~skhash.retrieval.TwoStageRetriever.add` appends,
    by name (``"<modality>.<part>"`` and ``"y"``), the widened dtypes of
    the stored ones they need, and the number of new items: every check of
    the new items against the fitted index, before anything is written."""
    if isinstance(X, CodeSet):
        codes = X
    else:
        if not hasattr(est, "n_features_in_"):
            raise ValueError(
                "This index was fit on a CodeSet; add items as a CodeSet "
                f"with the modalities {est.modalities_}."
            )
        X = validate_data(
            est,
            X,
            reset=False,
            dtype=[np.float32, np.float64],
            ensure_min_samples=0,
        )
        codes = CodeSet(embedding=X, modality=SINGLE_MODALITY)
    n_new = len(codes)
    if set(codes.modalities) != set(est.modalities_):
        raise ValueError(
            f"X holds the modalities {codes.modalities} but the index holds "
            f"{est.modalities_}; add items with the same modalities."
        )
    if est.n_bits_ is not None and codes.n_bits != est.n_bits_:
        raise ValueError(
            f"X has n_bits={codes.n_bits} but the index was built with "
            f"n_bits={est.n_bits_}; encode the new items with the same hasher."
        )
    est._check_model(codes, "The new items X")
    if est.codebooks_ is not None and (
        codes.codebooks is None or codes.fingerprint != est.codebooks_fingerprint_
    ):
        raise ValueError(
            "X was quantized with other codebooks than the indexed items "
            f"(fingerprint {codes.fingerprint} instead of "
            f"{est.codebooks_fingerprint_}); encode the new items with the "
            "same quantizer."
        )
    if (est.y_ is None) != (y is None):
        raise ValueError(
            "y must be given exactly when the index holds labels: the index "
            f"{'has' if est.y_ is not None else 'has no'} labels, and y is "
            f"{'None' if y is None else 'given'}."
        )
    dtypes = {}
    if y is not None:
        y = _schema.check_y(y, ensure_min_samples=0)
        if y.shape[0] != n_new or y.shape[1:] != est.y_.shape[1:]:
            raise ValueError(
                f"y must have one row per new item, shaped like the indexed "
                f"labels {est.y_.shape[1:]}: X has {n_new} items but y has "
                f"shape {y.shape}."
            )
        dtypes["y"] = _schema.merged_label_dtype(est.y_, y)
    new = {}
    for m in est.modalities_:
        entry = _index_entry(codes, m, est._fit_rerank)
        if set(entry) != set(est._index[m]):
            raise ValueError(
                f"Modality {m!r} of X carries the parts {sorted(entry)} but "
                f"the index stores {sorted(est._index[m])}; pass the same "
                "parts as at fit."
            )
        for p, a in entry.items():
            new[f"{m}.{p}"] = a
    if y is not None:
        new["y"] = y
    return new, dtypes, n_new


def _describe(stage1, stage2):
    if not stage1:
        return stage2
    return "hamming" if stage2 == "none" else f"hamming->{stage2}"


def _plan(entry, rerank):
    """(stage 1 on bits?, stage-2 mode) for a database modality."""
    has_bits, has_codes = "bits" in entry, "codes" in entry
    if has_bits:
        if rerank in _NEEDS_CODES:
            return True, rerank if has_codes else "none"
        return True, rerank  # "exact" or "none"
    if has_codes and rerank in _NEEDS_CODES:
        return False, rerank
    if has_codes and rerank == "none":
        return False, "aqd"
    return False, "exact"


def _index_entry(codes, m, rerank):
    """The arrays indexed for modality ``m`` of the CodeSet ``codes``."""
    bits = codes.get(m, "bits")
    qcodes = codes.get(m, "codes")
    emb = codes.get(m, "embedding")
    entry = {}
    if bits is not None:
        entry["bits"] = _clean_bits(_owned(bits), codes.n_bits)
    if qcodes is not None:
        n_codewords = codes.codebooks.shape[1]
        dtype = np.uint8 if n_codewords <= 256 else np.uint16
        # checked before the cast, which would wrap a code past the dtype
        _check_code_range(
            np.asarray(qcodes), n_codewords, f"the codes of modality {m!r}"
        )
        qcodes = _owned(np.asarray(qcodes).astype(dtype, copy=False))
        _check_code_range(qcodes, n_codewords, f"the codes of modality {m!r}")
        entry["codes"] = qcodes
        if rerank == "aqd-l2" and codes.codebook_kind == "additive":
            # of the codebooks the tables are made from (scaled by 2**-e
            # where their magnitude is extreme: float32 norms stay finite)
            C = shift_codebooks(codes.codebooks, codebook_shift(codes.codebooks))
            entry["sqnorms"] = reconstruction_sqnorms(qcodes, C)
    if rerank == "exact" or (bits is None and qcodes is None):
        if emb is None:
            raise ValueError(
                f"rerank='exact' compares float embeddings, but modality "
                f"{m!r} of X has none; pass a CodeSet with embeddings or "
                "choose rerank='aqd'."
            )
        entry["embedding"] = _owned(emb)  # not a view of the caller's array
    return entry


def _owned(a):
    """``a``, or a copy when a caller could still write to its memory.

    The compact parts are checked once, when indexed (codes below K, padding
    bits clear), and the compiled kernels trust them; an index that shared a
    writable array with its caller could be changed behind those checks. A
    read-only memory map (``mmap_mode="r"``) is not copied.
    """
    root = a
    while isinstance(root.base, np.ndarray):
        root = root.base
    return a if not root.flags.writeable and not a.flags.writeable else a.copy()
