"""Codebook initialisation by k-means (residual k-means for additive codes)."""

import warnings
from numbers import Integral

import numpy as np
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, validate_params

from skhash.quantization._checks import (
    _KINDS,
    _MAX_CODEWORDS,
    _check_codebook_range,
    _check_X_distances,
    product_blocks,
)

__all__ = ["kmeans_codebooks"]

# Largest number of float entries of one (rows, K) distance block.
_CHUNK_ENTRIES = 1 << 22
# k-means++ seeds from a random subset of at most this many points per
# centroid (and at least _MIN_SEED_POINTS points; smaller data seeds from all).
_SEED_POINTS_PER_CENTROID = 8
_MIN_SEED_POINTS = 1024


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
    X = _check_codebook_range(_check_X_distances(X))
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
