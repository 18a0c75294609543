"""Optimized product quantization: a learned rotation before product codes."""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted, validate_data

from skhash.quantization._codebooks import (
    decode,
    encode,
    kmeans_codebooks,
    quantization_error,
    update_codebooks,
)
from skhash.utils._atomic import all_or_nothing

__all__ = ["OPQ"]


def procrustes_rotation(X, Y):
    """The orthogonal ``R`` minimising ``‖X R − Y‖_F`` (``R = U Vᵀ`` of ``Xᵀ Y``)."""
    U, _, Vt = np.linalg.svd(X.T.astype(np.float64) @ Y.astype(np.float64))
    return (U @ Vt).astype(np.float32)


def opq_rounds(X, codebooks, rotation, n_codewords, n_rounds):
    """Alternate the product codes/codebooks of ``X R`` and the rotation ``R``.

    Each round encodes ``X R`` (exact, per block), updates the codebooks to
    the centroids of their codes, and sets ``R`` to the orthogonal Procrustes
    solution that maps ``X`` closest to the reconstructions (Ge et al.'s
    non-parametric OPQ). Neither step raises ``‖X R − C h‖²``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, d)
        Data (float32).
    codebooks : ndarray of shape (M, K, d)
        Block-diagonal product codebooks in the rotated space.
    rotation : ndarray of shape (d, d)
        The current orthogonal rotation.
    n_codewords : int
        ``K``.
    n_rounds : int
        Rounds.

    Returns
    -------
    codebooks, rotation, codes
        The updated codebooks and rotation, and the codes of ``X R`` under
        them.
    """
    codes = None
    for _ in range(n_rounds):
        Y = X @ rotation
        codes = encode(Y, codebooks, kind="product")
        codebooks = update_codebooks(
            Y, codes, n_codewords, kind="product", previous=codebooks
        )
        rotation = procrustes_rotation(X, decode(codes, codebooks))
    Y = X @ rotation
    codes = encode(Y, codebooks, kind="product")
    return codebooks, rotation, codes


class OPQ(TransformerMixin, BaseEstimator):
    """Optimized product quantization: product codes of a learned rotation.

    Product quantization (:class:`ProductQuantizer`) splits the dimensions
    into ``n_codebooks`` contiguous blocks and quantizes each block on its
    own, so its error depends on how the variance and the correlations fall
    across the blocks. OPQ (Ge, He, Ke and Sun, 2013) learns an orthogonal
    rotation ``R`` first and product-quantizes ``X R``: starting from
    ``R = I`` and k-means codebooks, ``n_iter`` rounds alternate the codes and
    codebooks of ``X R`` and the orthogonal Procrustes update of ``R``.
    Inner products and distances are unchanged by ``R``, so a query ``q``
    is compared with a code through ``q R`` and the codebooks (the
    asymmetric distance of :func:`aqd`). It is the quantizer of the DQN
    paper's two-step ablation (DQN₂₊: similarity-preserving features, then
    OPQ).

    Parameters
    ----------
    n_codebooks : int, default=4
        Number of codebooks (blocks of the rotated space) ``M``; at most
        ``n_features``.
    n_codewords : int, default=256
        Codewords per codebook ``K`` (at most 65536).
    n_iter : int, default=20
        Rotation/codebook rounds after the k-means initialisation.
    n_kmeans_iter : int, default=20
        Lloyd iterations of the initial k-means of each block.
    random_state : int, RandomState instance or None, default=None
        Seeds the k-means initialisation.

    Attributes
    ----------
    rotation_ : ndarray of shape (n_features, n_features)
        The orthogonal rotation ``R`` (float32); codes are of ``X @ rotation_``.
    codebooks_ : ndarray of shape (n_codebooks, n_codewords, n_features)
        Block-diagonal product codebooks in the rotated space (float32).
    quantization_errors_ : ndarray of shape (n_iter + 1,)
        Mean squared quantization error ``‖X R − C h‖²`` of the training data
        after the k-means initialisation and after each round; it does not
        increase.
    n_features_in_ : int
        Number of features seen during :meth:`fit`.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :meth:`fit`, when ``X`` has string
        column names.

    See Also
    --------
    ProductQuantizer : The same codes without the rotation.
    DQNQuantizer : Deep quantization; ``quantizer="opq"`` learns a rotation.

    References
    ----------
    .. [1] T. Ge, K. He, Q. Ke and J. Sun, "Optimized Product Quantization
       for Approximate Nearest Neighbor Search", CVPR 2013.

    Examples
    --------
    >>> import numpy as np
    >>> from skhash.quantization import OPQ, ProductQuantizer
    >>> rng = np.random.RandomState(0)
    >>> X = rng.randn(300, 2) @ rng.randn(2, 8)  # correlated dimensions
    >>> opq = OPQ(n_codebooks=2, n_codewords=8, random_state=0).fit(X)
    >>> codes = opq.transform(X)
    >>> codes.shape, opq.rotation_.shape
    ((300, 2), (8, 8))
    >>> bool(opq.quantization_errors_[-1] <= opq.quantization_errors_[0])
    True
    >>> opq.inverse_transform(codes).shape
    (300, 8)
    """

    _parameter_constraints: dict = {
        "n_codebooks": [Interval(Integral, 1, None, closed="left")],
        "n_codewords": [Interval(Integral, 1, 65536, closed="both")],
        "n_iter": [Interval(Integral, 0, None, closed="left")],
        "n_kmeans_iter": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        n_codebooks=4,
        n_codewords=256,
        *,
        n_iter=20,
        n_kmeans_iter=20,
        random_state=None,
    ):
        self.n_codebooks = n_codebooks
        self.n_codewords = n_codewords
        self.n_iter = n_iter
        self.n_kmeans_iter = n_kmeans_iter
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    @all_or_nothing  # a failed refit keeps the previous fit
    def fit(self, X, y=None):
        """Learn the rotation and the product codebooks.

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
        if isinstance(X, dict):  # MultiModal: one array per modality
            raise TypeError(
                f"OPQ quantizes one 2-D array of embeddings; got a "
                f"{type(X).__name__} of the modalities {tuple(X)}. Pass one "
                "modality's array, or use skhash.DQNQuantizer(quantizer='opq')."
            )
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        if self.n_codebooks > X.shape[1]:
            raise ValueError(
                f"n_codebooks={self.n_codebooks} product blocks need at least as "
                f"many features, but n_features={X.shape[1]}; set n_codebooks <= "
                f"{X.shape[1]}."
            )
        X = X.astype(np.float32, copy=False)
        rotation = np.eye(X.shape[1], dtype=np.float32)
        codebooks = kmeans_codebooks(
            X,
            self.n_codebooks,
            self.n_codewords,
            kind="product",
            random_state=check_random_state(self.random_state),
            n_iter=self.n_kmeans_iter,
        )
        codes = encode(X, codebooks, kind="product")
        errors = [quantization_error(X, codes, codebooks)]
        for _ in range(self.n_iter):
            codebooks, rotation, codes = opq_rounds(
                X, codebooks, rotation, self.n_codewords, 1
            )
            errors.append(quantization_error(X @ rotation, codes, codebooks))
        self.rotation_ = rotation
        self.codebooks_ = codebooks
        self.quantization_errors_ = np.asarray(errors, dtype=np.float64)
        return self

    def transform(self, X):
        """Encode ``X`` into the product codes of ``X @ rotation_``.

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
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        Y = X.astype(np.float32, copy=False) @ self.rotation_
        return encode(Y, self.codebooks_, kind="product")

    def inverse_transform(self, X):
        """Reconstruct embeddings from codes, in the original space.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_codebooks)
            Codes, as returned by :meth:`transform`.

        Returns
        -------
        X_rec : ndarray of shape (n_samples, n_features), float32
            ``decode(codes) @ rotation_.T``.
        """
        check_is_fitted(self)
        codes = check_array(X, dtype=None, input_name="codes")
        return decode(codes, self.codebooks_) @ self.rotation_.T

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = []
        return tags
