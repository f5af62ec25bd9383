"""Estimators from samples without replacement (Categorical): ``unordered_set``
(Kool, van Hoof & Welling 2020) and ``reinforce_wor`` (REINFORCE without
replacement: priority-sampling weights, Kool et al. 2019). Call shape: see
``bayesgrad.estimators``; ``n_samples`` counts independent sets of ``k``
distinct configurations of the Categorical's joint support (drawn by
``bayesgrad.distributions.gumbel_top_k``), and the standard errors are over sets.

For a set S of k configurations drawn without replacement, with p(s) the joint
probability of configuration s and P^{D\\A}(B) the probability that sampling
without replacement from the support less A (probabilities renormalised) draws
the set B first, in any order:

* unordered set estimator: sum_s P(B_1 = s | S) f(s) d log p(s), where
  P(B_1 = s | S) = p(s) P^{D\\s}(S\\s) / P(S): REINFORCE Rao-Blackwellised over
  the orders of S. Unbiased.
* with its built-in baseline (``baseline=True``, k >= 2): the first draw's term
  uses the unbiased estimate p(s) f(s) + (1 - p(s)) f(B_2) of E[f] from the
  second draw as baseline, and the whole is Rao-Blackwellised over orders:
  sum_s P(B_1 = s | S) (1 - p(s)) (f(s) - sum_{s' != s} P(B_2 = s' | B_1 = s, S) f(s')) d log p(s),
  P(B_2 = s' | B_1 = s, S) = p(s') / (1 - p(s)) P^{D\\{s,s'}}(S\\{s,s'}) / P^{D\\s}(S\\s).
  Unbiased (the baseline's conditional mean given B_1 is E[f], free of B_1).
* REINFORCE without replacement: sum_s p(s) / q(s) f(s) d log p(s) with
  q(s) = 1 - exp(-exp(log p(s) - kappa)), kappa the (k+1)-th largest perturbed
  log-probability (priority sampling, a Horvitz-Thompson estimator). Unbiased;
  ``baseline="normalized"`` divides the weights by their sum and subtracts the
  weighted mean of f (Kool et al.'s built-in baseline): lower variance,
  biased (self-normalised importance weights; exact when k is the support size).

P(S) is the sum over the k! orders of prod_i p(s_i) / (1 - sum_{j<i} p(s_j)),
computed exactly by a recursion over the 2^k subsets of S, so k is limited to
``MAX_K``; each mass left, 1 - sum_{j<i} p(s_j), is formed as the mass outside S
(``log_outside_mass``, by the trie of the set's configurations) plus the set's
elements not yet drawn: sums of non-negative terms, so that a set holding
almost all the mass beside elements of probability 1e-17 keeps them (1 - sum
cancelled there).
"""
from __future__ import annotations

import numpy as np

from .. import _backend
from .. import _checks as C
from ..distributions._base import sum_to_shape
from .._numerics import log_softmax
from .._numpy._beam_search import _log_set_probability
from ..distributions.discrete import Categorical, gumbel_top_k
from ._base import Estimate, eval_f, grads_from_terms, mean_stderr, setup

MAX_K = 12  # the subset recursion costs 2^k k per set and per leave-out


def log_set_probability(log_p, log_rest=None):
    """log P(S): the probability that sampling without replacement draws the m elements
    of S first, in any order, from a distribution giving them log-probabilities ``log_p``.

    Parameters
    ----------
    log_p : (..., m) float64, log-probabilities (nats) of the m distinct elements under a
        normalised distribution
    log_rest : (...) float64 or None, the log of the probability mass outside the m elements
        (-inf when they are the whole support); None: log(1 - sum p), which loses the mass left
        when the elements hold almost all of it (pass it then: ``log_outside_mass`` gives it for
        configurations of a Categorical)

    Returns
    -------
    (...) float64, log of sum over orders of prod_i p_i / L(elements before i), L(B) = rest +
    the sum of p over the elements not in B (the mass left); 0 for m = 0
    """
    log_p = np.asarray(log_p, dtype=np.float64)
    if log_rest is None:
        with np.errstate(divide="ignore"):
            log_rest = np.log(np.maximum(1.0 - np.exp(log_p).sum(-1), 0.0))
    log_rest = np.broadcast_to(np.asarray(log_rest, dtype=np.float64), log_p.shape[:-1])
    return _log_set_probability(log_p, log_rest)


def log_outside_mass(conf, log_probs):
    """log of the probability mass outside each set of configurations of a Categorical's joint support.

    By the trie of the sets' configurations, a coordinate at a time: at coordinate d every group of
    a set's configurations sharing classes before d adds its prefix probability times the mass of the
    classes none of them takes at d (the kernel ``estimators.set_outside_mass``). A sum of non-negative
    terms, accurate where 1 - sum_S p(s) cancels (a set holding almost all the mass beside
    configurations of probability 1e-17).

    Parameters
    ----------
    conf : (n, k, D) int64, k distinct configurations of D coordinates per set
    log_probs : (D, K) float64, each coordinate's log-probabilities

    Returns
    -------
    (n,) float64; -inf where a set is the whole support
    """
    conf = np.ascontiguousarray(conf, dtype=np.int64)
    if conf.ndim != 3:
        raise ValueError(f"conf must have shape (n, k, D), got {conf.shape}")
    lp = np.ascontiguousarray(log_probs, dtype=np.float64)
    out = np.empty(conf.shape[0])
    _backend.kernels().estimators.set_outside_mass(conf, lp, out)
    return out


def order_probabilities(log_p, log_rest):
    """P(B_1 = s | S) and P(B_2 = s' | B_1 = s, S) for a set S drawn without replacement.

    The recursion of ``log_set_probability`` for S, each S \\ s and each S \\ {s, s'} (the
    native kernel ``estimators.set_order_probabilities``, or its twin).

    Parameters
    ----------
    log_p : (n, k) float64, the joint log-probabilities of the k distinct elements of each set
    log_rest : (n,) float64, the log of the mass outside each set (``log_outside_mass``)

    Returns
    -------
    first : (n, k), P(B_1 = s | S), rows summing to 1
    second : (n, k, k) or None (k < 2), P(B_2 = s' | B_1 = s, S) at [:, s, s'], zero on the
        diagonal, rows summing to 1
    """
    log_p = np.ascontiguousarray(log_p, dtype=np.float64)
    n, k = log_p.shape
    first = np.empty((n, k))
    second = np.empty((n, k, k)) if k >= 2 else None
    log_rest = np.ascontiguousarray(np.broadcast_to(np.asarray(log_rest, dtype=np.float64), (n,)))
    _backend.kernels().estimators.set_order_probabilities(log_p, log_rest, first, second)
    return first, second


def _draw_sets(f, dist, n_samples, seed, stream, k, per_sample):
    n, seed, stream = setup(f, dist, n_samples, seed, stream, per_sample=per_sample)
    if not isinstance(dist, Categorical):
        raise TypeError(f"this estimator needs a Categorical distribution, got {type(dist).__name__}")
    if "logits" not in dist.params:
        raise TypeError("the Categorical must be parameterised by logits (construct it with logits=...)")
    k = C.integer(k, "k", 1)
    if k > MAX_K:
        raise ValueError(f"k={k} exceeds MAX_K={MAX_K} (P(S) costs 2^k per set)")
    top = gumbel_top_k(dist, k, n, seed, stream)
    batch = tuple(dist.batch_shape)
    X = top.samples.reshape((n * k,) + batch)
    fx = eval_f(f, X, np.float64).reshape(n, k)
    return n, seed, k, top, fx


def _log_rest(dist, top):
    """(n,) the log of the mass outside each drawn set (``log_outside_mass``)."""
    n, k = top.log_prob.shape
    K = int(dist.n_classes)
    batch = tuple(dist.batch_shape)
    D = int(np.prod(batch, dtype=np.int64))
    lp = np.broadcast_to(log_softmax(np.asarray(dist.logits, dtype=np.float64)), batch + (K,)).reshape(D, K)
    return log_outside_mass(top.samples.reshape(n, k, D), lp)


def _weighted(dist, top, c):
    """sum_s c[:, s] d log p(s) / d logits -> (n, *logits shape): the one-hot minus the class
    probabilities, weighted, in one pass (``estimators.categorical_set_terms``)."""
    n, k = c.shape
    batch = tuple(dist.batch_shape)
    K = int(dist.n_classes)
    D = int(np.prod(batch, dtype=np.int64))
    # the probabilities in the distribution's dtype, as its score uses them
    probs = np.broadcast_to(np.asarray(dist.probs, dtype=dist.dtype), batch + (K,)).astype(np.float64).reshape(D, K)
    conf = np.ascontiguousarray(top.samples.reshape(n, k, D), dtype=np.int64)
    t = np.empty((n, D, K))
    _backend.kernels().estimators.categorical_set_terms(conf, np.ascontiguousarray(c, dtype=np.float64), probs, t)
    return sum_to_shape(t.reshape((n,) + batch + (K,)), 1, dist._param_shapes["logits"])


def unordered_set(f, dist, n_samples, seed=0, stream=0, *, k=4, baseline=True, per_sample=False):
    """The unordered set estimator (Kool, van Hoof & Welling 2020) for Categorical logits. Unbiased.

    Each of ``n_samples`` terms uses one set of k distinct configurations of
    the joint support (``gumbel_top_k``); the module docstring gives the
    estimator and its built-in baseline.

    Parameters
    ----------
    f : callable ``(m, *batch) int64 class indices -> (m,)``
    dist : Categorical with ``logits`` (``batch_shape`` coordinates sampled jointly)
    n_samples : int >= 1, independent sets
    k : int in [1, MAX_K], the set size (at most the support size)
    baseline : bool, the built-in baseline (needs k >= 2)
    per_sample : bool

    Returns
    -------
    Estimate; ``value`` is the mean over sets of sum_s P(B_1 = s | S) f(s) (unbiased for E[f]),
    ``n_evaluations`` = n_samples * k; ``info``: k, baseline.
    """
    if not isinstance(baseline, (bool, np.bool_)):
        raise TypeError("baseline must be True or False")
    if baseline and C.integer(k, "k", 1) < 2:
        raise ValueError("the built-in baseline needs k >= 2 (or baseline=False)")
    n, seed, k, top, fx = _draw_sets(f, dist, n_samples, seed, stream, k, per_sample)
    log_rest = _log_rest(dist, top)
    first, second = order_probabilities(top.log_prob, log_rest)
    if baseline:
        base = np.einsum("nij,nj->ni", second, fx)
        # 1 - p(s) as the mass outside the set plus the set's other elements (no cancellation at p(s) ~ 1)
        others = np.array([[j for j in range(k) if j != i] for i in range(k)], dtype=np.int64)
        one_minus = np.exp(np.logaddexp(log_rest[:, None], np.logaddexp.reduce(top.log_prob[:, others], axis=-1)))
        c = first * one_minus * (fx - base)
    else:
        c = first * fx
    terms = {"logits": _weighted(dist, top, c)}
    grad, stderr, per = grads_from_terms(dist, terms, n, per_sample)
    value, value_se = mean_stderr((first * fx).sum(1))
    return Estimate("unordered_set", value, value_se, grad, stderr, n, n * k, seed, per,
                    {"k": k, "baseline": bool(baseline)})


def reinforce_wor(f, dist, n_samples, seed=0, stream=0, *, k=4, baseline=None, per_sample=False):
    """REINFORCE without replacement (priority sampling; Kool et al. 2019) for Categorical logits.

    sum_s p(s) / q(s) f(s) d log p(s) over a set of k distinct configurations,
    q(s) the probability that s beats the threshold kappa (module docstring):
    unbiased. ``baseline="normalized"``: Kool et al.'s built-in baseline with
    self-normalised weights, lower variance but BIASED (exact only when k is the
    support size; ``info["biased"]``).

    Parameters
    ----------
    f : callable ``(m, *batch) int64 class indices -> (m,)``
    dist : Categorical with ``logits``
    n_samples : int >= 1, independent sets
    k : int in [1, MAX_K], the set size (at most the support size)
    baseline : None | "normalized" (k >= 2)
    per_sample : bool

    Returns
    -------
    Estimate; ``value`` the mean over sets of sum_s p(s)/q(s) f(s) (normalised likewise with
    the baseline); ``info``: k, baseline, biased, weight_sum (mean of sum_s p(s)/q(s), 1 in expectation).
    """
    mode = C.option("none" if baseline is None else baseline, "baseline", ("none", "normalized"))
    if mode == "normalized" and C.integer(k, "k", 1) < 2:
        raise ValueError("the normalized baseline needs k >= 2 (with k = 1 it cancels the estimate)")
    n, seed, k, top, fx = _draw_sets(f, dist, n_samples, seed, stream, k, per_sample)
    # q(s) = P(G_s > kappa) = 1 - exp(-exp(log p(s) - kappa)); 1 when kappa = -inf
    with np.errstate(over="ignore"):
        q = -np.expm1(-np.exp(top.log_prob - top.threshold[:, None]))
    w = np.exp(top.log_prob) / q
    W = w.sum(1)
    if mode == "normalized":
        wn = w / W[:, None]
        fbar = (wn * fx).sum(1)
        c = wn * (fx - fbar[:, None])
        vals = fbar
    else:
        c = w * fx
        vals = (w * fx).sum(1)
    terms = {"logits": _weighted(dist, top, c)}
    grad, stderr, per = grads_from_terms(dist, terms, n, per_sample)
    value, value_se = mean_stderr(vals)
    return Estimate("reinforce_wor", value, value_se, grad, stderr, n, n * k, seed, per,
                    {"k": k, "baseline": None if mode == "none" else mode, "biased": mode == "normalized",
                     "weight_sum": float(W.mean())})
