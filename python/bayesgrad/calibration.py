"""Post-hoc calibration of a trained model's outputs, fitted on held-out data.

Classification (on logits (N, C); temperature scaling is
``bg.uncertainty.fit_temperature``):

* ``fit_vector_scaling``: ``softmax(z * w + b)``, a temperature and a bias
  per class (Guo et al. 2017);
* ``fit_matrix_scaling``: ``softmax(z Wᵀ + b)``, with an optional L2 pull of
  W towards the identity and of b towards 0 (``l2``; many parameters for many
  classes overfit small validation sets).

Both minimise the mean validation NLL (nats), a convex problem, by L-BFGS
with exact gradients from the identity (temperature 1) start.

Regression (Gaussian predictive mean and standard deviation):

* ``fit_std_scaling``: one factor s for every std, the Gaussian maximum
  likelihood ``s² = mean(((y - mean) / std)²)`` (Levi et al. 2020);
* ``fit_isotonic_recalibration``: the isotonic map R of the probability
  integral transform ``Φ((y - mean) / std)`` onto its empirical CDF
  (Kuleshov et al. 2018, as uncertainty-toolbox does): recalibrated CDF
  ``R(Φ(z))``, quantiles ``mean + std Φ⁻¹(R⁻¹(p))``.

Plots of the results: ``bg.plotting.plot_reliability`` and
``bg.plotting.plot_calibration_curve``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats

from . import _checks as C

__all__ = ["VectorScaling", "MatrixScaling", "StdScaling", "IsotonicRecalibration", "fit_vector_scaling",
           "fit_matrix_scaling", "fit_std_scaling", "fit_isotonic_recalibration", "isotonic_fit"]


def _logits_labels(logits, y):
    z = C.as_array(logits, "logits", ndim=2).astype(np.float64)
    if z.shape[1] < 2:
        raise ValueError(f"logits must have at least 2 classes, got shape {z.shape}")
    labels = C.class_labels(y, z.shape[0], z.shape[1])
    onehot = np.zeros_like(z)
    onehot[np.arange(z.shape[0]), labels] = 1.0
    return z, onehot


def _l2(l2):
    v = float(C.scalar(l2, "l2"))
    if not v >= 0:
        raise ValueError(f"l2 must be >= 0, got {l2}")
    return v


def _class_logits(logits, n_classes):
    """logits as an (N, n_classes) array: the number of classes the scaling was fitted on."""
    z = C.as_array(logits, "logits", ndim=2)
    if z.shape[1] != n_classes:
        raise ValueError(f"logits must have {n_classes} classes (the fitted scaling's), got shape {z.shape}")
    return z


def _fit(objective, x0):
    res = optimize.minimize(objective, x0, jac=True, method="L-BFGS-B", options={"maxiter": 1000, "gtol": 1e-9})
    return res.x


@dataclass(frozen=True)
class VectorScaling:
    """``softmax(z * w + b)``: w (C,) per-class inverse temperatures, b (C,) biases."""

    w: np.ndarray
    b: np.ndarray

    def log_probs(self, logits):
        """Calibrated log-probabilities (N, C) of logits (N, C)."""
        z = _class_logits(logits, len(self.w))
        return special.log_softmax(z * self.w + self.b, axis=1)

    def transform(self, logits):
        """Calibrated probabilities (N, C)."""
        return np.exp(self.log_probs(logits))


@dataclass(frozen=True)
class MatrixScaling:
    """``softmax(z Wᵀ + b)``: W (C, C), b (C,)."""

    W: np.ndarray
    b: np.ndarray

    def log_probs(self, logits):
        """Calibrated log-probabilities (N, C) of logits (N, C)."""
        z = _class_logits(logits, self.W.shape[1])
        return special.log_softmax(z @ self.W.T + self.b, axis=1)

    def transform(self, logits):
        """Calibrated probabilities (N, C) of logits (N, C)."""
        return np.exp(self.log_probs(logits))


def fit_vector_scaling(logits, y, l2=0.0) -> VectorScaling:
    """Vector scaling fitted on validation logits (N, C) and labels (N,);
    ``l2`` pulls w towards 1 and b towards 0 (penalty ``l2 (|w - 1|² + |b|²)``)."""
    z, Y = _logits_labels(logits, y)
    lam = _l2(l2)
    N, K = z.shape

    def objective(x):
        w, b = x[:K], x[K:]
        lp = special.log_softmax(z * w + b, axis=1)
        G = (np.exp(lp) - Y) / N
        f = -(Y * lp).sum() / N + lam * (((w - 1) ** 2).sum() + (b ** 2).sum())
        return f, np.concatenate([(G * z).sum(0) + 2 * lam * (w - 1), G.sum(0) + 2 * lam * b])

    x = _fit(objective, np.concatenate([np.ones(K), np.zeros(K)]))
    return VectorScaling(x[:K], x[K:])


def fit_matrix_scaling(logits, y, l2=0.0) -> MatrixScaling:
    """Matrix scaling fitted on validation logits (N, C) and labels (N,);
    ``l2`` pulls W towards the identity and b towards 0."""
    z, Y = _logits_labels(logits, y)
    lam = _l2(l2)
    N, K = z.shape
    eye = np.eye(K)

    def objective(x):
        W, b = x[:K * K].reshape(K, K), x[K * K:]
        lp = special.log_softmax(z @ W.T + b, axis=1)
        G = (np.exp(lp) - Y) / N
        f = -(Y * lp).sum() / N + lam * (((W - eye) ** 2).sum() + (b ** 2).sum())
        return f, np.concatenate([(G.T @ z + 2 * lam * (W - eye)).ravel(), G.sum(0) + 2 * lam * b])

    x = _fit(objective, np.concatenate([eye.ravel(), np.zeros(K)]))
    return MatrixScaling(x[:K * K].reshape(K, K), x[K * K:])


# --------------------------------------------------------------------------- regression
def _regression(y, mean, std):
    m = C.as_array(mean, "mean").astype(np.float64)
    yy = C.as_array(y, "y", dtype=np.float64)
    s = C.as_array(std, "std", dtype=np.float64)
    if yy.shape != m.shape or s.shape != m.shape:
        raise ValueError(f"y, mean and std must have one shape, got {yy.shape}, {m.shape}, {s.shape}")
    if np.any(s <= 0):
        raise ValueError("std must be positive")
    return yy, m, s


@dataclass(frozen=True)
class StdScaling:
    """Every predictive standard deviation multiplied by ``scale`` (a positive float).

    ``transform(std)`` takes predictive standard deviations of any shape, e.g. (N,) or
    (N, D), in the units of y, and returns them rescaled, same shape."""

    scale: float

    def __post_init__(self):
        v = C.real(self.scale, "scale")
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"scale must be a positive finite number, got {self.scale}")

    def transform(self, std):
        """Rescaled standard deviations, shaped like ``std`` (any shape, e.g. (N, D))."""
        s = C.as_array(std, "std")
        C.non_negative(s, "std")
        return s * s.dtype.type(self.scale)


def fit_std_scaling(y, mean, std) -> StdScaling:
    """The maximum-likelihood factor for Gaussian predictives: s = sqrt(mean(((y - mean) / std)²)).

    Parameters
    ----------
    y, mean, std : arrays of one shape, e.g. (N,) or (N, D)
        Held-out targets, predictive means and predictive standard deviations (std > 0).

    Returns
    -------
    StdScaling

    Raises ValueError when y equals mean at every point: the factor would be 0 and every
    rescaled std 0, a predictive that no held-out set of real data supports.
    """
    yy, m, s = _regression(y, mean, std)
    scale = float(np.sqrt(np.mean(((yy - m) / s) ** 2)))
    if not scale > 0:
        raise ValueError("y equals mean at every point: the maximum-likelihood std factor would be 0 "
                         "(held-out targets needed, not the training fit)")
    return StdScaling(scale)


def isotonic_fit(x, y):
    """The non-decreasing least-squares fit to points (x, y) (pool adjacent
    violators): returns (x sorted (n,), fitted values (n,))."""
    x = C.as_array(x, "x", ndim=1).astype(np.float64)
    y = C.as_array(y, "y", dtype=np.float64)
    if y.shape != x.shape:
        raise ValueError(f"y must have the shape of x {x.shape}, got {y.shape}")
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    # blocks as (sum, count); merge while the last block's mean is below the one before it
    sums, counts = [], []
    for v in y:
        s, c = float(v), 1
        while sums and sums[-1] * c >= s * counts[-1]:  # previous mean >= this mean: pool
            s += sums.pop()
            c += counts.pop()
        sums.append(s)
        counts.append(c)
    fitted = np.repeat(np.array(sums) / np.array(counts), counts)
    return x, fitted


@dataclass(frozen=True)
class IsotonicRecalibration:
    """The recalibration map R on [0, 1] as knots (u, R(u)), non-decreasing, R(0) = 0, R(1) = 1.

    Attributes: ``u`` (K,) knot positions and ``r`` (K,) their values; ``cdf`` and
    ``quantile`` take y / p, mean and std of one shape, e.g. (N,) or (N, D)."""

    u: np.ndarray
    r: np.ndarray

    def cdf(self, y, mean, std):
        """Recalibrated predictive CDF at y: R(Φ((y - mean) / std)), shaped like y."""
        yy, m, s = _regression(y, mean, std)
        return np.interp(stats.norm.cdf((yy - m) / s), self.u, self.r)

    def quantile(self, p, mean, std):
        """Recalibrated p-quantiles (p in (0, 1), scalar or like mean): mean + std Φ⁻¹(R⁻¹(p)).
        ``mean`` and ``std`` (std > 0) of one shape, e.g. (N,) or (N, D); the result has it."""
        m = C.as_array(mean, "mean").astype(np.float64)
        s = C.as_array(std, "std", dtype=np.float64)
        if s.shape != m.shape:
            raise ValueError(f"std must have the shape of mean {m.shape}, got {s.shape}")
        C.positive(s, "std")
        pp = C.as_array(p, "p", dtype=np.float64)
        if pp.shape not in ((), m.shape):
            raise ValueError(f"p must be a scalar or have the shape of mean {m.shape}, got {pp.shape}")
        if np.any((pp <= 0) | (pp >= 1)):
            raise ValueError("p must be in (0, 1)")
        # R is non-decreasing with flat pieces: its inverse takes the first u where R reaches p
        u = np.interp(pp, self.r, self.u)
        return m + s * stats.norm.ppf(np.clip(u, 1e-12, 1 - 1e-12))

    def interval(self, mean, std, coverage=0.9):
        """The central recalibrated interval of the given coverage: (lower, upper)."""
        c = float(C.scalar(coverage, "coverage"))
        if not 0 < c < 1:
            raise ValueError(f"coverage must be in (0, 1), got {coverage}")
        return self.quantile((1 - c) / 2, mean, std), self.quantile((1 + c) / 2, mean, std)


def fit_isotonic_recalibration(y, mean, std) -> IsotonicRecalibration:
    """Fit R on held-out targets y and Gaussian predictives (mean, std), all (N,)."""
    yy, m, s = _regression(y, mean, std)
    pit = stats.norm.cdf(((yy - m) / s).ravel())
    n = pit.size
    # the empirical CDF of the PIT values at each of them: the fraction at or below
    ecdf = np.searchsorted(np.sort(pit), pit, side="right") / n
    u, r = isotonic_fit(pit, ecdf)
    # strictly increasing knots for interpolation: keep the last value of each tied u
    keep = np.append(u[1:] != u[:-1], True)
    u, r = u[keep], r[keep]
    return IsotonicRecalibration(np.concatenate([[0.0], u, [1.0]]), np.concatenate([[0.0], r, [1.0]]))
