"""The estimators' defaults on the issue-12 data sets, next to its targets.

load_digits: 30% test (stratified, random_state=seed): accuracy, ECE (15 bins), NLL per point,
and the epistemic part: the mean mutual information (nats) of the predictive's samples, and for
Laplace the mean variance of the GLM logits (0 for MAP).
load_diabetes: 5-fold CV (shuffled, random_state=seed): test log-likelihood per point and RMSE,
against sklearn's BayesianRidge on the same folds, and the epistemic share of the predictive
variance.

Each seed is a different split and a different training seed; "summary" has the worst value over
the seeds of each target quantity.

    PYTHONPATH=python python bench/laplace_defaults.py [--methods laplace,mfvi] [--seeds 0,1,2]
        [--laplace-variants] [--out FILE.json]
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
from bayesgrad._quickbench import machine_info
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
    out = {"acc": float((p.argmax(1) == yte).mean()), "ece": ece(p, yte),
           "nll": float(-np.mean(np.log(np.clip(p[np.arange(len(yte)), yte], 1e-300, None)))),
           "mutual_information": float(np.mean(clf.predict_uncertainty(Xte, as_frame=False).epistemic))}
    la = clf.posterior_
    if method == "laplace":
        _, fvar = la.functional_variance(clf.model_._xs(np.asarray(Xte, np.float64)))
        out["logit_var"] = float(np.mean(np.diagonal(fvar, axis1=1, axis2=2)))
        out["prior_precision"] = np.asarray(la.prior_precision).tolist()
    return out


def diabetes(method, seed, **kw):
    X, y = load_diabetes(return_X_y=True)
    ll, rmse, ll_br, rmse_br, epi = [], [], [], [], []
    for tr, te in KFold(5, shuffle=True, random_state=seed).split(X):
        reg = BayesianMLPRegressor(method=method, random_state=seed, **kw).fit(X[tr], y[tr])
        m, s = reg.predict(X[te], return_std=True)
        u = reg.predict_uncertainty(X[te], as_frame=False)
        epi.append(float(np.mean(u.epistemic) / np.mean(u.total)))
        ll.append(norm.logpdf(y[te], m, s).mean())
        rmse.append(np.sqrt(np.mean((m - y[te]) ** 2)))
        br = BayesianRidge().fit(X[tr], y[tr])
        mb, sb = br.predict(X[te], return_std=True)
        ll_br.append(norm.logpdf(y[te], mb, sb).mean())
        rmse_br.append(np.sqrt(np.mean((mb - y[te]) ** 2)))
    return {"loglik": float(np.mean(ll)), "rmse": float(np.mean(rmse)), "br_loglik": float(np.mean(ll_br)),
            "br_rmse": float(np.mean(rmse_br)), "loglik_gap": float(np.mean(ll_br) - np.mean(ll)),
            "rmse_ratio": float(np.mean(rmse) / np.mean(rmse_br)), "epistemic_share": float(np.mean(epi))}


def summary(runs):
    """The worst value over the seeds of each target quantity, and the mean epistemic parts."""
    d = [r["digits"] for r in runs]
    b = [r["diabetes"] for r in runs]
    out = {"digits_acc_min": min(x["acc"] for x in d), "digits_ece_max": max(x["ece"] for x in d),
           "digits_nll_max": max(x["nll"] for x in d),
           "digits_mutual_information_mean": float(np.mean([x["mutual_information"] for x in d])),
           "diabetes_loglik_gap_max": max(x["loglik_gap"] for x in b),
           "diabetes_rmse_ratio_max": max(x["rmse_ratio"] for x in b),
           "diabetes_epistemic_share_mean": float(np.mean([x["epistemic_share"] for x in b]))}
    if "logit_var" in d[0]:
        out["digits_logit_var_mean"] = float(np.mean([x["logit_var"] for x in d]))
    out["meets_targets"] = bool(out["digits_acc_min"] >= 0.95 and out["digits_ece_max"] <= 0.03
                                and out["digits_nll_max"] <= 0.12 and out["diabetes_loglik_gap_max"] <= 0.1
                                and out["diabetes_rmse_ratio_max"] <= 1.08)
    return out


#: Laplace options measured next to the default with --laplace-variants: the candidates for it
VARIANTS = [("laplace_prior=marglik", dict(laplace_prior="marglik")),
            ("laplace_prior=gridsearch", dict(laplace_prior="gridsearch")),
            ("laplace_prior=fixed (MAP weight decay)", dict(laplace_prior="fixed")),
            ("laplace_prior=marglik,structure=kron", dict(laplace_prior="marglik", laplace_structure="kron")),
            ("laplace_subset=all,structure=kron (prior auto)", dict(laplace_subset="all", laplace_structure="kron"))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default="laplace")
    ap.add_argument("--seed", type=int, default=None, help="one seed (same as --seeds N)")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds: each a split and a training seed")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--laplace-variants", action="store_true",
                    help="also the Laplace options in VARIANTS (prior by marglik / gridsearch / fixed, links, ...)")
    ap.add_argument("--out")
    a = ap.parse_args()
    seeds = [a.seed] if a.seed is not None else [int(x) for x in a.seeds.split(",")]
    bg.set_num_threads(a.threads)
    res = {"targets": TARGETS, "seeds": seeds, "machine": machine_info(), "load_before": os.getloadavg(),
           "methods": {}}
    todo = [(m, m, {}) for m in a.methods.split(",")]
    if a.laplace_variants:
        todo += [(name, "laplace", kw) for name, kw in VARIANTS]
    for name, m, kw in todo:
        t = time.perf_counter()
        runs = [{"seed": s, "digits": digits(m, s, **kw), "diabetes": diabetes(m, s, **kw)} for s in seeds]
        r = {"options": kw, "summary": summary(runs), "runs": runs, "seconds": time.perf_counter() - t}
        res["methods"][name] = r
        print(name, json.dumps(r["summary"]), flush=True)
    res["load_after"] = os.getloadavg()
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
