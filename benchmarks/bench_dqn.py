"""Benchmark of DQNQuantizer: MAP@50 on digits (single-modal) and Wiki (cross-modal).

Run from the repository root::

    python benchmarks/bench_dqn.py            # full run, ~2-3 minutes on 2 cores
    python benchmarks/bench_dqn.py --quick    # fewer epochs, well under a minute

What it prints:

1. ``sklearn.datasets.load_digits``, stratified 75/25 split (seed 0); database =
   training part, queries = test part. MAP@50 (variant "djsrh", ties broken by
   lower database index) of DQN at 16, 32 and 48 bits (``M x K`` product codes,
   bits = ``M log2 K``), beside exact float cosine on the raw pixels, PCA + sign
   codes ranked by Hamming distance, and the DQN embedding ``z`` itself ranked
   by exact cosine (the lossless ceiling of the codes).
2. The paper's ablations at 32 bits on digits: DQN2+ (``lambda_q=0``: cosine loss
   only, product quantization fitted after training) and DQN_ip
   (``similarity="ip"``).
3. Wiki (``skhash.datasets.load_wiki``, standard split: database = X_train,
   queries = X_test): image->text, text->image and their harmonic mean at 16, 32
   and 64 bits, beside the lossless two-tower reference (the same towers trained
   without quantization, ``lambda_q=0``, continuous ``z`` ranked by exact cosine).
4. Fit time (seconds, per model) and search speed (queries/s of a
   ``kneighbors`` call for all the queries, best of a few repeats after a
   warm-up).

The search runs through ``skhash.retrieval.TwoStageRetriever`` when it is
available (codes without bits: AQD over the whole database, ``rerank="aqd-l2"``
as in DQN eq. 5, or ``"aqd"`` for the inner product); otherwise the same ranking
is computed with ``skhash.quantization.aqd`` and a stable argsort.

Threads: torch and BLAS use ``--threads`` threads (default 1). On a small shared
machine, oversubscribed OpenBLAS/torch threads made fits several times slower
than a single thread, so the default is 1.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import sklearn
import torch
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

import skhash
from skhash.datasets import load_wiki
from skhash.metrics import (
    average_precision_from_ranking,
    harmonic_mean,
    mean_average_precision,
    ranked_relevance,
    relevance,
)
from skhash.quantization import DQNQuantizer, aqd

try:  # being finished in skhash/retrieval/ by another developer
    from skhash.retrieval import TwoStageRetriever
except ImportError:  # pragma: no cover - depends on the checkout
    TwoStageRetriever = None

RANDOM_STATE = 0
K = 50  # MAP@50
DIGITS_CODES = {16: (2, 256), 32: (4, 256), 48: (6, 256)}  # bits: (M, K)
WIKI_CODES = {16: (2, 256), 32: (4, 256), 64: (8, 256)}


# --------------------------------------------------------------------------- #
# search and scoring
# --------------------------------------------------------------------------- #
def map_at_k(idx, y_query, y_database):
    """MAP@K (djsrh) of rankings given as database indices, best first."""
    rel = ranked_relevance(y_query, y_database, idx)
    return float(average_precision_from_ranking(rel, variant="djsrh").mean())


def _timed(fn, repeats):
    fn()  # warm-up
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return out, best


def search(db, queries, *, src, dst, rerank, repeats):
    """Top-K database rows of each query and queries/s.

    ``db``/``queries`` are CodeSets; ``rerank`` is "aqd-l2", "aqd" (inner
    product) or "exact" (cosine of the float embeddings).
    """
    q = queries[src]
    if TwoStageRetriever is not None:
        database = db[dst] if rerank != "exact" else db[dst].without("codes")
        retriever = TwoStageRetriever(alpha=1.0, n_neighbors=K, rerank=rerank)
        retriever.fit(database)
        direction = f"{src}->{dst}"

        def run():
            return retriever.kneighbors(q, direction=direction, return_distance=False)

    else:
        db_codes, db_emb = db[dst].codes, db[dst].embedding
        C = db.codebooks

        def run():
            if rerank == "exact":
                a = q.embedding / np.linalg.norm(q.embedding, axis=1, keepdims=True)
                b = db_emb / np.linalg.norm(db_emb, axis=1, keepdims=True)
                dist = -(a @ b.T)
            elif rerank == "aqd":
                dist = -aqd(q.embedding, db_codes, C, metric="ip")
            else:
                dist = aqd(q.embedding, db_codes, C, metric="l2")
            return np.argsort(dist, axis=1, kind="stable")[:, :K]

    idx, seconds = _timed(run, repeats)
    return idx, len(q) / seconds


def exact_cosine_map(X_query, X_database, y_query, y_database):
    a = X_query / np.linalg.norm(X_query, axis=1, keepdims=True)
    b = X_database / np.linalg.norm(X_database, axis=1, keepdims=True)
    return mean_average_precision(relevance(y_query, y_database), a @ b.T, k=K)


def pca_sign_map(n_bits, X_train, X_test, y_train, y_test):
    pca = PCA(n_components=n_bits, random_state=RANDOM_STATE).fit(X_train)
    B_db, B_q = pca.transform(X_train) > 0, pca.transform(X_test) > 0
    hamming = (B_q[:, None, :] != B_db[None, :, :]).sum(-1)
    return mean_average_precision(relevance(y_test, y_train), -hamming, k=K)


def fit_dqn(X, y, n_codebooks, n_codewords, **params):
    model = DQNQuantizer(
        n_codebooks,
        n_codewords=n_codewords,
        device="cpu",
        random_state=RANDOM_STATE,
        **params,
    )
    start = time.perf_counter()
    model.fit(X, y)
    return model, time.perf_counter() - start


# --------------------------------------------------------------------------- #
# the three parts
# --------------------------------------------------------------------------- #
def bench_digits(params, repeats):
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=RANDOM_STATE
    )
    print(
        f"\n## 1. load_digits, single-modal: database {len(X_tr)} (train), "
        f"queries {len(X_te)} (test), MAP@{K}"
    )
    bits = list(DIGITS_CODES)
    header = f"{'method':<44}" + "".join(f"{b:>3} bits " for b in bits)
    print(header + f"{'fit s':>8} {'queries/s':>10}")  # mean fit, median speed
    print("-" * (len(header) + 20))

    raw = exact_cosine_map(X_te, X_tr, y_te, y_tr)
    print(f"{'exact cosine, raw pixels (64 floats)':<44}" + f"{raw:>9.3f}" * len(bits))
    pca = [pca_sign_map(b, X_tr, X_te, y_tr, y_te) for b in bits]
    print(f"{'PCA + sign, Hamming ranking':<44}" + "".join(f"{v:>9.3f}" for v in pca))

    rows = {"aqd-l2": [], "aqd": [], "exact": []}
    fit_s, qps = [], {k: [] for k in rows}
    for M, Kw in DIGITS_CODES.values():
        model, seconds = fit_dqn(X_tr, y_tr, M, Kw, **params)
        fit_s.append(seconds)
        db, q = model.transform(X_tr), model.transform(X_te)
        for rerank in rows:
            idx, speed = search(db, q, src="X", dst="X", rerank=rerank, repeats=repeats)
            rows[rerank].append(map_at_k(idx, y_te, y_tr))
            qps[rerank].append(speed)
    layout = ", ".join(f"{M}x{Kw}" for M, Kw in DIGITS_CODES.values())
    labels = {
        "aqd-l2": f"DQN, AQD l2 (M x K = {layout})",
        "aqd": "DQN, AQD inner product",
        "exact": "DQN z, exact cosine (float, no codes)",
    }
    for rerank, values in rows.items():
        print(
            f"{labels[rerank]:<44}"
            + "".join(f"{v:>9.3f}" for v in values)
            + f"{np.mean(fit_s):>8.1f} {np.median(qps[rerank]):>10.0f}"
        )
    return (X_tr, X_te, y_tr, y_te), rows["aqd-l2"], fit_s[1]


def bench_ablations(data, params, dqn32_map, dqn32_fit, repeats):
    X_tr, X_te, y_tr, y_te = data
    M, Kw = DIGITS_CODES[32]
    print(f"\n## 2. Ablations at 32 bits ({M}x{Kw}) on load_digits, MAP@{K} (AQD l2)")
    print(f"{'variant':<44}{'MAP@50':>9}{'fit s':>8}")
    print("-" * 61)
    lambda_q = params.get("lambda_q", DQNQuantizer().lambda_q)
    label = f"DQN (cosine loss + PQ loss, lambda_q={lambda_q})"
    print(f"{label:<44}{dqn32_map:>9.3f}{dqn32_fit:>8.1f}")
    out = {}
    for label, extra in [
        ("DQN2+ (lambda_q=0: cosine loss, then PQ)", {"lambda_q": 0.0}),
        ('DQN_ip (similarity="ip")', {"similarity": "ip"}),
    ]:
        model, seconds = fit_dqn(X_tr, y_tr, M, Kw, **{**params, **extra})
        db, q = model.transform(X_tr), model.transform(X_te)
        idx, _ = search(db, q, src="X", dst="X", rerank="aqd-l2", repeats=repeats)
        out[label] = map_at_k(idx, y_te, y_tr)
        print(f"{label:<44}{out[label]:>9.3f}{seconds:>8.1f}")
    return out


def bench_wiki(params, repeats):
    X_tr, X_te, y_tr, y_te = load_wiki(return_X_y=True)
    print(
        f"\n## 3. Wiki, cross-modal: database {len(X_tr)} pairs (X_train), queries "
        f"{len(X_te)} (X_test), MAP@{K}"
    )
    header = (
        f"{'method':<46}{'bits':>5}{'img->txt':>10}{'txt->img':>10}{'harmonic':>10}"
        f"{'% of ref':>10}{'fit s':>8}{'queries/s':>11}"
    )
    print(header)
    print("-" * len(header))

    def evaluate(model, rerank):
        db, q = model.transform(X_tr), model.transform(X_te)
        scores, speeds = [], []
        for src, dst in [("img", "txt"), ("txt", "img")]:
            idx, speed = search(db, q, src=src, dst=dst, rerank=rerank, repeats=repeats)
            scores.append(map_at_k(idx, y_te, y_tr))
            speeds.append(speed)
        return scores[0], scores[1], harmonic_mean(*scores), float(np.median(speeds))

    M0, K0 = WIKI_CODES[32]
    ref_model, ref_fit = fit_dqn(X_tr, y_tr, M0, K0, **{**params, "lambda_q": 0.0})
    i2t, t2i, hm_ref, speed = evaluate(ref_model, "exact")
    print(
        f"{'reference: lambda_q=0, exact cosine on z':<46}{'float':>5}{i2t:>10.3f}"
        f"{t2i:>10.3f}{hm_ref:>10.3f}{100.0:>9.1f}%{ref_fit:>8.1f}{speed:>11.0f}"
    )
    ratios = {}
    for b, (M, Kw) in WIKI_CODES.items():
        model, seconds = fit_dqn(X_tr, y_tr, M, Kw, **params)
        i2t, t2i, hm, speed = evaluate(model, "aqd-l2")
        ratios[b] = hm / hm_ref
        label = f"DQN, AQD l2 ({M}x{Kw})"
        print(
            f"{label:<46}{b:>5}{i2t:>10.3f}{t2i:>10.3f}{hm:>10.3f}"
            f"{100 * ratios[b]:>9.1f}%{seconds:>8.1f}{speed:>11.0f}"
        )
    return ratios


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs (smoke run)")
    parser.add_argument("--threads", type=int, default=1, help="torch/BLAS threads")
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="max_epochs (default: DQNQuantizer's, or 10 with --quick)",
    )
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    params = {"max_epochs": 10} if args.quick else {}
    if args.epochs is not None:
        params = {"max_epochs": args.epochs}
    repeats = 2 if args.quick else 5
    search_by = (
        "TwoStageRetriever" if TwoStageRetriever is not None else "aqd + argsort"
    )
    print(
        f"# DQNQuantizer benchmark{' (--quick)' if args.quick else ''}: skhash "
        f"{skhash.__version__}, torch {torch.__version__}, scikit-learn "
        f"{sklearn.__version__}, {platform.machine()}, {args.threads} thread(s); "
        f"search by {search_by}"
    )
    print(
        "# DQNQuantizer defaults"
        + (f" except {params}" if params else "")
        + f", device='cpu', random_state={RANDOM_STATE}"
    )
    start = time.perf_counter()
    digits, dqn_maps, fit32 = bench_digits(params, repeats)
    bench_ablations(digits, params, dqn_maps[1], fit32, repeats)
    ratios = bench_wiki(params, repeats)

    print("\n## Checks")
    ok_digits = min(dqn_maps) >= 0.97
    print(
        f"[{'PASS' if ok_digits else 'FAIL'}] digits: DQN MAP@50 >= 0.97 at every "
        f"bit length (min {min(dqn_maps):.3f})"
    )
    worst = min(ratios.values())
    ok_wiki = worst >= 0.95
    print(
        f"[{'PASS' if ok_wiki else 'FAIL'}] wiki: DQN harmonic MAP@50 within 5% of "
        f"the lossless reference (worst {100 * worst:.1f}%)"
    )
    print(f"# total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
