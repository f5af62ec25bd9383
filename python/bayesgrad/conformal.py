"""Split conformal prediction on any model's outputs (NumPy arrays).

Call shape: calibrate on a held-out set the model was not trained on, then
predict sets or intervals for new points::

    cal = bg.conformal.calibrate_regression(y_cal, mean_cal, std_cal, alpha=0.1)
    lo, hi = cal.interval(mean_test, std_test)
    cal = bg.conformal.calibrate_classification(probs_cal, y_cal, alpha=0.1, method="aps")
    sets = cal.predict_sets(probs_test, seed=0)          # (N, C) bool

Guarantee (Vovk et al. 2005; Angelopoulos & Bates 2021): if the calibration
and test points are exchangeable, ``P(y_test in set) >= 1 - alpha`` over the
draw of both, whatever the model. The threshold is the
``ceil((n + 1)(1 - alpha))``-th smallest calibration score; with too few
calibration points for the requested ``alpha`` (that rank above n) it is
infinite and every set is the whole label space (intervals unbounded).

Scores:

* regression ``"absolute"``: ``|y - mean|`` (intervals of constant width);
  ``"normalized"``: ``|y - mean| / std`` (width proportional to the model's
  predictive standard deviation, e.g. ``Predictive.var ** 0.5``).
* classification ``"lac"`` (least ambiguous set-valued classifier, Sadinle et
  al. 2019): ``1 - p_y``, the smallest sets on average; ``"aps"`` (adaptive
  prediction sets, Romano et al. 2020): the probability mass of the classes
  ranked above y plus ``u p_y`` (``u`` uniform when ``randomized``, else 1);
  ``"raps"`` (Angelopoulos et al. 2021): APS plus ``lam (rank(y) - k_reg)+``,
  which keeps sets small when many classes have tiny probabilities.

Randomized APS/RAPS draw their uniforms from Philox stream
``fold_in(stream, "conformal")`` per point, so sets are reproducible.

On the scikit-learn estimators (``bayesgrad.sklearn``):
``est.conformalize(X_cal, y_cal, alpha)`` calibrates a fitted estimator on
held-out rows, then ``BayesianMLPRegressor.predict_interval(X)`` gives
``(lo, hi)`` and ``BayesianMLPClassifier.predict_set(X)`` a boolean (N, C)
set matrix in the order of ``classes_`` (``conformalize_estimator``,
``estimator_interval``, ``estimator_sets`` here do the work). Refitting the
estimator discards the calibration.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import _checks as C
from . import random as _random

__all__ = ["calibrate_regression", "calibrate_classification", "RegressionConformal", "ClassificationConformal",
           "conformal_quantile", "coverage", "set_size", "REGRESSION_SCORES", "CLASSIFICATION_METHODS",
           "conformalize_estimator", "estimator_interval", "estimator_sets"]

REGRESSION_SCORES = ("absolute", "normalized")
CLASSIFICATION_METHODS = ("lac", "aps", "raps")


def _alpha(alpha):
    a = float(C.scalar(alpha, "alpha"))
    if not 0 < a < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return a


def _rank(n, alpha):
    """ceil((n + 1)(1 - alpha)), with a product within 8 ulps of an integer taken as that integer.

    alpha is almost always a decimal (0.1, 0.7, 0.95) that float64 cannot hold: 1 - 0.7 rounds to
    0.30000000000000004, so (9 + 1)(1 - 0.7) came out as 3.0000000000000004 and ceil picked the 4th
    smallest score where the user's alpha means the 3rd (one rank too high: a larger threshold,
    over-wide sets). Two roundings (1 - alpha, the product) move it by at most a few ulps; an exact
    alpha that lands so close to an integer without being one is not a level anyone asks for.
    """
    x = (n + 1) * (1.0 - alpha)
    r = round(x)
    if abs(x - r) <= 8 * math.ulp(max(abs(x), 1.0)):
        return int(r)
    return math.ceil(x)


def conformal_quantile(scores, alpha):
    """The split-conformal threshold of calibration ``scores`` (n,): their
    ``ceil((n + 1)(1 - alpha))``-th smallest value, or +inf when that rank
    exceeds n (too few points for this alpha). The rank is that of the decimal
    alpha written: a product within a few ulps of an integer is that integer."""
    s = C.as_array(scores, "scores", ndim=1, finite=False)
    if np.any(np.isnan(s)):
        raise ValueError("scores must not contain NaN")
    alpha = _alpha(alpha)
    n = s.shape[0]
    k = _rank(n, alpha)
    if k > n:
        return math.inf
    return float(np.partition(s, k - 1)[k - 1])


# --------------------------------------------------------------------------- regression
@dataclass(frozen=True)
class RegressionConformal:
    """A calibrated split-conformal regressor: ``interval`` gives ``mean -/+ q``
    (absolute) or ``mean -/+ q std`` (normalized)."""

    quantile: float
    alpha: float
    score: str
    n_calibration: int

    def interval(self, mean, std=None):
        """Lower and upper bounds, each shaped like ``mean`` (N,) or (N, D)."""
        m = C.as_array(mean, "mean", allow_empty=True)
        if self.score == "normalized":
            if std is None:
                raise ValueError("std is required for the normalized score")
            s = C.as_array(std, "std", dtype=m.dtype, allow_empty=True)
            if s.shape != m.shape:
                raise ValueError(f"std must have the shape of mean {m.shape}, got {s.shape}")
            if np.any(s <= 0):
                raise ValueError("std must be positive")
            half = self.quantile * s
        else:
            half = np.full_like(m, self.quantile)
        return m - half, m + half


def calibrate_regression(y, mean, std=None, alpha=0.1, score=None):
    """Calibrate on held-out targets ``y`` (N,) (or (N, 1)) with the model's
    predictive ``mean`` (same shape) and, for the normalized score, its
    predictive standard deviation ``std`` (same shape, > 0). ``score``
    defaults to "normalized" when ``std`` is given, else "absolute". One
    output at a time: calibrate each output of a multi-output model apart."""
    if score is None:
        score = "absolute" if std is None else "normalized"
    score = C.option(score, "score", REGRESSION_SCORES)
    m = C.as_array(mean, "mean")
    yy = C.as_array(y, "y", dtype=m.dtype)
    if m.ndim == 2 and m.shape[1] == 1:
        m = m[:, 0]
    if yy.ndim == 2 and yy.shape[1] == 1:
        yy = yy[:, 0]
    if m.ndim != 1:
        raise ValueError(f"mean must have shape (N,) (one output; calibrate each output apart), got {m.shape}")
    if yy.shape != m.shape:
        raise ValueError(f"y must have the shape of mean {m.shape}, got {yy.shape}")
    r = np.abs(yy - m)
    if score == "normalized":
        if std is None:
            raise ValueError("std is required for the normalized score")
        s = C.as_array(std, "std", dtype=m.dtype)
        if s.ndim == 2 and s.shape[1] == 1:
            s = s[:, 0]
        if s.shape != m.shape:
            raise ValueError(f"std must have the shape of mean {m.shape}, got {s.shape}")
        if np.any(s <= 0):
            raise ValueError("std must be positive")
        r = r / s
    alpha = _alpha(alpha)
    return RegressionConformal(conformal_quantile(r, alpha), alpha, score, int(m.shape[0]))


# --------------------------------------------------------------------------- classification
def _sorted_scores(p):
    """Per row: classes by decreasing probability, and the mass above each class."""
    order = np.argsort(-p, axis=1, kind="stable")  # ties: lower class index first
    ps = np.take_along_axis(p, order, axis=1)
    above = np.cumsum(ps, axis=1) - ps  # mass of the classes ranked strictly above
    return order, ps, above


def _class_scores(p, method, u, k_reg, lam):
    """Scores (N, C) of every class of every row (score of class c in row n)."""
    if method == "lac":
        return 1.0 - p
    order, ps, above = _sorted_scores(p)
    s_sorted = above + u[:, None] * ps
    if method == "raps":
        rank = np.arange(1, p.shape[1] + 1)[None, :]
        s_sorted = s_sorted + lam * np.maximum(rank - k_reg, 0)
    s = np.empty_like(s_sorted)
    np.put_along_axis(s, order, s_sorted, axis=1)
    return s


@dataclass(frozen=True)
class ClassificationConformal:
    """A calibrated split-conformal classifier (see the module docstring)."""

    quantile: float
    alpha: float
    method: str
    randomized: bool
    k_reg: int
    lam: float
    n_calibration: int
    n_classes: int | None = None  # C of the calibration probabilities (None: not recorded)

    def predict_sets(self, probs, seed=0, stream=0):
        """Prediction sets (N, C) bool for predictive probabilities ``probs`` (N, C)."""
        from .uncertainty import check_probs

        p = check_probs(probs, "probs").astype(np.float64)
        if self.n_classes is not None and p.shape[1] != self.n_classes:
            raise ValueError(f"probs must have {self.n_classes} classes (as calibrated), got shape {p.shape}")
        u = _uniforms(p.shape[0], self.method, self.randomized, seed, stream)
        return _class_scores(p, self.method, u, self.k_reg, self.lam) <= self.quantile


def _uniforms(n, method, randomized, seed, stream):
    if method == "lac" or not randomized:
        return np.ones(n)
    return _random.uniform(n, seed=seed, stream=_random.fold_in(_random.check_stream(stream), "conformal"))


def calibrate_classification(probs, y, alpha=0.1, method="aps", randomized=True, k_reg=1, lam=0.01, seed=0,
                             stream=0):
    """Calibrate on held-out predictive probabilities ``probs`` (N, C) and labels ``y`` (N,).

    ``method``: "lac", "aps" or "raps" (``k_reg``, ``lam``: RAPS's
    regularisation, rank from which it charges ``lam`` per rank). The
    calibration uniforms use ``seed``/``stream`` (give predict_sets others).
    """
    from .uncertainty import check_probs

    method = C.option(method, "method", CLASSIFICATION_METHODS)
    if not isinstance(randomized, (bool, np.bool_)):
        raise TypeError(f"randomized must be a bool, got {type(randomized).__name__}")
    alpha = _alpha(alpha)
    k_reg = C.integer(k_reg, "k_reg", 0)
    lam = float(C.scalar(lam, "lam"))
    if not lam >= 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    p, labels = check_probs(probs, "probs", labels=y)
    p = p.astype(np.float64)
    u = _uniforms(p.shape[0], method, bool(randomized), seed, stream)
    s = _class_scores(p, method, u, k_reg, lam)[np.arange(p.shape[0]), labels]
    return ClassificationConformal(conformal_quantile(s, alpha), alpha, method, bool(randomized), k_reg, lam,
                                   int(p.shape[0]), int(p.shape[1]))


# --------------------------------------------------------------------------- metrics
def coverage(prediction, y):
    """Fraction of points whose target is covered: ``prediction`` is a boolean
    set matrix (N, C) with labels ``y`` (N,), or an interval ``(lo, hi)`` of
    arrays shaped like the targets ``y``."""
    if isinstance(prediction, tuple):
        if len(prediction) != 2:
            raise ValueError(f"prediction as a tuple must be an interval (lo, hi), got {len(prediction)} items")
        lo, hi = prediction
        lo = C.as_array(lo, "lo", finite=False)
        hi = C.as_array(hi, "hi", dtype=lo.dtype, finite=False)
        yy = C.as_array(y, "y", dtype=lo.dtype)
        if not lo.shape == hi.shape == yy.shape:
            raise ValueError(f"lo, hi and y must have one shape, got {lo.shape}, {hi.shape}, {yy.shape}")
        return float(np.mean((lo <= yy) & (yy <= hi)))
    sets = np.asarray(prediction)
    if sets.dtype != bool or sets.ndim != 2:
        raise TypeError("prediction must be a boolean (N, C) set matrix or a (lo, hi) tuple")
    labels = C.class_labels(y, sets.shape[0], sets.shape[1])
    return float(np.mean(sets[np.arange(sets.shape[0]), labels]))


def set_size(sets):
    """Sizes (N,) of prediction sets (N, C) bool; their mean is the usual efficiency figure."""
    s = np.asarray(sets)
    if s.dtype != bool or s.ndim != 2:
        raise TypeError("sets must be a boolean (N, C) array")
    return s.sum(axis=1)


# --------------------------------------------------------------------------- scikit-learn estimators
def conformalize_estimator(est, X_cal, y_cal, alpha=0.1, **options):
    """Calibrate a fitted ``bayesgrad.sklearn`` estimator on held-out rows; returns ``est``.

    Parameters
    ----------
    est : fitted ``BayesianMLPRegressor`` or ``BayesianMLPClassifier`` (not
        trained on these rows: the guarantee needs them exchangeable with the test rows)
    X_cal : (n, D) array; y_cal : (n,) targets or class labels (labels from ``classes_``)
    alpha : miscoverage in (0, 1)
    options : regressor: ``score`` ("normalized" by the predictive std, the
        default, or "absolute"); classifier: ``method`` ("aps" default, "lac",
        "raps"), ``randomized``, ``k_reg``, ``lam`` as ``calibrate_classification``;
        its uniforms come from the estimator's seed on stream 0

    Sets ``est.conformal_`` (a ``RegressionConformal`` / ``ClassificationConformal``).
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(est, "model_")
    if est._task == "regression":
        bad = set(options) - {"score"}
        if bad:
            raise TypeError(f"unexpected option(s) for a regressor: {sorted(bad)}")
        score = C.option(options.get("score", "normalized"), "score", REGRESSION_SCORES)
        mean, std = est.predict(X_cal, return_std=True)
        y = C.as_array(y_cal, "y_cal", dtype=np.float64)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.shape != mean.shape:
            raise ValueError(f"y_cal must have shape {mean.shape}, got {y.shape}")
        cal = calibrate_regression(y, mean, std if score == "normalized" else None, alpha, score)
    else:
        bad = set(options) - {"method", "randomized", "k_reg", "lam"}
        if bad:
            raise TypeError(f"unexpected option(s) for a classifier: {sorted(bad)}")
        probs = est.predict_proba(X_cal)
        labels = _label_indices(est.classes_, y_cal, probs.shape[0])
        cal = calibrate_classification(probs, labels, alpha, seed=est.seed_, stream=0, **options)
    est.conformal_ = cal
    est._conformal_model = est.model_
    return est


def _calibration(est):
    cal = getattr(est, "conformal_", None)
    if cal is None:
        raise RuntimeError("call conformalize(X_cal, y_cal, alpha) first")
    if getattr(est, "_conformal_model", None) is not getattr(est, "model_", None):
        raise RuntimeError("the estimator was refitted after conformalize(); call conformalize() again")
    return cal


def _label_indices(classes, y, n):
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.shape != (n,):
        raise ValueError(f"y_cal must have shape ({n},), got {y.shape}")
    idx = np.searchsorted(classes, y)
    idx = np.clip(idx, 0, classes.size - 1)
    if not np.all(classes[idx] == y):
        raise ValueError("y_cal holds labels that are not among the estimator's classes_")
    return idx


def estimator_interval(est, X):
    """Conformal interval ``(lo, hi)``, each (N,), of a conformalized regressor at ``X``."""
    cal = _calibration(est)
    mean, std = est.predict(X, return_std=True)
    return cal.interval(mean, std if cal.score == "normalized" else None)


def estimator_sets(est, X, seed=None, stream=1):
    """Conformal prediction sets (N, C) bool, columns in ``classes_`` order, of a
    conformalized classifier at ``X``; randomized APS/RAPS uniforms from ``seed``
    (default the estimator's seed) on ``stream`` (default 1: not the calibration's)."""
    cal = _calibration(est)
    return cal.predict_sets(est.predict_proba(X), seed=est.seed_ if seed is None else seed, stream=stream)
