"""skhash: scikit-learn compatible deep cross-modal hashing and quantization."""

from skhash._codes import CodeSet, pack_bits, unpack_bits
from skhash._modalities import MultiModal
from skhash.hashing import DJSRHHasher, HQHasher
from skhash.pipeline import Pipeline, make_pipeline
from skhash.quantization import DQNQuantizer
from skhash.retrieval import TwoStageRetriever

__version__ = "0.1.0.dev0"

__all__ = [
    "CodeSet",
    "DJSRHHasher",
    "DQNQuantizer",
    "HQHasher",
    "MultiModal",
    "Pipeline",
    "TwoStageRetriever",
    "make_pipeline",
    "pack_bits",
    "unpack_bits",
    "__version__",
]
