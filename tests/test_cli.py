import json
import re
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
    main(_toy_args(npz_path, "--plot", str(png), "--quick"))
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


def _toy_args(npz_path, *extra):
    return [
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
        *extra,
    ]


def test_output_is_written_atomically(npz_path, tmp_path, monkeypatch):
    """A write that fails half-way (disk full, interrupt) leaves the previous
    file as it was, and no half-written JSON or temporary file behind."""
    import skhash._cli as cli

    out = tmp_path / "res.json"
    out.write_text('{"previous": "good results"}')
    dumps = json.dumps
    # an unencodable character fails the write after its start
    monkeypatch.setattr(cli.json, "dumps", lambda *a, **k: dumps(*a, **k) + "\ud800")
    with pytest.raises(UnicodeEncodeError):
        main(_toy_args(npz_path, "--output", str(out)))
    assert json.loads(out.read_text()) == {"previous": "good results"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res.json"]
    monkeypatch.setattr(cli.json, "dumps", dumps)
    assert main(_toy_args(npz_path, "--output", str(out))) == 0
    assert [r["method"] for r in json.loads(out.read_text())["rows"]] == ["HQ"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res.json"]


class _Loaded(Exception):
    """Raised by a stand-in loader: the arguments passed validation."""


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--bits", "8", "0"], r"argument --bits: must be a positive integer; got '0'"),
        (["--bits", "-8"], r"argument --bits: must be a positive integer"),
        (["--bits", "12"], r"argument --bits: DQN .*cannot train 12 bits.*multiples"),
        (["--methods", "DQN", "--bits", "4"], r"--bits: DQN .*cannot train 4 bits"),
        (["--epochs", "0"], r"argument --epochs: must be a positive integer"),
        (
            ["--seed", "-1"],
            r"argument --seed: must be an integer in \[0, 2\*\*32 - 1\]",
        ),
        (["--seed", str(2**32)], r"argument --seed: must be an integer in"),
        (["--n-query", "0"], r"argument --n-query: must be a positive integer"),
        (["--n-train", "some"], r"argument --n-train: .* or 'all'"),
        (
            ["--output", "{tmp}/nodir/res.json"],
            r"argument --output: the folder .*nodir",
        ),
        (["--output", "{tmp}"], r"argument --output: .* is a folder"),
        (["--plot", "{tmp}/nodir/curves.png"], r"argument --plot: the folder .*nodir"),
    ],
)
def test_bad_arguments_fail_before_loading_or_training(
    tmp_path, monkeypatch, capsys, extra, match
):
    import skhash._cli as cli

    def loader(*args, **kwargs):
        raise _Loaded

    monkeypatch.setattr(cli, "load_dataset", loader)
    extra = [e.replace("{tmp}", str(tmp_path)) for e in extra]
    with pytest.raises(SystemExit) as info:
        main(["benchmark", "--no-progress", *extra])
    assert info.value.code == 2  # a usage error
    err = capsys.readouterr().err
    assert "usage: skhash benchmark" in err
    assert re.search(match, err), err


@pytest.mark.parametrize(
    "extra",
    [
        ["--bits", "12", "--methods", "HQ", "DJSRH"],  # no DQN: any length
        ["--bits", "8", "24", "--epochs", "1", "--seed", str(2**32 - 1)],
        ["--output", "{tmp}/res.json", "--plot", "{tmp}/curves.png"],
    ],
)
def test_valid_arguments_still_pass(tmp_path, monkeypatch, extra):
    import skhash._cli as cli

    def loader(*args, **kwargs):
        raise _Loaded

    monkeypatch.setattr(cli, "load_dataset", loader)
    if "--plot" in extra:
        pytest.importorskip("matplotlib")
    extra = [e.replace("{tmp}", str(tmp_path)) for e in extra]
    with pytest.raises(_Loaded):
        main(["benchmark", "--no-progress", *extra])


def test_run_benchmark_refuses_dqn_lengths_it_cannot_train(npz_path):
    import skhash._cli as cli

    data = load_dataset(str(npz_path))
    with pytest.raises(ValueError, match="DQN codes are whole bytes"):
        cli.run_benchmark(data, methods=["HQ", "DQN"], bits=[12], epochs=1)
    with pytest.raises(ValueError, match="whole bytes"):
        cli._learner("DQN", 4, epochs=1, seed=0)
    res = cli.run_benchmark(data, methods=["DQN"], bits=[16], epochs=1, progress=False)
    (row,) = res["rows"]
    assert row["bits"] == 16 and row["bytes_per_item"] == 2.0  # what it reports


def test_results_are_written_before_the_plot(npz_path, tmp_path, monkeypatch):
    import skhash._cli as cli

    def failing_plot(*args, **kwargs):
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(cli, "_plot", failing_plot)
    out = tmp_path / "res.json"
    args = _toy_args(npz_path, "--output", str(out), "--plot", str(tmp_path / "c.png"))
    with pytest.raises(RuntimeError, match="plotting failed"):
        main(args)
    assert [r["method"] for r in json.loads(out.read_text())["rows"]] == ["HQ"]


def test_dataset_paths_with_colons(npz_path, tmp_path):
    folder = tmp_path / "run:1"
    folder.mkdir()
    path = folder / "toy.npz"
    path.write_bytes(npz_path.read_bytes())
    for spec in (str(path), f"npz:{path}"):
        data = load_dataset(spec)
        assert data.name == "toy.npz" and len(data.y_query) == 40
    # an explicit npz: reads any file name as a .npz
    other = tmp_path / "toy.data"
    other.write_bytes(npz_path.read_bytes())
    assert len(load_dataset(f"npz:{other}").y_db) == 120
    with pytest.raises(SystemExit, match="no such file"):
        load_dataset(f"npz:{tmp_path}/a:b/missing.npz")
    with pytest.raises(SystemExit, match="use 'wiki'"):
        load_dataset("cifar:toy")


@pytest.fixture
def small_mat(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    rng = np.random.RandomState(0)
    n = 60
    labels = np.eye(3, dtype=np.uint8)[rng.randint(3, size=n)]
    path = tmp_path / "FLICKR-25K.mat"
    scipy_io.savemat(
        path,
        {
            "LAll": labels,
            "YAll": (rng.rand(n, 12) < 0.3).astype(float),
            "XAll": rng.rand(n, 8),
        },
    )
    return path


def test_mat_dataset_errors_are_clean(small_mat, tmp_path, npz_path):
    for spec in ("mirflickr:/nowhere", "nuswide:/nowhere", str(tmp_path / "no.mat")):
        with pytest.raises(SystemExit, match=r"nowhere|no\.mat") as info:
            load_dataset(spec)
        assert "does not exist" in str(info.value.code)
    (tmp_path / "empty.mat").write_bytes(b"")
    with pytest.raises(SystemExit, match="empty.mat is not a readable MATLAB"):
        load_dataset(f"mirflickr:{tmp_path / 'empty.mat'}")
    # too few items for the default split: the message names the CLI options
    with pytest.raises(SystemExit, match=r"n_query=2000 leaves no database.*--n-query"):
        load_dataset(str(small_mat))
    with pytest.raises(SystemExit, match=r"n_train=10000 exceeds.*--n-train"):
        load_dataset(str(small_mat), n_query=10)
    data = load_dataset(f"mirflickr:{small_mat}", n_query=10, n_train=None)
    assert (len(data.y_query), len(data.y_db), len(data.y_train)) == (10, 50, 50)
    with pytest.raises(SystemExit, match="--n-query and --n-train set the split"):
        load_dataset(str(npz_path), n_query=10)


def test_n_query_and_n_train_options(small_mat, capsys):
    args = ["benchmark", "--dataset", str(small_mat), "--bits", "8", "--epochs", "1"]
    args += ["--methods", "HQ", "--no-progress", "--n-query", "10", "--n-train"]
    assert main([*args, "20"]) == 0
    out = capsys.readouterr().out
    assert "database 50, queries 10 (training 20)" in out
    assert main([*args, "all"]) == 0
    assert "database 50, queries 10 (training 50)" in capsys.readouterr().out
