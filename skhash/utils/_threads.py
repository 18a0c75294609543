"""Threads: the number an ``n_jobs`` parameter means, and work run in pieces
on them."""

from __future__ import annotations

import os
import threading

__all__ = []  # private helpers

_pool = None  # (pid, ThreadPoolExecutor): the process's helper threads
_pool_lock = threading.Lock()


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
    map_threads(lambda p: run(*p), pieces, n_jobs)


def _helpers():
    """The process's pool of helper threads, made at the first call (and
    again in a forked child, whose copy of the pool has no threads)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():
            from concurrent.futures import ThreadPoolExecutor

            _pool = (
                os.getpid(),
                ThreadPoolExecutor(
                    max_workers=max(4, os.cpu_count() or 1),
                    thread_name_prefix="skhash",
                ),
            )
        return _pool[1]


def map_threads(fn, items, n_jobs):
    """``[fn(x) for x in items]``, the items shared out among ``n_jobs``
    threads as each finishes one: the calling thread and ``n_jobs - 1``
    helpers of a pool kept for the process (a call starts no thread, which
    costs a few tenths of a millisecond, a tenth of a short search).
    ``fn`` must release the GIL to gain from threads. Every item has been
    run (or skipped after a failure) when the first exception is raised;
    calls may nest (a caller never waits for a helper that has not started).

    Examples
    --------
    >>> from skhash.utils._threads import map_threads
    >>> map_threads(lambda x: x * x, range(5), 2)
    [0, 1, 4, 9, 16]
    """
    items = list(items)
    n_workers = min(int(n_jobs), len(items))
    if n_workers <= 1:
        return [fn(x) for x in items]
    results = [None] * len(items)
    errors = []
    order = iter(range(len(items)))
    lock = threading.Lock()

    def work():
        while not errors:
            with lock:
                i = next(order, None)
            if i is None:
                return
            try:
                results[i] = fn(items[i])
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                errors.append(exc)

    pool = _helpers()
    helpers = [pool.submit(work) for _ in range(n_workers - 1)]
    work()
    for h in helpers:
        # every item is taken: a helper not started yet has nothing to do
        # (cancelled, so a nested call never waits on a queued one)
        if not h.cancel():
            h.result()
    if errors:
        raise errors[0]
    return results
