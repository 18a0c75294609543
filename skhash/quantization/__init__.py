"""Quantizers: codebooks, code assignment and asymmetric distances."""

from skhash.quantization._codebooks import (
    AdditiveQuantizer,
    ProductQuantizer,
    aqd,
    decode,
    encode,
    kmeans_codebooks,
    lookup_tables,
    product_blocks,
    quantization_error,
    reconstruction_sqnorms,
    update_codebooks,
)
from skhash.quantization._dqn import DQNQuantizer

__all__ = [
    "AdditiveQuantizer",
    "DQNQuantizer",
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
