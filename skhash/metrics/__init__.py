"""Retrieval metrics (MAP@K, precision@K, precision-recall) and scorers."""

from skhash.metrics._ranking import (
    average_precision_from_ranking,
    harmonic_mean,
    mean_average_precision,
    n_relevant,
    precision_at_k,
    precision_at_top_r,
    precision_recall_hamming,
    ranked_relevance,
    relevance,
)
from skhash.metrics._scorer import (
    get_scorer,
    get_scorer_names,
    make_map_scorer,
    make_precision_scorer,
)

__all__ = [
    "average_precision_from_ranking",
    "get_scorer",
    "get_scorer_names",
    "harmonic_mean",
    "make_map_scorer",
    "make_precision_scorer",
    "mean_average_precision",
    "n_relevant",
    "precision_at_k",
    "precision_at_top_r",
    "precision_recall_hamming",
    "ranked_relevance",
    "relevance",
]
