"""Argument checks shared by the NumPy twins of the float64-only estimator kernels."""
from __future__ import annotations

import numpy as np


def _f64(a, name, shape=None):
    if not isinstance(a, np.ndarray) or a.dtype != np.float64:
        raise TypeError(f"{name} must be a float64 array")
    if shape is not None and a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}")
    return a


def _out64(a, name, shape):
    _f64(a, name, shape)
    if not a.flags.c_contiguous or not a.flags.writeable:
        raise ValueError(f"{name} must be C-contiguous and writeable")
    return a
