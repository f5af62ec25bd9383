"""The estimators' defaults on the issue-12 data sets, next to its targets.

load_digits: 30% test (stratified, random_state=0): accuracy, ECE (15 bins), NLL per point.
load_diabetes: 5-fold CV (shuffled, random_state=0): test log-likelihood per point and RMSE,
against sklearn's BayesianRidge on the same folds.

    PYTHONPATH=python python bench/laplace_defaults.py [--methods laplace,mfvi] [--out FILE.json]
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from scipy.stats import norm
from sklearn.datasets import load_diabetes, load_digits
from sklearn.linear_model import BayesianRidge
from sklearn.model_selection import KFold, train_test_split

import bayesgrad as bg
from bayesgrad.sklearn import BayesianMLPClassifier, BayesianMLPRegressor

TARGETS = {"digits_acc": ">= 0.95", "digits_ece": "<= 0.03", "digits_nll": "<= 0.12",
           "diabetes_loglik_gap": "<= 0.1 nats below BayesianRidge", "diabetes_rmse_ratio": "<= 1.08"}


def ece(p, y, bins=15):
    conf, pred = p.max(1), p.argmax(1)
    edges = np.linspace(0, 1, bins + 1)
    e = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            e += m.mean() * abs((pred[m] == y[m]).mean() - conf[m].mean())
    return float(e)


def digits(method, seed, **kw):
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=seed, stratify=y)
    clf = BayesianMLPClassifier(method=method, random_state=seed, **kw).fit(Xtr, ytr)
    p = clf.predict_proba(Xte)
    return {"acc": float((p.argmax(1) == yte).mean()), "ece": ece(p, yte),
            "nll": float(-np.mean(np.log(np.clip(p[np.arange(len(yte)), yte], 1e-300, None))))}


def diabetes(method, seed, **kw):
    X, y = load_diabetes(return_X_y=True)
    ll, rmse, ll_br, rmse_br = [], [], [], []
    for tr, te in KFold(5, shuffle=True, random_state=seed).split(X):
        reg = BayesianMLPRegressor(method=method, random_state=seed, **kw).fit(X[tr], y[tr])
        m, s = reg.predict(X[te], return_std=True)
        ll.append(norm.logpdf(y[te], m, s).mean())
        rmse.append(np.sqrt(np.mean((m - y[te]) ** 2)))
        br = BayesianRidge().fit(X[tr], y[tr])
        mb, sb = br.predict(X[te], return_std=True)
        ll_br.append(norm.logpdf(y[te], mb, sb).mean())
        rmse_br.append(np.sqrt(np.mean((mb - y[te]) ** 2)))
    return {"loglik": float(np.mean(ll)), "rmse": float(np.mean(rmse)), "br_loglik": float(np.mean(ll_br)),
            "br_rmse": float(np.mean(rmse_br)), "loglik_gap": float(np.mean(ll_br) - np.mean(ll)),
            "rmse_ratio": float(np.mean(rmse) / np.mean(rmse_br))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default="laplace")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--laplace-variants", action="store_true",
                    help="also the laplace options laplace_prior=gridsearch and laplace_link=bridge / mc")
    ap.add_argument("--out")
    a = ap.parse_args()
    bg.set_num_threads(a.threads)
    res = {"targets": TARGETS, "seed": a.seed, "load_before": os.getloadavg(), "methods": {}}
    for m in a.methods.split(","):
        t = time.perf_counter()
        r = {"digits": digits(m, a.seed), "diabetes": diabetes(m, a.seed)}
        r["seconds"] = time.perf_counter() - t
        res["methods"][m] = r
        print(m, json.dumps(r))
    if a.laplace_variants:
        for name, kw in [("laplace_prior=gridsearch", dict(laplace_prior="gridsearch")),
                         ("laplace_subset=all,structure=kron", dict(laplace_subset="all", laplace_structure="kron"))]:
            r = {"digits": digits("laplace", a.seed, **kw), "diabetes": diabetes("laplace", a.seed, **kw)}
            res["methods"][name] = r
            print(name, json.dumps(r))
    res["load_after"] = os.getloadavg()
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
