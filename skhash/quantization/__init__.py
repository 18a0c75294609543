"""Quantizers: codebooks, code assignment and asymmetric distances.

:class:`DQNQuantizer` (a torch learner) is imported on first use, so that the
numpy/numba quantizers load without torch.
"""

import importlib

from skhash.quantization._checks import product_blocks
from skhash.quantization._codebooks import (
    AdditiveQuantizer,
    ProductQuantizer,
    decode,
    quantization_error,
    update_codebooks,
)
from skhash.quantization._distances import aqd, lookup_tables, reconstruction_sqnorms
from skhash.quantization._encode import encode
from skhash.quantization._kmeans import kmeans_codebooks
from skhash.quantization._opq import OPQ

__all__ = [
    "AdditiveQuantizer",
    "DQNQuantizer",
    "OPQ",
    "ProductQuantizer",
    "aqd",
    "decode",
    "encode",
    "kmeans_codebooks",
    "lookup_tables",
    "product_blocks",
    "quantization_error",
    "reconstruction_sqnorms",
    "update_codebooks",
]


def __getattr__(name):
    if name == "DQNQuantizer":
        value = importlib.import_module("skhash.quantization._dqn").DQNQuantizer
        globals()[name] = value
        return value
    raise AttributeError(f"module 'skhash.quantization' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
