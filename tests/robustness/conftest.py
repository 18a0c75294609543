import shutil

import pytest
from robust_cases import Context


@pytest.fixture(scope="session")
def ctx():
    """Tiny data and fitted estimators shared by the robustness tests (never
    mutated: a test that changes an estimator works on a copy)."""
    context = Context()
    yield context
    if "tmpdir" in vars(context):  # created on first use
        shutil.rmtree(context.tmpdir, ignore_errors=True)
