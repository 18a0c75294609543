"""Utilities: secure persistence with skops."""

__all__ = ["trusted_types"]


def trusted_types():
    """Names of the skhash types to trust when loading a skops file.

    :func:`skops.io.load` refuses every type it does not trust by default;
    skhash's estimators are among those. Pass this list as ``trusted=`` to
    load a file written by :func:`skops.io.dump`, after checking it against
    :func:`skops.io.get_untrusted_types` (the types the file holds beyond
    skops' defaults). scikit-learn, numpy and scipy types are trusted by
    skops already.

    What skops can persist: every skhash estimator, fitted or not, and
    :class:`~skhash.Pipeline` objects made of them (and of scikit-learn
    steps): the learners (:class:`~skhash.HQHasher`,
    :class:`~skhash.hashing.DJSRHHasher`, :class:`~skhash.DQNQuantizer`),
    :class:`~skhash.quantization.ProductQuantizer`,
    :class:`~skhash.quantization.AdditiveQuantizer`,
    :class:`~skhash.TwoStageRetriever` and
    :class:`~skhash.compose.ModalityTransformer`.

    A fitted learner's state holds no torch object: its network is written
    as the module's weights (numpy arrays) and its training history (lists
    of numbers), and is rebuilt from the learner's parameters on load. So no
    torch or skorch type name is needed for skhash's own objects, and a model
    trained on CUDA loads on a CPU-only machine (with a
    :class:`~skhash.exceptions.DeviceWarning`). A user's own tower class
    (``module=``) or callbacks are types of the user's: skops reports them
    as untrusted, and they are trusted by adding their names.

    Returns
    -------
    names : list of str
        Fully qualified type names (as skops reports them), sorted.

    See Also
    --------
    skops.io.get_untrusted_types : The types of a file that need trust.
    skhash.TwoStageRetriever.save : Pickle-free ``.npz`` or directory index.

    Examples
    --------
    >>> import numpy as np
    >>> import skops.io as sio  # doctest: +SKIP
    >>> from skhash.quantization import ProductQuantizer
    >>> from skhash.utils import trusted_types
    >>> pq = ProductQuantizer(2, 4, random_state=0).fit(
    ...     np.random.RandomState(42).randn(20, 4))
    >>> "skhash.quantization._codebooks.ProductQuantizer" in trusted_types()
    True
    >>> data = sio.dumps(pq)  # doctest: +SKIP
    >>> untrusted = sio.get_untrusted_types(data=data)  # doctest: +SKIP
    >>> set(untrusted) <= set(trusted_types())  # doctest: +SKIP
    True
    >>> loaded = sio.loads(data, trusted=trusted_types())  # doctest: +SKIP
    """
    from skhash.compose import ModalityTransformer
    from skhash.hashing import DJSRHHasher, HQHasher
    from skhash.pipeline import Pipeline
    from skhash.quantization import AdditiveQuantizer, DQNQuantizer, ProductQuantizer
    from skhash.retrieval import TwoStageRetriever

    classes = [
        AdditiveQuantizer,
        DJSRHHasher,
        DQNQuantizer,
        HQHasher,
        ModalityTransformer,
        Pipeline,
        ProductQuantizer,
        TwoStageRetriever,
    ]
    # the learners' ``optimizer`` parameter holds a torch.optim class (Adam
    # by default): a reference to a class, not an object of it
    import torch

    classes += [
        getattr(torch.optim, name)
        for name in ("Adam", "AdamW", "SGD", "RMSprop", "Adagrad")
    ]
    return sorted(f"{cls.__module__}.{cls.__qualname__}" for cls in classes)
