"""NumPy twin of the estimators kernels (cpp/src/estimators.cpp).

Same names, signatures and outputs: column means and unbiased (ddof = 1)
variances over the sample axis of per-sample gradient terms, accumulated in
float64 for both float types (the native core merges fixed blocks with Chan's
formula; here NumPy's pairwise sums give the same values to rounding).
"""
from __future__ import annotations

import numpy as np

__all__ = ["column_mean_var", "score_accumulate", "pathwise_accumulate"]


def _matrix(a, name):
    if not isinstance(a, np.ndarray) or a.ndim != 2:
        raise ValueError(f"{name} must have shape (n, p)")
    return a


def _check_out(mean_out, var_out, terms_out, n, p, dtype):
    for name, o, shape in (("mean_out", mean_out, (p,)), ("var_out", var_out, (p,)),
                           ("terms_out", terms_out, (n, p))):
        if o is None and name == "terms_out":
            continue
        if not isinstance(o, np.ndarray) or o.dtype != dtype or not o.flags.c_contiguous:
            raise TypeError(f"{name} must be a C-contiguous {dtype} array")
        if not o.flags.writeable:
            raise ValueError(f"{name} must be writeable")
        if o.shape != shape:
            raise ValueError(f"{name} must have shape {shape}")


def _finish(t, mean_out, var_out, terms_out):
    n = t.shape[0]
    if terms_out is not None:
        terms_out[...] = t
    with np.errstate(invalid="ignore", divide="ignore"):
        m = t.mean(axis=0) if n > 0 else np.full(t.shape[1], np.nan)
        v = ((t - m) ** 2).sum(axis=0) / (n - 1) if n > 1 else np.full(t.shape[1], np.nan)
    mean_out[...] = m
    var_out[...] = v


def column_mean_var(x, mean_out, var_out):
    """Column means and ddof=1 variances of x (n, p) into mean_out, var_out (p,) (Welford, fixed chunking)."""
    x = _matrix(x, "x")
    _check_out(mean_out, var_out, None, x.shape[0], x.shape[1], x.dtype)
    _finish(x.astype(np.float64), mean_out, var_out, None)


def score_accumulate(score, f, baseline, loo, mean_out, var_out, terms_out=None):
    """Mean/var over samples of score (n, p) * (f - b) (n,), b = baseline, leave-one-out mean, or 0."""
    score = _matrix(score, "score")
    n, p = score.shape
    if f.shape != (n,):
        raise ValueError(f"f must have shape ({n},)")
    if baseline is not None and baseline.shape != (n,):
        raise ValueError(f"baseline must have shape ({n},)")
    if loo and baseline is not None:
        raise ValueError("pass either baseline or loo=True, not both")
    if loo and n < 2:
        raise ValueError("a leave-one-out baseline needs n >= 2 samples")
    _check_out(mean_out, var_out, terms_out, n, p, score.dtype)
    f64 = f.astype(np.float64)
    if loo:
        r = f64 - (f64.sum() - f64) / (n - 1)
    elif baseline is not None:
        r = f64 - baseline.astype(np.float64)
    else:
        r = f64
    _finish(score.astype(np.float64) * r[:, None], mean_out, var_out, terms_out)


def pathwise_accumulate(g, jac, mean_out, var_out, terms_out=None):
    """Mean/var over samples of g (n, p) * jac (n, p) (jac None: ones), the pathwise chain rule."""
    g = _matrix(g, "g")
    if jac is not None and jac.shape != g.shape:
        raise ValueError("jac must have the shape of g")
    _check_out(mean_out, var_out, terms_out, g.shape[0], g.shape[1], g.dtype)
    t = g.astype(np.float64)
    if jac is not None:
        t = t * jac
    _finish(t, mean_out, var_out, terms_out)
