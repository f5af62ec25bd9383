"""Stochastic optimisation of an expectation over a distribution's parameters.

``minimize(f, dist, estimator, steps, n_samples, ...)`` minimises
``E_{q_theta}[f(x)] (+ penalty(q))`` with any gradient estimator of
``bayesgrad.estimators`` (by name or as a callable) and an optimiser of
``bayesgrad.optim``, on an unconstrained parameterisation of q
(``Unconstrained``). ``bg.estimators.minimize`` is the same function;
``bayesgrad.bbvi`` builds on it.
"""
from __future__ import annotations

import math

import numpy as np

from . import _checks as C
from . import _training as _tr
from . import optim as _optim
from . import random as _random
from .distributions import Distribution
from .distributions._base import sum_to_shape
from ._numerics import sigmoid
from .estimators._registry import ESTIMATORS

__all__ = ["minimize", "MinimizeResult"]

_POSITIVE_PARAMS = ("scale", "rate", "concentration", "concentration1", "concentration0", "df", "temperature")
_TRANSFORMS = ("softplus", "exp")
_TAKES_GRAD_F = ("pathwise", "score_function", "gumbel_softmax", "rebar", "relax")


def _positive_fwd(r, how):
    """(x, dx/dr) of the positive transform x = softplus(r) or exp(r)."""
    if how == "exp":
        x = np.exp(r)
        return x, x
    return np.logaddexp(0.0, r), sigmoid(r)


def _positive_inv(x, how):
    x = np.asarray(x, dtype=np.float64)
    return np.log(x) if how == "exp" else x + np.log(-np.expm1(-x))


class Unconstrained:
    """The map between a distribution's parameters and one flat real vector.

    Positive parameters (scale, rate, concentrations, df, temperature) go
    through ``softplus`` or ``exp``; ``scale_tril`` is packed row by row over
    its lower triangle with the diagonal through the same positive transform;
    ``loc``, ``logits``, ``low``, ``high`` are unconstrained. ``grad`` applies
    the chain rule d/draw = d/dparam * dparam/draw.
    """

    def __init__(self, dist, names, transform):
        self.type = type(dist)
        self.transform = transform
        self.fixed = {k: np.asarray(getattr(dist, k)) for k in dist.params}
        self.dtype = dist.dtype
        self.blocks = []  # (name, kind, shape, offset, size)
        off = 0
        raw = []
        for name in names:
            if name == "probs":
                raise TypeError("minimize optimises logits: construct the distribution with logits=...")
            v = np.asarray(getattr(dist, name), dtype=np.float64)
            if name == "scale_tril":
                k = v.shape[-1]
                if v.ndim != 2:
                    raise ValueError("minimize supports an unbatched scale_tril (k, k)")
                rows, cols = np.tril_indices(k)
                r = v[rows, cols].copy()
                diag = rows == cols
                r[diag] = _positive_inv(r[diag], transform)
                kind = ("tril", rows, cols, diag)
            elif name in _POSITIVE_PARAMS:
                r = _positive_inv(v, transform).reshape(-1)
                kind = ("positive",)
            else:
                r = v.reshape(-1)
                kind = ("real",)
            self.blocks.append((name, kind, v.shape, off, r.size))
            raw.append(r)
            off += r.size
        self.size = off
        self.x0 = np.concatenate(raw).astype(self.dtype)

    def params(self, raw):
        """({name: constrained value}, {name: dparam/draw packed like raw})."""
        raw = np.asarray(raw, dtype=np.float64)
        vals, jac = {}, {}
        for name, kind, shape, off, n in self.blocks:
            r = raw[off:off + n]
            if kind[0] == "real":
                vals[name], jac[name] = r.reshape(shape), np.ones(n)
            elif kind[0] == "positive":
                x, d = _positive_fwd(r, self.transform)
                vals[name], jac[name] = x.reshape(shape), d
            else:
                _, rows, cols, diag = kind
                x, d = r.copy(), np.ones(n)
                x[diag], d[diag] = _positive_fwd(r[diag], self.transform)
                L = np.zeros(shape)
                L[rows, cols] = x
                vals[name], jac[name] = L, d
        return vals, jac

    def dist(self, raw):
        """The distribution (of the original type, fixed parameters kept) at the unconstrained vector ``raw`` (P,)."""
        vals, _ = self.params(raw)
        kw = {k: vals.get(k, self.fixed[k]) for k in self.fixed}
        return self.type(**{k: np.asarray(v, dtype=self.dtype) for k, v in kw.items()})

    def grad(self, raw, grads):
        """Chain rule: the gradient w.r.t. raw from {name: d/dparam} (parameter-shaped)."""
        _, jac = self.params(raw)
        out = np.zeros(self.size, dtype=np.float64)
        for name, kind, shape, off, n in self.blocks:
            g = np.asarray(grads[name], dtype=np.float64)
            if g.shape != tuple(shape):
                g = sum_to_shape(np.broadcast_to(g, np.broadcast_shapes(g.shape, shape)), 0, shape)
            gflat = g[kind[1], kind[2]] if kind[0] == "tril" else g.reshape(-1)
            out[off:off + n] = gflat * jac[name]
        return out


class MinimizeResult:
    """What ``minimize`` returns.

    Attributes
    ----------
    dist : Distribution
        The distribution at the final parameters (the Polyak average when ``average > 0``).
    raw : (P,) ndarray
        The final unconstrained parameter vector.
    trace, trace_stderr : (steps_done,) float64
        The objective estimate ``E_q[f] (+ penalty)`` at each step, before its update, and its standard error.
    n_samples : int
        Draws from q over all steps (``steps_done * n_samples``).
    n_evaluations : int
        Points at which f was evaluated over all steps (the measure-valued and
        discrete estimators evaluate f more than once per draw).
    steps : int
        Steps done (fewer than asked when interrupted).
    interrupted : bool
        True when Ctrl-C stopped the loop; ``dist`` holds the parameters reached.
    estimator, seed
    """

    def __init__(self, dist, raw, trace, trace_stderr, n_samples, n_evaluations, steps, interrupted, estimator,
                 seed):
        self.dist = dist
        self.raw = raw
        self.trace = trace
        self.trace_stderr = trace_stderr
        self.n_samples = int(n_samples)
        self.n_evaluations = int(n_evaluations)
        self.steps = int(steps)
        self.interrupted = bool(interrupted)
        self.estimator = estimator
        self.seed = seed

    def __repr__(self):
        last = f"{self.trace[-1]:.6g}" if self.steps else "n/a"
        return (f"MinimizeResult({self.estimator}, steps={self.steps}, last value={last}, "
                f"n_samples={self.n_samples}, dist={self.dist!r})")


def _make_optimizer(optimizer, x, lr, options):
    if callable(optimizer) and not isinstance(optimizer, str):
        opt = optimizer(x)
        if not callable(getattr(opt, "step", None)):
            raise TypeError("optimizer(params) must return an object with a step(grad) method")
        return opt
    name = C.option(optimizer, "optimizer", ("adam", "sgd"))
    cls = _optim.Adam if name == "adam" else _optim.SGD
    options = _keywords(options, "optimizer_options")
    if "lr" in options:  # Python's own "got multiple values for keyword argument" named neither
        raise TypeError("optimizer_options must not hold 'lr': pass it as minimize's lr")
    try:
        return cls(x, lr=lr, **options)
    except TypeError as exc:
        if "unexpected keyword" not in str(exc):
            raise
        raise TypeError(f"optimizer_options: {exc}") from exc


def _keywords(options, name):
    """A dict of keyword options (None: none), TypeError naming ``name`` otherwise (a string or list
    raised ValueError "dictionary update sequence element #0 ...", naming nothing)."""
    if options is None:
        return {}
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        raise TypeError(f"{name} must be a dict of keyword options, got {type(options).__name__}")
    return dict(options)


def _checked_estimate(est, names, q, step, est_name):
    """The gradients {name: float64 array} of an estimator's result, checked: an Estimate-like object
    whose ``grad`` holds every optimised parameter in a shape that broadcasts to the parameter's (a
    custom estimator's slip was an AttributeError, a KeyError or NumPy's broadcast error in the loop)."""
    grad = getattr(est, "grad", None)
    if not isinstance(grad, dict) or not all(hasattr(est, a) for a in ("value", "value_stderr", "n_samples",
                                                                       "n_evaluations")):
        raise TypeError(f"estimator {est_name!r} must return an Estimate (value, grad, ...), got {type(est).__name__}")
    missing = [k for k in names if k not in grad]
    if missing:
        raise ValueError(f"estimator {est_name!r} returned no gradient for {missing} at step {step}")
    out = {}
    for k in names:
        g = C.returned_real(grad[k], f"estimator {est_name!r} (its gradient {k!r})")
        try:
            np.broadcast_shapes(g.shape, np.shape(getattr(q, k)))
        except ValueError as exc:
            raise ValueError(f"estimator {est_name!r} returned a gradient {k!r} of shape {g.shape}; the parameter's "
                             f"is {np.shape(getattr(q, k))}") from exc
        out[k] = g
    return out


def _checked_penalty(out, names, q):
    """penalty(q)'s (value, {param: gradient}) checked: a finite value and finite gradients that broadcast to
    their parameters (a NaN value went into the trace unnoticed; an inf gradient was reported as the
    optimisation's divergence)."""
    if not (isinstance(out, (tuple, list)) and len(out) == 2 and isinstance(out[1], dict)):
        raise TypeError(f"penalty must return (value, {{param: gradient}}), got {type(out).__name__}")
    value = C.real(out[0], "penalty's value")
    if not np.isfinite(value):
        raise ValueError(f"penalty returned a non-finite value {value}")
    grads = {}
    for k, g in out[1].items():
        if k not in names:
            continue
        ga = C.returned_real(g, f"penalty's gradient {k!r}")
        if not np.isfinite(ga).all():
            raise ValueError(f"penalty returned NaN or inf in its gradient {k!r}")
        shape = np.shape(getattr(q, k))
        try:
            np.broadcast_shapes(ga.shape, shape)
        except ValueError as exc:
            raise ValueError(f"penalty's gradient {k!r} has shape {ga.shape}; the parameter's is {shape}") from exc
        grads[k] = ga
    return value, grads


def minimize(f, dist, estimator="pathwise", steps=1000, n_samples=16, seed=0, stream=0, *, grad_f=None,
             params=None, optimizer="adam", lr=0.05, optimizer_options=None, average=0.0, positive="softplus",
             penalty=None, estimator_options=None, verbose=0, callback=None):
    """Minimise ``E_{q_theta}[f(x)] (+ penalty(q))`` over the parameters of ``q = dist``.

    Each step draws ``n_samples`` points from stream ``fold_in(stream, t)``
    (t = 1, 2, ...), estimates the gradient with ``estimator`` and takes one
    optimiser step on the unconstrained parameters (see below). Progress is
    shown with tqdm (when installed and ``verbose``: 1 on a terminal, 2 anywhere); Ctrl-C stops after the
    running step and keeps the parameters reached.

    Parameters
    ----------
    f : callable ``(m, *batch, *event) -> (m,)``
    dist : Distribution, the starting point (its type and its fixed parameters are kept)
    estimator : str or callable
        "pathwise", "score_function", "measure_valued", "reinforce_loo", "arm",
        "disarm", "gumbel_softmax", "rebar", "relax" (pass a ``RelaxSurrogate`` in
        ``estimator_options={"surrogate": s}`` so that it learns across steps), or a
        function with the estimators' call shape
        ``(f, dist, n_samples, seed=, stream=, **options) -> Estimate``.
    steps : int >= 1
    n_samples : int >= 1, draws per step
    grad_f : callable ``(m, ...) -> (m, ...)``; needed by "pathwise", "gumbel_softmax" and "rebar"
    params : names of the parameters to optimise (default: all of ``dist.params``)
    optimizer : "adam" | "sgd" | callable ``(x) -> object with step(grad)``
        ``x`` is the float vector of unconstrained parameters, updated in place.
    lr : float, the step size (Adam) or the Robbins-Monro numerator a0 (SGD)
    optimizer_options : dict, more keywords for ``bg.optim.Adam``/``SGD`` (e.g. t0, kappa)
    average : float in [0, 1)
        Fraction of the final steps whose iterates are averaged (Polyak-Ruppert,
        in the unconstrained space); 0 keeps the last iterate.
    positive : "softplus" | "exp"
        Transform of positive parameters (scale, rate, concentrations, df,
        temperature, the diagonal of scale_tril) from the real line.
    penalty : callable ``(q) -> (value, {param: d value / d param})``, optional
        A deterministic term added to the objective (e.g. minus the entropy in BBVI).
    estimator_options : dict of keywords for the estimator (e.g. {"baseline": "loo"})
    callback : callable ``(t, q, estimate) -> bool``; True stops the loop

    Returns
    -------
    MinimizeResult
    """
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}")
    if not isinstance(dist, Distribution):
        raise TypeError(f"dist must be a bayesgrad distribution, got {type(dist).__name__}")
    steps = C.integer(steps, "steps", 1)
    n = C.integer(n_samples, "n_samples", 1)
    seed, stream = _random.resolve_seed(seed), _random.check_stream(stream)
    if isinstance(estimator, str):
        est_name = C.option(estimator, "estimator", tuple(ESTIMATORS))
        est_fn = ESTIMATORS[est_name]
    elif callable(estimator):
        est_name, est_fn = getattr(estimator, "__name__", "custom"), estimator
    else:
        raise TypeError("estimator must be an estimator name or a callable")
    opts = _keywords(estimator_options, "estimator_options")
    if grad_f is not None:
        if not callable(grad_f):
            raise TypeError("grad_f must be callable")
        if not isinstance(estimator, str) or est_name in _TAKES_GRAD_F:
            opts["grad_f"] = grad_f
    if est_name in ("pathwise", "gumbel_softmax", "rebar") and grad_f is None:
        raise TypeError(f"estimator={est_name!r} needs grad_f")
    if isinstance(params, str):  # one name (it was read as its letters)
        params = (params,)
    try:
        names = tuple(dist.params) if params is None else tuple(params)
    except TypeError as exc:
        raise TypeError(f"params must be a sequence of parameter names, got {params!r}") from exc
    if not names:
        raise ValueError("params must name at least one parameter")
    for name in names:
        if not isinstance(name, str) or name not in dist.params:
            raise ValueError(f"params: {name!r} is not a parameter of {type(dist).__name__} {dist.params}")
    if len(set(names)) != len(names):  # a second copy was optimised too but never used
        raise ValueError(f"params names a parameter twice: {names}")
    transform = C.option(positive, "positive", _TRANSFORMS)
    avg_frac = C.scalar(average, "average")
    if not 0 <= avg_frac < 1:
        raise ValueError(f"average must be a fraction in [0, 1), got {avg_frac}")
    if penalty is not None and not callable(penalty):
        raise TypeError("penalty must be callable")
    if callback is not None and not callable(callback):
        raise TypeError("callback must be callable")

    # the two traces below (steps = 10**12 reached np.full's MemoryError)
    C.check_allocation(C.n_bytes((steps,), np.float64, copies=2), f"steps={steps}: the (steps,) traces")
    u = Unconstrained(dist, names, transform)
    x = u.x0.copy()
    opt = _make_optimizer(optimizer, x, lr, optimizer_options)
    avg_start = steps - int(math.ceil(avg_frac * steps)) if avg_frac > 0 else steps
    avg = _optim.PolyakAverage(x.size) if avg_frac > 0 else None
    trace = np.full(steps, np.nan)
    trace_se = np.full(steps, np.nan)
    counts = {"done": 0, "samples": 0, "evals": 0}

    class _Stop(Exception):
        pass

    def one_step(i):
        try:
            q = u.dist(x)
        except ValueError as exc:
            if i == 0:
                raise
            # the optimiser left q's domain (a scale that underflowed to 0): the distribution's own message
            # ("scale must be positive") named no argument of this call
            raise FloatingPointError(f"step {i + 1}: the parameters left the distribution's domain ({exc}); "
                                     "lower lr or change the start") from exc
        est = est_fn(f, q, n, seed=seed, stream=_random.fold_in(stream, i + 1), **opts)
        grads = _checked_estimate(est, names, q, i + 1, est_name)
        value = est.value
        if penalty is not None:
            pv, pg = _checked_penalty(penalty(q), names, q)
            value += pv
            for k in names:
                if k in pg:
                    grads[k] = grads[k] + pg[k]
        g = u.grad(x, grads)
        if not np.isfinite(g).all():
            raise FloatingPointError(f"non-finite gradient at step {i + 1}; lower lr or change the start")
        opt.step(g.astype(x.dtype))
        trace[i], trace_se[i] = value, est.value_stderr
        counts["done"] = i + 1
        counts["samples"] += est.n_samples
        counts["evals"] += est.n_evaluations
        if avg is not None and i >= avg_start:
            avg.update(x)
        if callback is not None and callback(i + 1, q, est):
            raise _Stop
        return {"value": value}

    try:
        _, interrupted = _tr.run_epochs(steps, one_step, verbose=verbose, desc=f"minimize ({est_name})")
    except _Stop:
        interrupted = False
    final = avg.mean.astype(x.dtype) if avg is not None and avg.count else x
    done = counts["done"]
    return MinimizeResult(u.dist(final), final.copy(), trace[:done], trace_se[:done], counts["samples"],
                          counts["evals"], done, interrupted, est_name, seed)
