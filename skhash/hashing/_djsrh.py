"""DJSRHHasher: deep joint-semantics reconstructing hashing (Su et al., 2019)."""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions

from skhash._base import MAX_WIDTH, BaseCodeLearner, _Criterion
from skhash._codes import CodeSet, pack_bits
from skhash._losses import djsrh_affinity, djsrh_loss
from skhash.hashing._affinity import (
    MAX_CCA_WIDTH,
    canonical_features,
    fit_canonical,
    joint_cosine_knn,
    knn_affinity,
)
from skhash.utils._docstring import substitute

__all__ = ["DJSRHHasher"]


_IMAGE_NAMES = ("img", "image", "images", "image_features")
_TEXT_NAMES = ("txt", "text", "texts", "text_features", "tag", "tags")


def _alpha_function(schedule):
    """Return ``epoch -> α`` (epochs count from 1) for ``alpha_schedule``."""
    if isinstance(schedule, str):  # "sqrt", the paper's α = √t
        return math.sqrt
    if callable(schedule):
        return schedule
    value = float(schedule)
    return lambda epoch: value


def _checked_alpha(schedule, epoch):
    """``α`` at ``epoch``, or a ValueError naming ``alpha_schedule``."""
    value = schedule(epoch)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(
            f"alpha_schedule returned {value!r} ({type(value).__name__}) at epoch "
            f"{epoch}; it must return a finite positive number, e.g. "
            "alpha_schedule=lambda t: min(t ** 0.5, 10)."
        )
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(
            f"alpha_schedule gave α={value!r} at epoch {epoch}; it must "
            "return a finite positive number."
        )
    return value


class _DJSRHCriterion(_Criterion):
    """DJSRH eq. (5) on a batch: the affinity μS of the batch's input
    features, reconstructed by the cosines of the codes ``tanh(α H)``.

    The towers only see the batch, so the input features the affinity needs
    are looked up by the batch's ``index`` in ``features`` (the training
    inputs, handed over by ``DJSRHHasher._start_training`` for the duration
    of the training).
    """

    def __init__(
        self,
        modalities,
        *,
        beta,
        eta,
        mu,
        lambda1,
        lambda2,
        alpha,
        affinity="paper",
        affinity_weight=0.0,
    ):
        super().__init__()
        self.affinity = affinity
        self.affinity_weight = affinity_weight
        self.neighbors = None  # (n_train, k) kNN lists, while training
        self.valid_neighbors = None
        self.modalities = modalities
        self.beta = beta
        self.eta = eta
        self.mu = mu
        self.lambda1 = lambda1
        self.lambda2 = lambda2
        self.alpha = alpha
        self.features = None  # {modality: (n_train, p) tensor}, while training
        self.valid_features = None  # the same for the validation items

    def _target(self, inputs, neighbors):
        target = djsrh_affinity(inputs, beta=self.beta, eta=self.eta, mu=self.mu)
        if self.affinity == "knn":
            target = knn_affinity(
                target, neighbors, weight=self.affinity_weight, mu=self.mu
            )
        return target

    def current_alpha(self):
        return _checked_alpha(self.alpha, max(self.epoch, 1))

    def forward(self, y_pred, y_true):
        if "index" in y_pred:
            features, idx = self.features, y_pred["index"]
            neighbors = self.neighbors
        else:  # a validation batch
            features, idx = self.valid_features, y_pred.get("valid_index")
            neighbors = self.valid_neighbors
        if features is None or idx is None:
            raise RuntimeError(
                "The DJSRH criterion has no training inputs to build the "
                "affinity from; it only works inside DJSRHHasher.fit."
            )
        inputs = [features[m][idx] for m in self.modalities]
        target = self._target(inputs, None if neighbors is None else neighbors[idx])
        alpha = self.current_alpha()
        codes = [torch.tanh(alpha * y_pred[m]) for m in self.modalities]
        loss = djsrh_loss(codes, target, lambda1=self.lambda1, lambda2=self.lambda2)
        with torch.no_grad():
            terms = {"alpha": alpha}
            if len(codes) == 2:
                within = [djsrh_loss([b], target).item() for b in codes]
                terms["loss_cross"] = (
                    loss.item() - self.lambda1 * within[0] - self.lambda2 * within[1]
                )
                terms["loss_within_" + self.modalities[0]] = within[0]
                terms["loss_within_" + self.modalities[1]] = within[1]
            self._record(**terms)
        return loss


@substitute
class DJSRHHasher(BaseCodeLearner):
    """Unsupervised cross-modal hashing by joint-semantics reconstruction.

    Deep Joint-Semantics Reconstructing Hashing (DJSRH) learns binary codes
    without labels. For every batch of ``m`` items it builds the cosine
    similarity matrices of each modality's input features,
    ``S_k = 2 F̂_k F̂_kᵀ − 1`` (``F̂`` the L2-normalised rows, rescaled as in
    the authors' code), mixes them into the joint-semantics affinity::

        S̃ = β S_1 + (1 − β) S_2,    S = (1 − η) S̃ + η S̃ S̃ᵀ / m

    and trains one tower per modality so that the cosines of the relaxed
    codes ``B_k = tanh(α H_k)`` reconstruct ``μ S`` (the paper's eq. 5)::

        mse(cos(B_1, B_2), μS) + λ1 mse(cos(B_1, B_1), μS)
                               + λ2 mse(cos(B_2, B_2), μS)

    ``α`` grows with the epoch (``α = √t`` by default), so that ``tanh(α H)``
    approaches ``sgn H``. Batches have a fixed size (the last, incomplete
    batch of an epoch is dropped) because ``S`` depends on ``m``.

    By default (``affinity="knn"``) the target ``μS`` is mixed with a
    global neighbourhood term, computed once per fit over the whole
    training set: the shared nearest neighbours of the items' joint cosine
    graph (see ``affinity``); ``affinity="paper"`` is eq. (3) alone.

    With two modalities the affinity's features are, by default, the
    towers' inputs projected onto the canonical directions of the training
    pairs, each scaled by its canonical correlation (a closed-form linear
    CCA fitted in ``fit``; see ``affinity_features``), so that what the two
    modalities share outweighs each one's own noise.

    With a plain 2-D ``X`` (one modality) the affinity comes from that
    modality alone and the loss is ``mse(cos(B, B), μS)``: single-modal
    unsupervised hashing.

    ``transform`` gives, per modality, the relaxed code ``tanh(α H)`` with
    the last epoch's ``α`` as the embedding and ``sgn H`` as the packed
    binary code; there are no quantization codes.

    Read more in the :ref:`User Guide <learners>`.

    Parameters
    ----------
    n_bits : int, default=64
        Code length: the width of each tower's output ``H``.
    beta : float, default=0.3
        Weight ``β`` of the image modality's similarity in ``S̃`` (the text
        modality gets ``1 − β``); the paper's Wiki setting. Unused with one
        modality. Which modality is the image is decided by name (see
        ``image_modality``), never by the order of the ``MultiModal``.
    eta : float, default=0.4
        Weight ``η`` of the second-order term ``S̃ S̃ᵀ / m``.
    mu : float, default=1.5
        Scale ``μ`` of the target affinity.
    lambda1 : float, default=0.3
        Weight of the image modality's within-modality term.
    lambda2 : float, default=0.3
        Weight of the text modality's within-modality term.
    image_modality : str, default=None
        Name of the image modality (the one ``beta`` and ``lambda1`` weigh).
        None resolves it by name: a modality named ``"img"`` or ``"image"``,
        else the modality that is not named ``"txt"`` or ``"text"``; two
        modalities with other names need it set explicitly.
    affinity_features : {"auto", "cca", "inputs", "raw"} or dict, default="auto"
        The features the joint-semantics affinity ``S`` is built from:
        ``"inputs"``, each tower's input (standardised when
        ``standardize=True``); ``"cca"``, the towers' inputs projected onto
        the canonical directions of the training pairs (below); ``"auto"``,
        ``"cca"`` for two modalities of at most 4,096 features each, else
        ``"inputs"`` (one modality, or wider items); ``"raw"``, the features
        as given, without standardisation; or a dict mapping a modality to
        the name of another
        modality of ``X`` that holds its affinity features, e.g.
        ``{"img": "img_feat"}`` with ``X = MultiModal(img=pixels,
        img_feat=cnn_features, txt=...)``: the tower reads the raw images
        while the affinity uses frozen CNN features (the authors' setting).
        Such side modalities get no tower, are not needed by
        ``transform`` and are used as given (not standardised); a modality
        the dict does not name uses its tower's input, as with
        ``"inputs"``. N-D items are flattened for the affinity.

        With ``"cca"``, ``fit`` computes a closed-form, ridge-regularised
        linear CCA of the two modalities' training items (each covariance
        plus 0.1 × its mean variance on the diagonal, whitened, then one
        SVD; no labels, never the validation items): all
        ``min(p_img, p_txt)`` canonical directions, each scaled by its
        canonical correlation, so the modality-specific directions, whose
        correlation is small, count little in the cosines. Both towers
        then reconstruct the affinity of these projections; the towers
        still read their own inputs. It needs two modalities (one raises a
        ValueError; ``"auto"`` then uses ``"inputs"``) of at most 4,096
        features each. The correlations are kept in
        ``canonical_correlations_``. See Notes for what it changes.
    affinity : {"paper", "knn"}, default="knn"
        The target affinity. ``"paper"`` is eq. (3) on each batch, exactly.
        ``"knn"`` mixes it with a global neighbourhood term computed once
        per fit over the whole training set (the batch's second-order term
        ``S̃ S̃ᵀ / m`` only sees in-batch neighbours)::

            (1 − γ) μ S + γ μ (2 C − 1),    C_ij = |N(i) ∩ N(j)| / k

        where ``N(i)`` holds item ``i`` and its ``k − 1`` nearest training
        items under the joint cosine ``β cos_img + (1 − β) cos_txt`` of the
        affinity features, and ``C`` is the shared-neighbour coherence of
        the batch's items, looked up by their index (after the
        graph-neighbour coherence of DGCPN, Yu et al., 2021). Memory is
        ``O(N k)`` for the lists; they are exact up to 20,000 training
        items and searched among 20,000 training items drawn at random
        (seeded by ``random_state``) beyond. See Notes for when it helps.
    n_affinity_neighbors : int, default=100
        ``k``, the length of each neighbour list with ``affinity="knn"``
        (clipped to the number of training items). Keep it near or below
        the number of training items of one semantic class; with a few
        hundred training items, about a tenth of them. Unused with
        ``affinity="paper"``.
    affinity_weight : float, default=0.25
        ``γ`` in ``[0, 1]``, the weight of the neighbourhood term with
        ``affinity="knn"``: 0 is the paper's target, 1 the neighbourhood
        term alone. Unused with ``affinity="paper"``.
    alpha_schedule : "sqrt", float or callable, default="sqrt"
        The ``α`` of ``tanh(α H)``: ``"sqrt"`` is the paper's ``α = √t`` at
        epoch ``t`` (counted from 1), a float a constant ``α``, a callable
        ``f(t) -> α``.
    hidden_layer_sizes : tuple of int, default=(512,)
        Hidden widths of the default MLP towers.
    dropout : float, default=0.3
        Dropout of the default towers.
    module : torch.nn.Module class or dict of them, default=None
        A tower class instead of the MLP (any ``torch.nn.Module``: a CNN
        for images, lazy layers, a pretrained backbone), built with
        ``n_outputs=n_bits``, ``n_features`` and/or ``input_shape`` (the
        shape of one item) as its constructor asks, and the extra
        ``module__<name>=value`` arguments; a dict gives one class per
        modality (None there: the default MLP). See :ref:`training`.
    standardize : bool, default=True
        Standardise each modality's features (mean and scale learned in
        ``fit``: per feature of 2-D inputs, per channel of N-D ones; a
        feature constant to float32 precision, spread at most ``1e-6`` of
        its mean, is centred only, any other of any magnitude scaled). The
        towers *and the affinity* use the standardised
        features: on Wiki's raw, non-negative histograms every cosine looks
        alike (see Notes).
    max_epochs : int, default=30
        Training epochs.
    batch_size : int, default=128
        Items per batch, ``m`` (the paper uses 32; see Notes).
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, batch order and dropout. On CPU the same
        integer gives bit-identical codes. Global random state is never
        touched.
    {training_params}

    Attributes
    ----------
    net_ : skorch.NeuralNet
        The trained network (towers in ``net_.module_.towers``).
    history_ : skorch.History
        Loss per epoch, with ``alpha`` and, for two modalities, the terms
        ``loss_cross`` and ``loss_within_<modality>``.
    alpha_ : float
        ``α`` of the last epoch, used for the embeddings ``tanh(α H)``.
    canonical_correlations_ : ndarray of shape (min(p_img, p_txt),) or None
        The regularised canonical correlations of the training pairs, in
        decreasing order, when the affinity was built in their canonical
        space (``affinity_features="cca"``, or ``"auto"`` on two
        modalities); None otherwise.
    {learner_attributes}

    See Also
    --------
    HQHasher : Supervised hashing with additive quantization codes.
    TwoStageRetriever : Searches the codes.

    Notes
    -----
    Defaults. The authors' public code (``settings.py``) uses for Wiki
    ``BETA=0.3, ETA=0.4, MU=1.5, LAMBDA1=LAMBDA2=0.3``, batches of 32 and
    200 epochs of SGD (momentum 0.9, weight decay 5e-4, lr 0.01) over
    AlexNet features for the images. ``beta``, ``eta``, ``mu``, ``lambda1``
    and ``lambda2`` keep these values: on Wiki (1,673
    training pairs as the database, 500 other training pairs as validation
    queries, 32 bits, 2 seeds) every single change we tried (β 0.1/0.5,
    η 0/0.7, μ 1/2, λ 0.1/1) moved the harmonic MAP@50 by at most 0.012,
    about the seed-to-seed spread. The towers (one hidden layer of 512,
    dropout 0.3), Adam at lr 1e-3 and ``max_epochs=30`` were picked on the
    same validation split: 10 to 40 epochs, lr 3e-4 to 3e-3 and
    512 to 1,024 hidden units all score within 0.02, while 4,096 hidden
    units or linear towers score 0.02 to 0.03 lower. ``batch_size`` is 128,
    not the paper's 32, from the defaults protocol
    (``benchmarks/bench_defaults.py``; validation quarters of the training
    splits, 32 bits, harmonic MAP@50, with ``affinity="paper"``): 0.348
    against 0.332 on Wiki, 0.400 against 0.387 on wiki_alt, 0.388 against
    0.385 on yeast_mv (label-set Jaccard ≥ 0.5), 0.691 against 0.696 and
    0.682 against 0.686 on two ``make_cross_modal`` sets (data drawn from
    CCA's own model), and 2.5–3 times faster to train. The affinity's
    ``2 cos − 1`` puts 8–16 % of the off-diagonal targets outside [−1, 1]
    on standardised features, out of reach of code cosines; dropping the
    rescaling gained only 0.007–0.010 (yeast_mv, wiki_alt), clipping to
    [−1, 1] 0.001, and lr 3e-4, μ = 1 or 60 epochs moved it by at most
    0.005 (yeast_mv).

    Affinity. ``affinity="knn"`` (``n_affinity_neighbors=100``,
    ``affinity_weight=0.25``) is the default by the defaults protocol's
    rule, the best worst-case ratio to CCA+ITQ over the two-modality
    datasets (validation quarters of the training splits, harmonic MAP@50,
    mean over seeds). At 32 bits (3 seeds), ``"paper"`` against ``"knn"``:
    Wiki 1.239 / 1.263, wiki_alt 1.341 / 1.363, yeast_mv 1.134 / 1.140,
    ``make_cross_modal`` single-label 1.008 / 1.029 and 1.166 / 1.211
    (difficulty 0.5, 1.0), multi-label 1.032 / 1.032 and 1.015 / 1.019
    (difficulty 1.0, 1.5): worst case 1.008 / 1.019. At 16 and 64 bits (2
    seeds) the worst case is 0.996 / 1.006: the multi-label sets moved by
    at most 0.010 either way, the single-label ``make_cross_modal`` sets
    gained 0.018–0.072, Wiki lost 0.026 at 16 bits and gained 0.020 at
    64 (wiki_alt −0.006 and +0.075).
    ``k`` of 50 or 200 and ``γ`` of 0.35–0.4 had a lower worst case
    (1.012–1.015); ``k`` should stay near or below the size of a semantic
    class (here about 110–160 training items per class: with ``k = 200``
    the lists cross classes). Also measured and not kept (one seed): the
    coherence term alone (``γ = 1``, ``k = 20``: below CCA+ITQ on Wiki and
    the multi-label sets), the coherence in place of the in-batch
    second-order term (worst case 1.012), and the paper's target on
    neighbour-averaged features (``k`` 10–50, worst case 0.991–1.006).
    The kNN search costs ``O(N min(N, 20000) p)`` once per fit and the
    coherence ``O(m² k)`` per batch; Wiki trains in about the same time.

    Affinity features. ``affinity_features="auto"`` (canonical features on
    two modalities) is the default by the same rule; the figures above
    are with ``"inputs"``. Standardised inputs weigh every feature alike in
    the cosine, modality-specific noise as much as what the two modalities
    share; the correlation-scaled canonical projections weigh each
    direction by how shared it is. Validation quarters of the training
    splits, ``affinity="knn"``, ratio to CCA+ITQ, mean of 3 seeds at 32
    bits and of 2 at 16 and 64, ``"inputs"`` against ``"cca"``: worst case
    1.006 / 1.018 (16 bits), 1.019 / 1.018 (32), 1.027 / 1.028 (64);
    wiki_alt 1.131 / 1.251, 1.363 / 1.474, 2.169 / 2.318; Wiki
    1.187 / 1.230, 1.263 / 1.259, 1.283 / 1.305; yeast_mv 1.057 / 1.061,
    1.140 / 1.142, 1.134 / 1.164; the ``make_cross_modal`` sets moved by
    −0.023 to +0.017. It does not lift the multi-label ``make_cross_modal``
    sets (1.02–1.06 either way): there the joint cosine of the training
    pairs ranks their neighbours at MAP@50 0.80 on standardised inputs and
    0.80–0.81 in the canonical space (difficulty 1.0), the limit set by the
    shared latent's own noise, below 1.1 × CCA+ITQ (0.81 on the
    validation quarter). Also measured at 32 bits (one seed) and not kept:
    unscaled canonical variates (worst 1.009, wiki_alt 1.192), scaling by
    ``ρ²`` (Wiki 1.158), a ridge of 0.01 or 1.0 (worst 1.013 both, Wiki
    1.243 / 1.163) and the mean of the input and canonical cosines
    (wiki_alt 1.418). The CCA costs ``O(N p² + p³)`` once per fit.

    Input scale. With ``standardize=True`` (the default) the towers see
    standardised features and the affinity is built from the same
    standardised features (their canonical projections by default);
    ``standardize=False`` uses the raw features for both. The figures of
    this paragraph are with ``affinity_features="inputs"``. On the
    validation split above (32 bits): 0.36 harmonic MAP@50
    standardised, 0.33 with ``standardize=False``, and 0.35 with the
    affinity from the raw features but standardised towers, so most of the
    loss comes from the towers' input scale. The authors' rescaling
    ``2 cos − 1`` assumes non-negative features (cosine in [0, 1]); on
    standardised features dropping it changed the score by less than 0.01.

    References
    ----------
    .. [1] S. Su, Z. Zhong and C. Zhang, "Deep Joint-Semantics
       Reconstructing Hashing for Large-Scale Unsupervised Cross-Modal
       Retrieval", ICCV 2019.

    Examples
    --------
    >>> import numpy as np
    >>> from skhash import MultiModal
    >>> from skhash.hashing import DJSRHHasher
    >>> rng = np.random.RandomState(42)
    >>> z = rng.randn(64, 3)
    >>> X = MultiModal(img=z @ rng.randn(3, 8), txt=z @ rng.randn(3, 5))
    >>> djsrh = DJSRHHasher(n_bits=16, hidden_layer_sizes=(32,), max_epochs=3,
    ...                     batch_size=16, random_state=0).fit(X)
    >>> codes = djsrh.transform(X)
    >>> codes["img"].bits.shape, codes["txt"].embedding.shape, codes.has("codes")
    ((64, 2), (64, 16), False)
    """

    _parameter_constraints: dict = {
        **BaseCodeLearner._parameter_constraints,
        "n_bits": [Interval(numbers.Integral, 1, MAX_WIDTH, closed="both")],
        "beta": [Interval(numbers.Real, 0, 1, closed="both")],
        "eta": [Interval(numbers.Real, 0, 1, closed="both")],
        "mu": [Interval(numbers.Real, 0, None, closed="neither")],
        "lambda1": [Interval(numbers.Real, 0, None, closed="left")],
        "lambda2": [Interval(numbers.Real, 0, None, closed="left")],
        "alpha_schedule": [
            StrOptions({"sqrt"}),
            Interval(numbers.Real, 0, None, closed="neither"),
            callable,
        ],
        "image_modality": [None, str],
        "affinity_features": [StrOptions({"auto", "inputs", "raw", "cca"}), dict],
        "affinity": [StrOptions({"paper", "knn"})],
        "n_affinity_neighbors": [Interval(numbers.Integral, 1, None, closed="left")],
        "affinity_weight": [Interval(numbers.Real, 0, 1, closed="both")],
    }
    _structural_params = (*BaseCodeLearner._structural_params, "n_bits")

    _requires_y = False

    def __init__(
        self,
        n_bits=64,
        *,
        beta=0.3,
        eta=0.4,
        mu=1.5,
        lambda1=0.3,
        lambda2=0.3,
        alpha_schedule="sqrt",
        image_modality=None,
        affinity_features="auto",
        affinity="knn",
        n_affinity_neighbors=100,
        affinity_weight=0.25,
        hidden_layer_sizes=(512,),
        dropout=0.3,
        module=None,
        standardize=True,
        max_epochs=30,
        batch_size=128,
        random_state=None,
        lr=1e-3,
        weight_decay=0.0,
        device="auto",
        verbose=0,
        n_jobs=1,
        optimizer=torch.optim.Adam,
        callbacks=None,
        train_split=None,
        warm_start=False,
        accelerator=None,
        **kwargs,
    ):
        self.n_bits = n_bits
        self.beta = beta
        self.eta = eta
        self.mu = mu
        self.lambda1 = lambda1
        self.lambda2 = lambda2
        self.alpha_schedule = alpha_schedule
        self.image_modality = image_modality
        self.affinity_features = affinity_features
        self.affinity = affinity
        self.n_affinity_neighbors = n_affinity_neighbors
        self.affinity_weight = affinity_weight
        self.hidden_layer_sizes = hidden_layer_sizes
        self.dropout = dropout
        self.module = module
        self.standardize = standardize
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.n_jobs = n_jobs
        self.optimizer = optimizer
        self.callbacks = callbacks
        self.train_split = train_split
        self.warm_start = warm_start
        self.accelerator = accelerator
        self._store_routed(kwargs)

    def fit(self, X, y=None):
        """Train the towers to reconstruct the joint-semantics affinity.

        Parameters
        ----------
        X : MultiModal or array-like of shape (n_samples, n_features)
            Training items: a :class:`~skhash.MultiModal` of one or two
            paired modalities, or a plain 2-D array (single-modal hashing).
        y : Ignored
            Not used (DJSRH is unsupervised), present for API consistency.

        Returns
        -------
        self : object
            The fitted learner.
        """
        return super().fit(X, y)

    def _check_params(self):
        if callable(self.alpha_schedule) and not isinstance(self.alpha_schedule, str):
            _checked_alpha(self.alpha_schedule, 1)  # a clear error before training
        if isinstance(self.n_affinity_neighbors, (bool, np.bool_)):
            raise ValueError(
                f"n_affinity_neighbors={self.n_affinity_neighbors!r} must be a "
                "positive int (bool is not accepted); pass e.g. "
                "n_affinity_neighbors=100."
            )
        if isinstance(self.affinity_weight, (bool, np.bool_)):
            raise ValueError(
                f"affinity_weight={self.affinity_weight!r} must be a float in "
                "[0, 1] (bool is not accepted); pass e.g. affinity_weight=0.25, "
                "or affinity='paper' for the paper's target alone."
            )
        if isinstance(self.affinity_features, dict):
            for key, value in self.affinity_features.items():
                if not isinstance(key, str) or not isinstance(value, str):
                    raise ValueError(
                        "affinity_features must map modality names to modality "
                        f"names, e.g. {{'img': 'img_feat'}}; got {key!r}: {value!r}."
                    )

    def _side_modalities(self):
        if isinstance(self.affinity_features, dict):
            return tuple(self.affinity_features.values())
        return ()

    def _tower_modalities(self, modalities):
        side = self._side_modalities()
        missing = [m for m in side if m not in modalities]
        if missing:
            raise ValueError(
                f"affinity_features={self.affinity_features!r} names the "
                f"modalities {missing}, which X does not have; X has {modalities}."
            )
        towered = tuple(m for m in modalities if m not in side)
        if isinstance(self.affinity_features, dict):
            wrong = [k for k in self.affinity_features if k not in towered]
            if wrong:
                raise ValueError(
                    f"affinity_features={self.affinity_features!r} gives features "
                    f"for {wrong}, which are not trained modalities of X "
                    f"({towered})."
                )
        if not towered:
            raise ValueError("X has no modality left to train a tower on.")
        return towered

    def _roles(self, modalities):
        """The modalities in role order: (image, text), or the only one."""
        if len(modalities) == 1:
            return tuple(modalities)
        if self.image_modality is not None:
            if self.image_modality not in modalities:
                raise ValueError(
                    f"image_modality={self.image_modality!r} is not a modality of "
                    f"X; X has {tuple(modalities)}."
                )
            image = self.image_modality
        else:
            named = [m for m in modalities if m.lower() in _IMAGE_NAMES]
            if not named:
                named = [m for m in modalities if m.lower() not in _TEXT_NAMES]
            if len(named) != 1:
                raise ValueError(
                    f"DJSRHHasher cannot tell which of the modalities "
                    f"{tuple(modalities)} is the image (beta and lambda1 weigh the "
                    "image modality, 1 - beta and lambda2 the text one); name "
                    "them 'img' and 'txt', or pass image_modality=<name>."
                )
            image = named[0]
        return (image, *[m for m in modalities if m != image])

    def _n_outputs(self):
        return self.n_bits

    def _make_criterion(self, modalities, n_train):
        if len(modalities) > 2:
            raise ValueError(
                f"DJSRHHasher takes one or two modalities; got {len(modalities)}: "
                f"{modalities}."
            )
        if self.affinity_features == "cca" and len(modalities) != 2:
            raise ValueError(
                "affinity_features='cca' builds the affinity in the canonical "
                "space of two paired modalities, but X has one modality "
                f"{tuple(modalities)}; pass a MultiModal of two modalities, or "
                "affinity_features='inputs' (or the default 'auto') for "
                "single-modal hashing."
            )
        return _DJSRHCriterion(
            self._roles(modalities),
            beta=self.beta,
            eta=self.eta,
            mu=self.mu,
            lambda1=self.lambda1,
            lambda2=self.lambda2,
            alpha=_alpha_function(self.alpha_schedule),
            affinity=self.affinity,
            affinity_weight=self.affinity_weight,
        )

    def _affinity_source(self, input_shapes):
        """``affinity_features`` with "auto" resolved for these inputs."""
        source = self.affinity_features
        if isinstance(source, dict) or source not in ("auto", "cca"):
            return source
        widths = {m: math.prod(shape) for m, shape in input_shapes.items()}
        too_wide = {m: w for m, w in widths.items() if w > MAX_CCA_WIDTH}
        if source == "auto":
            return "cca" if len(widths) == 2 and not too_wide else "inputs"
        if too_wide:
            raise ValueError(
                f"affinity_features='cca' whitens each modality's covariance, "
                f"at most {MAX_CCA_WIDTH} features wide; {too_wide} are wider. "
                "Pass lower-dimensional features for the affinity as side "
                "modalities (affinity_features={'img': 'img_feat', ...}), or "
                "affinity_features='inputs'."
            )
        return source

    def _affinity_inputs(self, arrays, side, scaler, device):
        """The affinity's features of each modality, as float32 tensors."""
        if arrays is None:
            return None
        out = {}
        for m, a in arrays.items():
            source = self.affinity_features
            if isinstance(source, dict) and m in source:
                feats = np.asarray(side[source[m]], dtype=np.float32)
                feats = feats.reshape(len(feats), -1)
            else:
                feats = np.asarray(a, dtype=np.float32)
                # a modality a dict does not name uses its tower's input, as
                # with "inputs": standardised like it
                if source != "raw":
                    mean, scale = scaler[m]
                    shape = (1, -1) + (1,) * (feats.ndim - 2)
                    feats = (feats - mean.reshape(shape)) / scale.reshape(shape)
                feats = feats.reshape(len(feats), -1)
            out[m] = torch.as_tensor(np.ascontiguousarray(feats), device=device)
        return out

    def _start_training(self, net, data):
        crit = net.criterion_
        crit.features = self._affinity_inputs(
            data["train"], data["side"]["train"], data["scaler"], net.device
        )
        crit.valid_features = self._affinity_inputs(
            data["valid"], data["side"]["valid"], data["scaler"], net.device
        )
        crit.canonical_correlations = None
        shapes = {m: a.shape[1:] for m, a in data["train"].items()}
        if self._affinity_source(shapes) == "cca":
            self._to_canonical(crit)
        if self.affinity == "knn":
            feats = [crit.features[m] for m in crit.modalities]
            weights = [1.0] if len(feats) == 1 else [self.beta, 1.0 - self.beta]
            generator = torch.Generator().manual_seed(torch.initial_seed())
            crit.neighbors = joint_cosine_knn(
                feats, weights, self.n_affinity_neighbors, generator=generator
            )
            if crit.valid_features is not None:
                crit.valid_neighbors = joint_cosine_knn(
                    feats,
                    weights,
                    self.n_affinity_neighbors,
                    queries=[crit.valid_features[m] for m in crit.modalities],
                    generator=generator,
                )

    def _to_canonical(self, crit):
        """Replace the criterion's affinity features by their canonical
        projections, the CCA fitted on the training items alone."""
        mods = crit.modalities
        train = [crit.features[m].cpu().numpy() for m in mods]
        canonical = fit_canonical(*train)
        crit.canonical_correlations = canonical.correlations.copy()
        parts = [("features", train)]
        if crit.valid_features is not None:
            parts.append(
                ("valid_features", [crit.valid_features[m].cpu().numpy() for m in mods])
            )
        for name, feats in parts:
            device = getattr(crit, name)[mods[0]].device
            projected = canonical_features(canonical, feats)
            setattr(
                crit,
                name,
                {m: torch.as_tensor(p, device=device) for m, p in zip(mods, projected)},
            )

    def _stop_training(self, net):
        # the fitted network does not carry a copy of the training set
        net.criterion_.features = None
        net.criterion_.valid_features = None
        net.criterion_.neighbors = None
        net.criterion_.valid_neighbors = None

    def _finish_fit(self, net, embeddings):
        criterion = net.criterion_
        correlations = getattr(criterion, "canonical_correlations", None)
        return {
            "alpha_": criterion.current_alpha(),
            "canonical_correlations_": (
                None if correlations is None else correlations.copy()
            ),
        }

    def _codes_from_embeddings(self, modality, embedding):
        return CodeSet(
            embedding=np.tanh(self.alpha_ * embedding),
            bits=pack_bits(embedding),
            n_bits=self.n_bits,
            modality=modality,
        )
