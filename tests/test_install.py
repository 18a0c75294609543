"""Fail loudly when an install step is missing (CI installs from scratch)."""

import importlib
import importlib.metadata

import pytest


def test_skhash_is_installed_with_metadata():
    assert importlib.metadata.version("skhash")
    import skhash

    assert skhash.__version__ == importlib.metadata.version("skhash")


@pytest.mark.parametrize(
    "module",
    ["numpy", "scipy", "sklearn", "torch", "skorch", "joblib", "numba", "tqdm"],
)
def test_runtime_dependencies_import(module):
    importlib.import_module(module)


def test_test_dependencies_import():
    # the [tests] extra: hypothesis drives property tests, skops secure loading
    for module in ("hypothesis", "skops", "matplotlib"):
        importlib.import_module(module)


def test_shipped_data_is_in_the_package():
    from importlib import resources

    data = resources.files("skhash.datasets") / "data"
    assert (data / "wiki.npz").is_file() and (data / "wiki_README.md").is_file()
