"""``bayesgrad compare DATA.csv --target COL``: every posterior on the user's
data, K-fold cross-validated (``bayesgrad.compare``), as a table on stdout,
a CSV file and a plot.

Kept apart from ``cli.py``, which only registers the sub-command
(:func:`add_parser`). The user's mistakes (a bad file, a missing column, an
option out of range) raise ``cli.UsageError`` before any training.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from ._models import DEFAULTS, METHODS, TASKS
from .cli import _hidden_arg  # shared with bayesgrad fit

# integer-valued numeric targets with at most this many distinct values are class labels
# (the rule of ``bayesgrad fit`` and of bg.compare(task="auto"))
_MAX_AUTO_CLASSES = 20


def _methods_arg(text):
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [n for n in names if n not in METHODS]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"--methods must be comma-separated names from {', '.join(METHODS)}; "
                                         f"got {text!r}")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"--methods names a method twice: {text!r}")
    return names


def _int_at_least(low):
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        return v
    return parse


def add_parser(sub):
    """Register ``compare`` on the ``bayesgrad`` command's sub-parsers ``sub``."""
    c = sub.add_parser("compare", help="cross-validate every posterior on a CSV file: metric table, CSV and plot")
    c.add_argument("data", metavar="DATA.csv", help="data with a header row")
    c.add_argument("--target", required=True, metavar="COL", help="name of the target column")
    c.add_argument("--features", metavar="A,B,...", help="feature columns (default: all others)")
    c.add_argument("--task", choices=("auto", *TASKS), default="auto",
                   help="default auto: classification for non-numeric targets or at most "
                   f"{_MAX_AUTO_CLASSES} distinct integers, else regression")
    c.add_argument("--methods", type=_methods_arg, default=METHODS, metavar="M1,M2,...",
                   help=f"methods to compare (default all: {','.join(METHODS)})")
    c.add_argument("--folds", type=_int_at_least(2), default=5, help="K of K-fold cross-validation (default 5)")
    c.add_argument("--hidden", type=_hidden_arg, default=DEFAULTS["hidden_layer_sizes"], metavar="W1,W2,...",
                   help=f"hidden layer widths (default {','.join(map(str, DEFAULTS['hidden_layer_sizes']))})")
    c.add_argument("--epochs", type=_int_at_least(1), default=DEFAULTS["epochs"],
                   help="most training epochs (default: 200, for mfvi regression as many as make 10000 "
                   "Adam steps, up to 1000)")
    c.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    c.add_argument("--batch-size", type=_int_at_least(1), default=DEFAULTS["batch_size"])
    c.add_argument("--samples", type=_int_at_least(2), default=DEFAULTS["n_samples"],
                   help="MC samples per prediction")
    c.add_argument("--models", type=_int_at_least(1), default=DEFAULTS["n_models"],
                   help="members of ensemble and multiswag")
    c.add_argument("--seed", type=_int_at_least(0), default=0, help="Philox seed of the folds and models (default 0)")
    c.add_argument("--out", default="compare.csv", metavar="TABLE.csv",
                   help="the table as CSV (default compare.csv)")
    c.add_argument("--plot", default="compare.png", metavar="PLOT.png",
                   help="bar charts of the metrics (default compare.png; needs matplotlib)")
    c.add_argument("--no-plot", action="store_true", help="write no plot")
    c.add_argument("--quiet", action="store_true", help="no per-fold progress lines")
    c.set_defaults(func=cmd_compare)
    return c


def _inputs(args):
    """The data and options, read and checked before any training; UsageError otherwise."""
    from . import random as _random
    from ._models import check_options
    from ._table import DataError, is_number, read_csv
    from .cli import UsageError

    try:
        table = read_csv(args.data)
        table.index(args.target)
        features = ([f.strip() for f in args.features.split(",") if f.strip()] if args.features
                    else [c for c in table.columns if c != args.target])
        if not features:
            raise UsageError(f"{args.data}: no feature columns besides the target {args.target!r}")
        if args.target in features:
            raise UsageError(f"--features must not contain the target column {args.target!r}")
        if len(table) < args.folds:
            raise UsageError(f"{args.data}: {args.folds}-fold cross-validation needs at least {args.folds} rows, "
                             f"got {len(table)}")
        X = table.numeric(features)
        strings = [s.strip() for s in table.strings(args.target)]
        if all(is_number(s) for s in strings):
            y = table.numeric([args.target])[:, 0]
        elif args.task == "regression":
            y = table.numeric([args.target])[:, 0]  # names the first non-numeric cell
        else:
            y = np.array(strings)
    except DataError as exc:
        raise UsageError(str(exc)) from exc
    except OSError as exc:
        raise UsageError(f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc)) from exc
    task = args.task
    if task == "auto":
        few = np.unique(y).size <= _MAX_AUTO_CLASSES
        task = "classification" if y.dtype.kind == "U" or (few and np.all(y == np.round(y))) else "regression"
    if task == "classification" and np.unique(y).size < 2:
        raise UsageError(f"{args.data}: the target {args.target!r} has a single class ({y[0]!r})")
    options = dict(hidden_layer_sizes=args.hidden, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                   n_samples=args.samples, n_models=args.models)
    try:
        _random.resolve_seed(args.seed)
        for m in args.methods:
            check_options(method=m, random_state=args.seed, **options)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    return X, y, task, features, options


def cmd_compare(args):
    """Run ``bayesgrad compare``; returns the exit status."""
    from . import plotting
    from .cli import UsageError
    from .compare import compare

    X, y, task, features, options = _inputs(args)
    print(f"data: {X.shape[0]} rows, {len(features)} features, task {task}; {args.folds}-fold cross-validation "
          f"of {', '.join(args.methods)} (inputs{' and target' if task == 'regression' else ''} standardised "
          "inside each fold)", flush=True)
    t0 = time.perf_counter()
    result = compare(X, y, task=task, methods=args.methods, n_folds=args.folds, seed=args.seed,
                     verbose=0 if args.quiet else 1, **options)
    print(f"\n{result.format()}\n(total {time.perf_counter() - t0:.1f} s)")
    try:
        result.to_csv(args.out)
        print(f"wrote {args.out}")
        if not args.no_plot:
            if plotting.available():
                result.plot(args.plot, title=f"{os.path.basename(args.data)}: {args.folds}-fold cross-validation")
                print(f"wrote {args.plot}")
            else:
                print(f"no plot: {plotting.PLOT_HINT}")
    except OSError as exc:
        raise UsageError(f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc)) from exc
    return 0
