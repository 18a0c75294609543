"""DQNQuantizer: deep quantization network (Cao et al., 2016)."""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import Interval, StrOptions

from skhash._base import MAX_WIDTH, BaseCodeLearner, _Criterion
from skhash._codes import CodeSet
from skhash._losses import pairwise_cosine_loss, quantization_loss, similarity_matrix
from skhash._training import _CodebookRefresh
from skhash.quantization._codebooks import (
    decode,
    encode,
    kmeans_codebooks,
    update_codebooks,
)
from skhash.quantization._opq import opq_rounds
from skhash.utils._docstring import substitute

__all__ = ["DQNQuantizer"]

# Lloyd rounds (code assignment, then centroid update) of each codebook refresh.
_N_REFRESH_ROUNDS = 3
# Smallest norm divided by when z is put on the unit sphere (as F.normalize).
_EPS = 1e-12


def _unit_rows(z):
    """Rows of ``z`` scaled to unit L2 norm (float32). The norms are taken in
    float64: a float32 row past about ``1.8e19`` has an infinite float32
    norm, and would become a row of zeros."""
    norms = np.sqrt(np.einsum("ij,ij->i", z, z, dtype=np.float64))[:, None]
    return (z / np.maximum(norms, _EPS)).astype(np.float32, copy=False)


class _DQNCriterion(_Criterion):
    """DQN eq. (2): pairwise cosine loss + λ product-quantization loss."""

    def __init__(
        self,
        modalities,
        *,
        lambda_q,
        similarity,
        code_length=None,
        pair_loss="paper",
        label_similarity="share",
    ):
        super().__init__()
        self.modalities = modalities
        self.lambda_q = lambda_q
        self.similarity = similarity
        self.pair_loss = pair_loss
        self.label_similarity = label_similarity
        self.code_length = code_length  # B of "ip": ⟨z_i, z_j⟩ / B (None: width)
        self.reconstruction = None  # {modality: (n_train, d) tensor}, per epoch

    def forward(self, y_pred, y_true):
        feats = [y_pred[m] for m in self.modalities]
        if self.similarity == "cosine":
            feats = [F.normalize(f, dim=1, eps=_EPS) for f in feats]
        S = similarity_matrix(y_true, y_true, self.label_similarity)
        if len(feats) == 1:
            l_sim = pairwise_cosine_loss(
                feats[0],
                feats[0],
                S,
                kind=self.similarity,
                code_length=self.code_length,
                form=self.pair_loss,
            )
        else:
            pairs = [(a, b) for i, a in enumerate(feats) for b in feats[i + 1 :]]
            l_sim = sum(
                pairwise_cosine_loss(
                    a,
                    b,
                    S,
                    kind=self.similarity,
                    code_length=self.code_length,
                    form=self.pair_loss,
                )
                for a, b in pairs
            ) / len(pairs)
        loss = l_sim
        l_q = torch.zeros(())
        if (
            self.reconstruction is not None
            and self.lambda_q > 0
            and "index" in y_pred  # per-item state: training batches only
        ):
            idx = y_pred["index"]
            l_q = sum(
                quantization_loss(f, self.reconstruction[m][idx])
                for m, f in zip(self.modalities, feats)
            ) / len(feats)
            loss = loss + self.lambda_q * l_q
        self._record(loss_sim=l_sim.item(), loss_q=l_q.item())
        return loss


class _ProductCodebooks(_CodebookRefresh):
    """Fits the shared product codebooks on the embedded training set.

    k-means per subspace the first time, then ``_N_REFRESH_ROUNDS`` rounds of
    exact code assignment and centroid update per refresh, when
    :class:`~skhash._training._CodebookRefresh` says (before a first epoch
    that trains with the quantization loss, and at the end of every epoch
    from epoch ``quantization_warmup`` on); the reconstructions ``C h`` are
    handed to the criterion for the next epoch's loss.
    """

    def __init__(self, learner, rng):
        self.learner = learner
        self.rng = rng
        self.codebooks = None
        self.rotation = None  # quantizer="opq": codes are of Z @ rotation

    def fit_codebooks(self, Z):
        lrn = self.learner
        opq = lrn.quantizer == "opq"
        if opq and self.rotation is None:
            self.rotation = np.eye(Z.shape[1], dtype=np.float32)
        if self.codebooks is None:
            self.codebooks = kmeans_codebooks(
                Z @ self.rotation if opq else Z,
                lrn.n_codebooks,
                lrn.n_codewords,
                kind="product",
                random_state=self.rng,
            )
        if opq:
            self.codebooks, self.rotation, _ = opq_rounds(
                Z, self.codebooks, self.rotation, lrn.n_codewords, _N_REFRESH_ROUNDS
            )
            return self.codebooks
        for _ in range(_N_REFRESH_ROUNDS):
            codes = encode(Z, self.codebooks, kind="product")
            self.codebooks = update_codebooks(
                Z, codes, lrn.n_codewords, kind="product", previous=self.codebooks
            )
        return self.codebooks

    def _refresh(self, net, X):
        emb = self.learner._embed_training_data(net, X)
        modalities = net.criterion_.modalities
        Z = self.learner._stack_z(emb, modalities)
        codebooks = self.fit_codebooks(Z)
        if self.rotation is None:
            rec = decode(encode(Z, codebooks, kind="product"), codebooks)
        else:  # back from the rotated space
            Y = Z @ self.rotation
            rec = decode(encode(Y, codebooks, kind="product"), codebooks)
            rec = rec @ self.rotation.T
        n = emb[modalities[0]].shape[0]
        net.criterion_.reconstruction = {
            m: torch.as_tensor(rec[i * n : (i + 1) * n], device=net.device)
            for i, m in enumerate(modalities)
        }

    def release(self, net):
        """Drop the per-item training state so that ``net_`` pickles small."""
        self.codebooks = None
        self.rotation = None
        self.rng = None
        net.criterion_.reconstruction = None


@substitute
class DQNQuantizer(BaseCodeLearner):
    """Deep quantization network: similarity-preserving towers + product codes.

    One tower per modality maps its features to a continuous vector ``z`` of
    ``n_dims`` values. Training minimises the DQN paper's objective (eq. 2)::

        L + λ_q Q,   L = mean_ij (s_ij − cos(z_i, z_j))²,   Q = mean_i ‖z_i − C h_i‖²

    where ``s_ij = +1`` when two items of a batch share a label and ``−1``
    otherwise (eq. 3; ``pair_loss="paper"``), and ``C = diag(C_1, …, C_M)``
    are block-diagonal product codebooks of ``n_codewords`` codewords on each
    of the
    ``n_codebooks`` contiguous blocks of ``z`` (eq. 4). Each term is averaged
    over pairs or items (the paper sums), so ``lambda_q`` does not scale with
    the batch size. By default (``pair_loss="logistic"``) ``L`` is instead
    the pairs' negative log-likelihood under ``P(s_ij = 1) = σ(10 cos)``,
    averaged over the similar and over the dissimilar pairs separately (see
    Notes).

    The codebooks are initialised by k-means on each subspace of the embedded
    training set once the ``quantization_warmup`` epochs have passed, and
    refreshed at the end of every later epoch (a few rounds of exact code
    assignment ``h`` and centroid update ``C``; a skorch callback); the
    reconstructions ``C h`` are held fixed during an epoch. With
    ``lambda_q=0`` the towers are trained by the cosine loss alone and the
    codebooks are fitted once after training; with ``quantizer="opq"`` (the
    default) that is the paper's two-step DQN₂₊ ablation
    (similarity-preserving features, then optimized product quantization).
    ``similarity="ip"`` gives its DQN_ip ablation.

    A plain 2-D ``X`` trains one tower on within-modality pairs (image
    retrieval, as in the paper). A :class:`~skhash.MultiModal` ``X`` trains
    one tower per modality and one shared set of codebooks (the cross-modal
    use of CDQ [2]_); the cosine loss is then taken over cross-modal pairs,
    averaged over the pairs of modalities.

    ``transform`` gives, per modality, the embedding ``z`` and the product
    quantization codes ``h`` (no binary codes), with the shared codebooks
    (``codebook_kind="product"``); :class:`~skhash.TwoStageRetriever` then
    ranks the whole database by the asymmetric quantizer distance (AQD) of
    the float query to the codes, through ``M × K`` look-up tables
    (``rerank="aqd"`` inner product, ``"aqd-l2"`` squared Euclidean as in
    eq. 5). Each item costs ``n_codebooks · log2(n_codewords)`` bits.

    Read more in the :ref:`User Guide <learners>`.

    Parameters
    ----------
    n_codebooks : int, default=4
        Number ``M`` of product codebooks (subspaces of ``z``). At most
        ``n_dims``.
    n_codewords : int, default=256
        Codewords ``K`` per codebook (``log2 K`` bits per codebook index).
    n_dims : int, default=64
        Width of ``z``, the towers' output, split into ``n_codebooks``
        contiguous blocks (:func:`~skhash.quantization.product_blocks`).
    lambda_q : float, default=0.01
        Weight of the product-quantization loss (eq. 4); 0 fits the codebooks
        only after training (with ``quantizer="opq"``: the two-step DQN₂₊
        ablation). Chosen by the defaults protocol's rule, the best
        worst-case ratio to the lossless reference (validation quarters of
        the training splits, 32 bits, harmonic MAP@50 of the AQD-L2
        ranking, ``pair_loss="balanced"``), on the four datasets where DQN
        was furthest from it: for 0.01, 0.1 and 0 respectively, wiki_alt
        0.506, 0.500, 0.505; ``make_cross_modal`` (single-label,
        difficulty 1) 0.844, 0.843, 0.845; yeast_mv 0.435, 0.435, 0.425;
        Wiki 0.374, 0.370, 0.375.
    quantization_warmup : int, default=1
        Epochs before the quantization loss switches on (the codebooks are
        first fitted at the end of the last warm-up epoch); 0 fits them on
        the untrained towers before the first epoch.
    similarity : {"cosine", "ip"}, default="cosine"
        The pairwise loss: ``(s_ij − cos(z_i, z_j))²`` (DQN), or
        ``(s_ij − ⟨z_i, z_j⟩ / B)²`` with ``B = n_codebooks ·
        log2(n_codewords)`` the code length in bits, as in the paper (the
        DQN_ip ablation).
    pair_loss : {"logistic", "balanced", "paper"}, default="logistic"
        The form of the pairwise loss ``L``. ``"paper"``: eq. (3), the mean
        over all pairs of ``(s_ij − cos)²`` with ``s_ij = −1`` for
        dissimilar pairs. ``"balanced"``: the mean over similar pairs of
        ``(1 − cos)²`` plus the mean over dissimilar pairs of
        ``max(cos, 0)²``: dissimilar pairs need only be orthogonal or
        further, and the two kinds of pairs weigh the same whatever their
        ratio. ``"logistic"``: the mean over similar pairs of
        ``log(1 + e^(−10 cos))`` plus the mean over dissimilar pairs of
        ``log(1 + e^(10 cos))``, the negative log-likelihood of the pair
        labels under ``P(s_ij = 1) = σ(10 cos)`` (the factor 10 lets the
        probabilities reach 5e-5 and 1 − 5e-5), balanced in the same way.
        The same forms apply to ``similarity="ip"`` with ``⟨z_i, z_j⟩ / B``
        in place of the cosine. See Notes for why and what each measured.
    label_similarity : {"share", "jaccard"}, default="share"
        The pair labels ``s_ij`` of multi-label data: ``"share"``, 1 when
        two items share a label (the papers'); ``"jaccard"``, the soft
        label ``|Y_i ∩ Y_j| / |Y_i ∪ Y_j|`` of their label sets, which
        weighs each pair's similar and dissimilar terms (``s_ij`` and
        ``1 − s_ij``; the target ``2 s_ij − 1`` with ``"paper"``). Choose
        ``"jaccard"`` when items are relevant by the overlap of their label
        sets rather than by any shared label. Single-label data are the
        same either way.
    quantizer : {"opq", "pq"}, default="opq"
        ``"pq"``: product codebooks on contiguous blocks of ``z`` (eq. 4).
        ``"opq"``: optimized product quantization, an orthogonal rotation
        ``R`` learned with the codebooks (alternating codes, codebooks and
        the Procrustes update of ``R``, see
        :class:`~skhash.quantization.OPQ`), at every codebook refresh; the
        quantization loss is then ``‖z − C h Rᵀ‖²``, and ``transform``
        returns the rotated ``z R`` (same norms and cosines) with codebooks
        in that space. ``"opq"`` is the default: on the validation splits of
        the defaults protocol (``benchmarks/bench_defaults.py --validation
        --quick``, 32 bits, lambda_q=0.1, ``pair_loss="paper"``) it scored
        higher than ``"pq"`` on 5 of 8
        datasets, most on the hardest (``make_cross_modal``, difficulty 1:
        0.651 against 0.632), and at most 0.005 lower on the others.
    hidden_layer_sizes : tuple of int, default=(512,)
        Hidden widths of the default MLP towers.
    dropout : float, default=0.1
        Dropout of the default towers.
    module : torch.nn.Module class or dict of them, default=None
        A tower class instead of the MLP (any ``torch.nn.Module``: a CNN
        for images, lazy layers, a pretrained backbone), built with
        ``n_outputs=n_dims``, ``n_features`` and/or ``input_shape`` (the
        shape of one item) as its constructor asks, and the extra
        ``module__<name>=value`` arguments; a dict gives one class per
        modality (None there: the default MLP). See :ref:`training`.
    standardize : bool, default=True
        Standardise each modality's features (mean and scale learned in
        ``fit``: per feature of 2-D inputs, per channel of N-D ones; a
        feature constant to float32 precision, spread at most ``1e-6`` of
        its mean, is centred only, any other of any magnitude scaled). The
        losses depend on the input scale.
    max_epochs : int, default=100
        Training epochs. 100 has the best worst-case ratio to the lossless
        reference across the defaults protocol's datasets (50, the former
        default, underfits the harder sets: 94.5 % against 97.8 % on the
        hardest; Wiki alone prefers fewer).
    batch_size : int, default=128
        Items per batch.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, batch order, dropout and k-means. On CPU
        the same integer gives bit-identical codes. Global random state is
        never touched.
    {training_params}

    Attributes
    ----------
    net_ : skorch.NeuralNet
        The trained network (towers in ``net_.module_.towers``).
    history_ : skorch.History
        Loss per epoch, with the terms ``loss_sim`` (pairwise cosine or inner
        product loss) and ``loss_q`` (quantization loss; 0 before the
        codebooks exist and when ``lambda_q == 0``).
    codebooks_ : ndarray of shape (n_codebooks, n_codewords, n_dims)
        The shared product codebooks, zero outside their block of dimensions
        (of the rotated space with ``quantizer="opq"``).
    rotation_ : ndarray of shape (n_dims, n_dims) or None
        The learned orthogonal rotation ``R`` (``quantizer="opq"``), else
        None.
    {learner_attributes}

    See Also
    --------
    HQHasher : Binary codes plus additive quantization (two-stage search).
    ProductQuantizer : Product quantization of fixed features (no training).
    TwoStageRetriever : Searches the codes by AQD.

    Notes
    -----
    The pairwise loss. Eq. (3) asks every dissimilar pair for cosine −1,
    which more than two mutually dissimilar items cannot all reach (``C``
    classes reach at best ``−1 / (C − 1)``); with ten classes 90 % of the
    pairs are dissimilar, so this unreachable target dominates the loss and
    spreads each class over the sphere. ``"balanced"`` asks dissimilar pairs
    only for a cosine of at most 0 and averages the two kinds of pairs
    separately; ``"logistic"`` also stops pulling a pair once it is on the
    right side by a margin, instead of pulling every similar pair to
    cosine 1. Measured with the defaults protocol
    (``benchmarks/bench_defaults.py``; validation quarters of the training
    splits, 32 bits, harmonic MAP@50 of the AQD-L2 ranking; wiki_alt also on
    two other quarters):

    - ``"paper"`` against ``"balanced"``: ``"balanced"`` scored higher on
      all eight datasets, e.g. wiki_alt 0.506 against 0.430,
      ``make_cross_modal`` (single-label, difficulty 1) 0.844 against
      0.697, yeast_mv 0.435 against 0.410. Asking dissimilar pairs for
      cosine 0 without the balancing scored lower on the multi-label sets
      (yeast_mv 0.394), where most pairs are similar.
    - ``"balanced"`` against ``"logistic"``, as ratios to the lossless
      reference: worst case 0.88 against 0.95 (wiki_alt: 0.88, 0.97, 1.02
      against 0.95, 1.00, 1.02 on the three quarters); Wiki 0.99 against
      1.01; yeast_mv 1.02 against 0.99; the two multi-label
      ``make_cross_modal`` sets 0.979 and 0.965 against 0.973 and 0.960;
      the single-label one 0.993 against 0.992. ``"logistic"`` is the
      default by the protocol's rule (the best worst-case ratio). Its
      embeddings spread more within a class, which costs more quantization
      error on the multi-label sets (there the float ``z`` ranks 0.03–0.04
      higher than its codes) than on the single-label ones.

    With ``similarity="cosine"``, ``z`` is the tower output scaled to unit
    L2 norm before it is quantized and returned, and the quantization loss
    is taken on it. The cosine loss sees only directions, so this leaves it
    unchanged, but it fixes the scale that the paper's formulation leaves
    free: with a raw ``z`` the quantization loss can shrink ``‖z‖`` instead
    of improving the codes, and the AQD ranks partly by norm (across
    modalities, by each tower's own scale). On Wiki, a raw ``z`` kept about
    half of the lossless reference's MAP@50 after quantization; the unit
    ``z`` keeps all of it (``benchmarks/bench_dqn.py``).

    The AQD inner product (``rerank="aqd"``) and squared distance
    (``"aqd-l2"``) do not rank alike, even with ``z`` on the unit sphere:
    ``‖q − x̂‖² = ‖q‖² − 2⟨q, x̂⟩ + ‖x̂‖²`` and the reconstructions ``x̂`` are
    not unit vectors. On Wiki (defaults, 32 bits, image queries against the
    text database) their norms span 0.96–1.03 and the two top-50 lists
    share 80 % of their items (69 % with ``quantizer="opq"``), although the
    harmonic MAP@50 agreed to three decimals (0.348, and 0.354 with OPQ).
    The DQN_ip
    ablation (``similarity="ip"``) keeps the raw ``z``, as in the paper.

    References
    ----------
    .. [1] Y. Cao, M. Long, J. Wang, H. Zhu and Q. Wen, "Deep Quantization
       Network for Efficient Image Retrieval", AAAI 2016.
    .. [2] Y. Cao, M. Long, J. Wang and S. Liu, "Collective Deep Quantization
       for Efficient Cross-Modal Retrieval", AAAI 2017.

    Examples
    --------
    >>> import numpy as np
    >>> from skhash.quantization import DQNQuantizer
    >>> rng = np.random.RandomState(42)
    >>> y = rng.randint(0, 3, 60)
    >>> X = rng.randn(60, 8) + y[:, None]
    >>> dqn = DQNQuantizer(2, n_codewords=8, n_dims=8, max_epochs=3,
    ...                    random_state=0).fit(X, y)
    >>> codes = dqn.transform(X)
    >>> codes.codes.shape, codes.codebooks.shape, codes.codebook_kind
    ((60, 2), (2, 8, 8), 'product')
    >>> codes.bits is None
    True
    """

    _parameter_constraints: dict = {
        **BaseCodeLearner._parameter_constraints,
        "n_codebooks": [Interval(numbers.Integral, 1, MAX_WIDTH, closed="both")],
        "n_codewords": [Interval(numbers.Integral, 2, 65536, closed="both")],
        "n_dims": [Interval(numbers.Integral, 1, MAX_WIDTH, closed="both")],
        "lambda_q": [Interval(numbers.Real, 0, None, closed="left")],
        "quantization_warmup": [Interval(numbers.Integral, 0, None, closed="left")],
        "similarity": [StrOptions({"cosine", "ip"})],
        "pair_loss": [StrOptions({"logistic", "balanced", "paper"})],
        "label_similarity": [StrOptions({"share", "jaccard"})],
        "quantizer": [StrOptions({"pq", "opq"})],
    }
    _structural_params = (
        *BaseCodeLearner._structural_params,
        "n_codebooks",
        "n_codewords",
        "n_dims",
        "similarity",
        "quantizer",
    )

    def __init__(
        self,
        n_codebooks=4,
        *,
        n_codewords=256,
        n_dims=64,
        lambda_q=0.01,
        quantization_warmup=1,
        similarity="cosine",
        pair_loss="logistic",
        label_similarity="share",
        quantizer="opq",
        hidden_layer_sizes=(512,),
        dropout=0.1,
        module=None,
        standardize=True,
        max_epochs=100,
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
        self.n_codebooks = n_codebooks
        self.n_codewords = n_codewords
        self.n_dims = n_dims
        self.lambda_q = lambda_q
        self.quantization_warmup = quantization_warmup
        self.similarity = similarity
        self.pair_loss = pair_loss
        self.label_similarity = label_similarity
        self.quantizer = quantizer
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

    def _check_params(self):
        if self.n_codebooks > self.n_dims:
            raise ValueError(
                f"n_codebooks={self.n_codebooks} product codebooks split z into "
                f"as many blocks, but n_dims={self.n_dims}; use n_dims >= "
                "n_codebooks (e.g. a multiple of it)."
            )

    def _n_outputs(self):
        return self.n_dims

    def _make_criterion(self, modalities, n_train):
        return _DQNCriterion(
            modalities,
            lambda_q=self.lambda_q,
            similarity=self.similarity,
            code_length=self.n_codebooks * math.log2(self.n_codewords),
            pair_loss=self.pair_loss,
            label_similarity=self.label_similarity,
        )

    def _callbacks(self, rng):
        # the callback lives in the net only: a failed fit leaves nothing on self
        return [("codebooks", _ProductCodebooks(self, rng))]

    def _warm_start(self, net):
        callback = dict(net.callbacks_)["codebooks"]
        callback.codebooks = self.codebooks_.copy()
        rotation = getattr(self, "rotation_", None)
        callback.rotation = None if rotation is None else rotation.copy()

    def _finish_fit(self, net, embeddings):
        callback = dict(net.callbacks_)["codebooks"]
        Z = self._stack_z(embeddings, tuple(embeddings))
        codebooks = callback.fit_codebooks(Z)
        rotation = callback.rotation
        callback.release(net)
        return {"codebooks_": codebooks, "rotation_": rotation}

    def _z(self, embedding):
        """The tower output as quantized: on the unit sphere for the cosine loss."""
        return _unit_rows(embedding) if self.similarity == "cosine" else embedding

    def _stack_z(self, embeddings, modalities):
        return np.concatenate([self._z(embeddings[m]) for m in modalities], axis=0)

    def _codes_from_embeddings(self, modality, embedding):
        from skhash.quantization._encode_torch import learner_device

        embedding = self._z(embedding)
        if getattr(self, "rotation_", None) is not None:
            embedding = embedding @ self.rotation_  # the space of the codebooks
        return CodeSet(
            embedding=embedding,
            codes=encode(  # on the GPU when the towers are
                embedding,
                self.codebooks_,
                kind="product",
                device=learner_device(getattr(self, "device_", None)),
            ),
            codebooks=self.codebooks_,
            codebook_kind="product",
            modality=modality,
        )
