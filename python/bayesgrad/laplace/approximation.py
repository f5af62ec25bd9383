"""The :class:`Laplace` object: a Laplace approximation ``N(θ*, P⁻¹)`` of a
model's posterior in one of the structures, its marginal likelihood and prior
optimisation, sampling, the GLM / MC predictives and save/load.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import scipy.optimize as sopt

from .. import _checks as C
from .. import _training as _tr
from .. import nn as _nn
from .. import random as _random
from . import predictive as _pred
from ._posterior import ParamLayout, StateReader
from .curvature import Curvature, LinearHead, _as_model, _LastLayerNet, _MLPNet, _SubnetNet
from .diag import DiagPosterior
from .full import FullPosterior
from .kron import KronPosterior
from .lowrank import LowRankPosterior
from .predictive import LINKS

__all__ = ["Laplace", "STRUCTURES", "POSTERIORS", "largest_variance_subnetwork"]

#: The registry of posterior structures, the one place that lists them:
#: ``Laplace(structure=key)`` fits and factorises a ``POSTERIORS[key]``.
POSTERIORS = {cls.key: cls for cls in (DiagPosterior, KronPosterior, FullPosterior, LowRankPosterior)}
STRUCTURES = tuple(POSTERIORS)


def largest_variance_subnetwork(la, n_params):
    """Indices (n_params,) of the parameters with the largest marginal posterior variances of
    a fitted Laplace ``la`` (normally diagonal, over the whole network), sorted: the
    subnetwork laplace-torch's LargestVarianceDiagLaplaceSubnetMask picks. Pass them as
    ``Laplace(mlp, theta, subset=indices, structure="full")``."""
    n = C.integer(n_params, "n_params", 1)
    if n > la.n_params:
        raise ValueError(f"n_params must be <= {la.n_params}, got {n}")
    v = la._posterior().diag_inv()
    return np.sort(np.argsort(-v, kind="stable")[:n])


# --------------------------------------------------------------------------- Laplace
class Laplace:
    """Laplace approximation ``N(θ*, P⁻¹)`` of a model's posterior.

    Parameters
    ----------
    model : LinearHead or bg.nn.MLP
    theta : (P,) float, the MAP parameters (None: the model's own, LinearHead only)
    likelihood : {"gaussian", "categorical", "bernoulli"} ("regression", "classification" aliases)
    structure : {"diag", "kron", "full", "lowrank"}
    subset : {"all", "last_layer"}, or a subnetwork of a bg.nn.MLP: a boolean mask (P,) or
        integer indices (k,) of the flat parameters (structure "diag" or "full"; the other
        weights stay at theta); see :func:`largest_variance_subnetwork`
    hessian : {"ggn", "ef", "fisher_mc"}
    prior_precision : float > 0, or (n_tensors,) one per weight and bias tensor, or (P,) per parameter
        (per parameter for diag / full / lowrank only).
    sigma_noise : float > 0 (gaussian only; 1 otherwise)
    temperature : float > 0
    prior_mean : float or (P,)
    n_mc_samples : int, labels sampled per point for ``hessian="fisher_mc"``
    rank : int, rank of ``lowrank`` (default min(P, 50))
    chunk_size : int, rows processed at once
    seed, stream : Philox seed and stream of the sampled Fisher
    lowrank_solver : {"auto", "dense", "eigsh"}
        How ``lowrank`` finds the top ``rank`` eigenpairs: ``dense`` builds the
        (P, P) curvature and calls eigh; ``eigsh`` runs ARPACK (scipy.sparse.linalg.eigsh)
        on matrix-free curvature-vector products (one data pass per product, memory
        O(P · rank)); ``auto`` picks eigsh when P > 2000 and rank < P.
    """

    def __init__(self, model, theta=None, likelihood="categorical", structure="diag", subset="all", hessian="ggn",
                 prior_precision=1.0, sigma_noise=1.0, temperature=1.0, prior_mean=0.0, n_mc_samples=1,
                 rank=None, chunk_size=256, seed=0, stream=0, lowrank_solver="auto"):
        self.structure = C.option(structure, "structure", STRUCTURES)
        self._posterior_cls = POSTERIORS[self.structure]
        self.lowrank_solver = C.option(lowrank_solver, "lowrank_solver", ("auto", "dense", "eigsh"))
        if isinstance(subset, str):
            self.subset = C.option(subset, "subset", ("all", "last_layer"))
        else:
            # a subnetwork (mask or indices): no layers of its own, so diag or full only
            self.subset = "subnetwork"
            if self.structure not in ("diag", "full"):
                raise ValueError(f"a subnetwork subset takes structure 'diag' or 'full', got {self.structure!r}")
            if not isinstance(model, (_nn.MLP, _MLPNet)):
                raise TypeError("a subnetwork subset needs a bayesgrad.nn.MLP (or a Laplace's .model)")
        model, theta = self._subset_model(model, theta) if isinstance(subset, str) else _as_model(model, theta, subset)
        self.subnet_indices = getattr(model, "indices", None)
        self.curv = Curvature(model, theta, likelihood, hessian, n_mc_samples, chunk_size, seed, stream)
        self.model, self.mean = self.curv.model, self.curv.theta
        self.likelihood, self.hessian, self.dtype = self.curv.likelihood, self.curv.hessian, self.curv.dtype
        self.n_params = self.model.n_params
        self.n_outputs = self.model.n_outputs
        self._layout = ParamLayout(self.model.layer_shapes, self.dtype, getattr(self.model, "tensor_sizes", None))
        t = C.real(temperature, "temperature")
        if not (np.isfinite(t) and t > 0):
            raise ValueError(f"temperature must be positive and finite, got {temperature!r}")
        self.temperature = t
        self.prior_mean = self._check_prior_mean(prior_mean)
        self.prior_precision = prior_precision
        self.sigma_noise = sigma_noise
        if rank is None:
            rank = min(self.n_params, 50)
        self.rank = C.integer(rank, "rank", 1)
        if self.rank > self.n_params:
            raise ValueError(f"rank must be <= the number of parameters {self.n_params}, got {self.rank}")
        # the fitted curvature in the chosen structure; _posterior() factorises it at a prior
        self._post = self._posterior_cls(self._layout, self.rank, self.lowrank_solver)
        self._fitted = False

    @classmethod
    def from_features(cls, weight, bias=None, likelihood="categorical", **kwargs):
        """Last-layer Laplace on user-supplied features: a :class:`LinearHead` (weight (C, F),
        bias (C,)) at its MAP; ``fit`` and ``predict`` then take features (N, F)."""
        return cls(LinearHead(weight, bias), None, likelihood, **kwargs)

    def _subset_model(self, model, theta):
        if self.subset == "last_layer" and isinstance(model, LinearHead):
            return model, theta   # a linear head is its own last layer
        return _as_model(model, theta, self.subset)

    # ---- hyper-parameters
    def _check_prior_mean(self, pm):
        pm = C.as_array(pm, "prior_mean", self.dtype)
        if pm.size == 1 and np.ndim(pm) <= 1 and self.n_params != 1:
            return np.full(self.n_params, float(pm.reshape(-1)[0]), self.dtype)
        if pm.shape != (self.n_params,):
            raise ValueError(f"prior_mean must be a scalar or have shape ({self.n_params},), got {pm.shape}")
        return pm

    @property
    def prior_precision(self):
        return self._prior_precision

    @prior_precision.setter
    def prior_precision(self, value):
        self._prior_precision = self._check_prior_precision(value)

    def _check_prior_precision(self, value):
        p = C.as_array(value, "prior_precision", np.float64)
        if p.ndim == 0:
            p = p.reshape(1)
        if p.ndim != 1:
            raise ValueError(f"prior_precision must be a scalar or 1-D, got shape {p.shape}")
        C.positive(p, "prior_precision")
        ng = self._layout.n_tensors
        if len(p) not in (1, ng, self.n_params):
            raise ValueError(f"prior_precision must have length 1, {ng} (one per weight and bias tensor) "
                             f"or {self.n_params} (one per parameter), got {len(p)}")
        why = self._posterior_cls.per_parameter_prior_error
        if why and len(p) == self.n_params and len(p) not in (1, ng):
            raise ValueError(f"a per-parameter prior_precision is not available for structure={self.structure!r}: "
                             f"{why}; use a scalar or one value per weight/bias tensor")
        return p

    @property
    def sigma_noise(self):
        return self._sigma_noise

    @sigma_noise.setter
    def sigma_noise(self, value):
        s = C.as_array(value, "sigma_noise", np.float64)
        if s.size != 1:
            raise ValueError(f"sigma_noise must be a scalar, got shape {s.shape}")
        s = float(s.reshape(()))
        if not (math.isfinite(s) and s > 0):
            raise ValueError(f"sigma_noise must be positive and finite, got {s}")
        with np.errstate(over="ignore", under="ignore", divide="ignore"):
            factor = 1.0 / (np.float64(s) * s * self.temperature)  # the likelihood's curvature factor
        if not (math.isfinite(factor) and factor > 0):
            raise ValueError(f"sigma_noise = {s:g} is out of range: 1 / (sigma_noise^2 temperature) = {factor:g} "
                             "is not a finite positive float64")
        if self.likelihood != "gaussian" and s != 1.0:
            raise ValueError("sigma_noise can only be set for the gaussian likelihood")
        self._sigma_noise = s

    def _hfactor(self, sigma=None):
        s = self._sigma_noise if sigma is None else sigma
        return 1.0 / (s * s * self.temperature)

    # ---- fit
    def fit(self, X, y, sample_weight=None):
        """Accumulate the curvature over (X, y) at θ*. X (N, D) inputs (features for a LinearHead);
        y (N, C) or (N,) targets (gaussian), (N,) integer labels otherwise. ``sample_weight``
        (N,), default None: finite non-negative weights of the rows' likelihood terms -- the
        curvature, the loss and the data count ``n_data = Σw`` of the marginal likelihood are
        those of the data set with row n repeated w_n times. Returns self."""
        X, y = self.curv.check_data(X, y)
        w = _nn.sample_weights(sample_weight, X.shape[0], np.float64)
        self.n_data = X.shape[0] if w is None else float(np.sum(w))
        self.curv.weights = w
        try:
            self.loss = self._post.fit(self.curv, X, y)
        finally:
            self.curv.weights = None
        self._post_cache = None
        self._fitted = True
        return self

    @property
    def H(self):
        """The fitted curvature in the structure's own form: diag (P,), kron [(A (I, I), B (O, O))]
        per linear layer, full (P, P), lowrank the dense (P, P) it was taken from (None with eigsh)."""
        return self._post.H

    def _check_fitted(self):
        if not self._fitted:
            raise RuntimeError("Laplace is not fitted: call fit(X, y) first")

    def _posterior(self, p=None, sigma=None):
        """The posterior factorised at prior precision p and noise σ (default: the current ones).
        The last factorisation is kept: repeated predictions at the same prior (the common
        case) do not refactorise a (P, P) precision each time."""
        self._check_fitted()
        p = self._prior_precision if p is None else p
        f = self._hfactor(sigma)
        key = (np.asarray(p, np.float64).tobytes(), f)
        cached = self.__dict__.get("_post_cache")
        if cached is not None and cached[0] == key and cached[1] is self._post:
            return cached[2]
        post = self._post.with_prior(p, f)
        self._post_cache = (key, self._post, post)
        return post

    @property
    def posterior_precision(self):
        """The posterior precision as a dense (P, P) array (for inspection and tests)."""
        return self._posterior().matrix()

    @property
    def posterior_covariance(self):
        """Dense (P, P) posterior covariance (a copy)."""
        return np.array(self._posterior().covariance())

    # ---- marginal likelihood
    def log_likelihood(self, sigma_noise=None):
        """log p(D | θ*) (nats) from the training loss, in laplace-torch's convention."""
        self._check_fitted()
        f = self._hfactor(sigma_noise)
        if self.likelihood == "gaussian":
            s = self._sigma_noise if sigma_noise is None else sigma_noise
            return -f * self.loss - self.n_data * self.n_outputs * math.log(s * math.sqrt(2 * math.pi))
        return -self.loss / self.temperature

    def log_marginal_likelihood(self, prior_precision=None, sigma_noise=None):
        """Laplace evidence log p(D) (nats). Passing values sets them first (as laplace-torch does)."""
        if prior_precision is not None:
            self.prior_precision = prior_precision
        if sigma_noise is not None:
            self.sigma_noise = sigma_noise
        return self._lml(self._prior_precision, self._sigma_noise)[0]

    def _lml(self, p, sigma, grad=False):
        """log p(D) at prior precision p (1 | n_tensors | P,) and σ; with ``grad`` also its
        gradient w.r.t. p (same shape) and w.r.t. log σ (0 unless gaussian), else None, None."""
        post = self._posterior(p, sigma)
        delta = (self.mean - self.prior_mean).astype(np.float64)
        prior_part, g_p0, g_logsigma = post.evidence_terms(delta, grad)
        lml = self.log_likelihood(sigma) + prior_part
        if not grad:
            return lml, None, None
        gp = self._layout.reduce(g_p0, len(p))
        gs = 0.0
        if self.likelihood == "gaussian":
            f = self._hfactor(sigma)
            gs = 2 * f * self.loss - self.n_data * self.n_outputs + g_logsigma
        return lml, gp, gs

    def optimize_prior_precision(self, method="marglik", prior_structure=None, optimize_sigma=False, val=None,
                                 grid=None, link="probit", n_samples=100, max_iter=200, n_folds=5):
        """Choose the prior precision (and σ for gaussian if ``optimize_sigma``).

        method="marglik" maximises the Laplace evidence by L-BFGS on log p0 (and log σ) with
        exact gradients; method="gridsearch" picks the scalar p0 in ``grid`` (default
        logspace(-4, 4, 21)) minimising the NLL of ``predict(val[0])`` on ``val = (X_val, y_val)``;
        method="cv" picks it by ``n_folds``-fold cross-validation on ``val = (X, y)`` (normally
        the training data): per fold the curvature is refitted on the other folds at the same
        θ* and the held-out NLLs are summed (folds: row i in fold i mod n_folds).
        prior_structure: "scalar", "layerwise" (one per weight/bias tensor) or "diag"
        (per parameter; not for kron); default keeps the current shape. Returns self.
        """
        self._check_fitted()
        method = C.option(method, "method", ("marglik", "gridsearch", "cv"))
        max_iter = C.integer(max_iter, "max_iter", 1)
        ng = self._layout.n_tensors
        n_cur = len(self._prior_precision)
        if prior_structure is None:
            n = n_cur
        else:
            ps = C.option(prior_structure, "prior_structure", ("scalar", "layerwise", "diag"))
            n = {"scalar": 1, "layerwise": ng, "diag": self.n_params}[ps]
            why = self._posterior_cls.per_parameter_prior_error
            if ps == "diag" and why:
                raise ValueError(f"prior_structure='diag' is not available for structure={self.structure!r}: {why}")
        if optimize_sigma and self.likelihood != "gaussian":
            raise ValueError("optimize_sigma is only for the gaussian likelihood")
        if method == "gridsearch":
            return self._gridsearch(val, grid, link, n_samples)
        if method == "cv":
            return self._cv(val, grid, link, n_samples, n_folds)
        p_init = np.resize(self._prior_precision, n) if n_cur in (1, n) else np.full(n, self._prior_precision.mean())
        x0 = np.log(p_init)
        if optimize_sigma:
            x0 = np.append(x0, math.log(self._sigma_noise))

        good = {}

        def obj(x):
            p = np.exp(x[:n])
            s = math.exp(x[n]) if optimize_sigma else self._sigma_noise
            try:
                lml, gp, gs = self._lml(p, s, grad=True)
            except ValueError:
                # A prior so weak that P is numerically singular: L-BFGS-B gives up on inf, so
                # answer with a finite value above the last good point that slopes back to it,
                # which makes the line search shorten the step.
                if not good:
                    raise
                d = x - good["x"]
                return good["f"] + 1e3 * (1.0 + float(d @ d)), 2e3 * d
            g = -gp * p
            if optimize_sigma:
                g = np.append(g, -gs)
            good["x"], good["f"] = x.copy(), -lml
            return -lml, g

        res = sopt.minimize(obj, x0, jac=True, method="L-BFGS-B", bounds=[(-30, 30)] * len(x0),
                            options={"maxiter": max_iter})
        self.prior_precision = np.exp(res.x[:n])
        if optimize_sigma:
            self.sigma_noise = math.exp(res.x[n])
        return self

    def _gridsearch(self, val, grid, link, n_samples):
        if val is None or len(val) != 2:
            raise ValueError("method='gridsearch' needs val=(X_val, y_val)")
        Xv, yv = self.curv.check_data(*val)
        grid = self._grid(grid)
        link, _, n_samples = self._predict_options(link, "glm", n_samples if link == "mc" else None)
        best, best_p = np.inf, None
        for p in grid:
            self.prior_precision = p
            nll = self._nll(self._predict(Xv, link, "glm", n_samples, 0, 0), yv)
            if nll < best:
                best, best_p = nll, p
        self.prior_precision = best_p
        return self

    def _grid(self, grid):
        if grid is None:
            return np.logspace(-4, 4, 21)
        return C.positive(C.as_array(grid, "grid", np.float64, ndim=1), "grid")

    def _cv(self, data, grid, link, n_samples, n_folds):
        if data is None or len(data) != 2:
            raise ValueError("method='cv' needs val=(X, y), the rows to cross-validate on")
        X, y = self.curv.check_data(*data)
        K = C.integer(n_folds, "n_folds", 2)
        if K > X.shape[0]:
            raise ValueError(f"n_folds must be <= the number of rows {X.shape[0]}, got {K}")
        grid = self._grid(grid)
        link, _, n_samples = self._predict_options(link, "glm", n_samples if link == "mc" else None)
        fold = np.arange(X.shape[0]) % K
        nll = np.zeros(len(grid))
        for j in range(K):
            # the same approximation (θ*, settings) with its curvature refitted without fold j
            la = copy.copy(self)
            la._post = self._posterior_cls(self._layout, self.rank, self.lowrank_solver)
            la.fit(X[fold != j], y[fold != j])
            for i, p in enumerate(grid):
                la.prior_precision = p
                nll[i] += la._nll(la._predict(X[fold == j], link, "glm", n_samples, 0, 0), y[fold == j])
        self.prior_precision = grid[int(np.argmin(nll))]
        self.cv_nll_ = nll
        return self

    def _nll(self, pred, y):
        return float(-np.sum(pred.log_likelihood(y)))

    # ---- sampling and prediction
    def sample(self, n_samples=100, seed=0, stream=0):
        """Parameter samples (n_samples, P) from N(θ*, P⁻¹) (Philox normals)."""
        n = C.integer(n_samples, "n_samples", 1)
        # the (S, P) float64 normals and the result: checked before anything is drawn
        C.check_allocation(2 * 8 * n * self.n_params, f"n_samples={n}: the ({n}, {self.n_params}) parameter samples")
        post = self._posterior()
        z = _random.normal((n, self.n_params), seed, _random.fold_in(C.integer(stream, "stream", 0), "laplace/sample"),
                           np.float64)
        return (self.mean.astype(np.float64) + post.inv_sqrt_apply(z)).astype(self.dtype)

    def functional_variance(self, X):
        """GLM output mean f (N, C) and covariance f_var (N, C, C) = J P⁻¹ Jᵀ at inputs X (N, D), chunked."""
        post = self._posterior()
        X, _ = self.curv.check_data(X)
        return _pred.functional_variance(self.curv, post, X)

    def predict(self, X, link="probit", pred_type="glm", n_samples=None, seed=0, stream=0):
        """Posterior predictive at inputs X (N, D).

        pred_type="glm": linearised model, f ~ N(f(θ*), J P⁻¹ Jᵀ); classification via the
        probit approximation, Monte Carlo ("mc", n_samples, default 100) or the Laplace
        bridge ("bridge", "bridge_norm" with laplace-torch's variance normalisation;
        categorical only). With n_samples, sampled log-probabilities (S, N, C) (or
        sampled means for gaussian) are returned too. pred_type="nn": θ sampled from the
        posterior, the network run per sample (n_samples, default 100).

        Returns a ``bg.nn.Predictive``: classification ``probs`` (N, C),
        ``log_probs`` (S, N, C) when sampled; gaussian ``mean``, ``var`` = ``aleatoric_var``
        (σ²) + ``epistemic_var`` (N, C), ``samples_mean`` (S, N, C) when sampled.

        One distribution: the GLM samples are draws of f ~ N(f(θ*), J P⁻¹ Jᵀ) through the
        link, and when they are drawn ``probs`` is their mean (so ``probs``, ``log_probs``
        and their uncertainty decomposition describe the same predictive); the closed-form
        link's probabilities (probit / bridge) are then ``link_probs`` (N, C). Without
        samples ``probs`` is the link's.
        """
        link, pred_type, n_samples = self._predict_options(link, pred_type, n_samples)
        # the one check of X on its way down: everything below takes it as checked
        X, _ = self.curv.check_data(X)
        C.check_allocation(24 * (n_samples or 0) * (X.shape[0] * self.n_outputs + (pred_type == "nn") * self.n_params), f"n_samples={n_samples}")  # noqa: E501 (~3 float64 (S, N, C) / (S, P) arrays)
        return self._predict(X, link, pred_type, n_samples, seed, C.integer(stream, "stream", 0))

    def _predict_options(self, link, pred_type, n_samples):
        link = C.option(link, "link", LINKS)
        pred_type = C.option(pred_type, "pred_type", ("glm", "nn"))
        if n_samples is not None:
            n_samples = C.integer(n_samples, "n_samples", 1)
        elif link == "mc" or pred_type == "nn":
            n_samples = 100
        if link in ("bridge", "bridge_norm") and self.likelihood != "categorical":
            raise ValueError(f"link={link!r} (Laplace bridge to a Dirichlet) is for the categorical likelihood")
        return link, pred_type, n_samples

    def _predict(self, X, link, pred_type, n_samples, seed, stream):
        """``predict`` at checked X (N, D) with checked options."""
        stream = _random.fold_in(stream, "laplace/predict")
        if pred_type == "nn":
            thetas = self.sample(n_samples, seed, stream)
            out = _pred.nn_sampling(self.likelihood, self.model, thetas, X, self._sigma_noise)
        else:
            fmu, fvar = _pred.functional_variance(self.curv, self._posterior(), X)
            out = _pred.glm(self.likelihood, fmu, fvar, link, n_samples, seed, stream, self._sigma_noise)
        link_probs = out.pop("link_probs", None)
        pred = _nn.Predictive(self.likelihood, **out)
        if link_probs is not None:
            pred.link_probs = link_probs
        return pred

    # ---- persistence
    def _model_arrays(self):
        if isinstance(self.model, _SubnetNet):
            return "mlp", self.model.mlp, {"theta": self.model.theta_full, "subnet_indices": self.model.indices}
        if isinstance(self.model, _LastLayerNet):
            return "mlp", self.model.mlp, {"theta": self.model.theta_full}
        if isinstance(self.model, _MLPNet):
            return "mlp", self.model.mlp, {"theta": self.mean}
        return "linear_head", None, {"weight": self.model.weight, "bias": self.model.bias}

    def save(self, path):
        """Write the approximation to ``path`` (.npz with JSON metadata, no pickle): the
        model and θ*, the settings, the prior, and (when fitted) the curvature."""
        kind, mlp, arrays = self._model_arrays()
        meta = {"kind": "Laplace", "model": kind, "mlp": None if mlp is None else mlp.to_dict(),
                "likelihood": self.likelihood, "structure": self.structure, "subset": self.subset,
                "hessian": self.hessian, "temperature": self.temperature, "sigma_noise": self._sigma_noise,
                "n_mc_samples": self.curv.n_mc_samples, "rank": self.rank, "chunk_size": self.curv.chunk_size,
                "seed": str(self.curv.seed), "stream": self.curv.stream, "lowrank_solver": self.lowrank_solver,
                "fitted": self._fitted}
        arrays = dict(arrays, prior_mean=self.prior_mean, prior_precision=self._prior_precision)
        if self._fitted:
            # n_data is Σ sample_weight (a float) after a weighted fit
            nd = self.n_data
            meta["n_data"], meta["loss"] = (int(nd) if float(nd).is_integer() else float(nd)), float(self.loss)
            arrays.update(self._post.state())
        _tr.save_npz(path, meta, arrays)

    @classmethod
    def load(cls, path):
        """Read an approximation written by ``save``; ValueError for a malformed or foreign file."""
        meta, arrays = _tr.load_npz(path, "Laplace", ["prior_mean", "prior_precision"])
        read = StateReader(arrays, path)
        try:
            kind = meta["model"]
            if kind == "mlp":
                model, theta = _nn.MLP(**meta["mlp"]), read("theta")
            elif kind == "linear_head":
                model, theta = LinearHead(read("weight"), read("bias")), None
            else:
                raise ValueError(f"unknown model kind {kind!r}")
            seed = int(meta["seed"])
            subset = meta["subset"]
            if subset == "subnetwork":
                subset = arrays.get("subnet_indices")
                if subset is None or subset.ndim != 1 or subset.dtype.kind not in "iu":
                    raise read.error("array 'subnet_indices' missing or not 1-D integers")
            la = cls(model, theta, meta["likelihood"], structure=meta["structure"], subset=subset,
                     hessian=meta["hessian"], prior_precision=arrays["prior_precision"],
                     sigma_noise=meta["sigma_noise"], temperature=meta["temperature"],
                     prior_mean=arrays["prior_mean"], n_mc_samples=meta["n_mc_samples"], rank=meta["rank"],
                     chunk_size=meta["chunk_size"], seed=seed, stream=meta["stream"],
                     lowrank_solver=meta["lowrank_solver"])
            if not isinstance(meta["fitted"], bool):  # malformed metadata is a ValueError (issue 13 item 5)
                raise ValueError(f"{path!r}: fitted must be true or false, got {meta['fitted']!r}")
            if meta["fitted"]:
                la._restore_fit(meta, read)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path!r}: malformed Laplace metadata ({type(exc).__name__}: {exc})") from exc
        return la

    def _restore_fit(self, meta, read):
        n_data, loss = meta["n_data"], meta["loss"]
        if not (isinstance(n_data, (int, float)) and not isinstance(n_data, bool) and math.isfinite(n_data)
                and n_data >= 0 and isinstance(loss, (int, float)) and math.isfinite(loss)):
            raise read.error("malformed n_data / loss")
        self._post.load_state(read)
        self._post_cache = None
        self.n_data, self.loss, self._fitted = n_data, float(loss), True
