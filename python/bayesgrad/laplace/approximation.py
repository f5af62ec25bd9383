"""The :class:`Laplace` object: a Laplace approximation ``N(θ*, P⁻¹)`` of a
model's posterior in one of the structures, its marginal likelihood and prior
optimisation, sampling, the GLM / MC predictives and save/load.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.linalg as sla
import scipy.optimize as sopt

from .. import _checks as C
from .. import _training as _tr
from .. import nn as _nn
from .. import random as _random
from ._tags import TAG_PRED, TAG_SAMPLE
from .curvature import Curvature, LinearHead, _as_model, _groups, _LastLayerNet, _MLPNet

__all__ = ["Laplace", "STRUCTURES", "LINKS"]

STRUCTURES = ("diag", "kron", "full", "lowrank")
LINKS = ("probit", "mc", "bridge")
_DENSE_LOWRANK_MAX_P = 2000


# --------------------------------------------------------------------------- posteriors
class _DiagPost:
    """P = diag(h f + p0)."""

    def __init__(self, h, f, p0):
        self.d = h * f + p0

    def logdet(self):
        return float(np.sum(np.log(self.d)))

    def inv_apply(self, V):
        return V / self.d

    def diag_inv(self):
        return 1.0 / self.d

    def inv_sqrt_apply(self, Z):
        return Z / np.sqrt(self.d)

    def covariance(self):
        return np.diag(1.0 / self.d)

    def matrix(self):
        return np.diag(self.d)


class _FullPost:
    """P = H f + diag(p0), by Cholesky."""

    def __init__(self, H, f, p0):
        Pm = H * f
        Pm[np.diag_indices_from(Pm)] += p0
        try:
            self.L = np.linalg.cholesky(Pm.astype(np.float64))
        except np.linalg.LinAlgError as exc:
            raise ValueError("posterior precision is not positive definite; increase prior_precision") from exc
        self.Pm = Pm

    def logdet(self):
        return float(2 * np.sum(np.log(np.diag(self.L))))

    def inv_apply(self, V):
        return sla.cho_solve((self.L, True), V.T.astype(np.float64)).T.astype(V.dtype)

    def diag_inv(self):
        Li = sla.solve_triangular(self.L, np.eye(self.L.shape[0]), lower=True)
        return np.sum(Li * Li, axis=0)

    def covariance(self):
        # LAPACK potri on the Cholesky factor: P⁻¹ in (2/3) P³ flops
        inv, info = sla.lapack.dpotri(self.L, lower=1)
        if info != 0:
            raise ValueError("posterior precision is not positive definite; increase prior_precision")
        return np.tril(inv) + np.tril(inv, -1).T

    def inv_sqrt_apply(self, Z):
        # x = L^{-T} z has covariance (L L^T)^{-1} = P^{-1}
        return sla.solve_triangular(self.L, Z.T.astype(np.float64), lower=True, trans="T").T.astype(Z.dtype)

    def matrix(self):
        return self.Pm


class _Post:
    def covariance(self):
        return self.inv_apply(np.eye(self.n))


class _KronPost(_Post):
    """Block diagonal over parameter tensors; W block (Q_B ⊗ Q_A) diag(λ_B λ_Aᵀ f + δ) (Q_B ⊗ Q_A)ᵀ,
    bias block Q_B diag(λ_B f + δ) Q_Bᵀ. ``delta`` holds one prior precision per tensor."""

    def __init__(self, eig, f, delta):
        self.blocks = []   # (offset, kind, data)
        off = 0
        for li, ((lA, QA), (lB, QB)) in enumerate(eig):
            e = np.outer(lB, lA) * f + delta[2 * li]
            self.blocks.append((off, (QB, QA, e)))
            off += e.size
            eb = lB * f + delta[2 * li + 1]
            self.blocks.append((off, (QB, None, eb)))
            off += eb.size
        self.n = off
        if any(np.any(b[1][2] <= 0) for b in self.blocks):
            raise ValueError("posterior precision is not positive definite; increase prior_precision")

    def logdet(self):
        return float(sum(np.sum(np.log(b[2])) for _, b in self.blocks))

    def _apply(self, V, power):
        out = np.empty_like(V)
        m = V.shape[0]
        for off, (QB, QA, e) in self.blocks:
            sl = slice(off, off + e.size)
            ep = e ** power
            if QA is None:
                out[:, sl] = ((V[:, sl] @ QB) * ep) @ QB.T
            else:
                O, I = e.shape
                W = V[:, sl].reshape(m, O, I)
                # Two batched GEMMs per side (BLAS) instead of an unoptimised three-operand einsum.
                T = (QB.T @ W @ QA) * ep
                out[:, sl] = (QB @ T @ QA.T).reshape(m, -1)
        return out

    def inv_apply(self, V):
        return self._apply(V, -1.0)

    def inv_sqrt_apply(self, Z):
        return self._apply(Z, -0.5)

    def diag_inv(self):
        out = []
        for _, (QB, QA, e) in self.blocks:
            if QA is None:
                out.append((QB * QB) @ (1.0 / e))
            else:
                out.append(((QB * QB) @ (1.0 / e) @ (QA * QA).T).ravel())
        return np.concatenate(out)

    def matrix(self):
        mats = []
        for _, (QB, QA, e) in self.blocks:
            Q = QB if QA is None else np.kron(QB, QA)
            mats.append((Q * e.ravel()) @ Q.T)
        return sla.block_diag(*mats)


class _LowRankPost(_Post):
    """P = U diag(l f) Uᵀ + D (D = diag(p0)); Woodbury and the determinant lemma."""

    def __init__(self, U, lam, f, p0):
        self.D, self.n = p0, len(p0)
        # M = D^{-1/2} U (l f)^{1/2}: P = D^{1/2} (I + M Mᵀ) D^{1/2}
        M = (U / np.sqrt(p0)[:, None]) * np.sqrt(np.maximum(lam, 0) * f)
        self.Um, s, _ = np.linalg.svd(M, full_matrices=False)
        self.s2 = s * s

    def logdet(self):
        return float(np.sum(np.log(self.D)) + np.sum(np.log1p(self.s2)))

    def inv_apply(self, V):
        # P⁻¹ = D^{-1/2} (I + Um ((1 + s²)⁻¹ − 1) Umᵀ) D^{-1/2}
        dm = 1 / np.sqrt(self.D)
        X = V * dm
        X = X + ((X @ self.Um) * (1 / (1 + self.s2) - 1)) @ self.Um.T
        return X * dm

    def inv_sqrt_apply(self, Z):
        dm = 1 / np.sqrt(self.D)
        X = Z + ((Z @ self.Um) * ((1 + self.s2) ** -0.5 - 1)) @ self.Um.T
        return X * dm

    def diag_inv(self):
        c = (1 + self.s2) ** -1.0 - 1
        return (1 + np.sum(self.Um * self.Um * c, axis=1)) / self.D

    def matrix(self):
        Dh = np.sqrt(self.D)
        A = np.eye(len(self.D)) + (self.Um * self.s2) @ self.Um.T
        return Dh[:, None] * A * Dh[None, :]


# --------------------------------------------------------------------------- Laplace
class Laplace:
    """Laplace approximation ``N(θ*, P⁻¹)`` of a model's posterior.

    Parameters
    ----------
    model : LinearHead or bg.nn.MLP
    theta : (P,) float, the MAP parameters (None: the model's own, LinearHead only)
    likelihood : {"gaussian", "categorical", "bernoulli"} ("regression", "classification" aliases)
    structure : {"diag", "kron", "full", "lowrank"}
    subset : {"all", "last_layer"}
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
        self.lowrank_solver = C.option(lowrank_solver, "lowrank_solver", ("auto", "dense", "eigsh"))
        self.subset = C.option(subset, "subset", ("all", "last_layer"))
        model, theta = self._subset_model(model, theta)
        self.curv = Curvature(model, theta, likelihood, hessian, n_mc_samples, chunk_size, seed, stream)
        self.model, self.mean = self.curv.model, self.curv.theta
        self.likelihood, self.hessian, self.dtype = self.curv.likelihood, self.curv.hessian, self.curv.dtype
        self.n_params = self.model.n_params
        self.n_outputs = self.model.n_outputs
        self._group_sizes = _groups(self.model)
        t = float(temperature)
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
        if np.ndim(value) == 0:
            p = p.reshape(1)
        if p.ndim != 1:
            raise ValueError(f"prior_precision must be a scalar or 1-D, got shape {p.shape}")
        C.positive(p, "prior_precision")
        ng = len(self._group_sizes)
        if len(p) not in (1, ng, self.n_params):
            raise ValueError(f"prior_precision must have length 1, {ng} (one per weight and bias tensor) "
                             f"or {self.n_params} (one per parameter), got {len(p)}")
        if self.structure == "kron" and len(p) == self.n_params and len(p) not in (1, ng):
            raise ValueError("a per-parameter prior_precision is not available for structure='kron': the Kronecker "
                             "eigenbasis cannot represent an arbitrary diagonal; use a scalar or one value per "
                             "weight/bias tensor")
        return p

    @property
    def sigma_noise(self):
        return self._sigma_noise

    @sigma_noise.setter
    def sigma_noise(self, value):
        s = C.as_array(value, "sigma_noise", np.float64)
        if s.size != 1:
            raise ValueError(f"sigma_noise must be a scalar, got shape {np.shape(value)}")
        s = float(s.reshape(()))
        if s <= 0:
            raise ValueError(f"sigma_noise must be positive, got {s}")
        if self.likelihood != "gaussian" and s != 1.0:
            raise ValueError("sigma_noise can only be set for the gaussian likelihood")
        self._sigma_noise = s

    def _p0_diag(self, p=None):
        p = self._prior_precision if p is None else p
        if len(p) == 1:
            return np.full(self.n_params, p[0])
        if len(p) == self.n_params and len(p) != len(self._group_sizes):
            return p.copy()
        return np.repeat(p, self._group_sizes)

    def _delta(self, p):
        """One prior precision per parameter tensor (kron)."""
        return np.full(len(self._group_sizes), p[0]) if len(p) == 1 else p

    def _hfactor(self, sigma=None):
        s = self._sigma_noise if sigma is None else sigma
        return 1.0 / (s * s * self.temperature)

    # ---- fit
    def fit(self, X, y):
        """Accumulate the curvature over (X, y) at θ*. X (N, D) inputs (features for a LinearHead);
        y (N, C) or (N,) targets (gaussian), (N,) integer labels otherwise. Returns self."""
        X, y = self.curv.check_data(X, y)
        self.n_data = X.shape[0]
        if self.structure == "diag":
            self.H, self.loss = self.curv.diag(X, y)
        elif self.structure == "kron":
            facs, self.loss = self.curv.kron(X, y)
            self.H = facs
            self._set_kron_eig(facs)
        elif self.structure == "lowrank" and self._use_eigsh():
            self.H = None
            self._U, self._lam, self.loss = self._lowrank_eigsh(X, y)
        else:
            G, self.loss = self.curv.full(X, y)
            self.H = G
            if self.structure == "lowrank":
                lam, U = np.linalg.eigh(G.astype(np.float64))
                idx = np.argsort(lam)[::-1][: self.rank]
                self._U, self._lam = U[:, idx], np.maximum(lam[idx], 0)
        self._fitted = True
        return self

    def _set_kron_eig(self, facs):
        eig = [(np.linalg.eigh(A.astype(np.float64)), np.linalg.eigh(B.astype(np.float64))) for A, B in facs]
        # symmetric PSD factors: clip round-off negatives as laplace-torch's symeig does
        self._eig = [((np.maximum(la, 0), Qa), (np.maximum(lb, 0), Qb)) for (la, Qa), (lb, Qb) in eig]

    def _use_eigsh(self):
        if self.lowrank_solver == "auto":
            return self.n_params > _DENSE_LOWRANK_MAX_P and self.rank < self.n_params
        if self.lowrank_solver == "eigsh" and self.rank >= self.n_params:
            raise ValueError(f"lowrank_solver='eigsh' needs rank < the number of parameters {self.n_params}")
        return self.lowrank_solver == "eigsh"

    def _lowrank_eigsh(self, X, y):
        """Top-``rank`` eigenpairs of the curvature from matrix-free products (ARPACK)."""
        from scipy.sparse.linalg import LinearOperator, eigsh

        P = self.n_params

        def mv(v):
            return self.curv.gvp(X, y, np.asarray(v, self.dtype).reshape(-1)).astype(np.float64)

        op = LinearOperator((P, P), matvec=mv, dtype=np.float64)
        lam, U = eigsh(op, k=self.rank, which="LA", v0=np.ones(P) / math.sqrt(P), tol=1e-10)
        idx = np.argsort(lam)[::-1]
        return U[:, idx], np.maximum(lam[idx], 0), self.curv.loss(X, y)

    def _check_fitted(self):
        if not self._fitted:
            raise RuntimeError("Laplace is not fitted: call fit(X, y) first")

    def _posterior(self, p=None, sigma=None):
        self._check_fitted()
        p = self._prior_precision if p is None else p
        f = self._hfactor(sigma)
        if self.structure == "diag":
            return _DiagPost(self.H.astype(np.float64), f, self._p0_diag(p))
        if self.structure == "full":
            return _FullPost(self.H.astype(np.float64), f, self._p0_diag(p))
        if self.structure == "kron":
            return _KronPost(self._eig, f, self._delta(p))
        return _LowRankPost(self._U, self._lam, f, self._p0_diag(p))

    @property
    def posterior_precision(self):
        """The posterior precision as a dense (P, P) array (for inspection and tests)."""
        return self._posterior().matrix()

    @property
    def posterior_covariance(self):
        """Dense (P, P) posterior covariance."""
        post = self._posterior()
        return post.inv_apply(np.eye(self.n_params))

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
        post = self._posterior(p, sigma)
        p0 = self._p0_diag(p)
        delta = (self.mean - self.prior_mean).astype(np.float64)
        scatter = float(np.sum(delta * delta * p0))
        lml = self.log_likelihood(sigma) - 0.5 * (scatter + post.logdet() - np.sum(np.log(p0)))
        if not grad:
            return lml, None, None
        dinv = post.diag_inv()
        g_p0 = -0.5 * (delta * delta + dinv - 1.0 / p0)           # d lml / d p0_j
        if len(p) == 1:
            gp = np.array([g_p0.sum()])
        elif len(p) == self.n_params and len(p) != len(self._group_sizes):
            gp = g_p0
        else:
            gp = np.add.reduceat(g_p0, np.cumsum([0] + self._group_sizes[:-1]))
        gs = 0.0
        if self.likelihood == "gaussian":
            f = self._hfactor(sigma)
            gs = 2 * f * self.loss - self.n_data * self.n_outputs + (self.n_params - np.sum(dinv * p0))
        return lml, gp, gs

    def optimize_prior_precision(self, method="marglik", prior_structure=None, optimize_sigma=False, val=None,
                                 grid=None, link="probit", n_samples=100, max_iter=200):
        """Choose the prior precision (and σ for gaussian if ``optimize_sigma``).

        method="marglik" maximises the Laplace evidence by L-BFGS on log p0 (and log σ) with
        exact gradients; method="gridsearch" picks the scalar p0 in ``grid`` (default
        logspace(-4, 4, 21)) minimising the NLL of ``predict(val[0])`` on ``val = (X_val, y_val)``.
        prior_structure: "scalar", "layerwise" (one per weight/bias tensor) or "diag"
        (per parameter; not for kron); default keeps the current shape. Returns self.
        """
        self._check_fitted()
        method = C.option(method, "method", ("marglik", "gridsearch"))
        ng = len(self._group_sizes)
        n_cur = len(self._prior_precision)
        if prior_structure is None:
            n = n_cur
        else:
            ps = C.option(prior_structure, "prior_structure", ("scalar", "layerwise", "diag"))
            n = {"scalar": 1, "layerwise": ng, "diag": self.n_params}[ps]
            if ps == "diag" and self.structure == "kron":
                raise ValueError("prior_structure='diag' is not available for structure='kron': the Kronecker "
                                 "eigenbasis cannot represent a per-parameter prior")
        if optimize_sigma and self.likelihood != "gaussian":
            raise ValueError("optimize_sigma is only for the gaussian likelihood")
        if method == "gridsearch":
            return self._gridsearch(val, grid, link, n_samples)
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
        grid = np.logspace(-4, 4, 21) if grid is None else C.positive(C.as_array(grid, "grid", np.float64, ndim=1),
                                                                      "grid")
        best, best_p = np.inf, None
        for p in grid:
            self.prior_precision = p
            pred = self.predict(Xv, link=link, n_samples=n_samples if link == "mc" else None)
            nll = self._nll(pred, yv)
            if nll < best:
                best, best_p = nll, p
        self.prior_precision = best_p
        return self

    def _nll(self, pred, y):
        return float(-np.sum(pred.log_likelihood(y)))

    # ---- sampling and prediction
    def sample(self, n_samples=100, seed=0, stream=0):
        """Parameter samples (n_samples, P) from N(θ*, P⁻¹) (Philox normals)."""
        n = C.integer(n_samples, "n_samples", 1)
        post = self._posterior()
        z = _random.normal((n, self.n_params), seed, _random.fold_in(C.integer(stream, "stream", 0), TAG_SAMPLE),
                           np.float64)
        return (self.mean.astype(np.float64) + post.inv_sqrt_apply(z)).astype(self.dtype)

    def functional_variance(self, X):
        """GLM output mean f (N, C) and covariance f_var (N, C, C) = J P⁻¹ Jᵀ, chunked."""
        post = self._posterior()
        if isinstance(self.model, LinearHead) and len(X) * self.n_outputs > self.n_params:
            return self._head_functional_variance(post, X)
        fs, vs = [], []
        for f, J in self.curv.jacobians(X):
            n, Co, P = J.shape
            J2 = J.reshape(n * Co, P).astype(np.float64)
            SJ = post.inv_apply(J2).reshape(n, Co, P)
            vs.append(np.einsum("ncp,ndp->ncd", J.astype(np.float64), SJ))
            fs.append(f)
        return np.concatenate(fs).astype(np.float64), np.concatenate(vs)

    def _head_functional_variance(self, post, X):
        """f_var of a linear head from the dense covariance Σ (P, P): J_n = [I_C ⊗ φ_nᵀ, I_C], so
        f_var[n, c, d] = φᵀ Σ_WcWd φ + φᵀ Σ_Wc,bd + Σ_bc,Wd φ + Σ_bc,bd. One (P, P) inverse plus
        2 N F P C flops, instead of N C triangular solves of size P (2 N C P² flops)."""
        Sig = post.covariance()
        Co, F = self.n_outputs, self.model.n_features
        OI = Co * F
        X = C.as_array(X, "X", self.dtype, ndim=2)
        fs, vs = [], []
        rows = max(1, min(len(X), (1 << 24) // self.n_params))
        for s in range(0, len(X), rows):
            Xc = X[s:s + rows]
            Phi = (self.model.features(Xc) if isinstance(self.model, _LastLayerNet) else Xc).astype(np.float64)
            n = Phi.shape[0]
            v = np.empty((n, Co, Co))
            for c in range(Co):
                T = Phi @ Sig[c * F:(c + 1) * F, :]                               # (n, P)
                v[:, c, :] = (np.einsum("ndi,ni->nd", T[:, :OI].reshape(n, Co, F), Phi) + T[:, OI:]
                              + Phi @ Sig[OI + c, :OI].reshape(Co, F).T + Sig[OI + c, OI:])
            vs.append(0.5 * (v + v.transpose(0, 2, 1)))
            fs.append(self.model.forward(self.mean, Xc))
        return np.concatenate(fs).astype(np.float64), np.concatenate(vs)

    def predict(self, X, link="probit", pred_type="glm", n_samples=None, seed=0, stream=0):
        """Posterior predictive at inputs X (N, D).

        pred_type="glm": linearised model, f ~ N(f(θ*), J P⁻¹ Jᵀ); classification via the
        probit approximation, Monte Carlo ("mc", n_samples, default 100) or the Laplace
        bridge (categorical only). With n_samples, sampled log-probabilities (S, N, C) (or
        sampled means for gaussian) are returned too. pred_type="nn": θ sampled from the
        posterior, the network run per sample (n_samples, default 100).

        Returns a ``bg.nn.Predictive``: classification ``probs`` (N, C),
        ``log_probs`` (S, N, C) when sampled; gaussian ``mean``, ``var`` = ``aleatoric_var``
        (σ²) + ``epistemic_var`` (N, C), ``samples_mean`` (S, N, C) when sampled.
        """
        link = C.option(link, "link", LINKS)
        pred_type = C.option(pred_type, "pred_type", ("glm", "nn"))
        if n_samples is not None:
            n_samples = C.integer(n_samples, "n_samples", 1)
        elif link == "mc" or pred_type == "nn":
            n_samples = 100
        if link == "bridge" and self.likelihood != "categorical":
            raise ValueError("link='bridge' (Laplace bridge to a Dirichlet) is for the categorical likelihood")
        X, _ = self.curv.check_data(X)
        stream = _random.fold_in(C.integer(stream, "stream", 0), TAG_PRED)
        return _nn.Predictive(self.likelihood, **self._predict(X, link, pred_type, n_samples, seed, stream))

    def _predict(self, X, link, pred_type, n_samples, seed, stream):
        if pred_type == "nn":
            thetas = self.sample(n_samples, seed, stream)
            F = np.asarray(self.model.forward_many(thetas, X), dtype=np.float64)
            return self._from_samples(F)
        fmu, fvar = self.functional_variance(X)
        Fs = None
        if n_samples is not None:
            N, Co = fmu.shape
            z = _random.normal((n_samples, N, Co), seed, stream, np.float64)
            L = np.linalg.cholesky(fvar + 1e-10 * np.eye(Co) * (1 + np.abs(fvar).max()))
            Fs = fmu + np.einsum("ncd,snd->snc", L, z)
        if self.likelihood == "gaussian":
            ev = np.diagonal(fvar, axis1=1, axis2=2).copy()
            out = {"mean": fmu, "epistemic_var": ev, "aleatoric_var": np.full_like(ev, self._sigma_noise ** 2)}
            if Fs is not None:
                out["samples_mean"] = Fs
            return out
        if link == "mc":
            return self._from_samples(Fs)
        vd = np.diagonal(fvar, axis1=1, axis2=2)
        if link == "probit":
            kappa = 1.0 / np.sqrt(1.0 + np.pi / 8.0 * vd)
            probs = _probs(self.likelihood, kappa * fmu)
        else:
            Co = fmu.shape[1]
            # Laplace bridge (Hobbhahn et al. 2022), after projecting the Gaussian onto the
            # sum-zero subspace (softmax is shift invariant), as laplace-torch does
            rs = fvar.sum(axis=2)
            tot = rs.sum(axis=1, keepdims=True)
            mu = fmu - rs * fmu.sum(axis=1, keepdims=True) / tot
            vd = vd - rs * rs / tot
            s = np.sum(np.exp(-mu), axis=1, keepdims=True)
            alpha = (1 - 2.0 / Co + np.exp(mu) * s / Co ** 2) / vd
            probs = alpha / alpha.sum(axis=1, keepdims=True)
        out = {"probs": probs}
        if Fs is not None:
            out["log_probs"] = _log_probs(self.likelihood, Fs)
        return out

    # ---- persistence
    def _model_arrays(self):
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
            meta["n_data"], meta["loss"] = int(self.n_data), float(self.loss)
            if self.structure == "kron":
                for i, (A, B) in enumerate(self.H):
                    arrays[f"A{i}"], arrays[f"B{i}"] = A, B
            elif self.structure == "lowrank":
                arrays["U"], arrays["lam"] = self._U, self._lam
            else:
                arrays["H"] = self.H
        _tr.save_npz(path, meta, arrays)

    @classmethod
    def load(cls, path):
        """Read an approximation written by ``save``; ValueError for a malformed or foreign file."""
        meta, arrays = _tr.load_npz(path, "Laplace", ["prior_mean", "prior_precision"])
        try:
            kind = meta["model"]
            if kind == "mlp":
                model, theta = _nn.MLP(**meta["mlp"]), cls._array(arrays, "theta", path)
            elif kind == "linear_head":
                model, theta = LinearHead(cls._array(arrays, "weight", path), cls._array(arrays, "bias", path)), None
            else:
                raise ValueError(f"unknown model kind {kind!r}")
            seed = int(meta["seed"])
            la = cls(model, theta, meta["likelihood"], structure=meta["structure"], subset=meta["subset"],
                     hessian=meta["hessian"], prior_precision=arrays["prior_precision"],
                     sigma_noise=meta["sigma_noise"], temperature=meta["temperature"],
                     prior_mean=arrays["prior_mean"], n_mc_samples=meta["n_mc_samples"], rank=meta["rank"],
                     chunk_size=meta["chunk_size"], seed=seed, stream=meta["stream"],
                     lowrank_solver=meta["lowrank_solver"])
            if meta["fitted"] is True:
                la._restore_fit(meta, arrays, path)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path!r}: malformed Laplace metadata ({type(exc).__name__}: {exc})") from exc
        return la

    @staticmethod
    def _array(arrays, name, path, shape=None, dtype=None):
        a = arrays.get(name)
        if a is None or a.dtype not in (np.float32, np.float64) or not np.all(np.isfinite(a)):
            raise ValueError(f"{path!r}: array {name!r} missing or not finite float32/float64")
        if shape is not None and a.shape != shape:
            raise ValueError(f"{path!r}: array {name!r} has shape {a.shape}, expected {shape}")
        return a if dtype is None else a.astype(dtype)

    def _restore_fit(self, meta, arrays, path):
        n_data, loss = meta["n_data"], meta["loss"]
        if not (isinstance(n_data, int) and n_data >= 0 and isinstance(loss, (int, float)) and math.isfinite(loss)):
            raise ValueError(f"{path!r}: malformed n_data / loss")
        P, dt = self.n_params, self.dtype
        if self.structure == "kron":
            facs = [(self._array(arrays, f"A{i}", path, (I, I), dt), self._array(arrays, f"B{i}", path, (O, O), dt))
                    for i, (I, O) in enumerate(self.model.layer_shapes)]
            self.H = facs
            self._set_kron_eig(facs)
        elif self.structure == "lowrank":
            self.H = None
            self._U = self._array(arrays, "U", path, (P, self.rank), np.float64)
            self._lam = self._array(arrays, "lam", path, (self.rank,), np.float64)
            if np.any(self._lam < 0):
                raise ValueError(f"{path!r}: negative low-rank eigenvalues")
        else:
            self.H = self._array(arrays, "H", path, (P,) if self.structure == "diag" else (P, P), dt)
        self.n_data, self.loss, self._fitted = n_data, float(loss), True

    def _from_samples(self, F):
        if self.likelihood == "gaussian":
            ev = F.var(axis=0)
            return {"mean": F.mean(axis=0), "epistemic_var": ev, "aleatoric_var": np.full_like(ev, self._sigma_noise ** 2),
                    "samples_mean": F}
        lp = _log_probs(self.likelihood, F)
        m = lp.max(axis=0)
        probs = np.exp(m + np.log(np.mean(np.exp(lp - m), axis=0)))
        return {"probs": probs, "log_probs": lp}


def _log_probs(likelihood, F):
    """Log-probabilities (..., C) of outputs F; bernoulli gives the 2-class (1−p, p) (..., 2)."""
    if likelihood == "bernoulli":
        f = F[..., 0]
        return np.stack([-np.logaddexp(0, f), -np.logaddexp(0, -f)], axis=-1)
    z = F - F.max(axis=-1, keepdims=True)
    return z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))


def _probs(likelihood, F):
    return np.exp(_log_probs(likelihood, F))
