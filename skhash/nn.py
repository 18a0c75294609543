"""Torch building blocks: the towers and the loss terms of the three papers."""

from skhash._losses import (
    balance_loss,
    djsrh_affinity,
    djsrh_loss,
    hash_loss,
    pairwise_cosine_loss,
    pairwise_likelihood_loss,
    quantization_loss,
)
from skhash._networks import MLPTower, MultiTower

__all__ = [
    "MLPTower",
    "MultiTower",
    "balance_loss",
    "djsrh_affinity",
    "djsrh_loss",
    "hash_loss",
    "pairwise_cosine_loss",
    "pairwise_likelihood_loss",
    "quantization_loss",
]
