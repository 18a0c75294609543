"""Global neighbourhood affinity for DJSRH: the shared nearest neighbours of
the joint-semantics cosine graph over the whole training set.

DJSRH's eq. (3) builds its affinity from one batch of ``m`` items, so its
second-order term ``S̃ S̃ᵀ / m`` only sees in-batch neighbours. The helpers
here compute, once per fit, each training item's ``k`` nearest training
items under the joint cosine ``β cos_img + (1 − β) cos_txt`` (sparse lists,
``O(N k)`` memory), and per batch the shared-neighbour coherence
``|N(i) ∩ N(j)| / k`` of the batch's items, in the spirit of the
graph-neighbour coherence of DGCPN (Yu et al., AAAI 2021).

:func:`fit_canonical` and :func:`canonical_features` give the affinity's
features of ``affinity_features="cca"``: each modality projected onto the
canonical directions of a closed-form, ridge-regularised linear CCA of the
training pairs.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from skhash._losses import unit_rows

__all__ = []  # private helpers of DJSRHHasher

#: Rows of cosines computed at once (memory: ``BLOCK_SIZE × n_candidates``
#: floats, 40 MB at the largest).
BLOCK_SIZE = 512
#: Up to this many training items, every item's neighbours are exact; beyond
#: it, they are searched among ``MAX_EXACT`` training items drawn at random
#: (time ``O(N · MAX_EXACT · p)``, memory ``O(N k)`` for the lists).
MAX_EXACT = 20_000


def joint_cosine_knn(
    features,
    weights,
    n_neighbors,
    *,
    queries=None,
    max_exact=None,
    block_size=None,
    generator=None,
):
    """Nearest training items under the joint cosine ``Σ_k w_k cos_k``.

    Parameters
    ----------
    features : list of torch.Tensor
        The training items' affinity features, one ``(n, p_k)`` tensor per
        modality, rows paired across modalities.
    weights : list of float
        ``w_k`` per modality (``β, 1 − β`` for two, ``1`` for one).
    n_neighbors : int
        Length ``k`` of each list, at most the number of candidates.
    queries : list of torch.Tensor or None
        Other items to list training neighbours for (validation items),
        one ``(n_q, p_k)`` tensor per modality; None gives the training
        items' own lists, which start with the item itself.
    max_exact : int or None
        With more training items than this (None: :data:`MAX_EXACT`),
        neighbours are searched among ``max_exact`` training items drawn at
        random with ``generator``: approximate lists, and a training item
        still lists itself first.
    block_size : int or None
        Rows of cosines computed at once (None: :data:`BLOCK_SIZE`).
    generator : torch.Generator or None
        Draws the candidate sample; only used beyond ``max_exact``.

    Returns
    -------
    neighbors : torch.LongTensor of shape (n_rows, k')
        Training indices, nearest first, with ``k' = min(k, number of
        candidates)``. Ties within a list are ordered by lower index; which
        of several items tied at the ``k``-th place is kept is left to
        ``torch.topk`` (deterministic on a given device).
    """
    max_exact = MAX_EXACT if max_exact is None else max_exact
    block_size = BLOCK_SIZE if block_size is None else block_size
    normed = [unit_rows(x.float()) for x in features]
    n = normed[0].shape[0]
    device = normed[0].device
    own = queries is None
    rows = normed if own else [unit_rows(q.float()) for q in queries]
    n_rows = rows[0].shape[0]
    if n > max_exact:
        cand = torch.randperm(n, generator=generator)[:max_exact]
        cand = cand.sort().values.to(device)  # ties still go to lower indices
    else:
        cand = torch.arange(n, device=device)
    cols = [x[cand] for x in normed]
    # a training item lists itself first, then its k - 1 nearest others
    k_search = min(n_neighbors, len(cand)) - (1 if own else 0)
    out = []
    for start in range(0, n_rows, block_size):
        stop = min(start + block_size, n_rows)
        sim = sum(w * (r[start:stop] @ c.T) for w, r, c in zip(weights, rows, cols))
        selves = torch.arange(start, stop, device=device)[:, None]
        if own:  # the item itself is not one of its "others"
            sim = sim.masked_fill(cand[None, :] == selves, -float("inf"))
        # top-k (a full sort is 20x slower), then the k kept are ordered
        # nearest first, ties by lower training index (``cand`` is sorted)
        top_sim, top = sim.topk(k_search, dim=1)
        top, order = top.sort(dim=1)
        order = top_sim.gather(1, order).sort(dim=1, descending=True, stable=True)
        top = cand[top.gather(1, order.indices)]
        out.append(torch.cat([selves, top], dim=1) if own else top)
    return torch.cat(out, dim=0)


def shared_neighbor_affinity(neighbors):
    """Shared-neighbour coherence ``|N(i) ∩ N(j)| / k`` of a batch.

    Parameters
    ----------
    neighbors : torch.LongTensor of shape (m, k)
        The batch's neighbour lists (indices into one pool, no repeats
        within a row), from :func:`joint_cosine_knn`.

    Returns
    -------
    coherence : torch.Tensor of shape (m, m)
        Symmetric, in ``[0, 1]``, 1 on the diagonal. Memory ``O(m² k)`` at
        most: the lists are renumbered onto the at most ``m k`` neighbours
        they hold before the product, never onto the whole training set.
    """
    m, k = neighbors.shape
    uniq, inverse = torch.unique(neighbors, return_inverse=True)
    indicator = torch.zeros(m, len(uniq), device=neighbors.device)
    indicator.scatter_(1, inverse, 1.0)
    return (indicator @ indicator.T) / max(k, 1)


def knn_affinity(paper_target, neighbors, *, weight, mu):
    """``(1 − γ) μ S + γ μ (2 C − 1)``: the paper's target mixed with the
    rescaled shared-neighbour coherence ``C`` of the batch.

    Parameters
    ----------
    paper_target : torch.Tensor of shape (m, m)
        ``μ S`` of eq. (3) on the batch.
    neighbors : torch.LongTensor of shape (m, k)
        The batch's neighbour lists.
    weight : float
        ``γ`` in ``[0, 1]``.
    mu : float
        The paper's scale ``μ``.

    Returns
    -------
    target : torch.Tensor of shape (m, m)
    """
    coherence = shared_neighbor_affinity(neighbors).to(paper_target.dtype)
    return (1.0 - weight) * paper_target + weight * mu * (2.0 * coherence - 1.0)


#: Ridge of the affinity's CCA: each modality's covariance gets
#: ``CCA_RIDGE × (mean feature variance)`` added to its diagonal, so the
#: whitening stays defined with more features than training items or with
#: collinear features, and the weakest directions are damped.
CCA_RIDGE = 0.1
#: Widest modality (features per item) the affinity's CCA whitens: its
#: ``p × p`` eigendecomposition takes seconds up to here.
MAX_CCA_WIDTH = 4096
#: Rows converted to float64 at once by the affinity's CCA.
CCA_BLOCK_SIZE = 8192


class Canonical(NamedTuple):
    """A fitted linear CCA of two modalities (see :func:`fit_canonical`)."""

    means: tuple  # per modality, (p_k,) float64
    weights: tuple  # per modality, (p_k, r) float64: centred features -> scaled
    correlations: np.ndarray  # (r,) regularised canonical correlations, descending


def _blocks(x, fn, *, means=None):
    """``fn`` of consecutive blocks of rows, as float64 (centred by ``means``
    when given); ``x`` is one array, or a list of row-paired arrays (``fn``
    then takes one block of each)."""
    arrays = x if isinstance(x, list) else [x]
    block_size = CCA_BLOCK_SIZE
    out = []
    for start in range(0, len(arrays[0]), block_size):
        blocks = [np.asarray(a[start : start + block_size], np.float64) for a in arrays]
        if means is not None:
            blocks = [b - m for b, m in zip(blocks, means)]
        out.append(fn(*blocks))
    return out


def _inverse_sqrt(cov):
    values, vectors = np.linalg.eigh(cov)
    # directions without variance (ridge=0 on collinear features) are left
    # at a finite weight instead of dividing by zero
    values = np.maximum(values, 1e-12 * max(float(values.max()), 1e-300))
    return (vectors / np.sqrt(values)) @ vectors.T


def fit_canonical(a, b, *, ridge=CCA_RIDGE, power=1.0):
    """Closed-form regularised CCA of paired rows ``a`` and ``b``.

    With ``C_aa``, ``C_bb`` the modalities' covariances plus ``ridge`` times
    their mean variance on the diagonal and ``C_ab`` the cross-covariance,
    the SVD ``C_aa^{-1/2} C_ab C_bb^{-1/2} = U diag(ρ) Vᵀ`` gives the
    directions ``W_a = C_aa^{-1/2} U`` and ``W_b = C_bb^{-1/2} V`` (all
    ``r = min(p_a, p_b)`` of them). Each direction is scaled by its
    correlation ``ρ``: a projection ``(x − mean) W diag(ρ)`` weighs the
    shared directions by how shared they are, and the weakly correlated ones
    (modality-specific noise, whose sample correlation is small but not
    zero) count little in a cosine. Deterministic: eigendecomposition and SVD
    in float64, and each pair of directions' sign fixed (the largest
    entry of ``U``'s column positive; ``V`` follows, the correlations stay
    positive).

    Parameters
    ----------
    a, b : ndarray of shape (n, p_a) and (n, p_b)
        The training items' features of the two modalities, rows paired.
    ridge : float
        Relative ridge, ``>= 0`` (see :data:`CCA_RIDGE`).
    power : float
        Each direction is scaled by ``ρ ** power``: 1 by its correlation,
        0 not at all (unit-variance canonical variates).

    Returns
    -------
    canonical : Canonical
    """
    xs = [np.asarray(x).reshape(len(x), -1) for x in (a, b)]
    n = len(xs[0])
    # two passes over blocks of rows, in float64: the means, then the
    # centred (cross-)covariances; no float64 copy of the whole training set
    means = tuple(sum(_blocks(x, lambda blk: blk.sum(axis=0))) / n for x in xs)
    cov_a, cov_b, cov_ab = (
        sum(parts) / n
        for parts in zip(
            *_blocks(
                xs,
                lambda ba, bb: (ba.T @ ba, bb.T @ bb, ba.T @ bb),
                means=means,
            )
        )
    )
    whiten = []
    for cov in (cov_a, cov_b):
        # a constant modality has no variance at all: whiten by the identity
        scale = max(float(np.trace(cov)) / cov.shape[0], np.finfo(np.float64).tiny)
        whiten.append(_inverse_sqrt(cov + ridge * scale * np.eye(len(cov))))
    cross = whiten[0] @ cov_ab @ whiten[1]
    u, rho, vt = np.linalg.svd(cross, full_matrices=False)
    r = min(cross.shape)
    u, rho, v = u[:, :r], rho[:r], vt[:r].T
    flip = np.sign(u[np.abs(u).argmax(axis=0), np.arange(r)])
    flip[flip == 0] = 1.0
    u, v = u * flip, v * flip
    gain = rho**power
    weights = (whiten[0] @ u * gain, whiten[1] @ v * gain)
    return Canonical(means, weights, rho)


def canonical_features(canonical, features):
    """Project each modality's rows onto its scaled canonical directions.

    Parameters
    ----------
    canonical : Canonical
        From :func:`fit_canonical`.
    features : list of ndarray
        One ``(n, p_k)`` array per modality, in the order they were fitted.

    Returns
    -------
    projections : list of ndarray of shape (n, r), float32
    """
    out = []
    for x, m, w in zip(features, canonical.means, canonical.weights):
        x = np.asarray(x).reshape(len(x), -1)
        parts = _blocks(x, lambda blk, w=w: (blk @ w).astype(np.float32), means=[m])
        out.append(
            np.concatenate(parts) if parts else np.zeros((0, w.shape[1]), np.float32)
        )
    return out
