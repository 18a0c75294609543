"""skhash: scikit-learn compatible deep cross-modal hashing and quantization.

The public names are imported on first use (module ``__getattr__``), so that
``import skhash.metrics`` or ``import skhash.retrieval`` does not pay for the
learners' dependencies (torch, skorch): ``from skhash import HQHasher`` works
as before and imports them then.
"""

import importlib

__version__ = "0.1.0.dev0"

# public name -> module that defines it
_LAZY = {
    "CodeSet": "skhash._codes",
    "pack_bits": "skhash._codes",
    "unpack_bits": "skhash._codes",
    "MultiModal": "skhash._modalities",
    "DJSRHHasher": "skhash.hashing",
    "HQHasher": "skhash.hashing",
    "Pipeline": "skhash.pipeline",
    "make_pipeline": "skhash.pipeline",
    "DQNQuantizer": "skhash.quantization",
    "TwoStageRetriever": "skhash.retrieval",
}

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


# subpackages and modules reachable as attributes (``skhash.metrics``) once
# ``skhash`` is imported, as when they were imported eagerly
_SUBMODULES = {
    "compose",
    "datasets",
    "exceptions",
    "hashing",
    "metrics",
    "nn",
    "pipeline",
    "plotting",
    "quantization",
    "retrieval",
    "utils",
}


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"skhash.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'skhash' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
