"""Sphinx configuration of the skhash documentation.

Build (from the repository root)::

    sphinx-build -W --keep-going -b html docs docs/_build/html

``-D plot_gallery=0`` skips running the gallery scripts (what the test suite
does). The build needs no network: intersphinx links to scikit-learn, numpy,
torch and skorch are only made when ``SKHASH_DOCS_INTERSPHINX=1`` is set
(the inventories are then downloaded).
"""

import importlib
import os
import sys
import warnings
from pathlib import Path

# Gallery scripts and autodoc import skhash from this checkout.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# One thread: the gallery's small networks train far faster single-threaded
# on a loaded machine (set before torch or numpy is imported).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import skhash  # noqa: E402

# -- Project -----------------------------------------------------------------
project = "skhash"
author = "The skhash developers"
copyright = "The skhash developers"
version = release = skhash.__version__

# -- General -----------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "README.md", "**/README.md"]
root_doc = "index"
default_role = "literal"
pygments_style = "sphinx"

# autosummary writes one page per public object under generated/
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": True}
autodoc_typehints = "none"

# numpydoc renders the Parameters/Returns/... sections; members are listed by
# the autosummary class template, not by numpydoc.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False

# -- intersphinx (opt-in: the build must work offline) ------------------------
_INTERSPHINX = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable/", None),
    "scipy": ("https://docs.scipy.org/doc/scipy/", None),
    "sklearn": ("https://scikit-learn.org/stable/", None),
    "torch": ("https://pytorch.org/docs/stable/", None),
    "skorch": ("https://skorch.readthedocs.io/en/stable/", None),
    "matplotlib": ("https://matplotlib.org/stable/", None),
}
if os.environ.get("SKHASH_DOCS_INTERSPHINX", "0") not in ("", "0"):
    intersphinx_mapping = _INTERSPHINX
else:
    # Offline (the default, and the test suite): no inventory is fetched, so
    # references to other projects render as plain code, without a warning.
    intersphinx_mapping = {}
intersphinx_timeout = 10

# -- HTML --------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"skhash {release}"
html_static_path = ["_static"]
html_css_files = ["skhash.css"]
html_theme_options = {
    "navbar_end": ["navbar-icon-links"],
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_sidebars = {"index": []}
html_show_sourcelink = False

# -- sphinx-gallery ------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": ["../examples"],
    "gallery_dirs": ["auto_examples"],
    "subsection_order": [
        "../examples/hashing",
        "../examples/quantization",
        "../examples/retrieval",
        "../examples/evaluation",
    ],
    "within_subsection_order": "FileNameSortKey",
    "filename_pattern": r"/plot_",
    "doc_module": ("skhash",),
    "backreferences_dir": "generated/backreferences",
    "reference_url": {"skhash": None},
    "download_all_examples": False,
    "remove_config_comments": True,
    # show rich (HTML) reprs only, not the text repr of a last expression
    "capture_repr": ("_repr_html_",),
    "min_reported_time": 1,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "abort_on_example_error": True,
    # no sg_execution_times.rst in the source tree
    "write_computation_times": False,
}


# -- Cross-reference aliases ----------------------------------------------------
# Public objects are documented once, under their subpackage
# (skhash.hashing.HQHasher), but are also exported at the top level
# (skhash.HQHasher) and docstrings use both paths. Resolve a reference to an
# alias by finding the documented object it is.
def _alias_target(target):
    module_name, _, attr = target.rpartition(".")
    if not module_name.startswith("skhash"):
        return None
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError):
        return None
    canonical = _CANONICAL.get(id(obj))
    if canonical is None or canonical == target:
        return None
    return canonical


_CANONICAL = {}


def _collect_canonical(app):
    """Map each documented object to its documented path (from api.rst)."""
    api = Path(app.srcdir, "api.rst").read_text(encoding="utf-8")
    module = None
    for line in api.splitlines():
        stripped = line.strip()
        if stripped.startswith(".. currentmodule::"):
            module = stripped.split("::", 1)[1].strip()
        elif (
            module
            and line.startswith("   ")
            and stripped
            and not stripped.startswith((":", ".."))
        ):
            try:
                obj = getattr(importlib.import_module(module), stripped)
            except (ImportError, AttributeError):
                continue
            _CANONICAL[id(obj)] = f"{module}.{stripped}"


def _resolve_alias(app, env, node, contnode):
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    candidates = [target]
    modname = node.get("py:module")
    if modname and not target.startswith("skhash"):
        candidates.append(f"{modname}.{target}")
    if not target.startswith("skhash"):
        candidates.append(f"skhash.{target}")
    domain = env.get_domain("py")
    for candidate in candidates:
        canonical = _alias_target(candidate)
        if canonical is None:
            continue
        node = node.deepcopy()
        node["reftarget"] = canonical
        node["py:module"] = None
        node["py:class"] = None
        return domain.resolve_xref(
            env,
            node["refdoc"],
            app.builder,
            node["reftype"],
            canonical,
            node,
            contnode,
        )
    return None


def _skip_foreign_members(app, what, name, obj, skip, options):
    """Document only members defined by skhash, not those inherited from
    scikit-learn, torch or builtins (their docstrings point to pages of
    other projects)."""
    if skip or what != "class":
        return skip
    func = getattr(obj, "__func__", obj)
    if isinstance(func, property):
        func = func.fget
    module = getattr(func, "__module__", None) or ""
    if not module.startswith("skhash"):
        return True
    return None


def _unlink_at_names(app, doctree):
    """docutils turns ``MAP@50`` and ``precision@top-R`` into e-mail links;
    the docs have no e-mail address, so every mailto link goes back to text."""
    from docutils import nodes

    for ref in list(doctree.findall(nodes.reference)):
        if ref.get("refuri", "").startswith("mailto:"):
            ref.replace_self(nodes.Text(ref.astext()))


def setup(app):
    app.connect("doctree-read", _unlink_at_names)
    app.connect("builder-inited", _collect_canonical)
    app.connect("missing-reference", _resolve_alias)
    app.connect("autodoc-skip-member", _skip_foreign_members)


warnings.filterwarnings(
    "ignore",
    category=UserWarning,
    message="Matplotlib is currently using agg, which is a non-GUI backend",
)
