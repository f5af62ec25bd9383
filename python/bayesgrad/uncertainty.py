"""Uncertainty decomposition and the metrics of probabilistic predictions.

Conventions shared by every function here:

* Sampled classification predictions are log-probabilities ``(S, N, C)``,
  sample axis first; ``-inf`` (a probability of exactly 0) is allowed and
  exact (``0 log 0 = 0``). Entropies and information are in nats.
* Point predictions (``accuracy``, ``nll``, ``brier``, the ECE family, AURC)
  take probabilities ``(N, C)`` whose rows must sum to one within
  ``sqrt(eps(dtype)) * max(1, sqrt(C))`` (3.5e-4 for float32 and C <= 1,
  1.5e-8 for float64), and integer labels ``(N,)`` in ``[0, C)``.
* Out-of-distribution detection scores: a higher score means "more likely
  out-of-distribution", and OOD is the positive class (``is_ood`` true).
* Regression: ``mean``/``var``/``std`` per point; sampled regression
  predictions ``(S, N, ...)``.

Every function checks its arguments (shape, dtype, finite, ranges) and raises
``ValueError``/``TypeError`` naming the argument before any work.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats

from . import _backend
from . import _checks as C

__all__ = [
    "Decomposition", "decompose", "decompose_regression", "check_log_probs", "check_probs",
    "log_softmax", "mean_probs",
    "accuracy", "nll", "brier", "ece", "adaptive_ece", "classwise_ece", "reliability_diagram", "aurc",
    "TemperatureScaling", "fit_temperature",
    "gaussian_nll", "mixture_nll", "calibration_curve", "miscalibration_area", "crps_gaussian",
    "auroc", "aupr", "fpr_at_tpr",
]


# ---------------------------------------------------------------- argument checks
def _prob_tol(dtype, n_classes):
    return math.sqrt(float(np.finfo(dtype).eps)) * max(1.0, math.sqrt(n_classes))


def check_log_probs(log_probs, name="log_probs"):
    """``log_probs`` as a C-contiguous float (S, N, C) array (``-inf`` allowed, NaN/+inf not).

    float16 log-probabilities (converted to float64, like every dtype but float32) are
    checked against float16's tolerance and renormalised: float16 cannot hold normalised
    log-probabilities to float64's tolerance, so they were always refused, as if logits."""
    x = C.to_numpy(log_probs, name)
    a = C.as_array(x, name, finite=False, ndim=3)
    if x.dtype == np.float16:
        a = _renormalised(a, name, _prob_tol(np.float16, a.shape[-1]))
    return a


def _renormalised(a, name, tol):
    """``a`` (..., C) minus its rows' logsumexp, once every finite row is normalised within ``tol``
    (rows holding NaN or +inf, or only -inf, are left to the kernels' checks)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        lse = special.logsumexp(a, axis=-1, keepdims=True)
    ok = np.isfinite(lse)
    dev = float(np.abs(np.expm1(lse[ok])).max(initial=0.0))
    if dev > tol:
        _raise_bad_log_probs(a, dev, name, tol)
    return np.where(ok, a - np.where(ok, lse, 0.0), a)


def _raise_bad_log_probs(a, dev, name, tol=None):
    if np.isnan(a).any() or np.isposinf(a).any():
        raise ValueError(f"{name} must not contain NaN or +inf")
    tol = _prob_tol(a.dtype, a.shape[-1]) if tol is None else tol
    raise ValueError(
        f"{name} must be normalised over the class axis (last): exp({name}) sums to 1 within {tol:.2g}, "
        f"found a deviation of {dev:.3g} (are these logits? apply log_softmax first)")


def check_normalised(kernel_call, a, name):
    """Run a kernel on log-probabilities ``a`` that returns their largest
    normalisation deviation (it checks in the same pass); raise a ValueError
    naming ``name`` if it is too large. Shared with bayesgrad.acquisition."""
    dev = kernel_call()
    if not dev <= _prob_tol(a.dtype, a.shape[-1]):
        _raise_bad_log_probs(a, dev, name)


_NO_LABELS = object()  # check_probs without labels (None is a caller's bad labels, refused by name)


def check_probs(probs, name="probs", labels=_NO_LABELS, labels_name="y"):
    """Validate point-prediction probabilities (N, C) (and labels (N,)); return them as arrays."""
    p = C.as_array(probs, name, ndim=2)
    if np.any(p < 0) or np.any(p > 1):
        raise ValueError(f"{name} must be probabilities in [0, 1]")
    tol = _prob_tol(p.dtype, p.shape[1])
    dev = np.abs(p.sum(axis=1, dtype=np.float64) - 1.0).max()
    if dev > tol:
        raise ValueError(f"{name} rows must sum to one within {tol:.2g}; found a deviation of {dev:.3g}")
    if labels is _NO_LABELS:
        return p
    return p, C.class_labels(labels, p.shape[0], p.shape[1], labels_name)


def _binary(is_ood, n, name="is_ood"):
    a = C.to_numpy(is_ood, name)
    if a.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {a.shape}")
    if a.dtype.kind not in "biuf" or not np.all(np.isin(a, (0, 1))):
        raise ValueError(f"{name} must be booleans (or 0/1)")
    a = a.astype(bool)
    if a.all() or not a.any():
        raise ValueError(f"{name} must contain both classes (in- and out-of-distribution)")
    return a


def _n_bins(n_bins):
    n_bins = C.integer(n_bins, "n_bins", 1)
    # a few arrays of n_bins + 1 floats (edges, counts, sums): checked before np.linspace allocates them
    C.check_allocation(C.n_bytes((n_bins + 1,), copies=4), f"n_bins={n_bins}: the bins")
    return n_bins


# ---------------------------------------------------------------- log-probabilities
def log_softmax(logits, *, overwrite=False):
    """Log-probabilities from logits over the last axis: ``logits - logsumexp(logits)``.

    A native pass (exp vectorised, parallel over rows) where the NumPy formula
    needs three temporaries of the input's size; the sampled predictives of
    ``bg.nn.Predictive.from_outputs`` and ``bg.pools`` use it.

    Parameters
    ----------
    logits : array (..., C)
        Unnormalised log-probabilities, float32 or float64 (other dtypes are
        converted to float64). Rows whose maximum is not finite follow the
        formula with the maximum taken as 0 (a NaN row gives NaN).
    overwrite : bool
        Write the result into ``logits`` itself when it is a writeable
        C-contiguous float array (no copy).

    Returns
    -------
    array (..., C)
        Log-probabilities in nats, ``logits`` itself when it was overwritten.
    """
    a = C.to_numpy(logits, "logits")
    if a.ndim < 1 or a.shape[-1] < 1:
        raise ValueError(f"logits must have a last (class) axis of length >= 1, got shape {a.shape}")
    if a.dtype.kind not in "biuf":
        raise TypeError(f"logits must be a real array, got dtype {a.dtype}")
    own = (overwrite and a.dtype in (np.float32, np.float64) and a.flags.c_contiguous and a.flags.writeable)
    out = a if own else np.array(a, dtype=a.dtype if a.dtype in (np.float32, np.float64) else np.float64,
                                 order="C", copy=True)
    _backend.kernels().metrics.log_softmax(out)
    return out


def mean_probs(log_probs):
    """The mixture's class probabilities ``mean_s exp(log_probs[s])``, per point.

    Parameters
    ----------
    log_probs : array (S, N, C)
        Sampled log-probabilities (normalised over C).

    Returns
    -------
    array (N, C)
        Probabilities of the S-sample mixture (the ``p-bar`` whose entropy is
        ``decompose``'s total), in ``log_probs``' dtype. Probabilities below
        ``exp(-86)`` (float32) or ``exp(-700)`` (float64) per sample are
        flushed to 0, as in ``decompose``.
    """
    a = check_log_probs(log_probs)
    out = np.empty(a.shape[1:], dtype=a.dtype)
    check_normalised(lambda: _backend.kernels().metrics.mean_probs(a, out), a, "log_probs")
    return out


# ---------------------------------------------------------------- decomposition
@dataclass(frozen=True)
class Decomposition:
    """``total = aleatoric + epistemic`` per point, each ``(N,)`` (nats, or variance units)."""

    total: np.ndarray
    aleatoric: np.ndarray
    epistemic: np.ndarray

    def __iter__(self):  # so that ``total, aleatoric, epistemic = ...`` unpacks
        return iter((self.total, self.aleatoric, self.epistemic))


def decompose(log_probs) -> Decomposition:
    """Predictive entropy = expected entropy + mutual information, per point.

    Parameters
    ----------
    log_probs : array (S, N, C)
        Log-probabilities of C classes for N points under S posterior samples
        (each ``exp(log_probs[s, n])`` sums to one; ``-inf`` is an exact 0).

    Returns
    -------
    Decomposition
        ``total`` = H[mean_s p_s] (predictive entropy), ``aleatoric`` =
        mean_s H[p_s] (expected entropy), ``epistemic`` = total - aleatoric
        (mutual information between label and parameters, BALD), all (N,)
        in nats and >= 0. One native pass over the input.
    """
    a = check_log_probs(log_probs)
    N = a.shape[1]
    t, al, ep = (np.empty(N, dtype=a.dtype) for _ in range(3))
    check_normalised(lambda: _backend.kernels().metrics.decompose(a, t, al, ep), a, "log_probs")
    return Decomposition(t, al, ep)


def decompose_regression(means, variances, kind="variance") -> Decomposition:
    """Regression uncertainty from S sampled Gaussian predictions.

    Parameters
    ----------
    means : array (S, N, ...)
        Predictive means of each posterior sample.
    variances : array (S, N, ...) or broadcastable to it (e.g. a scalar)
        Noise (aleatoric) variances of each sample, > 0.
    kind : {"variance", "entropy"}
        ``"variance"``: law of total variance, total = mean_s var_s +
        var_s(mean_s) (population variance over samples), aleatoric the first
        term, epistemic the second (units of y squared).
        ``"entropy"``: the Gaussian-entropy version (Depeweg et al., 2018):
        total = 0.5 log(2 pi e total_var) of the moment-matched Gaussian,
        aleatoric = mean_s 0.5 log(2 pi e var_s), epistemic = total -
        aleatoric (>= 0 by Jensen), nats, per output dimension.
    """
    kind = C.option(kind, "kind", ("variance", "entropy"))
    m = C.as_array(means, "means", min_ndim=2)
    dt = m.dtype
    v = C.as_array(variances, "variances", dtype=dt)
    C.positive(v, "variances")
    try:
        v = np.broadcast_to(v, m.shape)
    except ValueError:
        raise ValueError(f"variances of shape {v.shape} do not broadcast to means {m.shape}") from None
    alea = v.mean(axis=0)
    epi = m.var(axis=0)
    tot = alea + epi
    if kind == "variance":
        return Decomposition(tot, alea, epi)
    c = 0.5 * math.log(2 * math.pi * math.e)
    h_tot = c + 0.5 * np.log(tot)
    h_alea = c + 0.5 * np.log(v).mean(axis=0)
    return Decomposition(h_tot.astype(dt), h_alea.astype(dt), np.maximum(h_tot - h_alea, 0).astype(dt))


# ---------------------------------------------------------------- classification metrics
def accuracy(probs, y) -> float:
    """Fraction of points whose top class (first on ties) is the label.

    Shapes: ``probs`` (N, C): probabilities, rows summing to one; ``y`` (N,): integer labels in
    [0, C).
    """
    p, y = check_probs(probs, labels=y)
    return float(np.mean(np.argmax(p, axis=1) == y))


def nll(probs, y, reduction="mean") -> float:
    """Negative log-likelihood -log p[y] in nats: mean (default) or sum over points.

    A probability of exactly 0 on the label gives ``inf`` (not clipped).

    Shapes: ``probs`` (N, C): probabilities, rows summing to one; ``y`` (N,): integer labels in
    [0, C).
    """
    reduction = C.option(reduction, "reduction", ("mean", "sum"))
    p, y = check_probs(probs, labels=y)
    with np.errstate(divide="ignore"):
        v = -np.log(p[np.arange(p.shape[0]), y].astype(np.float64))
    return float(v.mean() if reduction == "mean" else v.sum())


def brier(probs, y) -> float:
    """Multi-class Brier score: mean over points of sum_c (p_c - 1[y = c])^2, in [0, 2].

    Shapes: ``probs`` (N, C): probabilities, rows summing to one; ``y`` (N,): integer labels in
    [0, C).
    """
    p, y = check_probs(probs, labels=y)
    d = p.astype(np.float64)
    d[np.arange(p.shape[0]), y] -= 1.0
    return float(np.mean(np.sum(d * d, axis=1)))


def _bin_index(conf, n_bins):
    """Equal-width, right-closed bins on [0, 1]: bin b holds (b/B, (b+1)/B]; 0 goes to bin 0."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)


def reliability_diagram(probs, y, n_bins=15) -> dict:
    """Top-label reliability-diagram data.

    Bins are equal-width on [0, 1] and right-closed: bin b holds confidences
    in (b/B, (b+1)/B] (a confidence of exactly 0 would go to bin 0).

    Returns
    -------
    dict with ``edges`` (B+1,), ``confidence`` (B,) mean top-label
    probability per bin, ``accuracy`` (B,) fraction correct per bin (NaN for
    empty bins), ``count`` (B,) points per bin.
    """
    n_bins = _n_bins(n_bins)
    p, y = check_probs(probs, labels=y)
    conf = p.max(axis=1).astype(np.float64)
    correct = (np.argmax(p, axis=1) == y).astype(np.float64)
    b = _bin_index(conf, n_bins)
    cnt = np.bincount(b, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mconf = np.bincount(b, weights=conf, minlength=n_bins) / cnt
        macc = np.bincount(b, weights=correct, minlength=n_bins) / cnt
    return {"edges": np.linspace(0.0, 1.0, n_bins + 1), "confidence": mconf, "accuracy": macc,
            "count": cnt.astype(np.int64)}


def ece(probs, y, n_bins=15) -> float:
    """Expected calibration error of the top label (Guo et al., 2017).

    ``sum_b (n_b / N) |acc_b - conf_b|`` over equal-width right-closed bins
    (b/B, (b+1)/B] of the top-label probability; in [0, 1].

    Shapes: ``probs`` (N, C): probabilities, rows summing to one; ``y`` (N,): integer labels in
    [0, C).
    """
    d = reliability_diagram(probs, y, n_bins)
    m = d["count"] > 0
    n = d["count"].sum()
    return float(np.sum(d["count"][m] / n * np.abs(d["accuracy"][m] - d["confidence"][m])))


def adaptive_ece(probs, y, n_bins=15) -> float:
    """ECE with equal-mass bins: the points sorted by top-label probability
    (stable sort) are split into ``n_bins`` groups of sizes differing by at most one.

    Shapes: ``probs`` (N, C): probabilities, rows summing to one; ``y`` (N,): integer labels in
    [0, C).
    """
    n_bins = _n_bins(n_bins)
    p, y = check_probs(probs, labels=y)
    conf = p.max(axis=1).astype(np.float64)
    correct = (np.argmax(p, axis=1) == y).astype(np.float64)
    order = np.argsort(conf, kind="stable")
    total = 0.0
    for idx in np.array_split(order, min(n_bins, len(order))):
        total += len(idx) * abs(correct[idx].mean() - conf[idx].mean())
    return float(total / len(order))


def classwise_ece(probs, y, n_bins=15) -> float:
    """Class-wise ECE (Kull et al., 2019): the mean over classes of the ECE of
    p_c against 1[y = c], equal-width right-closed bins over all points.

    Shapes: ``probs`` (N, C): probabilities, rows summing to one; ``y`` (N,): integer labels in
    [0, C).
    """
    n_bins = _n_bins(n_bins)
    p, y = check_probs(probs, labels=y)
    N, K = p.shape
    total = 0.0
    for c in range(K):
        pc = p[:, c].astype(np.float64)
        hit = (y == c).astype(np.float64)
        b = _bin_index(pc, n_bins)
        sp = np.bincount(b, weights=pc, minlength=n_bins)
        sh = np.bincount(b, weights=hit, minlength=n_bins)
        total += np.sum(np.abs(sh - sp)) / N
    return float(total / K)


def aurc(probs, y, confidence=None) -> float:
    """Area under the risk-coverage curve (Geifman & El-Yaniv, 2017).

    Points are accepted in order of decreasing ``confidence`` (default: the
    top-label probability; stable order on ties); the risk at coverage k/N is
    the error rate of the k most confident points; AURC is its mean over
    k = 1..N. Lower is better.

    Shapes: ``probs`` (N, C): probabilities, rows summing to one; ``y`` (N,): integer labels in
    [0, C). ``confidence`` (N,) if given.
    """
    p, y = check_probs(probs, labels=y)
    err = (np.argmax(p, axis=1) != y).astype(np.float64)
    if confidence is None:
        conf = p.max(axis=1).astype(np.float64)
    else:
        conf = C.as_array(confidence, "confidence", ndim=1)
        if conf.shape[0] != p.shape[0]:
            raise ValueError(f"confidence must have shape ({p.shape[0]},), got {conf.shape}")
    order = np.argsort(-conf, kind="stable")
    risk = np.cumsum(err[order]) / np.arange(1, len(err) + 1)
    return float(risk.mean())


@dataclass
class TemperatureScaling:
    """Fitted temperature: ``transform(logits)`` returns softmax(logits / T) (N, C)."""

    temperature: float

    def __post_init__(self):
        t = C.real(self.temperature, "temperature")
        if not (math.isfinite(t) and t > 0):  # T <= 0 would invert or flatten the probabilities
            raise ValueError(f"temperature must be positive and finite, got {self.temperature}")

    def transform(self, logits):
        """Calibrated class probabilities (N, C) of ``logits`` (N, C)."""
        z = C.as_array(logits, "logits", ndim=2)
        return special.softmax(z / self.temperature, axis=1)

    def log_probs(self, logits):
        """Calibrated log-probabilities (N, C) of ``logits`` (N, C), in nats."""
        z = C.as_array(logits, "logits", ndim=2)
        return special.log_softmax(z / self.temperature, axis=1)


def fit_temperature(logits, y, bounds=(1e-2, 1e2)) -> TemperatureScaling:
    """Temperature scaling (Guo et al., 2017) fitted on validation NLL.

    Parameters
    ----------
    logits : array (N, C)
        Validation logits (or log-probabilities: scaling is invariant to a
        per-row shift).
    y : int array (N,)
    bounds : (low, high)
        Search range of T; the NLL is minimised over log T by a bounded
        scalar search (the NLL is smooth and unimodal in log T in practice).
    """
    z = C.as_array(logits, "logits", ndim=2).astype(np.float64)
    y = C.class_labels(y, z.shape[0], z.shape[1])
    if isinstance(bounds, (str, bytes)) or not hasattr(bounds, "__len__") or len(bounds) != 2:
        raise TypeError(f"bounds must be a pair (low, high), got {bounds!r}")
    lo, hi = (C.real(b, "bounds") for b in bounds)
    if not (0 < lo < hi and math.isfinite(hi)):
        raise ValueError(f"bounds must satisfy 0 < low < high < inf, got {bounds}")
    rows = np.arange(z.shape[0])

    def f(logt):
        return -special.log_softmax(z * math.exp(-logt), axis=1)[rows, y].mean()

    res = optimize.minimize_scalar(f, bounds=(math.log(lo), math.log(hi)), method="bounded",
                                   options={"xatol": 1e-6})
    return TemperatureScaling(float(math.exp(res.x)))


# ---------------------------------------------------------------- regression metrics
def _reg_args(y, mean, scale, scale_name):
    yy = C.as_array(y, "y", min_ndim=1)
    m = C.as_array(mean, "mean", dtype=np.float64)
    s = C.as_array(scale, scale_name, dtype=np.float64)
    C.positive(s, scale_name)
    try:
        shape = np.broadcast_shapes(yy.shape, m.shape, s.shape)
    except ValueError:
        raise ValueError(f"y {yy.shape}, mean {m.shape} and {scale_name} {s.shape} do not broadcast") from None
    if shape != yy.shape:
        raise ValueError(f"mean and {scale_name} must broadcast to the shape of y {yy.shape}")
    return yy.astype(np.float64), m, s


def gaussian_nll(y, mean, var, reduction="mean") -> float:
    """Gaussian NLL 0.5 log(2 pi var) + (y - mean)^2 / (2 var) in nats, mean (default) or sum.

    Shapes: ``y``, ``mean`` and ``var`` broadcast together, typically all (N,).
    """
    reduction = C.option(reduction, "reduction", ("mean", "sum"))
    y, m, v = _reg_args(y, mean, var, "var")
    val = 0.5 * (np.log(2 * math.pi * v) + (y - m) ** 2 / v)
    val = np.broadcast_to(val, y.shape)
    return float(val.mean() if reduction == "mean" else val.sum())


def mixture_nll(y, means, variances, reduction="mean") -> float:
    """NLL of the equal-weight Gaussian mixture of S sampled predictions:
    ``-log (1/S) sum_s N(y; means[s], variances[s])``; means and variances
    have shape ``(S, *y.shape)``, y ``(N,)`` or any shape."""
    reduction = C.option(reduction, "reduction", ("mean", "sum"))
    yy = C.as_array(y, "y", min_ndim=1).astype(np.float64)
    m = C.as_array(means, "means", dtype=np.float64, min_ndim=2)
    v = C.as_array(variances, "variances", dtype=np.float64)
    C.positive(v, "variances")
    if m.shape[1:] != yy.shape:
        raise ValueError(f"means must have shape (S, *{yy.shape}), got {m.shape}")
    try:
        v = np.broadcast_to(v, m.shape)
    except ValueError:
        raise ValueError(f"variances {v.shape} do not broadcast to means {m.shape}") from None
    lp = -0.5 * (np.log(2 * math.pi * v) + (yy - m) ** 2 / v)
    val = -(special.logsumexp(lp, axis=0) - math.log(m.shape[0]))
    return float(val.mean() if reduction == "mean" else val.sum())


def calibration_curve(y, mean, std, n_levels=99):
    """Calibration of Gaussian predictive intervals (as uncertainty-toolbox's
    centred intervals): for expected coverage p in linspace(0, 1, n_levels),
    the observed fraction of y inside mean +- std * Phi^{-1}((1 + p) / 2).

    Returns (expected (n_levels,), observed (n_levels,)).
    """
    n_levels = C.integer(n_levels, "n_levels", 2)
    y, m, s = _reg_args(y, mean, std, "std")
    z = np.abs(np.broadcast_to((y - m) / s, y.shape)).ravel()
    expected = np.linspace(0.0, 1.0, n_levels)
    half = stats.norm.ppf(0.5 + expected / 2)  # inf at p = 1
    observed = (z[None, :] <= half[:, None]).mean(axis=1)
    return expected, observed


def miscalibration_area(y, mean, std, n_levels=99) -> float:
    """Area between the calibration curve and the diagonal, by the trapezoid
    rule over ``n_levels`` coverage levels (0 = perfectly calibrated, <= 0.5).

    Shapes: ``y``, ``mean`` and ``std`` broadcast together, typically all (N,).
    """
    e, o = calibration_curve(y, mean, std, n_levels)
    return float(np.trapezoid(np.abs(o - e), e) if hasattr(np, "trapezoid") else np.trapz(np.abs(o - e), e))


def crps_gaussian(y, mean, std, reduction="mean") -> float:
    """Continuous ranked probability score of N(mean, std^2) at y (Gneiting &
    Raftery, 2007): std [z (2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi)], z = (y - mean)/std.
    Units of y; lower is better.

    Shapes: ``y``, ``mean`` and ``std`` broadcast together, typically all (N,).
    """
    reduction = C.option(reduction, "reduction", ("mean", "sum"))
    y, m, s = _reg_args(y, mean, std, "std")
    z = (y - m) / s
    val = s * (z * (2 * special.ndtr(z) - 1) + 2 * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
               - 1 / math.sqrt(math.pi))
    val = np.broadcast_to(val, y.shape)
    return float(val.mean() if reduction == "mean" else val.sum())


# ---------------------------------------------------------------- OOD detection
def _ood_args(scores, is_ood):
    s = C.as_array(scores, "scores", dtype=np.float64, ndim=1)
    return s, _binary(is_ood, s.shape[0])


def _roc(s, pos):
    """Points of the ROC curve at each distinct threshold, thresholds decreasing."""
    order = np.argsort(-s, kind="stable")
    s, pos = s[order], pos[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last index of each tied group
    tp = np.cumsum(pos)[last].astype(np.float64)
    fp = (last + 1 - tp)
    return tp / pos.sum(), fp / (~pos).sum(), tp, fp


def auroc(scores, is_ood) -> float:
    """Area under the ROC curve, OOD as the positive class, higher score = more OOD.

    Equal to P(score_ood > score_in) + P(tie) / 2 (Mann-Whitney, ties halved).
    """
    s, pos = _ood_args(scores, is_ood)
    r = stats.rankdata(s)  # average ranks on ties
    n1, n0 = pos.sum(), (~pos).sum()
    return float((r[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def aupr(scores, is_ood) -> float:
    """Area under the precision-recall curve of detecting OOD (positive class)
    as average precision: sum_k (R_k - R_{k-1}) P_k over distinct thresholds
    (scikit-learn's ``average_precision_score``).

    Shapes: ``scores`` (N,), higher = more out-of-distribution; ``is_ood`` (N,) booleans (or
    0/1).
    """
    s, pos = _ood_args(scores, is_ood)
    tpr, _, tp, fp = _roc(s, pos)
    prec = tp / (tp + fp)
    return float(np.sum(np.diff(np.r_[0.0, tpr]) * prec))


def fpr_at_tpr(scores, is_ood, tpr=0.95) -> float:
    """False-positive rate (in-distribution points flagged as OOD) at the first
    threshold (from the top) where the true-positive rate reaches ``tpr`` (0.95:
    the usual "FPR at 95% TPR"), OOD as the positive class.

    Shapes: ``scores`` (N,), higher = more out-of-distribution; ``is_ood`` (N,) booleans (or
    0/1).
    """
    target = C.real(tpr, "tpr")
    if not 0 < target <= 1:
        raise ValueError(f"tpr must be in (0, 1], got {tpr}")
    s, pos = _ood_args(scores, is_ood)
    t, f, _, _ = _roc(s, pos)
    k = int(np.argmax(t >= target - 1e-12))
    return float(f[k])
