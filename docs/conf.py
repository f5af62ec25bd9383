"""Sphinx configuration of the bayesgrad documentation.

Build (CI does, with warnings as errors)::

    pip install ".[docs]"
    python -m sphinx -W --keep-going -n -b html docs docs/_build/html

The API pages are generated from the docstrings of the installed package
(one page per public module, ``api.rst``); ``quickstart.md`` includes the
README's quickstart and ``design.md`` is the design document itself.
"""
import importlib.util
import os
import sys

# Document the installed package; from a source checkout without an install,
# the package directory (the NumPy twin answers where the native core is not built).
if importlib.util.find_spec("bayesgrad") is None:
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "python")))

import bayesgrad  # noqa: E402

project = "bayesgrad"
author = "the bayesgrad developers"
copyright = "the bayesgrad developers"
version = release = bayesgrad.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build"]

# the README's quickstart starts at its level-3 headings under a page title
suppress_warnings = ["myst.header"]
myst_heading_anchors = 3

autosummary_generate = True
autosummary_ignore_module_all = False   # a module's page lists exactly its __all__
autodoc_typehints = "none"              # the numpydoc sections say the types and shapes
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True}

numpydoc_show_class_members = False     # the class's autodoc :members: list them
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# Types named in docstrings and signatures that live outside this project
# (no network in the build, so no intersphinx).
nitpick_ignore_regex = [
    ("py:class", r"(numpy|np|scipy|sklearn|torch|matplotlib|pandas|dask|cupy)\..*"),
    ("py:class", r"(optional|array_like|array-like|callable|ndarray|dtype|tuple of .*|sequence of .*)"),
]

html_theme = "alabaster"
html_static_path = []
html_theme_options = {"description": "Uncertainty for neural networks, from NumPy, at native speed",
                      "fixed_sidebar": True}


# Warnings from the docstrings of these modules do not fail the build (they are
# still printed): when the documentation site was added (issue 20) these modules
# were being edited on other branches, and their reST problems (mostly a bare
# "*batch_shape" read as the start of emphasis, "|x|" read as a substitution) are
# fixed there. Remove an entry once its module builds cleanly.
KNOWN_DOCSTRING_ISSUES = ()


class _KnownIssues:
    """A logging filter: known docstring warnings are printed, not counted."""

    def filter(self, record):
        loc = getattr(record, "location", None)
        if loc is not None and hasattr(loc, "source"):   # a docutils node
            loc = f"{loc.source}:{loc.line}"
        where = f"{loc or ''} {getattr(record, 'msg', '')}"
        if any(f"docstring of {m}" in where or f"generated/{m}." in where for m in KNOWN_DOCSTRING_ISSUES):
            sys.stderr.write(f"known docstring issue (conf.KNOWN_DOCSTRING_ISSUES, not counted): {loc}: "
                             f"{record.getMessage()}\n")
            return False
        return True


def _skip_member(app, what, name, obj, skip, options):
    # scikit-learn adds set_<method>_request to every estimator (metadata routing): its
    # documentation, not ours
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app):
    import logging

    for handler in logging.getLogger("sphinx").handlers:
        if handler.level >= logging.WARNING:
            handler.filters.insert(0, _KnownIssues())
    app.connect("autodoc-skip-member", _skip_member)
