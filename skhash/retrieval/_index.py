"""What a fitted :class:`~skhash.retrieval.TwoStageRetriever` holds.

The arrays indexed per modality (packed bits, quantization codes, squared
norms of additive reconstructions, embeddings: :func:`_index_entry`, which
copies whatever a caller could still write to), the search plan each
modality's parts allow (:func:`_plan`, shown as ``search_plan_``), and the
mixin :class:`_IndexState`, which sets the fitted attributes and the
look-up-table codebooks from those arrays, at fit, :meth:`add
<skhash.retrieval.TwoStageRetriever.add>` and :meth:`load
<skhash.retrieval.TwoStageRetriever.load>`.
"""

from __future__ import annotations

import numpy as np

from skhash.quantization import reconstruction_sqnorms
from skhash.quantization._checks import _peak
from skhash.quantization._distances import codebook_shift, shift_codebooks
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
