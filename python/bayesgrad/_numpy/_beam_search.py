"""NumPy twin of the sampling-without-replacement kernels (cpp/src/beam_search.cpp): the Gumbel
beam search, the unordered set's order probabilities and outside masses, and the set estimator's
terms; part of ``bayesgrad._numpy.estimators`` (its ``__all__`` names them)."""
from __future__ import annotations

import itertools

import numpy as np

from ._arrays import _f64, _matrix, _out64, _softplus


def _log1mexp(x):
    with np.errstate(divide="ignore"):
        return np.where(x > -0.6931471805599453, np.log(-np.expm1(np.minimum(x, 0.0))), np.log1p(-np.exp(x)))


def gumbel_beam_search(log_probs, u, conf, log_prob, perturbed):
    """Stochastic beam search (Gumbel-top-m over the joint configurations of log_probs (D, K)) from uniforms
    u (n, 1 + D m K) into conf (n, m, D) int64, log_prob and perturbed (n, m) (float64)."""
    log_probs = _matrix(_f64(log_probs, "log_probs"), "log_probs")
    D, K = log_probs.shape
    if not isinstance(conf, np.ndarray) or conf.dtype != np.int64 or conf.ndim != 3 or conf.shape[2] != D:
        raise ValueError("conf must be an int64 array of shape (n, m, D)")
    if not conf.flags.c_contiguous or not conf.flags.writeable:
        raise ValueError("conf must be C-contiguous and writeable")
    n, m = conf.shape[:2]
    _f64(u, "u", (n, 1 + D * m * K))
    _out64(log_prob, "log_prob", (n, m))
    _out64(perturbed, "perturbed", (n, m))
    if D * np.log(K) < np.log(m) - 1e-9:
        raise ValueError("m exceeds the K^D configurations")
    gum = -np.log(-np.log(u))
    G = gum[:, :1]
    phi = np.zeros((n, 1))
    cur = np.zeros((n, 1, 0), dtype=np.int64)
    rows = np.arange(n)[:, None]
    for t in range(D):
        B = G.shape[1]
        phic = phi[:, :, None] + log_probs[t]
        g = phic + gum[:, 1 + t * m * K: 1 + t * m * K + B * K].reshape(n, B, K)
        Z = g.max(-1, keepdims=True)
        # each child's Gumbel truncated at its parent's value T: -log(e^-T - e^-Z + e^-g)
        v = G[:, :, None] - g + _log1mexp(g - Z)
        Gt = (G[:, :, None] - _softplus(v)).reshape(n, B * K)
        keep = min(m, B * K)
        idx = np.argsort(-Gt, axis=1, kind="stable")[:, :keep]
        parent, cls = idx // K, idx % K
        cur = np.concatenate([cur[rows, parent], cls[:, :, None]], axis=2)
        phi = phic.reshape(n, B * K)[rows, idx]
        G = Gt[rows, idx]
    conf[...] = cur
    log_prob[...] = phi
    perturbed[...] = G


def _subset_tables(m):
    """For subsets of m elements grouped by size: (masks, predecessor masks, added element), and the
    (2^m, m) membership table."""
    levels = []
    for size in range(1, m + 1):
        masks = [sum(1 << i for i in c) for c in itertools.combinations(range(m), size)]
        prev = np.array([[mk ^ (1 << i) for i in range(m) if mk >> i & 1] for mk in masks], dtype=np.int64)
        elem = np.array([[i for i in range(m) if mk >> i & 1] for mk in masks], dtype=np.int64)
        levels.append((np.array(masks, dtype=np.int64), prev, elem))
    bits = ((np.arange(1 << m)[:, None] >> np.arange(m)[None, :]) & 1).astype(np.float64)  # (2^m, m)
    return levels, bits


def _log_masses(log_p, log_rest, bits):
    """log L(B) = log(rest + sum_{j not in B} p_j) for every subset B (rows of bits (2^m, m)) of the last
    axis of log_p (..., m), log_rest (...): sums of non-negative terms, one element at a time."""
    out = np.broadcast_to(np.asarray(log_rest, dtype=np.float64)[..., None], log_p.shape[:-1] + (bits.shape[0],))
    out = out.copy()
    for j in range(log_p.shape[-1]):
        free = bits[:, j] == 0
        out[..., free] = np.logaddexp(out[..., free], log_p[..., j:j + 1])
    return out


def _log_set_probability(log_p, log_rest):
    """log P(S) over the last axis of log_p (..., m) with log_rest (...) the log of the mass outside the m
    elements: the sum over orders of prod_i p_i / L(elements before i), L(B) = rest + sum_{j not in B} p_j,
    by the recursion over the 2^m subsets, a level (subset size) at a time."""
    m = log_p.shape[-1]
    lead = log_p.shape[:-1]
    if m == 0:
        return np.zeros(lead)
    levels, bits = _subset_tables(m)
    rest = _log_masses(log_p, log_rest, bits)  # (..., 2^m)
    logq = np.full(lead + (1 << m,), -np.inf)
    logq[..., 0] = 0.0
    for masks, prev, elem in levels:
        a = logq[..., prev] + log_p[..., elem] - rest[..., prev]  # (..., n_masks, size)
        mx = a.max(-1, keepdims=True)
        logq[..., masks] = mx[..., 0] + np.log(np.exp(a - mx).sum(-1))
    return logq[..., (1 << m) - 1]


def set_order_probabilities(log_p, log_rest, first, second):
    """P(B_1 = s | S) (n, k) and P(B_2 = s' | B_1 = s, S) (n, k, k) or None for sets of k <= 12 elements drawn
    without replacement, from their log-probabilities log_p (n, k) and log_rest (n,) the log of the mass
    outside each set (-inf: none) (float64)."""
    log_p = _matrix(_f64(log_p, "log_p"), "log_p")
    n, k = log_p.shape
    if not 1 <= k <= 12:
        raise ValueError("set_order_probabilities needs 1 <= k <= 12")
    log_rest = _f64(log_rest, "log_rest", (n,))
    _out64(first, "first", (n, k))
    if second is not None:
        _out64(second, "second", (n, k, k))
    if k == 1:
        first[...] = 1.0
        if second is not None:
            second[...] = 0.0
        return
    with np.errstate(divide="ignore", invalid="ignore"):
        lps = _log_set_probability(log_p, log_rest)
        others = np.array([[j for j in range(k) if j != i] for i in range(k)], dtype=np.int64)  # (k, k-1)
        # P^{D \ s}(S \ s): the same outside mass, the elements without s (not renormalised)
        l1 = _log_set_probability(log_p[:, others], log_rest[:, None])  # (n, k)
        first[...] = np.exp(log_p + l1 - lps[:, None])
        if second is None:
            return
        second[...] = 0.0
        rows = np.arange(k)[:, None]
        if k == 2:
            second[:, rows, others] = 1.0
            return
        left1 = np.logaddexp(log_rest[:, None], np.logaddexp.reduce(log_p[:, others], axis=-1))  # log(1 - p(s))
        pr = np.array([[[j for j in range(k) if j not in (i, i2)] for i2 in range(k) if i2 != i] for i in range(k)],
                      dtype=np.int64)  # (k, k-1, k-2)
        l2 = _log_set_probability(log_p[:, pr], log_rest[:, None, None])  # (n, k, k-1)
        second[:, rows, others] = np.exp(log_p[:, others] - left1[:, :, None] + l2 - l1[:, :, None])


def set_outside_mass(conf, log_probs, out):
    """log of the probability mass outside each set of k distinct configurations conf (n, k, D) of D Categorical
    coordinates with log-probabilities log_probs (D, K), into out (n,) (-inf: the whole support; float64)."""
    if not isinstance(conf, np.ndarray) or conf.dtype != np.int64 or conf.ndim != 3:
        raise ValueError("conf must be an int64 array of shape (n, k, D)")
    n, k, D = conf.shape
    lp = _matrix(_f64(log_probs, "log_probs"), "log_probs")
    if lp.shape[0] != D:
        raise ValueError("log_probs must have shape (D, K)")
    K = lp.shape[1]
    _out64(out, "out", (n,))
    if conf.size and (conf.min() < 0 or conf.max() >= K):
        raise ValueError("class index out of range [0, K)")
    # where 1 - sum_S p(s) leaves at least 1e-2, that (its rounding below 1e-13 of it), as natively; the trie
    # for the other sets only
    inside = np.exp(lp[np.arange(D), conf].sum(-1)).sum(1)
    direct = 1.0 - inside >= 1e-2
    out[direct] = np.log1p(-inside[direct])
    conf = conf[~direct]
    m = conf.shape[0]
    rows = np.arange(m)[:, None]
    group = np.zeros((m, k), dtype=np.int64)  # each configuration's prefix group: its first member's index
    logw = np.zeros((m, k))  # the log-probability of the prefix
    acc = np.full(m, -np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        for d in range(D):
            c = conf[:, :, d]
            taken = np.zeros((m, k, K), dtype=bool)
            taken[rows, group, c] = True  # the classes each group takes at d
            free = np.where(taken, -np.inf, lp[d])
            mx = free.max(-1)
            left = mx + np.log(np.exp(free - np.where(np.isfinite(mx), mx, 0.0)[..., None]).sum(-1))
            head = group == np.arange(k)  # one term per group, at its first member
            acc = np.logaddexp(acc, np.logaddexp.reduce(np.where(head, logw + left, -np.inf), axis=1))
            same = (group[:, :, None] == group[:, None, :]) & (c[:, :, None] == c[:, None, :])
            group = same.argmax(axis=2)
            logw = logw + lp[d, c]
    out[~direct] = acc


def categorical_set_terms(conf, c, probs, terms):
    """Logits terms (n, D, K) = sum_s c[:, s] (onehot(conf[:, s]) - probs) of sets conf (n, k, D) with weights
    c (n, k) (float64)."""
    if not isinstance(conf, np.ndarray) or conf.dtype != np.int64 or conf.ndim != 3:
        raise ValueError("conf must be an int64 array of shape (n, k, D)")
    n, k, d = conf.shape
    _f64(c, "c", (n, k))
    probs = _matrix(_f64(probs, "probs"), "probs")
    if probs.shape[0] != d:
        raise ValueError("probs must have shape (D, K)")
    kc = probs.shape[1]
    _out64(terms, "terms", (n, d, kc))
    if conf.size and (conf.min() < 0 or conf.max() >= kc):
        raise ValueError("class index out of range [0, K)")
    onehot = conf[..., None] == np.arange(kc)  # (n, k, D, K)
    terms[...] = np.einsum("nk,nkdj->ndj", c, onehot) - c.sum(1)[:, None, None] * probs
