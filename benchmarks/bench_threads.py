"""Fit time of the README's HQHasher job under thread settings, quiet and loaded.

Each setting runs in a fresh process (thread pools are process-wide and the
OpenMP/BLAS environment is read at import), fitting ``HQHasher(n_bits=64)`` on
Wiki's training set for ``--epochs`` epochs; the settings take turns (round
robin) and the fastest of ``--repeats`` runs is kept, so that a burst of
outside load does not land on one setting only. The "loaded" condition starts one
busy-looping process per core for the duration of the runs. Times are
reported as ratios to the fastest explicit setting of the same condition,
measured in the same run.

Usage::

    python benchmarks/bench_threads.py [--epochs 1] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time

# name -> (environment variables, Python run in the child before the fit,
# the learner's n_jobs)
SETTINGS = {
    "default (the learner's n_jobs)": ({}, "", "DEFAULT"),
    "n_jobs=None (torch's own threads)": ({}, "", "KEEP"),
    "n_jobs=1": ({}, "", 1),
    "n_jobs=2": ({}, "", 2),
    "torch 1 thread, BLAS/OpenMP untouched": (
        {},
        "import torch; torch.set_num_threads(1)",
        "KEEP",
    ),
    "OMP/BLAS env = 1, torch default": (
        {
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        },
        "",
        "KEEP",
    ),
}

CHILD = r"""
import sys, time, json
{prelude}
from skhash import HQHasher
from skhash.datasets import load_wiki
wiki = load_wiki()
setting = {n_jobs!r}
if setting == "DEFAULT":
    kw = {{}}
elif setting == "KEEP":
    kw = {{"n_jobs": None}}
else:
    kw = {{"n_jobs": setting}}
est = HQHasher(n_bits=64, random_state=0, max_epochs={epochs}, device="cpu", **kw)
X, y = wiki.X_train, wiki.y_train
t = time.perf_counter()
est.fit(X, y)
print(json.dumps({{"seconds": time.perf_counter() - t}}))
"""


def _busy(stop):
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def run_setting(name, epochs):
    env_extra, prelude, n_jobs = SETTINGS[name]
    env = {**os.environ, **env_extra}
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        if var not in env_extra:
            env.pop(var, None)
    code = CHILD.format(prelude=prelude, n_jobs=n_jobs, epochs=epochs)
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


def measure(condition, epochs, repeats):
    stop, workers = mp.Event(), []
    if condition == "loaded":
        workers = [
            mp.Process(target=_busy, args=(stop,)) for _ in range(os.cpu_count() or 1)
        ]
        for w in workers:
            w.start()
    try:
        # round robin, so that a burst of outside load hits every setting
        times = {name: [] for name in SETTINGS}
        for _ in range(repeats):
            for name in SETTINGS:
                times[name].append(run_setting(name, epochs))
                print(f"  [{condition}] {name}: {times[name][-1]:.2f} s", flush=True)
        return {name: min(ts) for name, ts in times.items()}
    finally:
        stop.set()
        for w in workers:
            w.join()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--conditions", default="quiet,loaded")
    args = parser.parse_args(argv)
    print(f"cores: {os.cpu_count()}, epochs: {args.epochs}, repeats: {args.repeats}")
    started = time.time()
    for condition in args.conditions.split(","):
        times = measure(condition, args.epochs, args.repeats)
        explicit = {k: v for k, v in times.items() if not k.startswith("default")}
        best = min(explicit.values())
        print(f"\n{condition}: seconds, ratio to the best explicit setting")
        for name, seconds in times.items():
            print(f"  {name:40s} {seconds:7.2f} s  {seconds / best:5.2f}x")
    print(f"\nwall time {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
