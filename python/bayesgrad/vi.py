"""Mean-field variational inference for MLPs: Bayes by Backprop.

q(theta) = N(mu, diag(sigma^2)) with sigma = softplus(rho). Every training
step -- sampling, forward, backward, KL and the Adam update -- runs natively;
an epoch runs in native calls of ~0.1 s, so progress bars and Ctrl-C work.

The objective of minibatch i (B_i of N rows) is
``(N / B_i) * (mean_s nll_{i,s} + w_i * KL)`` where the KL weights w_i are
``kl_weighting``: ``"proportional"`` (B_i / N), ``"blundell"``
(2^(M-i) / (2^M - 1)) or ``"annealed"`` (B_i / N times a linear ramp), each
times ``temperature`` (1: the ELBO; T < 1: a cold posterior). The
reported ELBO (``history_``, ``elbo``) always uses the full KL and is a
whole-data-set sum in nats: ``expected_loglik - kl``.
"""
from __future__ import annotations

import math

import numpy as np

from . import _backend
from . import _checks as C
from . import _training as _tr
from . import random as _random
from ._codes import ViEstimator, ViPrior
from .nn import (LIKELIHOODS, MLP, Predictive, likelihood_name, log_noise_vector, prepare_targets, sample_weights,
                 sampled_outputs, target_dim, training_dtype)

__all__ = ["MFVI", "ESTIMATORS", "PRIORS"]

#: Option name -> kernel code (defined once in bayesgrad._codes).
ESTIMATORS = {m.name: int(m) for m in ViEstimator}
_EST_ALIASES = {"reparam": "weight_space", "local": "local_reparam", "lrt": "local_reparam"}
PRIORS = {m.name: int(m) for m in ViPrior}


class MFVI:
    """Bayes by Backprop for ``mlp``.

    Parameters
    ----------
    mlp : bg.nn.MLP
    likelihood : str (docs/design.md names)
    prior : "gaussian" (N(0, prior_sigma^2), closed-form KL) or "scale_mixture"
        (pi N(0, s1^2) + (1 - pi) N(0, s2^2), MC KL; ``mixture = (pi, s1, s2)``)
    estimator : "weight_space", "local_reparam" (Kingma et al. 2015) or "flipout"
    n_samples : S weight samples per step
    rho_init : initial rho (sigma = softplus(rho); -3.5 gives sigma ~ 0.03)
    kl_weighting : "proportional", "blundell" or "annealed" (over ``anneal_epochs``)
    temperature : T > 0, default 1: every minibatch's KL weight times T, i.e. the ELBO of the
        tempered posterior p(theta | D) ∝ p(D | theta)^(1/T) p(theta) (T < 1: a "cold"
        posterior, Wenzel et al. 2020); ``history_`` and ``elbo`` report the untempered ELBO
    noise, learn_noise : gaussian noise sigma (scalar or per output), learned by
        Adam as a point estimate when ``learn_noise``
    lr, batch_size : Adam step size and minibatch size
    """

    def __init__(self, mlp, likelihood="gaussian", *, prior="gaussian", prior_sigma=1.0,
                 mixture=(0.5, 1.0, math.exp(-6)), estimator="weight_space", n_samples=1, rho_init=-3.5,
                 kl_weighting="proportional", anneal_epochs=10, noise=1.0, learn_noise=False, lr=1e-3,
                 batch_size=32, dtype=None, temperature=1.0):
        if not isinstance(mlp, MLP):
            raise TypeError(f"mlp must be a bayesgrad.nn.MLP, got {type(mlp).__name__}")
        self.mlp = mlp
        self.likelihood = likelihood_name(likelihood)
        self.prior = C.option(prior, "prior", PRIORS)
        self.prior_sigma = C.real(prior_sigma, "prior_sigma")
        if not (np.isfinite(self.prior_sigma) and self.prior_sigma > 0):
            raise ValueError(f"prior_sigma must be positive, got {prior_sigma}")
        if not isinstance(mixture, (tuple, list)) or len(mixture) != 3:
            raise TypeError(f"mixture must be a triple (pi, s1, s2), got {mixture!r}")
        pi, s1, s2 = (C.real(v, "mixture") for v in mixture)
        if not (0 < pi < 1 and s1 > 0 and s2 > 0):
            raise ValueError(f"mixture must be (pi in (0, 1), s1 > 0, s2 > 0), got {mixture}")
        self.mixture = (pi, s1, s2)
        self.estimator = C.option(estimator, "estimator", ESTIMATORS, _EST_ALIASES)
        self.n_samples = C.integer(n_samples, "n_samples", 1)
        C.check_allocation(C.n_bytes((self.n_samples, mlp.n_params), copies=2),
                           f"n_samples={self.n_samples}: the weight samples of a training step")
        self.rho_init = C.real(rho_init, "rho_init")
        if not np.isfinite(self.rho_init):
            raise ValueError("rho_init must be finite")
        self.kl_weighting = C.option(kl_weighting, "kl_weighting", _tr.KL_WEIGHTINGS)
        self.anneal_epochs = C.integer(anneal_epochs, "anneal_epochs", 1)
        self.temperature = C.real(temperature, "temperature")
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be finite and > 0, got {temperature}")
        log_noise_vector(noise, self.likelihood, mlp.sizes[-1], np.float64)  # validates
        self.noise = noise
        self.learn_noise = bool(learn_noise)
        self.lr = C.real(lr, "lr")
        _tr.adam_options(self.lr)  # validates
        self.batch_size = C.integer(batch_size, "batch_size", 1)
        self.dtype = None if dtype is None else C.float_dtype(dtype)
        self.history_ = []
        self.state_ = None

    # ------------------------------------------------------------ state views
    def _require_fit(self):
        if self.state_ is None:
            raise RuntimeError("call fit() (or load()) first")

    @property
    def mu_(self):
        self._require_fit()
        return self.state_[:self.mlp.n_params]

    @property
    def rho_(self):
        self._require_fit()
        P = self.mlp.n_params
        return self.state_[P:2 * P]

    @property
    def sigma_(self):
        return np.logaddexp(0, self.rho_).astype(self.state_.dtype)

    @property
    def noise_(self):
        """Gaussian noise sigma per output (None for other likelihoods)."""
        self._require_fit()
        return np.exp(self.state_[2 * self.mlp.n_params:]) if self.likelihood == "gaussian" else None

    def kernel_config(self, k, *, seed, stream, estimator=None, n_samples=None, batch_size=None):
        """The ``k.vi.ViConfig`` of this model for backend module ``k``; ``estimator``,
        ``n_samples`` and ``batch_size`` override the model's own."""
        pi, s1, s2 = self.mixture
        return k.vi.ViConfig(
            self.mlp.net_config(k), LIKELIHOODS[self.likelihood], learn_noise=self.learn_noise,
            estimator=ESTIMATORS[estimator or self.estimator], prior=PRIORS[self.prior],
            prior_sigma=self.prior_sigma, mix_pi=pi, mix_s1=s1, mix_s2=s2,
            n_samples=self.n_samples if n_samples is None else n_samples, seed=seed, stream=stream,
            batch_size=self.batch_size if batch_size is None else batch_size,
            adam=k.optim.AdamConfig(**_tr.adam_options(self.lr)))

    # ------------------------------------------------------------ training
    def fit(self, X, y, epochs=100, *, seed=0, stream=0, mu0=None, verbose=1, warm_start=False,
            sample_weight=None):
        """Train for ``epochs`` epochs; returns self.

        ``sample_weight`` (N,), default None: finite non-negative weights of the
        rows' expected log-likelihood terms (integer weights give the ELBO of the
        data set with rows repeated that many times; 0 drops a row).

        ``mu0`` initialises the means (default ``mlp.init``); ``warm_start``
        continues from the current state. ``history_`` gets one dict per epoch:
        elbo, expected_loglik, kl (nats, whole data set) and objective.

        Each epoch runs in native calls of about 0.1 s (slices of its
        minibatches). Ctrl-C stops at the next slice boundary and undoes the
        unfinished epoch (``interrupted_`` is set): the variational parameters,
        Adam moments, step count and ``history_`` all describe the end of the
        last completed epoch. A diverging fit (NaN or inf) raises
        FloatingPointError naming the epoch, with the state of the last finite
        epoch kept.
        """
        dt = self.dtype or (self.state_.dtype if warm_start and self.state_ is not None else
                            training_dtype(X, mu0, None))
        mlp = self.mlp
        Xa = mlp.check_inputs(X, dt)
        ya = prepare_targets(y, self.likelihood, mlp.sizes[-1], Xa.shape[0], dt)
        wa = sample_weights(sample_weight, Xa.shape[0], dt)
        self.seed_ = _random.resolve_seed(seed)
        stream = _random.check_stream(stream)
        P = mlp.n_params
        if not (warm_start and self.state_ is not None):
            mu = (mlp.init(seed=self.seed_, stream=stream, dtype=dt) if mu0 is None
                  else mlp.check_params(mu0, "mu0").astype(dt))
            if mu.shape != (P,):
                raise ValueError(f"mu0 must have shape ({P},)")
            ln = log_noise_vector(self.noise, self.likelihood, mlp.sizes[-1], dt)
            self.state_ = np.ascontiguousarray(np.concatenate([mu, np.full(P, self.rho_init, dtype=dt), ln]))
            self._m = np.zeros_like(self.state_)
            self._v = np.zeros_like(self.state_)
            self._step = 0
            self.history_ = []
        state, m, v = self.state_, self._m, self._v
        N = Xa.shape[0]
        sizes = _tr.batch_sizes(N, self.batch_size)
        wstream = _random.fold_in(stream, "weights")
        k = _backend.kernels()
        # the kernels use min(batch_size, N) anyway; clamped here it also fits their int64
        cfg = self.kernel_config(k, seed=self.seed_, stream=wstream, batch_size=min(self.batch_size, N))
        e0 = len(self.history_)

        B = int(min(self.batch_size, N))

        def one_epoch(e, ctl):
            perm = _tr.permutation(N, self.seed_, stream, e0 + e)
            w = np.ascontiguousarray(self.temperature * _tr.kl_weights(self.kl_weighting, sizes, N, e0 + e,
                                                                       self.anneal_epochs), dtype=dt)
            parts = []
            for i0, i1 in ctl.slices(sizes.size):  # ~0.1 s per native call: Ctrl-C stops promptly
                step, stats = (k.vi.vi_epoch(cfg, state, m, v, self._step, Xa, ya, perm[i0 * B:i1 * B], w[i0:i1])
                               if wa is None else
                               k.vi.vi_epoch(cfg, state, m, v, self._step, Xa, ya, perm[i0 * B:i1 * B], w[i0:i1],
                                             wa))
                self._step = int(step)
                parts.append(stats)
            stats = np.concatenate(parts)
            _tr.check_finite_epoch(e0 + e, self.lr, stats, state)
            ell = -float(stats[:, 0].sum(dtype=np.float64))
            kl = float(stats[:, 1].mean(dtype=np.float64))
            return {"elbo": ell - kl, "expected_loglik": ell, "kl": kl,
                    "objective": float(stats[:, 2].mean(dtype=np.float64))}

        def checkpoint():
            return state.copy(), m.copy(), v.copy(), self._step

        def rollback(token):
            state[...], m[...], v[...] = token[:3]
            self._step = token[3]

        hist, self.interrupted_ = [], False
        try:
            _, self.interrupted_ = _tr.run_epochs(epochs, one_epoch, verbose=verbose, desc="MFVI", sliced=True,
                                                  checkpoint=checkpoint, rollback=rollback, history=hist)
        finally:  # also when training diverged: the completed epochs stay recorded
            for h in hist:
                h["epoch"] += e0
            self.history_ += hist
        return self

    # ------------------------------------------------------------ evaluation
    def elbo(self, X, y, n_samples=64, seed=0, stream=0):
        """ELBO on (X, y) at the current q: dict of elbo, expected_loglik, kl (nats, sums over the rows).

        The expected log-likelihood is an MC mean over ``n_samples`` weight
        samples; the KL is closed form (gaussian prior) or MC (scale mixture).
        """
        self._require_fit()
        dt = self.state_.dtype
        Xa = self.mlp.check_inputs(X, dt)
        ya = prepare_targets(y, self.likelihood, self.mlp.sizes[-1], Xa.shape[0], dt)
        n_samples = C.integer(n_samples, "n_samples", 1)
        seed = _random.resolve_seed(seed)
        s = _random.fold_in(_random.check_stream(stream), "predict")
        k = _backend.kernels()
        cfg = self.kernel_config(k, seed=seed, stream=s, estimator="weight_space", n_samples=n_samples)
        grad = np.empty_like(self.state_)
        stats = k.vi.vi_grad(cfg, self.state_, Xa, ya, 1, 1.0, grad)
        ell, kl = -float(stats[0]), float(stats[1])
        return {"elbo": ell - kl, "expected_loglik": ell, "kl": kl}

    def sample_params(self, n_samples, seed=0, stream=0):
        """Weight samples (n_samples, P) from q (stream ``fold_in(stream, "posterior")``)."""
        self._require_fit()
        n_samples = C.integer(n_samples, "n_samples", 1)
        C.check_allocation(C.n_bytes((n_samples, self.mlp.n_params), self.state_.dtype, copies=2),
                           f"n_samples={n_samples}: the (S, P) weight samples")
        return self._sample_block(0, n_samples, seed, _random.fold_in(_random.check_stream(stream), "posterior"))

    def _sample_block(self, s0, s1, seed, stream):
        """Samples s0..s1-1 of ``sample_params`` (the same values as rows s0..s1-1 of one draw)."""
        P = self.mlp.n_params
        eps = _random.normal((s1 - s0, P), seed=seed, stream=stream, dtype=self.state_.dtype, offset=s0 * P)
        return self.mu_ + self.sigma_ * eps

    def predict(self, X, n_samples=100, seed=0, stream=0):
        """The predictive distribution (``bg.nn.Predictive``) from ``n_samples`` weight samples.

        The weight samples are drawn in chunks (``nn.sampled_outputs``); sizes are
        checked before anything is allocated.

        Shapes: ``X`` (N, d_in); the predictive's arrays are (N, K), with (S, N, K) per-sample
        fields, S = ``n_samples``.
        """
        self._require_fit()
        n_samples = C.integer(n_samples, "n_samples", 1)
        seed = _random.resolve_seed(seed)
        st = _random.fold_in(_random.check_stream(stream), "posterior")
        F = sampled_outputs(self.mlp, X, n_samples, self.state_.dtype,
                            lambda s0, s1: (self._sample_block(s0, s1, seed, st), None))
        noise = self.noise_ if self.likelihood == "gaussian" else 1.0
        return Predictive.from_outputs(F, self.likelihood, noise, overwrite=True)

    # ------------------------------------------------------------ persistence
    def _meta(self):
        return {"kind": "MFVI", "mlp": self.mlp.to_dict(), "likelihood": self.likelihood, "prior": self.prior,
                "prior_sigma": self.prior_sigma, "mixture": list(self.mixture), "estimator": self.estimator,
                "n_samples": self.n_samples, "rho_init": self.rho_init, "kl_weighting": self.kl_weighting,
                "anneal_epochs": self.anneal_epochs, "temperature": self.temperature,
                "learn_noise": self.learn_noise, "lr": self.lr,
                "batch_size": self.batch_size, "seed": str(getattr(self, "seed_", "")), "history": self.history_}

    def save(self, path):
        """Write the variational parameters and settings to ``path`` (.npz + JSON, no pickle; atomic, and
        ``.npz`` is appended when missing, as ``load`` does).

        The Adam moments and step count are not saved: a loaded model predicts
        exactly as the saved one, but ``fit`` on it (``warm_start``) restarts
        Adam from zero moments, so its first steps differ from an
        uninterrupted run.
        """
        self._require_fit()
        _tr.save_npz(path, self._meta(), {"state": self.state_})

    @classmethod
    def load(cls, path):
        """Read a model written by ``save``; ValueError for a malformed or foreign file.

        The optimiser state is not restored (see ``save``): further training
        starts Adam afresh.
        """
        meta, arrays = _tr.load_npz(path, "MFVI", ["state"])
        try:
            mlp = MLP(**meta["mlp"])
            obj = cls(mlp, meta["likelihood"], prior=meta["prior"], prior_sigma=meta["prior_sigma"],
                      mixture=meta["mixture"], estimator=meta["estimator"], n_samples=meta["n_samples"],
                      rho_init=meta["rho_init"], kl_weighting=meta["kl_weighting"],
                      anneal_epochs=meta["anneal_epochs"], learn_noise=meta["learn_noise"], lr=meta["lr"],
                      batch_size=meta["batch_size"], temperature=meta.get("temperature", 1.0))
        except (KeyError, TypeError, AttributeError, OverflowError) as exc:
            raise ValueError(f"{path!r}: malformed MFVI metadata ({type(exc).__name__}: {exc})") from exc
        state = arrays["state"]
        n = 2 * mlp.n_params + target_dim(obj.likelihood, mlp.sizes[-1])
        if state.shape != (n,):
            raise ValueError(f"{path!r}: state has shape {state.shape}, expected ({n},)")
        if obj.likelihood == "gaussian":
            _tr.check_log_noise(state[2 * mlp.n_params:], path)
        obj.state_ = np.ascontiguousarray(state)
        obj._m, obj._v, obj._step = np.zeros_like(state), np.zeros_like(state), 0
        obj.history_ = _tr.check_history(meta, path)
        return obj
