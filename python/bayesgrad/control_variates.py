"""Baselines and control variates for the score-function estimator.

A *baseline* b is subtracted from f inside the score-function estimator,
``s(x) (f(x) - b)``; it leaves the estimator unbiased when b does not depend
on x (``MovingAverageBaseline``, or the mean of f on independent samples) or
on x_i itself (the leave-one-out baseline, computed in the native kernel).

A *control variate* h with a known expectation gradient is subtracted and its
analytic gradient added back: ``s(x) (f(x) - beta h(x)) + beta grad E_q[h]``,
with the coefficient beta estimated on independent samples so that it does
not correlate with the samples it is applied to (DeltaControlVariate).

Both are used through ``bg.estimators.score_function(..., baseline=...,
control_variate=...)``.
"""
from __future__ import annotations

import numpy as np

from . import _checks as C
from .distributions import Normal
from .distributions._base import sum_to_shape

__all__ = ["MovingAverageBaseline", "DeltaControlVariate", "optimal_coefficient"]


class MovingAverageBaseline:
    """Exponential moving average of f across calls: b <- decay b + (1 - decay) mean(f).

    The value used in a call is the one from *before* that call's samples, so
    the estimate stays unbiased. State lives in the object: pass the same
    instance to successive ``score_function`` calls (e.g. optimisation steps).

    Parameters
    ----------
    decay : float in [0, 1)
    initial : float
        Baseline used by the first call.
    """

    def __init__(self, decay=0.9, initial=0.0):
        d = C.scalar(decay, "decay")
        if not 0.0 <= d < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = d
        self.value = C.scalar(initial, "initial")
        self.n_updates = 0

    def update(self, batch_mean):
        """Fold the mean of f over one call's samples into the average."""
        m = C.scalar(batch_mean, "batch_mean")
        self.value = self.decay * self.value + (1.0 - self.decay) * m
        self.n_updates += 1
        return self.value

    def __repr__(self):
        return f"MovingAverageBaseline(decay={self.decay}, value={self.value:.6g})"


def optimal_coefficient(a, b):
    """Per-column coefficient beta = Cov(a, b) / Var(b) minimising Var(a - beta b).

    Parameters
    ----------
    a, b : (n, p) arrays, n >= 2
        Per-sample estimator terms and control-variate terms.

    Returns
    -------
    beta : (p,) float64, 0 where Var(b) = 0.
    """
    a = C.as_array(a, "a", dtype=np.float64, ndim=2)
    b = C.as_array(b, "b", dtype=np.float64, ndim=2)
    if a.shape != b.shape or a.shape[0] < 2:
        raise ValueError(f"a and b must have the same shape (n >= 2, p), got {a.shape} and {b.shape}")
    ac = a - a.mean(axis=0)
    bc = b - b.mean(axis=0)
    vb = (bc * bc).sum(axis=0)
    cov = (ac * bc).sum(axis=0)
    return np.divide(cov, vb, out=np.zeros_like(cov), where=vb > 0)


class DeltaControlVariate:
    """Second-order Taylor expansion of f at the mean of a (mean-field) Normal.

    h(x) = f(mu) + grad_f(mu) . (x - mu) + 1/2 sum_d H_dd (x_d - mu_d)^2, whose
    expectation under N(mu, diag sigma^2) is f(mu) + 1/2 sum_d H_dd sigma_d^2 and
    whose gradient, at the expansion point mu, is d/dmu = grad_f(mu),
    d/dsigma_d = H_dd sigma_d. Off-diagonal Hessian entries do not change
    E_q[h] for a mean-field q, so a full Hessian (n, *batch, *batch) is reduced
    to its diagonal.

    Parameters
    ----------
    f, grad_f, hess_f : callables, vectorised over axis 0
        ``f: (m, *batch) -> (m,)``, ``grad_f: (m, *batch) -> (m, *batch)``,
        ``hess_f: (m, *batch) -> (m, *batch)`` (diagonal) or ``(m, *batch, *batch)``.
    dist : Normal
    """

    def __init__(self, f, grad_f, hess_f, dist):
        if not isinstance(dist, Normal):
            raise TypeError(f"control_variate='delta' needs a Normal distribution, got {type(dist).__name__}")
        if not callable(grad_f) or not callable(hess_f):
            raise TypeError("control_variate='delta' needs callables grad_f and hess_f")
        self.dist = dist
        shape = tuple(dist.batch_shape)
        D = int(np.prod(shape, dtype=np.int64))
        mu = np.broadcast_to(dist.loc, shape).astype(np.float64)
        self.mu = mu.reshape(-1)
        self.sigma = np.broadcast_to(dist.scale, shape).astype(np.float64).reshape(-1)
        x0 = mu[None].astype(dist.dtype)
        f0 = np.asarray(f(x0), dtype=np.float64)
        if f0.shape != (1,) or not np.isfinite(f0).all():
            raise ValueError(f"f must return a finite array of shape (1,) for one input, got {f0.shape}")
        g0 = np.asarray(grad_f(x0), dtype=np.float64)
        if g0.shape != (1,) + shape or not np.isfinite(g0).all():
            raise ValueError(f"grad_f must return a finite array of shape {(1,) + shape}, got {g0.shape}")
        h0 = np.asarray(hess_f(x0), dtype=np.float64)
        if h0.shape == (1,) + shape + shape and shape:
            h0 = np.diagonal(h0.reshape(1, D, D), axis1=1, axis2=2)
        elif h0.shape != (1,) + shape:
            raise ValueError(f"hess_f must return shape {(1,) + shape} (diagonal) or {(1,) + shape + shape}, "
                             f"got {h0.shape}")
        if not np.isfinite(h0).all():
            raise ValueError("hess_f must return finite values")
        self.f0 = float(f0[0])
        self.g0 = g0.reshape(-1)
        self.h0 = h0.reshape(-1)

    def values(self, x):
        """h(x) for samples x (n, *batch) -> (n,) float64."""
        d = np.asarray(x, dtype=np.float64).reshape(x.shape[0], -1) - self.mu
        return self.f0 + d @ self.g0 + 0.5 * (d * d) @ self.h0

    def expectation(self):
        """E_q[h] (float)."""
        return self.f0 + 0.5 * float(self.h0 @ (self.sigma ** 2))

    def expectation_grad(self):
        """{param: d E_q[h] / d param}, each of the parameter's shape (float64)."""
        shape = tuple(self.dist.batch_shape)
        per = {"loc": self.g0.reshape(shape), "scale": (self.h0 * self.sigma).reshape(shape)}
        return {k: sum_to_shape(v[None], 1, self.dist._param_shapes[k])[0] for k, v in per.items()}

