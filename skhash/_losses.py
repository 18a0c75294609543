"""Loss terms of the HQ, DQN and DJSRH papers, as plain torch functions.

Each is averaged (over pairs or items) rather than summed as written in the
papers, so that the loss weights do not depend on the batch size.
"""

from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F

__all__ = [
    "similarity_matrix",
    "pairwise_likelihood_loss",
    "hash_loss",
    "balance_loss",
    "quantization_loss",
    "pairwise_cosine_loss",
    "djsrh_affinity",
    "djsrh_loss",
]


def similarity_matrix(y_a, y_b, kind="share"):
    """Pairwise similarity labels of two sets of items, from their labels.

    Parameters
    ----------
    y_a, y_b : torch.Tensor
        Class ids of shape (n,) or multi-label indicators of shape
        (n, n_classes).
    kind : {"share", "jaccard"}, default="share"
        ``"share"``: ``s_ij = 1`` when the two items share a label, else 0
        (the papers' pair labels). ``"jaccard"``: the soft label
        ``s_ij = |Y_i ∩ Y_j| / |Y_i ∪ Y_j|`` of two label sets, in
        ``[0, 1]`` (0 for two empty sets), for data whose relevance is the
        overlap of the label sets; with class ids both kinds are the same.

    Returns
    -------
    S : torch.Tensor of shape (n_a, n_b), float
        The pair labels, in ``[0, 1]``.

    Examples
    --------
    >>> import torch
    >>> from skhash._losses import similarity_matrix
    >>> similarity_matrix(torch.tensor([0, 1]), torch.tensor([1, 1, 0]))
    tensor([[0., 0., 1.],
            [1., 1., 0.]])
    >>> Y = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 1]])
    >>> similarity_matrix(Y, Y, kind="jaccard")
    tensor([[1.0000, 0.5000, 0.0000],
            [0.5000, 1.0000, 0.0000],
            [0.0000, 0.0000, 1.0000]])
    """
    if kind not in ("share", "jaccard"):
        raise ValueError(f"kind must be 'share' or 'jaccard'; got {kind!r}.")
    if y_a.dim() == 1:
        return (y_a[:, None] == y_b[None, :]).float()
    inter = y_a.float() @ y_b.float().T
    if kind == "share":
        return (inter > 0).float()
    union = y_a.float().sum(1)[:, None] + y_b.float().sum(1)[None, :] - inter
    return inter / union.clamp(min=1.0)


def pairwise_likelihood_loss(f_a, f_b, S):
    """HQ eq. (3): negative log-likelihood of pair labels, mean over pairs.

    ``L_sim = mean_ij log(1 + exp(θ_ij)) − s_ij θ_ij`` with
    ``θ_ij = ⟨f_i, f_j⟩``, computed stably with ``softplus``.

    Parameters
    ----------
    f_a : torch.Tensor of shape (n_a, d)
        Features of one modality.
    f_b : torch.Tensor of shape (n_b, d)
        Features of the other (or the same) modality.
    S : torch.Tensor of shape (n_a, n_b)
        Pair labels in {0, 1}, or soft ones in ``[0, 1]`` (e.g. label-set
        Jaccard): the cross-entropy of ``σ(θ_ij)`` against ``s_ij``.

    Returns
    -------
    loss : torch.Tensor, scalar

    Examples
    --------
    >>> import torch
    >>> from skhash.nn import pairwise_likelihood_loss
    >>> f = torch.tensor([[1.0, 0.0]])
    >>> round(pairwise_likelihood_loss(f, f, torch.ones(1, 1)).item(), 4)
    0.3133
    """
    theta = f_a @ f_b.T
    return (F.softplus(theta) - S * theta).mean()


def hash_loss(f):
    """HQ eq. (4): ``‖f − sgn f‖²`` per item, averaged over items.

    ``sgn(0) = 1`` here, as in the paper.

    Parameters
    ----------
    f : torch.Tensor of shape (n, d)
        Continuous features.

    Returns
    -------
    loss : torch.Tensor, scalar

    Examples
    --------
    >>> import torch
    >>> from skhash.nn import hash_loss
    >>> hash_loss(torch.tensor([[0.5, -2.0]])).item()
    1.25
    """
    h = torch.where(f >= 0, 1.0, -1.0).to(f.dtype)
    return ((f - h.detach()) ** 2).sum(1).mean()


def balance_loss(f):
    """HQ eq. (5): ``‖f·1‖²`` per item (balanced +1/−1), averaged over items.

    Parameters
    ----------
    f : torch.Tensor of shape (n, d)
        Continuous features.

    Returns
    -------
    loss : torch.Tensor, scalar

    Examples
    --------
    >>> import torch
    >>> from skhash.nn import balance_loss
    >>> balance_loss(torch.tensor([[1.0, 1.0, -1.0]])).item()
    1.0
    """
    return (f.sum(1) ** 2).mean()


def quantization_loss(f, reconstruction, *, relative=False):
    """HQ eq. (6) / DQN eq. (4): ``‖f − C b‖²`` per item, averaged over items.

    Parameters
    ----------
    f : torch.Tensor of shape (n, d)
        Continuous features.
    reconstruction : torch.Tensor of shape (n, d)
        Their quantized reconstruction ``Σ_l C^l b^l`` (held fixed).
    relative : bool, default=False
        Divide each item's squared error by its own ``‖f‖²`` (not held
        fixed): ``‖f − C b‖² / ‖f‖²``, the fraction of the item's energy the
        codes miss. The plain error can be lowered by shrinking ``f``
        (k-means reconstructions lie inside the data, so ``f − C b`` points
        outwards on average); the relative error cannot: scaling ``f`` and
        ``C b`` together leaves it unchanged, and its gradient along ``f``
        is ``∝ ⟨f − C b, C b⟩``, zero on average for least-squares
        codebooks. Items with ``‖f‖ = 0`` count as 0.

    Returns
    -------
    loss : torch.Tensor, scalar

    Examples
    --------
    >>> import torch
    >>> from skhash.nn import quantization_loss
    >>> quantization_loss(torch.ones(2, 3), torch.zeros(2, 3)).item()
    3.0
    >>> f = torch.tensor([[2.0, 0.0]])
    >>> quantization_loss(f, torch.tensor([[1.0, 0.0]]), relative=True).item()
    0.25
    >>> quantization_loss(10 * f, torch.tensor([[10.0, 0.0]]), relative=True).item()
    0.25
    """
    err = ((f - reconstruction.detach()) ** 2).sum(1)
    if relative:
        sq = (f**2).sum(1)
        # scale-free at any ‖f‖ > 0 (a floor of 1e-12 made tiny embeddings'
        # loss the plain, shrinkable error again)
        tiny = torch.finfo(sq.dtype).tiny
        err = torch.where(sq > 0, err / sq.clamp_min(tiny), torch.zeros_like(err))
    return err.mean()


def pairwise_cosine_loss(
    z_a, z_b, S, *, kind="cosine", code_length=None, form="paper", scale=10.0
):
    """DQN eq. (3): ``(s_ij − cos(z_i, z_j))²`` with ``s_ij ∈ {−1, +1}``.

    ``form="balanced"`` is the variant :class:`~skhash.quantization.DQNQuantizer`
    uses by default: ``(1 − cos)²`` averaged over the similar pairs plus
    ``max(cos, 0)²`` averaged over the dissimilar pairs, so dissimilar pairs
    are asked to be at most orthogonal (more than two mutually dissimilar
    items cannot all have cosine −1: ``C`` classes reach at best
    ``−1 / (C − 1)``) and the two kinds of pairs weigh the same whatever
    their ratio in the batch. ``form="logistic"`` is the pairs' negative
    log-likelihood under ``P(s_ij = 1) = σ(scale · cos)``, each kind of
    pair averaged on its own as in ``"balanced"``.

    Parameters
    ----------
    z_a : torch.Tensor of shape (n_a, d)
        Features of one modality.
    z_b : torch.Tensor of shape (n_b, d)
        Features of the other (or the same) modality.
    S : torch.Tensor of shape (n_a, n_b)
        Pair labels in {0, 1} (mapped to {−1, +1} here), or soft ones in
        ``[0, 1]``: with ``"balanced"`` and ``"logistic"`` a pair's similar
        and dissimilar terms are weighted by ``s_ij`` and ``1 − s_ij``; with
        ``"paper"`` its target is ``2 s_ij − 1``.
    kind : {"cosine", "ip"}, default="cosine"
        ``"ip"`` replaces the cosine by the inner product scaled by
        ``1 / code_length`` (the paper's DQN_ip ablation,
        ``(s_ij − ⟨z_i, z_j⟩ / B)²`` with ``B`` the code length in bits).
    code_length : int, default=None
        ``B`` of the ``"ip"`` form; None uses the width ``d`` of ``z``.
        Unused by ``"cosine"``.
    form : {"paper", "balanced", "logistic"}, default="paper"
        ``"paper"``: the mean over all pairs of ``(s_ij − sim_ij)²``.
        ``"balanced"``: the mean over similar pairs of ``(1 − sim_ij)²``
        plus the mean over dissimilar pairs of ``max(sim_ij, 0)²`` (a term
        with no pairs in the batch counts 0). ``"logistic"``: with
        ``t = scale · sim_ij``, the mean over similar pairs of
        ``log(1 + e^−t)`` plus the mean over dissimilar pairs of
        ``log(1 + e^t)``.
    scale : float, default=10.0
        The factor on the similarity in the ``"logistic"`` form (its
        inverse temperature); unused by the others.

    Returns
    -------
    loss : torch.Tensor, scalar (mean over pairs)

    Examples
    --------
    >>> import torch
    >>> from skhash.nn import pairwise_cosine_loss
    >>> z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> pairwise_cosine_loss(z, z, torch.eye(2)).item()
    0.5
    >>> pairwise_cosine_loss(z, z, torch.eye(2), form="balanced").item()
    0.0
    """
    if kind == "cosine":
        sim = F.normalize(z_a, dim=1) @ F.normalize(z_b, dim=1).T
    elif kind == "ip":
        if code_length is None:
            code_length = z_a.shape[1]
        if not code_length > 0:
            raise ValueError(
                f"code_length={code_length!r} must be a positive number of bits."
            )
        sim = (z_a @ z_b.T) / code_length
    else:
        raise ValueError(f"kind must be 'cosine' or 'ip'; got {kind!r}.")
    if form == "paper":
        return ((2.0 * S - 1.0 - sim) ** 2).mean()  # s_ij in {-1, +1}
    S = S.to(sim.dtype)
    if form == "balanced":
        cost_similar = (1.0 - sim) ** 2
        cost_dissimilar = sim.clamp(min=0.0) ** 2
    elif form == "logistic":
        if isinstance(scale, bool) or not (
            isinstance(scale, numbers.Real) and 0 < scale < float("inf")
        ):
            raise ValueError(
                f"scale={scale!r} must be a positive finite number (the inverse "
                "temperature of the logistic form); pass e.g. scale=10.0."
            )
        cost_similar = F.softplus(-scale * sim)
        cost_dissimilar = F.softplus(scale * sim)
    else:
        raise ValueError(
            f"form must be 'paper', 'balanced' or 'logistic'; got {form!r}."
        )
    # weighted means over the pairs (soft labels weigh less than 1 each: a
    # floor of 1 under-weighted a batch whose weights sum below it); a
    # batch without such pairs gives 0 / tiny = 0
    tiny = torch.finfo(sim.dtype).tiny
    similar = (cost_similar * S).sum() / S.sum().clamp(min=tiny)
    dissimilar = (cost_dissimilar * (1.0 - S)).sum()
    return similar + dissimilar / (1.0 - S).sum().clamp(min=tiny)


def unit_rows(x):
    """Rows of ``x`` scaled to unit L2 norm, as ``F.normalize`` at every
    finite magnitude: a row whose norm overflows (past about 1.8e19 in
    float32) or falls below ``F.normalize``'s 1e-12 floor is first divided
    by its largest magnitude (which changes no direction), so it is not
    zeroed or left unnormalised; a zero row stays zero. Rows of ordinary
    magnitude are exactly ``F.normalize``'s.

    Examples
    --------
    >>> import torch
    >>> from skhash._losses import unit_rows
    >>> unit_rows(torch.tensor([[3e19, 4e19], [3e-20, 4e-20], [0.0, 0.0]]))
    tensor([[0.6000, 0.8000],
            [0.6000, 0.8000],
            [0.0000, 0.0000]])
    """
    norms = torch.linalg.vector_norm(x, dim=1)
    odd = ~torch.isfinite(norms) | (norms < 1e-12)
    if bool(odd.any()):
        peak = x.abs().amax(dim=1, keepdim=True)
        scaled = x / torch.where(peak > 0, peak, torch.ones_like(peak))
        x = torch.where(odd[:, None], scaled, x)
    return F.normalize(x, dim=1)


def djsrh_affinity(features, *, beta=0.6, eta=0.4, mu=1.5):
    """DJSRH eq. (3): the joint-semantics affinity ``μ S`` of a batch.

    ``S_m = 2 F̂_m F̂_mᵀ − 1`` (cosine of normalised features, rescaled as in
    the authors' code), ``S̃ = β S_1 + (1 − β) S_2`` and
    ``S = (1 − η) S̃ + η S̃ S̃ᵀ / m``; returned multiplied by ``μ``.

    Parameters
    ----------
    features : list of torch.Tensor
        The batch's input features, one (m, p) tensor per modality (one or
        two); with one modality ``S̃ = S_1``.
    beta, eta, mu : float
        The paper's weights.

    Returns
    -------
    target : torch.Tensor of shape (m, m)

    Examples
    --------
    >>> import torch
    >>> from skhash.nn import djsrh_affinity
    >>> x = torch.eye(2)
    >>> djsrh_affinity([x, x], beta=0.5, eta=0.0, mu=1.0)
    tensor([[ 1., -1.],
            [-1.,  1.]])
    """
    sims = []
    for x in features:
        xn = unit_rows(x)
        sims.append(2.0 * (xn @ xn.T) - 1.0)
    if len(sims) == 1:
        s_tilde = sims[0]
    elif len(sims) == 2:
        s_tilde = beta * sims[0] + (1.0 - beta) * sims[1]
    else:
        raise ValueError(f"djsrh_affinity takes 1 or 2 modalities; got {len(sims)}.")
    m = s_tilde.shape[0]
    S = (1.0 - eta) * s_tilde + eta * (s_tilde @ s_tilde.T) / m
    return mu * S


def djsrh_loss(codes, target, *, lambda1=0.1, lambda2=0.1):
    """DJSRH eq. (5): MSE of code cosines to the affinity target.

    ``mse(cos(B_1, B_2), μS) + λ1 mse(cos(B_1, B_1), μS) + λ2 mse(cos(B_2,
    B_2), μS)``; with one modality it is ``mse(cos(B, B), μS)``.

    Parameters
    ----------
    codes : list of torch.Tensor
        Relaxed codes ``tanh(α H)`` per modality, each (m, d).
    target : torch.Tensor of shape (m, m)
        ``μ S`` from :func:`djsrh_affinity`.
    lambda1, lambda2 : float
        Weights of the within-modality terms.

    Returns
    -------
    loss : torch.Tensor, scalar

    Examples
    --------
    >>> import torch
    >>> from skhash.nn import djsrh_loss
    >>> b = torch.tensor([[1.0, 1.0], [1.0, -1.0]])
    >>> round(djsrh_loss([b, b], torch.eye(2), lambda1=0.0, lambda2=0.0).item(), 6)
    0.0
    """
    normed = [F.normalize(b, dim=1) for b in codes]
    if len(normed) == 1:
        return F.mse_loss(normed[0] @ normed[0].T, target)
    b1, b2 = normed
    return (
        F.mse_loss(b1 @ b2.T, target)
        + lambda1 * F.mse_loss(b1 @ b1.T, target)
        + lambda2 * F.mse_loss(b2 @ b2.T, target)
    )
