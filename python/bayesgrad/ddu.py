"""Deep Deterministic Uncertainty (Mukhoti et al., 2023): a class-conditional
Gaussian density on a classifier's feature space.

``fit(features, y)`` estimates one Gaussian per class (mean and covariance,
with a jitter ladder on the diagonal until the Cholesky factorisation
succeeds) and mixes them with the class frequencies; the feature density
``log q(f) = logsumexp_c [log pi_c + log N(f; mu_c, Sigma_c)]`` measures how
familiar a point is (epistemic: low density = unfamiliar). As in SimpleDDU,
densities are made interpretable by their empirical CDF over the training
points: ``quantile(f)`` is the fraction of training points whose density is
<= that of f (near 0: less dense than almost all training data).

``predict(features, probs)`` pairs the class probabilities of any classifier
(aleatoric part: their softmax entropy) with the density and its quantile.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import linalg, special

from . import _checks as C
from .uncertainty import check_probs

__all__ = ["DDU", "DDUPrediction", "JITTERS"]

#: Relative diagonal jitters tried in order (times the mean variance of the class).
JITTERS = (0.0,) + tuple(10.0 ** k for k in range(-12, 1))


@dataclass(frozen=True)
class DDUPrediction:
    """``probs`` (N, C) the classifier's probabilities, ``log_density`` (N,)
    the feature log-density (nats), ``quantile`` (N,) its ECDF position among
    the training densities in [0, 1], ``entropy`` (N,) of ``probs`` (nats)."""

    probs: np.ndarray
    log_density: np.ndarray
    quantile: np.ndarray
    entropy: np.ndarray


class DDU:
    """Class-conditional Gaussian density of features.

    Parameters
    ----------
    priors : {"empirical", "uniform"}
        Mixture weights pi_c: class frequencies (a proper density of the
        training features) or 1/C.
    jitters : sequence of float
        Relative diagonal jitters tried in order until the Cholesky
        factorisation of ``Sigma_c + jitter * mean(diag Sigma_c) I`` succeeds.
    """

    def __init__(self, priors="empirical", jitters=JITTERS):
        self.priors = C.option(priors, "priors", ("empirical", "uniform"))
        try:
            j = np.asarray(jitters, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"jitters must be a sequence of floats, got {jitters!r}") from exc
        if j.ndim != 1 or j.size == 0 or np.any(j < 0) or not np.all(np.isfinite(j)):
            raise ValueError("jitters must be a non-empty sequence of finite non-negative floats")
        self.jitters = tuple(float(v) for v in j)

    def fit(self, features, y, n_classes=None):
        """Fit per-class means and covariances; features (N, D), y (N,) int labels."""
        f = C.as_array(features, "features", ndim=2)
        y = C.to_numpy(y, "y")
        if y.dtype.kind not in "iu":
            raise TypeError(f"y must be integer class labels, got dtype {y.dtype}")
        if y.shape != (f.shape[0],):
            raise ValueError(f"y must have shape ({f.shape[0]},), got {y.shape}")
        if y.min() < 0:
            raise ValueError("y must be non-negative class labels")
        K = int(y.max()) + 1 if n_classes is None else C.integer(n_classes, "n_classes", 1)
        # checked before np.bincount allocates max(K, largest label + 1) counts
        if y.max() >= K:
            raise ValueError(f"y has labels >= n_classes ({K})")
        if K > f.shape[0]:  # every class needs a point
            raise ValueError(f"n_classes ({K}{'' if n_classes is not None else ', the largest label + 1'}) exceeds "
                             f"the number of training points ({f.shape[0]}); every class needs at least one")
        D = f.shape[1]
        C.check_allocation(C.n_bytes((K, D, D)), f"n_classes={K} with D={D} features: the (K, D, D) covariance "
                           "factors")
        counts = np.bincount(y, minlength=K)
        if counts.shape[0] > K:
            raise ValueError(f"y has labels >= n_classes ({K})")
        if np.any(counts == 0):
            raise ValueError(f"every class needs at least one training point; empty: {np.flatnonzero(counts == 0)}")
        x = f.astype(np.float64)
        # The Gaussians are fitted to x / 2^k, |x| / 2^k < 1, and scaled back: d.T @ d of features
        # near 1e200 overflowed (no jitter made it positive definite) and of features near 1e-200
        # underflowed to 0 (every point then had the same density). A power of two scales exactly,
        # so features of ordinary size give the same bits as unscaled.
        amax = float(np.max(np.abs(x)))
        unit = 2.0 ** math.frexp(amax)[1] if amax > 0 else 1.0
        xs = x / unit
        self.dtype_ = f.dtype
        self.means_ = np.empty((K, D))
        self.chol_ = np.empty((K, D, D))
        self.jitter_ = np.empty(K)
        for c in range(K):
            xc = xs[y == c]
            mu = xc.mean(axis=0)
            d = xc - mu
            cov = d.T @ d / max(len(xc) - 1, 1)
            scale = float(np.mean(np.diag(cov)))
            scale = scale if scale > 0 else 1.0
            floor = 100 * D * np.finfo(np.float64).eps * float(np.max(np.diag(cov), initial=scale))
            for jit in self.jitters:
                try:
                    L = np.linalg.cholesky(cov + (jit * scale) * np.eye(D))
                except np.linalg.LinAlgError:
                    continue
                # A numerically singular matrix can pass LAPACK with a pivot at
                # rounding level; such a factor gives meaningless densities.
                if np.all(np.isfinite(L)) and np.min(np.diag(L)) ** 2 > floor:
                    break
            else:
                raise ValueError(f"class {c}: covariance not positive definite for any jitter in {self.jitters}")
            with np.errstate(over="ignore"):  # the jitter in feature units may exceed the float range
                self.means_[c], self.chol_[c], self.jitter_[c] = mu * unit, L * unit, jit * scale * unit * unit
        self.log_priors_ = (np.log(counts / counts.sum()) if self.priors == "empirical"
                            else np.full(K, -math.log(K)))
        self.train_log_density_ = np.sort(self.log_density(f))
        return self

    def _check_fitted(self):
        if not hasattr(self, "means_"):
            raise RuntimeError("DDU is not fitted; call fit(features, y) first")

    def class_log_density(self, features):
        """log N(f; mu_c, Sigma_c) for every class: (N, C) nats."""
        self._check_fitted()
        D = self.means_.shape[1]
        f = C.as_array(features, "features", ndim=2)
        if f.shape[1] != D:
            raise ValueError(f"features must have {D} columns, got {f.shape[1]}")
        x = f.astype(np.float64)
        out = np.empty((x.shape[0], self.means_.shape[0]))
        for c in range(self.means_.shape[0]):
            L = self.chol_[c]
            z = linalg.solve_triangular(L, (x - self.means_[c]).T, lower=True)
            with np.errstate(over="ignore"):  # a point far beyond the float range of z^2: a density of -inf
                out[:, c] = -0.5 * (D * math.log(2 * math.pi) + np.sum(z * z, axis=0)) - np.sum(np.log(np.diag(L)))
        return out

    def log_density(self, features):
        """Mixture log-density logsumexp_c [log pi_c + log N(f; mu_c, Sigma_c)]: (N,) nats."""
        return special.logsumexp(self.class_log_density(features) + self.log_priors_, axis=1)

    def quantile(self, features=None, log_density=None):
        """ECDF of the training log-densities at each point's log-density, in [0, 1].

        Shapes: ``features`` (N, D) or ``log_density`` (N,) (one of them); returns (N,).
        """
        self._check_fitted()
        if log_density is None:
            log_density = self.log_density(features)
        # -inf: a point so far away that its density underflows (quantile 0); nan is refused
        ld = C.as_array(log_density, "log_density", np.float64, finite=False)
        if np.isnan(ld).any():
            raise ValueError("log_density must not be nan")
        return np.searchsorted(self.train_log_density_, ld, side="right") / self.train_log_density_.size

    def predict(self, features, probs):
        """Pair any classifier's probabilities (N, C) with the feature density.

        Returns a :class:`DDUPrediction`; ``probs`` are validated (rows sum
        to one) and passed through unchanged.
        """
        p = check_probs(probs)
        ld = self.log_density(features)
        if ld.shape[0] != p.shape[0]:
            raise ValueError(f"features ({ld.shape[0]} rows) and probs ({p.shape[0]} rows) must match")
        with np.errstate(divide="ignore", invalid="ignore"):
            ent = -np.where(p > 0, p * np.log(p), 0).sum(axis=1)
        return DDUPrediction(p, ld.astype(self.dtype_), self.quantile(log_density=ld), ent)
