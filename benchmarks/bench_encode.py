"""Encoding, codebook initialisation and start-up, against faiss, in one run.

1. **Additive encoder** (8 x 256 codebooks, d = 64, one thread) on codebooks
   an :class:`~skhash.quantization.AdditiveQuantizer` learned (k-means then
   ridge updates, as in HQ training) on clustered data: the former numpy ICM
   (``_encode_numpy``) against the compiled kernels (greedy + 3 ICM sweeps:
   one BLAS product per codebook and block of items with a fused argmin and
   residual update, then ICM on exact integer scores, rows of an int16
   cross-term table summed in int32, with exact re-scoring of near-ties;
   the beam-search start; the iterated local search), and
   faiss's encoders run on the *same* codebooks: ``ResidualQuantizer``
   (greedy / beam) and ``LocalSearchQuantizer`` (ILS + ICM). µs per item,
   time relative to faiss's greedy ``ResidualQuantizer`` and reconstruction
   error ``mean ‖x − x̂‖²``. The compiled encoder keeps the tables of the
   last codebooks it saw, so repeated calls build them once; the row
   "tables rebuilt" clears them before every call (the cost of a first
   call on new codebooks).
2. **Product encoder** (8 x 256, d = 64): skhash's against faiss's
   ``ProductQuantizer.compute_codes`` on the same codebooks (and whether
   the codes are the same).
3. **Codebook initialisation share of an HQ fit**: ``HQHasher`` on
   ``make_cross_modal`` data of ``--n-fit`` items (100k), ``--epochs``
   epochs (the default fit runs 20; fewer keep the run short), 8 x 256
   codebooks, 64 bits: the time in ``kmeans_codebooks`` over the fit time,
   and the same share extrapolated to the default 20 epochs from the
   measured per-epoch time.
4. **Start-up** in fresh interpreters: ``import skhash.retrieval`` (and
   whether it imported torch), ``from skhash import HQHasher``, and the
   first ``TwoStageRetriever.kneighbors`` with a cold numba cache (a new
   install) and a warm one.

Timings are CPU seconds of this process (``time.process_time``) with BLAS
and faiss on one thread, best of ``--repeat`` runs, so that a busy machine
inflates them less; ratios compare methods measured in the same run.

Run: ``python benchmarks/bench_encode.py`` (about 3-5 minutes) or
``--quick`` (smaller sizes, no HQ fit); ``--additive-only`` runs section 1
alone. Needs faiss-cpu
(``pip install skhash[benchmark]``).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")

from threadpoolctl import threadpool_limits  # noqa: E402

from skhash.quantization import (  # noqa: E402
    AdditiveQuantizer,
    encode,
    kmeans_codebooks,
    quantization_error,
)
from skhash.quantization._encode import _encode_numpy  # noqa: E402


def _clustered(n, d, n_clusters=50, seed=0):
    rng = np.random.RandomState(seed)
    centers = rng.randn(n_clusters, d)
    labels = rng.randint(n_clusters, size=n)
    return (centers[labels] + 0.6 * rng.randn(n, d)).astype(np.float32)


def _timed(fn, repeat):
    """(best CPU seconds, result) of ``repeat`` runs."""
    best, out = np.inf, None
    for _ in range(repeat):
        t = time.process_time()
        out = fn()
        best = min(best, time.process_time() - t)
    return best, out


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    faiss.omp_set_num_threads(1)
    return faiss


def bench_additive(n, repeat, faiss, rows):
    d, M, K = 64, 8, 256
    X = _clustered(n + 20000, d)
    aq = AdditiveQuantizer(M, K, n_iter=4, random_state=0).fit(X[:20000])
    C, Xt = aq.codebooks_, np.ascontiguousarray(X[20000:])
    encode(Xt[:300], C, kind="additive")  # compile / load the kernels
    encode(Xt[:300], C, kind="additive", beam_width=4, ils_iters=1)
    # alternate the two, so that a change in the machine's load between
    # them does not bias their ratio
    t_old = t_new = np.inf
    for _ in range(repeat):
        t, c_old = _timed(lambda: _encode_numpy(Xt, C, kind="additive"), 1)
        t_old = min(t_old, t)
        t, c_new = _timed(lambda: encode(Xt, C, kind="additive"), 1)
        t_new = min(t_new, t)
    err_old = quantization_error(Xt, c_old, C)
    out = {"same_codes_old_new": float((c_old == c_new).all(axis=1).mean())}

    def add(name, seconds, codes, n_items):
        err = quantization_error(Xt[:n_items], codes, C)
        rows.append(
            {
                "encoder": name,
                "us_per_item": 1e6 * seconds / n_items,
                "speedup_vs_numpy": (t_old / n) / (seconds / n_items),
                "error": err,
                "error_vs_numpy": err / err_old,
            }
        )

    add("skhash numpy ICM (before)", t_old, c_old, n)
    add("skhash compiled greedy+ICM", t_new, c_new, n)
    from skhash.quantization import _encode_kernels

    def fresh():
        _encode_kernels._TABLE_CACHE.clear()
        return encode(Xt, C, kind="additive")

    t, c = _timed(fresh, repeat)
    add("skhash compiled greedy+ICM, tables rebuilt", t, c, n)
    # the greedy start alone (its products are most of it): the rest of the
    # default row's time is the ICM sweeps
    t, c = _timed(lambda: encode(Xt, C, kind="additive", n_iter=0), repeat)
    add("skhash compiled greedy only (n_iter=0)", t, c, n)
    n_small = min(n, 4000)
    for name, kw in (
        ("beam_width=4", {"beam_width": 4}),
        ("beam_width=16", {"beam_width": 16}),
        ("ils_iters=16", {"ils_iters": 16}),
        ("beam_width=16, ils_iters=16", {"beam_width": 16, "ils_iters": 16}),
    ):
        t, c = _timed(lambda kw=kw: encode(Xt[:n_small], C, kind="additive", **kw), 1)
        add(f"skhash {name}", t, c, n_small)
    if faiss is not None:
        rq = faiss.ResidualQuantizer(d, M, 8)
        faiss.copy_array_to_vector(C.ravel(), rq.codebooks)
        rq.is_trained = True
        for beam in (1, 16):
            rq.max_beam_size = beam
            t, c = _timed(lambda: rq.compute_codes(Xt[:n_small]), 1)
            add(f"faiss RQ max_beam_size={beam}", t, c, n_small)
        lsq = faiss.LocalSearchQuantizer(d, M, 8)
        faiss.copy_array_to_vector(C.ravel(), lsq.codebooks)
        lsq.is_trained = True
        n_lsq = min(n, 1000)
        t, c = _timed(lambda: lsq.compute_codes(Xt[:n_lsq]), 1)
        add("faiss LSQ (ILS 16 x ICM 4)", t, c, n_lsq)
    # every row against faiss's greedy residual encoder on the same codebooks
    ref = next((r for r in rows if r["encoder"] == "faiss RQ max_beam_size=1"), None)
    for r in rows:
        r["time_vs_faiss_rq1"] = (
            r["us_per_item"] / ref["us_per_item"] if ref else float("nan")
        )
    out["default_speedup_vs_numpy"] = rows[1]["speedup_vs_numpy"]
    out["default_error_vs_numpy"] = rows[1]["error_vs_numpy"]
    return out


def bench_product(n, repeat, faiss, rows):
    d, M, K = 64, 8, 256
    X = _clustered(n + 20000, d, seed=1)
    C = kmeans_codebooks(X[:20000], M, K, kind="product", random_state=0, n_iter=10)
    Xt = np.ascontiguousarray(X[20000:])
    encode(Xt[:300], C, kind="product")
    t_new, c_new = _timed(lambda: encode(Xt, C, kind="product"), repeat)
    t_old, c_old = _timed(lambda: _encode_numpy(Xt, C, kind="product"), repeat)
    res = {
        "skhash_us": 1e6 * t_new / n,
        "numpy_us": 1e6 * t_old / n,
        "same_as_numpy": bool((c_new == c_old).all()),
    }
    if faiss is not None:
        pq = faiss.ProductQuantizer(d, M, 8)
        sub = np.stack([C[m][:, m * 8 : (m + 1) * 8] for m in range(M)])
        faiss.copy_array_to_vector(np.ascontiguousarray(sub).ravel(), pq.centroids)
        t_f, c_f = _timed(lambda: pq.compute_codes(Xt), repeat)
        res.update(
            faiss_us=1e6 * t_f / n,
            ratio_skhash_over_faiss=t_new / t_f,
            same_as_faiss=float((c_f == c_new).all(axis=1).mean()),
        )
    rows.append(res)


def fit_hq_timed(n_fit, epochs, device="cpu"):
    """A default-shaped HQHasher fit: (estimator, data, fit s, k-means s)."""
    import skhash.hashing._hq as hq_module
    from skhash import HQHasher
    from skhash.datasets import make_cross_modal

    X, y = make_cross_modal(
        n_samples=n_fit, n_classes=20, n_features=(128, 64), random_state=0
    )
    spent = []
    original = hq_module.kmeans_codebooks

    def timed_kmeans(*args, **kwargs):
        t = time.perf_counter()
        out = original(*args, **kwargs)
        spent.append(time.perf_counter() - t)
        return out

    hq_module.kmeans_codebooks = timed_kmeans
    try:
        est = HQHasher(
            n_bits=64,
            n_codebooks=8,
            n_codewords=256,
            max_epochs=epochs,
            quantization_warmup=1,
            random_state=0,
            device=device,
        )
        t = time.perf_counter()
        est.fit(X, y)
        total = time.perf_counter() - t
    finally:
        hq_module.kmeans_codebooks = original
    return est, X, total, float(sum(spent))


def bench_fit_share(n_fit, epochs):
    _, _, total, kmeans = fit_hq_timed(n_fit, epochs)
    # the default fit runs 20 epochs: the same init plus 20 epochs of the
    # measured average cost (training and codebook rounds)
    per_epoch = (total - kmeans) / epochs
    default_total = kmeans + 20 * per_epoch
    return {
        "n_items": n_fit,
        "epochs": epochs,
        "fit_s": total,
        "kmeans_s": kmeans,
        "share": kmeans / total,
        "per_epoch_s": per_epoch,
        "share_of_default_20_epoch_fit": kmeans / default_total,
    }


_FIRST_QUERY = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
from skhash import CodeSet, TwoStageRetriever, pack_bits
t1 = time.perf_counter()
rng = np.random.RandomState(0)
emb = rng.randn(20000, 64).astype(np.float32)
C = rng.randn(8, 256, 64).astype(np.float32)
codes = rng.randint(256, size=(20000, 8)).astype(np.uint8)
cs = CodeSet(embedding=emb, bits=pack_bits(emb >= 0), codes=codes, n_bits=64,
             codebooks=C, codebook_kind="additive", modality="X")
r = TwoStageRetriever(n_neighbors=10).fit(cs)
t2 = time.perf_counter()
r.kneighbors(cs[:100])
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_query_s": t3 - t2,
                  "torch_imported": "torch" in sys.modules}))
"""


def _fresh(code, env=None):
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_startup():
    res = {}
    with tempfile.TemporaryDirectory() as cache:
        res["cold"] = _fresh(_FIRST_QUERY, {"NUMBA_CACHE_DIR": cache})
    _fresh(_FIRST_QUERY)  # make sure the default cache is filled
    res["warm"] = _fresh(_FIRST_QUERY)
    res["import_hq"] = _fresh(
        "import json, time\nt = time.perf_counter()\nfrom skhash import HQHasher\n"
        "print(json.dumps({'s': time.perf_counter() - t}))"
    )["s"]
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=20000, help="items encoded")
    p.add_argument("--n-fit", type=int, default=100000, help="items of the HQ fit")
    p.add_argument("--epochs", type=int, default=2, help="epochs of the HQ fit")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="small sizes, no HQ fit")
    p.add_argument("--output", help="write the results as JSON here")
    p.add_argument(
        "--additive-only", action="store_true", help="section 1 only (a minute)"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.repeat = 4000, 2
    faiss = _faiss()
    result = {}
    with threadpool_limits(1):
        rows = []
        result["additive_summary"] = bench_additive(args.n, args.repeat, faiss, rows)
        result["additive"] = rows
        print("\n## Additive encoder, 8 x 256, d = 64, 1 thread (CPU time)\n")
        print(
            "| encoder | µs/item | speed-up vs numpy | time / faiss RQ greedy "
            "| error | error / numpy |"
        )
        print("|---|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['encoder']} | {r['us_per_item']:.1f} | "
                f"{r['speedup_vs_numpy']:.2f}x | {r['time_vs_faiss_rq1']:.2f} | "
                f"{r['error']:.4f} | {r['error_vs_numpy']:.5f} |"
            )
        summ = result["additive_summary"]
        print(
            "\nsame codes, compiled vs numpy: "
            f"{summ['same_codes_old_new']:.4f} of the items; default encoder "
            f"{summ['default_speedup_vs_numpy']:.2f}x the numpy reference "
            "(issue 14 target: >= 5x at equal error), error ratio "
            f"{summ['default_error_vs_numpy']:.6f}"
        )
        if args.additive_only:
            if args.output:
                with open(args.output, "w") as f:
                    json.dump(result, f, indent=2, default=float)
            return
        prow = []
        bench_product(args.n, args.repeat, faiss, prow)
        result["product"] = prow[0]
        r = prow[0]
        print("\n## Product encoder, 8 x 256, d = 64, 1 thread\n")
        print("| skhash µs/item | numpy µs/item | faiss PQ µs/item | skhash / faiss |")
        print("|---|---|---|---|")
        print(
            f"| {r['skhash_us']:.2f} | {r['numpy_us']:.2f} | "
            f"{r.get('faiss_us', float('nan')):.2f} | "
            f"{r.get('ratio_skhash_over_faiss', float('nan')):.2f} |"
        )
        print(
            f"\nsame codes as numpy: {r['same_as_numpy']}; as faiss: "
            f"{r.get('same_as_faiss', float('nan')):.4f} of the items"
        )
        if not args.quick:
            fit = bench_fit_share(args.n_fit, args.epochs)
            result["fit"] = fit
            print(f"\n## Codebook init share of an HQ fit ({fit['n_items']} items)\n")
            print(
                f"fit {fit['fit_s']:.1f} s ({fit['epochs']} epochs, "
                f"{fit['per_epoch_s']:.1f} s/epoch), kmeans_codebooks "
                f"{fit['kmeans_s']:.1f} s = {100 * fit['share']:.1f} % of the fit"
            )
            print(
                "extrapolated to the default 20 epochs: "
                f"{100 * fit['share_of_default_20_epoch_fit']:.1f} %"
            )
    st = bench_startup()
    result["startup"] = st
    print("\n## Start-up (fresh interpreters, wall time)\n")
    print(
        "| numba cache | import skhash search (s) | torch imported | first query (s) |"
    )
    print("|---|---|---|---|")
    for key in ("cold", "warm"):
        s = st[key]
        print(
            f"| {key} | {s['import_s']:.2f} | {s['torch_imported']} | "
            f"{s['first_query_s']:.2f} |"
        )
    print(f"\n`from skhash import HQHasher` (with torch): {st['import_hq']:.2f} s")
    if args.output:
        with open(args.output, "w") as f:
            json.dump(result, f, indent=2, default=float)


if __name__ == "__main__":
    main()
