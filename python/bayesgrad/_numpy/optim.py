"""NumPy twin of the optim kernels (cpp/src/optim.cpp, cpp/bindings/register_optim.cpp):
Adam and SGD steps and the MAP / MC-dropout epoch, with the dataclass twins of
the bound configuration structs.

Same random words as the native core: the dropout masks of step t come from
stream ``fold_in(dropout_stream, t)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._codes import Likelihood, from_int
from . import mlp as _mlp
from .random import fill_uniform, fold_in

__all__ = ["AdamConfig", "SgdConfig", "MapConfig", "adam_update", "sgd_update", "map_epoch"]


@dataclass(frozen=True)
class AdamConfig:
    """Adam's hyper-parameters (Kingma & Ba 2015). Twin of ``_core.optim.AdamConfig``."""

    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self):
        for name in ("lr", "beta1", "beta2", "eps"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if not (self.lr >= 0 and math.isfinite(self.lr)):
            raise ValueError("AdamConfig: lr must be finite and >= 0")
        if not 0 <= self.beta1 < 1:
            raise ValueError("AdamConfig: beta1 must be in [0, 1)")
        if not 0 <= self.beta2 < 1:
            raise ValueError("AdamConfig: beta2 must be in [0, 1)")
        if not self.eps > 0:
            raise ValueError("AdamConfig: eps must be > 0")


@dataclass(frozen=True)
class SgdConfig:
    """Robbins-Monro step sizes a_t = a0 / (t0 + t)^kappa. Twin of ``_core.optim.SgdConfig``."""

    a0: float = 1e-2
    t0: float = 0.0
    kappa: float = 1.0

    def __post_init__(self):
        for name in ("a0", "t0", "kappa"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if not (self.a0 > 0 and math.isfinite(self.a0)):
            raise ValueError("SgdConfig: a0 must be finite and > 0")
        if not (self.t0 >= 0 and math.isfinite(self.t0)):
            raise ValueError("SgdConfig: t0 must be finite and >= 0")
        if not 0.5 < self.kappa <= 1:
            raise ValueError("SgdConfig: kappa must be in (0.5, 1]")


@dataclass(frozen=True)
class MapConfig:
    """What map_epoch needs besides the arrays. Twin of ``_core.optim.MapConfig``."""

    net: _mlp.NetConfig
    likelihood: int
    learn_noise: bool = False
    dropout_p: float = 0.0
    seed: int = 0
    dropout_stream: int = 0
    batch_size: int = 32
    adam: AdamConfig = AdamConfig()

    def __post_init__(self):
        object.__setattr__(self, "likelihood", int(from_int(Likelihood, self.likelihood, "likelihood")))
        if not 0 <= self.dropout_p < 1:
            raise ValueError("MapConfig: dropout_p must be in [0, 1)")
        if self.batch_size < 1:
            raise ValueError("MapConfig: batch_size must be >= 1")


def adam_step(p, g, m, v, t, cfg):
    """Adam step t on p in place with moments m, v (adam_step in optim.hpp)."""
    lr, b1, b2, eps = cfg.lr, cfg.beta1, cfg.beta2, cfg.eps
    dt = p.dtype.type
    m *= dt(b1)
    m += dt(1 - b1) * g
    v *= dt(b2)
    v += dt(1 - b2) * g * g
    lr_t = dt(lr / (1 - b1 ** t))
    inv = dt(1 / math.sqrt(1 - b2 ** t))
    p -= lr_t * m / (np.sqrt(v) * inv + dt(eps))


def adam_update(params, grad, m, v, t, config):
    """One fused Adam step t (1-based) in place."""
    n = params.size
    for a, name in ((grad, "grad"), (m, "m"), (v, "v")):
        if a.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},)")
    if t < 1:
        raise ValueError("t must be >= 1")
    adam_step(params, grad, m, v, int(t), config)


def sgd_update(params, grad, t, config):
    """One fused SGD step t (1-based) in place with a_t = a0 / (t0 + t)^kappa."""
    n = params.size
    if grad.shape != (n,):
        raise ValueError(f"grad must have shape ({n},)")
    a0, t0, kappa = config.a0, config.t0, config.kappa
    if t < 1:
        raise ValueError("t must be >= 1")
    # a_t in double, then rounded once to the parameters' dtype, as the native kernel does.
    params -= params.dtype.type(a0 / (t0 + float(t)) ** kappa) * grad


def epoch_data(L, likelihood, X, y, perm, batch_size):
    """Checks of an epoch call (cpp/bindings/training.hpp): Dy, N and the row indices of each minibatch.

    ``perm`` (L,) is the epoch's row order or a slice of it starting at a minibatch
    boundary (an epoch runs in slices of ~0.1 s); minibatch i is perm[i B:(i+1) B]."""
    Dy = _mlp.target_dim(likelihood, L.sizes[-1])
    if X.ndim != 2 or X.shape[1] != L.sizes[0] or X.shape[0] < 1:
        raise ValueError(f"X must have shape (N, {L.sizes[0]}) with N >= 1")
    N = X.shape[0]
    if y.shape != (N, Dy):
        raise ValueError(f"y must have shape (N, {Dy})")
    perm = np.asarray(perm)
    if perm.ndim != 1 or perm.shape[0] < 1:
        raise ValueError("perm must have shape (L,) with L >= 1")
    if np.any((perm < 0) | (perm >= N)):
        raise ValueError("perm entries must be row indices in [0, N)")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    B = min(int(batch_size), N)
    starts = list(range(0, perm.shape[0], B))
    return Dy, N, [perm[s:s + B] for s in starts]


def row_weights(weights, N, dtype):
    """Optional per-row likelihood weights of an epoch: None, or (N,) finite and >= 0 in ``dtype``."""
    if weights is None:
        return None
    w = np.ascontiguousarray(weights, dtype=dtype)
    if w.shape != (N,):
        raise ValueError(f"weights must have shape ({N},)")
    if not np.all(np.isfinite(w) & (w >= 0)):
        raise ValueError("weights must be finite and >= 0")
    return w


def need(a, n, name):
    if a.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},)")


def map_epoch(config, state, m, v, step, X, y, perm, prior_prec, weights=None):
    """One MAP / MC-dropout epoch (or the slice of it that perm holds) with Adam on state = [theta (P), log_noise (Dy)] in place; returns (the new
    step count, stats (n_batches, 2): each batch's summed nll and its objective). weights: None or (N,) finite
    non-negative row weights of the likelihood (row n counts weights[n] times)."""
    c = config
    L = c.net.layout
    activation, likelihood, dropout_p = c.net.activation, c.likelihood, c.dropout_p
    Dy, N, batches = epoch_data(L, likelihood, X, y, perm, c.batch_size)
    weights = row_weights(weights, N, state.dtype)
    P = L.n_params
    for a, name in ((state, "state"), (m, "m"), (v, "v")):
        need(a, P + Dy, name)
    need(prior_prec, P, "prior_prec")
    stats = np.empty((len(batches), 2), dtype=state.dtype)
    H = L.n_hidden_units
    dt = state.dtype
    # like the core, a diverging run computes on quietly (NaN/inf); the caller checks the result
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        for i, rows in enumerate(batches):
            B = rows.size
            xb, yb = X[rows], y[rows]
            step += 1
            masks = None
            if dropout_p > 0 and H > 0:
                u = np.empty((1, B, H), dtype=dt)
                fill_uniform(u, c.seed, fold_in(c.dropout_stream, step), 0)
                masks = np.where(u > dt.type(dropout_p), dt.type(1.0 / (1.0 - dropout_p)), dt.type(0))
            theta = state[None, :P]
            zs, acts, mv = _mlp.forward_trace(L, activation, theta, xb, masks)
            per, gF, gn = _mlp.nll_terms(likelihood, zs[-1], yb, state[P:])
            if weights is not None:  # row n's terms weighted (the exact nll of rows repeated w times)
                wb = weights[rows]
                per, gF = per * wb, gF * wb[:, None]
                gn = None if gn is None else gn * wb[:, None]
            scale = N / B
            grad = np.zeros(P + Dy, dtype=dt)
            grad[:P] = _mlp.backward_trace(L, activation, theta, xb, zs, acts, mv, gF * dt.type(scale))[0][0]
            if c.learn_noise and gn is not None:
                grad[P:] = dt.type(scale) * gn[0].sum(0)
            nll_i = per.sum(dtype=np.float64)
            prior = 0.5 * np.sum(prior_prec.astype(np.float64) * state[:P].astype(np.float64) ** 2)
            grad[:P] += prior_prec * state[:P]
            stats[i] = (nll_i, scale * nll_i + prior)
            adam_step(state, grad, m, v, step, c.adam)
    return step, stats


# The deep-ensemble epoch lives in its own module (cpp/src/ensemble.cpp's twin).
from ._ensemble import EnsembleConfig, ensemble_epoch, ensemble_orders  # noqa: E402

__all__ += ["EnsembleConfig", "ensemble_epoch", "ensemble_orders"]
