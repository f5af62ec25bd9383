"""Deep ensembles (Lakshminarayanan et al. 2017): M networks trained
independently to their MAP solutions, predicting as an equal mixture.

Member m starts from its own Philox initialisation and minibatch order
(stream ``fold_in(stream, m)``), so members differ only by the randomness of
training, as in the paper. For regression the paper's choice is the
heteroscedastic Gaussian likelihood (``mlp`` with 2 D outputs: D means, then
D log-variances); the mixture's variance then splits into the members' mean
noise variance (aleatoric) and the spread of their means (epistemic), which
``bg.nn.Predictive`` reports.

Each member trains natively (one call per epoch, ``bg.nn.train_map``); the
members run one after another.
"""
from __future__ import annotations

import numpy as np

from . import _checks as C
from . import _training as _tr
from . import random as _random
from .nn import MLP, Predictive, likelihood_name, log_noise_vector, train_map

__all__ = ["DeepEnsemble"]


class DeepEnsemble:
    """``n_models`` independently trained copies of ``mlp``.

    Parameters
    ----------
    mlp : bg.nn.MLP
    likelihood : str ("heteroscedastic_gaussian" for the paper's regression)
    n_models : M >= 1
    weight_decay, noise, learn_noise, lr, batch_size, validation, patience :
        as ``bg.nn.train_map``, for every member
    """

    def __init__(self, mlp, likelihood="heteroscedastic_gaussian", *, n_models=5, weight_decay=1e-4, noise=1.0,
                 learn_noise=False, lr=1e-3, batch_size=32, validation=0.0, patience=10, dtype=None):
        if not isinstance(mlp, MLP):
            raise TypeError(f"mlp must be a bayesgrad.nn.MLP, got {type(mlp).__name__}")
        self.mlp = mlp
        self.likelihood = likelihood_name(likelihood)
        self.n_models = C.integer(n_models, "n_models", 1)
        self.weight_decay = float(C.scalar(weight_decay, "weight_decay"))
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        log_noise_vector(noise, self.likelihood, mlp.sizes[-1], np.float64)  # validates
        self.noise, self.learn_noise = noise, bool(learn_noise)
        self.lr = float(C.scalar(lr, "lr"))
        _tr.adam_options(self.lr)  # validates
        self.batch_size = C.integer(batch_size, "batch_size", 1)
        self.validation = float(C.scalar(validation, "validation"))
        self.patience = C.integer(patience, "patience", 1)
        self.dtype = None if dtype is None else C.float_dtype(dtype)
        self.thetas_ = None
        self.log_noise_ = None

    def fit(self, X, y, epochs=100, *, seed=0, stream=0, verbose=0):
        """Train every member for ``epochs`` epochs; returns self with ``thetas_`` (M, P)."""
        stream = _random.check_stream(stream)
        seed = _random.resolve_seed(seed)
        thetas, noises, histories = [], [], []
        for m in range(self.n_models):
            theta, info = train_map(self.mlp, X, y, self.likelihood, epochs=epochs, batch_size=self.batch_size,
                                    lr=self.lr, weight_decay=self.weight_decay, noise=self.noise,
                                    learn_noise=self.learn_noise, validation=self.validation,
                                    patience=self.patience, seed=seed, stream=_random.fold_in(stream, m),
                                    dtype=self.dtype, verbose=verbose, return_info=True)
            thetas.append(theta)
            noises.append(info["noise"])
            histories.append(info.get("history"))
        self.thetas_ = np.ascontiguousarray(np.stack(thetas))
        if self.likelihood == "gaussian":
            self.log_noise_ = np.log(np.stack([np.asarray(s, dtype=np.float64) for s in noises]))
        self.history_ = histories
        self.seed_ = seed
        return self

    def _require_fit(self):
        if self.thetas_ is None:
            raise RuntimeError("call fit() (or load()) first")

    def sample_params(self, n_samples, seed=0, stream=0):
        """(n_samples, P): the members in order, cycled."""
        self._require_fit()
        n = C.integer(n_samples, "n_samples", 1)
        return self.thetas_[np.arange(n) % self.n_models]

    def predict(self, X, n_samples=None, seed=0, stream=0):
        """The mixture predictive (``Predictive``) of the members (all of them by default)."""
        self._require_fit()
        M = self.n_models if n_samples is None else min(C.integer(n_samples, "n_samples", 1), self.n_models)
        F = self.mlp.forward(self.thetas_[:M], X)
        noise = 1.0
        if self.likelihood == "gaussian":
            # one noise per output shared by the mixture: the members' root-mean-square sigma
            noise = np.sqrt(np.mean(np.exp(2 * self.log_noise_[:M].astype(np.float64)), axis=0))
        return Predictive.from_outputs(F, self.likelihood, noise)

    def save(self, path):
        """Write the members' parameters and the settings (.npz + JSON, no pickle)."""
        self._require_fit()
        meta = {"kind": "DeepEnsemble", "mlp": self.mlp.to_dict(), "likelihood": self.likelihood,
                "n_models": self.n_models, "weight_decay": self.weight_decay,
                "noise": np.asarray(self.noise, dtype=np.float64).tolist(), "learn_noise": self.learn_noise,
                "lr": self.lr, "batch_size": self.batch_size, "validation": self.validation,
                "patience": self.patience}
        arrays = {"thetas": self.thetas_}
        if self.log_noise_ is not None:
            arrays["log_noise"] = self.log_noise_
        _tr.save_npz(path, meta, arrays)

    @classmethod
    def load(cls, path):
        """Read a model written by ``save``; ValueError for a malformed or foreign file."""
        meta, arrays = _tr.load_npz(path, "DeepEnsemble", ["thetas"])
        try:
            mlp = MLP(**meta["mlp"])
            obj = cls(mlp, meta["likelihood"], n_models=meta["n_models"], weight_decay=meta["weight_decay"],
                      noise=meta["noise"], learn_noise=meta["learn_noise"], lr=meta["lr"],
                      batch_size=meta["batch_size"], validation=meta["validation"], patience=meta["patience"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{path!r}: malformed DeepEnsemble metadata ({exc})") from exc
        t = arrays["thetas"]
        if t.shape != (obj.n_models, mlp.n_params):
            raise ValueError(f"{path!r}: thetas has shape {t.shape}, expected ({obj.n_models}, {mlp.n_params})")
        obj.thetas_ = np.ascontiguousarray(t)
        if obj.likelihood == "gaussian":
            ln = arrays.get("log_noise")
            if ln is None or ln.shape[0] != obj.n_models:
                raise ValueError(f"{path!r}: log_noise missing or of the wrong shape")
            obj.log_noise_ = ln
        return obj
