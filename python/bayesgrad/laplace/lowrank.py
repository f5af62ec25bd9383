"""Low-rank Laplace posterior: the top ``rank`` eigenpairs of the curvature, H ≈ U diag(λ) Uᵀ,
P = f H + diag(p0) handled by Woodbury and the matrix determinant lemma."""
from __future__ import annotations

import math

import numpy as np

from ._posterior import Posterior

__all__ = ["LowRankPosterior"]

# above this many parameters lowrank_solver="auto" avoids building the (P, P) curvature
_DENSE_LOWRANK_MAX_P = 2000


class LowRankPosterior(Posterior):
    """H ≈ U diag(λ) Uᵀ, U (P, rank) orthonormal, λ (rank,) ≥ 0, from a dense eigh of the full
    curvature or from ARPACK on matrix-free curvature-vector products (``lowrank_solver``).
    ``H`` is the dense curvature when it was built, else None."""

    key = "lowrank"

    def __init__(self, layout, rank=None, lowrank_solver="auto"):
        super().__init__(layout, rank, lowrank_solver)
        self.rank, self.lowrank_solver = rank, lowrank_solver
        self.U = self.lam = None

    def _use_eigsh(self):
        if self.lowrank_solver == "auto":
            return self.n > _DENSE_LOWRANK_MAX_P and self.rank < self.n
        if self.lowrank_solver == "eigsh" and self.rank >= self.n:
            raise ValueError(f"lowrank_solver='eigsh' needs rank < the number of parameters {self.n}")
        return self.lowrank_solver == "eigsh"

    def fit(self, curv, X, y):
        if self._use_eigsh():
            self.H = None
            self.U, self.lam, loss = self._eigsh(curv, X, y)
            return loss
        G, loss = curv._full(X, y)
        self.H = G
        lam, U = np.linalg.eigh(G.astype(np.float64))
        idx = np.argsort(lam)[::-1][: self.rank]
        self.U, self.lam = U[:, idx], np.maximum(lam[idx], 0)
        return loss

    def _eigsh(self, curv, X, y):
        """Top-``rank`` eigenpairs of the curvature from matrix-free products (ARPACK)."""
        from scipy.sparse.linalg import LinearOperator, eigsh

        P, dt = self.n, self.layout.dtype

        def mv(v):
            return curv._gvp(X, y, np.ascontiguousarray(v, dtype=dt).reshape(1, -1))[0].astype(np.float64)

        op = LinearOperator((P, P), matvec=mv, dtype=np.float64)
        lam, U = eigsh(op, k=self.rank, which="LA", v0=np.ones(P) / math.sqrt(P), tol=1e-10)
        idx = np.argsort(lam)[::-1]
        return U[:, idx], np.maximum(lam[idx], 0), curv.loss(X, y)

    def state(self):
        return {"U": self.U, "lam": self.lam}

    def load_state(self, read):
        self.H = None
        self.U = read("U", (self.n, self.rank), np.float64)
        self.lam = read("lam", (self.rank,), np.float64)
        if np.any(self.lam < 0):
            raise read.error("negative low-rank eigenvalues")

    def _factorise(self, prior):
        p0 = self.D = self.p0
        # M = D^{-1/2} U (l f)^{1/2}: P = D^{1/2} (I + M Mᵀ) D^{1/2}
        M = (self.U / np.sqrt(p0)[:, None]) * np.sqrt(np.maximum(self.lam, 0) * self.f)
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
