"""Seeded synthetic cross-modal data."""

# Authors: The skhash developers
# SPDX-License-Identifier: BSD-3-Clause

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, validate_params

from skhash._modalities import SINGLE_MODALITY, MultiModal

__all__ = ["make_cross_modal"]


def _modality_widths(n_features):
    if isinstance(n_features, dict):
        widths = dict(n_features)
    else:
        widths = tuple(n_features)
        names = {1: (SINGLE_MODALITY,), 2: ("img", "txt")}.get(len(widths))
        if names is None:
            raise ValueError(
                "n_features must hold one width (a single modality 'X') or two "
                "('img', 'txt'), or be a dict {name: width}; got "
                f"{n_features!r}."
            )
        widths = dict(zip(names, widths))
    if not widths:
        raise ValueError("n_features must name at least one modality.")
    for name, width in widths.items():
        if not isinstance(width, Integral) or isinstance(width, bool) or width < 1:
            raise ValueError(
                f"n_features of modality {name!r} must be a positive int; got "
                f"{width!r}."
            )
    return widths


@validate_params(
    {
        "n_samples": [Interval(Integral, 2, None, closed="left")],
        "n_classes": [Interval(Integral, 2, None, closed="left")],
        "n_features": [tuple, list, dict],
        "multilabel": ["boolean"],
        "difficulty": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_cross_modal(
    n_samples=1000,
    *,
    n_classes=10,
    n_features=(64, 32),
    multilabel=False,
    difficulty=0.5,
    random_state=None,
):
    """Generate paired modalities that share class semantics.

    Each class has a prototype in a latent space of ``max(16, n_classes)``
    dimensions, drawn from a standard normal. An item's latent vector is its
    class prototype (for multi-label items, the mean of the prototypes of
    its labels) plus Gaussian noise of standard deviation ``difficulty``.
    Each modality is a random linear map of the shared latent vector (a
    Gaussian matrix scaled by ``1 / sqrt(latent dims)``) plus its own
    Gaussian noise of standard deviation ``difficulty``. So items of one
    class are close within and across modalities, and ``difficulty`` sets
    how much noise blurs them: 0 gives one point per class (per label set),
    1 overlapping classes.

    Read more in the :ref:`User Guide <datasets>`.

    Parameters
    ----------
    n_samples : int, default=1000
        Number of paired items.
    n_classes : int, default=10
        Number of classes (labels).
    n_features : tuple of int or dict, default=(64, 32)
        Width of each modality: two values give the modalities ``"img"`` and
        ``"txt"``, one value the single modality ``"X"``, and a dict
        ``{name: width}`` any names.
    multilabel : bool, default=False
        If False, every item has one class and ``y`` holds class ids. If
        True, every item has one random primary label plus each other label
        with probability ``min(0.5, 2 / n_classes)``, and ``y`` is a 0/1
        indicator matrix.
    difficulty : float, default=0.5
        Standard deviation of the latent and of the per-modality noise,
        relative to unit-variance prototypes.
    random_state : int, RandomState instance or None, default=None
        Seeds everything; the same integer always gives the same data.

    Returns
    -------
    X : MultiModal
        The paired modalities, float64, of shape ``(n_samples, width)`` each.
    y : ndarray of shape (n_samples,) or (n_samples, n_classes)
        Class ids (int64), or with ``multilabel=True`` a 0/1 indicator
        matrix (int64) with at least one label per row.

    See Also
    --------
    load_wiki : Real image-text data shipped with skhash.

    Examples
    --------
    >>> from skhash.datasets import make_cross_modal
    >>> X, y = make_cross_modal(200, n_classes=5, random_state=42)
    >>> X
    MultiModal(img=(200, 64), txt=(200, 32))
    >>> y.shape, int(y.max())
    ((200,), 4)
    >>> X, Y = make_cross_modal(50, n_classes=8, multilabel=True, random_state=0)
    >>> Y.shape, bool(Y.sum(axis=1).min() >= 1)
    ((50, 8), True)
    """
    X, y, _ = _draw_cross_modal(
        n_samples,
        n_classes,
        _modality_widths(n_features),
        multilabel,
        difficulty,
        check_random_state(random_state),
    )
    return X, y


def _draw_cross_modal(n_samples, n_classes, widths, multilabel, difficulty, rng):
    """:func:`make_cross_modal`'s draw, on checked arguments, also returning
    the generative model (what a Bayes-optimal ranker would know): the class
    prototypes, each modality's linear map, the probability of each extra
    label (None for single-label data) and the noise level. The benchmarks
    compute the best ranking any method could reach from it."""
    n_latent = max(16, n_classes)
    prototypes = rng.standard_normal((n_classes, n_latent))
    primary = rng.randint(n_classes, size=n_samples)
    p_extra = None
    if multilabel:
        p_extra = min(0.5, 2.0 / n_classes)
        Y = (rng.uniform(size=(n_samples, n_classes)) < p_extra).astype(np.int64)
        Y[np.arange(n_samples), primary] = 1
        latent = (Y @ prototypes) / Y.sum(axis=1, keepdims=True)
        y = Y
    else:
        latent = prototypes[primary]
        y = primary.astype(np.int64)
    latent = latent + difficulty * rng.standard_normal(latent.shape)
    arrays, mappings = {}, {}
    for name, width in widths.items():
        mapping = rng.standard_normal((n_latent, width)) / np.sqrt(n_latent)
        noise = difficulty * rng.standard_normal((n_samples, width))
        arrays[name] = latent @ mapping + noise
        mappings[name] = mapping
    model = {
        "prototypes": prototypes,
        "mappings": mappings,
        "p_extra": p_extra,
        "difficulty": float(difficulty),
    }
    return MultiModal(**arrays), y, model
