"""NumPy twin of the mean-field VI kernels (cpp/src/vi.cpp, cpp/bindings/register_vi.cpp)
and the dataclass twin of the bound ``ViConfig``.

Same random words as the native core: step t of an epoch draws from stream
``fold_in(stream, t)``; see cpp/src/vi.cpp for the layout of the words.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._numerics import sigmoid, softplus
from .._codes import STREAM_TAGS, Likelihood, ViEstimator, ViPrior, from_int
from . import mlp as _mlp
from .optim import AdamConfig, adam_step, epoch_data, need, row_weights
from .random import fill_normal, fill_uniform, fold_in

__all__ = ["ViConfig", "vi_epoch", "vi_grad"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@dataclass(frozen=True)
class ViConfig:
    """What the mean-field VI kernels need besides the arrays. Twin of ``_core.vi.ViConfig``."""

    net: _mlp.NetConfig
    likelihood: int
    learn_noise: bool = False
    estimator: int = 0
    prior: int = 0
    prior_sigma: float = 1.0
    mix_pi: float = 0.5
    mix_s1: float = 1.0
    mix_s2: float = 1e-3
    n_samples: int = 1
    seed: int = 0
    stream: int = 0
    batch_size: int = 32
    adam: AdamConfig = AdamConfig()

    def __post_init__(self):
        object.__setattr__(self, "likelihood", int(from_int(Likelihood, self.likelihood, "likelihood")))
        object.__setattr__(self, "estimator", int(from_int(ViEstimator, self.estimator, "estimator")))
        object.__setattr__(self, "prior", int(from_int(ViPrior, self.prior, "prior")))
        if not (self.prior_sigma > 0 and math.isfinite(self.prior_sigma)):
            raise ValueError("ViConfig: prior_sigma must be finite and > 0")
        if not 0 < self.mix_pi < 1:
            raise ValueError("ViConfig: mix_pi must be in (0, 1)")
        if not (self.mix_s1 > 0 and self.mix_s2 > 0):
            raise ValueError("ViConfig: mix_s1 and mix_s2 must be > 0")
        if self.n_samples < 1:
            raise ValueError("ViConfig: n_samples must be >= 1")
        if self.batch_size < 1:
            raise ValueError("ViConfig: batch_size must be >= 1")


def _kl(c, mu, sigma, eps, S):
    """KL and its gradients w.r.t. mu and sigma (see vi_kl in cpp/src/vi.cpp)."""
    mu64, sg64 = mu.astype(np.float64), sigma.astype(np.float64)
    if c.prior == ViPrior.gaussian:
        s2 = c.prior_sigma ** 2
        kl = np.sum(math.log(c.prior_sigma) - np.log(sg64) + 0.5 * (sg64 ** 2 + mu64 ** 2) / s2 - 0.5)
        return kl, mu64 / s2, sg64 / s2 - 1 / sg64
    pi, s1, s2 = c.mix_pi, c.mix_s1, c.mix_s2
    e = eps.astype(np.float64)
    w = mu64 + sg64 * e
    ta = math.log(pi) - math.log(s1) - 0.5 * (w / s1) ** 2
    tb = math.log1p(-pi) - math.log(s2) - 0.5 * (w / s2) ** 2
    lse = np.logaddexp(ta, tb)
    ra, rb = np.exp(ta - lse), np.exp(tb - lse)
    log_p = lse - _HALF_LOG_2PI
    log_q = -np.log(sg64) - 0.5 * e * e - _HALF_LOG_2PI
    kl = np.sum(log_q - log_p) / S
    dlogp = -w * (ra / s1 ** 2 + rb / s2 ** 2)
    return kl, (-dlogp).sum(0) / S, (-1 / sg64 - e * dlogp).sum(0) / S


def _signs(u):
    return np.where(u < u.dtype.type(0.5), u.dtype.type(-1), u.dtype.type(1))


def _stoch_forward(L, code, estimator, mu, sigma, eps, xb, S, seed, stream_t):
    """Local reparameterisation / Flipout forward and backward (see cpp/src/vi.cpp)."""
    dt = mu.dtype
    B = xb.shape[0]
    P = L.n_params
    zeta_off, sign_off = S * P, 0
    sign_stream = fold_in(stream_t, STREAM_TAGS["flipout"])
    A = np.broadcast_to(xb, (S, B, xb.shape[1])).copy()
    cache = []
    for l in range(L.n_layers):
        din, dout = L.sizes[l], L.sizes[l + 1]
        mW = mu[L.w_off[l]:L.w_off[l] + din * dout].reshape(dout, din)
        mb = mu[L.b_off[l]:L.b_off[l] + dout]
        sW = sigma[L.w_off[l]:L.w_off[l] + din * dout].reshape(dout, din)
        sb = sigma[L.b_off[l]:L.b_off[l] + dout]
        z = A @ mW.T + mb
        if estimator == ViEstimator.local_reparam:
            sv = np.sqrt((A * A) @ (sW * sW).T + sb * sb)
            zeta = np.empty((S, B, dout), dtype=dt)
            fill_normal(zeta, seed, stream_t, zeta_off)
            zeta_off += zeta.size
            z = z + sv * zeta
            aux = (sv, zeta)
        else:
            rin = np.empty((S, B, din), dtype=dt)
            fill_uniform(rin, seed, sign_stream, sign_off)
            sign_off += rin.size
            rout = np.empty((S, B, dout), dtype=dt)
            fill_uniform(rout, seed, sign_stream, sign_off)
            sign_off += rout.size
            rin, rout = _signs(rin), _signs(rout)
            dW = sW * eps[:, L.w_off[l]:L.w_off[l] + din * dout].reshape(S, dout, din)
            db = sb * eps[:, L.b_off[l]:L.b_off[l] + dout]
            z = z + np.matmul(A * rin, dW.transpose(0, 2, 1)) * rout + db[:, None, :]
            aux = (rin, rout, dW)
        cache.append((A, z, aux))
        if l + 1 < L.n_layers:
            A = _mlp.act(code, z)
    return cache


def _stoch_backward(L, code, estimator, mu, sigma, eps, cache, G):
    P = L.n_params
    S = G.shape[0]
    gmu = np.zeros(P, dtype=mu.dtype)
    gsig = np.zeros(P, dtype=mu.dtype)
    for l in range(L.n_layers - 1, -1, -1):
        A, z, aux = cache[l]
        din, dout = L.sizes[l], L.sizes[l + 1]
        w0, b0 = L.w_off[l], L.b_off[l]
        mW = mu[w0:w0 + din * dout].reshape(dout, din)
        A2 = A.reshape(-1, din)
        G2 = G.reshape(-1, dout)
        gmu[w0:w0 + din * dout] = (G2.T @ A2).reshape(-1)
        gmu[b0:b0 + dout] = G2.sum(0)
        dA = G @ mW
        if estimator == ViEstimator.local_reparam:
            sv, zeta = aux
            dV = G * zeta / (2 * sv)
            sW = sigma[w0:w0 + din * dout].reshape(dout, din)
            gsig[w0:w0 + din * dout] = (2 * sW * (dV.reshape(-1, dout).T @ (A2 * A2))).reshape(-1)
            gsig[b0:b0 + dout] = 2 * sigma[b0:b0 + dout] * dV.reshape(-1, dout).sum(0)
            dA = dA + 2 * A * (dV @ (sW * sW))
        else:
            rin, rout, dW = aux
            Gs = G * rout
            ddW = np.matmul(Gs.transpose(0, 2, 1), A * rin)
            gsig[w0:w0 + din * dout] = (ddW * eps[:, w0:w0 + din * dout].reshape(S, dout, din)).sum(0).reshape(-1)
            gsig[b0:b0 + dout] = (G.sum(1) * eps[:, b0:b0 + dout]).sum(0)
            dA = dA + np.matmul(Gs, dW) * rin
        if l == 0:
            break
        zp = cache[l - 1][1]
        G = dA * _mlp.act_deriv(code, zp, A)
    return gmu, gsig


def _vi_batch(c, Dy, state, xb, yb, N, step, kl_weight, wb=None):
    L, code, lik, estimator, S = c.net.layout, c.net.activation, c.likelihood, c.estimator, c.n_samples
    dt = state.dtype
    P = L.n_params
    mu, rho, log_noise = state[:P], state[P:2 * P], state[2 * P:]
    B = xb.shape[0]
    stream_t = fold_in(c.stream, step)
    sigma = softplus(rho)
    need_eps = estimator != ViEstimator.local_reparam or c.prior == ViPrior.scale_mixture
    eps = np.empty((S, P), dtype=dt)
    if need_eps:
        fill_normal(eps, c.seed, stream_t, 0)
    scale = N / B
    gscale = dt.type(scale / S)
    if estimator == ViEstimator.weight_space:
        W = mu + sigma * eps
        zs, acts, mv = _mlp.forward_trace(L, code, W, xb)
        per, gF, gn = _weighted(_mlp.nll_terms(lik, zs[-1], yb, log_noise), wb)
        gW, _ = _mlp.backward_trace(L, code, W, xb, zs, acts, mv, gF * gscale)
        gmu, gsig = gW.sum(0), (gW * eps).sum(0)
    else:
        cache = _stoch_forward(L, code, estimator, mu, sigma, eps, xb, S, c.seed, stream_t)
        per, gF, gn = _weighted(_mlp.nll_terms(lik, cache[-1][1], yb, log_noise), wb)
        gmu, gsig = _stoch_backward(L, code, estimator, mu, sigma, eps, cache, gF * gscale)
    kl, gkm, gks = _kl(c, mu, sigma, eps, S)
    klscale = scale * float(kl_weight)
    grad = np.zeros(2 * P + Dy, dtype=dt)
    grad[:P] = gmu + (klscale * gkm).astype(dt)
    grad[P:2 * P] = (gsig + (klscale * gks).astype(dt)) * sigmoid(rho)
    if c.learn_noise and gn is not None:
        grad[2 * P:] = gscale * gn.sum((0, 1))
    nll_mean = per.sum(1, dtype=np.float64).mean()
    return grad, (nll_mean, kl, scale * (nll_mean + float(kl_weight) * kl))


def _weighted(terms, wb):
    """nll_terms' (per (S, B), gF (S, B, K), gn (S, B, Dy)) with row n weighted by wb[n] (None: as they are)."""
    if wb is None:
        return terms
    per, gF, gn = terms
    w = wb.astype(per.dtype, copy=False)
    return per * w, gF * w[:, None], (None if gn is None else gn * w[:, None])


def vi_epoch(config, state, m, v, step, X, y, perm, kl_weights, weights=None):
    """One Bayes-by-Backprop epoch (or the slice of it that perm holds; kl_weights: its batches') on state = [mu (P), rho (P), log_noise (Dy)] in place; returns (the new step
    count, stats (n_batches, 3): each batch's mean-over-samples nll, KL and objective). weights: None or (N,)
    finite non-negative row weights of the likelihood (row n counts weights[n] times)."""
    c = config
    Dy, N, batches = epoch_data(c.net.layout, c.likelihood, X, y, perm, c.batch_size)
    weights = row_weights(weights, N, state.dtype)
    n = 2 * c.net.layout.n_params + Dy
    for a, name in ((state, "state"), (m, "m"), (v, "v")):
        need(a, n, name)
    need(kl_weights, len(batches), "kl_weights")
    stats = np.empty((len(batches), 3), dtype=state.dtype)
    # like the core, a diverging run computes on quietly (NaN/inf); the caller checks the result
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        for i, rows in enumerate(batches):
            step += 1
            g, st = _vi_batch(c, Dy, state, X[rows], y[rows], N, step, kl_weights[i],
                              None if weights is None else weights[rows])
            stats[i] = st
            adam_step(state, g, m, v, step, c.adam)
    return step, stats


def vi_grad(config, state, X, y, step, kl_weight, grad):
    """The objective N (mean nll + kl_weight KL) / N on all rows at step `step` with its gradient (2P + Dy)
    written into grad; returns (mean nll, KL, objective)."""
    c = config
    N = X.shape[0] if X.ndim == 2 else 0
    Dy, N, _ = epoch_data(c.net.layout, c.likelihood, X, y, np.arange(N), 1)
    n = 2 * c.net.layout.n_params + Dy
    need(state, n, "state")
    need(grad, n, "grad")
    g, st = _vi_batch(c, Dy, state, X, y, N, step, kl_weight)
    grad[...] = g
    return np.asarray(st, dtype=state.dtype)
