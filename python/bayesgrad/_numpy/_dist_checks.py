"""Argument checks shared by the NumPy twins of the distributions kernels (distributions.py and
_densities.py): float64 views, output arrays, the batch of a parameter."""
from __future__ import annotations

import numpy as np


def _f64(a):
    return np.ascontiguousarray(a, dtype=np.float64).reshape(-1)


def _check_same(out, *named):
    for name, a in named:
        if np.size(a) != out.size:
            raise ValueError(f"{name} and out must have the same size, got {np.size(a)} and {out.size}")


def _check_out(out, name="out", dtype=None):
    if not isinstance(out, np.ndarray) or not out.flags.c_contiguous or not out.flags.writeable:
        raise TypeError(f"{name} must be a writeable C-contiguous NumPy array")
    if dtype is not None and out.dtype != dtype:
        raise TypeError(f"{name} must have dtype {np.dtype(dtype)}, got {out.dtype}")
    if out.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must be float32 or float64, got {out.dtype}")


def _batch(total, params, name):
    b = np.size(params)
    if b == 0 or total % b:
        raise ValueError(f"out size must be a multiple of {name} size (the batch)")
    return b
