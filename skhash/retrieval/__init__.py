"""Two-stage retrieval over compact codes: Hamming shortlist, then re-ranking."""

from skhash.retrieval._faiss import to_faiss
from skhash.retrieval._kernels import get_backend
from skhash.retrieval._retriever import TwoStageRetriever

__all__ = ["TwoStageRetriever", "get_backend", "to_faiss"]
