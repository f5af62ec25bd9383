"""SWAG and MultiSWAG (Maddox et al. 2019; Wilson & Izmailov 2020): a
Gaussian posterior over MLP weights from the iterates of SGD run on from a
MAP solution.

SGD with a constant (or cyclical, cosine within each epoch) learning rate on
the mean per-point objective ``(1/N) U(theta)`` (U as in ``bg.sgmcmc``:
whole-data-set NLL plus a Gaussian prior) collects one iterate per epoch
after ``burn_in_epochs``. From the T collected iterates it keeps the running
first and second moments and the deviations ``theta_t - mean_t`` (the running
mean at collection time) of the last K (``rank``); the posterior is

    N(mean, 0.5 diag(sq_mean - mean^2) + 0.5 D Dᵀ / (K - 1)),

sampled as ``mean + sqrt(diag / 2) z1 + D z2 / sqrt(2 (K - 1))``.
``MultiSWAG`` fits M such Gaussians from independently trained MAP solutions
(different Philox initialisations and orders) and mixes them equally.

Random words: SGD orders from ``fold_in(stream, "swag")`` (epoch e: the usual
shuffle stream under it); posterior draws from ``fold_in(seed stream,
"posterior")``.
"""
from __future__ import annotations

import numpy as np

from . import _checks as C
from . import _training as _tr
from . import random as _random
from .nn import MLP, likelihood_name, log_noise_vector, prepare_targets, train_map, training_dtype
from .sgmcmc import check_sample_weight, weighted_nll_grad

__all__ = ["SWAG", "MultiSWAG"]


class SWAG:
    """SWAG for ``mlp``.

    Parameters
    ----------
    mlp : bg.nn.MLP
    likelihood : str (gaussian noise fixed at ``noise``)
    rank : K, the columns of the deviation matrix (>= 2)
    lr : SGD step size on the mean per-point objective
    schedule : "constant" or "cyclical" (cosine from lr to lr/100 within each epoch;
        the iterate is collected at the epoch's end, at the lowest rate)
    prior_precision, noise, batch_size : as ``bg.sgmcmc.SGMCMC``
    """

    def __init__(self, mlp, likelihood="gaussian", *, rank=20, lr=1e-2, schedule="constant", prior_precision=1.0,
                 noise=1.0, batch_size=32, dtype=None):
        if not isinstance(mlp, MLP):
            raise TypeError(f"mlp must be a bayesgrad.nn.MLP, got {type(mlp).__name__}")
        self.mlp = mlp
        self.likelihood = likelihood_name(likelihood)
        self.rank = C.integer(rank, "rank", 2)
        self.lr = float(C.scalar(lr, "lr"))
        if not (np.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be positive, got {lr}")
        self.schedule = C.option(schedule, "schedule", ("constant", "cyclical"))
        self.prior_precision = float(C.scalar(prior_precision, "prior_precision"))
        if not self.prior_precision >= 0:
            raise ValueError(f"prior_precision must be >= 0, got {prior_precision}")
        log_noise_vector(noise, self.likelihood, mlp.sizes[-1], np.float64)  # validates
        self.noise = noise
        self.batch_size = C.integer(batch_size, "batch_size", 1)
        self.dtype = None if dtype is None else C.float_dtype(dtype)
        self.mean_ = self.sq_mean_ = self.deviations_ = None

    def fit(self, X, y, epochs=30, *, theta0=None, burn_in_epochs=0, map_epochs=200, sample_weight=None, seed=0,
            stream=0, verbose=1, keep_iterates=False):
        """Collect one iterate per epoch for ``epochs`` epochs after ``burn_in_epochs``.

        ``theta0`` is the MAP solution to start from; without it one is
        trained by ``bg.nn.train_map`` (``map_epochs`` epochs with early
        stopping on a validation split; with ``sample_weight``, by the native
        ensemble epoch with one member). ``sample_weight`` (N,) non-negative
        row weights w_n make the objective ``sum_n w_n nll_n + prior`` for the
        MAP start and the SGD iterates (None: all 1). ``keep_iterates`` keeps
        the collected iterates as ``iterates_`` (T, P) for diagnostics. Returns self.
        """
        epochs = C.integer(epochs, "epochs", self.rank)
        burn_in_epochs = C.integer(burn_in_epochs, "burn_in_epochs", 0)
        dt = self.dtype or training_dtype(X, theta0, None)
        mlp = self.mlp
        Xa = mlp.check_inputs(X, dt)
        ya = prepare_targets(y, self.likelihood, mlp.sizes[-1], Xa.shape[0], dt)
        seed = _random.resolve_seed(seed)
        stream = _random.check_stream(stream)
        w = check_sample_weight(sample_weight, Xa.shape[0], dt)
        if theta0 is None and w is not None:
            from .ensemble import DeepEnsemble

            one = DeepEnsemble(mlp, self.likelihood, n_models=1, weight_decay=self.prior_precision, noise=self.noise,
                               batch_size=self.batch_size, validation=0.1 if Xa.shape[0] >= 50 else 0.0, dtype=dt)
            theta0 = one.fit(Xa, ya if self.likelihood != "categorical" else ya[:, 0],
                             C.integer(map_epochs, "map_epochs", 1), sample_weight=w, seed=seed,
                             stream=stream).thetas_[0]
        if theta0 is None:
            theta0 = train_map(mlp, Xa, ya if self.likelihood != "categorical" else ya[:, 0], self.likelihood,
                               epochs=C.integer(map_epochs, "map_epochs", 1), batch_size=self.batch_size,
                               weight_decay=self.prior_precision, noise=self.noise, seed=seed, stream=stream,
                               validation=0.1 if Xa.shape[0] >= 50 else 0.0, dtype=dt)
        theta = mlp.check_params(theta0, "theta0").astype(dt).copy()
        if theta.shape != (mlp.n_params,):
            raise ValueError(f"theta0 must have shape ({mlp.n_params},)")
        N = Xa.shape[0]
        B = min(self.batch_size, N)
        sgd_stream = _random.fold_in(stream, "swag")
        mean = np.zeros(mlp.n_params)
        sq = np.zeros(mlp.n_params)
        devs, iterates = [], []
        n_batches = max(1, N // B)  # a short tail batch is dropped: every step sees B rows
        bar = _tr.progress(burn_in_epochs + epochs, verbose if epochs >= 10 else 0, "SWAG")
        for e in range(burn_in_epochs + epochs):
            if bar is not None:
                bar.update(1)
            perm = _tr.permutation(N, seed, sgd_stream, e)
            for i in range(n_batches):
                rows = perm[i * B:(i + 1) * B]
                with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported just below
                    _, g = weighted_nll_grad(mlp, theta, Xa[rows], ya[rows], self.likelihood, self.noise,
                                             None if w is None else w[rows])
                    grad = g / B + (self.prior_precision / N) * theta
                if not np.all(np.isfinite(grad)):
                    raise FloatingPointError(f"SWAG's SGD diverged in epoch {e} (non-finite gradient): lower lr "
                                             f"(now {self.lr:g})")
                rate = self.lr
                if self.schedule == "cyclical":
                    r = (i + 1) / n_batches
                    rate = self.lr * (0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * r)))
                theta -= dt.type(rate) * grad
            if e < burn_in_epochs:
                continue
            t = e - burn_in_epochs + 1
            th = theta.astype(np.float64)
            mean += (th - mean) / t
            sq += (th * th - sq) / t
            devs.append(th - mean)
            devs = devs[-self.rank:]
            if keep_iterates:
                iterates.append(th.copy())
        if bar is not None:
            bar.close()
        self.mean_, self.sq_mean_ = mean, sq
        self.deviations_ = np.stack(devs, axis=1)  # (P, K)
        self.iterates_ = np.stack(iterates) if keep_iterates else None
        self.seed_ = seed
        self._dtype = dt
        return self

    @property
    def diag_var_(self):
        """Diagonal of the SWA second moment minus the squared mean (P,), clipped at 0."""
        self._require_moments()
        return np.maximum(self.sq_mean_ - self.mean_ ** 2, 0.0)

    def _require_moments(self):
        if self.mean_ is None:
            raise RuntimeError("call fit() (or load()) first")

    def sample_params(self, n_samples, seed=0, stream=0):
        """Weight samples (n_samples, P) from the SWAG Gaussian."""
        self._require_moments()
        n = C.integer(n_samples, "n_samples", 1)
        P, K = self.deviations_.shape
        # the normals (n, P + K), the samples and a temporary of (n, P) (the name before random.normal's)
        C.check_allocation(C.n_bytes((n, P + K), np.float64, copies=3), f"n_samples={n}: the (n_samples, P) weights")
        st = _random.fold_in(_random.check_stream(stream), "posterior")
        z = _random.normal((n, P + K), seed=seed, stream=st)
        out = (self.mean_ + np.sqrt(self.diag_var_ / 2) * z[:, :P]
               + (z[:, P:] @ self.deviations_.T) / np.sqrt(2.0 * max(K - 1, 1)))
        return np.ascontiguousarray(out, dtype=self._dtype)

    def predict(self, X, n_samples=30, seed=0, stream=0):
        """The predictive (``Predictive``) at X (N, d_in) over ``n_samples`` SWAG draws (S = n_samples)."""
        from .nn import Predictive

        thetas = self.sample_params(n_samples, seed, stream)
        F = self.mlp.forward(thetas, X)
        return Predictive.from_outputs(F, self.likelihood, self.noise if self.likelihood == "gaussian" else 1.0, overwrite=True)

    def _meta(self):
        return {"mlp": self.mlp.to_dict(), "likelihood": self.likelihood, "rank": self.rank, "lr": self.lr,
                "schedule": self.schedule, "prior_precision": self.prior_precision,
                "noise": np.asarray(self.noise, dtype=np.float64).tolist(), "batch_size": self.batch_size,
                "dtype": np.dtype(self._dtype).name}

    def save(self, path):
        """Write the moments, deviations and settings (.npz + JSON, no pickle)."""
        self._require_moments()
        _tr.save_npz(path, {"kind": "SWAG", **self._meta()},
                     {"mean": self.mean_, "sq_mean": self.sq_mean_, "deviations": self.deviations_})

    @classmethod
    def _from_meta(cls, meta, path):
        try:
            mlp = MLP(**meta["mlp"])
            obj = cls(mlp, meta["likelihood"], rank=meta["rank"], lr=meta["lr"], schedule=meta["schedule"],
                      prior_precision=meta["prior_precision"], noise=meta["noise"], batch_size=meta["batch_size"])
            obj._dtype = C.float_dtype(meta["dtype"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path!r}: malformed SWAG metadata ({exc})") from exc
        return obj

    def _set_state(self, arrays, path, prefix=""):
        P = self.mlp.n_params
        m, s, d = (np.asarray(arrays[prefix + k]) for k in ("mean", "sq_mean", "deviations"))
        if m.shape != (P,) or s.shape != (P,) or d.ndim != 2 or d.shape[0] != P or not 1 <= d.shape[1] <= self.rank:
            raise ValueError(f"{path!r}: SWAG arrays have the wrong shapes for {P} parameters")
        # load_npz checks a SWAG file's arrays; a MultiSWAG's members' (prefixed) arrays are checked here (NaN
        # loaded silently and failed at the first predict)
        for k, a in (("mean", m), ("sq_mean", s), ("deviations", d)):
            if a.dtype not in (np.float32, np.float64) or not np.all(np.isfinite(a)):
                raise ValueError(f"{path!r}: array {prefix + k!r} must be finite float32/float64")
        self.mean_, self.sq_mean_, self.deviations_ = (a.astype(np.float64) for a in (m, s, d))

    @classmethod
    def load(cls, path):
        """Read a model written by ``save``; ValueError for a malformed or foreign file."""
        meta, arrays = _tr.load_npz(path, "SWAG", ["mean", "sq_mean", "deviations"])
        obj = cls._from_meta(meta, path)
        obj._set_state(arrays, path)
        return obj


class MultiSWAG:
    """An equal mixture of ``n_models`` SWAG Gaussians, each from its own MAP
    solution (stream ``fold_in(stream, m)`` for model m). Arguments as ``SWAG``."""

    def __init__(self, mlp, likelihood="gaussian", *, n_models=5, **swag_options):
        self.n_models = C.integer(n_models, "n_models", 1)
        self.members = [SWAG(mlp, likelihood, **swag_options) for _ in range(self.n_models)]
        self.mlp, self.likelihood = mlp, self.members[0].likelihood

    @classmethod
    def from_members(cls, members):
        """A MultiSWAG of already fitted ``SWAG`` members (e.g. each from its own MAP solution)."""
        if not members or not all(isinstance(m, SWAG) for m in members):
            raise TypeError("members must be a non-empty list of SWAG models")
        obj = cls.__new__(cls)
        obj.n_models, obj.members = len(members), list(members)
        obj.mlp, obj.likelihood = members[0].mlp, members[0].likelihood
        return obj

    def fit(self, X, y, epochs=30, *, sample_weight=None, seed=0, stream=0, verbose=1, **fit_options):
        """Fit every member (``SWAG.fit``'s options; member m on stream ``fold_in(stream, m)``,
        each with the same ``sample_weight``). Returns self."""
        stream = _random.check_stream(stream)
        fit_options["sample_weight"] = sample_weight
        for m, member in enumerate(self.members):
            member.fit(X, y, epochs, seed=seed, stream=_random.fold_in(stream, m), verbose=verbose, **fit_options)
        return self

    def sample_params(self, n_samples, seed=0, stream=0):
        """(n_samples, P): sample i from member i mod n_models (an equal mixture)."""
        n = C.integer(n_samples, "n_samples", 1)
        C.check_allocation(C.n_bytes((n, self.mlp.n_params), np.float64, copies=3),
                           f"n_samples={n}: the (n_samples, P) weights")
        stream = _random.check_stream(stream)
        parts = [m.sample_params(len(range(i, n, self.n_models)), seed, _random.fold_in(stream, i))
                 for i, m in enumerate(self.members) if i < n]
        out = np.empty((n, self.mlp.n_params), dtype=parts[0].dtype)
        for i, p in enumerate(parts):
            out[i::self.n_models] = p
        return out

    def predict(self, X, n_samples=30, seed=0, stream=0):
        """The mixture's predictive (``Predictive``) at X (N, d_in) over ``n_samples`` draws,
        draw i from member i mod n_models (S = n_samples)."""
        from .nn import Predictive

        thetas = self.sample_params(n_samples, seed, stream)
        F = self.mlp.forward(thetas, X)
        m0 = self.members[0]
        return Predictive.from_outputs(F, self.likelihood, m0.noise if self.likelihood == "gaussian" else 1.0,
                                      overwrite=True)

    def save(self, path):
        """One file with every member's arrays (prefix ``m<i>_``) and the shared settings."""
        arrays = {}
        for i, m in enumerate(self.members):
            m._require_moments()
            arrays.update({f"m{i}_mean": m.mean_, f"m{i}_sq_mean": m.sq_mean_, f"m{i}_deviations": m.deviations_})
        _tr.save_npz(path, {"kind": "MultiSWAG", "n_models": self.n_models, **self.members[0]._meta()}, arrays)

    @classmethod
    def load(cls, path):
        """Read a model written by ``save``; ValueError for a malformed or foreign file."""
        meta, arrays = _tr.load_npz(path, "MultiSWAG", [])
        try:
            n = C.integer(meta["n_models"], "n_models", 1)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path!r}: malformed MultiSWAG metadata ({exc})") from exc
        members = []
        for i in range(n):
            member = SWAG._from_meta(meta, path)
            try:
                member._set_state(arrays, path, prefix=f"m{i}_")
            except KeyError as exc:
                raise ValueError(f"{path!r}: missing array {exc}") from exc
            members.append(member)
        return cls.from_members(members)
