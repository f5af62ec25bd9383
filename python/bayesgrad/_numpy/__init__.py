"""The pure-NumPy twin of the compiled core: one module per concept, each with
the same names and signatures as the submodule ``bayesgrad._core.<concept>``
(docs/design.md, "Kernel namespaces").

Used when the native core is unavailable or ``BAYESGRAD_BACKEND=numpy``, and
as the reference the native kernels are tested against. The concept modules
import on first use: several need SciPy, whose import would otherwise cost
``import bayesgrad`` about 150 ms even when the native core does the work.
"""
import importlib as _importlib

#: The concept submodules, in the order the core registers them.
CONCEPTS = ("runtime", "random", "distributions", "estimators", "mlp", "optim", "vi", "curvature", "metrics",
            "acquisition", "latent")


def __getattr__(name):
    if name in CONCEPTS:
        module = _importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(CONCEPTS))
