"""Argument checks (and the softplus of the native kernels) shared by the NumPy twins of the float64-only
estimator kernels."""
from __future__ import annotations

import numpy as np


def _f64(a, name, shape=None):
    if not isinstance(a, np.ndarray) or a.dtype != np.float64:
        raise TypeError(f"{name} must be a float64 array")
    if shape is not None and a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}")
    return a


def _matrix(a, name):
    if not isinstance(a, np.ndarray) or a.ndim != 2:
        raise ValueError(f"{name} must have shape (n, p)")
    return a


def _softplus(x):
    """log(1 + e^x) in the native kernels' form (max(x, 0) + log1p(e^-|x|))."""
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def _out64(a, name, shape):
    _f64(a, name, shape)
    if not a.flags.c_contiguous or not a.flags.writeable:
        raise ValueError(f"{name} must be C-contiguous and writeable")
    return a


def _combine_args(a_f, r, gx, out, gs, n, p, with_net):
    """The arrays of relax_*_combine beside the family's own: a_f (n, p) or (2, n, p) (the part and a second
    array dotted with g), the network's r (2n,) and gx (2n, p) together, out (n, p) without the network,
    (with_net, n, p) and gs (n,) with it. Returns (a_f, a_d, net), a_d None unless a_f is (2, n, p)."""
    a_d = None
    if a_f is not None:
        if isinstance(a_f, np.ndarray) and a_f.ndim == 3:
            _f64(a_f, "a_f", (2, n, p))
            a_f, a_d = a_f
        else:
            _f64(a_f, "a_f", (n, p))
    if (r is None) != (gx is None):
        raise ValueError("r and gx must be given together (the network's terms)")
    net = r is not None
    if net:
        _f64(r, "r", (2 * n,))
        _f64(gx, "gx", (2 * n, p))
    shape = (with_net, n, p) if net else (n, p)
    if not (isinstance(out, np.ndarray) and out.shape == shape):
        raise ValueError(f"out must have shape {shape} {'with' if net else 'without'} the network's terms")
    _out64(out, "out", out.shape)
    if net and gs is None:
        raise ValueError("gs must be given with the network's terms")
    if not net and gs is not None:
        raise ValueError("gs must be None without the network's terms")
    if net:
        _out64(gs, "gs", (n,))
    return a_f, a_d, net
