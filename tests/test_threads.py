"""skhash.utils._threads: the work shared out on the process's helper threads.

What must hold: results in the items' order whatever the threads; every
item run once; the caller works too (one thread runs everything with
n_jobs=1); an exception reaches the caller after the others have stopped;
nested calls finish; a forked child gets a pool of its own.
"""

import os
import threading
import time

import pytest

from skhash.utils import _threads


def test_results_keep_the_items_order():
    def slow_square(x):
        time.sleep(0.001 * (x % 3))
        return x * x

    for n_jobs in (1, 2, 3, 8):
        assert _threads.map_threads(slow_square, range(11), n_jobs) == [
            x * x for x in range(11)
        ]
    assert _threads.map_threads(slow_square, [], 4) == []


def test_each_item_runs_once_and_the_caller_takes_part():
    seen, who = [], set()
    lock = threading.Lock()

    def note(x):
        time.sleep(0.002)
        with lock:
            seen.append(x)
            who.add(threading.get_ident())

    _threads.map_threads(note, range(20), 1)
    assert who == {threading.get_ident()}  # one thread: the caller alone
    seen.clear()
    who.clear()
    _threads.map_threads(note, range(20), 2)
    assert sorted(seen) == list(range(20))
    assert threading.get_ident() in who and len(who) == 2


def test_an_exception_reaches_the_caller_after_the_others_stop():
    running = []

    def fail_on_three(x):
        running.append(x)
        time.sleep(0.002)
        if x == 3:
            raise KeyError("three")
        running.remove(x)
        return x

    with pytest.raises(KeyError, match="three"):
        _threads.map_threads(fail_on_three, range(40), 3)
    assert running == [3]  # no other item still running
    # the pool still works afterwards
    assert _threads.map_threads(lambda x: -x, range(5), 3) == [0, -1, -2, -3, -4]


def test_nested_calls_finish():
    def inner(x):
        return _threads.map_threads(lambda y: 10 * x + y, range(3), 8)

    want = [[10 * x + y for y in range(3)] for x in range(16)]
    assert _threads.map_threads(inner, range(16), 8) == want


def test_a_forked_child_makes_its_own_pool(monkeypatch):
    pool = _threads._helpers()
    assert _threads._helpers() is pool  # kept for the process
    # as seen by a forked child: the pool of another process id
    monkeypatch.setattr(_threads, "_pool", (os.getpid() + 1, pool))
    assert _threads._helpers() is not pool
    assert _threads.map_threads(lambda x: x + 1, range(6), 2) == list(range(1, 7))
