"""Every posterior of the package on the user's data: K-fold cross-validation.

:func:`compare` trains each method of the high-level front ends
(``bayesgrad._models.METHODS``: MFVI, MC dropout, Laplace, deep ensembles,
SWAG, MultiSWAG, SGHMC) on each training part of a K-fold split and scores
its predictive on the held-out part. Inputs (and regression targets) are
standardised inside each fold, on its training rows only
(``bayesgrad._models.BayesianMLP`` does it), so no statistic of a test row
reaches its model. The folds are the same for every method.

Metrics, per held-out point, averaged over the fold's points and then over
the folds (the table gives the mean and its standard error over folds):

- regression: ``rmse`` of the predictive mean (units of y); ``nll`` of the
  Gaussian with the predictive mean and total variance (nats per point;
  moment-matched for the sampled posteriors); ``coverage90``, the fraction of
  y in the central 90% interval mean +- 1.645 std (best: closest to 0.9);
  ``calibration_error``, the miscalibration area of the Gaussian intervals
  (``bayesgrad.uncertainty.miscalibration_area``, 0 to 0.5);
- classification: ``accuracy``, ``nll`` (nats per point), ``ece``
  (``bayesgrad.uncertainty.ece``, 15 bins);
- both: ``fit_time`` and ``predict_time``, wall-clock seconds per fold.

``bayesgrad compare DATA.csv --target y`` is the command-line front end
(``bayesgrad._cli_compare``).
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass

import numpy as np

from . import _checks as C
from . import random as _random
from ._models import METHODS, TASKS

__all__ = ["compare", "Comparison", "kfold", "METRICS", "BEST", "METHODS"]

#: Metric names per task, in the columns' order.
METRICS = {
    "regression": ("rmse", "nll", "coverage90", "calibration_error", "fit_time", "predict_time"),
    "classification": ("accuracy", "nll", "ece", "fit_time", "predict_time"),
}

#: How the best method per metric is chosen: ``"min"``, ``"max"`` or a target value (closest wins).
BEST = {"rmse": "min", "nll": "min", "coverage90": 0.9, "calibration_error": "min", "accuracy": "max",
        "ece": "min", "fit_time": "min", "predict_time": "min"}

# the 95% standard-normal quantile: y inside mean +- _Z90 std with probability 0.9
_Z90 = 1.6448536269514722
# integer-valued targets with at most this many distinct values count as class labels (task="auto")
_MAX_AUTO_CLASSES = 20


def kfold(n, n_folds, seed=0):
    """The K-fold split of ``n`` rows: a list of ``n_folds`` sorted index arrays
    (int64), disjoint, covering ``range(n)``, sizes differing by at most one.

    The rows are ordered by a Philox permutation (``seed``, the ``"split"``
    stream), the same on every backend.
    """
    n = C.integer(n, "n", 2)
    n_folds = C.integer(n_folds, "n_folds", 2)
    if n_folds > n:
        raise ValueError(f"n_folds must be at most the number of rows ({n}), got {n_folds}")
    seed = _random.resolve_seed(seed)
    perm = np.argsort(_random.uniform(n, seed=seed, stream=_random.fold_in(0, "split")), kind="stable")
    return [np.sort(part).astype(np.int64) for part in np.array_split(perm, n_folds)]


@dataclass(frozen=True)
class Comparison:
    """Result of :func:`compare`.

    Attributes
    ----------
    task : {"regression", "classification"}
    methods : tuple of str, M methods (rows of the table)
    metrics : tuple of str, F metric names (:data:`METRICS` of the task)
    scores : ndarray (M, K, F), each metric per method and fold
    n_rows : int, rows of the data
    seed : int, the seed of the folds and the models
    options : dict, {method: the options it was trained with} (the defaults resolved for the
        method and task: Adam's step, early stopping, the epoch count and patience)
    """

    task: str
    methods: tuple
    metrics: tuple
    scores: np.ndarray
    n_rows: int
    seed: int
    options: dict

    @property
    def mean(self):
        """(M, F) mean of each metric over the folds."""
        return self.scores.mean(axis=1)

    @property
    def stderr(self):
        """(M, F) standard error of the mean over the K folds (0 for K = 1)."""
        k = self.scores.shape[1]
        return self.scores.std(axis=1, ddof=1) / math.sqrt(k) if k > 1 else np.zeros_like(self.mean)

    @property
    def best(self):
        """{metric: method} of the best mean per metric (:data:`BEST` says how; first on ties)."""
        out = {}
        for j, m in enumerate(self.metrics):
            v = self.mean[:, j]
            rule = BEST[m]
            key = v if rule == "min" else -v if rule == "max" else np.abs(v - rule)
            out[m] = self.methods[int(np.argmin(key))]
        return out

    def rows(self):
        """The table as a list of dicts, one per method: ``method``, then for each
        metric its mean, ``<metric>_se`` (standard error) and ``<metric>_best`` (bool)."""
        best = self.best
        out = []
        for i, meth in enumerate(self.methods):
            r = {"method": meth}
            for j, m in enumerate(self.metrics):
                r[m] = float(self.mean[i, j])
                r[f"{m}_se"] = float(self.stderr[i, j])
                r[f"{m}_best"] = best[m] == meth
            out.append(r)
        return out

    def to_csv(self, path):
        """Write :meth:`rows` to ``path`` (CSV with a header row); returns the path."""
        from ._table import write_csv

        rows = self.rows()
        cols = list(rows[0])
        write_csv(path, cols, ([r[c] for c in cols] for r in rows))
        return path

    def plot(self, path, *, title=None):
        """Bar chart of each metric per method (± standard error, best in colour)
        as a PNG at ``path`` (``bayesgrad.plotting.plot_comparison``); returns the path."""
        from . import plotting

        return plotting.plot_comparison(self.methods, self.metrics, self.mean, self.stderr, self.best, path,
                                        title=title)

    def format(self):
        """The table as text: mean ± standard error over folds, ``*`` on the best per metric."""
        best = self.best
        head = ["method"] + [f"{m}{_UNITS.get(m, '')}" for m in self.metrics]
        cells = []
        for i, meth in enumerate(self.methods):
            row = [meth]
            for j, m in enumerate(self.metrics):
                mark = "*" if best[m] == meth else " "
                row.append(f"{_fmt(self.mean[i, j])} ± {_fmt(self.stderr[i, j])}{mark}")
            cells.append(row)
        widths = [max(len(r[c]) for r in [head] + cells) for c in range(len(head))]
        lines = ["  ".join(h.ljust(w) if c == 0 else h.rjust(w) for c, (h, w) in enumerate(zip(head, widths)))]
        for r in cells:
            lines.append("  ".join(v.ljust(w) if c == 0 else v.rjust(w) for c, (v, w) in enumerate(zip(r, widths))))
        k = self.scores.shape[1]
        lines.append(f"{self.task}, {self.n_rows} rows, {k}-fold cross-validation (mean ± standard error over "
                     f"folds); * best per metric" + (", coverage90 closest to 0.9" if "coverage90" in self.metrics
                                                     else ""))
        return "\n".join(lines)

    def __str__(self):
        return self.format()


_UNITS = {"nll": " (nats)", "fit_time": " (s)", "predict_time": " (s)"}


def _fmt(v):
    return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.3e}"


def _task_of(y):
    """``"classification"`` for integer-valued (finite, numeric) targets with at most 20
    distinct values, else ``"regression"``."""
    few = np.unique(y).size <= _MAX_AUTO_CLASSES
    return "classification" if few and np.all(y == np.round(y)) else "regression"


def _fold_scores(task, model, X, y):
    t0 = time.perf_counter()
    e = model.evaluate(X)
    predict_time = time.perf_counter() - t0
    from . import uncertainty as U

    if task == "regression":
        mean, var = e["mean"], e["aleatoric_var"] + e["epistemic_var"]
        std = np.sqrt(var)
        return {"rmse": float(np.sqrt(np.mean((y - mean) ** 2))), "nll": U.gaussian_nll(y, mean, var),
                "coverage90": float(np.mean(np.abs(y - mean) <= _Z90 * std)),
                "calibration_error": U.miscalibration_area(y, mean, std), "predict_time": predict_time}
    p = e["probs"]
    return {"accuracy": U.accuracy(p, y), "nll": U.nll(p, y), "ece": U.ece(p, y), "predict_time": predict_time}


def compare(X, y, *, task="auto", methods=METHODS, n_folds=5, seed=0, verbose=0, **options):
    """Cross-validate every posterior on ``(X, y)``.

    Parameters
    ----------
    X : (N, D) array_like of finite floats (NumPy, or any object with DLPack or
        the NumPy array interface: a pandas DataFrame, a PyTorch CPU tensor)
    y : (N,) array_like, regression targets or class labels (any integers, or
        strings: mapped to ``0 .. C-1`` in sorted order)
    task : {"auto", "regression", "classification"}
        ``"auto"``: classification for integer-valued ``y`` with at most 20
        distinct values, else regression
    methods : sequence of str, default every method (``METHODS``)
    n_folds : int >= 2, the K of K-fold cross-validation
    seed : int, Philox seed of the folds and of every model (``None``: fresh entropy)
    verbose : int, 0 is silent; 1 prints one line per (method, fold)
    **options
        Training options of every method, as ``bayesgrad.sklearn`` takes them
        (``hidden_layer_sizes``, ``epochs``, ``lr``, ``batch_size``,
        ``n_samples``, ``n_models``, ``validation_fraction``, ...; see
        ``bayesgrad._models.check_options``).

    Returns
    -------
    Comparison
        ``scores`` (M, K, F) per method, fold and metric; ``mean``/``stderr``
        (M, F); ``best``; ``format()`` / ``to_csv(path)`` / ``plot(path)``.
    """
    from ._models import BayesianMLP, check_options, options_for_task

    X = C.as_array(X, "X", np.float64, ndim=2)
    ya = C.to_numpy(y, "y")
    if ya.ndim == 2 and ya.shape[1] == 1:
        ya = ya[:, 0]
    if ya.shape != (X.shape[0],):
        raise ValueError(f"y must have shape ({X.shape[0]},) (one target per row of X), got {ya.shape}")
    task = C.option(task, "task", ("auto", *TASKS))
    if isinstance(methods, str):
        methods = (methods,)
    try:
        methods = tuple(methods)
    except TypeError:  # (None was "'NoneType' object is not iterable")
        raise TypeError(f"methods must be a method name or a sequence of them ({', '.join(METHODS)}), got "
                        f"{type(methods).__name__}") from None
    methods = tuple(C.option(m, "methods", METHODS) for m in methods)
    if not methods:
        raise ValueError("methods must name at least one method")
    if len(set(methods)) != len(methods):
        raise ValueError(f"methods must not repeat a method, got {list(methods)}")
    seed = _random.resolve_seed(seed)
    verbose = C.integer(verbose, "verbose", 0)
    if "method" in options or "random_state" in options:
        raise TypeError("compare takes methods= and seed=, not method= or random_state=")
    # every option checked before the first fit; the per-fold models train silently
    for m in methods:
        check_options(method=m, random_state=seed, **options)
    if task == "auto":
        task = "classification" if ya.dtype.kind in "US" else _task_of(C.as_array(ya, "y", ndim=1))
    if task == "regression":
        yv = C.as_array(ya, "y", np.float64, ndim=1)
        n_classes = None
    else:
        if ya.dtype.kind not in "biufUS":
            raise C.LabelError(f"y must hold class labels (integers or strings), got dtype {ya.dtype}")
        if ya.dtype.kind == "f" and not (np.all(np.isfinite(ya)) and np.all(ya == np.round(ya))):
            raise C.LabelError("y must hold integer class labels, got non-integer values")
        classes, yv = np.unique(ya, return_inverse=True)
        yv = yv.astype(np.int64).reshape(-1)
        n_classes = classes.size
        if n_classes < 2:
            raise ValueError(f"classification needs at least 2 classes, got only {classes[0]!r}")
    folds = kfold(X.shape[0], n_folds, seed)
    if min(X.shape[0] - f.size for f in folds) < 2:
        raise ValueError("every training part needs at least 2 rows: use fewer folds or more data")
    # import every module a fit or a prediction loads now, so that no fold's time includes an import
    import importlib

    for mod in ("nn", "vi", "dropout", "laplace", "ensemble", "swag", "sgmcmc", "uncertainty"):
        importlib.import_module(f".{mod}", __package__)
    metrics = METRICS[task]
    scores = np.empty((len(methods), len(folds), len(metrics)))
    everything = np.arange(X.shape[0])
    used = {}
    for i, meth in enumerate(methods):
        opts = check_options(method=meth, random_state=seed, **dict(options, verbose=0))
        used[meth] = {k: v for k, v in options_for_task(opts, task).items()
                      if k not in ("method", "seed", "verbose", "auto_early", "auto_epochs", "auto_patience")}
        for k, test in enumerate(folds):
            train = np.setdiff1d(everything, test, assume_unique=True)
            t0 = time.perf_counter()
            model = BayesianMLP(task, opts).fit(X[train], yv[train], n_classes=n_classes)
            fit_time = time.perf_counter() - t0
            s = _fold_scores(task, model, X[test], yv[test])
            s["fit_time"] = fit_time
            scores[i, k] = [s[m] for m in metrics]
            if verbose:
                shown = ", ".join(f"{m} {s[m]:.4g}" for m in metrics)
                print(f"{meth} fold {k + 1}/{len(folds)}: {shown}", flush=True)
    return Comparison(task, methods, metrics, scores, X.shape[0], seed, used)


class _CallableModule(type(C)):
    """``bg.compare(X, y)`` calls :func:`compare`: the module shares the function's
    name, and a package attribute named like a submodule is that submodule once it
    is imported, so the module itself is made callable."""

    def __call__(self, *args, **kwargs):
        return compare(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
