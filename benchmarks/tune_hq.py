"""Choose HQHasher's defaults by cross-validation on Wiki's training set.

GridSearchCV over HQHasher's quantization weight and learning rate and the
retriever's alpha, through skhash.Pipeline and the MAP@50 scorer. Each fold's
held-out part queries the fold's training part as the database (the papers'
protocol). ``Pipeline(memory=...)`` keeps each fitted learner, so the alpha
values cost no extra training. Wiki's test split is never touched.

Run: ``python benchmarks/tune_hq.py`` (``--bits 16 64`` to pick code lengths).
"""

import argparse
import tempfile
import time

from sklearn.model_selection import GridSearchCV, StratifiedKFold

from skhash import HQHasher, Pipeline, TwoStageRetriever
from skhash.datasets import load_wiki
from skhash.metrics import make_map_scorer

GRID = {
    "hq__lambda_q": [0.01, 0.1, 1.0],
    "hq__lr": [1e-3, 3e-3],
    "search__alpha": [0, 100, 1.0],
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", type=int, nargs="+", default=[32])
    parser.add_argument("--n-jobs", type=int, default=2)
    args = parser.parse_args(argv)
    wiki = load_wiki()
    for n_bits in args.bits:
        with tempfile.TemporaryDirectory() as cache:
            pipe = Pipeline(
                [
                    ("hq", HQHasher(n_bits, random_state=0, n_jobs=1)),
                    ("search", TwoStageRetriever()),
                ],
                memory=cache,
            )
            search = GridSearchCV(
                pipe,
                GRID,
                scoring=make_map_scorer(k=50),
                cv=StratifiedKFold(3, shuffle=True, random_state=0),
                n_jobs=args.n_jobs,
            )
            t0 = time.perf_counter()
            search.fit(wiki.X_train, wiki.y_train)
            elapsed = time.perf_counter() - t0
        print(
            f"{n_bits} bits: {len(search.cv_results_['params'])} candidates x 3 "
            f"folds in {elapsed:.0f} s; harmonic MAP@50 (mean over folds)"
        )
        res = search.cv_results_
        order = res["rank_test_score"].argsort()
        for i in order:
            p = res["params"][i]
            print(
                f"  lambda_q={p['hq__lambda_q']:<5} lr={p['hq__lr']:<6} "
                f"alpha={p['search__alpha']:<4} {res['mean_test_score'][i]:.3f} "
                f"± {res['std_test_score'][i]:.3f}"
            )
        print(f"  best: {search.best_params_} -> {search.best_score_:.3f}")
        print(
            f"  test split, refitted best: {search.score(wiki.X_test, wiki.y_test):.3f}"
        )


if __name__ == "__main__":
    main()
