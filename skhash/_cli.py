"""The ``skhash`` command line: the papers' MAP@50 table on a dataset."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time
import uuid
from pathlib import Path

import numpy as np

__all__ = ["main", "run_benchmark"]

METHODS = ("lossless", "HQ", "DQN", "DJSRH")
DIRECTIONS = ("img->txt", "txt->img")


class _Data:
    """Training set, indexed database and queries of a benchmark dataset."""

    def __init__(self, name, X_train, y_train, X_db, y_db, X_query, y_query):
        self.name = name
        self.X_train, self.y_train = X_train, y_train
        self.X_db, self.y_db = X_db, y_db
        self.X_query, self.y_query = X_query, y_query


#: the ``LOADER:`` prefixes of ``--dataset``; anything else is a path
LOADERS = ("mirflickr", "nuswide", "npz")


def load_dataset(spec, *, n_query="default", n_train="default"):
    """Read ``--dataset``: a loader name, or a path to a .npz or .mat file.

    ``wiki`` is the shipped Wiki benchmark. ``mirflickr:PATH`` and
    ``nuswide:PATH`` read the .mat files of those datasets (see
    :func:`skhash.datasets.load_mirflickr`); a bare ``.mat`` path or folder is
    read as MIRFlickr-25K. A ``.npz`` (a path ending in ``.npz``, or any path
    after ``npz:``) holds ``X_img``, ``X_txt``, ``y`` (or a multi-label
    ``Y``), ``train_idx`` and ``test_idx`` (the training part is the
    database, the test part the queries), as the shipped ``wiki.npz``. Only
    these prefixes are split off: any other ``:`` belongs to the path.

    ``n_query`` and ``n_train`` (``--n-query``, ``--n-train``) set the split
    of the .mat datasets, as in :func:`skhash.datasets.load_mirflickr`; the
    other datasets come with their split.
    """
    from skhash import MultiModal
    from skhash.datasets import load_mirflickr, load_nuswide, load_wiki

    loader, path = None, spec
    prefix, sep, rest = spec.partition(":")
    if sep and prefix in LOADERS:
        loader, path = prefix, rest
    if not path:
        raise SystemExit(f"--dataset {spec!r}: no path after {loader}:.")
    p = Path(path)
    is_mat = loader in ("mirflickr", "nuswide") or (
        loader is None and spec != "wiki" and (p.suffix == ".mat" or p.is_dir())
    )
    if not is_mat and (n_query != "default" or n_train != "default"):
        raise SystemExit(
            f"--dataset {spec!r}: --n-query and --n-train set the split of the "
            ".mat datasets (mirflickr, nuswide); this one comes with its split "
            "(a .npz: its train_idx and test_idx)."
        )
    if spec == "wiki":
        w = load_wiki()
        return _Data(
            "wiki", w.X_train, w.y_train, w.X_train, w.y_train, w.X_test, w.y_test
        )
    if is_mat:
        load = load_nuswide if loader == "nuswide" else load_mirflickr
        try:
            b = load(p, n_query=n_query, n_train=n_train)
        except (FileNotFoundError, ValueError, ImportError) as exc:
            hint = ""
            if str(exc).startswith(("n_query=", "n_train=")):
                hint = (
                    " On the command line, set the split with --n-query N (the "
                    "number of queries) and --n-train N or --n-train all."
                )
            raise SystemExit(f"--dataset {spec!r}: {exc}{hint}") from exc
        return _Data(
            f"{loader or 'mirflickr'}:{p.name}",
            b.X[b.train_idx],
            b.Y[b.train_idx],
            b.X[b.database_idx],
            b.Y[b.database_idx],
            b.X[b.query_idx],
            b.Y[b.query_idx],
        )
    if loader == "npz" or p.suffix == ".npz":
        if not p.is_file():
            raise SystemExit(f"--dataset: no such file {str(p)!r}.")
        with np.load(p, allow_pickle=False) as f:
            missing = [
                k
                for k in ("X_img", "X_txt", "train_idx", "test_idx")
                if k not in f.files
            ]
            if missing or ("y" not in f.files and "Y" not in f.files):
                raise SystemExit(
                    f"--dataset {p}: the .npz needs X_img, X_txt, y or Y, "
                    f"train_idx and test_idx; missing {missing or ['y/Y']}."
                )
            X = MultiModal(img=f["X_img"], txt=f["X_txt"])
            y = f["y"] if "y" in f.files else f["Y"]
            tr, te = f["train_idx"], f["test_idx"]
        return _Data(p.name, X[tr], y[tr], X[tr], y[tr], X[te], y[te])
    raise SystemExit(
        f"--dataset {spec!r}: use 'wiki', 'mirflickr:PATH', 'nuswide:PATH', "
        "'npz:PATH', or a .npz/.mat path."
    )


def _check_bits(methods, bits):
    """Refuse code lengths the learners cannot honour, before any training."""
    bad = [b for b in bits if isinstance(b, bool) or not isinstance(b, int) or b < 1]
    if bad:
        raise ValueError(f"code lengths must be positive integers; got {bad}.")
    if "DQN" in methods:
        odd = [b for b in bits if b % 8]
        if odd:
            raise ValueError(
                f"DQN codes are whole bytes (n_bits // 8 codebooks of 256 "
                f"codewords), so it cannot train {', '.join(map(str, odd))} bits; "
                "use multiples of 8, or leave DQN out (--methods)."
            )


def _learner(method, n_bits, *, epochs, seed):
    from skhash import DJSRHHasher, DQNQuantizer, HQHasher

    common = {"random_state": seed, "n_jobs": 1}
    if epochs is not None:
        common["max_epochs"] = epochs
    if method == "lossless":
        return HQHasher(n_bits, lambda_h=0.0, lambda_b=0.0, lambda_q=0.0, **common)
    if method == "HQ":
        return HQHasher(n_bits, **common)
    if method == "DQN":
        # n_bits = n_codebooks * log2(256): one byte per codebook
        _check_bits(("DQN",), (n_bits,))
        return DQNQuantizer(n_bits // 8, n_codewords=256, **common)
    if method == "DJSRH":
        return DJSRHHasher(n_bits, **common)
    raise ValueError(f"unknown method {method!r}; choose from {METHODS}.")


#: epochs the lossless reference may train for when it picks its own best
LOSSLESS_MAX_EPOCHS = 60


def _lossless_reference(data, n_bits, *, epochs, seed):
    """The lossless two-tower trained to its own best.

    The number of epochs is chosen by the validation MAP@50 (exact cosine,
    harmonic mean of both directions) on a held-out fifth of the training
    split, recorded every epoch up to ``LOSSLESS_MAX_EPOCHS``; the towers
    are then refitted on the whole training split for that many epochs.
    An explicit ``epochs`` (``--epochs``) skips the choice.
    """
    from skhash.callbacks import RetrievalScoring

    if epochs is not None:
        return _learner("lossless", n_bits, epochs=epochs, seed=seed), None
    probe = _learner("lossless", n_bits, epochs=LOSSLESS_MAX_EPOCHS, seed=seed)
    # scored with the search the table ranks the reference by
    probe.set_params(
        train_split=0.2,
        callbacks=[RetrievalScoring(retriever=_retriever("lossless"))],
    )
    probe.fit(data.X_train, data.y_train)
    scores = probe.history_[:, "valid_map"]
    best = int(np.argmax(scores)) + 1  # the first epoch of the best score
    return _learner("lossless", n_bits, epochs=best, seed=seed), best


def _retriever(method):
    from skhash import TwoStageRetriever

    if method == "lossless":
        return TwoStageRetriever(alpha=1.0, rerank="exact")
    if method == "DQN":
        return TwoStageRetriever(alpha=1.0, rerank="aqd-l2")
    if method == "DJSRH":
        return TwoStageRetriever(alpha=0, rerank="none")
    return TwoStageRetriever(rerank="aqd")  # the default shortlist, alpha="auto"


def _search_description(method):
    return {
        "lossless": "exact cosine on float embeddings",
        "HQ": "Hamming shortlist (alpha='auto'), AQD re-rank",
        "DQN": "AQD (squared L2) over the whole database",
        "DJSRH": "Hamming ranking",
    }[method]


def run_benchmark(
    data,
    *,
    methods,
    bits,
    epochs=None,
    seed=0,
    alphas=None,
    progress=True,
    keep_models=False,
):
    """Fit each method at each bit length and measure MAP@50 both ways.

    Parameters
    ----------
    data : _Data
        The dataset (see :func:`load_dataset`).
    methods : sequence of str
        Among ``"lossless"``, ``"HQ"``, ``"DQN"``, ``"DJSRH"``.
    bits : sequence of int
        Code lengths: positive, and multiples of 8 when DQN is among the
        methods (one byte per DQN codebook).
    epochs : int, default=None
        Override every learner's ``max_epochs``.
    seed : int, default=0
        ``random_state`` of every learner.
    alphas : sequence of float, default=None
        If given, an alpha sweep of HQ at the largest bit length.
    progress : bool, default=True
        Show a progress bar.
    keep_models : bool, default=False
        Return the fitted learners and retrievers too.

    Returns
    -------
    results : dict
        ``rows`` (one dict per method and bit length), and ``alpha_sweep``.
    """
    from tqdm.auto import tqdm

    from skhash.metrics import harmonic_mean

    _check_bits(methods, bits)
    tasks = [(m, b) for b in bits for m in methods]
    rows, models = [], {}
    bar = tqdm(
        total=len(tasks) + (1 if alphas else 0),
        disable=not progress,
        desc="benchmark",
        unit="fit",
        file=sys.stderr,
    )
    for method, n_bits in tasks:
        bar.set_postfix_str(f"{method} {n_bits} bits")
        t0 = time.perf_counter()
        chosen = None
        if method == "lossless":
            learner, chosen = _lossless_reference(
                data, n_bits, epochs=epochs, seed=seed
            )
        else:
            learner = _learner(method, n_bits, epochs=epochs, seed=seed)
        learner.fit(data.X_train, data.y_train)
        fit_s = time.perf_counter() - t0
        db = learner.transform(data.X_db)
        q = learner.transform(data.X_query)
        retriever = _retriever(method).fit(db, data.y_db)
        row = {
            "method": method,
            "bits": n_bits,
            "fit_s": fit_s,
            "search": _search_description(method),
        }
        if chosen is not None:
            row["epochs"] = chosen
            row["search"] += f" ({chosen} epochs, chosen on validation)"
        retriever.kneighbors(q[:1], direction=DIRECTIONS[0])  # warm-up (JIT)
        t0 = time.perf_counter()
        for d in DIRECTIONS:
            row[d] = retriever.score(q, data.y_query, direction=d)
        search_s = time.perf_counter() - t0
        a, b = row["img->txt"], row["txt->img"]
        row["harmonic"] = harmonic_mean(a, b)
        row["queries_per_s"] = 2 * len(q) / search_s
        row["bytes_per_item"] = db["img"].compact_bytes_per_item or 4.0 * n_bits
        rows.append(row)
        if keep_models or method == "HQ":
            models[(method, n_bits)] = (learner, retriever, db, q)
        bar.update()
    sweep = []
    if alphas:
        hq = [k for k in models if k[0] == "HQ"]
        if hq:
            key = max(hq, key=lambda k: k[1])
            learner, _, db, q = models[key]
            bar.set_postfix_str(f"alpha sweep, HQ {key[1]} bits")
            from skhash import TwoStageRetriever

            for alpha in alphas:
                r = TwoStageRetriever(alpha=float(alpha), rerank="aqd").fit(
                    db, data.y_db
                )
                t0 = time.perf_counter()
                scores = [r.score(q, data.y_query, direction=d) for d in DIRECTIONS]
                dt = time.perf_counter() - t0
                a, b = scores
                sweep.append(
                    {
                        "alpha": float(alpha),
                        "bits": key[1],
                        "img->txt": a,
                        "txt->img": b,
                        "harmonic": harmonic_mean(a, b),
                        "queries_per_s": 2 * len(q) / dt,
                    }
                )
        bar.update()
    bar.close()
    out = {"rows": rows, "alpha_sweep": sweep}
    if keep_models:
        out["models"] = models
    return out


def format_table(results, data):
    lines = [
        f"MAP@50 on {data.name}: database {len(data.y_db)}, queries "
        f"{len(data.y_query)} (training {len(data.y_train)})",
        f"{'method':<10}{'bits':>5}{'I->T':>8}{'T->I':>8}{'harmonic':>10}"
        f"{'fit s':>8}{'queries/s':>11}  search",
    ]
    for r in results["rows"]:
        lines.append(
            f"{r['method']:<10}{r['bits']:>5}{r['img->txt']:>8.3f}"
            f"{r['txt->img']:>8.3f}{r['harmonic']:>10.3f}{r['fit_s']:>8.1f}"
            f"{r['queries_per_s']:>11.0f}  {r['search']}"
        )
    if results["alpha_sweep"]:
        s = results["alpha_sweep"]
        lines += [
            "",
            f"HQ alpha sweep at {s[0]['bits']} bits (shortlist = alpha*N)",
            f"{'alpha':>6}{'I->T':>8}{'T->I':>8}{'harmonic':>10}{'queries/s':>11}",
        ]
        for r in s:
            lines.append(
                f"{r['alpha']:>6.2f}{r['img->txt']:>8.3f}{r['txt->img']:>8.3f}"
                f"{r['harmonic']:>10.3f}{r['queries_per_s']:>11.0f}"
            )
    return "\n".join(lines)


def _plot(results, data, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise SystemExit("--plot needs matplotlib: pip install skhash[plot]") from exc
    from skhash.plotting import PrecisionAtTopRDisplay, PrecisionRecallDisplay

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    r_values = np.arange(10, min(1000, len(data.y_db)) + 1, 10)
    for (method, n_bits), (_, retriever, _, q) in sorted(results["models"].items()):
        label = f"{method} {n_bits} bits"
        if q["img"].bits is not None:
            PrecisionRecallDisplay.from_estimator(
                retriever,
                q,
                data.y_query,
                direction="img->txt",
                name=label,
                ax=axes[0],
            )
        PrecisionAtTopRDisplay.from_estimator(
            retriever,
            q,
            data.y_query,
            r_values=r_values,
            direction="img->txt",
            name=label,
            ax=axes[1],
        )
    axes[0].set_title("Precision-recall over Hamming radius (img->txt)")
    axes[1].set_title("Precision@top-R (img->txt)")
    sweep = results["alpha_sweep"]
    if sweep:
        axes[2].plot(
            [s["alpha"] for s in sweep], [s["harmonic"] for s in sweep], marker="o"
        )
        axes[2].set(
            title=f"HQ {sweep[0]['bits']} bits: MAP@50 vs alpha",
            xlabel="alpha (shortlist / database)",
            ylabel="harmonic MAP@50",
        )
    for ax in axes[:2]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _write_atomic(path, text):
    """Write ``text`` to ``path`` through a temporary file and a rename.

    An error or an interrupt never leaves a half-written file, and an
    existing file survives a failed write.
    """
    path = Path(path)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
    # created like open(path, "w") would (0o666 less the umask)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _int_arg(low, what, high=None):
    """An argparse ``type``: an integer in ``[low, high]``, else a usage error."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {what}; got {text!r}")
        return value

    return parse


def _n_train_arg(text):
    if text == "all":
        return text
    return _int_arg(1, "a positive integer or 'all'")(text)


def _check_out_path(parser, option, path):
    parent = path.parent
    if not parent.is_dir():
        parser.error(
            f"argument {option}: the folder {str(parent)!r} of {str(path)!r} does "
            "not exist; create it first or pick another path."
        )
    if path.is_dir():
        parser.error(f"argument {option}: {str(path)!r} is a folder; give a file name.")


def main(argv=None):
    """Entry point of ``python -m skhash`` and the ``skhash`` script.

    Parameters
    ----------
    argv : list of str, default=None
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    status : int
        Exit status.
    """
    parser = argparse.ArgumentParser(
        prog="skhash", description="skhash: deep cross-modal hashing and quantization"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser(
        "benchmark",
        help="train HQ, DQN, DJSRH and the lossless reference; print MAP@50",
        description="Train HQ, DQN, DJSRH and the lossless reference on a dataset "
        "(default: the shipped Wiki data) and print the papers' MAP@50 table "
        "(image->text, text->image, harmonic mean), fit times and search speed.",
    )
    b.add_argument(
        "--dataset",
        default="wiki",
        help="'wiki', 'mirflickr:PATH', 'nuswide:PATH', 'npz:PATH' or a .npz/.mat path",
    )
    b.add_argument(
        "--n-query",
        type=_int_arg(1, "a positive integer"),
        default=None,
        metavar="N",
        help="queries of a .mat dataset (default: the loader's, 2000 for "
        "MIRFlickr-25K, 2100 for NUS-WIDE)",
    )
    b.add_argument(
        "--n-train",
        type=_n_train_arg,
        default=None,
        metavar="N",
        help="training items of a .mat dataset, taken from the database, or "
        "'all' (default: the loader's, 10000 for MIRFlickr-25K, 10500 for "
        "NUS-WIDE)",
    )
    b.add_argument(
        "--bits",
        type=_int_arg(1, "a positive integer"),
        nargs="+",
        default=None,
        help="code lengths (default 16 32 64 128; --quick: 32); multiples of 8 "
        "with DQN",
    )
    b.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    b.add_argument(
        "--epochs",
        type=_int_arg(1, "a positive integer"),
        default=None,
        help="override every learner's max_epochs (--quick: 5)",
    )
    b.add_argument(
        "--seed",
        type=_int_arg(0, "an integer in [0, 2**32 - 1]", high=2**32 - 1),
        default=0,
    )
    b.add_argument(
        "--quick",
        action="store_true",
        help="32 bits, 5 epochs: a smoke run in well under a minute",
    )
    b.add_argument("--output", type=Path, help="write the results as JSON here")
    b.add_argument(
        "--plot",
        type=Path,
        help="write PNG curves (precision-recall, precision@top-R, MAP vs alpha) here",
    )
    b.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    # everything that can be checked before (possibly hours of) training
    bits = args.bits or ([32] if args.quick else [16, 32, 64, 128])
    try:
        _check_bits(args.methods, bits)
    except ValueError as exc:
        b.error(f"argument --bits: {exc}")
    for option, path in (("--output", args.output), ("--plot", args.plot)):
        if path is not None:
            _check_out_path(b, option, path)
    if args.plot is not None and importlib.util.find_spec("matplotlib") is None:
        b.error("argument --plot: needs matplotlib: pip install skhash[plot]")
    epochs = args.epochs if args.epochs is not None else (5 if args.quick else None)
    alphas = (
        (0.0, 0.05, 1.0) if args.quick else (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
    )
    t0 = time.perf_counter()
    data = load_dataset(
        args.dataset,
        n_query="default" if args.n_query is None else args.n_query,
        n_train={None: "default", "all": None}.get(args.n_train, args.n_train),
    )
    results = run_benchmark(
        data,
        methods=args.methods,
        bits=bits,
        epochs=epochs,
        seed=args.seed,
        alphas=alphas,
        progress=not args.no_progress,
        keep_models=args.plot is not None,
    )
    print(format_table(results, data))
    total = time.perf_counter() - t0
    print(
        f"\ntotal {total:.0f} s; learners' defaults, random_state={args.seed}, "
        f"epochs={'default' if epochs is None else epochs}, 1 torch thread"
    )
    # the results first: a failing plot must not lose them
    if args.output:
        import skhash

        payload = {k: v for k, v in results.items() if k != "models"}
        payload.update(
            dataset=data.name,
            bits=bits,
            epochs=epochs,
            seed=args.seed,
            total_s=total,
            skhash=skhash.__version__,
            python=platform.python_version(),
            machine=platform.machine(),
        )
        _write_atomic(args.output, json.dumps(payload, indent=2))
        print(f"results written to {args.output}")
    if args.plot:
        _plot(results, data, args.plot)
        print(f"curves written to {args.plot}")
    return 0
