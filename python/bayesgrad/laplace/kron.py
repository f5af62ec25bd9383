"""Kronecker-factored Laplace posterior (KFAC): per linear layer the factors A (in, in) and
B (out, out), ``H_W ≈ B ⊗ A``, the bias block ``B`` alone; P block diagonal over the
parameter tensors and handled in the factors' eigenbasis."""
from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from .._codes import CurvatureStructure

from ._posterior import Posterior, not_positive_definite

__all__ = ["KronPosterior"]


class KronPosterior(Posterior):
    """H = [(A_l (I, I), B_l (O, O))] per linear layer. With A = Q_A diag(λ_A) Q_Aᵀ and B likewise,
    the W block of P is (Q_B ⊗ Q_A) diag(λ_B λ_Aᵀ f + δ) (Q_B ⊗ Q_A)ᵀ and the bias block
    Q_B diag(λ_B f + δ) Q_Bᵀ: the prior δ is added in the eigenbasis, one value per tensor."""

    key = "kron"
    per_parameter_prior_error = "the Kronecker eigenbasis cannot represent an arbitrary diagonal"

    def fit(self, curv, X, y):
        facs, loss = curv._kron(X, y)
        self._set_factors(facs)
        return loss

    def _set_factors(self, facs):
        self.H = facs
        eig = [(np.linalg.eigh(A.astype(np.float64)), np.linalg.eigh(B.astype(np.float64))) for A, B in facs]
        # symmetric PSD factors: clip round-off negatives as laplace-torch's symeig does
        self._eig = [((np.maximum(la, 0), Qa), (np.maximum(lb, 0), Qb)) for (la, Qa), (lb, Qb) in eig]

    def state(self):
        out = {}
        for i, (A, B) in enumerate(self.H):
            out[f"A{i}"], out[f"B{i}"] = A, B
        return out

    def load_state(self, read):
        dt = self.layout.dtype
        self._set_factors([(read(f"A{i}", (I, I), dt), read(f"B{i}", (O, O), dt))
                           for i, (I, O) in enumerate(self.layout.layer_shapes)])

    def _factorise(self, prior):
        delta = self.layout.per_tensor(prior)
        f = self.f
        self.blocks = []   # (offset, (Q_B, Q_A or None for a bias, eigenvalues of the block))
        off = 0
        for li, ((lA, QA), (lB, QB)) in enumerate(self._eig):
            e = np.outer(lB, lA) * f + delta[2 * li]
            self.blocks.append((off, (QB, QA, e)))
            off += e.size
            eb = lB * f + delta[2 * li + 1]
            self.blocks.append((off, (QB, None, eb)))
            off += eb.size
        if any(np.any(b[1][2] <= 0) for b in self.blocks):
            raise not_positive_definite()

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

    def glm_factors(self):
        # per layer [Q_A, Q_B] and [1/e_W (O, I), 1/e_b (O,)]: the blocks in parameter order
        rot = np.concatenate([q.ravel() for (_, Qa), (_, Qb) in self._eig for q in (Qa, Qb)])
        var = np.concatenate([(1.0 / b[2]).ravel() for _, b in self.blocks])
        return CurvatureStructure.kron, rot, var

    def matrix(self):
        mats = []
        for _, (QB, QA, e) in self.blocks:
            Q = QB if QA is None else np.kron(QB, QA)
            mats.append((Q * e.ravel()) @ Q.T)
        return sla.block_diag(*mats)
