"""Every public callable has a docstring, and one that takes arrays says their shapes
(issue 20, item 4: the API reference is built from these docstrings).

Public: every name in the ``__all__`` of each public module (``bayesgrad.random``
and the submodules ``bayesgrad`` imports on demand, the command-line module
aside) that is a function or a class, and every public method of those classes
defined in this package (methods inherited from scikit-learn or ``object`` are
theirs to document). A callable takes arrays when one of its parameters has a
name from ``ARRAY_PARAMETERS``; its docstring (for a class: the class docstring
and ``__init__``'s) then has to show a shape, ``(N, D)``-style, or say "shape".
"""
import importlib
import inspect
import re

import pytest

import bayesgrad

PUBLIC_MODULES = ["random"] + [m for m in bayesgrad._SUBMODULES if m != "cli"]

ARRAY_PARAMETERS = {
    "F", "V", "W", "X", "X_pool", "aleatoric", "aleatoric_var", "concentration", "concentration0",
    "concentration1", "counter", "df", "epistemic", "epistemic_var", "features", "g", "g_out", "high",
    "indices", "is_ood", "key", "labels", "loc", "log_density", "log_probs", "logits", "low", "masks", "mean",
    "means", "per_point", "pool", "probs", "rate", "samples", "samples_mean", "samples_var", "scale",
    "scale_tril", "scores", "std", "theta", "theta0", "thetas", "total", "u", "var", "variances", "x", "y",
}

# a shape written as a tuple: (N,), (S, N, C), (n, *batch_shape), (P + 1,)
_SHAPE = re.compile(r"\(\s*[A-Za-z0-9_*.]+(?:\s*[-+*/]\s*[A-Za-z0-9_]+)?\s*,[A-Za-z0-9_*.+\-, ]*\)|\bshape")

def _doc(obj):
    doc = inspect.getdoc(obj) or ""
    if inspect.isclass(obj) and doc.startswith(f"{obj.__name__}("):
        return ""  # the signature a dataclass writes when it has no docstring
    return doc


def _array_params(fn):
    try:
        names = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return []
    return [n for n in names if n in ARRAY_PARAMETERS]


def _own_methods(cls):
    for name in sorted(dir(cls)):
        if name.startswith("_"):
            continue
        static = inspect.getattr_static(cls, name)
        if isinstance(static, (staticmethod, classmethod)):
            static = static.__func__
        if inspect.isfunction(static) and static.__module__.startswith("bayesgrad"):
            yield name, static


def _public_callables():
    out = {}
    for modname in PUBLIC_MODULES:
        mod = importlib.import_module(f"bayesgrad.{modname}")
        for name in mod.__all__:
            obj = getattr(mod, name)
            if inspect.ismodule(obj) or not callable(obj):
                continue
            qual = f"bayesgrad.{modname}.{name}"
            if inspect.isclass(obj):
                init = obj.__dict__.get("__init__")
                doc = _doc(obj) + "\n" + (inspect.getdoc(init) or "" if inspect.isfunction(init) else "")
                out[qual] = (doc, _array_params(obj))
                for mname, fn in _own_methods(obj):
                    out[f"{qual}.{mname}"] = (_doc(fn), [p for p in _array_params(fn) if p != "self"])
            else:
                out[qual] = (_doc(obj), _array_params(obj))
    return out


def _problem(doc, arrays):
    if not doc.strip():
        return "no docstring"
    if arrays and not _SHAPE.search(doc):
        return f"takes arrays ({', '.join(arrays)}) but its docstring shows no shape"
    return None


CALLABLES = _public_callables()


def test_every_public_module_has_all_and_a_docstring():
    for modname in PUBLIC_MODULES:
        mod = importlib.import_module(f"bayesgrad.{modname}")
        assert isinstance(getattr(mod, "__all__", None), (list, tuple)), modname
        assert (mod.__doc__ or "").strip(), f"bayesgrad.{modname} has no module docstring"


@pytest.mark.single_backend
def test_public_callables_have_docstrings_with_shapes():
    problems = {q: p for q, (doc, arrays) in CALLABLES.items() if (p := _problem(doc, arrays))}
    msg = "\n".join(f"  {q}: {p}" for q, p in sorted(problems.items()))
    assert not problems, f"{len(problems)} public callables need a docstring with shapes:\n{msg}"


@pytest.mark.single_backend
def test_the_check_sees_problems():
    def no_doc(x):
        pass

    def no_shape(x):
        """Something of x."""

    def with_shape(x):
        """Row sums of x (N, D)."""

    def no_arrays(n):
        """Twice n."""

    assert _problem(_doc(no_doc), _array_params(no_doc)) == "no docstring"
    assert "shows no shape" in _problem(_doc(no_shape), _array_params(no_shape))
    assert _problem(_doc(with_shape), _array_params(with_shape)) is None
    assert _problem(_doc(no_arrays), _array_params(no_arrays)) is None
    assert len(CALLABLES) > 200   # the walk found the package's API


@pytest.mark.single_backend
def test_the_api_reference_lists_every_public_module():
    import pathlib

    api = pathlib.Path(__file__).resolve().parent.parent / "docs" / "api.rst"
    if not api.exists():
        pytest.skip("no docs/ next to the tests (an installed package)")
    listed = set(re.findall(r"^\s+(bayesgrad(?:\.\w+)?)\s*$", api.read_text(), re.M))
    missing = sorted({f"bayesgrad.{m}" for m in PUBLIC_MODULES} - listed)
    assert not missing, f"docs/api.rst does not list {missing}"
