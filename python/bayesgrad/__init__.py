"""bayesgrad: Monte Carlo gradients, variational inference, Laplace
approximations and uncertainty metrics, with a C++ core and a NumPy twin.

See ``bayesgrad.backend_info()`` for what is active and compiled. The
submodules (``bayesgrad.estimators``, ``bayesgrad.laplace``, ...) are imported
on first use, so that ``import bayesgrad`` stays quick (SciPy's statistics
and optimisation modules load only when a module that needs them does).
"""
import importlib as _importlib

from ._backend import (backend_info, get_backend, get_num_threads, set_backend, set_num_threads,
                       set_output_cache_limit, use_backend)
from . import random  # noqa: E402

__version__ = "0.1.0"

_SUBMODULES = (
    "distributions", "control_variates", "estimators", "stochastic_opt", "optim", "nn", "vi", "dropout", "laplace", "ensemble", "sgmcmc", "swag",
    "bbvi", "uncertainty", "calibration", "conformal", "acquisition", "active", "pools", "ddu", "latent", "sklearn", "plotting", "datasets", "cli",
    "compare",
)

__all__ = [
    "backend_info", "get_backend", "set_backend", "use_backend", "set_num_threads", "get_num_threads",
    "set_output_cache_limit",
    "random", "__version__", *_SUBMODULES,
]


def __getattr__(name):
    if name in _SUBMODULES:
        module = _importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'bayesgrad' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES))
