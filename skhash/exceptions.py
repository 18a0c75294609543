"""Exceptions and warnings raised by skhash."""

from sklearn.exceptions import NotFittedError as _SklearnNotFittedError

__all__ = [
    "SkhashError",
    "NotFittedError",
    "TrainingError",
    "ShardUnavailableError",
    "IndexFormatError",
    "DeviceWarning",
]


class SkhashError(Exception):
    """Base class of the errors skhash raises on its own account.

    Examples
    --------
    >>> from skhash.exceptions import SkhashError, TrainingError
    >>> issubclass(TrainingError, SkhashError)
    True
    """


class NotFittedError(_SklearnNotFittedError, SkhashError):
    """Raised when a method needs a fitted estimator.

    Subclasses scikit-learn's :class:`~sklearn.exceptions.NotFittedError`, so
    code that catches that one catches this one too.

    Examples
    --------
    >>> from sklearn.exceptions import NotFittedError as SkNotFitted
    >>> from skhash.exceptions import NotFittedError
    >>> issubclass(NotFittedError, SkNotFitted)
    True
    """


class TrainingError(SkhashError, RuntimeError):
    """Raised when training diverges (a loss turns NaN or infinite).

    The estimator is left unfitted; the message names the epoch and the
    likely causes (learning rate, loss weights).

    Examples
    --------
    >>> from skhash.exceptions import TrainingError
    >>> str(TrainingError("loss became nan at epoch 3"))
    'loss became nan at epoch 3'
    """


class IndexFormatError(SkhashError, ValueError):
    """Raised when a saved search index is damaged, foreign or inconsistent.

    :meth:`TwoStageRetriever.load <skhash.retrieval.TwoStageRetriever.load>`
    raises it for a file that :meth:`~skhash.retrieval.TwoStageRetriever.save`
    did not write, a truncated or tampered array, metadata that does not
    match the arrays, or (with ``verify=True``) a checksum mismatch. The
    message names the file and what is wrong. Subclasses :class:`ValueError`.

    Examples
    --------
    >>> from skhash.exceptions import IndexFormatError
    >>> issubclass(IndexFormatError, ValueError)
    True
    """


class ShardUnavailableError(SkhashError, RuntimeError):
    """Raised when a shard of a sharded index does not answer a query.

    :class:`~skhash.retrieval.ShardedRetriever` needs every shard's results
    to return the exact top-k, so the loss of a worker holding a shard that
    cannot be rebuilt raises this instead of returning a partial result.

    Examples
    --------
    >>> from skhash.exceptions import ShardUnavailableError, SkhashError
    >>> issubclass(ShardUnavailableError, SkhashError)
    True
    """


class DeviceWarning(UserWarning):
    """Warned when a requested device is not available and another is used.

    Examples
    --------
    >>> from skhash.exceptions import DeviceWarning
    >>> issubclass(DeviceWarning, UserWarning)
    True
    """
