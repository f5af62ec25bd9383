"""Diagnostics for choosing an estimator: ``naive_gradient`` (the wrong
answer, for contrast), ``variance_curve`` (single-sample variance as f
varies; plotted by ``bayesgrad.plotting.plot_variance``) and ``seed_example``
(the worked comparison behind ``bayesgrad demo``).
"""
from __future__ import annotations

import numpy as np

from .. import _checks as C
from ..distributions import Normal
from ._base import Estimate, eval_f, mean_stderr, setup
from ._registry import ESTIMATORS
from .generic import measure_valued, pathwise, score_function


def naive_gradient(f, dist, n_samples, seed=0, stream=0, *, h=1e-4):
    """The wrong answer, for comparison: central finite differences of the sample
    average (1/n) sum f(x_i) with the drawn samples x_i held fixed as constants.

    The average does not depend on the parameters once the samples are fixed, so
    the result is 0: the samples' dependence on theta is exactly what the
    estimators in this module account for.
    """
    n, seed, stream = setup(f, dist, n_samples, seed, stream)
    h = C.scalar(h, "h")
    if h <= 0:
        raise ValueError(f"h must be positive, got {h}")
    x = dist.sample(n, seed=seed, stream=stream)
    # The fixed-sample estimate at theta +- h e_idx, for every parameter coordinate idx: x is a
    # constant, so nothing in it moves with theta and one evaluation serves them all (evaluating it
    # twice per coordinate made a Normal of 10^5 coordinates call f 4 10^5 times).
    fixed = eval_f(f, x, np.float64).mean()
    plus, minus = fixed, fixed
    grad, stderr = {}, {}
    for name in dist.params:
        p0 = np.asarray(getattr(dist, name), dtype=np.float64)
        g = np.full(p0.shape, (plus - minus) / (2.0 * h))
        grad[name] = g.astype(dist.dtype)
        stderr[name] = np.zeros_like(grad[name])
    value, value_se = mean_stderr(eval_f(f, x, dist.dtype))
    return Estimate("naive", value, value_se, grad, stderr, n, n, seed)


_CURVE_ESTIMATORS = ("pathwise", "score_function", "measure_valued")
_TAKES_GRAD_F = ("pathwise", "gumbel_softmax", "rebar", "relax")


def variance_curve(make_f, ks, dist, estimators=_CURVE_ESTIMATORS,
                   n_samples=2000, seed=0, options=None):
    """Single-sample variance of each estimator as a parameter k of f varies.

    In the style of Figs 2-3 of Mohamed, Rosca, Figurnov & Mnih (2020, JMLR):
    e.g. ``make_f = lambda k: (lambda x: np.cos(k * x).sum(-1) ..., grad_f)``.

    Parameters
    ----------
    make_f : callable k -> (f, grad_f) (grad_f may be None for estimators that do not use it)
    ks : 1-D array of k values
    dist : Distribution
    estimators : a name, or names, of estimators with the shared call shape: "pathwise", "score_function",
        "measure_valued", "reinforce_loo", "arm", "disarm", "gumbel_softmax", "rebar", "relax",
        "unordered_set", "reinforce_wor" (those that apply to ``dist``); grad_f is passed to pathwise, gumbel_softmax, rebar and relax
    n_samples : int, draws per estimate
    seed : int, the same for every k and estimator (common random numbers)
    options : {estimator name: dict of keyword options} (e.g. {"score_function": {"baseline": "loo"}};
        {"relax": {"surrogate": s}} with a trained ``RelaxSurrogate`` (held fixed: ``train=False``
        is implied unless given))

    Returns
    -------
    dict: ``"k"`` -> ks; for each estimator name ``{param: (len(ks), *param.shape)}``
    (plotted by ``plot_variance``).
    """
    if not callable(make_f):
        raise TypeError(f"make_f must be callable (k -> (f, grad_f)), got {type(make_f).__name__}")
    ks = C.as_array(ks, "ks", dtype=np.float64, ndim=1)
    # every name and option checked before the first estimate (a misspelt second estimator was refused
    # only after the first one's work; options that were not a dict raised AttributeError)
    if isinstance(estimators, str):
        estimators = (estimators,)
    try:
        estimators = [C.option(name, "estimators", tuple(ESTIMATORS)) for name in estimators]
    except TypeError as exc:
        raise TypeError(f"estimators must be a sequence of estimator names, got {estimators!r}") from exc
    options = {} if options is None else options
    if not isinstance(options, dict):
        raise TypeError(f"options must be a dict {{estimator name: dict of keyword options}}, got "
                        f"{type(options).__name__}")
    for name, kw in options.items():
        C.option(name, "options (a key)", tuple(ESTIMATORS))  # a misspelt name was ignored silently
        if not isinstance(kw, dict):
            raise TypeError(f"options[{name!r}] must be a dict of keyword options, got {type(kw).__name__}")
    out = {"k": ks}
    for name in estimators:
        rows = []
        for k in ks:
            pair = make_f(float(k))
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
                raise TypeError(f"make_f must return a pair (f, grad_f), got {type(pair).__name__}")
            f, df = pair
            kw = dict(options.get(name, {}))
            if name in _TAKES_GRAD_F and df is not None:
                kw["grad_f"] = df
            if name in ("rebar", "relax"):
                kw.setdefault("train", False)
            rows.append(ESTIMATORS[name](f, dist, n_samples, seed=seed, **kw).variance)
        out[name] = {p: np.stack([r[p] for r in rows]) for p in dist.params}
    return out


def seed_example(n_samples=100_000, seed=0, loc=0.0, scale=1.0):
    """The motivating example: L(mu, sigma) = E_{N(mu, sigma^2)}[W + W^2] = mu + mu^2 + sigma^2.

    Returns a list of rows ``{"method", "d_loc", "se_loc", "d_scale", "se_scale"}``:
    the naive derivative of a fixed-sample estimate (0, 0), the pathwise,
    score-function (leave-one-out baseline) and coupled measure-valued
    estimates with their standard errors, and the closed form (1 + 2 mu, 2 sigma).
    """
    loc, scale = C.real(loc, "loc"), C.real(scale, "scale")
    d = Normal(np.array([loc]), np.array([scale]))  # batch (1,)

    def f(x):
        return (x + x * x)[:, 0]

    def df(x):
        return 1.0 + 2.0 * x

    ests = [
        ("naive (samples held fixed)", naive_gradient(f, d, n_samples, seed=seed)),
        ("pathwise", pathwise(f, d, n_samples, seed=seed, grad_f=df)),
        ("score function (LOO baseline)", score_function(f, d, n_samples, seed=seed, baseline="loo")),
        ("measure-valued (coupled)", measure_valued(f, d, n_samples, seed=seed)),
    ]
    rows = [{"method": m, "d_loc": float(e.grad["loc"][0]), "se_loc": float(e.stderr["loc"][0]),
             "d_scale": float(e.grad["scale"][0]), "se_scale": float(e.stderr["scale"][0])} for m, e in ests]
    rows.append({"method": "closed form", "d_loc": 1.0 + 2.0 * float(loc), "se_loc": 0.0,
                 "d_scale": 2.0 * float(scale), "se_scale": 0.0})
    return rows
