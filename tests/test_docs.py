"""The documentation: the Sphinx build, and numpydoc docstrings of public names.

The build test runs ``sphinx-build -W --keep-going -D plot_gallery=0`` on a
copy of ``docs/`` and ``examples/`` (the gallery pages are generated, the
scripts are not run), so that it takes well under a minute. The full build,
which runs the gallery, is documented in ``docs/index.rst``.
"""

import importlib
import inspect
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Subpackages whose ``__all__`` lists public names; the top level too.
PUBLIC_MODULES = [
    "skhash",
    "skhash.callbacks",
    "skhash.compose",
    "skhash.datasets",
    "skhash.exceptions",
    "skhash.hashing",
    "skhash.metrics",
    "skhash.nn",
    "skhash.pipeline",
    "skhash.plotting",
    "skhash.quantization",
    "skhash.retrieval",
    "skhash.utils",
]

# numpydoc validation codes every public name must pass:
# GL08 no docstring, PR01 a parameter is not documented, PR02 a documented
# parameter does not exist, EX01 no Examples section.
NAME_CHECKS = ("GL08", "PR01", "PR02", "EX01")
# Public methods and properties must document their parameters (Examples
# are asked of the public names only).
METHOD_CHECKS = ("PR01", "PR02")

# Explicit exceptions: "qualified name" -> {code: reason}.
EXCEPTIONS: dict = {}


def _public_names():
    names = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            if name.startswith("__"):  # __version__
                continue
            names.append(f"{module_name}.{name}")
    return names


def _public_methods():
    seen, out = set(), []
    for qualname in _public_names():
        module_name, _, name = qualname.rpartition(".")
        obj = getattr(importlib.import_module(module_name), name)
        if not inspect.isclass(obj) or obj in seen:
            continue
        seen.add(obj)
        # its own methods and those of skhash's bases and mixins (save/load
        # of the retrievers live on mixins), each public name once
        own = [k for k in obj.__mro__ if k.__module__.startswith("skhash")]
        for attr, value in [item for k in own for item in vars(k).items()]:
            if attr.startswith("_") and attr != "__call__":
                continue
            func = value.fget if isinstance(value, property) else value
            func = getattr(func, "__func__", func)
            if not inspect.isfunction(func) or not func.__doc__:
                continue  # undocumented helpers (torch's forward...) are not API
            if f"{qualname}.{attr}" not in out:
                out.append(f"{qualname}.{attr}")
    return out


def _validation_errors(qualname, codes):
    from numpydoc.validate import validate

    result = validate(qualname)
    allowed = EXCEPTIONS.get(qualname, {})
    return [
        f"{code}: {message}"
        for code, message in result["errors"]
        if code in codes and code not in allowed
    ]


@pytest.mark.parametrize("qualname", _public_names())
def test_public_name_has_numpydoc_docstring_with_examples(qualname):
    errors = _validation_errors(qualname, NAME_CHECKS)
    assert not errors, f"{qualname}:\n" + "\n".join(errors)


@pytest.mark.parametrize("qualname", _public_methods())
def test_public_method_documents_its_parameters(qualname):
    errors = _validation_errors(qualname, METHOD_CHECKS)
    assert not errors, f"{qualname}:\n" + "\n".join(errors)


def test_exceptions_are_still_needed():
    """An exception that no longer applies must be removed from the list."""
    from numpydoc.validate import validate

    for qualname, codes in EXCEPTIONS.items():
        found = {code for code, _ in validate(qualname)["errors"]}
        stale = set(codes) - found
        assert not stale, f"{qualname} now passes {sorted(stale)}: drop the exception"


def test_docs_build_without_warnings(tmp_path):
    """``sphinx-build -W --keep-going`` succeeds, without running the gallery."""
    for module in (
        "sphinx",
        "sphinx_gallery",
        "numpydoc",
        "pydata_sphinx_theme",
        "matplotlib",
    ):
        importlib.import_module(module)  # in the tests extra: fail, never skip
    ignore = shutil.ignore_patterns(
        "_build", "generated", "auto_examples", "__pycache__"
    )
    shutil.copytree(ROOT / "docs", tmp_path / "docs", ignore=ignore)
    shutil.copytree(ROOT / "examples", tmp_path / "examples", ignore=ignore)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    env.pop("SKHASH_DOCS_INTERSPHINX", None)  # offline
    cmd = [
        sys.executable,
        "-m",
        "sphinx",
        "-W",
        "--keep-going",
        "-q",
        "-b",
        "html",
        "-D",
        "plot_gallery=0",
        "-d",
        str(tmp_path / "doctrees"),
        str(tmp_path / "docs"),
        str(tmp_path / "html"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, (
        "The documentation build failed (warnings are errors):\n"
        + proc.stdout[-5000:]
        + proc.stderr[-10000:]
    )
    html = tmp_path / "html"
    for page in (
        "index.html",
        "api.html",
        "generated/skhash.hashing.HQHasher.html",
        "auto_examples/index.html",
        "user_guide/reproduction.html",
    ):
        assert (html / page).is_file(), f"{page} was not built"
    # every User Guide label the docstrings point to is defined (Sphinx
    # warns on an undefined one too; this names it)
    pages = (html / "user_guide").glob("*.html")
    text = "".join(p.read_text(encoding="utf-8") for p in pages)
    for label in _docstring_labels():
        assert f'id="{label}"' in text, f"label {label!r} is not defined"


def _docstring_labels():
    pattern = re.compile(r":ref:`[^`<]*<([^>`]+)>`")
    labels = set()
    for path in (ROOT / "skhash").rglob("*.py"):
        labels.update(pattern.findall(path.read_text(encoding="utf-8")))
    return sorted(labels)


def test_docstring_labels_found():
    assert {"learners", "codes", "data", "datasets"} <= set(_docstring_labels())
