"""HQ on Wiki: the HQ paper's Table 2 layout, HQ-b, and the alpha sweep.

Trains, at each code length, the lossless reference (similarity loss only,
exact cosine ranking), the binary-only model (lambda_q = 0, Hamming ranking),
the quantization-only model (lambda_h = lambda_b = 0, AQD over the whole
database, the CDQ-style model) and HQ (all four losses, Hamming shortlist of
alpha*N = 100 then AQD re-ranking), and prints MAP@50 image->text,
text->image and their harmonic mean on Wiki's standard split (database =
the 2,173 training pairs, queries = the 693 test pairs), with fit and search
times. Then HQ-b (second stage by Hamming distance between quantization
codes) and an alpha sweep at 64 bits (the paper's Figure 4).

Run: ``python benchmarks/bench_hq.py`` (``--quick`` for 16 and 64 bits only).
"""

import argparse
import time

from skhash import HQHasher, TwoStageRetriever
from skhash.datasets import load_wiki
from skhash.metrics import harmonic_mean

RANDOM_STATE = 0


def evaluate(learner, retriever, data):
    db = learner.transform(data.X_train)
    q = learner.transform(data.X_test)
    retriever.fit(db, data.y_train)
    retriever.kneighbors(q[:1], direction="img->txt")  # warm-up (JIT compile)
    t0 = time.perf_counter()
    i2t = retriever.score(q, data.y_test, direction="img->txt")
    t2i = retriever.score(q, data.y_test, direction="txt->img")
    search = time.perf_counter() - t0
    harm = harmonic_mean(i2t, t2i)
    return i2t, t2i, harm, 2 * len(data.y_test) / search


def fit(data, n_bits, **params):
    t0 = time.perf_counter()
    model = HQHasher(n_bits=n_bits, random_state=RANDOM_STATE, n_jobs=1, **params)
    model.fit(data.X_train, data.y_train)
    return model, time.perf_counter() - t0


MODELS = {
    # name: (learner params, retriever params)
    "lossless": (
        dict(lambda_h=0.0, lambda_b=0.0, lambda_q=0.0),
        dict(alpha=1.0, rerank="exact"),
    ),
    "binary-only": (dict(lambda_q=0.0), dict(alpha=0, rerank="none")),
    "quantization-only": (
        dict(lambda_h=0.0, lambda_b=0.0),
        dict(alpha=1.0, rerank="aqd"),
    ),
    "HQ": ({}, dict(alpha=100, rerank="aqd")),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    bits = [16, 64] if args.quick else args.bits
    data = load_wiki()
    print(f"Wiki: database {len(data.y_train)}, queries {len(data.y_test)}; MAP@50")
    header = f"{'model':<18}{'bits':>5}{'I->T':>8}{'T->I':>8}{'harm':>8}"
    print(header + f"{'fit s':>8}{'q/s':>10}")
    hq_models = {}
    for n_bits in bits:
        for name, (lparams, rparams) in MODELS.items():
            model, fit_s = fit(data, n_bits, **lparams)
            i2t, t2i, harm, qps = evaluate(model, TwoStageRetriever(**rparams), data)
            print(
                f"{name:<18}{n_bits:>5}{i2t:>8.3f}{t2i:>8.3f}{harm:>8.3f}"
                f"{fit_s:>8.1f}{qps:>10.0f}",
                flush=True,
            )
            if name == "HQ":
                hq_models[n_bits] = model
        model = hq_models[n_bits]
        i2t, t2i, harm, qps = evaluate(
            model, TwoStageRetriever(alpha=100, rerank="hamming-codes"), data
        )
        print(
            f"{'HQ-b':<18}{n_bits:>5}{i2t:>8.3f}{t2i:>8.3f}{harm:>8.3f}"
            f"{'':>8}{qps:>10.0f}",
            flush=True,
        )
    sweep_bits = 64 if 64 in hq_models else bits[-1]
    print(f"\nalpha sweep, HQ at {sweep_bits} bits (alpha = shortlist / database)")
    print(f"{'alpha':>6}{'I->T':>8}{'T->I':>8}{'harm':>8}{'q/s':>10}")
    for alpha in (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0):
        i2t, t2i, harm, qps = evaluate(
            hq_models[sweep_bits], TwoStageRetriever(alpha=alpha, rerank="aqd"), data
        )
        print(f"{alpha:>6.2f}{i2t:>8.3f}{t2i:>8.3f}{harm:>8.3f}{qps:>10.0f}")


if __name__ == "__main__":
    main()
