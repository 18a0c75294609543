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

    What skops can persist:

    - :class:`~skhash.quantization.ProductQuantizer`,
      :class:`~skhash.quantization.AdditiveQuantizer`,
      :class:`~skhash.TwoStageRetriever` and
      :class:`~skhash.compose.ModalityTransformer`, fitted or not, and
      :class:`~skhash.Pipeline` objects made of them (and of scikit-learn
      steps);
    - the learners (:class:`~skhash.HQHasher`,
      :class:`~skhash.hashing.DJSRHHasher`, :class:`~skhash.DQNQuantizer`)
      *unfitted* only, i.e. their parameters.

    A *fitted* learner cannot be written by skops 0.16: its ``net_`` holds
    torch tensors, which skops has no handler for, and ``skops.io.dump``
    raises ``RuntimeError: Cannot directly construct TensorBase``. Persist
    fitted learners with :mod:`pickle` or :mod:`joblib` (only load files you
    trust), and a retriever's index without pickle through
    :meth:`TwoStageRetriever.save <skhash.TwoStageRetriever.save>`. So no
    torch or skorch type name is listed here: none can appear in a skops
    file of skhash objects.

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
    return sorted(f"{cls.__module__}.{cls.__qualname__}" for cls in classes)
