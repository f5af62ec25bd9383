"""bayesgrad: Monte Carlo gradients, variational inference, Laplace
approximations and uncertainty metrics, with a C++ core and a NumPy twin.

See ``bayesgrad.backend_info()`` for what is active and compiled.
"""
from ._backend import backend_info, get_backend, get_num_threads, set_backend, set_num_threads, use_backend
from . import random, distributions, control_variates, estimators  # noqa: E402
from . import nn, optim, vi, dropout, laplace  # noqa: E402
from . import uncertainty, acquisition, ddu, latent  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "backend_info", "get_backend", "set_backend", "use_backend", "set_num_threads", "get_num_threads",
    "random", "distributions", "control_variates", "estimators", "nn", "optim", "vi", "dropout", "laplace",
    "uncertainty", "acquisition", "ddu", "latent", "__version__",
]
