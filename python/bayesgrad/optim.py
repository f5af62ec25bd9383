"""Optimisers on flat parameter vectors, as fused native updates.

Call shape: ``opt = Adam(theta, lr=...)`` keeps the moments; ``opt.step(grad)``
updates ``theta`` in place (one native pass) and returns it. The training
loops of ``bg.nn``, ``bg.vi`` and ``bg.dropout`` run the same update inside
their native epochs.
"""
from __future__ import annotations

import numpy as np

from . import _backend
from . import _checks as C
from . import _training as _tr

__all__ = ["Adam"]


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
        if not isinstance(params, np.ndarray) or params.dtype not in C.FLOAT_DTYPES:
            raise TypeError("params must be a float32 or float64 NumPy array (updated in place)")
        if params.ndim != 1 or not params.flags.c_contiguous or not params.flags.writeable:
            raise ValueError("params must be a 1-D, C-contiguous, writeable array")
        self.params = params
        self.hyper = _tr.adam_vector(lr, betas, eps)
        self.m = np.zeros_like(params)
        self.v = np.zeros_like(params)
        self.t = 0

    def step(self, grad):
        """One update with gradient ``grad`` (P,); returns the parameters."""
        g = C.as_array(grad, "grad", dtype=self.params.dtype)
        if g.shape != self.params.shape:
            raise ValueError(f"grad must have shape {self.params.shape}, got {g.shape}")
        self.t += 1
        _backend.kernels().adam_update(self.params, g, self.m, self.v, self.t, self.hyper)
        return self.params
