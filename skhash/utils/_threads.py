"""Threads: the number an ``n_jobs`` parameter means, and a range of work
run in pieces on them."""

from __future__ import annotations

__all__ = []  # private helpers


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


def run_blocks(run, n, n_jobs, grain):
    """``run(lo, hi)`` over ``[0, n)`` in pieces of ``grain`` items, on
    ``n_jobs`` threads (in order on one). ``run`` must release the GIL to
    gain from threads, and its results must not depend on the pieces.

    Examples
    --------
    >>> from skhash.utils._threads import run_blocks
    >>> seen = []
    >>> run_blocks(lambda lo, hi: seen.append((lo, hi)), 10, 1, 4)
    >>> seen
    [(0, 4), (4, 8), (8, 10)]
    """
    if n == 0:
        return
    pieces = [(lo, min(n, lo + grain)) for lo in range(0, n, grain)]
    if n_jobs <= 1 or len(pieces) == 1:
        for lo, hi in pieces:
            run(lo, hi)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(n_jobs, len(pieces))) as pool:
        list(pool.map(lambda p: run(*p), pieces))
