"""HQHasher: joint deep binary hashing and quantization (Shi & Chung, 2021)."""

from __future__ import annotations

import numbers

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import Interval, StrOptions

from skhash._base import MAX_WIDTH, BaseCodeLearner, _Criterion
from skhash._codes import CodeSet, pack_bits
from skhash._losses import (
    balance_loss,
    hash_loss,
    pairwise_likelihood_loss,
    quantization_loss,
    similarity_matrix,
)
from skhash._training import _CodebookRefresh
from skhash.quantization._codebooks import (
    decode,
    encode,
    kmeans_codebooks,
    update_codebooks,
)
from skhash.utils._docstring import substitute

__all__ = ["HQHasher"]


def _aligned_pairs_loss(f_a, f_b, S):
    """The authors' pair sampling: every aligned pair ``(i, i)`` of the batch
    as a positive, and each item re-paired with a shuffled partner ``(i, π(i))``
    labelled by ``S`` (mostly negatives); mean over the ``2m`` pairs."""
    m = f_a.shape[0]
    perm = torch.randperm(m, device=f_a.device)
    theta_pos = (f_a * f_b).sum(1)
    theta_shuf = (f_a * f_b[perm]).sum(1)
    s_shuf = S[torch.arange(m, device=S.device), perm]
    loss_pos = F.softplus(theta_pos) - theta_pos
    loss_shuf = F.softplus(theta_shuf) - s_shuf * theta_shuf
    return torch.cat([loss_pos, loss_shuf]).mean()


def _shuffled_pairs_loss(f, S):
    """One modality, ``pairs="aligned"``: each item with a shuffled partner."""
    m = f.shape[0]
    perm = torch.randperm(m, device=f.device)
    theta = (f * f[perm]).sum(1)
    s = S[torch.arange(m, device=S.device), perm]
    return (F.softplus(theta) - s * theta).mean()


class _HQCriterion(_Criterion):
    def __init__(
        self,
        modalities,
        *,
        lambda_sim,
        lambda_h,
        lambda_b,
        lambda_q,
        pairs,
        label_similarity="share",
    ):
        super().__init__()
        self.modalities = modalities
        self.lambda_sim = lambda_sim
        self.lambda_h = lambda_h
        self.lambda_b = lambda_b
        self.lambda_q = lambda_q
        self.pairs = pairs
        self.label_similarity = label_similarity
        self.reconstruction = None  # {modality: (n_train, d) tensor}, per epoch

    def _similarity_loss(self, feats, S):
        if len(feats) == 1:
            if self.pairs == "aligned":
                return _shuffled_pairs_loss(feats[0], S)
            return pairwise_likelihood_loss(feats[0], feats[0], S)
        pairs = [(a, b) for i, a in enumerate(feats) for b in feats[i + 1 :]]
        if self.pairs == "aligned":
            terms = [_aligned_pairs_loss(a, b, S) for a, b in pairs]
        else:
            terms = [pairwise_likelihood_loss(a, b, S) for a, b in pairs]
        return sum(terms) / len(pairs)

    def forward(self, y_pred, y_true):
        feats = [y_pred[m] for m in self.modalities]
        S = similarity_matrix(y_true, y_true, self.label_similarity)
        l_sim = self._similarity_loss(feats, S)
        l_h = sum(hash_loss(f) for f in feats) / len(feats)
        l_b = sum(balance_loss(f) for f in feats) / len(feats)
        loss = self.lambda_sim * l_sim + self.lambda_h * l_h + self.lambda_b * l_b
        l_q = torch.zeros(())
        if (
            self.reconstruction is not None
            and self.lambda_q > 0
            and "index" in y_pred  # per-item state: training batches only
        ):
            idx = y_pred["index"]
            l_q = sum(
                quantization_loss(f, self.reconstruction[m][idx], relative=True)
                for m, f in zip(self.modalities, feats)
            ) / len(feats)
            loss = loss + self.lambda_q * l_q
        self._record(
            loss_sim=l_sim.item(),
            loss_h=l_h.item(),
            loss_b=l_b.item(),
            loss_q=l_q.item(),
        )
        return loss


class _AlternateCodebooks(_CodebookRefresh):
    """Once per epoch: embed the training set, then alternate the closed-form
    codebook update and the code search a few rounds (HQ section 4.3)."""

    def __init__(self, learner, rng):
        self.learner = learner
        self.rng = rng
        self.codebooks = None
        self.codes = None

    def fit_codebooks(self, F):
        lrn = self.learner
        if self.codebooks is None:
            self.codebooks = kmeans_codebooks(
                F,
                lrn.n_codebooks,
                lrn.n_codewords,
                kind="additive",
                random_state=self.rng,
                n_iter=10,
            )
            self.codes = None
        for _ in range(lrn.n_quantization_rounds):
            self.codes = encode(
                F,
                self.codebooks,
                kind="additive",
                n_iter=lrn.n_icm_iter,
                init_codes=self.codes,
            )
            self.codebooks = update_codebooks(
                F,
                self.codes,
                lrn.n_codewords,
                kind="additive",
                previous=self.codebooks,
            )
        return self.codebooks

    def _refresh(self, net, X):
        emb = self.learner._embed_training_data(net, X)
        modalities = net.criterion_.modalities
        F_all = np.concatenate([emb[m] for m in modalities], axis=0)
        self.fit_codebooks(F_all)
        rec = decode(self.codes, self.codebooks)
        n = emb[modalities[0]].shape[0]
        net.criterion_.reconstruction = {
            m: torch.as_tensor(rec[i * n : (i + 1) * n], device=net.device)
            for i, m in enumerate(modalities)
        }


@substitute
class HQHasher(BaseCodeLearner):
    """Joint deep binary hashing and additive quantization (HQ).

    One tower per modality maps its features to a continuous vector ``f`` of
    ``n_bits`` values. Training minimises the HQ paper's loss (eq. 7)::

        λ_sim L_sim + λ_h ‖f − sgn f‖² + λ_b ‖f·1‖² + λ_q ‖f − Σ_l C^l b^l‖² / ‖f‖²

    where ``L_sim`` is the pairwise likelihood of the cross-modal pairs of a
    batch (``s_ij = 1`` when two items share a label; which pairs, see
    ``pairs``), and the quantization error is taken relative to ``‖f‖²``
    (see Notes). Once per epoch, after
    ``quantization_warmup`` epochs, the training set is embedded and the
    ``n_codebooks`` additive codebooks of ``n_codewords`` codewords are fitted
    by alternating the closed-form ridge update and the code search (ICM)
    ``n_quantization_rounds`` times. Each term is averaged over pairs or
    items (the paper sums), so the weights do not scale with the batch size.

    ``transform`` gives, per modality, the embedding ``f``, the binary code
    ``sgn f`` (packed) and the quantization codes, with the shared codebooks:
    :class:`~skhash.TwoStageRetriever` then shortlists by Hamming distance and
    re-ranks by the asymmetric quantizer distance ``⟨q, Σ_l C^l b^l⟩``.

    Read more in the :ref:`User Guide <learners>`.

    Parameters
    ----------
    n_bits : int, default=64
        Code length: the width of ``f`` and of the binary code.
    n_codebooks : int, default=4
        Number ``M`` of additive codebooks.
    n_codewords : int, default=256
        Codewords ``K`` per codebook (``log2 K`` bits per codebook index).
    lambda_sim : float, default=1.0
        Weight of the pairwise likelihood loss (eq. 3). Paper: 50–70 (summed
        losses).
    lambda_h : float, default=1e-4
        Weight of the hashing loss ``‖f − sgn f‖²`` (eq. 4). Paper: 0.01
        beside λ_sim = 50–70, i.e. 2.9e-4–4e-4 in skhash's averaged units
        (see Notes); on Wiki, λ_h ≥ 1e-3 collapses bits (most take one sign
        for every item) and halves the Hamming ranking's MAP.
    lambda_b : float, default=1e-4
        Weight of the balance loss (eq. 5). Paper: 0.01 (same conversion as
        λ_h).
    lambda_q : float, default=1e-3
        Weight of the relative quantization loss (eq. 6 divided by
        ``‖f‖²``); 0 gives the binary-only ablation (then no codebooks are
        learned). Paper: 1e-4–1e-3 beside λ_sim = 10–70, about 1e-4–6e-3 in
        skhash's units at 32 bits (see Notes). Chosen on validation splits
        inside the training sets (``benchmarks/bench_defaults.py
        --validation --sweep-lambda-q``, 32 bits, Wiki and two synthetic
        sets): 1e-3 gave the best two-stage MAP@50 on each, with a Hamming
        ranking within 0.3 % of λ_q = 0's or above it; 0.01 and 0.1 lost up
        to 2 % and 4 % of the Hamming MAP, 1 lost 6–24 %. Far beyond that the
        quantization term outweighs the similarity: on ``make_cross_modal``
        (1,000 training items, 32 bits, 4 × 16 codebooks, 10 epochs) the
        Hamming MAP@50 (img→txt / txt→img) was .86 / .82 at λ_q = 0, .57 /
        .52 at 10 and .45 / .43 at 100.
    quantization_warmup : int, default=5
        Epochs before the quantization loss switches on: the codebooks are
        first fitted at the end of epoch ``quantization_warmup`` and the
        loss is on from the next epoch; 0 fits them on the untrained towers
        before the first epoch, so the loss is on from epoch 1.
    n_quantization_rounds : int, default=1
        Codebook-update/code-search rounds per epoch.
    n_icm_iter : int, default=3
        ICM sweeps of each code search.
    pairs : {"all", "aligned"}, default="all"
        The cross-modal pairs of the similarity loss in a batch of ``m``
        items: ``"all"``, all ``m²`` pairs ``(i, j)``, labelled by whether
        ``i`` and ``j`` share a label; ``"aligned"``, the authors' sampling,
        the ``m`` aligned pairs ``(i, i)`` as positives plus each item
        re-paired with a shuffled partner ``(i, π(i))`` labelled by the
        labels (mostly negatives): ``2m`` pairs. With one modality,
        ``"aligned"`` takes the shuffled pairs only. ``"all"`` scored higher
        on 7 of 8 validation splits of the defaults protocol
        (``benchmarks/bench_defaults.py --validation --quick``, 32 bits; by
        0.002–0.09 of MAP@50), ``"aligned"`` on yeast_mv (0.402 against
        0.380).
    label_similarity : {"share", "jaccard"}, default="share"
        The pair labels ``s_ij`` of multi-label data: ``"share"``, 1 when
        two items share a label (the papers'); ``"jaccard"``, the soft
        label ``|Y_i ∩ Y_j| / |Y_i ∪ Y_j|`` of their label sets, which the
        likelihood takes as a probability. Choose ``"jaccard"`` when items
        are relevant by the overlap of their label sets (e.g. label-set
        Jaccard >= 0.5) rather than by any shared label. Single-label data
        are the same either way. See the Notes.
    hidden_layer_sizes : tuple of int, default=(512,)
        Hidden widths of the default MLP towers.
    dropout : float, default=0.1
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
        losses depend on the input scale.
    max_epochs : int, default=40
        Training epochs. 40 rather than 20 by the defaults protocol
        (validation quarters of the training splits, 32 bits): higher
        harmonic MAP@50 on 6 of 8 datasets (by 0.017–0.028; wiki_alt 0.479
        against 0.457), equal on one, 0.012 lower on Wiki; the lossless
        reference also chose 40 epochs on the real datasets.
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
        Loss per epoch, with the terms ``loss_sim``, ``loss_h``, ``loss_b``,
        ``loss_q``.
    codebooks_ : ndarray of shape (n_codebooks, n_codewords, n_bits) or None
        The additive codebooks (None when ``lambda_q == 0``).
    {learner_attributes}

    See Also
    --------
    DQNQuantizer : Product quantization only (Cao et al., 2016).
    DJSRHHasher : Unsupervised cross-modal hashing.
    TwoStageRetriever : Searches the codes.

    Notes
    -----
    The quantization term. The paper's ``‖f − C b‖²`` can be lowered by
    shrinking ``f``: k-means and least-squares reconstructions lie inside
    the data, so ``f − C b`` points outwards on average, and each epoch's
    codebooks follow the shrunk ``f``. On ``make_cross_modal`` (difficulty
    1, 32 bits) ``λ_q = 0, 0.1, 1`` gave a mean ``‖f‖`` of 4.19, 3.66, 2.89
    and a Hamming MAP@50 of 0.695, 0.694, 0.618. skhash divides each item's
    error by its ``‖f‖²`` (:func:`skhash.nn.quantization_loss` with
    ``relative=True``): scale-invariant, with a gradient along ``f`` of zero
    on average, it kept ``‖f‖`` at 4.19, 4.23, 4.53 on the same data. The
    Hamming ranking still pays for a large weight (the codes pull ``f``
    towards the codewords: on Wiki's validation split, Hamming MAP@50
    0.335, 0.342, 0.320, 0.256 for λ_q = 0, 1e-3, 0.1, 1 with ``‖f‖`` 4.01,
    4.02, 4.29, 4.67), hence the small default.

    From the paper's weights to skhash's. The paper sums eq. 7 over the
    sampled cross-modal pairs ``P`` (``i`` an image, ``j`` a text)::

        Σ_(i,j)∈P  λ_sim ℓ_ij + λ_h (h_i + h_j) + λ_b (b_i + b_j) + λ_q (q_i + q_j)

    with ``h = ‖f − sgn f‖²``, ``b = ‖f·1‖²``, ``q = ‖f − C b‖²``. skhash
    averages: ``L_sim`` over the pairs, and ``h``, ``b`` and ``q / ‖f‖²``
    over the items of each modality, then over the modalities. Dividing the
    paper's sum by ``λ_sim |P|`` gives skhash's form with
    ``lambda_sim = 1``, ``lambda_h = 2 λ_h / λ_sim``,
    ``lambda_b = 2 λ_b / λ_sim`` (two items per pair), and, since ``‖f‖² ≈
    n_bits`` once the hashing term has pulled ``f`` to ±1,
    ``lambda_q ≈ 2 λ_q n_bits / λ_sim``. Worked out for MIR-Flickr
    (``λ_sim = 50, λ_h = λ_b = 0.01, λ_q = 1e-4``) at 32 bits:
    ``lambda_h = lambda_b = 2 × 0.01 / 50 = 4e-4`` and
    ``lambda_q = 2 × 1e-4 × 32 / 50 = 1.3e-4``; NUS-WIDE (70, 0.01, 0.01,
    1e-4): 2.9e-4, 2.9e-4, 9.1e-5; Amazon (10, 0.01, 0.001, 1e-3): 2e-3,
    2e-4, 6.4e-3. The other way, ``λ_h = lambda_h · λ_sim / 2`` for any
    chosen ``λ_sim``. skhash's defaults (``lambda_h = lambda_b = 1e-4``,
    ``lambda_q = 1e-3``) are a quarter of MIR-Flickr's hashing weights and
    about 8 times its quantization weight: chosen on validation splits,
    not copied.

    References
    ----------
    .. [1] E. Shi and F. Chung, "Deep binary hashing and quantization for
       cross-modal retrieval" (HQ), BMVC 2021.

    Examples
    --------
    >>> import numpy as np
    >>> from skhash import HQHasher, MultiModal
    >>> rng = np.random.RandomState(42)
    >>> y = rng.randint(0, 3, 60)
    >>> X = MultiModal(img=rng.randn(60, 8) + y[:, None],
    ...                txt=rng.randn(60, 5) - y[:, None])
    >>> hq = HQHasher(n_bits=16, n_codebooks=2, n_codewords=8, max_epochs=3,
    ...               random_state=0).fit(X, y)
    >>> codes = hq.transform(X)
    >>> codes["img"].bits.shape, codes["txt"].codes.shape, codes.codebooks.shape
    ((60, 2), (60, 2), (2, 8, 16))
    """

    _parameter_constraints: dict = {
        **BaseCodeLearner._parameter_constraints,
        "n_bits": [Interval(numbers.Integral, 1, MAX_WIDTH, closed="both")],
        "n_codebooks": [Interval(numbers.Integral, 1, MAX_WIDTH, closed="both")],
        "n_codewords": [Interval(numbers.Integral, 2, 65536, closed="both")],
        "lambda_sim": [Interval(numbers.Real, 0, None, closed="left")],
        "lambda_h": [Interval(numbers.Real, 0, None, closed="left")],
        "lambda_b": [Interval(numbers.Real, 0, None, closed="left")],
        "lambda_q": [Interval(numbers.Real, 0, None, closed="left")],
        "quantization_warmup": [Interval(numbers.Integral, 0, None, closed="left")],
        "n_quantization_rounds": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_icm_iter": [Interval(numbers.Integral, 0, None, closed="left")],
        "pairs": [StrOptions({"all", "aligned"})],
        "label_similarity": [StrOptions({"share", "jaccard"})],
    }
    _structural_params = (
        *BaseCodeLearner._structural_params,
        "n_bits",
        "n_codebooks",
        "n_codewords",
    )

    def __init__(
        self,
        n_bits=64,
        *,
        n_codebooks=4,
        n_codewords=256,
        lambda_sim=1.0,
        lambda_h=1e-4,
        lambda_b=1e-4,
        lambda_q=1e-3,
        quantization_warmup=5,
        n_quantization_rounds=1,
        n_icm_iter=3,
        pairs="all",
        label_similarity="share",
        hidden_layer_sizes=(512,),
        dropout=0.1,
        module=None,
        standardize=True,
        max_epochs=40,
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
        self.n_codebooks = n_codebooks
        self.n_codewords = n_codewords
        self.lambda_sim = lambda_sim
        self.lambda_h = lambda_h
        self.lambda_b = lambda_b
        self.lambda_q = lambda_q
        self.quantization_warmup = quantization_warmup
        self.n_quantization_rounds = n_quantization_rounds
        self.n_icm_iter = n_icm_iter
        self.pairs = pairs
        self.label_similarity = label_similarity
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

    def _n_outputs(self):
        return self.n_bits

    def _make_criterion(self, modalities, n_train):
        return _HQCriterion(
            modalities,
            lambda_sim=self.lambda_sim,
            lambda_h=self.lambda_h,
            lambda_b=self.lambda_b,
            lambda_q=self.lambda_q,
            pairs=self.pairs,
            label_similarity=self.label_similarity,
        )

    def _callbacks(self, rng):
        # the callback lives in the net only: a failed fit leaves nothing on self
        return [("codebooks", _AlternateCodebooks(self, rng))]

    def _warm_start(self, net):
        callback = dict(net.callbacks_)["codebooks"]
        if self.codebooks_ is not None:
            callback.codebooks = self.codebooks_.copy()

    def _finish_fit(self, net, embeddings):
        callback = dict(net.callbacks_)["codebooks"]
        net.criterion_.reconstruction = None  # per-item state: not kept in net_
        if self.lambda_q == 0:
            return {"codebooks_": None}
        F = np.concatenate([embeddings[m] for m in embeddings], axis=0)
        codebooks = callback.fit_codebooks(F)
        callback.codes = None
        return {"codebooks_": codebooks}

    def _codes_from_embeddings(self, modality, embedding):
        from skhash.quantization._encode_torch import learner_device

        codes = None
        if self.codebooks_ is not None:  # on the GPU when the towers are
            codes = encode(
                embedding,
                self.codebooks_,
                kind="additive",
                n_iter=self.n_icm_iter,
                device=learner_device(getattr(self, "device_", None)),
            )
        return CodeSet(
            embedding=embedding,
            bits=pack_bits(embedding >= 0),
            codes=codes,
            n_bits=self.n_bits,
            codebooks=self.codebooks_,
            codebook_kind=None if self.codebooks_ is None else "additive",
            modality=modality,
        )
