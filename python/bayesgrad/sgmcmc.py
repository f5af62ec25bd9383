"""Stochastic-gradient MCMC over MLP weights: SGLD, SGHMC and their cyclical
versions, with burn-in, thinning and a posterior temperature.

The target is the posterior ``p(theta | D) ∝ exp(-U(theta) / T)`` with the
whole-data-set potential (nats)::

    U(theta) = sum_n nll(y_n | x_n, theta) + 0.5 * prior_precision * |theta|^2,

estimated on a minibatch of B rows as ``(N / B) sum_batch nll + prior`` (the
network's gradient comes from one native forward/backward call per step).
``temperature`` T = 1 is the Bayesian posterior; T < 1 the "cold" posteriors
of Wenzel et al. (2020).

* ``"sgld"`` (Welling & Teh 2011): ``theta -= lr grad U + sqrt(2 lr T) xi``.
* ``"sghmc"`` (Chen et al. 2014, with the momentum parameterisation of their
  eq. 15): ``v = (1 - friction) v - lr grad U + sqrt(2 friction lr T) xi``,
  ``theta += v``.
* ``cycles > 1`` (Zhang et al. 2020): the step size follows a cosine from
  ``lr`` to 0 within each of ``cycles`` cycles; samples are kept only in the
  last ``1 - explore`` fraction of each cycle (the sampling stage).

Random words: the noise of step t from stream
``fold_in(fold_in(stream, "sgmcmc"), t)``, minibatch orders as every fit here.
Samples are kept as (S, P) and served through ``bg.nn.Predictive``.
"""
from __future__ import annotations

import math

import numpy as np

from . import _checks as C
from . import _training as _tr
from ._numerics import log_softmax, sigmoid, softplus
from . import random as _random
from .nn import MLP, Predictive, likelihood_name, log_noise_vector, prepare_targets, training_dtype

__all__ = ["SGMCMC", "METHODS", "check_sample_weight", "weighted_nll_grad"]

METHODS = ("sgld", "sghmc")


class SGMCMC:
    """SG-MCMC for ``mlp``.

    Parameters
    ----------
    mlp : bg.nn.MLP
    likelihood : str (gaussian noise fixed at ``noise``)
    method : "sghmc" (default) or "sgld"
    lr : step size (SGLD) or the squared step eta of SGHMC, in units of the
        whole-data-set potential U (so it shrinks like 1/N for larger data)
    friction : SGHMC's momentum decay per step, in (0, 1]
    prior_precision : of the zero-mean Gaussian prior on every weight
    temperature : T > 0
    batch_size : minibatch rows
    cycles : cyclical step-size cycles (1 = constant step size)
    explore : fraction of each cycle before samples are kept (cycles > 1)
    """

    samples_ = None

    def _require_fit(self):
        if self.samples_ is None:
            raise RuntimeError("call fit() (or load()) first")

    def sample_params(self, n_samples, seed=0, stream=0):
        """``n_samples`` weight vectors (n, P): the kept samples, cycled in order when more are asked for."""
        self._require_fit()
        n = C.integer(n_samples, "n_samples", 1)
        idx = np.arange(n) % self.samples_.shape[0]
        return self.samples_[idx]

    def predict(self, X, n_samples=None, seed=0, stream=0):
        """The predictive (``Predictive``) at X (N, d_in) over the kept samples (S, P): all
        of them, or ``n_samples`` spread evenly over the run (consecutive samples of a
        chain are correlated)."""
        self._require_fit()
        total = self.samples_.shape[0]
        S = total if n_samples is None else min(C.integer(n_samples, "n_samples", 1), total)
        idx = np.unique(np.round(np.linspace(0, total - 1, S)).astype(np.int64))
        F = self.mlp.forward(np.ascontiguousarray(self.samples_[idx]), X)
        return Predictive.from_outputs(F, self.likelihood, self.noise if self.likelihood == "gaussian" else 1.0, overwrite=True)


    def __init__(self, mlp, likelihood="gaussian", *, method="sghmc", lr=1e-4, friction=0.1, prior_precision=1.0,
                 temperature=1.0, noise=1.0, batch_size=32, cycles=1, explore=0.5, dtype=None):
        if not isinstance(mlp, MLP):
            raise TypeError(f"mlp must be a bayesgrad.nn.MLP, got {type(mlp).__name__}")
        self.mlp = mlp
        self.likelihood = likelihood_name(likelihood)
        self.method = C.option(method, "method", METHODS)
        self.lr = self._positive(lr, "lr")
        self.friction = float(C.scalar(friction, "friction"))
        if not 0 < self.friction <= 1:
            raise ValueError(f"friction must be in (0, 1], got {friction}")
        self.prior_precision = float(C.scalar(prior_precision, "prior_precision"))
        if not self.prior_precision >= 0:
            raise ValueError(f"prior_precision must be >= 0, got {prior_precision}")
        self.temperature = self._positive(temperature, "temperature")
        log_noise_vector(noise, self.likelihood, mlp.sizes[-1], np.float64)  # validates
        self.noise = noise
        self.batch_size = C.integer(batch_size, "batch_size", 1)
        self.cycles = C.integer(cycles, "cycles", 1)
        self.explore = float(C.scalar(explore, "explore"))
        if not 0 <= self.explore < 1:
            raise ValueError(f"explore must be in [0, 1), got {explore}")
        self.dtype = None if dtype is None else C.float_dtype(dtype)

    @staticmethod
    def _positive(v, name):
        v = float(C.scalar(v, name))
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be positive, got {v}")
        return v

    def _step_size(self, t, n_steps):
        if self.cycles == 1:
            return self.lr, True
        per = math.ceil(n_steps / self.cycles)
        r = (t % per) / per
        return 0.5 * self.lr * (math.cos(math.pi * r) + 1.0), r >= self.explore

    def fit(self, X, y, n_steps=10000, *, burn_in=None, thin=10, theta0=None, sample_weight=None, seed=0, stream=0,
            verbose=1):
        """Run ``n_steps`` steps from ``theta0`` (default ``mlp.init``); keep every
        ``thin``-th state after ``burn_in`` steps (default n_steps // 2; with
        cycles, the sampling stages instead). ``sample_weight`` (N,) non-negative
        row weights w_n make the potential ``sum_n w_n nll_n + prior`` (None: all 1).
        Returns self; ``samples_`` (S, P)."""
        n_steps = C.integer(n_steps, "n_steps", 1)
        burn_in = n_steps // 2 if burn_in is None else C.integer(burn_in, "burn_in", 0)
        thin = C.integer(thin, "thin", 1)
        if self.cycles == 1 and burn_in >= n_steps:
            raise ValueError(f"burn_in ({burn_in}) must be smaller than n_steps ({n_steps})")
        dt = self.dtype or training_dtype(X, theta0, None)
        mlp = self.mlp
        Xa = mlp.check_inputs(X, dt)
        ya = prepare_targets(y, self.likelihood, mlp.sizes[-1], Xa.shape[0], dt)
        N = Xa.shape[0]
        w = check_sample_weight(sample_weight, N, dt)
        B = min(self.batch_size, N)
        seed = _random.resolve_seed(seed)
        stream = _random.check_stream(stream)
        theta = (mlp.init(seed=seed, stream=stream, dtype=dt) if theta0 is None
                 else mlp.check_params(theta0, "theta0").astype(dt).copy())
        if theta.shape != (mlp.n_params,):
            raise ValueError(f"theta0 must have shape ({mlp.n_params},)")
        noise_stream = _random.fold_in(stream, "sgmcmc")
        v = np.zeros_like(theta)
        kept, perm, pos, epoch = [], None, N, 0
        T, lam = self.temperature, self.prior_precision
        bar = _tr.progress(n_steps, verbose if n_steps >= 100 else 0, self.method.upper(), unit="step")
        for t in range(n_steps):
            if bar is not None:
                bar.update(1)
            if pos + B > N:  # a new epoch: a fresh Philox order (a short tail batch is dropped)
                perm, pos, epoch = _tr.permutation(N, seed, stream, epoch), 0, epoch + 1
            rows = perm[pos:pos + B]
            pos += B
            with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported just below
                _, g = weighted_nll_grad(mlp, theta, Xa[rows], ya[rows], self.likelihood, self.noise,
                                         None if w is None else w[rows])
                grad = (N / B) * g + lam * theta
            if not np.all(np.isfinite(grad)):
                raise FloatingPointError(f"SG-MCMC diverged at step {t} (non-finite gradient): lower lr "
                                         f"(now {self.lr:g})")
            eps, keep = self._step_size(t, n_steps)
            xi = _random.normal(theta.shape, seed=seed, stream=_random.fold_in(noise_stream, t), dtype=dt)
            if self.method == "sgld":
                theta -= dt.type(eps) * grad - dt.type(math.sqrt(2 * eps * T)) * xi
            else:
                a = self.friction
                v *= dt.type(1 - a)
                v -= dt.type(eps) * grad - dt.type(math.sqrt(2 * a * eps * T)) * xi
                theta += v
            after_burn_in = t >= burn_in if self.cycles == 1 else keep
            if after_burn_in and (t + 1) % thin == 0:
                kept.append(theta.copy())
        if bar is not None:
            bar.close()
        if not kept:
            raise ValueError("no sample was kept: lower burn_in or thin, or raise n_steps")
        self.samples_ = np.ascontiguousarray(np.stack(kept))
        self.seed_ = seed
        return self

    def save(self, path):
        """Write the samples and settings (.npz + JSON, no pickle)."""
        self._require_fit()
        meta = {"kind": "SGMCMC", "mlp": self.mlp.to_dict(), "likelihood": self.likelihood, "method": self.method,
                "lr": self.lr, "friction": self.friction, "prior_precision": self.prior_precision,
                "temperature": self.temperature, "noise": np.asarray(self.noise, dtype=np.float64).tolist(),
                "batch_size": self.batch_size, "cycles": self.cycles, "explore": self.explore}
        _tr.save_npz(path, meta, {"samples": self.samples_})

    @classmethod
    def load(cls, path):
        """Read a model written by ``save``; ValueError for a malformed or foreign file."""
        meta, arrays = _tr.load_npz(path, "SGMCMC", ["samples"])
        try:
            mlp = MLP(**meta["mlp"])
            obj = cls(mlp, meta["likelihood"], method=meta["method"], lr=meta["lr"], friction=meta["friction"],
                      prior_precision=meta["prior_precision"], temperature=meta["temperature"], noise=meta["noise"],
                      batch_size=meta["batch_size"], cycles=meta["cycles"], explore=meta["explore"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{path!r}: malformed SGMCMC metadata ({exc})") from exc
        s = arrays["samples"]
        if s.ndim != 2 or s.shape[1] != mlp.n_params or s.shape[0] < 1 or s.dtype.kind != "f":
            raise ValueError(f"{path!r}: samples must have shape (S, {mlp.n_params}), got {s.shape}")
        obj.samples_ = np.ascontiguousarray(s)
        return obj


def check_sample_weight(sample_weight, N, dtype):
    """``sample_weight`` as a checked (N,) array of ``dtype`` (finite, >= 0, positive sum),
    or None: ``bg.nn.sample_weights``, the check every fit shares."""
    from .nn import sample_weights

    return sample_weights(sample_weight, N, dtype)


def weighted_nll_grad(mlp, theta, X, y, likelihood, noise, weights):
    """``sum_n w_n nll_n`` (nats) and its gradient (P,) at ``theta`` (P,).

    X (N, d_in), y (N, Dy) prepared targets, weights (N,) or None (then the
    native ``mlp.nll``). With weights, dnll_n/dF_n in closed form, scaled by
    w_n, goes through one native backward pass (``mlp.vjp``).
    """
    if weights is None:
        return mlp.nll(theta, X, y, likelihood, noise, grad=True)
    # shape and sign only (a minibatch's weights may all be 0: no positive-sum check)
    w = C.as_array(weights, "weights", np.float64, allow_empty=True)
    if w.shape != (np.shape(X)[0],):
        raise ValueError(f"weights must have shape ({np.shape(X)[0]},) (one per row of X), got {w.shape}")
    C.non_negative(w, "weights")
    F = mlp.forward(theta, X).astype(np.float64)
    yy = np.asarray(y, dtype=np.float64)
    if likelihood == "gaussian":
        ln = log_noise_vector(noise, likelihood, mlp.sizes[-1], np.float64)
        inv = np.exp(-2 * ln)
        r = yy - F
        per = (0.5 * r * r * inv + ln + 0.5 * math.log(2 * math.pi)).sum(1)
        gF = -r * inv
    elif likelihood == "heteroscedastic_gaussian":
        D = F.shape[1] // 2
        r, v = yy - F[:, :D], F[:, D:]
        e = np.exp(-v)
        per = (0.5 * (r * r * e + v) + 0.5 * math.log(2 * math.pi)).sum(1)
        gF = np.concatenate([-r * e, 0.5 * (1 - r * r * e)], axis=1)
    elif likelihood == "categorical":
        c = yy[:, 0].astype(np.int64)
        lp = log_softmax(F, axis=1)
        per = -lp[np.arange(F.shape[0]), c]
        gF = np.exp(lp)
        gF[np.arange(F.shape[0]), c] -= 1
    else:
        per = (softplus(F) - yy * F).sum(1)
        gF = sigmoid(F) - yy
    grad = mlp.vjp(theta, X, (w[:, None] * gF).astype(theta.dtype))
    return float(w @ per), grad
