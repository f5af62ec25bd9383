"""The pure-NumPy twin of every compiled kernel: same names, same signatures.

Used when the native core is unavailable or ``BAYESGRAD_BACKEND=numpy``, and
as the reference the native kernels are tested against.
"""
from .random import fill_normal, fill_uniform, fold_in, philox4x32, random_force_scalar  # noqa: F401
from .distributions import *  # noqa: F401,F403
from .estimators import *  # noqa: F401,F403
from .mlp import *  # noqa: F401,F403
from .optim import *  # noqa: F401,F403
from .curvature import *  # noqa: F401,F403
from .metrics import *  # noqa: F401,F403
from .latent import *  # noqa: F401,F403


def get_num_threads():
    return 1


def set_num_threads(n):
    if n < 1:
        raise ValueError(f"n_threads must be >= 1, got {n}")


def blas_num_threads():
    return 1


def build_info():
    return {"compiler": "none", "openmp": False, "blas": "numpy", "cuda": "n/a", "simd": "numpy"}
