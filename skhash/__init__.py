"""skhash: scikit-learn compatible deep cross-modal hashing and quantization."""

from skhash._codes import CodeSet, pack_bits, unpack_bits
from skhash._modalities import MultiModal

__version__ = "0.1.0.dev0"

__all__ = [
    "CodeSet",
    "MultiModal",
    "pack_bits",
    "unpack_bits",
    "__version__",
]
