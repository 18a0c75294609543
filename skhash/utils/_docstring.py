"""Parameter text shared by the learners' docstrings, written once."""

__all__ = ["substitute"]

_BLOCKS = {
    "training_params": """\
    lr : float, default=1e-3
        Learning rate of the optimizer (skorch's ``lr``). ``optimizer__lr``
        is the same setting: passing both with different values raises.
    weight_decay : float, default=0.0
        The optimizer's weight decay (``optimizer__weight_decay`` is the
        same setting).
    device : str, default="auto"
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``,
        ``"cuda:<index>"`` or ``"mps"``. A device that is not available
        raises a ValueError rather than falling back; other names
        (``"gpu"``, ``"meta"``) are refused.
    verbose : int, default=0
        Print skorch's epoch table (the loss terms, ``valid_loss`` and any
        callback's scores) when > 0; plain text without colour codes when
        the output is not a terminal.
    n_jobs : int or None, default=1
        CPU threads of torch, BLAS and OpenMP used by ``fit`` and
        ``transform`` (set for the call and restored afterwards); -1 uses
        all cores, None keeps the process's current settings. The same
        ``n_jobs`` and ``random_state`` give bit-identical results on CPU.
        The default, one thread, is the fast choice for skhash's towers on
        CPU: on a shared 2-core machine it was the fastest setting measured
        both as it was and with a busy-loop per core, while torch's own
        threads (``n_jobs=None``, one per core) were 3.5x and 4.5x slower
        (``benchmarks/bench_threads.py``). Raise it for large towers (CNNs)
        on idle many-core machines.
    optimizer : torch.optim.Optimizer class, default=torch.optim.Adam
        The optimizer (skorch's ``optimizer``), built with ``lr``,
        ``weight_decay`` and the ``optimizer__*`` parameters, e.g.
        ``optimizer=torch.optim.SGD, optimizer__momentum=0.9``. Per-modality
        learning rates: ``optimizer__param_groups=[("towers.img.*", {"lr":
        1e-4})]`` (parameter names are ``towers.<modality>.<layer>``).
    callbacks : list of skorch callbacks or (name, callback) pairs, default=None
        Run after skhash's own callbacks at every event of the training
        (skorch's ``callbacks``): e.g. ``LRScheduler``, ``EarlyStopping``,
        ``Checkpoint``, ``ProgressBar`` or
        :class:`~skhash.callbacks.RetrievalScoring`. Copied at each fit.
    train_split : float, ValidSplit or callable, default=None
        Hold out a validation split (skorch's ``train_split``): a float is
        the validation fraction (a random split drawn from
        ``random_state``), a skorch ``ValidSplit`` or a callable returning
        two ``torch.utils.data.Subset`` of the dataset it is given. The
        validation items are not trained on; ``valid_loss`` (and the
        ``valid_``-prefixed loss terms) are recorded each epoch. None
        trains on every item.
    warm_start : bool, default=False
        When True, ``fit`` on a fitted learner continues training its
        network (``max_epochs`` more epochs) instead of starting afresh.
    accelerator : accelerate.Accelerator, default=None
        Train through skorch's Accelerate integration
        (:class:`skorch.hf.AccelerateMixin`): data-parallel training over
        the processes of ``accelerate launch`` or ``torchrun`` (several GPUs,
        or CPU processes), mixed precision, gradient accumulation. The
        accelerator places the network, so ``device`` must stay ``"auto"``.
        Every process fits the same learner on the same data; the batches
        are split between them and the gradients averaged. Needs the
        ``accelerate`` extra (``pip install skhash[accelerate]``). The
        accelerator is a handle of the running processes: it is not saved
        with the learner (a loaded learner has ``accelerator=None``).
    **kwargs
        Routed parameters, as in skorch: ``module__*`` (the tower class),
        ``optimizer__*`` (the optimizer), ``iterator_train__*`` and
        ``iterator_valid__*`` (the DataLoaders, e.g. ``num_workers``),
        ``callbacks__<name>__*`` (a named callback's parameters).""",
    "learner_attributes": """\
    modalities_ : tuple of str
        Modality names seen in ``fit`` (``("X",)`` for a plain array).
    n_features_in_ : int
        Number of features, set for a single-modality fit only.
    n_features_per_modality_ : dict
        Number of features of each modality.
    scaler_ : dict
        Per-modality ``(mean, scale)`` used to standardise inputs.
    input_shapes_ : dict
        Shape of one item of each modality (``(n_features,)`` for vectors).
    structure_ : dict
        The structural parameters at fit (code and tower sizes, ``module``
        and its ``module__*`` arguments); ``transform`` always produces
        codes of this structure, whatever ``set_params`` changed since.
    validation_indices_ : ndarray of int or None
        Positions in ``X`` of the items held out by ``train_split``.
    feature_names_in_ : ndarray or dict
        Column names of the DataFrame modalities seen in ``fit`` (an array
        for a single-modality fit, else a dict by modality); only set when
        there were string column names.
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
    >>> "Learning rate of the optimizer" in A.__doc__
    True
    """
    doc = obj.__doc__
    for name, text in _BLOCKS.items():
        doc = doc.replace("    {" + name + "}", text)
    obj.__doc__ = doc
    return obj
