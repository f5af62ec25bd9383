"""NumPy twin of the latent kernels (cpp/src/latent.cpp)."""
from __future__ import annotations

import math

import numpy as np

__all__ = ["latent_logp"]


def _expect(a, name, shape):
    if np.shape(a) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {np.shape(a)}")


# Extreme parameters overflow to inf / nan here as in the native kernel (which computes the
# same double expressions, silently); bayesgrad.latent refuses a nan result by name.
@np.errstate(over="ignore", invalid="ignore", divide="ignore")
def latent_logp(theta, x, y, eps, logp, grad=None):
    """MC log p(y|x) per point (N,) of the hidden-variable model with eps (S, N, K); theta packs
    [Wz (K, D), bz (K), log_sz (K), Wy (P, K), by (P), log_sy (1)]; grad, when given, receives the gradient
    of the sum of logp with respect to theta."""
    x, y, eps = np.asarray(x), np.asarray(y), np.asarray(eps)
    if x.ndim != 2 or y.ndim != 2 or eps.ndim != 3:
        raise ValueError("x, y must be 2-d and eps 3-d")
    N, D = x.shape
    S, _, K = eps.shape
    P = y.shape[1]
    if min(N, D, K, P, S) < 1:
        raise ValueError("latent_logp: empty dimension")
    n_params = K * D + 2 * K + P * K + P + 1
    for a, n, sh in ((theta, "theta", (n_params,)), (y, "y", (N, P)), (eps, "eps", (S, N, K)),
                     (logp, "logp", (N,))):
        _expect(a, n, sh)
    if grad is not None:
        _expect(grad, "grad", (n_params,))
    # views of the packed layout (cpp/include/bayesgrad/latent.hpp)
    offs = np.cumsum([0, K * D, K, K, P * K, P, 1])
    shapes = ((K, D), (K,), (K,), (P, K), (P,), (1,))
    Wz, bz, log_sz, Wy, by, log_sy = (np.asarray(theta)[offs[i]:offs[i + 1]].reshape(sh)
                                      for i, sh in enumerate(shapes))
    with_grad = grad is not None
    if with_grad:
        gWz, gbz, glog_sz, gWy, gby, glog_sy = (grad[offs[i]:offs[i + 1]].reshape(sh) for i, sh in enumerate(shapes))
    f = np.float64
    x, y, e = x.astype(f), y.astype(f), eps.astype(f)
    Wz, bz, Wy, by = (np.asarray(a, dtype=f) for a in (Wz, bz, Wy, by))
    sz = np.exp(np.asarray(log_sz, dtype=f))
    lsy = float(np.asarray(log_sy, dtype=f)[0])
    sy = np.exp(f(lsy))
    inv_v = 1.0 / (sy * sy)  # as the kernel forms it (math.exp(-2 lsy) raised OverflowError below -354)
    mu = x @ Wz.T + bz                      # (N, K)
    z = mu[None] + sz * e                   # (S, N, K)
    r = y[None] - z @ Wy.T - by             # (S, N, P)
    ss = np.einsum("snp,snp->sn", r, r)
    lp = -P * (lsy + 0.5 * math.log(2 * math.pi)) - 0.5 * ss * inv_v   # (S, N)
    mx = lp.max(axis=0)
    ex = np.exp(lp - mx)
    tot = ex.sum(axis=0)
    logp[...] = mx + np.log(tot) - math.log(S)
    if not with_grad:
        return
    w = ex / tot                             # (S, N)
    wr = w[..., None] * r * inv_v            # (S, N, P)
    gWy[...] = np.einsum("snp,snk->pk", wr, z)
    gby[...] = wr.sum(axis=(0, 1))
    glog_sy[...] = (w * (ss * inv_v - P)).sum()
    gz = wr @ Wy                             # (S, N, K) = sum_s w_s g_s pieces
    acc = gz.sum(axis=0)                     # (N, K)
    gbz[...] = acc.sum(axis=0)
    gWz[...] = acc.T @ x
    glog_sz[...] = (gz * e).sum(axis=(0, 1)) * sz
