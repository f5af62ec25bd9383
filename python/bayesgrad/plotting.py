"""Plots of predictive uncertainty (matplotlib optional: ``pip install "bayesgrad[plot]"``).

Every function takes plain NumPy arrays, writes one PNG and returns its path.
Figures are built with ``matplotlib.figure.Figure`` and the Agg canvas, never
through pyplot's global state, so they work headless and in threads.

- :func:`uncertainty_curves` -- total / aleatoric / epistemic along a 1-D input,
  one panel per method.
- :func:`predictive_bands` -- regression mean with total and epistemic bands,
  one panel per method.
- :func:`simplex` -- MC predictive samples of a 3-class problem on the
  probability simplex, one panel per (method, query point).
- :func:`plot_reliability` -- reliability diagrams (accuracy against
  confidence per bin, with the ECE), one panel per method.
- :func:`plot_calibration_curve` -- observed against expected coverage of
  Gaussian predictive intervals, one curve per method.
- :func:`plot_comparison` -- the metrics of ``bayesgrad.compare``, one panel
  per metric, one bar per method, the best marked.

One exception: :func:`plot_variance` (also ``bg.estimators.plot_variance``)
draws the single-sample variance curves of ``bg.estimators.variance_curve``
into a given or new pyplot Axes and returns it, for interactive use.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

__all__ = ["available", "PLOT_HINT", "uncertainty_curves", "predictive_bands", "simplex", "plot_reliability",
           "plot_calibration_curve", "plot_comparison", "plot_variance"]

PLOT_HINT = 'plots need matplotlib: pip install "bayesgrad[plot]"'

_COLOURS = {"total": "#222222", "aleatoric": "#1f77b4", "epistemic": "#d62728"}


def available():
    """True when matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure(n_rows, n_cols, width=4.2, height=3.0):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(PLOT_HINT) from exc
    fig = Figure(figsize=(width * n_cols, height * n_rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    return fig, axes


def _save(fig, path):
    """Write fig whole or not at all (``_files.replacing``: a failed or interrupted render left the
    previous figure truncated) and return the path written: one without an extension gets ".png"
    (matplotlib appends its default format's, and the path returned lacked it)."""
    from ._files import replacing

    path = os.fspath(path)
    if not os.path.splitext(path)[1]:
        path += ".png"
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with replacing(path) as tmp:
        fig.savefig(tmp, dpi=110, format=os.path.splitext(path)[1][1:])
    return path


def _methods(d, name, keys=()):
    """``d``, a non-empty dict method -> value; each value a dict holding ``keys`` when given
    (an empty dict made a figure of no columns, matplotlib's error; a missing key a KeyError)."""
    if not isinstance(d, Mapping):
        raise TypeError(f"{name} must be a dict (method name -> ...), got {type(d).__name__}")
    if not d:
        raise ValueError(f"{name} must name at least one method")
    for m, v in d.items():
        if keys and not isinstance(v, Mapping):
            raise TypeError(f"{name}[{m!r}] must be a dict with {list(keys)}, got {type(v).__name__}")
        missing = [k for k in keys if k not in v]
        if missing:
            raise ValueError(f"{name}[{m!r}] lacks {missing}")
    return d


def _pairs(d, name, what):
    """``d``, a non-empty dict method -> a pair ``what``."""
    for m, v in _methods(d, name).items():
        if not (isinstance(v, (tuple, list)) and len(v) == 2):
            raise TypeError(f"{name}[{m!r}] must be a pair {what}, got {type(v).__name__}")
    return d


def _vector(a, name, n=None):
    try:
        a = np.asarray(a, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be numbers, got {type(a).__name__} ({exc})") from None
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{name} must have {n} values (one per grid point), got {a.shape[0]}")
    return a


def _rug(ax, data, y_level):
    if data is None:
        return
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise TypeError(f"data must be a pair (X, y), got {type(data).__name__}")
    X, y = data
    X = _vector(X, "data X")
    ax.plot(X, np.full_like(X, y_level), "|", color="#777777", alpha=0.5, markersize=6)


def _mark_points(ax, points):
    for name, x0 in (points or {}).items():
        x0 = _vector(x0, f"points[{name!r}]")
        if x0.size != 1:  # (an empty value was an IndexError)
            raise ValueError(f"points[{name!r}] must be one x value, got {x0.size}")
        x0 = float(x0[0])
        ax.axvline(x0, color="#999999", lw=0.8, ls=":")
        ax.annotate(name, (x0, 1.0), xycoords=("data", "axes fraction"), ha="center", va="bottom", fontsize=8)


def uncertainty_curves(x, curves, path, *, data=None, points=None, probs=None, title=None):
    """Total, aleatoric and epistemic uncertainty along a 1-D input.

    Parameters
    ----------
    x : (G,) grid of inputs
    curves : dict method -> dict with ``"total"``, ``"aleatoric"``, ``"epistemic"``,
        each (G,), in nats
    path : file name of the PNG
    data : optional (X (N,), y (N,)) training inputs, drawn as a rug
    points : optional dict name -> x value, marked with vertical lines
    probs : optional dict method -> (G,) predictive probability of class 1,
        drawn on a second axis
    title : optional figure title

    Returns
    -------
    path : str
    """
    x = _vector(x, "x")
    _methods(curves, "curves", ("total", "aleatoric", "epistemic"))
    fig, axes = _figure(1, len(curves))
    for ax, (method, c) in zip(axes[0], curves.items()):
        for key in ("total", "aleatoric", "epistemic"):
            ax.plot(x, _vector(c[key], f"curves[{method!r}][{key!r}]", x.size), color=_COLOURS[key],
                    lw=2.0 if key == "total" else 1.4, ls="-" if key == "total" else "--", label=key)
        if probs is not None and method in probs:
            ax2 = ax.twinx()
            ax2.plot(x, _vector(probs[method], f"probs[{method!r}]", x.size), color="#2ca02c", lw=1, alpha=0.6)
            ax2.set_ylim(-0.02, 1.02)
            ax2.set_ylabel("p(y=1 | x)", color="#2ca02c", fontsize=8)
        _rug(ax, data, -0.03)
        _mark_points(ax, points)
        ax.set_title(method, pad=14)
        ax.set_xlabel("x")
        ax.set_ylim(-0.06, max(0.75, ax.get_ylim()[1]))
    axes[0][0].set_ylabel("nats")
    axes[0][0].legend(loc="upper left", fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def predictive_bands(x, bands, path, *, data=None, truth=None, title=None):
    """Regression predictive bands along a 1-D input.

    Parameters
    ----------
    x : (G,) grid of inputs
    bands : dict method -> dict with ``"mean"``, ``"std"`` (total predictive
        std) and optionally ``"epistemic_std"``, each (G,)
    path : file name of the PNG
    data : optional (X (N,), y (N,)) training data, drawn as points
    truth : optional (G,) noise-free function on the grid
    title : optional figure title

    Returns
    -------
    path : str
    """
    x = _vector(x, "x")
    _methods(bands, "bands", ("mean", "std"))
    if data is not None and not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise TypeError(f"data must be a pair (X, y), got {type(data).__name__}")
    fig, axes = _figure(1, len(bands))
    for ax, (method, b) in zip(axes[0], bands.items()):
        mean = _vector(b["mean"], f"bands[{method!r}]['mean']", x.size)
        std = _vector(b["std"], f"bands[{method!r}]['std']", x.size)
        ax.fill_between(x, mean - 2 * std, mean + 2 * std, color="#1f77b4", alpha=0.18, label="±2 std (total)")
        if "epistemic_std" in b:
            es = _vector(b["epistemic_std"], f"bands[{method!r}]['epistemic_std']", x.size)
            ax.fill_between(x, mean - 2 * es, mean + 2 * es, color="#d62728", alpha=0.25, label="±2 std (epistemic)")
        ax.plot(x, mean, color="#1f77b4", lw=1.8, label="mean")
        if truth is not None:
            ax.plot(x, _vector(truth, "truth", x.size), color="#222222", lw=1, ls=":", label="truth")
        if data is not None:
            ax.plot(_vector(data[0], "data X"), _vector(data[1], "data y"), ".", color="#444444", ms=3)
        ax.set_title(method)
        ax.set_xlabel("x")
    axes[0][0].set_ylabel("y")
    axes[0][0].legend(loc="upper left", fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


_CORNERS = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, np.sqrt(3) / 2]])


def _to_simplex_xy(p):
    """Barycentric (S, 3) probabilities -> (S, 2) points in the triangle."""
    return p @ _CORNERS


def simplex(samples, path, *, title=None):
    """MC predictive samples of a 3-class problem on the probability simplex.

    Parameters
    ----------
    samples : dict method -> dict point name -> (S, 3) class probabilities
        (one row per MC sample; rows sum to one)
    path : file name of the PNG
    title : optional figure title

    Returns
    -------
    path : str
    """
    methods = list(_methods(samples, "samples"))
    names = list(samples[methods[0]])
    for m in methods:  # (a missing point was a KeyError, none at all matplotlib's error)
        got = list(samples[m]) if isinstance(samples[m], Mapping) else samples[m]
        if not names or got != names:
            raise ValueError(f"samples must map every method to a dict of the same point names ({names} for "
                             f"{methods[0]!r}); got {got!r} for {m!r}")
    fig, axes = _figure(len(methods), len(names), width=3.0, height=2.8)
    for i, method in enumerate(methods):
        for j, name in enumerate(names):
            ax = axes[i][j]
            p = np.asarray(samples[method][name], dtype=np.float64)
            if p.ndim != 2 or p.shape[1] != 3:
                raise ValueError(f"samples[{method!r}][{name!r}] must be (S, 3), got {p.shape}")
            tri = np.vstack([_CORNERS, _CORNERS[:1]])
            ax.plot(tri[:, 0], tri[:, 1], color="#444444", lw=0.8)
            xy = _to_simplex_xy(p)
            ax.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.35, color="#d62728", linewidths=0)
            m = _to_simplex_xy(p.mean(axis=0, keepdims=True))
            ax.scatter(m[:, 0], m[:, 1], s=40, marker="x", color="#222222")
            for k, (cx, cy) in enumerate(_CORNERS):
                ax.annotate(f"class {k}", (cx, cy), fontsize=7, ha="center",
                            va="top" if cy == 0 else "bottom", xytext=(0, -3 if cy == 0 else 3),
                            textcoords="offset points")
            ax.set_xlim(-0.08, 1.08)
            ax.set_ylim(-0.12, 0.98)
            ax.set_aspect("equal")
            ax.axis("off")
            ax.set_title(f"{method}: {name}", fontsize=9)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_reliability(predictions, path, *, n_bins=15, title=None):
    """Reliability diagrams: ``predictions`` maps a method name to ``(probs
    (N, C), y (N,))``; one panel each with accuracy per confidence bin, the
    diagonal and the ECE in the title. Returns the path written."""
    from . import uncertainty as U

    _pairs(predictions, "predictions", "(probs, y)")
    fig, axes = _figure(1, len(predictions), width=3.6, height=3.4)
    for ax, (name, (probs, y)) in zip(axes[0], predictions.items()):
        rd = U.reliability_diagram(probs, y, n_bins=n_bins)
        centres = 0.5 * (rd["edges"][:-1] + rd["edges"][1:])
        width = rd["edges"][1] - rd["edges"][0]
        ok = rd["count"] > 0
        ax.bar(centres[ok], rd["accuracy"][ok], width=width * 0.95, color="#1f77b4", alpha=0.8, label="accuracy")
        ax.plot([0, 1], [0, 1], color="#222222", lw=1, ls="--", label="calibrated")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{name}: ECE {U.ece(probs, y, n_bins=n_bins):.3f}")
    axes[0][0].legend(loc="upper left", fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_calibration_curve(predictions, y, path, *, n_levels=99, title=None):
    """Calibration curves of Gaussian predictive intervals: ``predictions``
    maps a method name to ``(mean, std)`` for targets ``y``; observed against
    expected coverage with the miscalibration area in the legend. Returns the path."""
    from . import uncertainty as U

    _pairs(predictions, "predictions", "(mean, std)")
    fig, axes = _figure(1, 1, width=4.0, height=3.6)
    ax = axes[0][0]
    ax.plot([0, 1], [0, 1], color="#222222", lw=1, ls="--", label="calibrated")
    for name, (mean, std) in predictions.items():
        expected, observed = U.calibration_curve(y, mean, std, n_levels=n_levels)
        area = U.miscalibration_area(y, mean, std, n_levels=n_levels)
        ax.plot(expected, observed, lw=1.8, label=f"{name} (area {area:.3f})")
    ax.set_xlabel("expected coverage")
    ax.set_ylabel("observed coverage")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    if title:
        ax.set_title(title)
    return _save(fig, path)


def plot_comparison(methods, metrics, mean, stderr, best, path, *, title=None):
    """Bar charts of a cross-validated comparison (``bayesgrad.compare``).

    Parameters
    ----------
    methods : sequence of str, M method names
    metrics : sequence of str, F metric names
    mean, stderr : (M, F) arrays, each metric's mean and standard error over folds
    best : dict {metric: method}, drawn in colour (the others grey)
    path : str, the PNG to write
    title : str, optional

    Returns
    -------
    str, the path written
    """
    mean = np.asarray(mean, dtype=np.float64)
    stderr = np.asarray(stderr, dtype=np.float64)
    M, F = len(methods), len(metrics)
    if M == 0 or F == 0:  # (no metrics divided by zero; no methods drew empty panels)
        raise ValueError(f"methods and metrics must each name at least one, got {M} and {F}")
    if not isinstance(best, Mapping):
        raise TypeError(f"best must be a dict {{metric: method}}, got {type(best).__name__}")
    if mean.shape != (M, F) or stderr.shape != (M, F):
        raise ValueError(f"mean and stderr must have shape ({M}, {F}) (methods, metrics), "
                         f"got {mean.shape} and {stderr.shape}")
    cols = min(F, 3)
    rows = -(-F // cols)
    fig, axes = _figure(rows, cols, width=max(3.6, 0.55 * M + 1.2), height=3.2)
    pos = np.arange(M)
    for j, name in enumerate(metrics):
        ax = axes[j // cols][j % cols]
        colours = ["#d62728" if best.get(name) == m else "#9a9a9a" for m in methods]
        ax.bar(pos, mean[:, j], yerr=stderr[:, j], color=colours, capsize=3)
        if name == "coverage90":
            ax.axhline(0.9, color="#222222", lw=1, ls="--")
        if name.endswith("_time") and np.all(mean[:, j] > 0):
            ax.set_yscale("log")  # times of the methods differ by orders of magnitude
        ax.set_xticks(pos)
        ax.set_xticklabels(methods, rotation=45, ha="right", fontsize=8)
        ax.set_title(name + ("  (best in red)" if j == 0 else ""), fontsize=9)
    for j in range(F, rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_variance(curve, param="loc", index=(), ax=None):
    """Plot ``bg.estimators.variance_curve`` output (log scale), one line per estimator.

    Unlike the PNG writers above, this draws into ``ax`` (default: a new
    pyplot figure) so that it composes with a notebook's own figures.

    Returns the matplotlib Axes.
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # optional dependency
        raise ImportError("plot_variance needs matplotlib (pip install bayesgrad[plot])") from exc
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    for name, per in curve.items():
        if name == "k":
            continue
        if param not in per:
            raise ValueError(f"param must be one of {sorted(per)}, got {param!r}")
        ax.semilogy(curve["k"], per[param][(slice(None),) + tuple(index)], label=name)
    ax.set_xlabel("k")
    ax.set_ylabel(f"single-sample variance of d/d{param}")
    ax.legend()
    return ax
