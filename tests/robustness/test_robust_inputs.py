"""Every bad input of robust_cases.CASES gets its documented outcome."""

import pytest
from robust_cases import CASES, ERRORS_MD, render_table


def _param(case):
    marks = ()
    if case.xfail:
        marks = pytest.mark.xfail(strict=True, reason=case.xfail)
    return pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_bad_input(case, ctx):
    if case.raises is None:
        result = case.run(ctx)
        if case.check is not None:
            case.check(result, ctx)
        return
    with pytest.raises(case.raises, match=case.pattern):
        case.run(ctx)


def test_errors_table_is_current():
    with open(ERRORS_MD, encoding="utf-8") as f:
        on_disk = f.read()
    assert on_disk == render_table(), (
        "tests/robustness/ERRORS.md is stale: regenerate it with "
        "`python tests/robustness/robust_cases.py`."
    )
