"""Additive and product quantization with shared codebooks (pure numpy).

Codebooks are always a float32 array of shape ``(M, K, d)``: ``M`` codebooks of
``K`` codewords in the embedding space of dimension ``d``.

- ``kind="additive"``: every codeword spans all ``d`` dimensions (the additive
  quantization of the HQ paper, ``f ≈ Σ_l C^l b^l``).
- ``kind="product"``: block-diagonal codebooks (the product quantization of the
  DQN paper). Codebook ``m`` is nonzero only on its block of dimensions
  ``product_blocks(d, M)[m]``, and zero elsewhere.

For both kinds an item with codes ``c`` (``M`` integers) is reconstructed as
``Σ_m codebooks[m, c[m]]``, so :func:`decode`, :func:`lookup_tables` and
:func:`aqd` do not need to know the kind. Codes are ``uint8`` when ``K <= 256``
and ``uint16`` otherwise, of shape ``(n, M)``.
"""

import warnings
from numbers import Integral, Real

import numpy as np
import scipy.linalg
import scipy.sparse
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions, validate_params
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = [
    "AdditiveQuantizer",
    "ProductQuantizer",
    "aqd",
    "decode",
    "encode",
    "kmeans_codebooks",
    "lookup_tables",
    "product_blocks",
    "quantization_error",
    "reconstruction_sqnorms",
    "update_codebooks",
]

_KINDS = StrOptions({"additive", "product"})
_METRICS = StrOptions({"ip", "l2"})
# Largest number of float entries of one (rows, K) distance block in encode.
_CHUNK_ENTRIES = 1 << 22
_MAX_CODEWORDS = 1 << 16
# k-means++ seeds from a random subset of at most this many points per
# centroid (and at least _MIN_SEED_POINTS points; smaller data seeds from all).
_SEED_POINTS_PER_CENTROID = 8
_MIN_SEED_POINTS = 1024


# --------------------------------------------------------------------------- #
# Validation helpers
# --------------------------------------------------------------------------- #


def _codes_dtype(n_codewords):
    """Smallest unsigned dtype holding codes in ``[0, n_codewords)``."""
    return np.uint8 if n_codewords <= 256 else np.uint16


def _check_X(X, name="X"):
    """2-D finite float array (float32 stays float32, anything else float64)."""
    return check_array(X, dtype=[np.float64, np.float32], input_name=name)


def _check_codebooks(codebooks):
    """Codebooks as a float32 ``(M, K, d)`` array."""
    codebooks = np.asarray(codebooks)
    if codebooks.ndim != 3:
        raise ValueError(
            "codebooks must be a 3-D array of shape (n_codebooks, n_codewords, "
            f"n_features), got an array of shape {codebooks.shape}."
        )
    if not np.issubdtype(codebooks.dtype, np.number):
        raise ValueError(
            f"codebooks must be numeric, got an array of dtype {codebooks.dtype}."
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


def _nearest(R, C, C_sqnorms):
    """Index of the nearest row of ``C`` to each row of ``R`` (chunked)."""
    n = R.shape[0]
    out = np.empty(n, dtype=np.intp)
    step = max(1, _CHUNK_ENTRIES // max(1, C.shape[0]))
    Ct = C.T.astype(R.dtype, copy=False)
    for start in range(0, n, step):
        stop = min(n, start + step)
        dist = R[start:stop] @ Ct
        dist *= -2.0
        dist += C_sqnorms
        out[start:stop] = np.argmin(dist, axis=1)
    return out


# --------------------------------------------------------------------------- #
# Public functions
# --------------------------------------------------------------------------- #


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


def _kmeans(X, n_clusters, rng, n_iter):
    """Centroids (float64) by k-means, robust to ``n_samples < n_clusters``.

    Seeded by k-means++ on all of ``X`` when it has at most
    ``max(_SEED_POINTS_PER_CENTROID * n_clusters, _MIN_SEED_POINTS)`` rows,
    else on a random subset of that many (k-means++ on all points would cost
    more than the Lloyd iterations), then ``n_iter`` Lloyd iterations on all
    of ``X``.
    """
    n = X.shape[0]
    if n < n_clusters:
        # Too few samples: draw codewords among them with replacement and jitter
        # them a little so that they stay distinct (deterministic given rng).
        idx = np.concatenate([rng.permutation(n), rng.randint(n, size=n_clusters - n)])
        centers = X[idx].astype(np.float64)
        scale = float(np.std(X)) if n > 1 else float(np.abs(X).mean())
        scale = 1e-6 * (scale if scale > 0 else 1.0)
        centers += scale * rng.standard_normal(centers.shape)
        return centers
    seed = rng.randint(np.iinfo(np.int32).max)
    n_seed = max(_SEED_POINTS_PER_CENTROID * n_clusters, _MIN_SEED_POINTS)
    with warnings.catch_warnings():
        # Data with fewer distinct points than n_clusters: duplicated centers
        # are fine for a codebook.
        warnings.simplefilter("ignore", ConvergenceWarning)
        if n <= n_seed:
            init = "k-means++"
        else:
            sub = X[np.sort(rng.choice(n, n_seed, replace=False))]
            init, _ = kmeans_plusplus(sub, n_clusters, random_state=seed)
        km = KMeans(
            n_clusters=n_clusters,
            init=init,
            n_init=1,
            max_iter=max(1, n_iter),
            random_state=seed,
        )
        km.fit(X)
    return km.cluster_centers_.astype(np.float64)


@validate_params(
    {
        "X": ["array-like"],
        "n_codebooks": [Interval(Integral, 1, None, closed="left")],
        "n_codewords": [Interval(Integral, 1, _MAX_CODEWORDS, closed="both")],
        "kind": [_KINDS],
        "random_state": ["random_state"],
        "n_iter": [Interval(Integral, 1, None, closed="left")],
        "max_points_per_centroid": [Interval(Integral, 1, None, closed="left"), None],
    },
    prefer_skip_nested_validation=True,
)
def kmeans_codebooks(
    X,
    n_codebooks,
    n_codewords,
    *,
    kind,
    random_state=None,
    n_iter=20,
    max_points_per_centroid=256,
):
    """Initial codebooks by k-means.

    - ``kind="product"``: k-means on each block of dimensions independently.
    - ``kind="additive"``: residual k-means: k-means on ``X``, subtract the
      assigned centroids, k-means on the residual for the next codebook, etc.

    Each k-means is :class:`sklearn.cluster.KMeans` with ``n_init=1``, seeded
    by k-means++ (on a random subset of 8 points per codeword, at least
    1024, when there are more), with seeds drawn from ``random_state``, so
    the result is deterministic for a fixed ``random_state``. With more than
    ``max_points_per_centroid * n_codewords`` samples, the codebooks are
    learned on a random subset of that many samples (as faiss's
    ``ClusteringParameters.max_points_per_centroid``): the codebooks of more
    points barely differ, and the cost stops growing with ``n_samples``.

    When ``n_samples < n_codewords`` no error is raised: the codewords are drawn
    among the samples with replacement, plus a tiny deterministic jitter
    (``1e-6`` times the spread of the data), so that small folds still work.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Training embeddings.
    n_codebooks : int
        Number of codebooks ``M``.
    n_codewords : int
        Number of codewords per codebook ``K`` (at most 65536).
    kind : {"additive", "product"}
        Kind of quantization.
    random_state : int, RandomState instance or None, default=None
        Seeds the k-means runs.
    n_iter : int, default=20
        Maximum number of Lloyd iterations of each k-means.
    max_points_per_centroid : int or None, default=256
        Largest number of training samples per codeword; a larger ``X`` is
        subsampled (without replacement, once for all codebooks). ``None``
        uses every sample.

    Returns
    -------
    codebooks : ndarray of shape (n_codebooks, n_codewords, n_features), float32
        The codebooks; for ``kind="product"`` zero outside their blocks.

    Examples
    --------
    >>> import numpy as np
    >>> from skhash.quantization import kmeans_codebooks
    >>> X = np.random.RandomState(0).randn(100, 6)
    >>> C = kmeans_codebooks(X, 3, 8, kind="product", random_state=0)
    >>> C.shape, C.dtype
    ((3, 8, 6), dtype('float32'))
    >>> bool(np.all(C[0, :, 2:] == 0))
    True
    """
    X = _check_X(X)
    rng = check_random_state(random_state)
    n, d = X.shape
    if max_points_per_centroid is not None:
        n_keep = max_points_per_centroid * n_codewords
        if n > n_keep:
            X = X[np.sort(rng.choice(n, n_keep, replace=False))]
            n = n_keep
    codebooks = np.zeros((n_codebooks, n_codewords, d), dtype=np.float32)
    if kind == "product":
        for m, block in enumerate(product_blocks(d, n_codebooks)):
            codebooks[m][:, block] = _kmeans(X[:, block], n_codewords, rng, n_iter)
        return codebooks
    # in X's dtype: float32 embeddings run k-means at float32 speed
    residual = X.astype(X.dtype, copy=True)
    for m in range(n_codebooks):
        centers = _kmeans(residual, n_codewords, rng, n_iter)
        codebooks[m] = centers
        C = codebooks[m].astype(np.float64)
        assigned = _nearest(residual, C, np.einsum("kd,kd->k", C, C))
        residual -= C[assigned]
    return codebooks


@validate_params(
    {
        "X": ["array-like"],
        "codebooks": ["array-like"],
        "kind": [_KINDS],
        "n_iter": [Interval(Integral, 0, None, closed="left")],
        "init_codes": ["array-like", None],
        "beam_width": [Interval(Integral, 1, None, closed="left")],
        "n_jobs": [Integral, None],
        "device": [str, None],
    },
    prefer_skip_nested_validation=True,
)
def encode(
    X,
    codebooks,
    *,
    kind,
    n_iter=3,
    init_codes=None,
    beam_width=1,
    n_jobs=None,
    device=None,
):
    """Assign each item the codes that best reconstruct it.

    - ``kind="product"``: the exact nearest codeword in each block.
    - ``kind="additive"`` with one codebook: exhaustive nearest codeword.
    - ``kind="additive"`` with several codebooks: greedy residual encoding (or
      ``init_codes``), then ``n_iter`` sweeps of iterated conditional modes
      (ICM): for each codebook in turn, pick the codeword minimising
      ``‖x − Σ_{l≠m} C_l[c_l] − C_m[k]‖²`` with the others fixed. In exact
      arithmetic an ICM sweep never increases the reconstruction error of an
      item; a sweep that changes no code ends the search.
    - ``beam_width > 1`` (additive): the greedy start becomes a beam search
      that keeps the ``beam_width`` best partial encodings codebook after
      codebook (faiss's ``ResidualQuantizer.max_beam_size``), then ICM refines
      the best; lower error for about ``beam_width`` times the work of the
      greedy start.

    Items are encoded independently of each other by compiled kernels
    (numba), in fixed-size blocks: the temporary memory does not grow with
    ``n_samples``, and an item gets the same codes whatever else is encoded
    in the same call. The additive encoder works from the codeword Gram
    tables ``⟨C_l[i], C_m[k]⟩`` (``M²K²`` entries, used up to 64 MiB; larger
    codebooks update the residual directly). Computations run in ``X``'s
    dtype (float32 stays float32, anything else float64).

    Parameters
    ----------
    X : array-like of shape (n_samples, d)
        Embeddings to encode.
    codebooks : array-like of shape (n_codebooks, n_codewords, d)
        The codebooks.
    kind : {"additive", "product"}
        Kind of the codebooks.
    n_iter : int, default=3
        Number of ICM sweeps (additive kind with several codebooks only).
    init_codes : array-like of shape (n_samples, n_codebooks), default=None
        Starting codes for ICM instead of the greedy encoding (additive kind
        only), e.g. the codes of the previous round of training.
    beam_width : int, default=1
        Beam of the start of the additive search (1: greedy). Ignored with
        ``init_codes``.
    n_jobs : int, default=None
        Threads over blocks of items (``None``: 1, ``-1``: all cores); the
        codes do not depend on it.
    device : str, default=None
        ``None`` or ``"cpu"``: the compiled CPU kernels. A CUDA device such
        as ``"cuda"`` or ``"cuda:1"`` runs the same searches with torch on
        that GPU, in chunks of items (``beam_width`` must be 1); there the
        float32 sums run in another order, so an item whose best codewords
        tie within rounding may get the other one.

    Returns
    -------
    codes : ndarray of shape (n_samples, n_codebooks)
        ``uint8`` when ``n_codewords <= 256``, else ``uint16``.

    Examples
    --------
    >>> import numpy as np
    >>> from skhash.quantization import encode, kmeans_codebooks, quantization_error
    >>> X = np.random.RandomState(0).randn(50, 4)
    >>> C = kmeans_codebooks(X, 2, 4, kind="additive", random_state=0)
    >>> codes = encode(X, C, kind="additive")
    >>> codes.shape, codes.dtype
    ((50, 2), dtype('uint8'))
    >>> beam = encode(X, C, kind="additive", beam_width=8)
    >>> bool(quantization_error(X, beam, C) <= quantization_error(X, codes, C) + 1e-9)
    True
    """
    from joblib import effective_n_jobs

    from skhash.quantization import _encode

    X, codebooks, init_codes, out_dtype = _check_encode_args(
        X, codebooks, kind, init_codes
    )
    n_jobs = effective_n_jobs(n_jobs)
    if device is not None and device != "cpu":
        return _encode_on_device(
            X, codebooks, kind, n_iter, init_codes, beam_width, out_dtype, device
        )
    if kind == "product":
        blocks = product_blocks(X.shape[1], codebooks.shape[0])
        return _encode.encode_product(X, codebooks, blocks, out_dtype, n_jobs=n_jobs)
    return _encode.encode_additive(
        X,
        codebooks,
        n_iter=n_iter,
        init_codes=init_codes,
        out_dtype=out_dtype,
        beam_width=1 if init_codes is not None else beam_width,
        n_jobs=n_jobs,
    )


def _encode_on_device(
    X, codebooks, kind, n_iter, init_codes, beam_width, out_dtype, device
):
    """:func:`encode` with torch on a CUDA ``device``."""
    if not str(device).startswith("cuda"):
        raise ValueError(
            f"device={device!r} is not supported by encode; pass None or 'cpu' "
            "(compiled CPU kernels) or a CUDA device such as 'cuda' or 'cuda:0'."
        )
    if beam_width > 1 and init_codes is None and kind == "additive":
        raise ValueError(
            f"beam_width={beam_width} runs on the CPU only; pass device=None "
            "for the beam search, or beam_width=1 on the GPU."
        )
    from skhash._base import resolve_device
    from skhash.quantization._encode_torch import encode_torch

    blocks = None
    if kind == "product":
        blocks = product_blocks(X.shape[1], codebooks.shape[0])
    return encode_torch(
        X,
        codebooks,
        kind=kind,
        n_iter=n_iter,
        init_codes=init_codes,
        out_dtype=out_dtype,
        device=resolve_device(device),
        blocks=blocks,
    )


def _check_encode_args(X, codebooks, kind, init_codes):
    """Validated ``(X, codebooks, init_codes, codes dtype)`` of :func:`encode`."""
    X = _check_X(X)
    codebooks = _check_codebooks(codebooks)
    _check_width(X, codebooks)
    n_codebooks, n_codewords, _ = codebooks.shape
    if kind == "product":
        if init_codes is not None:
            raise ValueError(
                'init_codes is only used with kind="additive"; the product '
                "encoding is exact. Leave init_codes=None."
            )
        _check_block_diagonal(codebooks)
    elif init_codes is not None:
        init_codes = _check_codes(init_codes, n_codebooks, n_codewords, "init_codes")
        if init_codes.shape[0] != X.shape[0]:
            raise ValueError(
                f"init_codes has {init_codes.shape[0]} rows but X has "
                f"{X.shape[0]}; pass one row of codes per item of X."
            )
    return X, codebooks, init_codes, _codes_dtype(n_codewords)


def _encode_numpy(X, codebooks, *, kind, n_iter=3, init_codes=None):
    """The numpy reference of :func:`encode` (vectorised over all items).

    Kept to check the compiled kernels and as the baseline of
    ``benchmarks/bench_encode.py``; same arguments as :func:`encode`.
    """
    X, codebooks, init_codes, out_dtype = _check_encode_args(
        X, codebooks, kind, init_codes
    )
    n_codebooks = codebooks.shape[0]
    n = X.shape[0]
    C = codebooks.astype(X.dtype, copy=False)
    sqnorms = np.einsum("mkd,mkd->mk", C, C)

    if kind == "product":
        codes = np.empty((n, n_codebooks), dtype=out_dtype)
        for m, block in enumerate(product_blocks(X.shape[1], n_codebooks)):
            Cb = C[m][:, block]
            codes[:, m] = _nearest(X[:, block], Cb, sqnorms[m])
        return codes

    if init_codes is not None:
        codes = init_codes.copy()
        recon = np.zeros_like(X)
        for m in range(n_codebooks):
            recon += C[m][codes[:, m]]
    else:
        # Greedy residual encoding.
        codes = np.empty((n, n_codebooks), dtype=np.intp)
        recon = np.zeros_like(X)
        for m in range(n_codebooks):
            codes[:, m] = _nearest(X - recon, C[m], sqnorms[m])
            recon += C[m][codes[:, m]]

    if n_codebooks > 1:
        for _ in range(n_iter):
            for m in range(n_codebooks):
                # Residual with codebook m left out.
                target = X - recon
                target += C[m][codes[:, m]]
                new = _nearest(target, C[m], sqnorms[m])
                recon = X - target
                recon += C[m][new]
                codes[:, m] = new
    return codes.astype(out_dtype)


@validate_params(
    {"codes": ["array-like"], "codebooks": ["array-like"]},
    prefer_skip_nested_validation=True,
)
def decode(codes, codebooks):
    """Reconstruct items from their codes: ``Σ_m codebooks[m, codes[:, m]]``.

    The same formula serves both kinds (product codebooks are zero outside
    their blocks).

    Parameters
    ----------
    codes : array-like of shape (n_samples, n_codebooks)
        Codeword indices.
    codebooks : array-like of shape (n_codebooks, n_codewords, d)
        The codebooks.

    Returns
    -------
    X_rec : ndarray of shape (n_samples, d), float32
        The reconstruction.

    Examples
    --------
    >>> import numpy as np
    >>> from skhash.quantization import decode
    >>> C = np.random.RandomState(0).randn(2, 4, 3).astype(np.float32)
    >>> X_rec = decode([[0, 1], [3, 3]], C)
    >>> np.allclose(X_rec[0], C[0, 0] + C[1, 1])
    True
    """
    codebooks = _check_codebooks(codebooks)
    n_codebooks, n_codewords, d = codebooks.shape
    codes = _check_codes(codes, n_codebooks, n_codewords)
    out = np.zeros((codes.shape[0], d), dtype=np.float32)
    for m in range(n_codebooks):
        out += codebooks[m][codes[:, m]]
    return out


@validate_params(
    {
        "X": ["array-like"],
        "codes": ["array-like"],
        "n_codewords": [Interval(Integral, 1, _MAX_CODEWORDS, closed="both")],
        "kind": [_KINDS],
        "ridge": [Interval(Real, 0, None, closed="left")],
        "previous": ["array-like", None],
    },
    prefer_skip_nested_validation=True,
)
def update_codebooks(X, codes, n_codewords, *, kind, ridge=1e-3, previous=None):
    """Closed-form codebook update for fixed codes.

    Solves the ridge-regularised least squares
    ``C = (BᵀB + ridge·I)⁻¹ BᵀX``, where ``B`` is the ``(n, M·K)`` one-hot
    indicator matrix of the codes, and reshapes ``C`` to ``(M, K, d)``.

    - ``kind="additive"``: one joint ``(M·K)``-dimensional solve (``BᵀB`` is
      built from a sparse ``B``; ``M·K`` up to a few thousand is fine).
      ``ridge=0`` gives the minimum-norm least-squares solution.
    - ``kind="product"``: each block is solved on its own dimensions, where
      ``BᵀB`` is diagonal: the update is the k-means centroid
      ``sum / (count + ridge)``. Dimensions outside the blocks are zero.

    Empty codewords (used by no item) come out of the solve as zero. If
    ``previous`` is given they keep their previous value instead; this does not
    change the other codewords (an unused codeword is decoupled in ``BᵀB``) nor
    the reconstruction error of ``X``.

    Parameters
    ----------
    X : array-like of shape (n_samples, d)
        Embeddings.
    codes : array-like of shape (n_samples, n_codebooks)
        Their codes.
    n_codewords : int
        Number of codewords per codebook ``K``.
    kind : {"additive", "product"}
        Kind of the codebooks.
    ridge : float, default=1e-3
        Ridge added to the diagonal of ``BᵀB`` (absolute, in units of item
        counts).
    previous : array-like of shape (n_codebooks, n_codewords, d), default=None
        The current codebooks; if given, empty codewords keep these values.

    Returns
    -------
    codebooks : ndarray of shape (n_codebooks, n_codewords, d), float32
        The updated codebooks.

    Examples
    --------
    >>> import numpy as np
    >>> from skhash.quantization import (
    ...     encode, kmeans_codebooks, quantization_error, update_codebooks)
    >>> X = np.random.RandomState(0).randn(200, 8)
    >>> C = kmeans_codebooks(X, 2, 16, kind="additive", random_state=0)
    >>> codes = encode(X, C, kind="additive")
    >>> C_new = update_codebooks(X, codes, 16, kind="additive")
    >>> bool(quantization_error(X, codes, C_new) <= quantization_error(X, codes, C))
    True
    """
    X = _check_X(X)
    n, d = X.shape
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(
            f"codes must have shape (n_samples, n_codebooks), got shape {codes.shape}."
        )
    n_codebooks = codes.shape[1]
    codes = _check_codes(codes, n_codebooks, n_codewords)
    if codes.shape[0] != n:
        raise ValueError(
            f"codes has {codes.shape[0]} rows but X has {n}; pass one row of codes "
            "per item of X."
        )
    if previous is not None:
        previous = _check_codebooks(previous)
        if previous.shape != (n_codebooks, n_codewords, d):
            raise ValueError(
                f"previous must have shape (n_codebooks, n_codewords, d) = "
                f"{(n_codebooks, n_codewords, d)}, got {previous.shape}."
            )
    X64 = X.astype(np.float64, copy=False)
    new = np.zeros((n_codebooks, n_codewords, d), dtype=np.float64)
    counts = np.stack(
        [np.bincount(codes[:, m], minlength=n_codewords) for m in range(n_codebooks)]
    )
    rows = np.arange(n)

    if kind == "product":
        for m, block in enumerate(product_blocks(d, n_codebooks)):
            B = scipy.sparse.csr_matrix(
                (np.ones(n), (rows, codes[:, m])), shape=(n, n_codewords)
            )
            sums = np.asarray(B.T @ X64[:, block])
            denom = counts[m].astype(np.float64) + ridge
            with np.errstate(invalid="ignore", divide="ignore"):
                block_values = np.where(denom[:, None] > 0, sums / denom[:, None], 0.0)
            new[m][:, block] = block_values
    else:
        cols = (codes + np.arange(n_codebooks) * n_codewords).ravel()
        B = scipy.sparse.csr_matrix(
            (np.ones(n * n_codebooks), (np.repeat(rows, n_codebooks), cols)),
            shape=(n, n_codebooks * n_codewords),
        )
        G = (B.T @ B).toarray()
        BtX = np.asarray(B.T @ X64)
        if ridge > 0:
            G[np.diag_indices_from(G)] += ridge
            sol = scipy.linalg.solve(G, BtX, assume_a="pos")
        else:
            sol = scipy.linalg.lstsq(G, BtX)[0]
        new = sol.reshape(n_codebooks, n_codewords, d)

    new = new.astype(np.float32)
    if previous is not None:
        empty = counts == 0
        new[empty] = previous[empty]
    return new


@validate_params(
    {"X": ["array-like"], "codes": ["array-like"], "codebooks": ["array-like"]},
    prefer_skip_nested_validation=True,
)
def quantization_error(X, codes, codebooks):
    """Mean squared reconstruction error per item.

    ``mean_i ‖x_i − decode(codes_i)‖²`` (summed over dimensions, averaged over
    items).

    Parameters
    ----------
    X : array-like of shape (n_samples, d)
        Embeddings.
    codes : array-like of shape (n_samples, n_codebooks)
        Their codes.
    codebooks : array-like of shape (n_codebooks, n_codewords, d)
        The codebooks.

    Returns
    -------
    error : float
        The mean squared reconstruction error.

    Examples
    --------
    >>> import numpy as np
    >>> from skhash.quantization import quantization_error
    >>> C = np.zeros((1, 2, 2), dtype=np.float32)
    >>> C[0, 1] = [1, 1]
    >>> quantization_error([[1.0, 1.0], [0.0, 2.0]], [[1], [1]], C)
    1.0
    """
    X = _check_X(X)
    codebooks = _check_codebooks(codebooks)
    _check_width(X, codebooks)
    rec = decode(codes, codebooks)
    if rec.shape[0] != X.shape[0]:
        raise ValueError(
            f"codes has {rec.shape[0]} rows but X has {X.shape[0]}; pass one row "
            "of codes per item of X."
        )
    diff = X.astype(np.float64) - rec
    return float(np.einsum("nd,nd->n", diff, diff).mean()) if len(X) else 0.0


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
    lut : ndarray of shape (n_queries, n_codebooks, n_codewords), float32
        The tables.

    Examples
    --------
    >>> import numpy as np
    >>> from skhash.quantization import lookup_tables
    >>> rng = np.random.RandomState(0)
    >>> C = rng.randn(2, 4, 3).astype(np.float32)
    >>> lookup_tables(rng.randn(5, 3), C, metric="ip").shape
    (5, 2, 4)
    """
    Q = _check_X(Q, "Q")
    codebooks = _check_codebooks(codebooks)
    _check_width(Q, codebooks, "Q")
    n_codebooks, n_codewords, d = codebooks.shape
    flat = codebooks.reshape(-1, d).astype(Q.dtype, copy=False)
    lut = Q @ flat.T
    if metric == "l2":
        lut *= -2.0
        lut += np.einsum("kd,kd->k", flat, flat)
    return lut.reshape(Q.shape[0], n_codebooks, n_codewords).astype(np.float32)


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
    sqnorms : ndarray of shape (n_samples,), float32
        The squared norms.

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
    C = codebooks.astype(np.float64)
    out = np.zeros(codes.shape[0], dtype=np.float64)
    for m in range(n_codebooks):
        out += np.einsum("kd,kd->k", C[m], C[m])[codes[:, m]]
        for j in range(m + 1, n_codebooks):
            cross = C[m] @ C[j].T
            out += 2.0 * cross[codes[:, m], codes[:, j]]
    return out.astype(np.float32)


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
    scores : ndarray of shape (n_queries, n_items), float32
        The similarities (``"ip"``) or squared distances (``"l2"``).

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
    scores = np.zeros((Q.shape[0], codes.shape[0]), dtype=np.float32)
    for m in range(n_codebooks):
        scores += lut[:, m, :][:, codes[:, m]]
    if metric == "ip":
        return scores
    scores *= -2.0
    scores += reconstruction_sqnorms(codes, codebooks)[None, :]
    scores += np.einsum("qd,qd->q", Q, Q).astype(np.float32)[:, None]
    np.maximum(scores, 0.0, out=scores)
    return scores


# --------------------------------------------------------------------------- #
# Estimators
# --------------------------------------------------------------------------- #


def _check_not_container(estimator, X):
    """Reject the cross-modal containers with a message saying what to pass.

    Without this check numpy turns a ``MultiModal`` (a dict) into an object
    array and the user reads "float() argument must be ... not 'MultiModal'".
    """
    if isinstance(X, dict) and not scipy.sparse.issparse(X):  # MultiModal too
        names = tuple(X.keys())
        first = repr(names[0]) if names else "'img'"
        raise TypeError(
            f"{type(estimator).__name__} quantizes one 2-D array of embeddings; "
            f"got a {type(X).__name__} of the modalities {names}. Pass one "
            f"modality's array (X[{first}]), or use a cross-modal learner such "
            "as skhash.DQNQuantizer."
        )


class _BaseQuantizer(TransformerMixin, BaseEstimator):
    """Shared transform / inverse_transform of the quantizers."""

    _kind = None

    _parameter_constraints: dict = {
        "n_codebooks": [Interval(Integral, 1, None, closed="left")],
        "n_codewords": [Interval(Integral, 1, _MAX_CODEWORDS, closed="both")],
        "random_state": ["random_state"],
    }

    def _transform_kwargs(self):
        return {}

    def transform(self, X):
        """Encode ``X`` into codes.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.

        Returns
        -------
        codes : ndarray of shape (n_samples, n_codebooks)
            ``uint8`` when ``n_codewords <= 256``, else ``uint16``.
        """
        check_is_fitted(self)
        _check_not_container(self, X)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return encode(X, self.codebooks_, kind=self._kind, **self._transform_kwargs())

    def inverse_transform(self, X):
        """Reconstruct embeddings from codes.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_codebooks)
            Codes, as returned by :meth:`transform`.

        Returns
        -------
        X_rec : ndarray of shape (n_samples, n_features), float32
            The reconstruction ``Σ_m codebooks_[m, codes[:, m]]``.
        """
        check_is_fitted(self)
        codes = check_array(X, dtype=None, input_name="codes")
        return decode(codes, self.codebooks_)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # transform returns integer codes, not floats of the input's dtype.
        tags.transformer_tags.preserves_dtype = []
        return tags


class ProductQuantizer(_BaseQuantizer):
    """Product quantization: k-means on blocks of dimensions.

    The ``n_features`` dimensions are split into ``n_codebooks`` contiguous
    blocks (:func:`product_blocks`); each block gets its own k-means codebook of
    ``n_codewords`` codewords. The codebooks are stored block-diagonally in the
    full space, shape ``(n_codebooks, n_codewords, n_features)``, so that a
    reconstruction is the sum of one codeword per codebook.

    Parameters
    ----------
    n_codebooks : int, default=4
        Number of codebooks (blocks) ``M``; at most ``n_features``.
    n_codewords : int, default=256
        Number of codewords per codebook ``K`` (at most 65536). With fewer
        training samples than codewords, codewords are drawn among the samples
        (see :func:`kmeans_codebooks`).
    n_iter : int, default=20
        Maximum number of Lloyd iterations of each k-means.
    random_state : int, RandomState instance or None, default=None
        Seeds the k-means runs.

    Attributes
    ----------
    codebooks_ : ndarray of shape (n_codebooks, n_codewords, n_features)
        The float32 block-diagonal codebooks.
    n_features_in_ : int
        Number of features seen during :meth:`fit`.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :meth:`fit`, when ``X`` has string
        column names.

    See Also
    --------
    AdditiveQuantizer : Codewords over all dimensions, lower error for the
        same code length but slower encoding.

    Examples
    --------
    >>> import numpy as np
    >>> from skhash.quantization import ProductQuantizer
    >>> X = np.random.RandomState(0).randn(200, 8)
    >>> pq = ProductQuantizer(n_codebooks=4, n_codewords=16, random_state=0).fit(X)
    >>> codes = pq.transform(X)
    >>> codes.shape, codes.dtype
    ((200, 4), dtype('uint8'))
    >>> pq.inverse_transform(codes).shape
    (200, 8)
    """

    _kind = "product"

    _parameter_constraints: dict = {
        **_BaseQuantizer._parameter_constraints,
        "n_iter": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, n_codebooks=4, n_codewords=256, *, n_iter=20, random_state=None):
        self.n_codebooks = n_codebooks
        self.n_codewords = n_codewords
        self.n_iter = n_iter
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn the codebooks by k-means on each block.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training embeddings.
        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        self : object
            The fitted quantizer.
        """
        _check_not_container(self, X)
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        if self.n_codebooks > X.shape[1]:
            raise ValueError(
                f"n_codebooks={self.n_codebooks} product blocks need at least as "
                f"many features, but n_features={X.shape[1]}; set n_codebooks <= "
                f"{X.shape[1]}."
            )
        self.codebooks_ = kmeans_codebooks(
            X,
            self.n_codebooks,
            self.n_codewords,
            kind="product",
            random_state=check_random_state(self.random_state),
            n_iter=self.n_iter,
        )
        return self


class AdditiveQuantizer(_BaseQuantizer):
    """Additive quantization: ``x ≈ Σ_m C_m[c_m]`` with full-dimensional codewords.

    Initialised by residual k-means, then ``n_iter`` rounds alternate the code
    assignment (greedy/ICM, warm-started from the previous codes) and the
    closed-form ridge update of the codebooks (:func:`update_codebooks`), as in
    the learning algorithm of the HQ paper.

    Parameters
    ----------
    n_codebooks : int, default=4
        Number of codebooks ``M``.
    n_codewords : int, default=256
        Number of codewords per codebook ``K`` (at most 65536).
    n_iter : int, default=10
        Number of encode/update rounds after the k-means initialisation.
    n_icm_iter : int, default=3
        Number of ICM sweeps of each encoding (also used by :meth:`transform`).
    ridge : float, default=1e-3
        Ridge of the codebook update.
    random_state : int, RandomState instance or None, default=None
        Seeds the k-means initialisation.

    Attributes
    ----------
    codebooks_ : ndarray of shape (n_codebooks, n_codewords, n_features)
        The float32 codebooks.
    n_features_in_ : int
        Number of features seen during :meth:`fit`.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :meth:`fit`, when ``X`` has string
        column names.
    quantization_errors_ : ndarray of shape (n_iter,)
        Training quantization error (:func:`quantization_error`) after each
        encode/update round. The codes of each round are warm-started from the
        previous ones, so with a small ``ridge`` it does not increase.

    See Also
    --------
    ProductQuantizer : Block-diagonal codebooks, exact and faster encoding.

    Examples
    --------
    >>> import numpy as np
    >>> from skhash.quantization import AdditiveQuantizer
    >>> X = np.random.RandomState(0).randn(200, 8)
    >>> aq = AdditiveQuantizer(n_codebooks=2, n_codewords=16, random_state=0)
    >>> codes = aq.fit_transform(X)
    >>> codes.shape, aq.codebooks_.shape
    ((200, 2), (2, 16, 8))
    """

    _kind = "additive"

    _parameter_constraints: dict = {
        **_BaseQuantizer._parameter_constraints,
        "n_iter": [Interval(Integral, 0, None, closed="left")],
        "n_icm_iter": [Interval(Integral, 0, None, closed="left")],
        "ridge": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(
        self,
        n_codebooks=4,
        n_codewords=256,
        *,
        n_iter=10,
        n_icm_iter=3,
        ridge=1e-3,
        random_state=None,
    ):
        self.n_codebooks = n_codebooks
        self.n_codewords = n_codewords
        self.n_iter = n_iter
        self.n_icm_iter = n_icm_iter
        self.ridge = ridge
        self.random_state = random_state

    def _transform_kwargs(self):
        return {"n_iter": self.n_icm_iter}

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn the codebooks.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training embeddings.
        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        self : object
            The fitted quantizer.
        """
        _check_not_container(self, X)
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        codebooks = kmeans_codebooks(
            X,
            self.n_codebooks,
            self.n_codewords,
            kind="additive",
            random_state=check_random_state(self.random_state),
        )
        codes = None
        errors = []
        for _ in range(self.n_iter):
            codes = encode(
                X, codebooks, kind="additive", n_iter=self.n_icm_iter, init_codes=codes
            )
            codebooks = update_codebooks(
                X,
                codes,
                self.n_codewords,
                kind="additive",
                ridge=self.ridge,
                previous=codebooks,
            )
            errors.append(quantization_error(X, codes, codebooks))
        self.codebooks_ = codebooks
        self.quantization_errors_ = np.asarray(errors, dtype=np.float64)
        return self
