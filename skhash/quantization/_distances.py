"""Asymmetric distances from codes: look-up tables, reconstruction norms, AQD."""

import numpy as np
from sklearn.utils._param_validation import validate_params

from skhash.quantization._checks import (
    _FLOAT32_SPAN,
    _METRICS,
    _PRODUCT_SPAN,
    _beyond,
    _check_codebooks,
    _check_codes,
    _check_width,
    _check_X,
    _distance_dtype,
    _peak,
    _tables_dtype,
)
from skhash.quantization._products import ordered_products, tile_rows

__all__ = ["aqd", "lookup_tables", "reconstruction_sqnorms"]


@validate_params(
    {"Q": ["array-like"], "codebooks": ["array-like"], "metric": [_METRICS]},
    prefer_skip_nested_validation=True,
)
def lookup_tables(Q, codebooks, *, metric):
    """Per-query look-up tables for asymmetric distances (AQD).

    - ``metric="ip"``: ``lut[q, m, k] = ⟨q, C[m, k]⟩``, so that
      ``⟨q, decode(c)⟩ = Σ_m lut[q, m, c[m]]`` for both kinds.
    - ``metric="l2"``: ``lut[q, m, k] = ‖C[m, k]‖² − 2⟨q, C[m, k]⟩``. For product
      codebooks ``‖q‖² + Σ_m lut[q, m, c[m]] = ‖q − decode(c)‖²`` exactly. For
      additive codebooks the cross terms ``2⟨C_l[c_l], C_m[c_m]⟩`` are missing:
      the exact distance is ``‖q‖² − 2 Σ_m ip_lut[q, m, c[m]] + sqnorm(c)``
      with ``sqnorm`` from :func:`reconstruction_sqnorms`, which is what
      :func:`aqd` computes for both kinds.

    Parameters
    ----------
    Q : array-like of shape (n_queries, d)
        Query embeddings.
    codebooks : array-like of shape (n_codebooks, n_codewords, d)
        The codebooks.
    metric : {"ip", "l2"}
        Which table.

    Returns
    -------
    lut : ndarray of shape (n_queries, n_codebooks, n_codewords)
        The tables, float32, except where float32 tables would overflow or
        vanish, which are computed and returned in float64: queries or
        codebooks of largest magnitude beyond ``1e18`` or (all) below
        ``1e-18``, or whose largest magnitudes multiply to more than
        ``1e30`` or (nonzero) less than ``1e-30``. Tables of ordinary
        magnitude are always float32.

    Examples
    --------
    >>> import numpy as np
    >>> from skhash.quantization import lookup_tables
    >>> rng = np.random.RandomState(0)
    >>> C = rng.randn(2, 4, 3).astype(np.float32)
    >>> Q = rng.randn(5, 3)
    >>> lut = lookup_tables(Q, C, metric="ip")
    >>> lut.shape, lut.dtype
    ((5, 2, 4), dtype('float32'))
    >>> big = lookup_tables(Q * 1e20, C * 1e20, metric="ip")  # 1e40: float64
    >>> big.dtype, bool(np.allclose(big / 1e40, lut, rtol=1e-5, atol=1e-5))
    (dtype('float64'), True)
    """
    Q = _check_X(Q, "Q")
    codebooks = _check_codebooks(codebooks)
    _check_width(Q, codebooks, "Q")
    dtype = np.float32
    if _tables_dtype(Q, codebooks) is not None:
        Q, dtype = Q.astype(np.float64, copy=False), np.float64
    flat = codebooks.reshape(-1, codebooks.shape[2])
    return tables_from_tiles(
        Q, tile_rows(flat, Q.dtype), codebooks, metric, dtype=dtype
    )


def tables_from_tiles(Q, tiles, codebooks, metric, *, norm_shift=0, dtype=np.float32):
    """:func:`lookup_tables` on checked inputs, from the codewords already
    in :func:`~skhash.quantization._products.tile_rows` tiles of ``Q``'s
    dtype (a retriever keeps them). Each entry is summed over the
    dimensions in order, so a query's tables are the same bits in any
    batch (see :mod:`skhash.quantization._products`). ``norm_shift``: the
    l2 tables' codeword norms are scaled by ``2**-norm_shift`` (exact), for
    queries scaled by that much more than the codebooks (see
    :func:`query_shifts`); ``dtype``: of the tables returned."""
    n_codebooks, n_codewords, d = codebooks.shape
    lut = ordered_products(Q, tiles, n_codebooks * n_codewords)
    if metric == "l2":
        flat = codebooks.reshape(-1, d).astype(Q.dtype, copy=False)
        lut *= -2.0
        norms = np.einsum("kd,kd->k", flat, flat)
        lut += norms if not norm_shift else np.ldexp(norms, -norm_shift)
    lut = lut.reshape(Q.shape[0], n_codebooks, n_codewords)
    return lut.astype(dtype, copy=False)


# --------------------------------------------------------------------------- #
# Exact power-of-two scaling of the retriever's float32 tables
# --------------------------------------------------------------------------- #


def codebook_shift(codebooks):
    """The exponent ``e`` by which a retriever scales its codebooks (by
    ``2**-e``, exact in binary floating point) before making float32
    look-up tables from them: 0 for codebooks of ordinary magnitude (largest
    magnitude within ``[1e-18, 1e18]``, as for
    :func:`~skhash.quantization.encode`), whose tables are unchanged; else
    the exponent that brings their largest magnitude into ``[0.5, 1)``.

    Examples
    --------
    >>> import numpy as np
    >>> from skhash.quantization._distances import codebook_shift
    >>> codebook_shift(np.ones((1, 2, 3))), codebook_shift(np.full((1, 2, 3), 1e20))
    (0, 67)
    """
    if codebooks is None:
        return 0
    peak = _peak(np.asarray(codebooks))
    if _beyond(peak, _FLOAT32_SPAN):
        return int(np.frexp(peak)[1])
    return 0


def shift_codebooks(codebooks, shift):
    """``codebooks * 2**-shift`` as float32 (exact): the codebooks
    themselves for ``shift=0``."""
    if codebooks is None or not shift:
        return codebooks
    return np.ldexp(np.asarray(codebooks, dtype=np.float32), -int(shift))


def query_shifts(Q, shift, peak, metric):
    """Per-query exponents ``a`` (int64, or None where all are 0) by which
    the queries ``Q``, scaled by ``2**-shift`` like the codebooks, are
    scaled further (by ``2**-a``) so that their float32 tables neither
    overflow nor vanish: for the rows whose largest magnitude times the
    scaled codebooks' ``peak`` is beyond ``1e30`` (or, with
    ``metric="ip"``, nonzero and below ``1e-30``), the exponent that brings
    that product into ``[0.5, 1)``. With ``metric="l2"`` a query that is
    tiny against the codebooks keeps ``a = 0``: its tables are the codeword
    norms, which its own products could not change in float32."""
    if Q.shape[0] == 0 or Q.shape[1] == 0:
        return None
    rows = np.abs(Q).max(axis=1).astype(np.float64)
    products = np.ldexp(rows, -int(shift)) * peak
    bad = products > _PRODUCT_SPAN
    if metric == "ip":
        bad |= (products > 0.0) & (products < 1.0 / _PRODUCT_SPAN)
    if not bad.any():
        return None
    a = np.zeros(len(rows), dtype=np.int64)
    a[bad] = np.frexp(products[bad])[1]
    return a


@validate_params(
    {"codes": ["array-like"], "codebooks": ["array-like"]},
    prefer_skip_nested_validation=True,
)
def reconstruction_sqnorms(codes, codebooks):
    """Exact squared norms ``‖Σ_m C_m[c_m]‖²`` of the reconstructions.

    Computed from the ``M²/2`` codeword inner-product tables, without
    materialising the reconstructions. Store them with the database codes to
    get exact additive l2 distances (see :func:`lookup_tables`).

    Parameters
    ----------
    codes : array-like of shape (n_samples, n_codebooks)
        Codeword indices.
    codebooks : array-like of shape (n_codebooks, n_codewords, d)
        The codebooks.

    Returns
    -------
    sqnorms : ndarray of shape (n_samples,), float32 or float64
        The squared norms: float32, or float64 for codebooks of largest
        magnitude beyond ``1e18`` or (all) below ``1e-18``, whose squared
        norms would overflow or vanish in float32.

    Examples
    --------
    >>> import numpy as np
    >>> from skhash.quantization import decode, reconstruction_sqnorms
    >>> rng = np.random.RandomState(0)
    >>> C = rng.randn(3, 4, 5).astype(np.float32)
    >>> codes = rng.randint(4, size=(6, 3))
    >>> sq = reconstruction_sqnorms(codes, C)
    >>> np.allclose(sq, (decode(codes, C) ** 2).sum(axis=1), rtol=1e-5)
    True
    """
    codebooks = _check_codebooks(codebooks)
    n_codebooks, n_codewords, _ = codebooks.shape
    codes = _check_codes(codes, n_codebooks, n_codewords)
    out = _sqnorms(codes, codebooks)
    return out if _distance_dtype(codebooks) is not None else out.astype(np.float32)


def _sqnorms(codes, codebooks):
    """:func:`reconstruction_sqnorms` on checked inputs, in float64."""
    n_codebooks = codebooks.shape[0]
    C = codebooks.astype(np.float64)
    out = np.zeros(codes.shape[0], dtype=np.float64)
    for m in range(n_codebooks):
        out += np.einsum("kd,kd->k", C[m], C[m])[codes[:, m]]
        for j in range(m + 1, n_codebooks):
            cross = C[m] @ C[j].T
            out += 2.0 * cross[codes[:, m], codes[:, j]]
    return out


@validate_params(
    {
        "Q": ["array-like"],
        "codes": ["array-like"],
        "codebooks": ["array-like"],
        "metric": [_METRICS],
    },
    prefer_skip_nested_validation=True,
)
def aqd(Q, codes, codebooks, *, metric):
    """Asymmetric quantizer distances between float queries and coded items.

    Computed through :func:`lookup_tables` by gathering, never by decoding the
    items:

    - ``metric="ip"``: ``⟨q, decode(c)⟩ = Σ_m ⟨q, C_m[c_m]⟩``; larger is closer.
    - ``metric="l2"``: the exact ``‖q − decode(c)‖²`` for both kinds
      (``‖q‖² − 2 Σ_m ⟨q, C_m[c_m]⟩ + ‖decode(c)‖²``, the last term from
      :func:`reconstruction_sqnorms`); smaller is closer.

    Parameters
    ----------
    Q : array-like of shape (n_queries, d)
        Query embeddings (not quantized).
    codes : array-like of shape (n_items, n_codebooks)
        Codes of the database items.
    codebooks : array-like of shape (n_codebooks, n_codewords, d)
        The codebooks.
    metric : {"ip", "l2"}
        Inner product or squared Euclidean distance.

    Returns
    -------
    scores : ndarray of shape (n_queries, n_items), float32 or float64
        The similarities (``"ip"``) or squared distances (``"l2"``):
        float32, or float64 where :func:`lookup_tables` returns float64
        tables (queries or codebooks of extreme magnitude), whose scores
        would overflow or vanish in float32.

    Examples
    --------
    >>> import numpy as np
    >>> from skhash.quantization import aqd, decode
    >>> rng = np.random.RandomState(0)
    >>> C = rng.randn(2, 4, 3).astype(np.float32)
    >>> codes = rng.randint(4, size=(10, 2))
    >>> Q = rng.randn(5, 3)
    >>> D = aqd(Q, codes, C, metric="l2")
    >>> D.shape
    (5, 10)
    >>> np.allclose(D, ((Q[:, None] - decode(codes, C)) ** 2).sum(-1), atol=1e-4)
    True
    """
    Q = _check_X(Q, "Q")
    codebooks = _check_codebooks(codebooks)
    _check_width(Q, codebooks, "Q")
    n_codebooks, n_codewords, _ = codebooks.shape
    codes = _check_codes(codes, n_codebooks, n_codewords)
    lut = lookup_tables(Q, codebooks, metric="ip")
    dtype = lut.dtype  # float64 where float32 would overflow or vanish
    scores = np.zeros((Q.shape[0], codes.shape[0]), dtype=dtype)
    for m in range(n_codebooks):
        scores += lut[:, m, :][:, codes[:, m]]
    if metric == "ip":
        return scores
    scores *= -2.0
    if dtype == np.float32:
        scores += reconstruction_sqnorms(codes, codebooks)[None, :]
        scores += np.einsum("qd,qd->q", Q, Q).astype(np.float32)[:, None]
    else:
        Q = Q.astype(np.float64, copy=False)
        scores += _sqnorms(codes, codebooks)[None, :]
        scores += np.einsum("qd,qd->q", Q, Q)[:, None]
    np.maximum(scores, 0.0, out=scores)
    return scores
