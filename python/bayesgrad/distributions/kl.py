"""Closed-form KL divergences: ``kl_divergence(p, q)`` dispatches on
``(type(p), type(q))`` through a registry that ``register_kl`` extends.
"""
from __future__ import annotations

import numpy as np

from .._numerics import sigmoid, softplus
from .._numerics import lgamma_corr
from ._base import EULER, digamma, digamma_diff, digamma_tail, lbeta, lgamma
from .discrete import Bernoulli, Categorical
from .gamma import Beta, Dirichlet, Gamma, log_multi_beta
from .locscale import Exponential, Gumbel, Laplace, LogNormal, Normal, Uniform
from .multivariate import MultivariateNormal

_KL = {}


def register_kl(p_type, q_type):
    """Decorator registering ``fn(p, q)`` as KL(p || q) for the two types."""

    def deco(fn):
        _KL[(p_type, q_type)] = fn
        return fn

    return deco


def kl_divergence(p, q):
    """KL(p || q) in nats, closed form, shape ``broadcast(p.batch_shape, q.batch_shape)``."""
    fn = _KL.get((type(p), type(q)))
    if fn is None:
        raise TypeError(f"no closed-form KL divergence for {type(p).__name__} || {type(q).__name__}")
    return fn(p, q)


@register_kl(Normal, Normal)
def _kl_normal_normal(p, q):
    """KL between two normals (also used for two log-normals)."""
    vr = (p.scale / q.scale) ** 2
    t = ((p.loc - q.loc) / q.scale) ** 2
    return 0.5 * (vr + t - 1.0 - np.log(vr))


@register_kl(LogNormal, LogNormal)
def _kl_lognormal_lognormal(p, q):
    return _kl_normal_normal(p, q)


@register_kl(MultivariateNormal, MultivariateNormal)
def _kl_mvn_mvn(p, q):
    if p.event_shape != q.event_shape:
        raise ValueError(f"event shapes differ: {p.event_shape} and {q.event_shape}")
    batch = np.broadcast_shapes(p.batch_shape, q.batch_shape)
    k = p.event_shape[0]
    Lp = np.broadcast_to(p.scale_tril, batch + (k, k))
    Lq = np.broadcast_to(q.scale_tril, batch + (k, k))
    M = np.linalg.solve(Lq, Lp)
    d = np.linalg.solve(Lq, (np.broadcast_to(q.loc - p.loc, batch + (k,)))[..., None])[..., 0]
    logdet = np.sum(np.log(np.diagonal(Lq, axis1=-2, axis2=-1)) - np.log(np.diagonal(Lp, axis1=-2, axis2=-1)), -1)
    return 0.5 * (np.sum(M * M, axis=(-2, -1)) + np.sum(d * d, -1) - k) + logdet


@register_kl(Exponential, Exponential)
def _kl_exp_exp(p, q):
    r = q.rate / p.rate
    return r - 1.0 - np.log(r)


@register_kl(Uniform, Uniform)
def _kl_uniform_uniform(p, q):
    inside = (q.low <= p.low) & (p.high <= q.high)
    with np.errstate(divide="ignore"):
        return np.where(inside, np.log((q.high - q.low) / (p.high - p.low)), np.inf)


@register_kl(Laplace, Laplace)
def _kl_laplace_laplace(p, q):
    d = np.abs(p.loc - q.loc)
    return np.log(q.scale / p.scale) + d / q.scale + p.scale / q.scale * np.exp(-d / p.scale) - 1.0


@register_kl(Gumbel, Gumbel)
def _kl_gumbel_gumbel(p, q):
    r = p.scale / q.scale
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp((q.loc - p.loc) / q.scale + lgamma(1.0 + r))
        kl = -np.log(r) + (p.loc - q.loc) / q.scale + EULER * r + e - 1.0 - EULER
    # e = inf (q's location far right of p's) dominates the -inf of the location term: inf - inf was NaN
    return np.where(e == np.inf, np.inf, kl).astype(p.dtype)


@register_kl(Gamma, Gamma)
def _kl_gamma_gamma(p, q):
    a1, r1 = p.concentration.astype(np.float64), p.rate.astype(np.float64)
    a2, r2 = q.concentration.astype(np.float64), q.rate.astype(np.float64)
    a1, a2, r1, r2 = np.broadcast_arrays(a1, a2, r1, r2)
    # a2 ln(r1 / r2) + a1 (r2 - r1) / r1 = a1 (h - log1p(h)) - (a2 - a1) log1p(h), h = r2 / r1 - 1: each
    # term small where the rates are close (the direct form subtracts ~a ln r)
    with np.errstate(over="ignore", invalid="ignore"):
        h = (r2 - r1) / r1
        lh = np.where(np.isinf(h), np.log(r2) - np.log(r1), np.log1p(h))
        rates = np.where(np.isinf(h), np.inf, a1 * (h - lh) - (a2 - a1) * lh)
    shapes = np.asarray((a1 - a2) * digamma(a1) - lgamma(a1) + lgamma(a2))
    big = np.minimum(a1, a2) >= 10.0
    if big.any():
        # lgamma(a2) - lgamma(a1) - (a2 - a1) psi(a1) by Stirling and psi's series, u = (a2 - a1) / a1:
        # a1 ((1 + u) log1p(u) - u) - log1p(u) / 2 + d / (2 a1) - d tail(a1) + corr(a2) - corr(a1)
        b1, b2 = a1[big], a2[big]
        d = b2 - b1
        u = d / b1
        l1u = np.log1p(u)
        shapes[big] = (b1 * ((1.0 + u) * l1u - u) - 0.5 * l1u + d / (2.0 * b1) - d * digamma_tail(b1)
                       + lgamma_corr(b2) - lgamma_corr(b1))
    return (shapes + rates).astype(np.result_type(p.dtype, q.dtype))


@register_kl(Exponential, Gamma)
def _kl_exp_gamma(p, q):
    return _kl_gamma_gamma(Gamma(np.ones_like(p.rate), p.rate), q)


@register_kl(Gamma, Exponential)
def _kl_gamma_exp(p, q):
    return _kl_gamma_gamma(p, Gamma(np.ones_like(q.rate), q.rate))


@register_kl(Beta, Beta)
def _kl_beta_beta(p, q):
    a1, b1 = p.concentration1, p.concentration0
    a2, b2 = q.concentration1, q.concentration0
    # (a1 - a2) psi(a1) + (b1 - b2) psi(b1) + (a2 - a1 + b2 - b1) psi(a1 + b1) as differences of psi that keep
    # their digits at large concentrations
    kl = (lbeta(a2, b2) - lbeta(a1, b1) - (a1 - a2) * digamma_diff(a1, b1) - (b1 - b2) * digamma_diff(b1, a1))
    return kl.astype(np.result_type(p.dtype, q.dtype))


@register_kl(Dirichlet, Dirichlet)
def _kl_dirichlet_dirichlet(p, q):
    a, b = p.concentration.astype(np.float64), q.concentration.astype(np.float64)
    a0 = a.sum(-1)
    kl = (log_multi_beta(b) - log_multi_beta(a)
          + np.sum((a - b) * (digamma(a) - digamma(a0)[..., None]), -1))
    return kl.astype(np.result_type(p.dtype, q.dtype))


@register_kl(Bernoulli, Bernoulli)
def _kl_bernoulli_bernoulli(p, q):
    lp, lq = p.logits.astype(np.float64), q.logits.astype(np.float64)
    pp = sigmoid(lp)
    # p log(p/q) + (1-p) log((1-p)/(1-q)) with log p = -softplus(-l), log(1-p) = -softplus(l)
    with np.errstate(invalid="ignore"):
        t1 = np.where(pp > 0, pp * (softplus(-lq) - softplus(-lp)), 0.0)
        t0 = np.where(pp < 1, (1 - pp) * (softplus(lq) - softplus(lp)), 0.0)
    return (t1 + t0).astype(np.result_type(p.dtype, q.dtype))


@register_kl(Categorical, Categorical)
def _kl_categorical_categorical(p, q):
    if p.n_classes != q.n_classes:
        raise ValueError(f"numbers of classes differ: {p.n_classes} and {q.n_classes}")
    lp, lq = p.log_probs.astype(np.float64), q.log_probs.astype(np.float64)
    pp = np.exp(lp)
    with np.errstate(invalid="ignore"):
        t = np.where(pp > 0, pp * (lp - lq), 0.0)
    return np.sum(t, -1).astype(np.result_type(p.dtype, q.dtype))
