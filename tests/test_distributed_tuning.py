"""GridSearchCV over a skhash Pipeline on joblib's Dask backend: the same
cv_results_ as the serial run, each learner on one thread inside a worker."""

import sys

import numpy as np
import pytest
import torch
from numpy.testing import assert_array_equal
from sklearn.model_selection import GridSearchCV, KFold
from threadpoolctl import threadpool_info

from skhash.datasets import make_cross_modal
from skhash.hashing import HQHasher
from skhash.metrics import make_map_scorer
from skhash.pipeline import Pipeline
from skhash.retrieval import TwoStageRetriever

joblib = pytest.importorskip("joblib")
pytest.importorskip("distributed")

HQ_PARAMS = {
    "n_bits": 16,
    "n_codebooks": 2,
    "n_codewords": 8,
    "hidden_layer_sizes": (16,),
    "max_epochs": 1,
    "batch_size": 64,
    "quantization_warmup": 1,
    "device": "cpu",
    "random_state": 0,
}


class ThreadRecordingHQ(HQHasher):
    """HQHasher that records the CPU threads its training could use."""

    def fit(self, X, y=None):
        # what fit runs under with n_jobs=None: torch's pool and the BLAS pools
        threads = (
            torch.get_num_threads(),
            max((p["num_threads"] for p in threadpool_info()), default=1),
        )
        super().fit(X, y)
        self.fit_threads_ = threads
        return self


def _threads_scorer(est, X, y):
    torch_threads, blas_threads = est.steps[0][1].fit_threads_
    return {
        "map": make_map_scorer(k=30)(est, X, y),
        "torch_threads": torch_threads,
        "blas_threads": blas_threads,
    }


def _search():
    pipe = Pipeline(
        [("hq", ThreadRecordingHQ(**HQ_PARAMS)), ("search", TwoStageRetriever())]
    )
    return GridSearchCV(
        pipe,
        {"hq__lambda_q": [0.0, 0.1], "search__alpha": [0, 20]},
        scoring=_threads_scorer,
        refit="map",
        cv=KFold(2, shuffle=True, random_state=0),
    )


@pytest.fixture(scope="module")
def client(dask_client):
    import cloudpickle

    # the workers get this module's learner and scorer by value
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    dask_client.wait_for_workers(2, timeout=120)
    return dask_client


def test_dask_backend_equals_serial_run(client):
    X, y = make_cross_modal(120, n_classes=3, random_state=0)
    serial = _search().set_params(n_jobs=1).fit(X, y)
    with joblib.parallel_backend("dask"):
        distributed = _search().set_params(n_jobs=-1).fit(X, y)
    # the fits did run on the workers
    assert client.run(lambda: 1) and len(client.scheduler_info()["workers"]) == 2
    for key in serial.cv_results_:
        if key.endswith("_test_map"):
            assert_array_equal(
                distributed.cv_results_[key], serial.cv_results_[key], err_msg=key
            )
    assert serial.best_params_ == distributed.best_params_
    scores = distributed.cv_results_["mean_test_map"]
    assert np.all((scores > 0) & (scores <= 1))
    # inside a worker every learner trained on one thread (the nanny sets
    # OMP/MKL/OPENBLAS_NUM_THREADS=1, torch reads it; n_jobs=None keeps it):
    # two single-threaded workers, no oversubscription
    assert set(distributed.cv_results_["mean_test_torch_threads"]) == {1.0}
    assert set(distributed.cv_results_["mean_test_blas_threads"]) == {1.0}


def test_n_jobs_sets_the_threads_inside_a_worker(client):
    # an explicit n_jobs is honoured inside the worker's training
    X, y = make_cross_modal(60, n_classes=3, random_state=1)

    def fit_and_report(n_jobs):
        hq = ThreadRecordingHQ(**HQ_PARAMS, n_jobs=n_jobs)
        seen = []
        original = torch.set_num_threads

        def spy(n):
            seen.append(n)
            original(n)

        torch.set_num_threads = spy
        try:
            hq.fit(X, y)
        finally:
            torch.set_num_threads = original
        return seen, torch.get_num_threads()

    seen, after = client.submit(fit_and_report, 2, pure=False).result()
    assert seen[0] == 2 and after == 1  # set for the fit, then restored
    seen, after = client.submit(fit_and_report, None, pure=False).result()
    assert seen == [] and after == 1  # None: the worker's single thread
