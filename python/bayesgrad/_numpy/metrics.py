"""NumPy twin of the metrics kernels (cpp/src/metrics.cpp, cpp/src/log_softmax.cpp): the entropy decomposition, the
mixture probabilities and the in-place log-softmax.

Same names, signatures and results (within rounding) as the native core.
"""
from __future__ import annotations

import numpy as np

__all__ = ["decompose", "mean_probs", "log_softmax"]  # the helpers below are shared with the acquisition twin

_ROWS = 4096  # points per slice, to bound temporaries


def check3(a, name):
    if a.ndim != 3 or min(a.shape) < 1:
        raise ValueError(f"{name} must be a non-empty (S, N, C) array")


def check_out(out, shape, dtype, name="out"):
    if not isinstance(out, np.ndarray) or out.dtype != dtype or not out.flags.c_contiguous:
        raise TypeError(f"{name} must be a C-contiguous {np.dtype(dtype)} array")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}")
    if not out.flags.writeable:
        raise ValueError(f"{name} must be writeable")


def row_slices(N):
    for a in range(0, N, _ROWS):
        yield slice(a, min(N, a + _ROWS))


def exp_floored(x):
    """exp of log-probabilities as the native kernels take it (metrics.hpp, exp_floored): 0 below
    exp(-86) (float32) / exp(-700) (float64), where the value would be subnormal or its p log p
    below 1e-35 / 1e-300; arguments above 80 taken as 80; NaN stays NaN."""
    floor = -86.0 if x.dtype == np.float32 else -700.0
    with np.errstate(over="ignore"):
        e = np.exp(np.minimum(x, x.dtype.type(80)))
    e[x < floor] = 0
    return e


def sum_deviation(e):
    d = np.abs(e.sum(axis=-1, dtype=np.float64) - 1.0)
    return float(np.max(d))  # NaN propagates


def merge_deviation(worst, d):
    if worst != worst or d != d:
        return float("nan")
    return max(worst, d)


def decompose(log_probs, total, aleatoric, epistemic):
    """Entropy decomposition of log_probs (S, N, C) into total/aleatoric/epistemic (N,) in nats;
    returns the largest |sum_c p - 1| (NaN if any input is NaN)."""
    lp = np.ascontiguousarray(log_probs)
    check3(lp, "log_probs")
    S, N, _ = lp.shape
    for o in (total, aleatoric, epistemic):
        check_out(o, (N,), lp.dtype)
    worst = 0.0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for sl in row_slices(N):
            x = lp[:, sl]
            e = exp_floored(x)
            worst = merge_deviation(worst, sum_deviation(e))
            # the per-class terms in the input's precision, their sums over classes in float64
            # as the native kernel does (a float32 sum over 10^4 classes drifts by 1e-4)
            ent = np.where(e > 0, e * x, 0).sum(axis=0).sum(axis=-1, dtype=np.float64) / S
            pm = e.mean(axis=0)
            h = -np.where(pm > 0, pm * np.log(pm), 0).sum(axis=-1, dtype=np.float64)
            # clamped at 0 as the native kernel: rows summing to just above 1 (within the accepted
            # tolerance) give p log p > 0
            h = np.maximum(h, 0)
            a = np.maximum(-ent, 0)
            total[sl] = h
            aleatoric[sl] = a
            epistemic[sl] = np.maximum(h - a, 0)
    return worst


def mean_probs(log_probs, out):
    """Mixture probabilities out (N, C) = mean over s of exp(log_probs (S, N, C)); returns the
    largest |sum_c p - 1| (NaN if any input is NaN)."""
    lp = np.ascontiguousarray(log_probs)
    check3(lp, "log_probs")
    S, N, C = lp.shape
    check_out(out, (N, C), lp.dtype)
    worst = 0.0
    with np.errstate(over="ignore"):
        for sl in row_slices(N):
            e = exp_floored(lp[:, sl])
            worst = merge_deviation(worst, sum_deviation(e))
            out[sl] = e.sum(axis=0) * lp.dtype.type(1.0 / S)
    return worst


def log_softmax(values):
    """In place: values (..., C) <- values - logsumexp over the last axis."""
    if not isinstance(values, np.ndarray) or values.dtype not in (np.float32, np.float64) \
            or not values.flags.c_contiguous:
        raise TypeError("values must be a C-contiguous float32 or float64 array")
    if not values.flags.writeable:
        raise ValueError("values must be writeable")
    if values.ndim < 1 or values.shape[-1] < 1:
        raise ValueError("values must have a last axis of length >= 1")
    x = values.reshape(-1, values.shape[-1])
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for sl in row_slices(x.shape[0]):
            v = x[sl]
            m = np.max(v, axis=-1, keepdims=True)
            m = np.where(np.isfinite(m), m, 0).astype(v.dtype)
            v -= m
            v -= np.log(np.sum(np.exp(v), axis=-1, keepdims=True))
