"""NumPy twin of the deep-ensemble epoch (cpp/src/ensemble.cpp,
cpp/bindings/register_ensemble.cpp), re-exported by ``_numpy.optim``: M
independent MAP trainings, looped over members here (the core runs them through
the engine's S axis in one pass). The epoch draws nothing: the members'
minibatch orders come in ``perms`` (``ensemble_orders`` draws them).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._codes import Likelihood, from_int
from . import mlp as _mlp

__all__ = ["EnsembleConfig", "ensemble_epoch", "ensemble_orders"]


def _adam_default():
    from .optim import AdamConfig
    return AdamConfig()


@dataclass(frozen=True)
class EnsembleConfig:
    """What ensemble_epoch needs besides the arrays. Twin of ``_core.optim.EnsembleConfig``.

    adv_eps : () for no adversarial training, else one fast-gradient-sign step
        size per input feature (d_0 entries, in the inputs' units).
    """

    net: _mlp.NetConfig
    likelihood: int
    learn_noise: bool = False
    weight_decay: float = 0.0
    batch_size: int = 32
    adam: object = None
    adv_eps: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "likelihood", int(from_int(Likelihood, self.likelihood, "likelihood")))
        object.__setattr__(self, "weight_decay", float(self.weight_decay))
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ValueError("EnsembleConfig: weight_decay must be finite and >= 0")
        if self.batch_size < 1:
            raise ValueError("EnsembleConfig: batch_size must be >= 1")
        if self.adam is None:
            object.__setattr__(self, "adam", _adam_default())
        eps = tuple(float(e) for e in np.asarray(self.adv_eps, dtype=np.float64).reshape(-1))
        if eps and len(eps) != self.net.layout.sizes[0]:
            raise ValueError("EnsembleConfig: adv_eps must be empty or have one entry per input")
        if not all(e >= 0 and math.isfinite(e) for e in eps):
            raise ValueError("EnsembleConfig: adv_eps entries must be finite and >= 0")
        object.__setattr__(self, "adv_eps", eps)


def _member_nll(c, F, yb, wb, log_noise, scale):
    """Weighted summed nll (float64), dnll/dF * scale * w, and scale * dnll/dlog_noise (Dy,) of one member."""
    per, gF, gn = _mlp.nll_terms(c.likelihood, F[None], yb, log_noise)
    dt = F.dtype
    if wb is None:
        total = float(per[0].astype(np.float64).sum())
        gF = gF[0] * dt.type(scale)
        gsum = None if gn is None else (dt.type(scale) * gn[0]).sum(0)
    else:
        total = float((per[0].astype(np.float64) * wb.astype(np.float64)).sum())
        sw = (dt.type(scale) * wb).astype(dt)
        gF = gF[0] * sw[:, None]
        gsum = None if gn is None else (sw[:, None] * gn[0]).sum(0)
    return total, gF, gsum


def _grads(c, L, theta, xb, yb, wb, log_noise, scale, want_x):
    zs, acts, mv = _mlp.forward_trace(L, c.net.activation, theta[None], xb)
    total, gF, gn = _member_nll(c, zs[-1][0], yb, wb, log_noise, scale)
    g, gx = _mlp.backward_trace(L, c.net.activation, theta[None], xb, zs, acts, mv, gF[None], want_x=want_x)
    return total, g[0], gn, (None if gx is None else gx[0])


def ensemble_epoch(config, state, m, v, step, X, y, perms, sample_weight=None):
    """One epoch (or the slice of it that perms holds), or E whole epochs, of M independent MAP trainings with Adam:
    state, m, v (M, P + Dy) are the members' [theta, log_noise] and moments, updated in place; perms (M, L) each
    member's minibatch rows, or (E, M, L) those of E epochs run in order; sample_weight (N,) or None; returns (the
    new step count, stats (E n_batches, M, 2): each batch's weighted clean nll sum and its objective per member)."""
    perms = np.asarray(perms)
    if perms.ndim not in (2, 3) or min(perms.shape) < 1:
        raise ValueError("perms must have shape (M, L) or (E, M, L) with E, M, L >= 1")
    if perms.ndim == 2:
        return _epoch(config, state, m, v, step, X, y, perms, sample_weight)
    _check(config, state, m, v, X, y, perms.reshape(perms.shape[1], -1), sample_weight)  # all before any work
    parts = []
    for p in perms:
        step, stats = _epoch(config, state, m, v, step, X, y, p, sample_weight)
        parts.append(stats)
    return step, np.concatenate(parts)


def _check(c, state, m, v, X, y, perms, sample_weight):
    """Dy, N and the checked sample_weight (or None) of an epoch over perms (M, L)."""
    from .optim import epoch_data
    L = c.net.layout
    M = perms.shape[0]
    Dy, N, _ = epoch_data(L, c.likelihood, X, y, perms.reshape(-1), c.batch_size)
    P = L.n_params
    for a, name in ((state, "state"), (m, "m"), (v, "v")):
        if a.shape != (M, P + Dy):
            raise ValueError(f"{name} must have shape ({M},{P + Dy},)")
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight, dtype=state.dtype)
        if sample_weight.shape != (N,):
            raise ValueError(f"sample_weight must have shape ({N},)")
        if not np.all(np.isfinite(sample_weight) & (sample_weight >= 0)):
            raise ValueError("sample_weight must be finite and >= 0")
    return Dy, N, sample_weight


def _epoch(c, state, m, v, step, X, y, perms, sample_weight):
    from .optim import adam_step
    L = c.net.layout
    M, n_perm = perms.shape
    Dy, N, sample_weight = _check(c, state, m, v, X, y, perms, sample_weight)
    P = L.n_params
    dt = state.dtype
    B = min(int(c.batch_size), N)
    n_batches = -(-n_perm // B)
    stats = np.empty((n_batches, M, 2), dtype=dt)
    eps = np.asarray(c.adv_eps, dtype=dt) if c.adv_eps else None
    wd = dt.type(c.weight_decay)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        for i in range(n_batches):
            step += 1
            scale = N / min(B, n_perm - i * B)
            for s in range(M):
                rows = perms[s, i * B:(i + 1) * B]
                xb, yb = X[rows], y[rows]
                wb = None if sample_weight is None else sample_weight[rows]
                theta, ln = state[s, :P], state[s, P:]
                nll_c, g, gn, gx = _grads(c, L, theta, xb, yb, wb, ln, scale, eps is not None)
                data = nll_c
                grad = np.zeros(P + Dy, dtype=dt)
                grad[:P] = g
                if c.learn_noise and gn is not None:
                    grad[P:] += gn
                if eps is not None:
                    xa = xb + eps * np.sign(gx).astype(dt)
                    nll_a, ga, gna, _ = _grads(c, L, theta, xa, yb, wb, ln, scale, False)
                    data += nll_a
                    grad[:P] += ga
                    if c.learn_noise and gna is not None:
                        grad[P:] += gna
                prior = 0.5 * c.weight_decay * float(np.sum(theta.astype(np.float64) ** 2))
                grad[:P] += wd * theta
                stats[i, s] = (nll_c, scale * data + prior)
                adam_step(state[s], grad, m[s], v[s], step, c.adam)
    return step, stats


def ensemble_orders(seed, streams, epoch0, out):
    """The minibatch orders of E epochs for M members into out (E, M, N) int64: out[e, s] is the stable argsort of
    the float64 uniforms 0..N-1 of (seed, fold_in(streams[s], epoch0 + e)), as _training.permutation draws them."""
    from .random import fill_uniform, fold_in
    streams = np.asarray(streams)
    if streams.ndim != 1 or streams.shape[0] < 1:
        raise ValueError("streams must have shape (M,) with M >= 1")
    if streams.dtype.kind not in "ui" or np.any(streams.astype(np.uint64) >> np.uint64(63)):
        raise ValueError("streams entries must be < 2**63")
    if epoch0 < 0:
        raise ValueError("epoch0 must be >= 0")
    M = streams.shape[0]
    if out.ndim != 3 or out.shape[0] < 1 or out.shape[1] != M or out.shape[2] < 1:
        raise ValueError("out must have shape (E, M, N) with E, N >= 1 and M = len(streams)")
    if out.dtype != np.int64:
        raise TypeError("out must be an int64 array")
    if not out.flags.writeable:
        raise ValueError("out must be writeable")
    E, _, N = out.shape
    u = np.empty(N, dtype=np.float64)
    for e in range(E):
        for s in range(M):
            fill_uniform(u, seed, fold_in(int(streams[s]), epoch0 + e), 0)
            out[e, s] = np.argsort(u, kind="stable")
