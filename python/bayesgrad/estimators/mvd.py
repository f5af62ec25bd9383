"""Measure-valued gradients beyond the Normal: the weak-derivative triples
(c, p+, p-) of Mohamed, Rosca, Figurnov & Mnih (2020, JMLR, section 6), with
d/dtheta E_p[f] = c (E_{p+}[f] - E_{p-}[f]), applied one coordinate at a time
of a mean-field distribution (the other coordinates stay at the sample x).
Internal: ``bayesgrad.estimators.measure_valued`` dispatches here.

* Bernoulli: d/dp: (1, delta_1, delta_0); logits by the chain rule, c = p (1 - p).
* Poisson(rate): (1, x + 1, x) with x ~ Poisson(rate): the sample and its shift by one.
* Exponential(rate): (1 / rate, Exp(rate), Erlang(2, rate)); coupled: the sample x
  and x + y, y ~ Exp(rate) independent.
* Gamma(a, rate): d/drate: (a / rate, Gamma(a, rate), Gamma(a + 1, rate)); coupled:
  x and x + y, y ~ Exp(rate). d/da: the Hahn-Jordan decomposition of
  d p / d a = p(x) (log(rate x) - psi(a)): c = E[(log(rate x) - psi(a))^+]
  (``gamma_shape_constant``), p+- proportional to p(x) (+-(log(rate x) - psi(a)))^+, drawn
  by rejection from Gamma(a +- eps, rate) under the envelope t^{+-eps} / (e eps) >=
  (+-log t)^+ (y <= e^{eps y} / (e eps) for every y, equality at y = 1 / eps), t = rate x e^{-psi(a)},
  with eps = 1 / sd(log X) = psi'(a)^{-1/2} (capped at a / 2 for p-): log t is about
  N(0, psi'(a)), and that eps maximises the acceptance, which is then 0.41-0.74 for every a
  (a fixed eps = 1/2 accepted 2% at a = 100, and 200 rounds did not finish beyond a ~ 30).
"""
from __future__ import annotations

import warnings

import numpy as np

from .. import _backend
from .. import random as _random
from ..distributions import Bernoulli, Exponential, Gamma, Poisson
from ..distributions._base import digamma, trigamma
from .._numerics import sigmoid

_MAX_ROUNDS = 200  # rejection rounds; each accepts at least ~0.41 of what is left (module docstring)


def families():
    """The distribution classes handled here (tuple)."""
    return (Bernoulli, Poisson, Exponential, Gamma)


def _flat_param(dist, name):
    return np.broadcast_to(np.asarray(getattr(dist, name), dtype=np.float64), tuple(dist.batch_shape)).reshape(-1)


# Where the finite difference of scipy's regularised incomplete gamma below is accurate to
# 1e-10 relative (checked against the quadrature in tests/test_estimators_families.py)
_FD_RANGE = (0.01, 64.0)


def _shape_constant_quad(a):
    from scipy import integrate, special

    psi = special.digamma(a)
    lg = special.gammaln(a)
    if a < _FD_RANGE[0]:
        # s = a (log y - psi) >= 0: below a ~ 0.01 the mass of log y spreads over ~1/a below 0 and ends in
        # a layer of width ~a at s = -a psi (y = 1: the factor exp(-e^{psi + s / a})), which the log y form's
        # quadrature missed (c(1e-4) came out 6013 against 3678.79; c = e^{-1} / a + 0.30 a + ...); the
        # layer, 40 a either side, is a piece of its own (it holds an O(1) part of c)
        def integrand_s(s):
            with np.errstate(over="ignore", under="ignore"):
                return s * np.exp(a * psi + s - np.exp(psi + s / a) - lg) / (a * a)

        sc = -a * psi
        edges = (0.0, sc - 40.0 * a, sc, sc + 40.0 * a, np.inf)
        with warnings.catch_warnings():  # roundoff notes below a ~ 1e-9, where the pieces still agree to 1e-12
            warnings.simplefilter("ignore", integrate.IntegrationWarning)
            return sum(integrate.quad(integrand_s, lo, hi, epsabs=0, epsrel=1e-13, limit=400)[0]
                       for lo, hi in zip(edges[:-1], edges[1:]))

    def integrand(logy):
        # y = e^logy: p(y) dy = exp(a logy - y - lgamma(a)) dlogy
        with np.errstate(over="ignore"):
            return (logy - psi) * np.exp(a * logy - np.exp(logy) - lg)

    return integrate.quad(integrand, psi, np.inf, epsabs=1e-14, epsrel=1e-12, limit=200)[0]


def gamma_shape_constant(a):
    """c(a) = E[(log X - psi(a))^+] for X ~ Gamma(a, 1) (half of E|score|).

    c(a) = dQ(a, x)/da at x = exp(psi(a)) (Q the regularised upper incomplete gamma;
    differentiating under the integral gives E[(log X - psi(a)) 1{X > x}]): a Richardson-extrapolated
    central difference of ``scipy.special.gammaincc`` for a in [0.01, 64] (vectorised), adaptive
    quadrature elsewhere.

    Parameters
    ----------
    a : (D,) float64 > 0

    Returns
    -------
    (D,) float64
    """
    from scipy import special

    a = np.asarray(a, dtype=np.float64)
    out = np.empty_like(a)
    fd = (a >= _FD_RANGE[0]) & (a <= _FD_RANGE[1])
    if fd.any():
        af = a[fd]
        x = np.exp(special.digamma(af))
        h = 1e-3 * af

        def central(step):
            return (special.gammaincc(af + step, x) - special.gammaincc(af - step, x)) / (2.0 * step)

        out[fd] = (4.0 * central(h / 2.0) - central(h)) / 3.0
    rest = ~fd
    if rest.any():
        uniq, inv = np.unique(a[rest], return_inverse=True)
        out[rest] = np.array([_shape_constant_quad(ai) for ai in uniq])[inv.reshape(-1)]
    return out


def _gamma_shape_parts(a, n, seed, stream, sign):
    """(n, D) draws of X ~ p+ (sign +1) or p- (sign -1) of d Gamma(a, 1) / da, by rejection
    (native kernel ``estimators.gamma_weak_parts``; the loop over rounds in the twin)."""
    eps = 1.0 / np.sqrt(trigamma(a))  # 1 / sd(log X): the acceptance's maximiser
    if sign < 0:
        eps = np.minimum(eps, a / 2.0)  # the proposal's shape a - eps stays positive
    psi = np.ascontiguousarray(digamma(a), dtype=np.float64)
    out = np.empty((n, a.size))
    tag = "mvd_gamma_shape_plus" if sign > 0 else "mvd_gamma_shape_minus"
    _backend.kernels().estimators.gamma_weak_parts(np.ascontiguousarray(a + sign * eps), eps, psi, float(sign),
                                                   int(seed), _random.fold_in(stream, tag), _MAX_ROUNDS, out)
    return out


def triples(dist, x, n, seed, stream, coupling=True):
    """The weak-derivative parts of every parameter at samples x.

    Parameters
    ----------
    dist : Bernoulli, Poisson, Exponential or Gamma
    x : (n, *batch_shape) the draws of dist
    n : int
    seed, stream : the call's seed and stream (independent parts use fold_in tags)
    coupling : bool; False draws p+ and p- independently of each other and of x where the
        coupled form shares them (Poisson, Exponential, the Gamma rate)

    Returns
    -------
    list of (param name, c (D,), plus (n, D) or None, minus (n, D) or None): coordinate d of
    plus / minus replaces x_d; None means x itself (f(x) is then reused)
    """
    xf = np.asarray(x, dtype=np.float64).reshape(n, -1)
    D = xf.shape[1]

    def expo(tag, rate):
        return -np.log(_random.uniform((n, D), seed=seed, stream=_random.fold_in(stream, tag))) / rate

    if isinstance(dist, Bernoulli):
        one, zero = np.ones((n, D)), np.zeros((n, D))
        if dist.prob_param == "logits":
            p = sigmoid(_flat_param(dist, "logits"))
            return [("logits", p * (1.0 - p), one, zero)]
        return [("probs", np.ones(D), one, zero)]
    if isinstance(dist, Poisson):
        if coupling:
            return [("rate", np.ones(D), xf + 1.0, None)]
        other = Poisson(np.broadcast_to(dist.rate, tuple(dist.batch_shape))).sample(
            n, seed=seed, stream=_random.fold_in(stream, "mvd_poisson")).reshape(n, D)
        return [("rate", np.ones(D), other + 1.0, None)]
    if isinstance(dist, Exponential):
        lam = _flat_param(dist, "rate")
        first = xf if coupling else expo("mvd_erlang_2", lam)
        return [("rate", 1.0 / lam, None, first + expo("mvd_erlang", lam))]
    if isinstance(dist, Gamma):
        a, b = _flat_param(dist, "concentration"), _flat_param(dist, "rate")
        plus = _gamma_shape_parts(a, n, seed, stream, +1) / b
        minus = _gamma_shape_parts(a, n, seed, stream, -1) / b
        if coupling:
            first = xf
        else:
            first = Gamma(a, b).sample(n, seed=seed, stream=_random.fold_in(stream, "mvd_gamma")).reshape(n, D)
        return [("concentration", gamma_shape_constant(a), plus, minus),
                ("rate", a / b, None, first + expo("mvd_erlang", b))]
    raise TypeError(f"no weak derivative for {type(dist).__name__}")
