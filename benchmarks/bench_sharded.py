"""Sharded search on a dask LocalCluster, and an out-of-core build on disk.

Two parts, each in the same run so that ratios are comparable on a shared
machine:

1. ``N = --check-n`` (default 10^6) items of 64-bit codes held in memory:
   a single ``TwoStageRetriever`` is the reference; a ``ShardedRetriever``
   of 2 shards on a LocalCluster of 1 and then 2 worker processes (one
   thread each) must return exactly its ``kneighbors`` (indices and
   distances) and ``score``, before and after ``save`` + ``load`` on the
   cluster; then queries/s (``--queries`` per call, 1,000) with 1 and 2
   workers, their ratio, the per-shard rate (a ``TwoStageRetriever`` on one
   shard's items, in this process), the bytes per query each shard returns
   and the merge time per query.
2. ``--n-items`` (default 10^8) items built on disk by
   ``build_sharded_index`` from an iterator of batches, in a child process
   whose peak RSS (``resource.getrusage``) is reported, with the build time
   and the bytes on disk; then the index is loaded on a LocalCluster of 1
   and 2 workers and searched (queries/s with ``--disk-queries`` per call,
   100; identical results with 1 and 2 workers, the workers' peak RSS, which
   counts the memory-mapped shard pages they touched).

The codes are **synthetic**: uniform random packed bits (8 bytes) and
product-quantization codes (M = 8 codebooks of K = 256 codewords, 8 bytes)
per item, with random block-diagonal codebooks of d = 64; queries are random
float embeddings with random bits. Uniform codes are the hardest case for
the Hamming shortlist (no cluster structure, so no early exits) and cost
the same per item as real ones. Search: ``alpha = 100`` (L = 100),
``k = 50``, ``rerank="aqd"``.

Run: ``python benchmarks/bench_sharded.py`` (about 5 minutes here), or
smaller with ``--n-items 1e7``. Files go under ``--out`` (default
``/tmp/skhash_bench_sharded``, removed at the end unless ``--keep``); check
the free disk first (``df -h /tmp``): 16 bytes per item. Needs dask and
distributed (``pip install skhash[distributed]``).
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time

import numpy as np

M, K, D, N_BYTES = 8, 256, 64, 8
ALPHA, TOP_K = 100, 50


def codebooks(seed=0):
    rng = np.random.default_rng(seed)
    C = np.zeros((M, K, D), np.float32)
    w = D // M
    for m in range(M):
        C[m, :, m * w : (m + 1) * w] = rng.standard_normal((K, w))
    return C


def batches(n, chunk, seed, with_labels):
    """Synthetic (CodeSet, y) batches of ``chunk`` items, ``n`` in all."""
    from skhash import CodeSet

    C = codebooks()
    rng = np.random.default_rng(seed)
    for start in range(0, n, chunk):
        c = min(chunk, n - start)
        cs = CodeSet(
            bits=rng.integers(0, 256, (c, N_BYTES), dtype=np.uint8),
            codes=rng.integers(0, K, (c, M), dtype=np.uint8),
            codebooks=C,
            codebook_kind="product",
        )
        yield cs, (rng.integers(0, 10, c) if with_labels else None)


def queries(n_q, seed=1):
    from skhash import CodeSet

    rng = np.random.default_rng(seed)
    return CodeSet(
        embedding=rng.standard_normal((n_q, D)).astype(np.float32),
        bits=rng.integers(0, 256, (n_q, N_BYTES), dtype=np.uint8),
    ), rng.integers(0, 10, n_q)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cluster(n_workers):
    import logging

    from distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.ERROR)
    lc = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        silence_logs=50,
    )
    return lc, Client(lc)


def worker_peak_rss_mb(client):
    def peak():
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    return sorted(client.run(peak).values())


def exhaustive(est):
    """Search by the plain stage-1 scan, the per-shard figure of the cost
    model (``stage1="auto"`` may pick multi-index hashing, whose tables cost
    memory and, for a loaded index, a build at the first search)."""
    return est.set_params(stage1="exhaustive")


def same(a, b):
    return np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


# ---------------------------------------------------------------------- #
def worker_cpu(client):
    """A callable: the CPU seconds all workers of ``client`` have used."""
    return lambda: sum(client.run(time.process_time).values())


def interleaved(fns, n_q, rounds, cpu=None):
    """Best and median queries/s of each ``fns[name]()``, the calls of the
    configurations alternating, so that they see the same machine load; and,
    for the names in ``cpu``, the workers' CPU ms per query (a figure the
    load of the machine does not inflate)."""
    cpu = cpu or {}
    for fn in fns.values():
        fn()  # warm-up
    times = {name: [] for name in fns}
    cpu_s = dict.fromkeys(cpu, 0.0)
    for _ in range(rounds):
        for name, fn in fns.items():
            before = cpu[name]() if name in cpu else 0.0
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
            if name in cpu:
                cpu_s[name] += cpu[name]() - before
    out = {
        name: dict(best=n_q / min(ts), median=n_q / float(np.median(ts)))
        for name, ts in times.items()
    }
    for name, seconds in cpu_s.items():
        out[name]["worker_cpu_ms_per_query"] = 1e3 * seconds / (rounds * n_q)
    return out


def part_memory(args, out):
    from skhash.retrieval import ShardedRetriever, TwoStageRetriever, _sharded

    n, n_q = int(args.check_n), args.queries
    (db, y) = next(batches(n, n, seed=2, with_labels=True))
    Q, yq = queries(n_q)
    params = dict(alpha=ALPHA, n_neighbors=TOP_K)
    single = exhaustive(TwoStageRetriever(**params).fit(db, y))
    ref = single.kneighbors(Q)
    ref_score = single.score(Q, yq)
    half = exhaustive(TwoStageRetriever(**params).fit(db[: n // 2], y[: n // 2]))

    merge_s = [0.0, 0]
    original = _sharded.ShardedRetriever._merge

    def timed_merge(self, *a, **kw):
        t = time.perf_counter()
        try:
            return original(self, *a, **kw)
        finally:
            merge_s[0] += time.perf_counter() - t
            merge_s[1] += 1

    _sharded.ShardedRetriever._merge = timed_merge
    clusters, rows, fns = {}, {}, {}
    try:
        for w in (1, 2):
            clusters[w] = cluster(w)
            client = clusters[w][1]
            est = ShardedRetriever(**params, n_shards=2, client=client).fit(db, y)
            exhaustive(est)
            exact = same(est.kneighbors(Q), ref) and est.score(Q, yq) == ref_score
            path = est.save(os.path.join(out, f"mem-{w}"))
            loaded = exhaustive(ShardedRetriever.load(path, client=client))
            reload_exact = (
                same(loaded.kneighbors(Q), ref) and loaded.score(Q, yq) == ref_score
            )
            rows[w] = dict(exact=exact, reload_exact=reload_exact)
            fns[f"{w} worker(s)"] = lambda est=est: est.kneighbors(Q)
        fns["single index"] = lambda: single.kneighbors(Q)
        fns["one shard"] = lambda: half.kneighbors(Q)
        merge_s[:] = [0.0, 0]
        cpu = {f"{w} worker(s)": worker_cpu(clusters[w][1]) for w in (1, 2)}
        rates = interleaved(fns, n_q, args.rounds, cpu)
        merge_ms = 1e3 * merge_s[0] / max(merge_s[1], 1) / n_q
        for w in (1, 2):
            rows[w].update(
                rates[f"{w} worker(s)"],
                worker_rss_mb=worker_peak_rss_mb(clusters[w][1]),
            )
    finally:
        _sharded.ShardedRetriever._merge = original
        for lc, client in clusters.values():
            client.close()
            lc.close()
    shard_bytes = 16 * max(ALPHA, TOP_K) + 24 * ALPHA
    print(
        f"[N={n:.0e}] q/s, best (median) of {args.rounds} interleaved calls of "
        f"{n_q} queries:"
    )
    for name in ("single index", "one shard"):
        r = rates[name]
        print(
            f"  {name:>14}: {r['best']:.0f} ({r['median']:.0f}) "
            "(TwoStageRetriever in this process, one thread)"
        )
    for w, r in rows.items():
        print(
            f"  {w} worker(s), 2 shards: {r['best']:.0f} ({r['median']:.0f}); "
            f"worker CPU {r['worker_cpu_ms_per_query']:.3f} ms/query; "
            f"exact={r['exact']} reload_exact={r['reload_exact']}; "
            f"worker peak RSS {r['worker_rss_mb']} MB"
        )
    ratio = rows[2]["best"] / rows[1]["best"]
    ratio_med = rows[2]["median"] / rows[1]["median"]
    print(
        f"[N={n:.0e}] 2 workers / 1 worker = {ratio:.2f}x best, {ratio_med:.2f}x "
        f"median; merge {merge_ms:.4f} ms/query; each shard returns "
        f"{shard_bytes} B per query"
    )
    return dict(
        n=n,
        rates=rates,
        merge_ms_per_query=merge_ms,
        shard_bytes_per_query=shard_bytes,
        workers={str(w): r for w, r in rows.items()},
        ratio_best=ratio,
        ratio_median=ratio_med,
    )


def build_child(args, path):
    """The out-of-core build, run in a child process (its peak RSS alone)."""
    from skhash.retrieval import TwoStageRetriever, build_sharded_index

    n = int(args.n_items)
    t = time.perf_counter()
    build_sharded_index(
        (b for b, _ in batches(n, int(args.chunk_size), seed=3, with_labels=False)),
        path,
        shard_size=int(args.shard_size),
        retriever=TwoStageRetriever(alpha=ALPHA, n_neighbors=TOP_K),
        progress=not args.no_progress,
    )
    seconds = time.perf_counter() - t
    disk = sum(
        os.path.getsize(os.path.join(d, f))
        for d, _, files in os.walk(path)
        for f in files
    )
    print(json.dumps(dict(seconds=seconds, peak_rss_mb=peak_rss_mb(), disk=disk)))


def part_disk(args, out):
    from skhash.retrieval import ShardedRetriever

    n, n_q = int(args.n_items), args.disk_queries
    path = os.path.join(out, "disk")
    cmd = [sys.executable, __file__, "--stage", "build", "--out", path]
    for a in ("n_items", "shard_size", "chunk_size"):
        cmd += [f"--{a.replace('_', '-')}", str(getattr(args, a))]
    if args.no_progress:
        cmd.append("--no-progress")
    record = os.path.join(out, "build.json")
    if args.reuse and os.path.isfile(record):
        with open(record) as f:
            build = json.load(f)
        print(f"[N={n:.0e}] reusing the build in {path}")
    else:
        done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
        build = json.loads(done.stdout.strip().splitlines()[-1])
        with open(record, "w") as f:
            json.dump(build, f)
    print(
        f"[N={n:.0e}] build: {build['seconds']:.0f}s, peak RSS "
        f"{build['peak_rss_mb']:.0f} MB, {build['disk'] / 1e9:.2f} GB on disk "
        f"({build['disk'] / n:.1f} B/item)"
    )
    Q, _ = queries(n_q, seed=4)
    clusters, results, fns, loads = {}, {}, {}, {}
    try:
        for w in (1, 2):
            clusters[w] = cluster(w)
            t = time.perf_counter()
            est = exhaustive(ShardedRetriever.load(path, client=clusters[w][1]))
            loads[w] = time.perf_counter() - t
            results[w] = est.kneighbors(Q)
            fns[w] = lambda est=est: est.kneighbors(Q)
        cpu = {w: worker_cpu(clusters[w][1]) for w in (1, 2)}
        rates = interleaved(fns, n_q, args.disk_rounds, cpu)
        rss = {w: worker_peak_rss_mb(clusters[w][1]) for w in (1, 2)}
    finally:
        for lc, client in clusters.values():
            client.close()
            lc.close()
    for w in (1, 2):
        print(
            f"[N={n:.0e}] {w} worker(s), {est.n_shards_} shards: "
            f"{rates[w]['best']:.1f} ({rates[w]['median']:.1f}) q/s best (median) "
            f"of {args.disk_rounds} calls of {n_q}; worker CPU "
            f"{rates[w]['worker_cpu_ms_per_query']:.2f} ms/query; load "
            f"{loads[w]:.1f}s; worker "
            f"peak RSS {rss[w]} MB"
        )
    agree = same(results[1], results[2])
    ratio = rates[2]["best"] / rates[1]["best"]
    print(
        f"[N={n:.0e}] 2 workers / 1 worker = {ratio:.2f}x best, "
        f"{rates[2]['median'] / rates[1]['median']:.2f}x median; "
        f"1- and 2-worker results identical: {agree}"
    )
    return dict(
        n=n,
        build=build,
        rates={str(w): r for w, r in rates.items()},
        load_s=loads,
        worker_rss_mb=rss,
        agree=agree,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-items", type=float, default=1e8)
    parser.add_argument("--shard-size", type=float, default=1e7)
    parser.add_argument("--chunk-size", type=float, default=1e6)
    parser.add_argument("--check-n", type=float, default=1e6)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--disk-queries", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--disk-rounds", type=int, default=3)
    parser.add_argument("--out", default="/tmp/skhash_bench_sharded")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument(
        "--reuse", action="store_true", help="search the build --keep left in --out"
    )
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-disk", action="store_true")
    parser.add_argument("--stage", choices=["all", "build"], default="all")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    if args.stage == "build":
        build_child(args, args.out)
        return
    os.makedirs(args.out, exist_ok=True)
    free = shutil.disk_usage(args.out).free
    need = 16 * (args.n_items + 2 * 2 * args.check_n) * 1.1
    if free < need:
        sys.exit(
            f"{args.out} has {free / 1e9:.1f} GB free; this run needs "
            f"{need / 1e9:.1f} GB. Pass a smaller --n-items."
        )
    figures = {}
    try:
        if not args.skip_memory:
            figures["memory"] = part_memory(args, args.out)
        if not args.skip_disk:
            figures["disk"] = part_disk(args, args.out)
    finally:
        if not args.keep:
            shutil.rmtree(args.out, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)


if __name__ == "__main__":
    main()
