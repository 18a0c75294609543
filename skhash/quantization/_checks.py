"""Validation shared by the quantization modules, and the product blocks.

Codebooks are always a float32 array of shape ``(M, K, d)``; codes are
``uint8`` when ``K <= 256`` and ``uint16`` otherwise, of shape ``(n, M)``.
"""

from numbers import Integral

import numpy as np
from sklearn.utils import check_array
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from skhash.utils._validation import beyond_float32, check_real_float32

__all__ = ["product_blocks"]

_KINDS = StrOptions({"additive", "product"})
_METRICS = StrOptions({"ip", "l2"})
_MAX_CODEWORDS = 1 << 16


def _codes_dtype(n_codewords):
    """Smallest unsigned dtype holding codes in ``[0, n_codewords)``."""
    return np.uint8 if n_codewords <= 256 else np.uint16


def _check_X(X, name="X"):
    """2-D finite float array (float32 stays float32, anything else float64)."""
    return check_array(X, dtype=[np.float64, np.float32], input_name=name)


#: A float32 array whose largest magnitude is beyond this, or below its
#: inverse (and nonzero), has squared distances that overflow float32 (past
#: about 3.4e38) or vanish in it (below about 1.2e-38).
_FLOAT32_SPAN = 1e18


def _beyond(value, span):
    """Whether the magnitude ``value`` (>= 0) is beyond ``span`` or,
    nonzero, below ``1 / span``: outside what float32 computes safely."""
    return value > span or 0.0 < value < 1.0 / span


def _distance_dtype(*arrays, span=_FLOAT32_SPAN):
    """float64 where a float32 computation of squared distances between the
    rows of ``arrays`` would overflow or vanish (their largest magnitude
    beyond ``span`` or, nonzero, below ``1 / span``; see
    :data:`_FLOAT32_SPAN`), else None (keep the arrays' dtype)."""
    peak = max((float(np.abs(a).max()) for a in arrays if a.size), default=0.0)
    if _beyond(peak, span):
        return np.float64
    return None


#: Look-up tables hold inner products of the queries with the codewords: a
#: float32 table of rows whose largest magnitudes multiply to more than this
#: (or, nonzero, to less than its inverse) overflows (sums of up to ``3e8``
#: such products stay below float32's about 3.4e38) or vanishes (nearer
#: float32's smallest normal, about 1.2e-38, than 8 orders of magnitude).
_PRODUCT_SPAN = 1e30


def _peak(a):
    """The largest magnitude in ``a`` (0.0 for an empty array), as a float."""
    return float(np.abs(a).max()) if a.size else 0.0


def _tables_dtype(Q, codebooks):
    """float64 where a float32 computation of the look-up tables or the
    asymmetric distances of the queries ``Q`` to ``codebooks`` would
    overflow or vanish (either array beyond :data:`_FLOAT32_SPAN`, or the
    product of their largest magnitudes beyond :data:`_PRODUCT_SPAN`),
    else None (float32, as for ordinary data)."""
    if _distance_dtype(Q, codebooks) is not None:
        return np.float64
    product = _peak(Q) * _peak(codebooks)
    if _beyond(product, _PRODUCT_SPAN):
        return np.float64
    return None


def _check_X_distances(X, *others, name="X", span=_FLOAT32_SPAN):
    """:func:`_check_X`, then float64 for a float32 ``X`` whose squared
    distances to the rows of ``others`` (or its own) would overflow or
    vanish in float32 (``span``: see :func:`_distance_dtype`): the codes and
    errors computed from it stay those of the data at any finite magnitude."""
    X = _check_X(X, name)
    if X.dtype == np.float32 and _distance_dtype(X, *others, span=span) is not None:
        X = X.astype(np.float64)
    return X


def _check_codebook_range(X, name="X"):
    """Refuse a float64 ``X`` with values beyond float32's range: codebooks
    are float32, and its centroids would become inf in the cast (k-means,
    the codebook update); ``encode`` itself handles such data in float64."""
    top = beyond_float32(X)
    if top is not None:
        raise ValueError(
            f"{name} holds values up to {top:.3g}, beyond float32's range "
            f"({float(np.finfo(np.float32).max):.3g}), in which codebooks are "
            f"stored: their codewords would be infinite. Rescale {name} into it "
            "(e.g. divide by its largest magnitude)."
        )
    return X


def _check_codebooks(codebooks, name="codebooks"):
    """Codebooks as a finite float32 ``(M, K, d)`` array.

    A NaN or infinite entry, or a finite one beyond float32's range (it
    would become inf in the cast), is refused: it made ``encode`` return
    codes silently (every distance to that codeword NaN or inf, so the
    argmin fell elsewhere or on codeword 0) and the distances NaN."""
    codebooks = np.asarray(codebooks)
    if codebooks.ndim != 3 or 0 in codebooks.shape:
        raise ValueError(
            f"{name} must be a 3-D array of shape (n_codebooks, n_codewords, "
            f"n_features), each at least 1, got an array of shape "
            f"{codebooks.shape}."
        )
    if codebooks.shape[1] > _MAX_CODEWORDS:
        raise ValueError(
            f"{name} have {codebooks.shape[1]} codewords per codebook; at most "
            f"{_MAX_CODEWORDS:,} are supported (codes are stored as uint16, "
            "and a larger code would wrap): use fewer codewords per codebook, "
            "e.g. more codebooks of 256."
        )
    if not np.issubdtype(codebooks.dtype, np.number) or np.iscomplexobj(codebooks):
        raise ValueError(
            f"{name} must be real numbers, got an array of dtype {codebooks.dtype}."
        )
    codebooks = check_real_float32(
        codebooks,
        name,
        "pass finite codebooks, e.g. a fitted quantizer's codebooks_ after a fit "
        "that did not diverge.",
        rescale="rescale the codebooks (and the data they encode) into it.",
    )
    return np.ascontiguousarray(codebooks, dtype=np.float32)


def _check_width(X, codebooks, name="X"):
    d = codebooks.shape[2]
    if X.shape[1] != d:
        raise ValueError(
            f"{name} has {X.shape[1]} features but the codebooks have d={d} "
            f"dimensions (shape {codebooks.shape}); pass {name} in the embedding "
            "space the codebooks were learned in."
        )


def _check_codes(codes, n_codebooks, n_codewords, name="codes"):
    """Integer codes of shape ``(n, n_codebooks)`` in ``[0, n_codewords)``."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] != n_codebooks:
        raise ValueError(
            f"{name} must have shape (n_samples, n_codebooks={n_codebooks}), got "
            f"shape {codes.shape}."
        )
    if codes.size == 0:
        return codes.astype(np.intp)
    if not np.issubdtype(codes.dtype, np.integer):
        if not np.issubdtype(codes.dtype, np.floating) or not np.all(
            np.isfinite(codes) & (codes == np.round(codes))
        ):
            raise ValueError(
                f"{name} must hold integer codeword indices, got dtype "
                f"{codes.dtype} with non-integer values."
            )
    lo, hi = codes.min(), codes.max()
    if lo < 0 or hi >= n_codewords:
        raise ValueError(
            f"{name} must lie in [0, n_codewords) = [0, {n_codewords}), got values "
            f"in [{lo}, {hi}]; encode with the same codebooks, or pass the "
            "n_codewords the codes were made with."
        )
    return codes.astype(np.intp, copy=False)


def _check_block_diagonal(codebooks):
    n_codebooks, _, d = codebooks.shape
    if n_codebooks > d:
        raise ValueError(
            f'kind="product" needs n_codebooks <= n_features, got '
            f"n_codebooks={n_codebooks} and n_features={d}."
        )
    outside = np.ones((n_codebooks, d), dtype=bool)
    for m, block in enumerate(product_blocks(d, n_codebooks)):
        outside[m, block] = False
    if np.any(codebooks[np.broadcast_to(outside[:, None, :], codebooks.shape)]):
        raise ValueError(
            'kind="product" codebooks must be zero outside their block of '
            "dimensions (product_blocks(d, n_codebooks)); these codebooks are not "
            'block-diagonal: use kind="additive" for them.'
        )


@validate_params(
    {
        "d": [Interval(Integral, 1, None, closed="left")],
        "n_codebooks": [Interval(Integral, 1, None, closed="left")],
    },
    prefer_skip_nested_validation=True,
)
def product_blocks(d, n_codebooks):
    """Split ``d`` dimensions into ``n_codebooks`` contiguous blocks.

    The blocks are ``np.array_split(np.arange(d), n_codebooks)``: ``d`` need not
    be a multiple of ``n_codebooks``, the first ``d % n_codebooks`` blocks get
    one dimension more.

    Parameters
    ----------
    d : int
        Number of dimensions (features) of the embedding.
    n_codebooks : int
        Number of blocks, one per product codebook. Must not exceed ``d``.

    Returns
    -------
    blocks : list of ndarray of int
        The indices of the dimensions of each block.

    Examples
    --------
    >>> from skhash.quantization import product_blocks
    >>> [b.tolist() for b in product_blocks(5, 2)]
    [[0, 1, 2], [3, 4]]
    """
    if n_codebooks > d:
        raise ValueError(
            f"n_codebooks={n_codebooks} product blocks need at least as many "
            f"dimensions, but n_features={d}; lower n_codebooks to at most {d}."
        )
    return np.array_split(np.arange(d), n_codebooks)
