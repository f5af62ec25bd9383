"""The ``Estimate`` result and the checks and accumulation helpers every
estimator module shares.

Internal to ``bayesgrad.estimators`` (``Estimate`` is re-exported by the
package). The helpers carry non-underscore names because the estimator
modules, the diagnostics and ``bayesgrad.stochastic_opt`` all import them.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _backend
from .. import _checks as C
from .. import random as _random
from ..distributions import Distribution


class Estimate:
    """A Monte Carlo gradient estimate.

    Attributes
    ----------
    estimator : str
    value : float
        Mean of f over the samples (``nan`` where the estimator does not evaluate f at q's samples).
    value_stderr : float
    grad : dict {param: ndarray of the parameter's shape}
    stderr : dict {param: ndarray}
        Standard error of ``grad`` (so ``stderr**2 * n_samples`` is the single-sample variance);
        inf when n_samples is 1 (one sample says nothing about the spread).
    n_samples : int
    n_evaluations : int
        Points at which f was evaluated (including independent baseline/coefficient samples).
    per_sample : dict {param: ``(n_samples, *param.shape)``} or None
    seed : int
    info : dict
        Estimator-specific extras (control-variate coefficient, temperature, ...).
    """

    def __init__(self, estimator, value, value_stderr, grad, stderr, n_samples, n_evaluations, seed,
                 per_sample=None, info=None):
        self.estimator = estimator
        self.value = float(value)
        self.value_stderr = float(value_stderr)
        self.grad = grad
        self.stderr = stderr
        self.n_samples = int(n_samples)
        self.n_evaluations = int(n_evaluations)
        self.seed = seed
        self.per_sample = per_sample
        self.info = info or {}

    @property
    def variance(self):
        """Single-sample variance of each gradient coordinate: ``stderr**2 * n_samples``."""
        return {k: np.asarray(s, dtype=np.float64) ** 2 * self.n_samples for k, s in self.stderr.items()}

    def __repr__(self):
        parts = ", ".join(f"{k}={np.array2string(np.asarray(v), precision=4, threshold=6)}"
                          f"±{np.array2string(np.asarray(self.stderr[k]), precision=2, threshold=6)}"
                          for k, v in self.grad.items())
        return f"Estimate({self.estimator}, n={self.n_samples}, value={self.value:.6g}, grad: {parts})"


def setup(f, dist, n_samples, seed, stream, minimum=1, per_sample=False):
    """Checked ``(n_samples, seed, stream)`` of an estimator call; raises before any draw.

    Checks ``f`` callable, ``dist`` a bayesgrad distribution, ``n_samples >= minimum``, ``per_sample``
    True or False, and that the ``(n, *dist.shape)`` draws and per-sample terms fit in memory.
    """
    C.flag(per_sample, "per_sample")
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}")
    if not isinstance(dist, Distribution):
        raise TypeError(f"dist must be a bayesgrad distribution, got {type(dist).__name__}")
    n = C.integer(n_samples, "n_samples", minimum)
    # the draws, f's values and a few per-sample terms of the distribution's size
    C.check_allocation(C.n_bytes((n, per_sample_size(dist)), np.float64, copies=4),
                       f"n_samples={n}: the samples and per-sample terms")
    return n, _random.resolve_seed(seed), _random.check_stream(stream)


def per_sample_size(dist):
    """Elements of one sample's largest per-sample array: the draw, or a parameter's score / pathwise term
    (a Categorical's (*batch, K) logits, a MultivariateNormal's (k, k) scale_tril), which the draw's size
    alone undercounted (K = 20000 classes: 7.5 GiB score arrays for a check of 4 MiB)."""
    sizes = [tuple(dist.shape)] + [tuple(s) for s in dist._param_shapes.values()]
    return max(math.prod(int(d) for d in s) for s in sizes)


def eval_f(f, x, dtype, name="f"):
    """f(x) checked to be a finite (m,) array."""
    y = call_f(f, x, name)
    check_finite(y, name)
    return _narrowed(y, dtype, name)


def call_f(f, x, name="f"):
    """f(x) as a float64 (m,) array, its type and shape checked (not its finiteness: for callers that
    check many calls' values at once, then narrow them with ``finish_f``)."""
    m = x.shape[0]
    y = C.returned_real(f(x), name)
    if y.shape != (m,):
        raise ValueError(f"{name} must map (m, ...) inputs to shape (m,) (m = {m}), got shape {y.shape}")
    return y


def finish_f(y, dtype, name="f"):
    """Values gathered from ``call_f``: checked finite and narrowed to dtype (eval_f's last steps)."""
    check_finite(y, name)
    return _narrowed(y, dtype, name)


def _narrowed(y, dtype, name):
    """y (finite float64) in ``dtype``, refused by name where that overflows (the float32 of a float32
    distribution: values past 3.4e38 became inf after the check and NaN in the estimate)."""
    if np.dtype(dtype) == np.float64:
        return np.ascontiguousarray(y)
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(y, dtype=dtype)
    if not np.isfinite(out).all():
        raise ValueError(f"{name} returned values beyond the range of {out.dtype} (|value| > "
                         f"{float(np.finfo(out.dtype).max):.3g}), the distribution's dtype: use float64 parameters")
    return out


def eval_like(fn, x, dtype, name, finite=True):
    """fn(x) checked to be an array shaped like x, and finite unless ``finite=False`` (a caller that
    checks its own results instead, through ``check_finite`` when they are not)."""
    y = C.returned_real(fn(x), name)
    if y.shape != x.shape:
        raise ValueError(f"{name} must return the shape of its input {x.shape}, got {y.shape}")
    if finite:
        check_finite(y, name)
        return _narrowed(y, dtype, name)
    return np.ascontiguousarray(y, dtype=dtype)


def check_finite(y, name):
    """ValueError naming ``name`` when y holds NaN or inf."""
    if not np.isfinite(y).all():
        raise ValueError(f"{name} returned NaN or inf")


def outputs(p, dtype):
    """Two empty ``(p,)`` arrays of ``dtype``: the mean and variance outputs of a kernel."""
    return np.empty(p, dtype=dtype), np.empty(p, dtype=dtype)


def mean_var(terms):
    """Column mean and ddof=1 variance of terms (n, p) through the active kernels."""
    t = np.ascontiguousarray(terms)
    mean, var = outputs(t.shape[1], t.dtype)
    _backend.kernels().estimators.column_mean_var(t, mean, var)
    return mean, var


def mean_stderr(fx):
    """(mean, standard error) of f-values (n,). One sample carries no information on
    its spread: its standard error is inf (not NaN, which no comparison handles)."""
    mean, var = mean_var(fx.reshape(-1, 1))
    n = fx.shape[0]
    if n > 1 and not np.isfinite(var[0]) and fx.dtype != np.float64:
        # the kernels accumulate in float64 but return the variance in fx's dtype: float32 values beyond
        # ~1.8e19 made it inf, and the standard error with it, though that is in range
        var = mean_var(np.asarray(fx, dtype=np.float64).reshape(-1, 1))[1]
    return float(mean[0]), float(np.sqrt(var[0] / n)) if n > 1 else math.inf


def collect(dist, name, mean, var, n, terms, grad, stderr, per):
    """Store one parameter's column mean (p,) and variance (p,) over n per-sample terms (n, p)
    into ``grad`` / ``stderr`` (reshaped to the parameter's shape) and, when ``per`` is a dict,
    the terms as ``(n, *param.shape)``.
    """
    shape = dist._param_shapes[name]
    if not np.isfinite(mean).all():
        # finite f and parameters whose terms overflow the dtype (a float32 Exponential of rate 1e-30: -inf on
        # one backend, NaN on the other) or a NaN a term picked up: never returned as an estimate
        dt = np.dtype(mean.dtype)
        hint = ", or use float64 parameters" if dt == np.float32 else ""
        raise FloatingPointError(f"the gradient estimate of {name!r} is not finite: the per-sample terms overflowed "
                                 f"{dt} (f and the scores too large together); rescale f{hint}")
    grad[name] = mean.reshape(shape)
    se = np.sqrt(np.maximum(var, 0) / n) if n > 1 else np.full(var.shape, np.inf)  # see mean_stderr
    stderr[name] = se.astype(mean.dtype).reshape(shape)
    if per is not None:
        per[name] = terms.reshape((n,) + tuple(shape))


def grads_from_terms(dist, terms, n, per_sample):
    """Estimate dict from per-sample terms {param: ``(n, *param.shape)``}."""
    grad, stderr = {}, {}
    per = {} if per_sample else None
    for name, t in terms.items():
        with np.errstate(over="ignore"):  # terms past a float32 range: collect names the parameter
            t2 = np.ascontiguousarray(t, dtype=dist.dtype).reshape(n, -1)
        mean, var = mean_var(t2)
        collect(dist, name, mean, var, n, t2, grad, stderr, per)
    return grad, stderr, per
