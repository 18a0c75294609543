"""Names shared by modules that must not import each other's dependencies.

:mod:`skhash._modalities` imports skorch (and so torch) for
:class:`~skhash.MultiModal`; the search and metrics modules only need the name
of the single modality, from here, so that they load without torch.
"""

__all__ = ["SINGLE_MODALITY"]

#: Name of the only modality of a plain (single-modality) array.
SINGLE_MODALITY = "X"
