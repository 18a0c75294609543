"""Parameter text shared by the learners' docstrings, written once."""

__all__ = ["substitute"]

_BLOCKS = {
    "training_params": """\
    lr : float, default=1e-3
        Adam learning rate.
    weight_decay : float, default=0.0
        Adam weight decay.
    device : str, default="auto"
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``...
        ``"cuda"`` without CUDA raises a ValueError rather than falling back.
    verbose : int, default=0
        Show skorch's epoch table when > 0.
    n_jobs : int, default=None
        CPU threads of torch, BLAS and OpenMP used by ``fit`` and
        ``transform`` (set for the call and restored afterwards); None keeps
        the current settings, -1 uses all cores. The same ``n_jobs`` and
        ``random_state`` give bit-identical results on CPU. Small towers
        often train fastest on 1 thread, above all on a busy machine.
    **kwargs
        ``module__*`` and ``optimizer__*`` routed parameters.""",
    "learner_attributes": """\
    modalities_ : tuple of str
        Modality names seen in ``fit`` (``("X",)`` for a plain array).
    n_features_in_ : int
        Number of features, set for a single-modality fit only.
    n_features_per_modality_ : dict
        Number of features of each modality.
    scaler_ : dict
        Per-modality ``(mean, scale)`` used to standardise inputs.
    device_ : str
        The device used.""",
}


def substitute(obj):
    """Fill the ``{training_params}``-style placeholders of a docstring.

    Parameters
    ----------
    obj : class or function
        Its ``__doc__`` holds placeholders named after the shared blocks,
        each alone on its line.

    Returns
    -------
    obj : class or function
        The same object, with the text filled in.

    Examples
    --------
    >>> from skhash.utils._docstring import substitute
    >>> @substitute
    ... class A:
    ...     '''Doc.
    ...
    ...     Parameters
    ...     ----------
    ...     {training_params}
    ...     '''
    >>> "Adam learning rate" in A.__doc__
    True
    """
    doc = obj.__doc__
    for name, text in _BLOCKS.items():
        doc = doc.replace("    {" + name + "}", text)
    obj.__doc__ = doc
    return obj
