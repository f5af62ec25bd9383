"""Estimators for discrete variables: ``reinforce_loo`` (any family with a
score), ``arm`` and ``disarm`` (Bernoulli), ``gumbel_softmax`` (Bernoulli or
Categorical; biased), and ``exact_gradient``, the enumerated reference that
measures their bias on small supports. Call shape: see ``bayesgrad.estimators``.
"""
from __future__ import annotations

import numpy as np

from .. import _checks as C
from .. import random as _random
from ..distributions._base import sum_to_shape
from .._numerics import log_softmax, sigmoid
from ._base import Estimate, eval_f, eval_like, grads_from_terms, mean_stderr, per_sample_size, setup
from .generic import score_function


def reinforce_loo(f, dist, n_samples, seed=0, stream=0, *, per_sample=False):
    """REINFORCE with the leave-one-out baseline (RLOO; Kool et al. 2019), e.g. for
    Bernoulli or Categorical: ``score_function(..., baseline="loo")``."""
    est = score_function(f, dist, n_samples, seed, stream, baseline="loo", per_sample=per_sample)
    est.estimator = "reinforce_loo"
    return est


def _family(dist, allowed):
    name = type(dist).__name__
    fam = "bernoulli" if name == "Bernoulli" else "categorical" if name == "Categorical" else None
    if fam is None or fam not in allowed:
        raise TypeError(f"this estimator needs a {' or '.join(a.capitalize() for a in allowed)} "
                        f"distribution, got {name}")
    if "logits" not in dist.params:
        raise TypeError(f"the {name} must be parameterised by logits (construct it with logits=...)")
    return fam


def _bernoulli_setup(f, dist, n_samples, seed, stream, per_sample):
    n, seed, stream = setup(f, dist, n_samples, seed, stream, per_sample=per_sample)
    _family(dist, ("bernoulli",))
    shape = tuple(dist.batch_shape)
    eta = np.broadcast_to(np.asarray(dist.logits, dtype=np.float64), shape)
    u = _random.uniform((n,) + shape, seed=seed, stream=stream, dtype=np.float64)
    return n, seed, eta, u


def _discrete_estimate(name, dist, terms, n, n_eval, seed, value, value_se, per_sample, info=None):
    t = {"logits": sum_to_shape(terms, 1, dist._param_shapes["logits"])}
    grad, stderr, per = grads_from_terms(dist, t, n, per_sample)
    return Estimate(name, value, value_se, grad, stderr, n, n_eval, seed, per, info)


def arm(f, dist, n_samples, seed=0, stream=0, *, per_sample=False):
    """ARM (Yin & Zhou 2019) for independent Bernoulli(sigmoid(logits)) coordinates.

    ``(f(1[u > sigmoid(-eta)]) - f(1[u < sigmoid(eta)])) (u - 1/2)``, u ~ Uniform(0,1)^D:
    two evaluations of f per sample. ``value`` is the mean of f at the two points.
    """
    n, seed, eta, u = _bernoulli_setup(f, dist, n_samples, seed, stream, per_sample)
    dt = dist.dtype
    b1 = (u > sigmoid(-eta)).astype(dt)
    b2 = (u < sigmoid(eta)).astype(dt)
    f1, f2 = eval_f(f, b1, np.float64), eval_f(f, b2, np.float64)
    terms = (f1 - f2).reshape((n,) + (1,) * eta.ndim) * (u - 0.5)
    value, value_se = mean_stderr(0.5 * (f1 + f2))
    return _discrete_estimate("arm", dist, terms, n, 2 * n, seed, value, value_se, per_sample)


def disarm(f, dist, n_samples, seed=0, stream=0, *, per_sample=False):
    """DisARM (Dong, Mnih & Tucker 2020) for independent Bernoulli(sigmoid(logits)).

    b = 1[u < sigmoid(eta)], b~ = 1[1 - u < sigmoid(eta)] (antithetic);
    ``1/2 (f(b) - f(b~)) (-1)^b~ 1[b != b~] sigmoid(|eta|)``: two evaluations per sample.
    """
    n, seed, eta, u = _bernoulli_setup(f, dist, n_samples, seed, stream, per_sample)
    dt = dist.dtype
    p = sigmoid(eta)
    b = (u < p).astype(dt)
    bt = (1.0 - u < p).astype(dt)
    f1, f2 = eval_f(f, b, np.float64), eval_f(f, bt, np.float64)
    sign = np.where(bt > 0, -1.0, 1.0) * (b != bt) * sigmoid(np.abs(eta))
    terms = 0.5 * (f1 - f2).reshape((n,) + (1,) * eta.ndim) * sign
    value, value_se = mean_stderr(0.5 * (f1 + f2))
    return _discrete_estimate("disarm", dist, terms, n, 2 * n, seed, value, value_se, per_sample)


def gumbel_softmax(f, dist, n_samples, seed=0, stream=0, *, temperature=1.0, grad_f=None,
                   straight_through=False, per_sample=False):
    """Gumbel-softmax (concrete) gradient for Bernoulli or Categorical logits. BIASED.

    The discrete sample is replaced by its relaxation at ``temperature`` tau:
    Categorical ``y = softmax((logits + G) / tau)`` (f sees ``(m, *batch, K)``
    points of the simplex), Bernoulli ``y = sigmoid((logits + L) / tau)`` with
    logistic L (f sees ``(m, *batch)`` in (0, 1)). The estimate is the exact
    pathwise gradient of the *relaxed* objective E[f(y)], not of E[f(b)]; the
    bias shrinks as tau falls while the variance grows. ``exact_gradient``
    gives the unbiased target on small problems, so the bias can be measured.

    Parameters
    ----------
    f : callable ``(m, *batch) -> (m,)`` (Bernoulli) or ``(m, *batch, K) -> (m,)`` (Categorical)
    dist : Bernoulli or Categorical with ``logits``
    n_samples : int >= 1
    seed, stream : int, the Philox key of the Gumbel (logistic) noise
    temperature : float > 0, tau
    grad_f : callable (required), the gradient of f on the relaxed space, shaped like its input
    straight_through : bool
        f and grad_f are evaluated at the hard sample (one-hot argmax /
        1[y > 1/2]) and the gradient flows through the relaxation's Jacobian.
    per_sample : bool

    Returns
    -------
    Estimate of the relaxed objective's value and its gradient w.r.t. ``logits``;
    ``info``: temperature, straight_through, biased (True)
    """
    n, seed, stream = setup(f, dist, n_samples, seed, stream, per_sample=per_sample)
    fam = _family(dist, ("bernoulli", "categorical"))
    straight_through = C.flag(straight_through, "straight_through")
    tau = C.scalar(temperature, "temperature")
    if tau <= 0:
        raise ValueError(f"temperature must be positive, got {tau}")
    if grad_f is None or not callable(grad_f):
        raise TypeError("gumbel_softmax needs grad_f, the gradient of f on the relaxed space")
    # the relaxation's per-sample arrays (uniforms, logits, y, the hard sample, f's point, grad_f, terms),
    # each (n, *batch, K) for a Categorical (setup's check counts 4)
    C.check_allocation(C.n_bytes((n, per_sample_size(dist)), np.float64, copies=8),
                       f"n_samples={n}: gumbel_softmax's per-sample arrays")
    dt = dist.dtype
    logits = np.asarray(dist.logits, dtype=np.float64)
    if fam == "bernoulli":
        shape = tuple(dist.batch_shape)
        eta = np.broadcast_to(logits, shape)
        u = _random.uniform((n,) + shape, seed=seed, stream=stream)
        y = sigmoid((eta + np.log(u) - np.log1p(-u)) / tau)
        hard = (y > 0.5).astype(np.float64)
        point = (hard if straight_through else y).astype(dt)
        fx = eval_f(f, point, np.float64)
        g = eval_like(grad_f, point, np.float64, "grad_f")
        terms = g * y * (1.0 - y) / tau
    else:
        shape = tuple(np.broadcast_shapes(logits.shape, tuple(dist.batch_shape) + logits.shape[-1:]))
        lg = np.broadcast_to(logits, shape)
        u = _random.uniform((n,) + shape, seed=seed, stream=stream)
        a = (lg - np.log(-np.log(u))) / tau
        a -= a.max(axis=-1, keepdims=True)
        y = np.exp(a)
        y /= y.sum(axis=-1, keepdims=True)
        hard = (a == 0.0).astype(np.float64)  # the argmax (ties have probability 0)
        point = (hard if straight_through else y).astype(dt)
        fx = eval_f(f, point, np.float64)
        g = eval_like(grad_f, point, np.float64, "grad_f")
        terms = y * (g - (g * y).sum(axis=-1, keepdims=True)) / tau
    value, value_se = mean_stderr(fx)
    return _discrete_estimate("gumbel_softmax", dist, terms, n, n, seed, value, value_se, per_sample,
                              {"temperature": tau, "straight_through": bool(straight_through), "biased": True})


def _logits_gradient(dist, fx, fam, shape, D, K):
    """d E[f] / d logits from f on the enumerated support fx (K^D,), coordinate 0 the most significant
    digit: per coordinate d and class c, p_dc sum_c' p_dc' (E[f | x_d = c] - E[f | x_d = c']), each
    difference of conditional means formed from differences of f values. The same value as
    sum_b q(b) f(b) (onehot(b) - p) but without its cancellation: O(1) terms summing to a gradient of
    1e-13 (a class of probability e^-30) left an error of 1e-16 |f|, 0.05% of that gradient."""
    lg = np.asarray(dist.logits, dtype=np.float64)
    if fam == "bernoulli":
        p1 = np.broadcast_to(sigmoid(lg), shape).reshape(D)
        P = np.stack([1.0 - p1, p1], axis=1)  # (D, 2): classes 0 and 1
    else:
        P = np.exp(np.broadcast_to(log_softmax(lg), shape + (K,)).reshape(D, K))
    F = fx.reshape((K,) * D)
    out = np.empty((D, K))
    for d in range(D):
        Fd = np.moveaxis(F, d, 0).reshape(K, -1)  # (K, K^(D-1)) the others in order
        w = np.ones(1)
        for e in range(D):
            if e != d:
                w = np.multiply.outer(w, P[e]).reshape(-1)
        # (K, K): E[f | c] - E[f | c'], a block of c' at a time (K^2 K^(D-1) values in all: 4e9 for one
        # coordinate of 65536 classes)
        delta = np.empty((K, K))
        step = max(1, (1 << 22) // max(1, Fd.size))
        for c0 in range(0, K, step):
            delta[:, c0:c0 + step] = ((Fd[:, None, :] - Fd[None, c0:c0 + step, :]) * w).sum(-1)
        out[d] = P[d] * (delta * P[d][None, :]).sum(1)
    g = out[:, 1] if fam == "bernoulli" else out  # a Bernoulli logit is class 1's
    g = g.reshape(shape if fam == "bernoulli" else shape + (K,))
    return sum_to_shape(g[None], 1, dist._param_shapes["logits"])[0].astype(dist.dtype)


def exact_gradient(f, dist, max_configurations=1 << 16):
    """Exact E[f(b)] and its gradient by enumerating a small discrete support.

    ``sum_b q(b) f(b)`` and ``sum_b q(b) f(b) score(b)`` over every
    configuration of a Bernoulli ({0, 1}^D, f sees ``(M, *batch)`` floats) or a
    Categorical (category indices, f sees ``(M, *batch)`` integers); for logits the
    gradient is formed from differences of conditional means (``_logits_gradient``),
    accurate for classes of tiny probability. The reference for the discrete
    estimators' bias; ``stderr`` is 0.
    """
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}")
    fam = _family(dist, ("bernoulli", "categorical"))
    limit = C.integer(max_configurations, "max_configurations", 1)
    shape = tuple(dist.batch_shape)
    D = int(np.prod(shape, dtype=np.int64))
    K = 2 if fam == "bernoulli" else int(np.shape(dist.logits)[-1])
    M = K ** D
    if M > limit:
        raise ValueError(f"{M} configurations exceed max_configurations={limit}")
    # the (M, D) configurations, f's points and the per-configuration terms (a limit raised to 2**40
    # reached np.arange's MemoryError)
    C.check_allocation(C.n_bytes((M, D + 4), np.float64, copies=3),
                       f"max_configurations={limit}: the {M} configurations of {D} coordinates")
    codes = np.arange(M)[:, None] // (K ** np.arange(D - 1, -1, -1))[None, :] % K  # (M, D)
    X = codes.reshape((M,) + shape)
    X = X.astype(dist.dtype) if fam == "bernoulli" else X.astype(np.int64)
    lp = np.asarray(dist.log_prob(X), dtype=np.float64).reshape(M, -1).sum(axis=1)
    p = np.exp(lp)
    fx = eval_f(f, X, np.float64)
    if dist.prob_param == "logits":
        grad = {"logits": _logits_gradient(dist, fx, fam, shape, D, K)}
    else:
        sc = dist.score(X)
        grad = {k: np.tensordot(p * fx, np.asarray(v, dtype=np.float64), axes=(0, 0)).astype(dist.dtype)
                for k, v in sc.items()}
    stderr = {k: np.zeros_like(v) for k, v in grad.items()}
    return Estimate("exact", float(p @ fx), 0.0, grad, stderr, M, M, None, None, {"total_probability": float(p.sum())})
