"""Optimisers on flat parameter vectors, as fused native updates.

Call shape: ``opt = Adam(theta, lr=...)`` keeps the moments; ``opt.step(grad)``
updates ``theta`` in place (one native pass) and returns it. ``SGD(theta,
lr=a0, t0=..., kappa=...)`` takes Robbins-Monro steps a_t = a0 / (t0 + t)^kappa;
``PolyakAverage`` keeps the running mean of the iterates (Polyak & Juditsky 1992). The training
loops of ``bg.nn``, ``bg.vi`` and ``bg.dropout`` run the same update inside
their native epochs.
"""
from __future__ import annotations

import numpy as np

from . import _backend
from . import _checks as C
from . import _training as _tr

__all__ = ["Adam", "SGD", "PolyakAverage"]


def _flat_params(params):
    if not isinstance(params, np.ndarray) or params.dtype not in C.FLOAT_DTYPES:
        raise TypeError("params must be a float32 or float64 NumPy array (updated in place)")
    if params.ndim != 1 or not params.flags.c_contiguous or not params.flags.writeable:
        raise ValueError("params must be a 1-D, C-contiguous, writeable array")
    if params.size == 0:  # refused here, not at the first step (where grad was named)
        raise ValueError("params must not be empty")
    return params


def _grad_like(grad, params):
    g = C.as_array(grad, "grad", dtype=params.dtype)
    if g.shape != params.shape:
        raise ValueError(f"grad must have shape {params.shape}, got {g.shape}")
    return g


class Adam:
    """Adam (Kingma & Ba 2015) with PyTorch's bias-corrected update.

    Parameters
    ----------
    params : (P,) float32/float64 C-contiguous array, updated in place
    lr : float > 0
    betas : (beta1, beta2) in [0, 1)
    eps : float > 0
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        self.params = _flat_params(params)
        self.options = _tr.adam_options(lr, betas, eps)
        self.m = np.zeros_like(params)
        self.v = np.zeros_like(params)
        self.t = 0

    def step(self, grad):
        """One update with gradient ``grad`` (P,); returns the parameters."""
        g = _grad_like(grad, self.params)
        self.t += 1
        k = _backend.kernels()
        k.optim.adam_update(self.params, g, self.m, self.v, self.t, k.optim.AdamConfig(**self.options))
        return self.params


class SGD:
    """Stochastic gradient descent with Robbins-Monro step sizes.

    Step t = 1, 2, ... moves ``params -= a_t * grad`` with

        a_t = lr / (t0 + t)^kappa,   0.5 < kappa <= 1.

    For that range sum_t a_t = inf (the iterates can travel any distance) and
    sum_t a_t^2 < inf (the gradient noise they accumulate has finite variance),
    the Robbins & Monro (1951) conditions under which the iterates converge to a
    stationary point given unbiased gradients of bounded variance. kappa = 1 is
    the classical 1/t schedule (optimal rate on a strongly convex objective when
    lr exceeds 1/(2 * smallest curvature), fragile otherwise); kappa in (0.5, 1)
    with ``PolyakAverage`` of the iterates is robust and reaches the same rate
    (Polyak & Juditsky 1992). ``t0`` delays the decay: the first steps are
    about lr / t0^kappa.

    Parameters
    ----------
    params : (P,) float32/float64 C-contiguous array, updated in place
    lr : float > 0, the numerator a0
    t0 : float >= 0
    kappa : float in (0.5, 1]
    """

    def __init__(self, params, lr=1e-2, t0=0.0, kappa=1.0):
        self.params = _flat_params(params)
        a0, t0, kappa = C.scalar(lr, "lr"), C.scalar(t0, "t0"), C.scalar(kappa, "kappa")
        if a0 <= 0:
            raise ValueError(f"lr must be positive, got {a0}")
        if t0 < 0:
            raise ValueError(f"t0 must be >= 0, got {t0}")
        if not 0.5 < kappa <= 1:
            raise ValueError(f"kappa must be in (0.5, 1] (Robbins-Monro conditions), got {kappa}")
        self.options = {"a0": a0, "t0": t0, "kappa": kappa}
        self.t = 0

    def rate(self, t=None):
        """The step size a_t of step ``t`` (default: the next one)."""
        t = self.t + 1 if t is None else C.integer(t, "t", 1)
        a0, t0, kappa = self.options["a0"], self.options["t0"], self.options["kappa"]
        return float(a0 / (t0 + t) ** kappa)

    def step(self, grad):
        """One update with gradient ``grad`` (P,); returns the parameters."""
        g = _grad_like(grad, self.params)
        self.t += 1
        k = _backend.kernels()
        k.optim.sgd_update(self.params, g, self.t, k.optim.SgdConfig(**self.options))
        return self.params


class PolyakAverage:
    """Running mean of iterates, ``mean = mean + (x - mean) / k`` after k updates.

    Averaging the tail of a noisy optimisation cancels most of the step-size
    noise: for SGD with a_t ~ t^-kappa, 0.5 < kappa < 1, the average converges
    at the optimal O(1/sqrt(T)) rate with the best constant (Polyak & Juditsky 1992).
    The mean is kept in float64 whatever the dtype of the iterates.
    """

    def __init__(self, size):
        size = C.integer(size, "size", 1)
        C.check_allocation(C.n_bytes((size,), np.float64, copies=2), f"size={size}: the running mean")
        self.count = 0
        self.mean = np.zeros(size, dtype=np.float64)

    def update(self, x):
        """Add the iterate ``x`` (of the averaged shape, ``size``) and return the running mean (float64)."""
        # a non-finite iterate would poison every later mean; strings and objects are named
        x = C.as_array(x, "x", np.float64, allow_empty=True)
        if x.shape != self.mean.shape:
            raise ValueError(f"x must have shape {self.mean.shape}, got {x.shape}")
        self.count += 1
        # x / k - mean / k rather than (x - mean) / k: the difference of iterates of opposite sign near
        # the float64 range overflowed to inf, the mean of finite iterates
        self.mean += x / self.count - self.mean / self.count
        return self.mean
