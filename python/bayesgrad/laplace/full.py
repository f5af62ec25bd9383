"""Full Laplace posterior: the dense curvature H (P, P), P = f H + diag(p0) by Cholesky."""
from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from ._posterior import Posterior, not_positive_definite

__all__ = ["FullPosterior"]


class FullPosterior(Posterior):
    """H (P, P) summed over the data; P = L Lᵀ (Cholesky, float64)."""

    key = "full"

    def fit(self, curv, X, y):
        self.H, loss = curv._full(X, y)
        return loss

    def state(self):
        return {"H": self.H}

    def load_state(self, read):
        self.H = read("H", (self.n, self.n), self.layout.dtype)

    def _factorise(self, prior):
        Pm = self.H.astype(np.float64) * self.f
        Pm[np.diag_indices_from(Pm)] += self.p0
        try:
            self.L = np.linalg.cholesky(Pm.astype(np.float64))
        except np.linalg.LinAlgError as exc:
            raise not_positive_definite() from exc
        self.Pm = Pm
        self._cov = None   # P⁻¹, computed on first use (predictive) and kept

    def logdet(self):
        return float(2 * np.sum(np.log(np.diag(self.L))))

    def inv_apply(self, V):
        return sla.cho_solve((self.L, True), V.T.astype(np.float64)).T.astype(V.dtype)

    def inv_sqrt_apply(self, Z):
        # x = L^{-T} z has covariance (L L^T)^{-1} = P^{-1}
        return sla.solve_triangular(self.L, Z.T.astype(np.float64), lower=True, trans="T").T.astype(Z.dtype)

    def functional_variance(self, J):
        # J P⁻¹ Jᵀ = ZᵀZ with Z = L⁻¹ Jᵀ: one triangular solve instead of cho_solve's two
        n, Co, P = J.shape
        Z = sla.solve_triangular(self.L, J.reshape(n * Co, P).T.astype(np.float64), lower=True)
        Z = np.ascontiguousarray(Z.T).reshape(n, Co, P)
        return np.matmul(Z, Z.transpose(0, 2, 1))

    def diag_inv(self):
        Li = sla.solve_triangular(self.L, np.eye(self.L.shape[0]), lower=True)
        return np.sum(Li * Li, axis=0)

    def covariance(self):
        # LAPACK potri on the Cholesky factor: P⁻¹ in (2/3) P³ flops, once per factorisation
        if self._cov is None:
            inv, info = sla.lapack.dpotri(self.L, lower=1)
            if info != 0:
                raise not_positive_definite()
            iu = np.triu_indices_from(inv, 1)
            inv[iu] = inv.T[iu]
            self._cov = inv
        return self._cov

    def matrix(self):
        return self.Pm
