"""Deep hashing learners: binary codes (and HQ's quantization codes)."""

from skhash.hashing._djsrh import DJSRHHasher
from skhash.hashing._hq import HQHasher

__all__ = ["DJSRHHasher", "HQHasher"]
