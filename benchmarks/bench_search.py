"""Search speed of TwoStageRetriever against faiss on synthetic clustered codes.

For each database size N, code length (bits = embedding dimension d), number
of product codebooks M (K = 256) and shortlist size alpha*N, on 1,000 queries
and one thread, prints queries/s of

- ``ours``: ``TwoStageRetriever.kneighbors`` (numba backend, Hamming
  shortlist then AQD re-ranking, top-50), with 1 and 2 threads;
- ``stage1``: its Hamming shortlist alone, and ``floor``: XOR + popcount of
  every (query, item) pair with no selection at all (the compute floor);
- ``bin+rr``: faiss ``IndexBinaryFlat`` shortlist then an AQD re-rank of the
  shortlist in numpy; ``PQ``: faiss ``IndexPQ`` full scan (the same
  codebooks and codes, exported with ``to_faiss``); ``exact``: brute-force
  float inner products (BLAS), all measured in the same run;

with the ratios ours/baseline, recall@50 against the exact float top-50
(ours and IndexPQ), the index size per item and the peak memory of the
search above the index. N = 10^7 keeps no float embeddings (so no exact
baseline nor recall) and runs only 64 bits, M = 8, alpha*N = 100 unless
``--all-big``. Then the first-call compile time (cold and warm numba
cache), a memory-mapped search check, and the HQ paper's Figure 3 claim
(Section 5: at equal memory, two-stage retrieval is O(n) times faster than
a quantization-only model, with similar accuracy): two-stage search (n-bit
hash + n/8 codebooks) against a quantization-only full scan (n/4
codebooks, the same bytes per item) as the feature length n grows.

Timing: each measurement runs the whole query set (fewer for baselines that
would take longer than ``--budget`` seconds) after a warm-up, repeated until
1 s has passed (at most 3 times), best run kept. BLAS and faiss are held to
one thread. The machine may be shared: compare the ratios, measured in the
same run, rather than absolute rates across runs.

Recall-throughput curves (``--curves``, issue 14): on HQ codes of clustered
data (an ``HQHasher``, ``--curve-bits`` bits + ``--curve-codebooks`` x 256
additive codebooks: 64 + 8 x 8 bits = 16 B/item by default, fitted on 5,000
items of ``make_cross_modal`` with 100 classes, then ``transform`` of the whole
database and the queries), recall@50 against the exact inner-product top-50 of
the float embeddings and queries/s with one thread (two for skhash's ``2thr``),
for skhash's knobs (``alpha`` x ``stage1``; for ``stage1="ivf"`` also
``--ivf-nprobe`` x ``--ivf-quantizer-nprobe``, each value its own curve)
and faiss's IndexBinaryFlat and
IndexBinaryIVF (``nprobe`` sweep; 4 sqrt(N) lists trained on 64 codes per list)
+ the same AQD re-rank, IndexPQFastScan and IndexIVFPQFastScan (4-bit codes at
the same bytes per item: 32 x 4 bits for 16 B/item, 64 x 4 for 128 bits + 16
codebooks = 32 B/item; ``nprobe`` sweep) and IndexHNSWFlat (floats + graph,
``efSearch`` sweep, up to ``--hnsw-max`` items), with the build time and the
bytes per item of every structure (serialized size for faiss; skhash: index
arrays, codebooks and MIH tables). A summary gives, at each recall level, the
fastest skhash configuration against the fastest faiss index of the same memory
(up to about twice the codes' bytes per item, with the lists). Run: ``python
benchmarks/bench_search.py --curves --n 1e5 1e6 --cache DIR`` (about 4 minutes
at 10^5 and 12 at 10^6 on a shared 2-core machine; ``--cache`` keeps the
learned codes for the next run, under a key of the learner's parameters and
of the package's training and encoding sources, so that a change to either
regenerates them; ``--plot FILE`` saves the curves).

Run: ``python benchmarks/bench_search.py`` (default grid, about 6 minutes),
``python benchmarks/bench_search.py --quick`` (the headline row only:
N = 10^6, 64 bits, M = 8, alpha*N = 100), or pick a subset with
``--n 1e6 1e7 --bits 64 --M 8 --alpha 100``. Needs faiss-cpu
(``pip install skhash[benchmark]``).
"""

import argparse
import ctypes
import hashlib
import itertools
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
from numba import njit
from threadpoolctl import threadpool_limits

from skhash import CodeSet, pack_bits
from skhash.quantization import encode, kmeans_codebooks
from skhash.retrieval import TwoStageRetriever, _ivf, _mih, get_backend
from skhash.retrieval._faiss import to_faiss
from skhash.retrieval._numba import _popcount

RANDOM_STATE = 0
K = 256
N_NEIGHBORS = 50
N_CLUSTERS = 1000
SPREAD = 0.6
GEN_ROWS = 1_000_000  # items generated (and encoded) at a time


# --------------------------------------------------------------------------- #
# Data
# --------------------------------------------------------------------------- #


def centers(d):
    return np.random.RandomState(RANDOM_STATE + d).randn(N_CLUSTERS, d)


def clustered(n, d, seed):
    """``n`` points of a mixture of N_CLUSTERS Gaussians in ``d`` dimensions."""
    rng = np.random.default_rng(seed)
    c = centers(d).astype(np.float32)
    x = c[rng.integers(N_CLUSTERS, size=n)]
    x += SPREAD * rng.standard_normal((n, d), dtype=np.float32)
    return x


def train_codebooks(d, M, n_train=10_000):
    sample = clustered(n_train, d, seed=10_000 + d)
    return kmeans_codebooks(
        sample, M, K, kind="product", random_state=RANDOM_STATE, n_iter=8
    )


class Dataset:
    """Database codes (and embeddings up to ``keep_float`` items), queries."""

    def __init__(self, n, d, codebooks_by_m, n_queries, keep_float):
        self.n, self.d = n, d
        self.X = np.empty((n, d), np.float32) if keep_float else None
        self.bits = np.empty((n, d // 8), np.uint8)
        self.codes = {M: np.empty((n, M), np.uint8) for M in codebooks_by_m}
        self.codebooks = codebooks_by_m
        with threadpool_limits(limits=os.cpu_count()):  # data prep: every core
            for s in range(0, n, GEN_ROWS):
                e = min(n, s + GEN_ROWS)
                x = clustered(e - s, d, seed=1 + s // GEN_ROWS)
                if keep_float:
                    self.X[s:e] = x
                self.bits[s:e] = pack_bits(x)
                for M, C in codebooks_by_m.items():
                    self.codes[M][s:e] = encode(x, C, kind="product")
        self.Q = clustered(n_queries, d, seed=999_999)
        self.q_bits = pack_bits(self.Q)

    def codeset(self, M, with_bits=True):
        return CodeSet(
            bits=self.bits if with_bits else None,
            codes=self.codes[M],
            n_bits=self.d if with_bits else None,
            codebooks=self.codebooks[M],
            codebook_kind="product",
        )

    def queries(self, M):
        return CodeSet(
            embedding=self.Q,
            bits=self.q_bits,
            n_bits=self.d,
            codebooks=self.codebooks[M],
            codebook_kind="product",
        )


# --------------------------------------------------------------------------- #
# Timing and memory
# --------------------------------------------------------------------------- #


def rate(fn, n_queries, budget, min_time=1.0, max_runs=100):
    """Best queries/s of ``fn(n)`` (searches the first ``n`` queries): of
    the runs made until ``min_time`` seconds are spent (at least one, at
    most ``max_runs``), so that a call of a few milliseconds is timed as
    often as a slow one is long, and a moment's load on this shared
    machine counts less."""
    fn(min(8, n_queries))  # warm-up
    t0 = time.perf_counter()
    fn(min(32, n_queries))
    est = min(32, n_queries) / max(time.perf_counter() - t0, 1e-9)
    n = int(min(n_queries, max(32, budget * est)))
    best, spent, runs = 0.0, 0.0, 0
    while runs == 0 or (runs < max_runs and spent < min_time):
        t0 = time.perf_counter()
        fn(n)
        dt = time.perf_counter() - t0
        best, spent, runs = max(best, n / dt), spent + dt, runs + 1
    return best


def rate_pair(fn1, fn2, n_queries, budget, min_time=2.0, turn=0.1, max_runs=200):
    """Best queries/s of ``fn1(n)`` and of ``fn2(n)``, the two timed in
    turns of about ``turn`` seconds of calls each (as :func:`rate`, over
    ``min_time`` seconds together): a ratio of the two compares runs made
    at the same moments of a shared machine, where two separate
    :func:`rate` calls can meet different loads. Turns of several calls,
    not one call each: a user's threads search call after call, and a
    helper thread woken (and its caches filled) for a single short call
    between calls on one thread would be timed at its slowest."""
    fn1(min(8, n_queries))  # warm-up
    fn2(min(8, n_queries))
    t0 = time.perf_counter()
    fn1(min(32, n_queries))
    est = min(32, n_queries) / max(time.perf_counter() - t0, 1e-9)
    n = int(min(n_queries, max(32, budget * est)))
    calls = max(1, int(turn * est / n))  # calls per turn
    # one untimed call of each at the timed size: the warm-up's 8 queries
    # are one chunk, which a helper thread never takes, so its first work
    # (its scratch faulted in, right after a build freed gigabytes) would
    # fall into the timed calls; the first settings after the 10**7 build
    # timed 1.62-1.64x on 2 threads, the same settings re-timed 1.77-1.85x
    fn1(n)
    fn2(n)
    best, spent, runs = [0.0, 0.0], 0.0, 0
    while runs == 0 or (runs < max_runs and spent < min_time):
        for j, fn in enumerate((fn1, fn2)):
            for _ in range(calls):
                t0 = time.perf_counter()
                fn(n)
                dt = time.perf_counter() - t0
                best[j], spent = max(best[j], n / dt), spent + dt
        runs += calls
    return tuple(best)


def _status():
    with open("/proc/self/status", encoding="ascii") as f:
        s = f.read()
    return {
        k: int(re.search(k + r":\s+(\d+)", s).group(1)) * 1024
        for k in ("VmRSS", "VmHWM")
    }


def peak_memory(fn):
    """Peak resident memory of ``fn()`` above the memory before it (bytes).

    Linux only: freed heap memory is first given back to the system
    (``malloc_trim``), then the high-water mark is reset.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")  # reset VmHWM
        before = _status()["VmRSS"]
    except OSError:
        return float("nan")
    fn()
    return _status()["VmHWM"] - before


# --------------------------------------------------------------------------- #
# Baselines
# --------------------------------------------------------------------------- #


@njit(cache=True, nogil=True, boundscheck=False)
def _popcount_floor(q_words, db_words_t, chunk):
    """Σ_j popcount(q ^ db_j) per query: the scan with no selection at all.

    Same blocking as stage 1 (all queries over one L1-sized chunk of the
    database at a time); the database is word-major, ``(W, N)``, so every
    inner loop is one contiguous, vectorised XOR + popcount + add.
    """
    n_q, n_words = q_words.shape
    n = db_words_t.shape[1]
    out = np.zeros(n_q, np.int64)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        for q in range(n_q):
            acc = 0
            for w in range(n_words):
                qv = q_words[q, w]
                col = db_words_t[w, s:e]
                for j in range(col.shape[0]):
                    acc += _popcount(qv ^ col[j])
            out[q] += acc
    return out


def floor_fn(data):
    dtype = np.uint32 if data.bits.shape[1] == 4 else np.uint64
    db_t = np.ascontiguousarray(data.bits.view(dtype).T)
    q = data.q_bits.view(dtype)
    chunk = 16384 // (db_t.shape[0] * db_t.itemsize)
    return lambda n: _popcount_floor(q[:n], db_t, chunk)


def block_luts(Q, C):
    M, _, d = C.shape
    w = d // M
    return np.stack(
        [Q[:, m * w : (m + 1) * w] @ C[m, :, m * w : (m + 1) * w].T for m in range(M)],
        axis=1,
    ).astype(np.float32)


def binary_rerank_fn(index, data, M, L):
    """faiss IndexBinaryFlat shortlist, then AQD re-rank of the L in numpy."""
    codes, C = data.codes[M], data.codebooks[M]

    def run(n):
        _, cand = index.search(data.q_bits[:n], L)
        luts = block_luts(data.Q[:n], C)
        c = codes[cand]  # (n, L, M)
        scores = np.zeros(cand.shape, np.float32)
        for m in range(M):
            scores += np.take_along_axis(luts[:, m, :], c[:, :, m].astype(np.intp), 1)
        k = min(N_NEIGHBORS, L)
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1)
        return np.take_along_axis(cand, np.take_along_axis(top, order, 1), 1)

    return run


def exact_topk(X, Q, k=N_NEIGHBORS, step=16):
    out = np.empty((len(Q), k), np.int64)
    for s in range(0, len(Q), step):
        scores = Q[s : s + step] @ X.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1)
        out[s : s + step] = np.take_along_axis(top, order, 1)
    return out


def recall(found, truth):
    n = min(len(found), len(truth))
    hits = sum(len(np.intersect1d(a, b)) for a, b in zip(found[:n], truth[:n]))
    return hits / (n * truth.shape[1])


# --------------------------------------------------------------------------- #
# Sections
# --------------------------------------------------------------------------- #

COLUMNS = (
    f"{'N':>6} {'bits':>4} {'M':>2} {'aN':>6} | {'ours':>7} {'2thr':>7} {'x':>4} | "
    f"{'stage1':>7} {'floor':>7} {'%':>3} | {'bin+rr':>7} {'ratio':>5} | "
    f"{'PQ':>6} {'ratio':>5} | {'exact':>6} {'ratio':>6} | {'rec':>4} "
    f"{'recPQ':>5} | {'B/item':>6} {'+5%?':>4} {'peakMB':>6}"
)


def _f(value, width, digits):
    """``value`` in ``width`` characters, "-" when not measured (NaN)."""
    return f"{'-':>{width}}" if np.isnan(value) else f"{value:>{width}.{digits}f}"


def _fmt_n(n):
    return f"1e{int(np.log10(n))}" if n == 10 ** int(np.log10(n)) else f"{n:.0e}"


def run_grid(args):
    print("Queries/s, 1 thread unless noted (ratio = ours / baseline).")
    print(COLUMNS)
    print("-" * len(COLUMNS))
    rows = []
    for n in args.n:
        n = int(n)
        for n_bits in args.bits:
            big = n > args.max_float and not args.all_big
            if big and n_bits != 64:
                continue
            Ms = [M for M in args.M if n_bits % M == 0]
            alphas = args.alpha
            if big:  # the headline configuration only
                Ms = [8] if 8 in Ms else Ms[:1]
                alphas = [a for a in alphas if a >= 1] or alphas[:1]
            codebooks = {M: train_codebooks(n_bits, M) for M in Ms}
            keep_float = n <= args.max_float
            data = Dataset(n, n_bits, codebooks, args.queries, keep_float=keep_float)
            truth, exact_qps = None, float("nan")
            if keep_float:
                exact_qps = rate(
                    lambda m, d=data: exact_topk(d.X, d.Q[:m]),
                    args.queries,
                    args.budget,
                )
                truth = exact_topk(data.X, data.Q[: min(200, args.queries)])
            floor = rate(floor_fn(data), args.queries, args.budget)
            bin_index = to_faiss(CodeSet(bits=data.bits, n_bits=n_bits))
            for M in Ms:
                est = TwoStageRetriever(n_neighbors=N_NEIGHBORS, backend="numba")
                est.fit(data.codeset(M))
                queries = data.queries(M)
                pq_index = to_faiss(est, kind="pq")
                pq_qps = rate(
                    lambda m: pq_index.search(data.Q[:m], N_NEIGHBORS),
                    args.queries,
                    args.budget,
                )
                rec_pq = float("nan")
                if truth is not None:
                    rec_pq = recall(
                        pq_index.search(data.Q[: len(truth)], N_NEIGHBORS)[1], truth
                    )
                index_bytes = sum(a.nbytes for a in est._index["X"].values())
                formula = n * (n_bits / 8 + M * np.log2(K) / 8)
                for alpha in alphas:
                    L = int(alpha) if alpha >= 1 else round(alpha * n)
                    est.set_params(alpha=L, n_jobs=None)
                    ours = rate(
                        lambda m: est.kneighbors(queries[:m]), args.queries, args.budget
                    )
                    est.set_params(n_jobs=2)
                    ours2 = rate(
                        lambda m: est.kneighbors(queries[:m]), args.queries, args.budget
                    )
                    est.set_params(n_jobs=None)
                    be = get_backend("numba")
                    stage1 = rate(
                        lambda m: be.shortlist(data.q_bits[:m], data.bits, L),
                        args.queries,
                        args.budget,
                    )
                    binrr = rate(
                        binary_rerank_fn(bin_index, data, M, L),
                        args.queries,
                        args.budget,
                    )
                    rec = float("nan")
                    if truth is not None:
                        rec = recall(est.kneighbors(queries[: len(truth)])[1], truth)
                    peak = peak_memory(lambda: est.kneighbors(queries))
                    row = {
                        "n": n,
                        "bits": n_bits,
                        "M": M,
                        "L": L,
                        "ours": ours,
                        "ours2": ours2,
                        "stage1": stage1,
                        "floor": floor,
                        "binrr": binrr,
                        "pq": pq_qps,
                        "exact": exact_qps,
                        "rec": rec,
                        "rec_pq": rec_pq,
                        "bytes_item": (index_bytes + est.codebooks_.nbytes) / n,
                        "within": (index_bytes + est.codebooks_.nbytes) / formula - 1,
                        "peak": peak / 2**20,
                    }
                    rows.append(row)
                    print(
                        f"{_fmt_n(n):>6} {n_bits:>4} {M:>2} {L:>6} | {ours:>7.0f} "
                        f"{ours2:>7.0f} {ours2 / ours:>4.2f} | {stage1:>7.0f} "
                        f"{floor:>7.0f} {100 * stage1 / floor:>3.0f} | {binrr:>7.0f} "
                        f"{ours / binrr:>5.1f} | {pq_qps:>6.0f} "
                        f"{ours / pq_qps:>5.1f} | {_f(exact_qps, 6, 0)} "
                        f"{_f(ours / exact_qps, 6, 0)} | {_f(rec, 4, 2)} "
                        f"{_f(rec_pq, 5, 2)} | {row['bytes_item']:>6.2f} "
                        f"{'yes' if abs(row['within']) <= 0.05 else 'no':>4} "
                        f"{row['peak']:>6.1f}",
                        flush=True,
                    )
                    if n == 10**6 and n_bits == 64 and M == 8 and L == 100:
                        check_mmap(est, queries)
            data = None  # free the arrays before the next size
    return rows


def check_mmap(est, queries):
    with tempfile.TemporaryDirectory() as tmp:
        loaded = TwoStageRetriever.load(est.save(os.path.join(tmp, "index")), "r")
        same = all(
            np.array_equal(a, b)
            for a, b in zip(loaded.kneighbors(queries), est.kneighbors(queries))
        )
        qps = rate(lambda m: loaded.kneighbors(queries[:m]), len(queries), 10)
        print(
            f"{'':>21}memory-mapped index (load(dir, mmap_mode='r')): identical "
            f"results: {same}; {qps:.0f} q/s (page cache warm)",
            flush=True,
        )


_COMPILE_SCRIPT = """
import time
import numpy as np
t0 = time.perf_counter()
from skhash import CodeSet, pack_bits
from skhash.retrieval import TwoStageRetriever
from skhash.retrieval._numba import warmup
t1 = time.perf_counter()
rng = np.random.RandomState(0)
e = rng.randn(500, 64).astype(np.float32)
C = np.zeros((8, 256, 64), np.float32)
for m in range(8):
    C[m, :, 8 * m : 8 * m + 8] = rng.randn(256, 8)
db = CodeSet(embedding=e, bits=pack_bits(e), codes=rng.randint(256, size=(500, 8)),
             codebooks=C, codebook_kind="product")
est = TwoStageRetriever(backend="numba").fit(db)
t2 = time.perf_counter()
est.kneighbors(db[:10])
t3 = time.perf_counter()
print(t3 - t2, warmup(), t1 - t0)
"""


def compile_times():
    """First kneighbors call and warmup(), in fresh processes: cold then warm."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        out = []
        for _ in range(2):
            res = subprocess.run(
                [sys.executable, "-c", _COMPILE_SCRIPT],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            out.append([float(v) for v in res.stdout.split()])
    (first_cold, all_cold, imp), (first_warm, all_warm, _) = out
    print(
        "First-call compile time (fresh processes, empty then filled numba cache):\n"
        f"  first kneighbors (64-bit codes, uint8 codes): cold {first_cold:.1f} s, "
        f"warm (cached) {first_warm:.2f} s\n"
        f"  warmup() (every kernel variant):             cold {all_cold:.1f} s, "
        f"warm (cached) {all_warm:.2f} s\n"
        f"  (import of skhash itself: {imp:.1f} s, not included)",
        flush=True,
    )


def figure3(args):
    """HQ Figure 3: two-stage vs quantization-only full scan, equal memory."""
    n = int(args.fig3_n)
    print(
        f"\nHQ Figure 3 claim, N = {_fmt_n(n)}, {args.queries} queries, 1 thread: "
        "equal memory of n/4 bytes per item.\n  two-stage = n-bit hash + n/8 "
        "codebooks, alpha*N = 100; quantization-only = n/4 codebooks, full scan "
        "(ours and faiss IndexPQ).\n"
        f"{'n':>5} | {'2-stage':>8} {'rec':>4} | {'Q-only':>7} {'rec':>4} "
        f"{'IndexPQ':>7} | {'speedup':>7} {'vs PQ':>6}"
    )
    speedups = []
    for d in args.fig3_lengths:
        m_hq, m_q = d // 8, d // 4
        cbs = {m_hq: train_codebooks(d, m_hq, 5000), m_q: train_codebooks(d, m_q, 5000)}
        data = Dataset(n, d, cbs, args.queries, keep_float=True)
        truth = exact_topk(data.X, data.Q[:200])
        hq = TwoStageRetriever(100, N_NEIGHBORS, backend="numba").fit(
            data.codeset(m_hq)
        )
        qo = TwoStageRetriever(1.0, N_NEIGHBORS, backend="numba").fit(
            data.codeset(m_q, with_bits=False)
        )
        q_hq = data.queries(m_hq)
        pq = to_faiss(qo, kind="pq")
        r_hq = rate(lambda m: hq.kneighbors(q_hq[:m]), args.queries, args.budget)
        r_q = rate(lambda m: qo.kneighbors(data.Q[:m]), args.queries, args.budget)
        r_pq = rate(
            lambda m: pq.search(data.Q[:m], N_NEIGHBORS), args.queries, args.budget
        )
        rec_hq = recall(hq.kneighbors(q_hq[:200])[1], truth)
        rec_q = recall(qo.kneighbors(data.Q[:200])[1], truth)
        print(
            f"{d:>5} | {r_hq:>8.0f} {rec_hq:>4.2f} | {r_q:>7.0f} {rec_q:>4.2f} "
            f"{r_pq:>7.0f} | {r_hq / r_q:>6.1f}x {r_hq / r_pq:>5.1f}x",
            flush=True,
        )
        speedups.append(r_hq / r_q)
        data = None
    lengths = args.fig3_lengths
    if len(lengths) > 1:
        print(
            f"  speedup over the quantization-only scan: {speedups[0]:.1f}x at "
            f"n = {lengths[0]}, {speedups[-1]:.1f}x at n = {lengths[-1]} "
            f"(x{speedups[-1] / speedups[0]:.1f} for x{lengths[-1] // lengths[0]} "
            "the feature length; the paper's Section 5 predicts O(n) growth)"
        )


# --------------------------------------------------------------------------- #
# Recall-throughput curves on learned codes (issue 14)
# --------------------------------------------------------------------------- #


def _learned(args, n):
    """HQ codes of clustered cross-modal data: database, queries, labels.

    An ``HQHasher`` (``--curve-bits`` bits, ``--curve-codebooks`` additive
    codebooks of K = 256)
    is fitted on the first ``--train`` items of ``make_cross_modal`` data
    (``--classes`` classes); the database is the ``n`` first items (training
    items included), the queries the next ``--queries``, all encoded with
    ``transform`` (image modality; the search is img->img).
    """
    import torch

    from skhash import MultiModal
    from skhash.datasets import make_cross_modal
    from skhash.hashing import HQHasher

    hq = HQHasher(
        args.curve_bits,
        n_codebooks=args.curve_codebooks,
        n_codewords=K,
        max_epochs=args.epochs,
        quantization_warmup=1,
        random_state=RANDOM_STATE,
        n_jobs=1,
    )
    cache = None
    if args.cache:
        # the codes depend on every HQHasher parameter, defaults included,
        # and on the code that trains and encodes: a key of the parameters'
        # values and of the learner's sources, so that codes saved before a
        # default or the training changed are not read as the new learner's
        params = repr(sorted(hq.get_params().items())).encode()
        digest = hashlib.sha256(params + _learner_sources_digest()).hexdigest()[:10]
        key = (
            f"hq_n{n}_q{args.queries}_c{args.classes}_d{args.difficulty}_"
            f"t{args.train}_{digest}.npz"
        )
        cache = os.path.join(args.cache, key)
        if os.path.exists(cache):
            with np.load(cache) as f:
                parts = {k: f[k] for k in f.files}
            print(f"  learned codes read from {cache}", flush=True)
            return tuple(
                CodeSet(
                    embedding=parts[f"{w}_emb"],
                    bits=parts[f"{w}_bits"],
                    codes=parts[f"{w}_codes"],
                    n_bits=args.curve_bits,
                    codebooks=parts["codebooks"],
                    codebook_kind="additive",
                )
                for w in ("db", "q")
            )
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    X, y = make_cross_modal(
        n + args.queries,
        n_classes=args.classes,
        difficulty=args.difficulty,
        random_state=RANDOM_STATE,
    )
    img = X["img"]
    t1 = time.perf_counter()
    train = min(args.train, n)
    hq.fit(MultiModal(img=img[:train], txt=X["txt"][:train]), y[:train])
    t2 = time.perf_counter()
    parts = []
    for s in range(0, n, GEN_ROWS // 4):
        parts.append(hq.transform(MultiModal(img=img[s : min(n, s + GEN_ROWS // 4)])))
    db = CodeSet(
        embedding=np.concatenate([p.get("img", "embedding") for p in parts]),
        bits=np.concatenate([p.get("img", "bits") for p in parts]),
        codes=np.concatenate([p.get("img", "codes") for p in parts]),
        n_bits=args.curve_bits,
        codebooks=hq.codebooks_,
        codebook_kind="additive",
    )
    q = hq.transform(MultiModal(img=img[n:]))
    queries = CodeSet(
        embedding=q.get("img", "embedding"),
        bits=q.get("img", "bits"),
        codes=q.get("img", "codes"),
        n_bits=args.curve_bits,
        codebooks=hq.codebooks_,
        codebook_kind="additive",
    )
    t3 = time.perf_counter()
    if cache is not None:
        os.makedirs(args.cache, exist_ok=True)
        # written beside, then renamed: an interrupted run leaves no
        # truncated file under the key
        tmp = f"{cache}.{os.getpid()}.tmp.npz"
        np.savez(
            tmp,
            codebooks=hq.codebooks_,
            **{
                f"{w}_{p}": c.get("X", part)
                for w, c in (("db", db), ("q", queries))
                for p, part in (
                    ("emb", "embedding"),
                    ("bits", "bits"),
                    ("codes", "codes"),
                )
            },
        )
        os.replace(tmp, cache)
    print(
        f"  data {t1 - t0:.0f} s, HQHasher fit on {train} items ({args.epochs} "
        f"epochs) {t2 - t1:.0f} s, transform of {n + args.queries} items "
        f"{t3 - t2:.0f} s",
        flush=True,
    )
    return db, queries


def _learner_sources_digest():
    """Digest of the package sources that train and encode (everything but
    the search engine, which does not change the codes), and of the numpy
    and torch versions."""
    import torch

    import skhash

    root = os.path.dirname(skhash.__file__)
    h = hashlib.sha256(f"{np.__version__} {torch.__version__}".encode())
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d for d in dirnames if d not in ("retrieval", "__pycache__")
        )
        for name in sorted(filenames):
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                h.update(os.path.relpath(path, root).encode())
                with open(path, "rb") as f:
                    h.update(f.read())
    return h.digest()


def _concentration(bits):
    """Distinct codes / N and the mean number of items sharing an item's code."""
    view = np.ascontiguousarray(bits).view(np.dtype((np.void, bits.shape[1])))
    _, counts = np.unique(view.ravel(), return_counts=True)
    return len(counts) / len(bits), float(np.square(counts / 1.0).sum() / len(bits))


def _rerank_fn(search, q_bits, Q, codes, C, L):
    """``search(q_bits[:n], L) -> cand`` then AQD (inner product) re-rank."""
    from skhash.quantization import lookup_tables

    def run(n):
        cand = search(q_bits[:n], L)
        luts = lookup_tables(Q[:n], C, metric="ip")
        valid = cand >= 0
        c = codes[np.where(valid, cand, 0)]
        scores = np.zeros(cand.shape, np.float32)
        for m in range(C.shape[0]):
            scores += np.take_along_axis(luts[:, m, :], c[:, :, m].astype(np.intp), 1)
        scores[~valid] = -np.inf
        k = min(N_NEIGHBORS, cand.shape[1])
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1)
        return np.take_along_axis(cand, np.take_along_axis(top, order, 1), 1)

    return run


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _faiss_bytes(index, binary=False):
    import faiss

    if binary:
        return faiss.serialize_index_binary(index).nbytes
    return faiss.serialize_index(index).nbytes


def curves(args):
    """Recall@50 against throughput, skhash's knobs against faiss indexes."""

    print(
        "\nRecall-throughput curves (issue 14): HQ codes of clustered data, "
        f"{args.curve_bits} bits + {args.curve_codebooks} x 256 additive codes = "
        f"{_code_bytes(args)} B/item, img->img, top-{N_NEIGHBORS}, "
        "1 thread (2thr: 2 threads), recall@50 against the exact inner-product "
        f"top-{N_NEIGHBORS} of the float embeddings ({args.truth} queries).",
        flush=True,
    )
    results = []
    for n in (int(v) for v in args.n):
        print(f"\nN = {_fmt_n(n)}", flush=True)
        db, queries = _learned(args, n)
        X = np.ascontiguousarray(db.get("X", "embedding"), dtype=np.float32)
        Q = np.ascontiguousarray(queries.get("X", "embedding"), dtype=np.float32)
        bits, q_bits = db.get("X", "bits"), queries.get("X", "bits")
        codes, C = db.get("X", "codes"), db.codebooks
        d = X.shape[1]
        distinct, shared = _concentration(bits)
        print(
            f"  codes: {100 * distinct:.1f} % distinct, an item shares its code "
            f"with {shared:.1f} items on average",
            flush=True,
        )
        truth = exact_topk(X, Q[: args.truth])
        nq = args.queries
        rows = []

        def add(method, knob, qps, found, build, nbytes, qps2=float("nan")):
            rec = recall(found, truth)
            rows.append((method, knob, qps, qps2, rec, build, nbytes / n))
            print(
                f"  {method:<26} {knob:<14} {qps:>8.0f} {_f(qps2, 8, 0)} "
                f"{rec:>6.3f} {build:>7.1f} {nbytes / n:>7.1f}",
                flush=True,
            )

        print(
            f"  {'method':<26} {'knob':<14} {'q/s':>8} {'2thr':>8} {'rec@50':>6} "
            f"{'build s':>7} {'B/item':>7}",
            flush=True,
        )
        # skhash: alpha x stage1 (every stage1 must return the same results)
        reference = {}
        for stage1 in args.stage1:
            if stage1 == "ivf":
                continue
            est, build = _timed(
                lambda s=stage1: TwoStageRetriever(
                    n_neighbors=N_NEIGHBORS, backend="numba", stage1=s
                ).fit(db)
            )
            index_bytes = sum(a.nbytes for a in est._index["X"].values())
            index_bytes += est.codebooks_.nbytes
            for alpha in args.curve_alpha:
                L = int(alpha) if alpha >= 1 else round(alpha * n)
                if L > n:
                    continue
                est.set_params(alpha=L, n_jobs=None)
                qps = rate(lambda m: est.kneighbors(queries[:m]), nq, args.budget)
                est.set_params(n_jobs=2)
                qps2 = rate(lambda m: est.kneighbors(queries[:m]), nq, args.budget)
                est.set_params(n_jobs=None)
                found = est.kneighbors(queries[: args.truth])[1]
                same = reference.setdefault(L, found)
                if not np.array_equal(same, found):
                    raise AssertionError(f"stage1={stage1!r} changed the results")
                tables = getattr(est, "_mih_cache", {}).get("X")  # kept ones
                extra = ""
                if stage1 == "auto":
                    used = _mih.stage1_index(est, "X", max(L, N_NEIGHBORS))
                    extra = " ->mih" if used is not None else " ->scan"
                elif tables is not None:
                    extra = f" fb={tables.last_fallbacks}"
                nbytes = index_bytes + (0 if tables is None else tables.nbytes)
                add(
                    f"skhash {stage1}", f"L={L}{extra}", qps, found, build, nbytes, qps2
                )
        if "ivf" in args.stage1:
            _ivf_curve(args, db, queries, n, add)
        if args.skhash_only:
            results.append((n, rows))
            db = queries = X = None
            continue
        nlist = args.nlist or int(4 * np.sqrt(n))
        if not args.no_binary_faiss:
            _binary_faiss_curves(args, n, d, bits, codes, C, q_bits, Q, nq, nlist, add)
        _float_faiss_curves(args, n, d, X, Q, nq, nlist, add, _pq_books(args, d))
        results.append((n, rows))
        _summary(n, rows)
        db = queries = X = None
    if args.plot:
        _plot(results, args.plot)
    return results


def _binary_faiss_curves(args, n, d, bits, codes, C, q_bits, Q, nq, nlist, add):
    """faiss IndexBinaryFlat and IndexBinaryIVF (nprobe sweep), each with
    the same AQD re-rank as skhash."""
    import faiss

    # faiss IndexBinaryFlat + the same AQD re-rank
    flat, build = _timed(lambda: to_faiss(CodeSet(bits=bits, n_bits=d)))
    nbytes = _faiss_bytes(flat, True) + codes.nbytes + C.nbytes
    for L in [a for a in args.curve_alpha if a >= 1 and a <= min(n, 4096)]:
        fn = _rerank_fn(
            lambda qb, L: flat.search(qb, L)[1], q_bits, Q, codes, C, int(L)
        )
        qps = rate(fn, nq, args.budget)
        add("faiss BinaryFlat+rr", f"L={int(L)}", qps, fn(args.truth), build, nbytes)

    # faiss IndexBinaryIVF + re-rank, nprobe sweep
    def build_bivf():
        quantizer = faiss.IndexBinaryFlat(d)
        index = faiss.IndexBinaryIVF(quantizer, d, nlist)
        sample = np.random.default_rng(0).choice(n, min(n, 64 * nlist), replace=False)
        index.train(bits[np.sort(sample)])
        index.add(bits)
        return index, quantizer

    (bivf, _keep), build = _timed(build_bivf)
    nbytes = _faiss_bytes(bivf, True) + codes.nbytes + C.nbytes
    for L in [a for a in args.curve_alpha if 100 <= a <= 1000]:
        for nprobe in args.nprobe:
            bivf.nprobe = nprobe
            fn = _rerank_fn(
                lambda qb, L: bivf.search(qb, L)[1], q_bits, Q, codes, C, int(L)
            )
            qps = rate(fn, nq, args.budget)
            add(
                f"faiss BinaryIVF{nlist}+rr",
                f"L={int(L)} np={nprobe}",
                qps,
                fn(args.truth),
                build,
                nbytes,
            )


def _code_bytes(args):
    """Bytes per item of skhash's codes: the bits and one byte per codebook."""
    return args.curve_bits // 8 + args.curve_codebooks


def _pq_books(args, d):
    """faiss's 4-bit sub-quantizers at skhash's bytes per item (two per
    byte), lowered to a divisor of ``d`` (faiss's PQ needs one) if needed."""
    m = 2 * _code_bytes(args)
    while d % m:
        m -= 1
    return m


def _float_faiss_curves(args, n, d, X, Q, nq, nlist, add, m_pq):
    """faiss IndexPQFastScan, IndexIVFPQFastScan (``m_pq`` x 4 bits, nprobe
    sweep) and, up to ``--hnsw-max`` items, IndexHNSWFlat."""
    import faiss

    ip = faiss.METRIC_INNER_PRODUCT
    train = X[np.random.default_rng(1).choice(n, min(n, 65536), replace=False)]

    # faiss IndexPQFastScan, the same bytes per item (m_pq x 4 bits)
    def build_pqfs():
        index = faiss.IndexPQFastScan(d, m_pq, 4, ip)
        index.train(train)
        index.add(X)
        return index

    pqfs, build = _timed(build_pqfs)
    qps = rate(lambda m: pqfs.search(Q[:m], N_NEIGHBORS), nq, args.budget)
    found = pqfs.search(Q[: args.truth], N_NEIGHBORS)[1]
    add(f"faiss PQFastScan{m_pq}x4", "-", qps, found, build, _faiss_bytes(pqfs))

    # faiss IndexIVFPQFastScan (m_pq x 4 bits), nprobe sweep
    def build_ivfpqfs():
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFPQFastScan(quantizer, d, nlist, m_pq, 4, ip)
        index.train(train)
        index.add(X)
        return index, quantizer

    (ivfpq, _keep2), build = _timed(build_ivfpqfs)
    for nprobe in args.nprobe:
        ivfpq.nprobe = nprobe
        qps = rate(lambda m: ivfpq.search(Q[:m], N_NEIGHBORS), nq, args.budget)
        found = ivfpq.search(Q[: args.truth], N_NEIGHBORS)[1]
        add(
            f"faiss IVF{nlist}PQFS{m_pq}x4",
            f"np={nprobe}",
            qps,
            found,
            build,
            _faiss_bytes(ivfpq),
        )
    # faiss IndexHNSWFlat on the floats (its memory: 4 d B + the graph)
    if n <= args.hnsw_max:

        def build_hnsw():
            index = faiss.IndexHNSWFlat(d, 32, ip)
            faiss.omp_set_num_threads(os.cpu_count())
            index.add(X)
            faiss.omp_set_num_threads(1)
            return index

        hnsw, build = _timed(build_hnsw)
        for ef in args.ef:
            hnsw.hnsw.efSearch = ef
            qps = rate(lambda m: hnsw.search(Q[:m], N_NEIGHBORS), nq, args.budget)
            found = hnsw.search(Q[: args.truth], N_NEIGHBORS)[1]
            add(
                "faiss HNSWFlat32 (x)",
                f"ef={ef}",
                qps,
                found,
                build,
                _faiss_bytes(hnsw),
            )
        hnsw = None


def _quantizer_nprobe(value):
    """``--ivf-quantizer-nprobe``'s value as the parameter."""
    if value.lower() == "none":
        return None
    return value if value == "auto" else int(value)


def _ivf_curve(args, db, queries, n, add):
    """skhash ``stage1="ivf"``: alpha x nprobe sweep (recall also against the
    exhaustive two-stage result of the same alpha, the ``vs exh`` column)."""
    nlist = args.ivf_nlist
    est, build = _timed(
        lambda: TwoStageRetriever(
            n_neighbors=N_NEIGHBORS,
            backend="numba",
            stage1="ivf",
            nlist=nlist,
            random_state=0,
        ).fit(db)
    )
    ivf = est._ivf_cache["X"]
    sizes = np.diff(ivf.offsets)
    print(
        f"  skhash ivf: nlist={ivf.nlist} (largest list {sizes.max()}, "
        f"{int((sizes == 0).sum())} empty), built in {build:.1f} s",
        flush=True,
    )
    index_bytes = sum(a.nbytes for a in est._index["X"].values())
    index_bytes += est.codebooks_.nbytes + ivf.nbytes
    exhaustive = TwoStageRetriever(
        n_neighbors=N_NEIGHBORS, backend="numba", stage1="exhaustive"
    ).fit(db)
    for alpha in args.ivf_alpha:
        L = int(alpha) if alpha >= 1 else round(alpha * n)
        if L > n:
            continue
        exhaustive.set_params(alpha=L)
        ref = exhaustive.kneighbors(queries[: args.truth])[1]
        settings = itertools.product(args.ivf_nprobe, args.ivf_quantizer_nprobe)
        for nprobe, qnp in settings:
            groups = _quantizer_nprobe(qnp)
            est.set_params(alpha=L, nprobe=nprobe, n_jobs=None, quantizer_nprobe=groups)
            qps2 = float("nan")
            if args.two_threads:  # 1 and 2 threads in turns: the same moments
                qps, qps2 = rate_pair(
                    lambda m: est.set_params(n_jobs=None).kneighbors(queries[:m]),
                    lambda m: est.set_params(n_jobs=2).kneighbors(queries[:m]),
                    args.queries,
                    args.budget,
                )
                est.set_params(n_jobs=None)
            else:
                qps = rate(
                    lambda m: est.kneighbors(queries[:m]), args.queries, args.budget
                )
            found = est.kneighbors(queries[: args.truth])[1]
            groups = _ivf.quantizer_nprobe(est, ivf)
            add(
                f"skhash ivf{ivf.nlist} qnp={groups}",
                f"L={L} np={nprobe} vs exh {recall(found, ref):.2f}",
                qps,
                found,
                build,
                index_bytes,
                qps2,
            )


def _summary(n, rows):
    """Per recall level reached by a faiss index of the same memory (not the
    HNSW graph over the floats): fastest of each."""

    def best(pred, level):
        cands = [r for r in rows if pred(r[0]) and r[4] >= level]
        return max(cands, key=lambda r: r[2]) if cands else None

    ours = lambda m: m.startswith("skhash")  # noqa: E731
    theirs = lambda m: m.startswith("faiss") and "HNSW" not in m  # noqa: E731
    two = [(r[3] / r[2], r) for r in rows if ours(r[0]) and r[3] == r[3]]
    if two:  # the 2thr column: skhash on 2 threads over 1 thread, per setting
        lo, hi = min(two, key=lambda t: t[0]), max(two, key=lambda t: t[0])
        print(
            f"  2 threads / 1 thread, {len(two)} skhash settings: "
            f"{lo[0]:.2f}x ({lo[1][0]} {lo[1][1]}) to "
            f"{hi[0]:.2f}x ({hi[1][0]} {hi[1][1]}); "
            f"{sum(t[0] >= 1.7 for t in two)} of them >= 1.7x"
        )
    print(f"  summary N = {_fmt_n(n)}: fastest at each recall level (1 thread)")
    for level in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
        a, b = best(ours, level), best(theirs, level)
        if a is None and b is None:
            continue
        fa = f"{a[0]} {a[1]} {a[2]:.0f} q/s" if a else "-"
        fb = f"{b[0]} {b[1]} {b[2]:.0f} q/s" if b else "-"
        ratio = f"{a[2] / b[2]:.2f}x" if a and b else "-"
        print(f"    recall >= {level:.1f}: skhash {fa} | faiss {fb} | {ratio}")
    # the criterion: every recall level that a faiss index reaches
    # (each faiss point's recall), not only the round ones above
    levels = sorted({r[4] for r in rows if theirs(r[0])})
    pairs = [(lv, best(ours, lv), best(theirs, lv)) for lv in levels]
    met = [(a[2] / b[2], lv, a, b) for lv, a, b in pairs if a is not None]
    missed = [lv for lv, a, _ in pairs if a is None]
    if met:
        q, lv, a, b = min(met, key=lambda t: t[0])
        print(
            f"    every recall level a faiss index reaches ({len(levels)}, "
            f"{levels[0]:.3f} to {levels[-1]:.3f}): skhash's fastest >= "
            f"{q:.2f}x faiss's fastest; lowest at recall >= {lv:.3f} "
            f"({a[0]} {a[1]} {a[2]:.0f} q/s against {b[0]} {b[1]} "
            f"{b[2]:.0f} q/s); {len(missed)} levels skhash's settings do not "
            f"reach" + (f" (from {missed[0]:.3f})" if missed else "")
        )


def _plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.5))
    axes = np.atleast_1d(axes)
    for ax, (n, rows) in zip(axes, results):
        for method in dict.fromkeys(r[0] for r in rows):
            pts = sorted((r[4], r[2]) for r in rows if r[0] == method)
            ax.plot(*zip(*pts), marker="o", label=method)
        ax.set_yscale("log")
        ax.set_xlabel("recall@50 vs exact float search")
        ax.set_ylabel("queries/s, 1 thread")
        ax.set_title(f"N = {_fmt_n(n)}")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot saved to {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=float, nargs="+", default=[1e5, 1e6, 1e7])
    parser.add_argument("--bits", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--M", type=int, nargs="+", default=[4, 8])
    parser.add_argument(
        "--alpha",
        type=float,
        nargs="+",
        default=[100, 0.01],
        help="shortlist sizes: >= 1 is L, < 1 a fraction of N",
    )
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument(
        "--budget",
        type=float,
        default=3.0,
        help="seconds one timed run of a slow baseline may take",
    )
    parser.add_argument(
        "--max-float",
        type=float,
        default=1e6,
        help="largest N with float embeddings kept (exact search, recall); "
        "larger N: stage 1 + re-ranking, no exact baseline, and only 64 bits, "
        "M = 8 and absolute alpha*N unless --all-big",
    )
    parser.add_argument(
        "--all-big",
        action="store_true",
        help="every bit length, M and alpha also above --max-float",
    )
    parser.add_argument("--fig3-n", type=float, default=1e5)
    parser.add_argument(
        "--fig3-lengths", type=int, nargs="+", default=[16, 32, 64, 128, 256]
    )
    parser.add_argument("--no-fig3", action="store_true")
    parser.add_argument(
        "--curves",
        action="store_true",
        help="only the recall-throughput curves on learned (HQHasher) codes, "
        "for each --n: skhash alpha x stage1 against faiss indexes",
    )
    parser.add_argument("--curve-bits", type=int, default=64)
    parser.add_argument(
        "--curve-codebooks",
        type=int,
        default=8,
        help="the curves' additive codebooks (of 256 codewords, 1 B/item each)",
    )
    parser.add_argument(
        "--curve-alpha",
        type=float,
        nargs="+",
        default=[100, 300, 1000, 3000, 10000],
        help="shortlist sizes of the curves (>= 1: L, < 1: fraction of N)",
    )
    parser.add_argument(
        "--stage1",
        nargs="+",
        default=["exhaustive", "mih", "ivf"],
        help="curves' stage1 ('ivf': swept over --ivf-alpha x --ivf-nprobe)",
    )
    parser.add_argument(
        "--ivf-nprobe", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64]
    )
    parser.add_argument(
        "--ivf-alpha", type=float, nargs="+", default=[100, 1000], help="ivf's L"
    )
    parser.add_argument(
        "--ivf-nlist", type=int, default=None, help="skhash nlist (None: default)"
    )
    parser.add_argument(
        "--ivf-quantizer-nprobe",
        nargs="+",
        default=["auto"],
        help="skhash quantizer_nprobe values ('auto', 'none' or ints)",
    )
    parser.add_argument(
        "--two-threads", action="store_true", help="also time skhash ivf on 2 threads"
    )
    parser.add_argument(
        "--skhash-only", action="store_true", help="curves: no faiss index (large N)"
    )
    parser.add_argument(
        "--no-binary-faiss",
        action="store_true",
        help="curves: skip faiss's IndexBinaryFlat and IndexBinaryIVF (+ re-rank)",
    )
    parser.add_argument("--nprobe", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--nlist", type=int, default=None, help="default 4 sqrt(N)")
    parser.add_argument("--ef", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument(
        "--hnsw-max", type=float, default=2e5, help="largest N given an HNSW index"
    )
    parser.add_argument("--train", type=int, default=5000, help="HQ training items")
    parser.add_argument("--epochs", type=int, default=3, help="HQ training epochs")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--difficulty", type=float, default=0.5)
    parser.add_argument("--truth", type=int, default=200, help="recall queries")
    parser.add_argument("--plot", default=None, help="save the curves to this file")
    parser.add_argument(
        "--cache", default=None, help="directory caching the learned codes (npz)"
    )
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="headline row only: --n 1e6 --bits 64 --M 8 --alpha 100 --no-fig3",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.bits, args.M, args.alpha = [1e6], [64], [8], [100]
        args.no_fig3 = True
    try:
        import faiss
    except ImportError:
        sys.exit("bench_search.py needs faiss: pip install skhash[benchmark]")
    faiss.omp_set_num_threads(1)
    print(
        f"skhash bench_search: {os.cpu_count()} CPUs, faiss {faiss.__version__}, "
        f"top-{N_NEIGHBORS}, {args.queries} queries, K = {K}",
        flush=True,
    )
    t0 = time.perf_counter()
    if args.curves:
        with threadpool_limits(limits=1):
            curves(args)
        print(f"Total time {time.perf_counter() - t0:.0f} s")
        return
    if not args.no_compile:
        compile_times()
    get_backend("numba")  # compiled (or loaded) before any timing
    with threadpool_limits(limits=1):
        run_grid(args)
        if not args.no_fig3:
            figure3(args)
    print(
        "\nColumns: ours / 2thr = TwoStageRetriever.kneighbors with 1 / 2 threads "
        "(x = 2thr/ours); stage1 = Hamming shortlist alone; floor = popcount of "
        "every pair, no selection (% = stage1/floor); bin+rr = faiss "
        "IndexBinaryFlat + numpy AQD re-rank; PQ = faiss IndexPQ full scan; "
        "exact = float brute force; rec/recPQ = recall@50 of ours / IndexPQ vs "
        "exact float top-50; B/item = index bytes per item incl. codebooks "
        "(+5%? = within 5% of n_bits/8 + M bytes); peakMB = peak memory of a "
        f"{args.queries}-query search above the index."
    )
    print(f"Total time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
