import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny networks train far faster on one thread than on contended cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def small_cross_modal():
    """Tiny seeded paired data: 3 classes, image 8-d, text 5-d (120 items)."""
    rng = np.random.RandomState(0)
    y = np.repeat(np.arange(3), 40)
    centers_img = rng.randn(3, 8) * 2
    centers_txt = rng.randn(3, 5) * 2
    X_img = centers_img[y] + rng.randn(120, 8)
    X_txt = centers_txt[y] + rng.randn(120, 5)
    return X_img, X_txt, y


@pytest.fixture(scope="session")
def dask_client():
    """A dask LocalCluster of 2 worker processes (one thread each), started
    once for the tests of the Dask integration (sharded search, tuning)."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        silence_logs=50,
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()
