"""NumPy twin of the optim and vi kernels (cpp/src/optim.cpp, cpp/src/vi.cpp).

Same random words as the native core: step t of an epoch draws from stream
``fold_in(stream, t)``; see cpp/src/vi.cpp for the layout of the words.
"""
from __future__ import annotations

import math

import numpy as np

from . import mlp as _mlp
from .random import fill_normal, fill_uniform, fold_in

__all__ = ["adam_update", "map_epoch", "vi_epoch", "vi_grad"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_FLIPOUT_TAG = 13


def _adam_cfg(adam):
    a = np.asarray(adam, dtype=np.float64).reshape(-1)
    if a.shape != (4,):
        raise ValueError("adam must have shape (4,)")
    lr, b1, b2, eps = (float(v) for v in a)
    if not (lr >= 0 and 0 <= b1 < 1 and 0 <= b2 < 1 and eps > 0):
        raise ValueError("adam = (lr >= 0, 0 <= beta1 < 1, 0 <= beta2 < 1, eps > 0)")
    return lr, b1, b2, eps


def _adam(p, g, m, v, t, cfg):
    lr, b1, b2, eps = cfg
    dt = p.dtype.type
    m *= dt(b1)
    m += dt(1 - b1) * g
    v *= dt(b2)
    v += dt(1 - b2) * g * g
    lr_t = dt(lr / (1 - b1 ** t))
    inv = dt(1 / math.sqrt(1 - b2 ** t))
    p -= lr_t * m / (np.sqrt(v) * inv + dt(eps))


def adam_update(params, grad, m, v, t, adam):
    """One fused Adam step t (1-based) in place; adam = (lr, beta1, beta2, eps)."""
    n = params.size
    for a, name in ((grad, "grad"), (m, "m"), (v, "v")):
        if a.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},)")
    if t < 1:
        raise ValueError("t must be >= 1")
    _adam(params, grad, m, v, int(t), _adam_cfg(adam))


def _epoch_args(sizes, activation, likelihood, X, y, perm, batch_size):
    L = _mlp.Layout(sizes)
    if not 0 <= int(activation) <= 4:
        raise ValueError("activation code out of range")
    Dy = _mlp._target_dim(int(likelihood), L.sizes[-1])
    if X.ndim != 2 or X.shape[1] != L.sizes[0] or X.shape[0] < 1:
        raise ValueError(f"X must have shape (N, {L.sizes[0]}) with N >= 1")
    N = X.shape[0]
    if y.shape != (N, Dy):
        raise ValueError(f"y must have shape (N, {Dy})")
    perm = np.asarray(perm)
    if perm.shape != (N,) or np.any((perm < 0) | (perm >= N)):
        raise ValueError("perm entries must be row indices in [0, N)")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    B = min(int(batch_size), N)
    starts = list(range(0, N, B))
    return L, Dy, N, [perm[s:s + B] for s in starts]


def _need(a, n, name):
    if a.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},)")


def map_epoch(state, m, v, step, X, y, perm, batch_size, prior_prec, sizes, activation, likelihood, learn_noise,
              dropout_p, seed, dropout_stream, adam, stats):
    """One MAP / MC-dropout epoch with Adam on state = [theta (P), log_noise (Dy)]; returns the new step count."""
    L, Dy, N, batches = _epoch_args(sizes, activation, likelihood, X, y, perm, batch_size)
    P = L.n_params
    for a, name in ((state, "state"), (m, "m"), (v, "v")):
        _need(a, P + Dy, name)
    _need(prior_prec, P, "prior_prec")
    if stats.shape != (len(batches), 2):
        raise ValueError("stats must have shape (n_batches, 2)")
    if not 0 <= dropout_p < 1:
        raise ValueError("dropout_p must be in [0, 1)")
    cfg = _adam_cfg(adam)
    H = L.n_hidden_units
    dt = state.dtype
    for i, rows in enumerate(batches):
        B = rows.size
        xb, yb = X[rows], y[rows]
        step += 1
        masks = None
        if dropout_p > 0 and H > 0:
            u = np.empty((1, B, H), dtype=dt)
            fill_uniform(u, seed, fold_in(dropout_stream, step), 0)
            masks = np.where(u > dt.type(dropout_p), dt.type(1.0 / (1.0 - dropout_p)), dt.type(0))
        theta = state[None, :P]
        zs, acts, mv = _mlp.forward_trace(L, activation, theta, xb, masks)
        per, gF, gn = _mlp.nll_terms(likelihood, zs[-1], yb, state[P:])
        scale = N / B
        grad = np.zeros(P + Dy, dtype=dt)
        grad[:P] = _mlp.backward_trace(L, activation, theta, xb, zs, acts, mv, gF * dt.type(scale))[0][0]
        if learn_noise and gn is not None:
            grad[P:] = dt.type(scale) * gn[0].sum(0)
        nll_i = per.sum(dtype=np.float64)
        prior = 0.5 * np.sum(prior_prec.astype(np.float64) * state[:P].astype(np.float64) ** 2)
        grad[:P] += prior_prec * state[:P]
        stats[i] = (nll_i, scale * nll_i + prior)
        _adam(state, grad, m, v, step, cfg)
    return step


def _vi_cfg(L, estimator, prior, prior_params, n_samples):
    if not 0 <= estimator <= 2:
        raise ValueError("estimator code out of range")
    if not 0 <= prior <= 1:
        raise ValueError("prior code out of range")
    pp = np.asarray(prior_params, dtype=np.float64).reshape(-1)
    if pp.shape != (4,):
        raise ValueError("prior_params must have shape (4,)")
    if not (pp[0] > 0 and 0 < pp[1] < 1 and pp[2] > 0 and pp[3] > 0):
        raise ValueError("prior_params = (sigma > 0, 0 < pi < 1, s1 > 0, s2 > 0)")
    if n_samples < 1:
        raise ValueError("n_samples must be >= 1")
    return pp


def _softplus(r):
    return np.logaddexp(0, r).astype(r.dtype, copy=False)


def _sigmoid(r):
    return (0.5 * (1 + np.tanh(0.5 * r))).astype(r.dtype, copy=False)


def _kl(prior, pp, mu, sigma, eps, S):
    """KL and its gradients w.r.t. mu and sigma (see vi_kl in cpp/src/vi.cpp)."""
    mu64, sg64 = mu.astype(np.float64), sigma.astype(np.float64)
    if prior == 0:
        s2 = pp[0] ** 2
        kl = np.sum(math.log(pp[0]) - np.log(sg64) + 0.5 * (sg64 ** 2 + mu64 ** 2) / s2 - 0.5)
        return kl, mu64 / s2, sg64 / s2 - 1 / sg64
    pi, s1, s2 = pp[1], pp[2], pp[3]
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
    sign_stream = fold_in(stream_t, _FLIPOUT_TAG)
    A = np.broadcast_to(xb, (S, B, xb.shape[1])).copy()
    cache = []
    for l in range(L.n_layers):
        din, dout = L.sizes[l], L.sizes[l + 1]
        mW = mu[L.w_off[l]:L.w_off[l] + din * dout].reshape(dout, din)
        mb = mu[L.b_off[l]:L.b_off[l] + dout]
        sW = sigma[L.w_off[l]:L.w_off[l] + din * dout].reshape(dout, din)
        sb = sigma[L.b_off[l]:L.b_off[l] + dout]
        z = A @ mW.T + mb
        if estimator == 1:
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
        if estimator == 1:
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


def _vi_batch(L, Dy, code, lik, learn_noise, estimator, prior, pp, S, seed, stream, state, xb, yb, N, step,
              kl_weight):
    dt = state.dtype
    P = L.n_params
    mu, rho, log_noise = state[:P], state[P:2 * P], state[2 * P:]
    B = xb.shape[0]
    stream_t = fold_in(stream, step)
    sigma = _softplus(rho)
    need_eps = estimator != 1 or prior == 1
    eps = np.empty((S, P), dtype=dt)
    if need_eps:
        fill_normal(eps, seed, stream_t, 0)
    scale = N / B
    gscale = dt.type(scale / S)
    if estimator == 0:
        W = mu + sigma * eps
        zs, acts, mv = _mlp.forward_trace(L, code, W, xb)
        per, gF, gn = _mlp.nll_terms(lik, zs[-1], yb, log_noise)
        gW, _ = _mlp.backward_trace(L, code, W, xb, zs, acts, mv, gF * gscale)
        gmu, gsig = gW.sum(0), (gW * eps).sum(0)
    else:
        cache = _stoch_forward(L, code, estimator, mu, sigma, eps, xb, S, seed, stream_t)
        per, gF, gn = _mlp.nll_terms(lik, cache[-1][1], yb, log_noise)
        gmu, gsig = _stoch_backward(L, code, estimator, mu, sigma, eps, cache, gF * gscale)
    kl, gkm, gks = _kl(prior, pp, mu, sigma, eps, S)
    klscale = scale * float(kl_weight)
    grad = np.zeros(2 * P + Dy, dtype=dt)
    grad[:P] = gmu + (klscale * gkm).astype(dt)
    grad[P:2 * P] = (gsig + (klscale * gks).astype(dt)) * _sigmoid(rho)
    if learn_noise and gn is not None:
        grad[2 * P:] = gscale * gn.sum((0, 1))
    nll_mean = per.sum(1, dtype=np.float64).mean()
    return grad, (nll_mean, kl, scale * (nll_mean + float(kl_weight) * kl))


def vi_epoch(state, m, v, step, X, y, perm, batch_size, kl_weights, sizes, activation, likelihood, learn_noise,
             estimator, prior, prior_params, n_samples, seed, stream, adam, stats):
    """One Bayes-by-Backprop epoch on state = [mu (P), rho (P), log_noise (Dy)]; returns the new step count."""
    L, Dy, N, batches = _epoch_args(sizes, activation, likelihood, X, y, perm, batch_size)
    pp = _vi_cfg(L, estimator, prior, prior_params, n_samples)
    cfg = _adam_cfg(adam)
    n = 2 * L.n_params + Dy
    for a, name in ((state, "state"), (m, "m"), (v, "v")):
        _need(a, n, name)
    _need(kl_weights, len(batches), "kl_weights")
    if stats.shape != (len(batches), 3):
        raise ValueError("stats must have shape (n_batches, 3)")
    for i, rows in enumerate(batches):
        step += 1
        g, st = _vi_batch(L, Dy, activation, likelihood, learn_noise, estimator, prior, pp, n_samples, seed, stream,
                          state, X[rows], y[rows], N, step, kl_weights[i])
        stats[i] = st
        _adam(state, g, m, v, step, cfg)
    return step


def vi_grad(state, X, y, sizes, activation, likelihood, learn_noise, estimator, prior, prior_params, n_samples,
            seed, stream, step, kl_weight, grad, stats):
    """Objective N*(mean nll + kl_weight*KL)/N on all rows at step `step` and its gradient (2P + Dy)."""
    N = X.shape[0] if X.ndim == 2 else 0
    L, Dy, N, _ = _epoch_args(sizes, activation, likelihood, X, y, np.arange(N), 1)
    pp = _vi_cfg(L, estimator, prior, prior_params, n_samples)
    n = 2 * L.n_params + Dy
    _need(state, n, "state")
    _need(grad, n, "grad")
    _need(stats, 3, "stats")
    g, st = _vi_batch(L, Dy, activation, likelihood, learn_noise, estimator, prior, pp, n_samples, seed, stream,
                      state, X, y, N, step, kl_weight)
    grad[...] = g
    stats[...] = st
