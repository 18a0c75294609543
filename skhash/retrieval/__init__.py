"""Two-stage retrieval over compact codes: Hamming shortlist, then re-ranking."""

from skhash.retrieval._build import build_sharded_index
from skhash.retrieval._faiss import to_faiss
from skhash.retrieval._kernels import get_backend
from skhash.retrieval._retriever import TwoStageRetriever
from skhash.retrieval._sharded import ShardedRetriever

__all__ = [
    "ShardedRetriever",
    "TwoStageRetriever",
    "build_sharded_index",
    "get_backend",
    "to_faiss",
]
