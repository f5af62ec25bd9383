"""The hidden-variable regression model x -> z -> y, fitted by maximising a
Monte Carlo estimate of its log-likelihood.

    z | x ~ N(Wz x + bz, diag(sz^2)),    y | z ~ N(Wy z + by, sy^2 I),
    sz = exp(log_sz) (K,),  sy = exp(log_sy) (scalar, stored as shape (1,)).

``log p(y|x) = log E_z[p(y|z)]`` is estimated from S draws
``z_s = mu(x) + sz * eps_s`` (the reparameterisation trick, eps from the
Philox stream ``fold_in(stream, "latent")``):

    log p_hat(y|x) = log (1/S) sum_s p(y | z_s)

``p_hat`` is unbiased for p(y|x); its log is biased low by about
Var[p(y|z)] / (2 S p^2) (Jensen), so the bias shrinks as O(1/S). The gradient
with respect to every parameter flows through z_s = mu + sz * eps with eps
held fixed; drawing z directly and treating the draws as constants would
give zero gradient for (Wz, bz, log_sz), which is why the trick is needed.

For this linear-Gaussian model the exact marginal is Gaussian,
``y | x ~ N(Wy (Wz x + bz) + by, Wy diag(sz^2) Wy^T + sy^2 I)``
(``exact_log_likelihood``), which the tests use as the reference.

Call shape: ``mc_log_likelihood(params, x, y, n_samples, seed=0, stream=0)``
with ``params`` a dict of arrays named as above; x (N, D), y (N, P).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from . import _backend
from . import _checks as C
from . import _training
from . import random as _random

__all__ = ["PARAM_NAMES", "LatentEstimate", "init_params", "mc_log_likelihood", "exact_log_likelihood",
           "LatentGaussianModel"]

PARAM_NAMES = ("Wz", "bz", "log_sz", "Wy", "by", "log_sy")


@dataclass(frozen=True)
class LatentEstimate:
    """``value`` = sum over points of log p_hat (nats), ``per_point`` (N,),
    ``grad`` {name: array like the parameter} of ``value`` (None without grad)."""

    value: float
    per_point: np.ndarray
    grad: dict | None


def init_params(in_dim, latent_dim, out_dim, seed=0, stream=0, dtype=np.float64):
    """Small random weights (N(0, 1/fan_in) from Philox), zero biases, unit scales."""
    D = C.integer(in_dim, "in_dim", 1)
    K = C.integer(latent_dim, "latent_dim", 1)
    P = C.integer(out_dim, "out_dim", 1)
    dt = C.float_dtype(dtype)
    st = _random.fold_in(stream, "init")
    w = _random.normal(K * D + P * K, seed=seed, stream=st, dtype=dt)
    return {
        "Wz": (w[:K * D].reshape(K, D) / math.sqrt(D)).astype(dt), "bz": np.zeros(K, dt),
        "log_sz": np.zeros(K, dt), "Wy": (w[K * D:].reshape(P, K) / math.sqrt(K)).astype(dt),
        "by": np.zeros(P, dt), "log_sy": np.zeros(1, dt),
    }


def _params(params):
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict with keys {PARAM_NAMES}")
    missing = [k for k in PARAM_NAMES if k not in params]
    if missing:
        raise ValueError(f"params is missing {missing}")
    dt = C.result_dtype(*(params[k] for k in PARAM_NAMES))
    p = {k: C.as_array(params[k], k, dtype=dt) for k in PARAM_NAMES}
    p["log_sy"] = p["log_sy"].reshape(-1)
    if p["Wz"].ndim != 2 or p["Wy"].ndim != 2:
        raise ValueError("Wz and Wy must be 2-d")
    K, D = p["Wz"].shape
    P = p["Wy"].shape[0]
    for k, shape in (("bz", (K,)), ("log_sz", (K,)), ("Wy", (P, K)), ("by", (P,)), ("log_sy", (1,))):
        if p[k].shape != shape:
            raise ValueError(f"{k} must have shape {shape}, got {p[k].shape}")
    return p, dt, (D, K, P)


def _data(x, y, D, K, P, dt):
    x = C.as_array(x, "x", dtype=dt, ndim=2)
    y = C.as_array(y, "y", dtype=dt)
    if y.ndim == 1 and P == 1:
        y = y.reshape(-1, 1)
    if x.shape[1] != D:
        raise ValueError(f"x must have {D} columns (Wz is {K}x{D}), got shape {x.shape}")
    if y.shape != (x.shape[0], P):
        raise ValueError(f"y must have shape ({x.shape[0]}, {P}), got {y.shape}")
    return x, y


def mc_log_likelihood(params, x, y, n_samples=64, seed=0, stream=0, grad=True, eps=None) -> LatentEstimate:
    """Reparameterised MC estimate of sum_n log p(y_n | x_n) and its gradient.

    Parameters
    ----------
    params : dict of arrays (see module docstring); their dtype decides.
    x : (N, D), y : (N, P) (or (N,) when P = 1)
    n_samples : int, S draws of z per point
    seed, stream : Philox stream; eps are normals of ``fold_in(stream, "latent")``
    grad : also return the gradient of ``value`` for every parameter
    eps : (S, N, K), optional
        The standard normals to use instead of drawing them (common random
        numbers across calls).
    """
    p, dt, (D, K, P) = _params(params)
    x, y = _data(x, y, D, K, P, dt)
    N = x.shape[0]
    if eps is None:
        S = C.integer(n_samples, "n_samples", 1)
        eps = _random.normal((S, N, K), seed=seed, stream=_random.fold_in(stream, "latent"), dtype=dt)
    else:
        eps = C.as_array(eps, "eps", dtype=dt, ndim=3)
        if eps.shape[1:] != (N, K):
            raise ValueError(f"eps must have shape (S, {N}, {K}), got {eps.shape}")
    logp = np.empty(N, dtype=dt)
    # the kernel takes the parameters packed in PARAM_NAMES order (cpp/include/bayesgrad/latent.hpp)
    theta = np.concatenate([p[k].reshape(-1) for k in PARAM_NAMES])
    flat = np.empty_like(theta) if grad else None
    _backend.kernels().latent.latent_logp(theta, x, y, eps, logp, flat)
    if np.isnan(logp).any() or (grad and np.isnan(flat).any()):
        # (returned as nan before): every draw's log p(y|z) underflowed to -inf, or a scale overflowed
        raise ValueError("the estimate overflowed (nan): exp(log_sz), exp(-log_sy) or the residuals y - Wy z "
                         "exceed the floating-point range; rescale x and y, or bound log_sz and log_sy")
    g = None
    if grad:
        ends = np.cumsum([p[k].size for k in PARAM_NAMES])
        g = {k: flat[e - p[k].size:e].reshape(p[k].shape) for k, e in zip(PARAM_NAMES, ends)}
    return LatentEstimate(float(logp.sum(dtype=np.float64)), logp, g)


def exact_log_likelihood(params, x, y):
    """Exact log p(y_n | x_n) per point (N,) from the Gaussian marginal (float64)."""
    p, dt, (D, K, P) = _params(params)
    x, y = _data(x, y, D, K, P, dt)
    f = {k: v.astype(np.float64) for k, v in p.items()}
    m = (x @ f["Wz"].T + f["bz"]) @ f["Wy"].T + f["by"]
    with np.errstate(over="ignore", invalid="ignore"):  # (math.exp raised OverflowError for log_sy > 354)
        cov = (f["Wy"] * np.exp(2 * f["log_sz"])) @ f["Wy"].T + np.exp(2 * f["log_sy"][0]) * np.eye(P)
    if not np.all(np.isfinite(cov)):
        raise ValueError("the marginal covariance Wy diag(sz^2) Wy^T + sy^2 I overflows float64: bound log_sz "
                         "and log_sy")
    try:
        L = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        raise ValueError("the marginal covariance is not positive definite in float64 (sy = exp(log_sy) "
                         "underflows): bound log_sy from below") from None
    r = np.linalg.solve(L, (y - m).T)
    return -0.5 * (P * math.log(2 * math.pi) + np.sum(r * r, axis=0)) - np.sum(np.log(np.diag(L)))


class LatentGaussianModel:
    """The hidden-variable model with its parameters, fitted by stochastic
    gradient ascent (Adam) on the MC log-likelihood.

    Parameters
    ----------
    in_dim, latent_dim, out_dim : D, K, P
    seed : int or None
        Seed of the initial weights, the minibatch order and the MC draws
        (recorded as ``seed_``).
    dtype : float32 or float64
    """

    def __init__(self, in_dim, latent_dim, out_dim, seed=0, dtype=np.float64):
        self.seed_ = _random.resolve_seed(seed)
        self.params = init_params(in_dim, latent_dim, out_dim, seed=self.seed_, dtype=dtype)
        self.history_ = []
        self.interrupted_ = False

    def log_likelihood(self, x, y, n_samples=64, seed=0, stream=0, grad=False) -> LatentEstimate:
        """Monte Carlo estimate of sum_n log p(y_n | x_n) at the model's parameters
        (``mc_log_likelihood``): ``x`` (N, D), ``y`` (N, P) (or (N,) when P = 1)."""
        return mc_log_likelihood(self.params, x, y, n_samples, seed=seed, stream=stream, grad=grad)

    def exact_log_likelihood(self, x, y):
        """Exact log p(y_n | x_n) per point (N,) at the model's parameters (the module's
        ``exact_log_likelihood``): ``x`` (N, D), ``y`` (N, P) (or (N,) when P = 1)."""
        return exact_log_likelihood(self.params, x, y)

    def fit(self, x, y, steps=500, n_samples=16, batch_size=128, lr=0.02, progress=None, callback=None):
        """Adam ascent on the minibatch estimate N/B * sum_batch log p_hat.

        One native call per step (GIL released inside), so Ctrl-C stops the
        loop between steps: the parameters reached so far are kept and
        ``interrupted_`` is set. ``progress`` (default: on when tqdm is
        installed and stderr is a terminal) shows a tqdm bar; ``callback(step,
        estimate)`` is called after every step. ``history_`` records the
        per-point minibatch objective.

        Shapes: ``x`` (N, D) inputs, ``y`` (N, P) targets (or (N,) when P = 1).
        """
        steps = C.integer(steps, "steps", 1)
        S = C.integer(n_samples, "n_samples", 1)
        lr = C.real(lr, "lr")
        if not (lr > 0 and math.isfinite(lr)):  # (inf was accepted: the first step made every parameter nan)
            raise ValueError(f"lr must be a finite number > 0, got {lr}")
        p, dt, (D, K, P) = _params(self.params)
        x, y = _data(x, y, D, K, P, dt)
        N = x.shape[0]
        B = min(C.integer(batch_size, "batch_size", 1), N)
        bar = _progress(steps, progress)
        m = {k: np.zeros_like(v, dtype=np.float64) for k, v in p.items()}
        v2 = {k: np.zeros_like(v, dtype=np.float64) for k, v in p.items()}
        b1, b2, tiny = 0.9, 0.999, 1e-8
        order = np.arange(N)
        pos = N
        epoch = 0
        st_shuffle = _random.fold_in(0, "shuffle")
        st_step = _random.fold_in(0, "step")
        self.interrupted_ = False
        try:
            for t in range(1, steps + 1):
                if pos + B > N:  # new epoch: Philox permutation
                    order = np.argsort(_random.uniform(N, seed=self.seed_, stream=_random.fold_in(st_shuffle, epoch)))
                    pos, epoch = 0, epoch + 1
                idx = order[pos:pos + B]
                pos += B
                try:
                    est = mc_log_likelihood(p, x[idx], y[idx], S, seed=self.seed_, stream=_random.fold_in(st_step, t))
                except ValueError as exc:  # the overflow check: parameters stepped out of range
                    raise ValueError(f"fit diverged at step {t}: {exc}; lower lr") from exc
                scale = N / B
                new = {}
                for k in PARAM_NAMES:
                    g = est.grad[k].astype(np.float64) * scale
                    m[k] = b1 * m[k] + (1 - b1) * g
                    v2[k] = b2 * v2[k] + (1 - b2) * g * g
                    step = lr * (m[k] / (1 - b1 ** t)) / (np.sqrt(v2[k] / (1 - b2 ** t)) + tiny)
                    with np.errstate(over="ignore"):
                        new[k] = (p[k] + step).astype(dt)  # ascent
                if not all(np.all(np.isfinite(v)) for v in new.values()):
                    # the parameters reached so far stay (they were replaced by the inf ones, then refused
                    # by the next step as "Wz must be finite")
                    raise ValueError(f"fit diverged at step {t}: a parameter overflowed; lower lr")
                p = new
                self.history_.append(est.value / B)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loglik=f"{est.value / B:.4g}")
                if callback is not None:
                    callback(t, est)
        except KeyboardInterrupt:
            self.interrupted_ = True
            warnings.warn(f"fit interrupted after {len(self.history_)} steps; parameters kept", RuntimeWarning,
                          stacklevel=2)
        finally:
            if bar is not None:
                bar.close()
            self.params = p
        return self


def _progress(total, progress):
    """progress None: the package's rule (a bar where someone watches, ``_training.watched``); True: always
    (a warning without tqdm); False: never."""
    if progress is False:
        return None
    if progress:
        try:
            import tqdm  # noqa: F401
        except ImportError:
            warnings.warn("progress=True needs tqdm, which is not installed", RuntimeWarning, stacklevel=3)
            return None
    return _training.progress(total, 2 if progress else 1, "latent fit", unit="step")
