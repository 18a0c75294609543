"""Data-parallel training through skorch's Accelerate integration, on the CPU
with two processes started by torchrun (gloo): GPU runs use the same path."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("accelerate", reason="the accelerate extra is not installed")

HERE = os.path.dirname(os.path.abspath(__file__))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module", params=["HQHasher", "DQNQuantizer"])
def two_ranks(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(
            [os.path.dirname(os.path.dirname(HERE)), os.environ.get("PYTHONPATH", "")]
        ),
    }
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        os.path.join(HERE, "ddp_worker.py"),
        request.param,
        str(out),
    ]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    ranks = []
    for r in (0, 1):
        with open(out / f"rank{r}.json") as f:
            info = json.load(f)
        ranks.append((info, np.load(out / f"rank{r}.npz")))
    return ranks


def test_both_processes_train_one_model(two_ranks):
    (info0, arr0), (info1, arr1) = two_ranks
    assert info0["world"] == info1["world"] == 2
    # gradients are averaged across the processes: the weights stay equal
    np.testing.assert_allclose(arr0["weights"], arr1["weights"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(arr0["embedding"], arr1["embedding"], atol=1e-5)
    assert np.isfinite(info0["loss"])


def test_the_batches_are_split_between_the_processes(two_ranks):
    (info0, _), _ = two_ranks
    # 256 items, batch 32: 8 batches an epoch on one process, 4 on each of two
    assert info0["batches"] == [4, 4, 4]


def test_the_codes_learn_the_classes(two_ranks):
    (_, arr), _ = two_ranks
    emb, y = arr["embedding"], arr["y"]
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sim = emb @ emb.T
    np.fill_diagonal(sim, -np.inf)
    top = np.argsort(-sim, axis=1)[:, :10]
    precision = (y[top] == y[:, None]).mean()
    assert precision > 0.6  # chance is about 0.25


def test_accelerator_is_checked_and_not_saved():
    import pickle

    from accelerate import Accelerator

    from skhash import HQHasher, MultiModal

    rng = np.random.RandomState(0)
    X = MultiModal(img=rng.randn(40, 4), txt=rng.randn(40, 3))
    y = rng.randint(2, size=40)
    small = dict(n_bits=8, n_codebooks=2, n_codewords=4, max_epochs=1)
    with pytest.raises(ValueError, match="must be an accelerate.Accelerator"):
        HQHasher(accelerator="gpu", **small).fit(X, y)
    with pytest.raises(ValueError, match="leave device='auto'"):
        HQHasher(accelerator=Accelerator(cpu=True), device="cpu", **small).fit(X, y)
    est = HQHasher(accelerator=Accelerator(cpu=True), random_state=0, **small)
    est.fit(X, y)  # one process: plain training through accelerate
    loaded = pickle.loads(pickle.dumps(est))
    assert loaded.accelerator is None
    np.testing.assert_array_equal(
        loaded.transform(X)["img"].bits, est.transform(X)["img"].bits
    )
