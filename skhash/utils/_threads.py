"""The number of threads of an ``n_jobs`` parameter."""

from __future__ import annotations

__all__ = []  # private helper


def n_threads(n_jobs, name="n_jobs"):
    """Threads for ``n_jobs`` by joblib's convention (``None``: 1, ``-1``: all
    processors, ``-2``: all but one, ...), at least 1.

    ``n_jobs=0`` means nothing there; it raises a ``ValueError`` that names
    the parameter and the fix (joblib's own message names neither the
    estimator's parameter nor what to pass).

    Examples
    --------
    >>> from skhash.utils._threads import n_threads
    >>> n_threads(None), n_threads(2)
    (1, 2)
    >>> n_threads(0)
    Traceback (most recent call last):
    ...
    ValueError: n_jobs=0 means no thread; pass n_jobs=1 for one thread, ...
    """
    if n_jobs is not None and not isinstance(n_jobs, bool) and n_jobs == 0:
        raise ValueError(
            f"{name}=0 means no thread; pass {name}=1 for one thread, -1 for all "
            "processors, or None (one thread)."
        )
    from joblib import effective_n_jobs

    return max(1, effective_n_jobs(n_jobs))
