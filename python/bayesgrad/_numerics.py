"""Elementwise numerics shared by the Python layer and the NumPy twin: one
definition of each link function (docs/design.md, "Twins").

Every function keeps the floating dtype of its input and is finite for any
finite input. The sigmoid is the two-branch form the C++ core uses
(mlp::act; here SciPy's expit), exact in both tails, where 0.5 (1 + tanh(x / 2))
rounds to 0.
"""
from __future__ import annotations

import numpy as np
from scipy.special import expit as _expit

# below these exp(-x) overflows and expit returns 0 (the true value is exp(x))
_EXPIT_TAIL = {np.dtype(np.float32): -87.0, np.dtype(np.float64): -708.0}

__all__ = ["sigmoid", "softplus", "log_softmax", "likelihood_log_probs", "lgamma_corr", "log1p_minus_series"]


def sigmoid(x):
    """1 / (1 + exp(-x)) in x's floating dtype (float64 for integers), exact in both tails.

    SciPy's ``expit`` (the two-branch form, about twice as fast as the NumPy
    expression and within 2 ulp where that was within 2.3 / 3.4), except where
    exp(-x) overflows (x below about -709.8 / -88.7 for float64 / float32): expit
    returns 0 there, the true value exp(x) (subnormal) is put back. A 0-d input
    gives a 0-d array."""
    x = np.asarray(x)
    dt = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
    if dt not in _EXPIT_TAIL:  # float16 / longdouble: the NumPy two-branch form in that dtype
        with np.errstate(over="ignore"):
            e = np.exp(-np.abs(x))
        one = dt.type(1)
        return np.where(x >= 0, one / (one + e), e / (one + e))
    out = _expit(x, out=np.empty(x.shape, dt), dtype=dt)
    tail = _EXPIT_TAIL[dt]
    if x.size and not x.min() >= tail:  # (NaN too: then only the tail's elements are replaced)
        t = x < tail
        out[t] = np.exp(x[t].astype(dt, copy=False))
    return out


def softplus(x):
    """log(1 + exp(x)) without overflow."""
    x = np.asarray(x)
    return np.logaddexp(x.dtype.type(0) if x.dtype.kind == "f" else 0.0, x)


def log_softmax(x, axis=-1):
    """x - logsumexp(x) along ``axis``; rows of -inf stay -inf, not NaN."""
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    return x - m - np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))


def likelihood_log_probs(likelihood, F):
    """Log-probabilities (..., C) of network outputs F (..., K): softmax for
    ``"categorical"``; for ``"bernoulli"`` (K = 1) the two classes (1 - p, p)
    as (-softplus(f), -softplus(-f)), stable at p near 0 and 1."""
    if likelihood == "bernoulli":
        f = F[..., 0]
        return np.stack([-softplus(f), -softplus(-f)], axis=-1)
    if likelihood == "categorical":
        return log_softmax(F, axis=-1)
    raise ValueError(f"likelihood must be 'categorical' or 'bernoulli' for class probabilities, got {likelihood!r}")


def lgamma_corr(z):
    """Stirling's remainder lgamma(z) - ((z - 1/2) ln z - z + ln(2 pi) / 2) for z >= 8, float64 (the series of
    special.cpp's lgamma_corr): the part of lgamma that survives where large log-gammas cancel."""
    r = 1.0 / np.asarray(z, dtype=np.float64)
    r2 = r * r
    return r * (1.0 / 12 + r2 * (-1.0 / 360 + r2 * (1.0 / 1260 + r2 * (-1.0 / 1680 + r2 * (
        1.0 / 1188 + r2 * (-691.0 / 360360 + r2 * (1.0 / 156)))))))


def log1p_minus_series(s):
    """log1p(s) - s by its series, for |s| < 1e-2 (float64), where the difference cancels (-s^2 / 2 ...);
    the polynomial of studentt.cpp's log1p_minus_series."""
    return s * s * (-1 / 2 + s * (1 / 3 + s * (-1 / 4 + s * (1 / 5 + s * (-1 / 6 + s * (
        1 / 7 + s * (-1 / 8 + s * (1 / 9 - s / 10))))))))
