"""Additive and product quantization with shared codebooks.

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

This module holds decoding, the codebook update, the error and the
estimators; the code assignment is in ``_encode`` (compiled kernels in
``_encode_kernels``), the k-means initialisation in ``_kmeans``, the
asymmetric distances in ``_distances`` and the validation in ``_checks``.
"""

from numbers import Integral, Real

import numpy as np
import scipy.linalg
import scipy.sparse
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import Interval, validate_params
from sklearn.utils.validation import check_is_fitted, validate_data

from skhash.quantization._checks import (
    _KINDS,
    _MAX_CODEWORDS,
    _check_codebook_range,
    _check_codebooks,
    _check_codes,
    _check_width,
    _check_X,
    _check_X_distances,
    product_blocks,
)
from skhash.quantization._encode import encode
from skhash.quantization._kmeans import kmeans_codebooks
from skhash.utils._atomic import all_or_nothing

# encode, kmeans_codebooks and product_blocks are re-exported: the learners
# import them from here
__all__ = [
    "AdditiveQuantizer",
    "ProductQuantizer",
    "decode",
    "encode",
    "kmeans_codebooks",
    "product_blocks",
    "quantization_error",
    "update_codebooks",
]

# --------------------------------------------------------------------------- #
# Public functions
# --------------------------------------------------------------------------- #


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
    X = _check_codebook_range(_check_X(X))
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
        previous = _check_codebooks(previous, name="previous")
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
    codebooks = _check_codebooks(codebooks)
    X = _check_X_distances(X, codebooks)
    _check_width(X, codebooks)
    rec = decode(codes, codebooks)
    if rec.shape[0] != X.shape[0]:
        raise ValueError(
            f"codes has {rec.shape[0]} rows but X has {X.shape[0]}; pass one row "
            "of codes per item of X."
        )
    diff = X.astype(np.float64) - rec
    return float(np.einsum("nd,nd->n", diff, diff).mean()) if len(X) else 0.0


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
    @all_or_nothing  # a failed refit keeps the previous fit
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
    @all_or_nothing  # a failed refit keeps the previous fit
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
