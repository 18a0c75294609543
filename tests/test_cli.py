import json
import subprocess
import sys

import numpy as np
import pytest

from skhash._cli import load_dataset, main
from skhash.datasets import make_cross_modal


@pytest.fixture(scope="module")
def npz_path(tmp_path_factory):
    X, y = make_cross_modal(160, n_classes=4, n_features=(12, 8), random_state=0)
    path = tmp_path_factory.mktemp("data") / "toy.npz"
    idx = np.arange(160)
    np.savez(
        path,
        X_img=X["img"],
        X_txt=X["txt"],
        y=y,
        train_idx=idx[:120],
        test_idx=idx[120:],
    )
    return path


def test_benchmark_prints_table_and_writes_json(npz_path, tmp_path, capsys):
    out = tmp_path / "res.json"
    status = main(
        [
            "benchmark",
            "--dataset",
            str(npz_path),
            "--bits",
            "8",
            "--epochs",
            "1",
            "--no-progress",
            "--output",
            str(out),
        ]
    )
    assert status == 0
    text = capsys.readouterr().out
    assert "MAP@50 on toy.npz: database 120, queries 40" in text
    for method in ("lossless", "HQ", "DQN", "DJSRH"):
        assert f"\n{method}" in text
    payload = json.loads(out.read_text())
    assert [r["method"] for r in payload["rows"]] == ["lossless", "HQ", "DQN", "DJSRH"]
    for row in payload["rows"]:
        assert 0.0 <= row["img->txt"] <= 1.0 and 0.0 <= row["harmonic"] <= 1.0
        assert row["fit_s"] > 0 and row["queries_per_s"] > 0


def test_benchmark_plot(npz_path, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "curves.png"
    main(
        [
            "benchmark",
            "--dataset",
            str(npz_path),
            "--bits",
            "8",
            "--epochs",
            "1",
            "--methods",
            "HQ",
            "--no-progress",
            "--plot",
            str(png),
            "--quick",
        ]
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_dataset_errors(tmp_path):
    with pytest.raises(SystemExit, match="no such file"):
        load_dataset(str(tmp_path / "missing.npz"))
    bad = tmp_path / "bad.npz"
    np.savez(bad, X_img=np.ones((3, 2)))
    with pytest.raises(SystemExit, match="missing"):
        load_dataset(str(bad))
    with pytest.raises(SystemExit, match="use 'wiki'"):
        load_dataset("cifar")
    assert load_dataset("wiki").X_query["img"].shape == (693, 128)


def test_module_entry_point_help():
    out = subprocess.run(
        [sys.executable, "-m", "skhash", "benchmark", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--dataset" in out.stdout and "--quick" in out.stdout


def test_lossless_reference_trains_to_its_best_validation_epoch(npz_path, monkeypatch):
    """Without --epochs the reference picks its epochs on a held-out fifth of
    the training split (the first epoch of the best validation MAP), then
    refits on everything for that many epochs."""
    import skhash._cli as cli

    monkeypatch.setattr(cli, "LOSSLESS_MAX_EPOCHS", 6)
    data = load_dataset(str(npz_path))
    learner, best = cli._lossless_reference(data, 8, epochs=None, seed=0)
    assert 1 <= best <= 6 and learner.max_epochs == best
    assert learner.train_split is None and not learner.callbacks  # refit on all
    probe = cli._learner("lossless", 8, epochs=6, seed=0)
    from skhash import TwoStageRetriever
    from skhash.callbacks import RetrievalScoring

    probe.set_params(
        train_split=0.2,
        callbacks=[
            RetrievalScoring(retriever=TwoStageRetriever(alpha=1.0, rerank="exact"))
        ],
    ).fit(data.X_train, data.y_train)
    scores = probe.history_[:, "valid_map"]
    assert scores[best - 1] == max(scores) and max(
        scores[: best - 1], default=-1
    ) < max(scores)
    # an explicit epoch count is taken as given
    fixed, chosen = cli._lossless_reference(data, 8, epochs=3, seed=0)
    assert chosen is None and fixed.max_epochs == 3
