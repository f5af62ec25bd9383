"""The scikit-learn estimators' defaults with and without early stopping (issue 18), next to
scikit-learn's own MLPClassifier / MLPRegressor, on the data sets that ship with scikit-learn.

For each data set, ``--splits`` stratified (classification) or plain 80/20 train/test splits
(random_state = 0, 1, ...); inputs as loaded (the estimators standardise inside fit; the
scikit-learn MLPs get a StandardScaler in a pipeline, as their documentation advises).

Classification (load_digits, load_breast_cancer, load_wine): test accuracy, NLL (nats per
point) and ECE (15 equal-width bins of the top-label probability). Regression (load_diabetes):
RMSE, NLL and the share of test targets inside the central 95% predictive interval. The
scikit-learn MLPRegressor has no predictive variance: its NLL and coverage use a Gaussian with
the training residuals' variance (a homoscedastic plug-in).

``early_stopping=False`` is what mfvi and mc_dropout did before issue 18 (all ``epochs`` on
every row); ``early_stopping=True`` holds out validation_fraction=0.1 and stops after
n_iter_no_change epochs without improvement; ``_models.AUTO_EARLY_STOPPING`` holds which one
``"auto"`` (the default) picks for each method, chosen from these figures. Medians over the
splits, per-split values kept in the JSON.

    PYTHONPATH=python python bench/sklearn_defaults.py [--splits 3] [--out bench/results/sklearn_defaults.json]
"""
from __future__ import annotations

import argparse
import json
import os
import time
import warnings

import numpy as np
from scipy.stats import norm
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bayesgrad._quickbench import machine_info
from bayesgrad.sklearn import BayesianMLPClassifier, BayesianMLPRegressor
from bayesgrad.uncertainty import ece

CLASSIFICATION = {"digits": load_digits, "breast_cancer": load_breast_cancer, "wine": load_wine}
REGRESSION = {"diabetes": load_diabetes}

# (name, factory(task, seed)); the bayesgrad ones at their defaults apart from the seed and
# the early-stopping options named
CONFIGS = [
    ("mfvi early_stopping=False", lambda cls, s: cls(method="mfvi", early_stopping=False, random_state=s)),
    ("mfvi early_stopping=True", lambda cls, s: cls(method="mfvi", early_stopping=True, random_state=s)),
    ("mfvi early_stopping=True n_iter_no_change=50",
     lambda cls, s: cls(method="mfvi", early_stopping=True, n_iter_no_change=50, random_state=s)),
    ("mc_dropout early_stopping=False",
     lambda cls, s: cls(method="mc_dropout", early_stopping=False, random_state=s)),
    ("mc_dropout early_stopping=True", lambda cls, s: cls(method="mc_dropout", early_stopping=True, random_state=s)),
    ("laplace (default)", lambda cls, s: cls(method="laplace", random_state=s)),
]


def sk_mlp(task, seed, early):
    cls = MLPClassifier if task == "classification" else MLPRegressor
    return make_pipeline(StandardScaler(), cls(early_stopping=early, random_state=seed, max_iter=500))


def classification_metrics(p, y):
    p = np.clip(p, 1e-300, None)
    return {"accuracy": float(np.mean(p.argmax(1) == y)), "nll": float(-np.mean(np.log(p[np.arange(y.size), y]))),
            "ece": ece(p / p.sum(1, keepdims=True), y)}


def regression_metrics(mean, sd, y):
    return {"rmse": float(np.sqrt(np.mean((mean - y) ** 2))), "nll": float(-np.mean(norm.logpdf(y, mean, sd))),
            "coverage95": float(np.mean(np.abs(y - mean) <= 1.959964 * sd))}


def run_one(task, est, Xtr, ytr, Xte, yte, sklearn_mlp):
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(Xtr, ytr)
    secs = time.perf_counter() - t0
    if task == "classification":
        m = classification_metrics(est.predict_proba(Xte), yte)
    elif sklearn_mlp:
        sd = float(np.std(ytr - est.predict(Xtr)))
        m = regression_metrics(est.predict(Xte), np.full(len(yte), sd), yte)
    else:
        m = regression_metrics(*est.predict(Xte, return_std=True), yte)
    m["fit_seconds"] = secs
    m["epochs_run"] = int(getattr(est, "n_iter_", 0) or getattr(est[-1], "n_iter_", 0)) if not sklearn_mlp \
        else int(est[-1].n_iter_)
    return m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--splits", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "sklearn_defaults.json"))
    args = ap.parse_args()
    info = machine_info()
    results = {}
    for task, sets in (("classification", CLASSIFICATION), ("regression", REGRESSION)):
        cls = BayesianMLPClassifier if task == "classification" else BayesianMLPRegressor
        for name, loader in sets.items():
            X, y = loader(return_X_y=True)
            per = {}
            for s in range(args.splits):
                Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=s,
                                                      stratify=y if task == "classification" else None)
                runs = [(label, make(cls, s), False) for label, make in CONFIGS]
                runs += [("sklearn MLP (early_stopping=False)", sk_mlp(task, s, False), True),
                         ("sklearn MLP (early_stopping=True)", sk_mlp(task, s, True), True)]
                for label, est, is_sk in runs:
                    per.setdefault(label, []).append(run_one(task, est, Xtr, ytr, Xte, yte, is_sk))
                    print(name, s, label, {k: round(v, 4) for k, v in per[label][-1].items()}, flush=True)
            results[name] = {label: {"median": {k: float(np.median([r[k] for r in rs])) for k in rs[0]},
                                     "splits": rs} for label, rs in per.items()}
    out = {"machine": info, "load_after": os.getloadavg(), "splits": args.splits, "test_size": 0.2,
           "note": "fit_seconds measured on a shared, oversubscribed 2-core machine: not a speed figure",
           "results": results}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=1)
    for name, res in results.items():
        print(f"\n{name}")
        for label, r in res.items():
            print(f"  {label:<42} " + "  ".join(f"{k} {v:.4g}" for k, v in r["median"].items()))


if __name__ == "__main__":
    main()
