"""The encoders and a learner on a CUDA device, against the CPU kernels.

Needs a CUDA device (exits with a message without one); faiss is not needed.

1. **Encoders** on the same learned codebooks as ``bench_encode.py``
   (8 x 256, d = 64, clustered data): ``encode(..., device="cuda")`` against
   the compiled CPU kernels on all cores and on one thread. Wall-clock µs
   per item (the GPU time includes the copies to and from the device), the
   share of items whose codes equal the CPU's, and the reconstruction error
   relative to the CPU's. The GPU path runs in chunks of items, sized by
   default from a byte budget (``_encode_torch.chunk_items``); ``--chunks``
   sweeps fixed sizes against it (0: the default).
2. **HQHasher on the GPU**: a default-shaped fit (64 bits, 8 x 256
   codebooks) of ``--n-fit`` items and ``--epochs`` epochs, the share of the
   fit spent in the codebook initialisation, and ``transform`` of
   ``--n-transform`` items (towers and additive encoder on the GPU): wall
   time, µs per item and the peak GPU memory it allocated, which stays
   bounded by the chunk sizes rather than growing with the items.

Run: ``python benchmarks/bench_gpu.py`` (a few minutes on one H200);
``--output FILE`` writes the results as JSON.
"""

import argparse
import json
import os
import sys
import time

import numpy as np


def _clustered(n, d, n_clusters=50, seed=0):
    rng = np.random.RandomState(seed)
    centers = rng.randn(n_clusters, d).astype(np.float32)
    labels = rng.randint(n_clusters, size=n)
    return centers[labels] + np.float32(0.6) * rng.randn(n, d).astype(np.float32)


def _wall(fn, repeat):
    best, out = np.inf, None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def bench_encoders(n, repeat, chunks, device="cuda"):
    from threadpoolctl import threadpool_limits

    from skhash.quantization import (
        AdditiveQuantizer,
        _encode_torch,
        encode,
        kmeans_codebooks,
        quantization_error,
    )

    d, M, K = 64, 8, 256
    X = _clustered(n + 20000, d)
    rows = []
    for kind in ("additive", "product"):
        if kind == "additive":
            C = AdditiveQuantizer(M, K, n_iter=4, random_state=0).fit(X[:20000])
            C = C.codebooks_
        else:
            C = kmeans_codebooks(
                X[:20000], M, K, kind="product", random_state=0, n_iter=10
            )
        Xt = np.ascontiguousarray(X[20000:])
        encode(Xt[:300], C, kind=kind)  # compile / load the CPU kernels
        encode(Xt[:300], C, kind=kind, device=device)  # CUDA context
        t_all, c_cpu = _wall(lambda: encode(Xt, C, kind=kind, n_jobs=-1), repeat)
        n1 = min(n, 100000)
        with threadpool_limits(1):
            t_one, _ = _wall(lambda: encode(Xt[:n1], C, kind=kind), 1)
        err_cpu = quantization_error(Xt, c_cpu, C)
        rows.append(
            {
                "kind": kind,
                "encoder": f"CPU, {os.cpu_count()} threads",
                "us_per_item": 1e6 * t_all / n,
            }
        )
        rows.append(
            {"kind": kind, "encoder": "CPU, 1 thread", "us_per_item": 1e6 * t_one / n1}
        )
        default = _encode_torch._CHUNK
        try:
            for chunk in chunks:
                _encode_torch._CHUNK = chunk or None  # 0: the default sizing
                size = _encode_torch.chunk_items(M, K, device)
                encode(Xt[:size], C, kind=kind, device=device)
                t, c = _wall(lambda: encode(Xt, C, kind=kind, device=device), repeat)
                rows.append(
                    {
                        "kind": kind,
                        "encoder": f"CUDA, chunk {size}"
                        + (" (default)" if not chunk else ""),
                        "us_per_item": 1e6 * t / n,
                        "same_codes_as_cpu": float((c == c_cpu).all(axis=1).mean()),
                        "error_vs_cpu": quantization_error(Xt, c, C) / err_cpu,
                    }
                )
        finally:
            _encode_torch._CHUNK = default
        base = rows[-len(chunks) - 2]["us_per_item"]
        for r in rows[-len(chunks) - 2 :]:
            r["speedup_vs_cpu_all_threads"] = base / r["us_per_item"]
    return rows


def bench_hq(n_fit, epochs, n_transform, device="cuda"):
    import torch
    from bench_encode import fit_hq_timed

    from skhash import MultiModal
    from skhash.quantization import encode

    est, X, fit_s, kmeans = fit_hq_timed(n_fit, epochs, device)
    per_epoch = (fit_s - kmeans) / epochs
    res = {
        "device": est.device_,
        "n_fit": n_fit,
        "epochs": epochs,
        "fit_s": fit_s,
        "kmeans_s": kmeans,
        "share": kmeans / fit_s,
        "share_of_default_20_epoch_fit": kmeans / (kmeans + 20 * per_epoch),
    }
    # transform of many items: new points of the same two modalities
    rng = np.random.default_rng(1)
    idx = rng.integers(n_fit, size=n_transform)
    Xn = {}
    for name, m in X.items():
        a = rng.standard_normal((n_transform, m.shape[1]), dtype=np.float32)
        a *= np.float32(0.1)
        a += np.asarray(m, dtype=np.float32)[idx]
        Xn[name] = a
    est.transform(MultiModal(**{k: v[:1000] for k, v in Xn.items()}))  # warm
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    out = est.transform(MultiModal(**Xn))
    t_tr = time.perf_counter() - t
    first = out.modalities[0]
    t_enc, _ = _wall(
        lambda: encode(
            out[first].embedding,
            est.codebooks_,
            kind="additive",
            n_iter=est.n_icm_iter,
            device=device,
        ),
        2,
    )
    # the towers alone, in the default chunks of rows and in larger ones
    part = Xn[first][: min(n_transform, 2000000)]
    embed_us = {}
    for rows in (None, 16384, 65536):
        t, _ = _wall(
            lambda rows=rows: est._embed(est.net_, first, part, est.device_, rows), 2
        )
        embed_us[str(rows or "default")] = 1e6 * t / len(part)
    res.update(
        embed_us_per_item_by_rows=embed_us,
        encode_share_of_transform=2 * t_enc / t_tr,
        n_transform=n_transform,
        transform_s=t_tr,
        transform_us_per_item=1e6 * t_tr / n_transform,
        transform_peak_gpu_mib=(
            torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan")
        ),
        codes_shape=[list(out[m].codes.shape) for m in out.modalities],
    )
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1000000, help="items encoded")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--chunks", type=int, nargs="+", default=[0, 16384, 65536, 262144])
    p.add_argument("--n-fit", type=int, default=100000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--n-transform", type=int, default=10000000)
    p.add_argument("--no-hq", action="store_true", help="section 1 only")
    p.add_argument("--output", help="write the results as JSON here")
    p.add_argument(
        "--device", default="cuda", help="'cpu' dry-runs the script without a GPU"
    )
    args = p.parse_args(argv)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("bench_gpu.py needs a CUDA device; none is available here.")
    name = torch.cuda.get_device_name(0) if args.device != "cpu" else "cpu"
    result = {"gpu": name, "torch": torch.__version__}
    rows = bench_encoders(args.n, args.repeat, args.chunks, args.device)
    result["encoders"] = rows
    print(f"\n## Encoders on {result['gpu']}, 8 x 256, d = 64, {args.n} items\n")
    print(
        "| kind | encoder | µs/item | vs CPU all threads | same codes | error ratio |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['kind']} | {r['encoder']} | {r['us_per_item']:.3f} | "
            f"{r['speedup_vs_cpu_all_threads']:.2f}x | "
            f"{r.get('same_codes_as_cpu', float('nan')):.4f} | "
            f"{r.get('error_vs_cpu', float('nan')):.5f} |"
        )
    if not args.no_hq:
        res = bench_hq(args.n_fit, args.epochs, args.n_transform, args.device)
        result["hq"] = res
        print("\n## HQHasher on the GPU\n")
        for k, v in res.items():
            print(f"- {k}: {v}")
    if args.output:
        with open(args.output, "w") as f:
            json.dump(result, f, indent=2, default=float)


if __name__ == "__main__":
    main()
