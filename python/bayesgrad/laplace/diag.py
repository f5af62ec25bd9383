"""Diagonal Laplace posterior: the curvature's diagonal h (P,), P = diag(f h + p0)."""
from __future__ import annotations

import numpy as np

from .._codes import CurvatureStructure

from ._posterior import Posterior

__all__ = ["DiagPosterior"]


class DiagPosterior(Posterior):
    """H = diag(h), h (P,) summed over the data; P = diag(d), d = f h + p0."""

    key = "diag"

    def fit(self, curv, X, y):
        self.H, loss = curv._diag(X, y)
        return loss

    def state(self):
        return {"H": self.H}

    def load_state(self, read):
        self.H = read("H", (self.n,), self.layout.dtype)

    def _factorise(self, prior):
        self.d = self.H.astype(np.float64) * self.f + self.p0

    def logdet(self):
        return float(np.sum(np.log(self.d)))

    def inv_apply(self, V):
        return V / self.d

    def inv_sqrt_apply(self, Z):
        return Z / np.sqrt(self.d)

    def diag_inv(self):
        return 1.0 / self.d

    def glm_factors(self):
        return CurvatureStructure.diag, np.empty(0), 1.0 / self.d

    def covariance(self):
        return np.diag(1.0 / self.d)

    def matrix(self):
        return np.diag(self.d)
