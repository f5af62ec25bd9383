"""The ``bayesgrad`` command.

- ``bayesgrad demo [--out DIR]``: the package in a minute, on built-in data:
  (i) Monte Carlo gradient estimators on E[W + W^2]; (ii) 1-D classification
  with MFVI, MC dropout and Laplace -- total / aleatoric / epistemic uncertainty;
  (iii) 1-D regression with a gap -- predictive bands; (iv) MC predictive
  samples of a 3-class problem on the probability simplex. Tables go to stdout,
  PNGs to ``./bayesgrad-demo/`` (matplotlib: ``pip install "bayesgrad[plot]"``).
- ``bayesgrad fit DATA.csv --target COL [...] [--predict NEW.csv] [--out PREDS.csv]``:
  a Bayesian MLP with uncertainty columns.
- ``bayesgrad compare DATA.csv --target COL [...]``: every posterior, K-fold
  cross-validated, as a metric table, CSV and plot (``bayesgrad._cli_compare``).
- ``bayesgrad score POOL --model MODEL.npz [--acquisition A] [--batch-size K] [--scheduler ADDRESS]``:
  acquisition picks and per-point uncertainty of a CSV / Parquet / Zarr pool (``_cli_score``).
- ``bayesgrad bench``: quick native-vs-NumPy timings, as ratios.
- ``bayesgrad info``: the active backend and build.

Mistakes in the user's input -- a bad or unreadable file, a missing column,
non-numeric data, an option value out of range, a missing optional dependency
-- each raise a :class:`UsageError`, reported as one line on stderr with exit
status 1 (``BAYESGRAD_DEBUG=1`` shows the traceback); options argparse checks
itself (--hidden, --seed, --val-fraction, --repeats) fail with its usage
message and status 2. Any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import types

import numpy as np

from . import _quickbench
from ._models import (DEFAULTS, LAPLACE_LINKS, LAPLACE_PRIORS, LAPLACE_STRUCTURES, LAPLACE_SUBSETS, METHODS,
                      MFVI_ESTIMATORS, MFVI_PRIORS, TASKS)


class UsageError(Exception):
    """The user's input cannot be used; the message says why, on one line.

    Raised only by the code that reads and checks that input (and by
    :func:`_user_files` for the files it names), so that :func:`main` can
    report it without a traceback and still let every other error through.
    """


@contextlib.contextmanager
def _user_files():
    """Problems with the files the user named -- the CSV reader's DataError,
    an OSError opening, reading or writing one of them -- as UsageError."""
    from ._table import DataError

    try:
        yield
    except DataError as exc:
        raise UsageError(str(exc)) from exc
    except OSError as exc:
        raise UsageError(f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc)) from exc


def _demo_gradients(args):
    import bayesgrad as bg

    n = 100_000
    print("1. Gradient of an expectation: L(mu, sigma) = E_{W ~ N(mu, sigma^2)}[W + W^2] = mu + mu^2 + sigma^2")
    print(f"   at (mu, sigma) = (0, 1), n = {n:,} samples, +- one standard error")
    print(f"   {'method':<32}{'dL/dmu':>20}{'dL/dsigma':>20}")
    for r in bg.estimators.seed_example(n_samples=n, seed=args.seed):
        print(f"   {r['method']:<32}{r['d_loc']:>+11.4f} +- {r['se_loc']:<6.4f}{r['d_scale']:>+11.4f} +- {r['se_scale']:<6.4f}")
    print("   Differentiating the sample average with the samples held fixed gives 0: the samples")
    print("   themselves depend on (mu, sigma), which the three estimators account for.")


# ---------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------

_METHOD_NAMES = {"mfvi": "MFVI", "mc_dropout": "MC dropout", "laplace": "Laplace"}

#: Architecture and training of the demo's models, per (task, method): small
#: networks, about a second each. They were picked on the demo's data so that
#: each method shows its uncertainty clearly (MC dropout's epistemic part is small
#: everywhere). MFVI regression trains for the library's own epoch rule (epochs=None:
#: 10 000 Adam steps, here 1000 epochs, early stopping after 100 without improvement;
#: _models.AUTO_EPOCHS): with 300 epochs and a 50-unit tanh layer it reported a noise sd
#: of 0.55 (true 0.1).
_DEMO_OPTIONS = {
    ("classification", "mfvi"): dict(hidden_layer_sizes=(50, 50), activation="relu"),
    ("classification", "mc_dropout"): dict(hidden_layer_sizes=(50, 50), activation="relu"),
    ("classification", "laplace"): dict(hidden_layer_sizes=(50, 50), activation="tanh"),
    ("regression", "mfvi"): dict(hidden_layer_sizes=(50, 50), activation="relu", epochs=None),
    ("regression", "mc_dropout"): dict(hidden_layer_sizes=(50, 50), activation="relu"),
    ("regression", "laplace"): dict(hidden_layer_sizes=(50, 50), activation="tanh"),
}
_DEMO_GRID = 161  # points along x in the 1-D plots
_DEMO_TRAINING = dict(epochs=300, lr=1e-2, batch_size=32, dropout_p=0.1, laplace_structure="kron", n_samples=200)


def _demo_model(task, method, seed):
    from ._models import BayesianMLP, check_options

    opts = dict(_DEMO_TRAINING, **_DEMO_OPTIONS[task, method])
    return BayesianMLP(task, check_options(method=method, random_state=seed, **opts))


def _plot(ctx, fn, name, *a, **kw):
    """Call a plotting function when plots are on; remember the file."""
    from . import plotting

    if ctx["dir"] is None:
        return
    try:
        with _user_files():
            path = fn(*a, os.path.join(ctx["dir"], name), **kw)
    except ImportError as exc:
        # matplotlib imports but a part the plots need does not: the install hint, not a bug
        if str(exc) != plotting.PLOT_HINT:
            raise
        raise UsageError(str(exc)) from exc
    ctx["written"].append(path)


def _demo_binary(args, ctx):
    from . import datasets

    data = datasets.binary_1d(seed=args.seed)
    print(f"\n2. 1-D binary classification: {data.description}")
    print("   uncertainty in nats, total = aleatoric + epistemic (at most ln 2 = 0.693)")
    print(f"   {'method':<11} {'point':<10} {'x':>5} {'p(y=1)':>7} {'total':>7} {'aleatoric':>9} {'epistemic':>9}")
    grid = data.grid(_DEMO_GRID)
    names = list(data.points)
    Xq = np.stack([data.points[k] for k in names])
    curves, probs = {}, {}
    for method in _METHOD_NAMES:
        m = _demo_model("classification", method, args.seed).fit(data.X, data.y, n_classes=2)
        e = m.evaluate(Xq)
        p, u = e["probs"][:, 1], e["uncertainty"]
        for i, name in enumerate(names):
            label = _METHOD_NAMES[method] if i == 0 else ""
            print(f"   {label:<11} {name:<10} {Xq[i, 0]:>5.1f} {p[i]:>7.3f} {u.total[i]:>7.3f} "
                  f"{u.aleatoric[i]:>9.3f} {u.epistemic[i]:>9.3f}")
        if ctx["dir"] is not None:
            eg = m.evaluate(grid)
            ug = eg["uncertainty"]
            curves[_METHOD_NAMES[method]] = {"total": ug.total, "aleatoric": ug.aleatoric, "epistemic": ug.epistemic}
            probs[_METHOD_NAMES[method]] = eg["probs"][:, 1]
    from . import plotting

    _plot(ctx, plotting.uncertainty_curves, "binary_uncertainty.png", grid[:, 0], curves,
          data=(data.X[:, 0], data.y), points={k: v[0] for k, v in data.points.items()}, probs=probs,
          title="1-D binary classification: total / aleatoric / epistemic (nats)")


def _demo_regression(args, ctx):
    from . import datasets

    data = datasets.regression_1d_gap(seed=args.seed)
    print(f"\n3. 1-D regression with a gap: {data.description}")
    print("   predictive std split into noise (aleatoric) and model (epistemic) parts; "
          "total^2 = aleatoric^2 + epistemic^2")
    print(f"   {'method':<11} {'point':<8} {'x':>5} {'mean':>7} {'total sd':>9} {'aleat. sd':>9} {'epist. sd':>9}")
    grid = data.grid(_DEMO_GRID)
    names = list(data.points)
    Xq = np.stack([data.points[k] for k in names])
    bands = {}
    for method in _METHOD_NAMES:
        m = _demo_model("regression", method, args.seed).fit(data.X, data.y)
        mean, alea, epi = m.moments(Xq)
        for i, name in enumerate(names):
            label = _METHOD_NAMES[method] if i == 0 else ""
            print(f"   {label:<11} {name:<8} {Xq[i, 0]:>5.1f} {mean[i]:>7.3f} {np.sqrt(alea[i] + epi[i]):>9.3f} "
                  f"{np.sqrt(alea[i]):>9.3f} {np.sqrt(epi[i]):>9.3f}")
        if ctx["dir"] is not None:
            mg, ag, eg = m.moments(grid)
            bands[_METHOD_NAMES[method]] = {"mean": mg, "std": np.sqrt(ag + eg), "epistemic_std": np.sqrt(eg)}
    from . import plotting

    x = grid[:, 0]
    _plot(ctx, plotting.predictive_bands, "regression_bands.png", x, bands, data=(data.X[:, 0], data.y),
          truth=np.sin(x) + 0.1 * x, title="1-D regression with a gap: predictive bands")


def _demo_simplex(args, ctx):
    from . import datasets

    data = datasets.three_class_2d(seed=args.seed)
    print(f"\n4. 3-class problem in 2-D: {data.description}")
    print("   predictive probabilities and uncertainty (nats, at most ln 3 = 1.099) at three points")
    print(f"   {'method':<11} {'point':<10} {'p0':>5} {'p1':>5} {'p2':>5} {'total':>7} {'aleatoric':>9} {'epistemic':>9}")
    names = list(data.points)
    Xq = np.stack([data.points[k] for k in names])
    samples = {}
    for method in _METHOD_NAMES:
        m = _demo_model("classification", method, args.seed).fit(data.X, data.y, n_classes=3)
        e = m.evaluate(Xq)
        p, u, sp = e["probs"], e["uncertainty"], e["sample_probs"]
        for i, name in enumerate(names):
            label = _METHOD_NAMES[method] if i == 0 else ""
            print(f"   {label:<11} {name:<10} {p[i, 0]:>5.2f} {p[i, 1]:>5.2f} {p[i, 2]:>5.2f} {u.total[i]:>7.3f} "
                  f"{u.aleatoric[i]:>9.3f} {u.epistemic[i]:>9.3f}")
        samples[_METHOD_NAMES[method]] = {name: sp[:, i, :] for i, name in enumerate(names)}
    from . import plotting

    _plot(ctx, plotting.simplex, "simplex.png", samples,
          title="MC predictive samples on the probability simplex (x: predictive mean)")


def cmd_demo(args):
    """``bayesgrad demo``: the four parts of the demonstration (tables on stdout, PNGs
    under ``args.out`` unless ``--no-plots``). Returns the exit status 0."""
    from . import plotting

    t0 = time.perf_counter()
    ctx = {"dir": None, "written": []}
    if args.no_plots:
        note = "plots off (--no-plots)"
    elif not plotting.available():
        note = f"no plots: {plotting.PLOT_HINT}"
    else:
        ctx["dir"] = args.out
        note = None
    _demo_gradients(args)
    _demo_binary(args, ctx)
    _demo_regression(args, ctx)
    _demo_simplex(args, ctx)
    print()
    if ctx["written"]:
        print(f"plots written to {os.path.abspath(ctx['dir'])}/:")
        for p in ctx["written"]:
            print(f"   {os.path.basename(p)}")
    else:
        print(note)
    print(f"demo finished in {time.perf_counter() - t0:.1f} s")
    return 0


# ---------------------------------------------------------------------------
# fit
# ---------------------------------------------------------------------------

_MAX_AUTO_CLASSES = 20


def _numeric_cells(values):
    """The target column's strings as a float array when every cell is a number, else None."""
    from ._table import is_number

    return np.array([float(s) for s in values]) if all(is_number(v) for v in values) else None


def _infer_task(values):
    """("classification" | "regression", reason) from the target column's strings."""
    v = _numeric_cells(values)
    if v is None:
        return "classification", "the target has non-numeric values"
    uniq = np.unique(v)
    if np.all(v == np.round(v)) and uniq.size <= _MAX_AUTO_CLASSES:
        return "classification", f"the target has {uniq.size} distinct integer values"
    return "regression", "the target is numeric"


def _check_class_cells(values, target, path):
    """UsageError when every cell is a number and some are not integers: a continuous target, which
    classification would split into one class per distinct value (as scikit-learn, refused)."""
    v = _numeric_cells(values)
    if v is not None and not np.all(v == np.round(v)):
        raise UsageError(f"{path}: --task classification, but the target {target!r} is continuous (numbers "
                         "that are not integers); class labels are integers or names: use --task regression")


def _class_labels(values):
    """Sorted class labels (numerically when all numeric) and the label index of each row."""
    from ._table import is_number

    strip = [v.strip() for v in values]
    uniq = sorted(set(strip))
    if all(is_number(u) for u in uniq):
        uniq = sorted(uniq, key=float)
    index = {u: i for i, u in enumerate(uniq)}
    return uniq, np.array([index[s] for s in strip], dtype=np.int64)


def _split(n, fraction, seed):
    """Indices of the training and validation parts; a Philox permutation."""
    from . import random as _random

    n_val = int(round(n * fraction))
    if fraction == 0 or n_val < 1 or n - n_val < 2:
        return np.arange(n), np.arange(0)
    perm = np.argsort(_random.uniform(n, seed=seed, stream=_random.fold_in(0, "split")), kind="stable")
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _hidden_arg(text):
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--hidden must be comma-separated integers, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"--hidden must be positive integers, got {text!r}")
    return sizes


def _seed_arg(text):
    from . import random as _random

    try:
        seed = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    try:
        return _random.resolve_seed(seed)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _sep_arg(text):
    sep = {"\\t": "\t", "tab": "\t"}.get(text, text)
    if len(sep) != 1 or sep in "\r\n\"'":
        raise argparse.ArgumentTypeError(f"--sep must be one character (or 'tab'), got {text!r}")
    return sep


def _positive_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _fraction_arg(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0 <= v < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return v


def _prediction_columns(model, task, X, classes):
    """Column names and (N, k) object rows of predictions with uncertainty."""
    e = model.evaluate(X)
    u = e["uncertainty"]
    if task == "regression":
        mean, alea, epi = e["mean"], e["aleatoric_var"], e["epistemic_var"]
        cols = ["mean", "std", "total_var", "aleatoric_var", "epistemic_var"]
        vals = [mean, np.sqrt(alea + epi), u.total, u.aleatoric, u.epistemic]
        return cols, [list(r) for r in zip(*vals)]
    probs = e["probs"]
    cols = ["predicted"] + [f"p_{c}" for c in classes] + ["total_nats", "aleatoric_nats", "epistemic_nats"]
    pred = [classes[k] for k in np.argmax(probs, axis=1)]
    return cols, [[pred[i], *probs[i], u.total[i], u.aleatoric[i], u.epistemic[i]] for i in range(len(pred))]


def _metrics_report(model, task, X, y):
    """One line of held-out metrics of rows X (N, D) with targets y: RMSE, NLL
    (nats/point) and 95% interval coverage (regression); accuracy, NLL and ECE
    (15 equal-width bins of the top-label probability; classification)."""
    if task == "regression":
        mean, alea, epi = model.moments(X)
        var = alea + epi
        rmse = float(np.sqrt(np.mean((mean - y) ** 2)))
        nll = float(np.mean(0.5 * np.log(2 * np.pi * var) + 0.5 * (y - mean) ** 2 / var))
        cover = float(np.mean(np.abs(y - mean) <= 1.96 * np.sqrt(var)))
        return f"RMSE {rmse:.4g}, NLL {nll:.4g} nats/point, 95% interval coverage {cover:.0%}"
    from .uncertainty import ece

    probs = model.probs(X)
    acc = float(np.mean(np.argmax(probs, axis=1) == y))
    nll = float(-np.mean(np.log(np.maximum(probs[np.arange(y.size), y], 1e-300))))
    return f"accuracy {acc:.1%}, NLL {nll:.4g} nats/point, ECE {ece(probs, y):.3f}"


def _write_or_show(path, in_table, extra_cols, extra_rows, limit=10):
    from ._table import write_csv

    cols = list(in_table.columns)
    taken = set(cols)
    out_cols = []
    for c in extra_cols:  # never shadow an input column
        name = c
        while name in taken:
            name = "pred_" + name
        taken.add(name)
        out_cols.append(name)
    rows = (list(r) + list(e) for r, e in zip(in_table.rows, extra_rows))
    if path:
        with _user_files():
            write_csv(path, cols + out_cols, rows)
        print(f"wrote {len(extra_rows)} rows with columns {', '.join(out_cols)} to {path}")
        return
    print(f"first {min(limit, len(extra_rows))} of {len(extra_rows)} predictions (use --out PREDS.csv to save all):")
    print("   " + ", ".join(out_cols))
    for e in extra_rows[:limit]:
        print("   " + ", ".join(f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v) for v in e))


#: below these many training rows per class (classification) or per feature, ``fit`` warns
_MIN_ROWS_PER_CLASS = 5
_MIN_ROWS_PER_FEATURE = 5


def _target_cells(table, target, path):
    """The target column's strings, with any empty (missing) cell reported as a UsageError
    that names its lines and says what the other values are."""
    from ._table import is_missing

    values = table.strings(target)
    empty = [line for v, line in zip(values, table.lines) if is_missing(v)]
    if empty:
        rest = [v for v in values if not is_missing(v)]
        shown = ", ".join(map(str, empty[:5])) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        what = ""
        if rest:
            task, why = _infer_task(rest)
            what = f"; the other {len(rest)} values make it a {task} target"
        raise UsageError(f"{path} line {empty[0]}, column {target!r}: missing value ({len(empty)} empty target "
                         f"cell(s), line(s) {shown}{what}); remove or fill those rows")
    return values


def _fit_inputs(args):
    """Everything ``fit`` takes from the user -- the data, the --predict rows (and
    their targets when the file has the target column), the options -- read and
    checked before any training, so that a mistake in any of them is reported in
    seconds; as UsageError."""
    from ._models import check_options
    from ._table import is_missing, read_csv

    with _user_files():
        table = read_csv(args.data, sep=args.sep)
        target = args.target
        table.index(target)
        features = ([f.strip() for f in args.features.split(",") if f.strip()] if args.features
                    else [c for c in table.columns if c != target])
        if not features:
            raise UsageError(f"{args.data}: no feature columns besides the target {target!r}")
        if target in features:
            raise UsageError(f"--features must not contain the target column {target!r}")
        if len(table) < 2:
            raise UsageError(f"{args.data}: training needs at least 2 data rows, got {len(table)}")
        X = table.numeric(features)
        ystr = _target_cells(table, target, args.data)
        task, why = _infer_task(ystr) if args.task == "auto" else (args.task, None)
        classes = None
        if task == "classification":
            _check_class_cells(ystr, target, args.data)
            classes, y = _class_labels(ystr)
            if len(classes) < 2:
                raise UsageError(f"{args.data}: the target {target!r} has a single class ({classes[0]!r})")
        else:
            y = table.numeric([target])[:, 0]
        new = read_csv(args.predict, sep=args.sep) if args.predict else None
        X_new = None if new is None else new.numeric(features)
        # the --predict file's own targets, when it has the column: test metrics after training
        y_new = None
        if new is not None and target in new.columns:
            cells = new.strings(target)
            if not any(is_missing(v) for v in cells):
                if task == "regression":
                    y_new = new.numeric([target])[:, 0]
                else:
                    index = {c: i for i, c in enumerate(classes)}
                    unseen = sorted({v.strip() for v in cells} - set(index))
                    if unseen:
                        raise UsageError(f"{args.predict}: the target {target!r} has label(s) the training data "
                                         f"lacks: {', '.join(map(repr, unseen[:5]))}")
                    y_new = np.array([index[v.strip()] for v in cells], dtype=np.int64)
    if why:
        print(f"task: {task} ({why}; --task overrides)")
    try:
        opts = check_options(method=args.method, hidden_layer_sizes=args.hidden, epochs=args.epochs, lr=args.lr,
                             batch_size=args.batch_size, n_samples=args.samples, random_state=args.seed,
                             laplace_structure=args.laplace_structure, laplace_subset=args.laplace_subset,
                             laplace_link=args.laplace_link, laplace_prior=args.laplace_prior,
                             n_models=args.models, dropout_p=args.dropout_p, prior_precision=args.prior_precision,
                             mfvi_estimator=args.mfvi_estimator, mfvi_prior=args.mfvi_prior,
                             early_stopping={"on": True, "off": False}.get(args.early_stopping, "auto"),
                             verbose=_verbosity(args))
    except ValueError as exc:  # a value out of range (argparse has checked the types)
        raise UsageError(str(exc)) from exc
    return types.SimpleNamespace(table=table, features=features, X=X, y=y, task=task, classes=classes,
                                 new=new, X_new=X_new, y_new=y_new, opts=opts)


def _verbosity(args, stream=None):
    """1 (progress bars) only when not --quiet and someone watches ``stream`` (default stderr;
    ``_training.watched``): a log file or a pipe would collect the bars' partial lines ("MFVI:   0%|")."""
    from ._training import watched

    return 0 if args.quiet or not watched(stream) else 1


def _warn(msg):
    print(f"bayesgrad: warning: {msg}", file=sys.stderr)


def _size_warnings(task, n_train, n_features, y_train, classes):
    """Warnings for a training part too small to learn from: fewer than
    _MIN_ROWS_PER_CLASS rows of some class, or fewer than _MIN_ROWS_PER_FEATURE
    rows per feature."""
    if task == "classification":
        counts = np.bincount(y_train, minlength=len(classes))
        small = [f"{classes[k]!r} ({counts[k]})" for k in np.flatnonzero(counts < _MIN_ROWS_PER_CLASS)]
        if small:
            _warn(f"few training rows for class(es) {', '.join(small[:6])}{', ...' if len(small) > 6 else ''}: "
                  f"fewer than {_MIN_ROWS_PER_CLASS} per class; the classifier has little to learn from "
                  "(more data, a smaller --val-fraction, or --task regression for a numeric target)")
    if n_train < _MIN_ROWS_PER_FEATURE * n_features:
        _warn(f"{n_train} training rows for {n_features} feature(s): fewer than {_MIN_ROWS_PER_FEATURE} per feature; "
              "expect a poor fit (more data, fewer --features, or a smaller --val-fraction)")


def cmd_fit(args):
    """``bayesgrad fit``: read and check every input (the data, the ``--predict`` file and
    its targets, the options), warn about too few rows, train on the training part,
    report validation (and test) metrics and write or show the predictions. Returns
    the exit status 0; a mistake in the input raises :class:`UsageError`."""
    from ._models import BayesianMLP

    inp = _fit_inputs(args)
    table, task, classes, X, y, opts = inp.table, inp.task, inp.classes, inp.X, inp.y, inp.opts
    train, val = _split(len(table), args.val_fraction, opts["seed"])
    print(f"data: {len(table)} rows, {len(inp.features)} features; training on {train.size}, "
          f"validating on {val.size}; method {args.method}, hidden {list(args.hidden)}")
    _size_warnings(task, train.size, len(inp.features), y[train], classes)
    t0 = time.perf_counter()
    model = BayesianMLP(task, opts).fit(X[train], y[train], n_classes=None if classes is None else len(classes))
    print(f"trained in {time.perf_counter() - t0:.1f} s, {model.epochs_run} epochs (inputs"
          f"{' and target' if task == 'regression' else ''} standardised on the training part)")
    if val.size:
        print(f"validation: {_metrics_report(model, task, X[val], y[val])}")

    if inp.new is not None:
        if inp.y_new is not None:
            print(f"test ({args.predict}, {len(inp.new)} rows): {_metrics_report(model, task, inp.X_new, inp.y_new)}")
        cols, rows = _prediction_columns(model, task, inp.X_new, classes)
        _write_or_show(args.out, inp.new, cols, rows)
    else:
        cols, rows = _prediction_columns(model, task, X, classes)
        split = np.full(len(table), "train", dtype=object)
        split[val] = "validation"
        for r, s in zip(rows, split):
            r.insert(0, s)
        _write_or_show(args.out, table, ["split"] + cols, rows)
    return 0


# ---------------------------------------------------------------------------
# bench, info
# ---------------------------------------------------------------------------

def cmd_bench(args):
    """``bayesgrad bench``: the quick native-vs-NumPy timings, ``args.repeats`` repeats each. Returns 0."""
    _quickbench.run(repeats=args.repeats)
    return 0


def cmd_info(args):
    """``bayesgrad info``: the active backend and build, one ``key: value`` per line. Returns 0."""
    import bayesgrad as bg

    for k, v in bg.backend_info().items():
        print(f"{k:>14}: {v}")
    return 0


def build_parser():
    """The ``argparse`` parser of the ``bayesgrad`` command and its subcommands (each
    subparser sets ``func``, the function :func:`main` calls with the parsed arguments)."""
    p = argparse.ArgumentParser(prog="bayesgrad", description="bayesgrad command line")
    sub = p.add_subparsers(dest="command")

    d = sub.add_parser("demo", help="run the built-in demonstration (tables; plots with matplotlib)")
    d.add_argument("--seed", type=_seed_arg, default=0, help="Philox seed of data and models (default 0)")
    d.add_argument("--out", default="bayesgrad-demo", metavar="DIR",
                   help="folder for the PNG plots (default ./bayesgrad-demo)")
    d.add_argument("--no-plots", action="store_true", help="print the tables only")
    d.set_defaults(func=cmd_demo)

    f = sub.add_parser("fit", help="train a Bayesian MLP on a CSV file and write predictions with uncertainty")
    f.add_argument("data", metavar="DATA.csv", help="training data with a header row")
    f.add_argument("--target", required=True, metavar="COL", help="name of the target column")
    f.add_argument("--sep", type=_sep_arg, metavar="CHAR",
                   help="field separator of DATA.csv and NEW.csv (default: sniffed among , ; tab |)")
    f.add_argument("--features", metavar="A,B,...", help="feature columns (default: all others)")
    f.add_argument("--task", choices=("auto", *TASKS), default="auto")
    f.add_argument("--method", choices=METHODS, default=DEFAULTS["method"])
    f.add_argument("--hidden", type=_hidden_arg, default=DEFAULTS["hidden_layer_sizes"], metavar="W1,W2,...",
                   help=f"hidden layer widths (default {','.join(map(str, DEFAULTS['hidden_layer_sizes']))})")
    f.add_argument("--epochs", type=int, default=DEFAULTS["epochs"],
                   help="most training epochs (default: 200, for mfvi regression as many as make 10000 Adam "
                   "steps, up to 1000; early stopping may end training sooner)")
    f.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    f.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    f.add_argument("--samples", type=int, default=DEFAULTS["n_samples"], help="MC samples per prediction")
    f.add_argument("--laplace-structure", choices=LAPLACE_STRUCTURES, default=DEFAULTS["laplace_structure"],
                   help="Laplace: Hessian structure (default auto: full for a small last layer, else kron)")
    f.add_argument("--laplace-subset", choices=LAPLACE_SUBSETS, default=DEFAULTS["laplace_subset"],
                   help="Laplace: the weights covered (default last_layer)")
    f.add_argument("--laplace-link", choices=LAPLACE_LINKS, default=DEFAULTS["laplace_link"],
                   help="Laplace: GLM link of the predictive (default probit)")
    f.add_argument("--laplace-prior", choices=LAPLACE_PRIORS, default=DEFAULTS["laplace_prior"],
                   help="Laplace: prior precision (and noise) by marginal likelihood, by a grid search on the "
                   "early-stopping rows, or fixed; default auto: marginal likelihood (regression: the last "
                   "layer as Bayesian linear regression; classification: its precision x30)")
    f.add_argument("--prior-precision", type=float, default=DEFAULTS["prior_precision"],
                   help=f"precision of the Gaussian prior on the weights (default {DEFAULTS['prior_precision']:g})")
    f.add_argument("--dropout-p", type=float, default=DEFAULTS["dropout_p"],
                   help=f"MC dropout: dropout probability (default {DEFAULTS['dropout_p']:g})")
    f.add_argument("--mfvi-estimator", choices=MFVI_ESTIMATORS, default=DEFAULTS["mfvi_estimator"],
                   help=f"MFVI: gradient estimator (default {DEFAULTS['mfvi_estimator']})")
    f.add_argument("--mfvi-prior", choices=MFVI_PRIORS, default=DEFAULTS["mfvi_prior"],
                   help=f"MFVI: prior (default {DEFAULTS['mfvi_prior']})")
    f.add_argument("--early-stopping", choices=("auto", "on", "off"), default="auto",
                   help="stop training when 10%% of the training rows held out stop improving (default auto: as "
                   "the estimators' early_stopping)")
    f.add_argument("--models", type=int, default=DEFAULTS["n_models"],
                   help=f"members of --method ensemble / multiswag (default {DEFAULTS['n_models']})")
    f.add_argument("--val-fraction", type=_fraction_arg, default=0.2,
                   help="share of rows held out for validation (default 0.2; 0 for none)")
    # unlike the Python API's fresh entropy, a fixed seed: the same command gives the same output
    f.add_argument("--seed", type=_seed_arg, default=0, help="Philox seed of the split, training and "
                   "predictions (default 0)")
    f.add_argument("--predict", metavar="NEW.csv", help="score these rows instead of the training data "
                   "(checked before training; test metrics too when it has the target column)")
    f.add_argument("--out", metavar="PREDS.csv", help="write predictions here (default: print the first rows)")
    f.add_argument("--quiet", action="store_true", help="no progress bars (there are none when stderr is not a "
                   "terminal)")
    f.set_defaults(func=cmd_fit)

    b = sub.add_parser("bench", help="quick timings of the native core against NumPy, as ratios")
    b.add_argument("--repeats", type=_positive_int, default=_quickbench.REPEATS,
                   help=f"timed repeats per case, median reported (default {_quickbench.REPEATS})")
    b.set_defaults(func=cmd_bench)

    i = sub.add_parser("info", help="show the active backend and build")
    i.set_defaults(func=cmd_info)

    from ._cli_compare import add_parser as add_compare_parser  # bayesgrad compare lives in its own module

    add_compare_parser(sub)
    from ._cli_score import add_score_parser  # bayesgrad score POOL --model MODEL.npz (issue 17)

    add_score_parser(sub)
    return p


def main(argv=None):
    """Run the ``bayesgrad`` command with ``argv`` (default ``sys.argv[1:]``); returns the
    exit status: 0 done, 1 a :class:`UsageError` (one line on stderr), 2 a usage
    mistake or no subcommand, 130 Ctrl-C, 141 stdout closed early."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # stdout closed early (``bayesgrad fit ... | head``): stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except UsageError as exc:
        if os.environ.get("BAYESGRAD_DEBUG"):
            raise
        msg = " ".join(str(exc).split())
        print(f"bayesgrad: error: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
