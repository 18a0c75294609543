"""Index storage: round trips, and writes that are all or nothing.

Faults are injected at every step that changes a file, through the seam
``skhash.retrieval._storage._checkpoint`` (called before each such step):

- in-process, the step raises an ``OSError`` (a full disk, a lost mount):
  the failed call raises, and the index in memory and on disk (byte for byte)
  must be as before, or, for a failure after the atomic switch, as after;
- in a forked child, the step ``SIGKILL``s the process (no clean-up runs):
  the index on disk must load (with checksums verified) and answer exactly
  as before or as after, and the next write must succeed;
- a child adding items in a loop is ``SIGKILL``ed from outside after a
  random delay: what loads equals a fresh fit on a prefix of the items.
"""

import contextlib
import itertools
import json
import os
import signal
import sys
import time
from unittest import mock

import numpy as np
import pytest

from skhash import CodeSet, pack_bits
from skhash.exceptions import IndexFormatError
from skhash.retrieval import TwoStageRetriever, _schema, _storage

N, N_OLD, M, K, D, N_BITS = 60, 40, 3, 16, 8, 12
POSIX = pytest.mark.skipif(
    not hasattr(os, "fork") or sys.platform == "darwin",
    reason="kills a forked writer (POSIX fork)",
)


class Fault(OSError):
    """The injected failure (an OSError, as a full disk would raise)."""


def _data(seed=0):
    rng = np.random.RandomState(seed)
    emb = rng.randn(N, D).astype(np.float32)
    C = rng.randn(M, K, D).astype(np.float32)
    db = CodeSet(
        embedding=emb,
        bits=pack_bits(rng.randn(N, N_BITS)),
        codes=rng.randint(K, size=(N, M)),
        n_bits=N_BITS,
        codebooks=C,
        codebook_kind="additive",
    )
    y = np.array(["cat", "dog", "emu"])[rng.randint(3, size=N)]
    late = np.arange(N) >= N_OLD
    return db, np.where(late & (y == "cat"), "horse", y)  # 'horse' widens '<U3'


def _labels(y):
    """``y`` in its narrowest dtype (as a user's own array would be)."""
    return np.array(y.tolist())


DB, Y = _data()
Y_INT = np.arange(N) % 4


def _fit(n, y=Y, rerank="aqd-l2"):
    est = TwoStageRetriever(alpha=10, n_neighbors=5, rerank=rerank, backend="numpy")
    return est.fit(DB[:n], _labels(y[:n]))


def _answers(est):
    dist, idx = est.kneighbors(DB[:7])
    score = est.score(DB[:20], est.y_[:20])
    alpha = est.alpha
    self_idx = est.set_params(alpha=0).kneighbors(return_distance=False)  # X=None
    est.set_params(alpha=alpha)
    return dist, idx, self_idx, score


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a[:3], b[:3])) and a[3] == b[3]


def _snapshot(path):
    if os.path.isdir(path):
        out = {}
        for name in sorted(os.listdir(path)):
            with open(os.path.join(path, name), "rb") as f:
                out[name] = f.read()
        return out
    with open(path, "rb") as f:
        return {"": f.read()}


@contextlib.contextmanager
def _fault_at(i, kill=False):
    """Make the i-th checkpoint fail (raise Fault, or SIGKILL the process)."""
    counter = itertools.count()

    def checkpoint(step):
        if next(counter) == i:
            if kill:
                os.kill(os.getpid(), signal.SIGKILL)
            raise Fault(f"injected at step {i}: {step}")

    with mock.patch.object(_storage, "_checkpoint", checkpoint):
        yield


def _steps(action):
    seen = []
    with mock.patch.object(_storage, "_checkpoint", seen.append):
        action()
    return seen


# --------------------------------------------------------------------------- #
# Scenarios: (set up the "before" state, the write, the expected "after")
# --------------------------------------------------------------------------- #


def _scenario(name, root):
    """(path, action(): the write, answers before, answers after, in-memory
    estimator or None)."""
    os.makedirs(root, exist_ok=True)
    old, new = _fit(N_OLD), _fit(N)
    before, after = _answers(old), _answers(new)
    if name == "save-npz-over":
        path = old.save(os.path.join(root, "index.npz"))
        return path, lambda: new.save(path), before, after, None
    if name == "save-dir-over":
        path = old.save(os.path.join(root, "index"))
        return path, lambda: new.save(path), before, after, None
    if name == "save-dir-of-loaded":  # an r+ index saved over its own directory
        path = old.save(os.path.join(root, "index"))
        est = TwoStageRetriever.load(path, mmap_mode="r+")
        est.add(DB[N_OLD:], _labels(Y[N_OLD:]))  # in place, then rewritten by save
        return path, lambda: est.save(path), after, after, None
    path = old.save(os.path.join(root, "index"))
    if name == "add-in-place":  # int labels: every file grows in place
        old, new = _fit(N_OLD, Y_INT), _fit(N, Y_INT)
        before, after = _answers(old), _answers(new)
        path = old.save(os.path.join(root, "index-int"))
        est = TwoStageRetriever.load(path, mmap_mode="r+")
        return path, lambda: est.add(DB[N_OLD:], Y_INT[N_OLD:]), before, after, est
    if name == "add-widening-labels":  # '<U3' -> '<U5': y.npy is rewritten
        est = TwoStageRetriever.load(path, mmap_mode="r+")
        return path, lambda: est.add(DB[N_OLD:], _labels(Y[N_OLD:])), before, after, est
    raise KeyError(name)


SCENARIOS = [
    "save-npz-over",
    "save-dir-over",
    "save-dir-of-loaded",
    "add-in-place",
    "add-widening-labels",
]


def _check_loads_as(path, expected):
    for mode in (None, "r") if os.path.isdir(path) else (None,):
        loaded = TwoStageRetriever.load(path, mmap_mode=mode, verify=True)
        loaded.set_params(backend="numpy")
        assert _same(_answers(loaded), expected)


def _switch_index(steps):
    return next(
        i
        for i, s in enumerate(steps)
        if s == "switch meta.json" or (s.startswith("switch ") and s.endswith(".npz"))
    )


def test_scenarios_reach_the_final_state(tmp_path):
    for name in SCENARIOS:
        path, action, _, after, est = _scenario(name, str(tmp_path / name))
        action()
        _check_loads_as(path, after)
        if est is not None:
            assert _same(_answers(est), after)


@pytest.mark.parametrize("name", SCENARIOS)
def test_a_failed_write_leaves_the_index_as_before_or_after(name, tmp_path):
    steps = _steps(_scenario(name, str(tmp_path / "dry"))[1])
    switch = _switch_index(steps)
    assert len(steps) >= 2
    for i in range(len(steps)):
        root = str(tmp_path / f"step{i}")
        path, action, before, after, est = _scenario(name, root)
        files = _snapshot(path)
        with _fault_at(i):
            if i <= switch:
                with pytest.raises(Fault):
                    action()
            else:  # the switch happened: clean-up failures lose nothing
                action()
        expected = before if i <= switch else after
        _check_loads_as(path, expected)
        if est is not None:  # the estimator in memory agrees with the disk
            assert _same(_answers(est), expected)
            assert est.n_samples_fit_ == (N_OLD if i <= switch else N)
        if i <= switch:
            # put back byte for byte: no stray file, no grown array
            assert _snapshot(path) == files, steps[i]
            action()  # and the write succeeds once the fault is gone
            _check_loads_as(path, after)


def _run_killed(action, i):
    """Run ``action`` in a forked child killed at checkpoint ``i``; True if
    it was killed, False if it finished (fewer steps)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            with _fault_at(i, kill=True):
                action()
        except BaseException:
            code = 3
        os._exit(code)
    deadline = time.monotonic() + 60
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            pytest.fail("the child writer hung")
        time.sleep(0.005)
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL
        return True
    assert os.WEXITSTATUS(status) == 0
    return False


@POSIX
@pytest.mark.parametrize("name", SCENARIOS)
def test_a_writer_killed_at_any_step_leaves_a_loadable_index(name, tmp_path):
    steps = _steps(_scenario(name, str(tmp_path / "dry"))[1])
    switch = _switch_index(steps)
    for i in range(len(steps) + 1):
        path, action, before, after, _ = _scenario(name, str(tmp_path / f"k{i}"))
        killed = _run_killed(action, i)
        assert killed == (i < len(steps))
        _check_loads_as(path, before if killed and i <= switch else after)
        # the next writer recovers: it cuts what the killed one left
        if name.startswith("save"):
            action()
        else:
            est = TwoStageRetriever.load(path, mmap_mode="r+")
            if est.n_samples_fit_ == N_OLD:
                y = Y_INT if name == "add-in-place" else Y
                est.add(DB[N_OLD:], y[N_OLD:])
        _check_loads_as(path, after)


@POSIX
def test_a_writer_killed_at_a_random_moment(tmp_path):
    """SIGKILL from outside, at random times, while adding one item at a time."""
    rng = np.random.RandomState(0)
    for trial in range(4):
        path = _fit(N_OLD, Y_INT).save(str(tmp_path / f"t{trial}"))
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                est = TwoStageRetriever.load(path, mmap_mode="r+")
                for j in range(N_OLD, N):
                    est.add(DB[j : j + 1], Y_INT[j : j + 1])
            finally:
                os._exit(0)
        time.sleep(rng.uniform(0.0, 0.05))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        loaded = TwoStageRetriever.load(path, verify=True)
        n = loaded.n_samples_fit_
        assert N_OLD <= n <= N
        ref = _fit(n, Y_INT)
        for a, b in zip(loaded.kneighbors(DB[:7]), ref.kneighbors(DB[:7])):
            np.testing.assert_array_equal(a, b)
        # it grows on from where it stopped
        est = TwoStageRetriever.load(path, mmap_mode="r+")
        if n < N:
            est.add(DB[n:], Y_INT[n:])
        _check_loads_as(path, _answers(_fit(N, Y_INT)))


# --------------------------------------------------------------------------- #
# Layout and round trips
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("form", ["index.npz", "index"])
@pytest.mark.parametrize("rerank", ["aqd", "aqd-l2", "exact", "hamming-codes"])
def test_round_trip_every_form(tmp_path, form, rerank):
    est = _fit(N, rerank=rerank)
    path = est.save(tmp_path / form)
    modes = (None, "r", "r+", "c") if form == "index" else (None,)
    for mode in modes:
        loaded = TwoStageRetriever.load(path, mmap_mode=mode, verify=True)
        assert _same(_answers(loaded), _answers(est))
        assert loaded.codebooks_fingerprint_ == DB.fingerprint


def test_manifest_records_schema_and_checksums(tmp_path):
    path = _fit(N).save(tmp_path / "index")
    with open(os.path.join(path, "meta.json"), encoding="utf-8") as f:
        meta = json.load(f)
    assert meta["version"] == _schema.FORMAT_VERSION and meta["generation"] == 1
    assert meta["codebooks_fingerprint"] == DB.fingerprint
    assert meta["arrays"]["X.bits"]["shape"] == [N, 2]
    assert meta["arrays"]["X.bits"]["dtype"] == "|u1"
    assert meta["arrays"]["X.codes"]["sha256"][0][0] == N
    assert sorted(os.listdir(path)) == sorted(
        ["meta.json"] + [e["file"] for e in meta["arrays"].values()]
    )


def test_saving_over_an_index_replaces_its_files(tmp_path):
    path = _fit(N_OLD).save(tmp_path / "index")
    _fit(N, Y_INT).save(path)
    with open(os.path.join(path, "meta.json"), encoding="utf-8") as f:
        meta = json.load(f)
    assert meta["generation"] == 2
    assert sorted(os.listdir(path)) == sorted(
        ["meta.json"] + [e["file"] for e in meta["arrays"].values()]
    )
    assert TwoStageRetriever.load(path).n_samples_fit_ == N


def test_saving_into_a_foreign_directory_is_refused(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "meta.json").write_text('{"format": "something else"}')
    with pytest.raises(FileExistsError, match="was not written by TwoStageRetriever"):
        _fit(N).save(folder)
    assert (folder / "meta.json").read_text() == '{"format": "something else"}'


def test_add_on_disk_equals_fit_and_records_checksums(tmp_path):
    path = _fit(N_OLD).save(tmp_path / "index")
    est = TwoStageRetriever.load(path, mmap_mode="r+")
    for lo, hi in [(40, 41), (41, 50), (50, 50), (50, 60)]:
        est.add(DB[lo:hi], _labels(Y[lo:hi]))
        assert est.n_samples_fit_ == hi
        assert _same(_answers(est), _answers(_fit(hi)))
        assert _same(_answers(TwoStageRetriever.load(path, verify=True)), _answers(est))
    assert all(isinstance(a, np.memmap) for a in est._index["X"].values())
    assert est.y_.dtype == np.dtype("<U5")
    np.testing.assert_array_equal(est.y_, Y)


def test_add_on_an_index_changed_on_disk_is_refused(tmp_path):
    path = _fit(N_OLD, Y_INT).save(tmp_path / "index")
    a = TwoStageRetriever.load(path, mmap_mode="r+")
    b = TwoStageRetriever.load(path, mmap_mode="r+")
    a.add(DB[40:50], Y_INT[40:50])
    with pytest.raises(IndexFormatError, match="changed on disk since it was loaded"):
        b.add(DB[50:], Y_INT[50:])
    assert b.n_samples_fit_ == N_OLD
    assert TwoStageRetriever.load(path).n_samples_fit_ == 50


def test_failed_add_leaves_files_byte_identical(tmp_path):
    """A bad add (checked before any write) on r+ changes no byte."""
    path = _fit(N_OLD, Y_INT).save(tmp_path / "index")
    est = TwoStageRetriever.load(path, mmap_mode="r+")
    files = _snapshot(path)
    before = _answers(est)
    bad = [
        (DB[40:], np.full(N - N_OLD, 2.7)),  # float into an int index
        (DB[40:], np.array(["a"] * (N - N_OLD))),  # strings into an int index
        (DB[40:], Y_INT[40:50]),  # too few labels
        (DB[40:].without("codes"), Y_INT[40:]),  # parts differ
    ]
    for X, y in bad:
        with pytest.raises(ValueError):
            est.add(X, y)
        assert _snapshot(path) == files
        assert _same(_answers(est), before)


def test_add_zero_items_is_a_no_op_on_disk(tmp_path):
    path = _fit(N_OLD, Y_INT).save(tmp_path / "index")
    est = TwoStageRetriever.load(path, mmap_mode="r+")
    files = _snapshot(path)
    assert est.add(DB[:0], Y_INT[:0]) is est
    assert _snapshot(path) == files and est.n_samples_fit_ == N_OLD
    with pytest.raises(ValueError, match="modalities"):  # still checked
        est.add(CodeSet.from_modalities(img=DB[:0]), Y_INT[:0])


def test_rows_left_past_the_end_are_ignored_then_cut(tmp_path):
    """What a writer killed after appending leaves behind."""
    path = _fit(N_OLD, Y_INT).save(tmp_path / "index")
    bits = os.path.join(path, "X.bits.npy")
    with open(bits, "ab") as f:
        f.write(b"\xff" * 100)
    loaded = TwoStageRetriever.load(path, mmap_mode="r", verify=True)
    assert _same(_answers(loaded), _answers(_fit(N_OLD, Y_INT)))
    est = TwoStageRetriever.load(path, mmap_mode="r+")
    est.add(DB[N_OLD:], Y_INT[N_OLD:])
    assert np.load(bits).shape == (N, 2)  # the plain .npy is whole again
    _check_loads_as(path, _answers(_fit(N, Y_INT)))


def test_add_rewrites_a_file_whose_header_cannot_grow(tmp_path):
    """When the new shape does not fit the header, the file is copied to a new
    generation beside the old one (which stays until the switch)."""
    path = _fit(N_OLD, Y_INT).save(tmp_path / "index")
    est = TwoStageRetriever.load(path, mmap_mode="r+")
    real = _storage._header_bytes

    def longer(version, shape, dtype):  # pretend the digits need more room
        return real(version, shape, dtype) + (b" " * 64 if shape[0] > N_OLD else b"")

    with mock.patch.object(_storage, "_header_bytes", longer):
        steps = _steps(lambda: est.add(DB[N_OLD:50], Y_INT[N_OLD:50]))
    assert "write X.bits.g2.npy" in steps and "remove X.bits.npy" in steps
    assert "X.bits.npy" not in os.listdir(path)
    est.add(DB[50:], Y_INT[50:])  # and in place again afterwards
    assert _same(_answers(est), _answers(_fit(N, Y_INT)))
    _check_loads_as(path, _answers(_fit(N, Y_INT)))


def test_save_npz_into_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="create it before saving"):
        _fit(N_OLD).save(tmp_path / "nowhere" / "index.npz")
