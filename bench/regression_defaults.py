"""The regression defaults of BayesianMLPRegressor (MFVI and MC dropout) on three data sets
with different signal-to-noise ratios, next to scikit-learn's BayesianRidge.

* load_diabetes (442 rows, 10 features; the target is mostly noise): 80/20 splits.
* the demo's 1-D sine with a gap (``datasets.regression_1d_gap``: 160 rows, noise sd 0.1,
  ``bayesgrad demo`` part 3), tested on 2000 fresh points of the data's two intervals, where
  the Gaussian with the true noise scores -1.38 nats per point.
* make_friedman1 (scikit-learn's generator, 400 rows of 10 features, noise sd 1: the true
  model scores 1.42 nats), 75/25 splits.

For each split: test NLL per point (nats, Gaussian predictive), RMSE, and the share of test
targets inside the central 95% interval (coverage). Split s uses random_state s for the split
and for training. Medians and worst splits per configuration; per-split values in the JSON.

Configurations: the defaults as shipped ("default") and variants that change one choice of
``bayesgrad._models`` (docs/design.md "Regression defaults"): the MFVI posterior temperature
(``_MFVI_TEMPERATURE``), the fan-in prior of the first layer (``_first_layer_prior_scale``) and
the epoch / patience rule (the ``epochs`` and ``n_iter_no_change`` options). ``--large`` times the
epoch rule on make_friedman1 with 20000 training rows (where it gives 200 epochs / patience 20).

    PYTHONPATH=python python bench/regression_defaults.py [--splits 10] [--methods mfvi,mc_dropout]
        [--variants] [--large 3] [--out bench/results/regression_defaults.json]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
import warnings

import numpy as np
from scipy.stats import norm
from sklearn.datasets import load_diabetes, make_friedman1
from sklearn.linear_model import BayesianRidge
from sklearn.model_selection import train_test_split

from bayesgrad import _models, datasets
from bayesgrad._quickbench import load_average, machine_info
from bayesgrad.sklearn import BayesianMLPRegressor


def diabetes(seed):
    X, y = load_diabetes(return_X_y=True)
    return train_test_split(X, y, test_size=0.2, random_state=seed)


def sine(seed):
    d = datasets.regression_1d_gap(seed=seed)
    rng = np.random.default_rng(100 + seed)
    xt = np.concatenate([rng.uniform(-5, -1.5, 1000), rng.uniform(1.5, 4, 1000)])
    yt = np.sin(xt) + 0.1 * xt + 0.1 * rng.standard_normal(xt.size)
    return d.X, xt[:, None], d.y.ravel(), yt


def friedman1(seed):
    X, y = make_friedman1(n_samples=400, noise=1.0, random_state=seed)
    return train_test_split(X, y, test_size=0.25, random_state=seed)


def friedman1_large(seed):
    X, y = make_friedman1(n_samples=22000, noise=1.0, random_state=seed)
    return X[:20000], X[20000:], y[:20000], y[20000:]


DATASETS = {"diabetes": diabetes, "sine_gap": sine, "friedman1": friedman1}
# --large: the epoch rule on 20000 training rows (fit time), fewer splits
LARGE_CONFIGS = {"default": {}, "1000 epochs / patience 100": dict(epochs=1000, n_iter_no_change=100),
                 "200 epochs / patience 20": dict(epochs=200, n_iter_no_change=20)}


def metrics(mean, sd, y):
    return {"nll": float(-norm.logpdf(y, mean, sd).mean()), "rmse": float(np.sqrt(np.mean((mean - y) ** 2))),
            "coverage95": float(np.mean(np.abs(y - mean) < 1.959964 * sd))}


@contextlib.contextmanager
def patched(temperature=None, fan_in=None):
    """The MFVI regression temperature and the first layer's fan-in prior set for a variant."""
    t0, f0 = _models._MFVI_TEMPERATURE, _models._first_layer_prior_scale
    if temperature is not None:
        _models._MFVI_TEMPERATURE = {False: t0[False], True: temperature}
    if fan_in is not None:
        _models._first_layer_prior_scale = (
            lambda m, t, d: float(np.sqrt(d)) if m == "mfvi" and (fan_in or t == "classification") else 1.0)
    try:
        yield
    finally:
        _models._MFVI_TEMPERATURE, _models._first_layer_prior_scale = t0, f0


# name -> (options, patch): the variants of --variants (MFVI; "default" always runs)
VARIANTS = {
    "T=1, no fan-in prior, 200 epochs / patience 20 (the previous defaults)":
        (dict(epochs=200, n_iter_no_change=20), dict(temperature=1.0, fan_in=False)),
    "T=1, no fan-in prior": ({}, dict(temperature=1.0, fan_in=False)),
    "T=1": ({}, dict(temperature=1.0)),
    "T=0.3": ({}, dict(temperature=0.3)),
    "T=0.2": ({}, dict(temperature=0.2)),
    "T=0.1": ({}, dict(temperature=0.1)),
    "200 epochs / patience 20": (dict(epochs=200, n_iter_no_change=20), {}),
    "2000 epochs / patience 200": (dict(epochs=2000, n_iter_no_change=200), {}),
}
MC_DROPOUT_VARIANTS = {
    "1000 epochs / patience 100 (measured, not adopted)": (dict(epochs=1000, n_iter_no_change=100), {})}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--splits", type=int, default=10)
    ap.add_argument("--methods", default="mfvi,mc_dropout")
    ap.add_argument("--variants", action="store_true", help="also the variants of each default")
    ap.add_argument("--large", type=int, default=0, metavar="SPLITS",
                    help="also make_friedman1 with 20000 training rows on SPLITS splits (MFVI; fit times)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                  "regression_defaults.json"))
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    res = {"benchmark": "regression defaults", "splits": args.splits, "load_average_start": load_average(),
           "machine": machine_info(), "results": {}}
    baseline = {}
    for dname, data in DATASETS.items():
        rows = [metrics(*BayesianRidge().fit(Xtr, ytr).predict(Xte, return_std=True), yte)
                for Xtr, Xte, ytr, yte in (data(s) for s in range(args.splits))]
        baseline[dname] = rows
    res["results"]["BayesianRidge"] = baseline
    for method in args.methods.split(","):
        configs = {"default": ({}, {})}
        if args.variants:
            configs.update(VARIANTS if method == "mfvi" else MC_DROPOUT_VARIANTS)
        for cname, (opts, patch) in configs.items():
            key = f"{method} {cname}"
            res["results"][key] = {}
            for dname, data in DATASETS.items():
                rows = []
                for s in range(args.splits):
                    Xtr, Xte, ytr, yte = data(s)
                    t0 = time.perf_counter()
                    with patched(**patch):
                        reg = BayesianMLPRegressor(method=method, random_state=s, **opts).fit(Xtr, ytr)
                        m, sd = reg.predict(Xte, return_std=True)
                    rows.append(dict(metrics(m, sd, yte), fit_s=time.perf_counter() - t0,
                                     epochs_run=int(reg.model_.epochs_run)))
                res["results"][key][dname] = rows
    if args.large:
        res["large"] = {}
        for cname, opts in LARGE_CONFIGS.items():
            rows = []
            for s in range(args.large):
                Xtr, Xte, ytr, yte = friedman1_large(s)
                t0 = time.perf_counter()
                reg = BayesianMLPRegressor(method="mfvi", random_state=s, **opts).fit(Xtr, ytr)
                fit_s = time.perf_counter() - t0
                rows.append(dict(metrics(*reg.predict(Xte, return_std=True), yte), fit_s=fit_s,
                                 epochs_run=int(reg.model_.epochs_run)))
            res["large"][cname] = rows
            print(f"friedman1, 20000 rows, mfvi {cname:<28} NLL " + " ".join(f"{r['nll']:.3f}" for r in rows)
                  + "  fit " + " ".join(f"{r['fit_s']:.1f}s/{r['epochs_run']}ep" for r in rows))
    res["load_average_end"] = load_average()
    summary = {}
    print(f"{'configuration':<78}" + "".join(f"{d:>28}" for d in DATASETS))
    print(f"{'':<78}" + "".join(f"{'NLL median/worst  cov95':>28}" for _ in DATASETS))
    for key, per in res["results"].items():
        summary[key] = {}
        line = f"{key:<78}"
        for dname, rows in per.items():
            nll = np.array([r["nll"] for r in rows])
            cov = np.array([r["coverage95"] for r in rows])
            summary[key][dname] = {"nll_median": float(np.median(nll)), "nll_worst": float(nll.max()),
                                   "rmse_median": float(np.median([r["rmse"] for r in rows])),
                                   "coverage95_median": float(np.median(cov)), "coverage95_min": float(cov.min())}
            line += f"{np.median(nll):>12.3f}/{nll.max():<7.3f}{np.median(cov):>8.3f}"
        print(line)
    res["summary"] = summary
    from bayesgrad._files import replacing

    with replacing(args.out) as tmp:
        with open(tmp, "w") as fh:
            json.dump(res, fh, indent=1)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
