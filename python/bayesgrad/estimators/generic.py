"""The estimators for any distribution with samples and a score or a
reparameterisation: ``expectation``, ``pathwise``, ``score_function`` (with
baselines and the delta control variate) and ``measure_valued`` (Normal here;
Bernoulli, Poisson, Exponential and Gamma through ``mvd``).
Call shape: see ``bayesgrad.estimators``.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _backend
from .. import _checks as C
from .. import random as _random
from ..control_variates import DeltaControlVariate, MovingAverageBaseline
from ..distributions import Distribution, Normal
from ..distributions._base import sum_to_shape
from ._base import (Estimate, call_f, collect, eval_f, eval_like, finish_f, grads_from_terms, mean_stderr, outputs,
                    per_sample_size, setup)

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
# Elements per batch of measure-valued evaluation points (256 KiB of float64): a batch and
# f's temporaries then stay in a core's L2 and reuse freed memory. Measured for D = 100,
# n = 100 (10^6 points, f = sum of squares): 0.75 ms per call at 2^15, 1.1 at 2^16, 1.45 at
# 2^17, 2.2-3.7 at 2^18-2^20 (page faults and DRAM traffic), 1.1 at 2^14 (Python per batch).
_MV_CHUNK = 1 << 15


def _elementwise(dist):
    """Parameters not broadcast: each has the full batch shape (fused kernels apply)."""
    return all(tuple(s) == tuple(dist.batch_shape) for s in dist._param_shapes.values())


def _flat(a, n):
    return np.ascontiguousarray(a).reshape(n, -1)


def _normal_pair(dist, n, per_sample, kernel):
    """Run a fused Normal kernel (mean / var (2, p), terms (2, n, p)) and collect loc and scale."""
    p = int(np.prod(tuple(dist.batch_shape), dtype=np.int64))
    mean, var = np.empty((2, p), dtype=dist.dtype), np.empty((2, p), dtype=dist.dtype)
    terms = np.empty((2, n, p), dtype=dist.dtype) if per_sample else None
    kernel(_backend.kernels().estimators, mean, var, terms)
    grad, stderr = {}, {}
    per = {} if per_sample else None
    for i, name in enumerate(("loc", "scale")):
        collect(dist, name, mean[i], var[i], n, None if terms is None else terms[i], grad, stderr, per)
    return grad, stderr, per


def _scores(dist, x, n, normal):
    """dist.score(x); for an unbroadcast float64 Normal the two score matrices (n, p) from one
    native pass (``estimators.normal_scores``: no log density formed on the way)."""
    if not (normal and dist.dtype == np.float64):
        return dist.score(x)
    p = int(np.prod(tuple(dist.batch_shape), dtype=np.int64))
    out = np.empty((2, n, p))
    _backend.kernels().estimators.normal_scores(_flat(x, n), _flat(dist.loc, 1)[0], _flat(dist.scale, 1)[0], out)
    return {"loc": out[0], "scale": out[1]}


def _reflect(dist, x):
    """The antithetic partner of x for symmetric families, else None."""
    name = type(dist).__name__
    if name in ("Normal", "Laplace", "StudentT", "Cauchy", "Logistic", "MultivariateNormal") and hasattr(dist, "loc"):
        loc = dist.loc if name != "MultivariateNormal" else dist.loc
        return (2.0 * loc - x).astype(dist.dtype)
    if name == "Uniform" and hasattr(dist, "low") and hasattr(dist, "high"):
        return (dist.low + dist.high - x).astype(dist.dtype)
    return None


def expectation(f, dist, n_samples, seed=0, stream=0, antithetic=None):
    """Monte Carlo estimate of E_q[f(x)] with its standard error.

    Parameters
    ----------
    f : callable ``(m, *batch, *event) -> (m,)``
    dist : Distribution
    n_samples : int >= 1
        Evaluations of f. With antithetic sampling, ``ceil(n/2)`` draws x and
        their reflections through the centre of q are averaged in pairs.
    seed, stream : the Philox stream (the same seed gives common random numbers).
    antithetic : bool or None
        None: on for symmetric families (Normal, Laplace, StudentT, Uniform, ...).

    Returns
    -------
    (mean, stderr) : floats; stderr is inf for a single evaluation (undefined spread)
    """
    n, seed, stream = setup(f, dist, n_samples, seed, stream)
    symmetric = _reflect(dist, dist.sample(0, seed=seed, stream=stream)) is not None
    if antithetic is None:
        antithetic = symmetric
    elif C.flag(antithetic, "antithetic") and not symmetric:
        raise ValueError(f"antithetic=True needs a symmetric family, got {type(dist).__name__}")
    if not antithetic:
        return mean_stderr(eval_f(f, dist.sample(n, seed=seed, stream=stream), dist.dtype))
    m = (n + 1) // 2
    x = dist.sample(m, seed=seed, stream=stream)
    pair = 0.5 * (eval_f(f, x, np.float64) + eval_f(f, _reflect(dist, x), np.float64))
    return mean_stderr(pair)


def pathwise(f, dist, n_samples, seed=0, stream=0, *, grad_f=None, per_sample=False):
    """Pathwise (reparameterisation) gradient: E[grad_f(x) . dx/dtheta].

    Works for every distribution with ``rsample_vjp`` (location-scale families
    explicitly; Gamma, Beta, Dirichlet by implicit reparameterisation). For an
    unbroadcast Normal the chain rule is fused into one native accumulation.

    Parameters
    ----------
    f : callable ``(m, *batch) -> (m,)``; only used for ``value``.
    dist : Distribution with ``reparam`` not None
    n_samples : int >= 1
    grad_f : callable ``(m, *batch) -> (m, *batch)`` (required)
    per_sample : bool
        Keep the per-sample gradients in ``est.per_sample``.
    """
    n, seed, stream = setup(f, dist, n_samples, seed, stream, per_sample=per_sample)
    if getattr(dist, "reparam", None) is None:
        raise TypeError(f"{type(dist).__name__} has no reparameterisation gradient; "
                        "use score_function (or a discrete estimator)")
    if grad_f is None or not callable(grad_f):
        raise TypeError("pathwise needs grad_f, the gradient of f: (m, *batch) -> (m, *batch)")
    x = dist.sample(n, seed=seed, stream=stream)
    fx = eval_f(f, x, dist.dtype)
    g = eval_like(grad_f, x, dist.dtype, "grad_f")
    if isinstance(dist, Normal) and _elementwise(dist):
        # x = loc + scale * eps: dx/dloc = 1, dx/dscale = eps = (x - loc) / scale, formed in the kernel
        g2 = _flat(g, n)
        grad, stderr, per = _normal_pair(dist, n, per_sample, lambda ke, mean, var, terms: ke.pathwise_normal_accumulate(
            g2, _flat(x, n), _flat(dist.loc, 1)[0], _flat(dist.scale, 1)[0], mean, var, terms))
    else:
        grad, stderr, per = grads_from_terms(dist, dist.rsample_vjp(x, g), n, per_sample)
    value, value_se = mean_stderr(fx)
    return Estimate("pathwise", value, value_se, grad, stderr, n, n, seed, per,
                    {"reparam": dist.reparam})


_BASELINES = ("none", "mean", "loo", "batch")


def score_function(f, dist, n_samples, seed=0, stream=0, *, baseline=None, control_variate=None,
                   grad_f=None, hess_f=None, n_control=None, per_sample=False):
    """Score-function (REINFORCE) gradient: E[(f(x) - b) d log q(x) / dtheta].

    Parameters
    ----------
    f : callable ``(m, *batch) -> (m,)``
    dist : Distribution with ``score``
    n_samples : int >= 1 (>= 2 for ``baseline="loo"``)
    baseline : None | "mean" | "loo" | MovingAverageBaseline
        "mean": mean of f on ``n_control`` independent samples (stream
        ``fold_in(stream, "baseline")``); "loo": for sample i the mean of the
        other n - 1 (unbiased; the standard error treats the terms as
        independent, which they are to O(1/n)); "batch": the mean of f over the
        same n samples, sample i included (BIASED: its expectation is exactly
        (1 - 1/n) times the gradient; ``info["biased"]`` says so; rescaled by
        n / (n - 1) it would be "loo"); a MovingAverageBaseline uses its value
        from before this call and is then updated. Any baseline combines with
        ``control_variate``: it is then a baseline of f - beta h.
    control_variate : None | "delta"
        Second-order Taylor expansion of f at the mean (any family with closed-form
        mean and covariance: the mean-field ones, ``control_variates.moment_derivatives``,
        and MultivariateNormal and Dirichlet, ``event_moment_gradients``; needs
        ``grad_f`` and ``hess_f``, evaluated at the mean; see ``DeltaControlVariate``
        for the Hessian layouts); with a baseline
        the coefficient is fitted to f and h less their means (what the baseline
        leaves), coefficient per coordinate estimated on
        ``n_control`` independent samples (stream ``fold_in(stream, "control_variate")``).
    n_control : int, default n_samples
    per_sample : bool
    """
    n, seed, stream = setup(f, dist, n_samples, seed, stream, per_sample=per_sample)
    if isinstance(baseline, MovingAverageBaseline):
        mode = "moving"
        if abs(baseline.value) > float(np.finfo(dist.dtype).max):  # it became inf in the dtype, the estimate NaN
            raise ValueError(f"baseline: the MovingAverageBaseline's value {baseline.value:.6g} is beyond the range "
                             f"of {np.dtype(dist.dtype)}, the distribution's dtype: use float64 parameters")
    elif baseline is None:
        mode = "none"
    else:
        mode = C.option(baseline, "baseline", _BASELINES)
    if control_variate is not None:
        C.option(control_variate, "control_variate", ("delta",))
    if mode in ("loo", "batch") and n < 2:
        raise ValueError(f"baseline={mode!r} needs n_samples >= 2")
    n_ctl = n if n_control is None else C.integer(n_control, "n_control", 2)
    if control_variate is not None and n_ctl < 2:
        raise ValueError("control_variate='delta' fits its coefficient on n_control (default n_samples) independent "
                         "samples: it needs n_samples >= 2 or n_control >= 2")
    if mode == "mean" or control_variate is not None:  # (refused by dist.sample after the main draws and f)
        C.check_allocation(C.n_bytes((n_ctl, per_sample_size(dist)), np.float64, copies=4),
                           f"n_control={n_ctl}: the independent samples and their terms")
    cv = DeltaControlVariate(f, grad_f, hess_f, dist) if control_variate else None
    if type(dist).score is Distribution.score:
        raise TypeError(f"{type(dist).__name__} has no score function")

    x = dist.sample(n, seed=seed, stream=stream)
    fx = eval_f(f, x, dist.dtype)
    normal = isinstance(dist, Normal) and _elementwise(dist)
    fused = cv is None and normal
    scores = None if fused else _scores(dist, x, n, normal)  # the fused Normal kernel forms them itself
    n_eval = n
    b = None
    info = {"baseline": mode if mode != "moving" else repr(baseline)}
    if mode == "mean":
        xb = dist.sample(n_ctl, seed=seed, stream=_random.fold_in(stream, "baseline"))
        fb_vals = eval_f(f, xb, np.float64)
        b = np.full(n, fb_vals.mean(), dtype=dist.dtype)
        n_eval += n_ctl
        info["baseline_value"] = float(b[0])
    elif mode == "moving":
        b = np.full(n, baseline.value, dtype=dist.dtype)
        info["baseline_value"] = baseline.value
    elif mode == "batch":
        b = np.full(n, float(fx.astype(np.float64).mean()), dtype=dist.dtype)
        info.update(baseline_value=float(b[0]), biased=True)

    if fused:
        grad, stderr, per = _normal_pair(dist, n, per_sample, lambda ke, mean, var, terms: ke.score_normal_accumulate(
            _flat(x, n), _flat(dist.loc, 1)[0], _flat(dist.scale, 1)[0], fx, b, mode == "loo", mean, var, terms))
    elif cv is None:
        grad, stderr = {}, {}
        per = {} if per_sample else None
        k = _backend.kernels()
        for name in dist.params:
            s2 = _flat(np.asarray(scores[name], dtype=dist.dtype), n)
            mean, var = outputs(s2.shape[1], dist.dtype)
            terms = np.empty_like(s2) if per_sample else None
            k.estimators.score_accumulate(s2, fx, b, mode == "loo", mean, var, terms)
            collect(dist, name, mean, var, n, terms, grad, stderr, per)
    else:
        # beta from independent samples, so that it does not correlate with x.
        xc = dist.sample(n_ctl, seed=seed, stream=_random.fold_in(stream, "control_variate"))
        fc = eval_f(f, xc, np.float64)
        sc = _scores(dist, xc, n_ctl, normal)
        hc = cv.values(xc)
        h = cv.values(x)
        eg = cv.expectation_grad()
        beta = {}
        f64 = np.ascontiguousarray(fx, dtype=np.float64)
        # What the control variate leaves, minus the baseline, is scale ((f - f_shift) - beta (h - h_shift))
        # for every baseline: leave-one-out is n / (n - 1) times the deviation from the means.
        if mode == "loo":
            shift = (n / (n - 1), float(f64.mean()), float(h.mean()))
        elif mode == "batch":
            shift = (1.0, float(f64.mean()), float(h.mean()))
        elif mode == "mean":  # the means of f and h on the independent baseline samples
            shift = (1.0, float(fb_vals.mean()), float(cv.values(xb).mean()))
        elif mode == "moving":
            shift = (1.0, float(b[0]), 0.0)
        else:
            shift = (1.0, 0.0, 0.0)
        # beta is fitted to what the baseline leaves, (f - c_f) - beta (h - c_h), on the independent
        # control samples (their own means stand in for the leave-one-out / batch means, so that
        # beta stays independent of x)
        if mode in ("loo", "batch"):
            centre = (float(fc.mean()), float(hc.mean()))
        else:
            centre = shift[1:]
        ke = _backend.kernels().estimators
        grad, stderr = {}, {}
        per = {} if per_sample else None
        for name in dist.params:
            s_c = np.ascontiguousarray(np.asarray(sc[name], dtype=np.float64).reshape(n_ctl, -1))
            bt = np.empty(s_c.shape[1])
            ke.control_coefficient(s_c, fc - centre[0], hc - centre[1], bt)
            s = np.ascontiguousarray(np.asarray(scores[name], dtype=np.float64).reshape(n, -1))
            mean, var = outputs(s.shape[1], np.float64)
            terms = np.empty_like(s) if per_sample else None
            ke.control_variate_accumulate(s, f64, h, bt, np.ascontiguousarray(eg[name], dtype=np.float64).reshape(-1),
                                          np.array(shift, dtype=np.float64), mean, var, terms)
            collect(dist, name, mean.astype(dist.dtype), var.astype(dist.dtype), n,
                    None if terms is None else terms.astype(dist.dtype), grad, stderr, per)
            beta[name] = bt.reshape(dist._param_shapes[name])
        n_eval += n_ctl
        info.update(control_variate="delta", beta=beta)
    if mode == "moving":
        baseline.update(float(fx.mean()))
    value, value_se = mean_stderr(fx)
    return Estimate("score_function", value, value_se, grad, stderr, n, n_eval, seed, per, info)


# ---------------------------------------------------------------- measure-valued
def _coordinate_differences(f, xf, fx, shape, dt, plus, minus):
    """(n, D) f(x with x_d = plus_d) - f(x with x_d = minus_d) for every coordinate d,
    evaluated in chunks; ``None`` for plus or minus stands for x itself (f(x) = fx reused).
    The points of a chunk, (m, parts, D, D) in the distribution's dtype, come from one call of the
    kernel ``coordinate_points`` (at D = 100 a chunk is one sample, and each call's fixed cost was a
    tenth of an estimate); f sees them as (m parts D, *shape). f's values are gathered and checked
    once (per chunk, the checks were a tenth of an estimate's time)."""
    n, D = xf.shape
    parts = [p for p in (plus, minus) if p is not None]
    k = len(parts)
    rows = max(1, _MV_CHUNK // max(1, k * D * D))  # _check_points sized the chunk before any work
    values = np.stack(parts, axis=1)  # (n, parts, D): a chunk's rows are contiguous
    fv = np.empty((n, k, D))
    points = _backend.kernels().estimators.coordinate_points
    for i0 in range(0, n, rows):
        i1 = min(n, i0 + rows)
        m = i1 - i0
        X = np.empty((m, k, D, D), dtype=dt)
        points(xf[i0:i1], values[i0:i1], X)
        fv[i0:i1] = call_f(f, X.reshape((m * k * D,) + shape)).reshape(m, k, D)
    fv = finish_f(fv.reshape(-1), np.float64).reshape(n, k, D)
    hi = fv[:, 0] if plus is not None else fx[:, None]
    lo = fv[:, -1] if minus is not None else fx[:, None]
    return hi - lo


def _check_points(dist, n):
    """ValueError naming the batch size when a chunk of ``_coordinate_differences`` would not fit: at least
    one sample's D points of D coordinates for each of two parts, and f's values on them (D = 60000 asked
    for 54 GiB, allocated after the draws and f's first evaluation)."""
    D = int(np.prod(tuple(dist.batch_shape), dtype=np.int64))
    rows = max(1, _MV_CHUNK // max(1, 2 * D * D))
    C.check_allocation(C.n_bytes((2, min(rows, n), D, D), dist.dtype, copies=2),
                       f"measure_valued on a batch of D={D} coordinates: the D points of D coordinates at which "
                       "f is evaluated per sample")


def _measure_valued_weak(f, dist, n, seed, stream, coupling, per_sample):
    """measure_valued for the families of ``mvd`` (Bernoulli, Poisson, Exponential, Gamma)."""
    from . import mvd

    dt = dist.dtype
    shape = tuple(dist.batch_shape)
    x = dist.sample(n, seed=seed, stream=stream)
    fx = eval_f(f, x, np.float64)
    xf = np.asarray(x, dtype=np.float64).reshape(n, -1)
    terms = {}
    n_eval = n
    for name, c, plus, minus in mvd.triples(dist, x, n, seed, stream, coupling):
        diff = _coordinate_differences(f, xf, fx, shape, dt, plus, minus)
        n_eval += n * xf.shape[1] * ((plus is not None) + (minus is not None))
        terms[name] = sum_to_shape((diff * c).reshape((n,) + shape), 1, dist._param_shapes[name])
    grad, stderr, per = grads_from_terms(dist, terms, n, per_sample)
    value, value_se = mean_stderr(fx)
    return Estimate("measure_valued", value, value_se, grad, stderr, n, n_eval, seed, per,
                    {"coupling": bool(coupling)})


def measure_valued(f, dist, n_samples, seed=0, stream=0, *, coupling=True, per_sample=False):
    """Measure-valued gradient for a mean-field Normal, Bernoulli, Poisson, Exponential or Gamma.

    d/dtheta E[f] = c (E_{p+}[f] - E_{p-}[f]) for a weak derivative (c, p+, p-) of
    each parameter, one coordinate d at a time with the other coordinates at the
    sample x (Mohamed et al. 2020, JMLR, section 6). Normal:

    * loc: ``(f(x with x_d = mu + sigma W) - f(x with x_d = mu - sigma W')) / (sigma sqrt(2 pi))``,
      W, W' ~ Rayleigh(1); coupled: W' = W.
    * scale: ``(f(x with x_d = mu + sigma M) - f(x with x_d = mu + sigma Z)) / sigma``,
      M ~ double-sided Maxwell, Z ~ N(0, 1); coupled: Z = M U with U ~ Uniform(0, 1).

    That is 2 D evaluations of f per sample for each parameter group (4 D in
    all, plus n for ``value``). Draws use streams ``fold_in(stream, tag)``.
    The other families (module ``mvd`` lists the triples): Bernoulli (delta_1
    vs delta_0), Poisson (x + 1 vs x), Exponential and the Gamma rate (x vs
    x + y, y ~ Exp(rate): Erlang / Gamma(a + 1)), the Gamma concentration
    (Hahn-Jordan parts, drawn by rejection); where a part is the sample x
    itself, f(x) is reused, so those cost D evaluations per sample.

    Parameters
    ----------
    f : callable ``(m, *batch) -> (m,)``
    dist : Normal, Bernoulli, Poisson, Exponential or Gamma (mean-field: batch coordinates)
    n_samples : int >= 1
    coupling : bool, share randomness between p+ and p- (lower variance; see above)
    per_sample : bool

    Returns
    -------
    Estimate; ``n_evaluations`` counts every point f saw; ``info``: coupling.
    """
    n, seed, stream = setup(f, dist, n_samples, seed, stream, per_sample=per_sample)
    if not isinstance(coupling, (bool, np.bool_)):
        raise TypeError("coupling must be True or False")
    if not isinstance(dist, Normal):
        from . import mvd

        if not isinstance(dist, mvd.families()):
            raise TypeError("measure_valued is implemented for Normal, Bernoulli, Poisson, Exponential and "
                            f"Gamma, got {type(dist).__name__}")
        _check_points(dist, n)
        return _measure_valued_weak(f, dist, n, seed, stream, coupling, per_sample)
    _check_points(dist, n)
    dt = dist.dtype
    shape = tuple(dist.batch_shape)
    D = int(np.prod(shape, dtype=np.int64))
    x = dist.sample(n, seed=seed, stream=stream)
    fx = eval_f(f, x, dt)
    mu = np.broadcast_to(dist.loc, shape).reshape(-1).astype(np.float64)
    sig = np.broadcast_to(dist.scale, shape).reshape(-1).astype(np.float64)

    def unif(tag, extra=()):
        return _random.uniform(extra + (n, D), seed=seed, stream=_random.fold_in(stream, tag))

    w = np.sqrt(-2.0 * np.log(unif("mvd_rayleigh")))
    w2 = w if coupling else np.sqrt(-2.0 * np.log(unif("mvd_rayleigh_2")))
    z3 = _random.normal((3, n, D), seed=seed, stream=_random.fold_in(stream, "mvd_maxwell"))
    # |(z1, z2, z3)| ~ Maxwell; the sign of z1 is independent of the radius.
    mx = np.copysign(np.sqrt((z3 * z3).sum(axis=0)), z3[0])
    if coupling:
        zn = mx * unif("coupling")
    else:
        zn = _random.normal((n, D), seed=seed, stream=_random.fold_in(stream, "mvd_normal"))
    pts = {"loc": (mu + sig * w, mu - sig * w2), "scale": (mu + sig * mx, mu + sig * zn)}
    weight = {"loc": _INV_SQRT_2PI / sig, "scale": 1.0 / sig}
    xf = np.ascontiguousarray(x.reshape(n, D), dtype=np.float64)
    terms = {}
    for name in ("loc", "scale"):
        plus, minus = pts[name]
        diff = _coordinate_differences(f, xf, fx, shape, dt, plus, minus)
        per_coord = (diff * weight[name]).reshape((n,) + shape)
        terms[name] = sum_to_shape(per_coord, 1, dist._param_shapes[name])
    grad, stderr, per = grads_from_terms(dist, terms, n, per_sample)
    value, value_se = mean_stderr(fx)
    return Estimate("measure_valued", value, value_se, grad, stderr, n, n * (1 + 4 * D), seed, per,
                    {"coupling": bool(coupling)})
