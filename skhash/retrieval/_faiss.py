"""Export of indexed codes to faiss indexes (optional: ``pip install skhash[faiss]``).

faiss is imported only when :func:`to_faiss` is called.
"""

from __future__ import annotations

import numpy as np

from skhash._codes import CodeSet

__all__ = ["to_faiss"]

# Items copied into a faiss index per call (bounds the temporary copies).
_ADD_ROWS = 1 << 20


def _import_faiss():
    try:
        import faiss
    except ImportError as exc:
        raise ImportError(
            "to_faiss needs faiss, an optional dependency of skhash; install it "
            "with: pip install skhash[faiss]"
        ) from exc
    return faiss


def _parts(source, modality):
    """(bits, codes, n_bits, codebooks, kind, default metric) of one modality."""
    from skhash.retrieval._retriever import TwoStageRetriever

    if isinstance(source, TwoStageRetriever):
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(source)
        mods = source.modalities_
        metric = "l2" if source._fit_rerank == "aqd-l2" else "ip"
    elif isinstance(source, CodeSet):
        mods = source.modalities
        metric = "ip"
    else:
        raise TypeError(
            "to_faiss exports a fitted TwoStageRetriever or a CodeSet; got "
            f"{type(source).__name__}."
        )
    if modality is None:
        if len(mods) != 1:
            raise ValueError(
                f"The codes hold the modalities {mods}; pass modality=, one of them."
            )
        modality = mods[0]
    if modality not in mods:
        raise ValueError(f"Unknown modality {modality!r}; the codes hold {mods}.")
    if isinstance(source, CodeSet):
        return (
            source.get(modality, "bits"),
            source.get(modality, "codes"),
            source.n_bits,
            source.codebooks,
            source.codebook_kind,
            metric,
        )
    entry = source._index[modality]
    return (
        entry.get("bits"),
        entry.get("codes"),
        source.n_bits_,
        source.codebooks_,
        source.codebook_kind_,
        metric,
    )


def _pq_layout(codebooks, kind):
    """``(dsub, nbits)`` when the codebooks are faiss-compatible product ones."""
    from skhash.retrieval._query import _lut_blocks

    n_books, n_codewords, d = codebooks.shape
    blocks = _lut_blocks(codebooks, kind)
    if blocks is None or d % n_books:
        raise ValueError(
            'kind="pq" needs product codebooks (codebook_kind="product", zero '
            "outside their block of dimensions) with n_features divisible by "
            f"n_codebooks; got codebook_kind={kind!r} and codebooks of shape "
            f"{codebooks.shape}. Use kind='binary', or quantize with "
            "ProductQuantizer and d a multiple of n_codebooks."
        )
    nbits = int(n_codewords).bit_length() - 1
    if n_codewords != 1 << nbits or not 1 <= nbits <= 16:
        raise ValueError(
            'kind="pq" needs a power-of-two number of codewords K <= 65536 '
            f"(faiss stores log2(K)-bit codes); got K={n_codewords}."
        )
    return d // n_books, nbits


def _warn_float32_range(codebooks):
    """Warn when faiss's float32 tables of these codebooks would overflow or
    vanish: skhash's own search rescales such codebooks exactly (by a power
    of two), faiss computes its tables in float32 as given."""
    import warnings

    from skhash._warnings import user_stacklevel
    from skhash.quantization._checks import _FLOAT32_SPAN, _distance_dtype, _peak

    if _distance_dtype(codebooks) is not None:
        peak = _peak(codebooks)
        warnings.warn(
            f"The codebooks' largest magnitude is {peak:.3g}, outside "
            f"[{1 / _FLOAT32_SPAN:g}, {_FLOAT32_SPAN:g}]: faiss computes its "
            "look-up tables in float32, where their products with queries of "
            "that scale overflow or vanish, so its distances and ranking would "
            "be wrong. Scale the embeddings (and queries) by a power of two "
            "into that range before fitting the codes, or search with "
            "TwoStageRetriever, which does this itself.",
            RuntimeWarning,
            stacklevel=user_stacklevel(),
        )


def _pack_codes(codes, nbits):
    """faiss's PQ code layout: ``nbits`` per code, least significant bit first."""
    codes = np.asarray(codes)
    if nbits == 8:
        return np.ascontiguousarray(codes, dtype=np.uint8)
    if nbits == 16:
        return np.ascontiguousarray(codes, dtype="<u2").view(np.uint8)
    shifts = np.arange(nbits, dtype=np.uint32)
    bits = (codes.astype(np.uint32)[:, :, None] >> shifts) & 1
    return np.packbits(
        bits.reshape(codes.shape[0], -1).astype(np.uint8), axis=1, bitorder="little"
    )


def to_faiss(retriever_or_codes, modality=None, kind="binary", *, metric=None):
    """Copy indexed codes into a faiss index, without re-encoding anything.

    - ``kind="binary"``: an ``IndexBinaryFlat`` of the packed bits (``d`` =
      the bits rounded up to whole bytes; the zero padding bits do not
      change any distance). Its Hamming ranking equals stage 1 of
      :class:`~skhash.retrieval.TwoStageRetriever`.
    - ``kind="pq"``: an ``IndexPQ`` whose ``pq.centroids`` are our product
      codebooks (block ``m`` of codebook ``m``) and whose codes are ours, so
      its asymmetric distances equal the retriever's AQD.

    Parameters
    ----------
    retriever_or_codes : TwoStageRetriever or CodeSet
        A fitted retriever (its indexed arrays, memory-mapped or not) or a
        CodeSet.
    modality : str, default=None
        Which modality to export; may be None when there is only one.
    kind : {"binary", "pq"}, default="binary"
        The faiss index to build.
    metric : {"ip", "l2"}, default=None
        Metric of the ``IndexPQ`` (``kind="pq"`` only). None follows the
        retriever: ``"l2"`` for ``rerank="aqd-l2"``, else ``"ip"`` (the
        ``"aqd"`` inner product); ``"ip"`` for a CodeSet.

    Returns
    -------
    index : faiss.IndexBinaryFlat or faiss.IndexPQ
        The filled index; item ``i`` of the codes is faiss id ``i``.

    Raises
    ------
    ImportError
        If faiss is not installed (``pip install skhash[faiss]``).
    ValueError
        If the modality lacks the part to export, or (``kind="pq"``) the
        codebooks are not faiss-compatible product codebooks.

    Warns
    -----
    RuntimeWarning
        With ``kind="pq"``, when the codebooks' largest magnitude is beyond
        ``1e18`` or (all) below ``1e-18``: faiss's float32 look-up tables
        overflow or vanish there (skhash's own search rescales them).

    See Also
    --------
    skhash.retrieval.TwoStageRetriever : The index exported.
    skhash.quantization.ProductQuantizer : Learns product codebooks.

    Examples
    --------
    >>> import numpy as np
    >>> from skhash import CodeSet, pack_bits
    >>> from skhash.retrieval._faiss import to_faiss
    >>> rng = np.random.RandomState(42)
    >>> codes = CodeSet(bits=pack_bits(rng.randn(100, 32)))
    >>> index = to_faiss(codes)
    >>> index.ntotal, index.d
    (100, 32)
    """
    if kind not in ("binary", "pq"):
        raise ValueError(f"kind must be 'binary' or 'pq'; got {kind!r}.")
    if metric not in (None, "ip", "l2"):
        raise ValueError(f"metric must be None, 'ip' or 'l2'; got {metric!r}.")
    bits, codes, n_bits, codebooks, codebook_kind, default_metric = _parts(
        retriever_or_codes, modality
    )
    faiss = _import_faiss()
    if kind == "binary":
        if bits is None:
            raise ValueError(
                "kind='binary' exports the binary codes, but the modality has "
                "none; pass codes with bits, or use kind='pq'."
            )
        index = faiss.IndexBinaryFlat(8 * bits.shape[1])
        for s in range(0, bits.shape[0], _ADD_ROWS):
            index.add(np.ascontiguousarray(bits[s : s + _ADD_ROWS], dtype=np.uint8))
        return index
    if codes is None or codebooks is None:
        raise ValueError(
            "kind='pq' exports quantization codes, but the modality has none; "
            "pass codes with quantization codes, or use kind='binary'."
        )
    dsub, nbits = _pq_layout(np.asarray(codebooks), codebook_kind)
    _warn_float32_range(np.asarray(codebooks))
    n_books, n_codewords, d = codebooks.shape
    metric = default_metric if metric is None else metric
    faiss_metric = faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2
    index = faiss.IndexPQ(d, n_books, nbits, faiss_metric)
    centroids = np.stack(
        [codebooks[m, :, m * dsub : (m + 1) * dsub] for m in range(n_books)]
    )
    faiss.copy_array_to_vector(
        np.ascontiguousarray(centroids, dtype=np.float32).ravel(), index.pq.centroids
    )
    index.is_trained = True
    packed = []
    for s in range(0, codes.shape[0], _ADD_ROWS):
        packed.append(_pack_codes(codes[s : s + _ADD_ROWS], nbits))
    packed = np.concatenate(packed) if len(packed) > 1 else packed[0]
    if packed.shape[1] != index.code_size:
        raise ValueError(  # pragma: no cover - guards a faiss layout change
            f"faiss expects {index.code_size} bytes per code; packed {packed.shape[1]}."
        )
    faiss.copy_array_to_vector(packed.ravel(), index.codes)
    index.ntotal = codes.shape[0]
    return index
