"""Benchmark: log densities and scores of mean-field distributions.

``log_prob`` and ``score`` of a Normal, a Laplace, a LogNormal, a Gumbel, a Gamma, a Bernoulli (logits), a
Poisson, an Exponential, a StudentT and a Beta over 1000 coordinates (a mean-field posterior's shape) at 10^4
draws each (10^7 elements), of a Dirichlet of 10 components at 10^6 draws, of a RelaxedBernoulli (1000
coordinates) and a RelaxedCategorical (100 x 10 classes) at temperature 0.5, and of the Normal
and the StudentT at 10^3 draws (10^6 elements: outputs of 7.6 MiB, below the output cache's former 8 MiB
threshold), float64, timed in the same run (medians of repeats):
  native     bayesgrad on the "cpu" backend at 1 and at 2 threads
  twin       bayesgrad on the "numpy" backend
  numpy      the formula a NumPy user writes (the location-scale families: z = (x - loc) / scale
             and the density from it, in one expression per output; Gamma: scipy.special.gammaln
             for the constant, then the density and its two derivatives; Poisson: gammaln(x + 1);
             StudentT: gammaln / digamma of df, log1p(z^2 / df); Beta: betaln, log1p(-x); Dirichlet:
             gammaln of the concentrations; the relaxations: logaddexp / logsumexp in log space)

    PYTHONPATH=python python bench/densities.py [--repeats 7] [--out densities.json] [--families Beta,Dirichlet]

Writes bench/results/densities.json (``--out`` for another name) and prints a table.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np
from scipy import special

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
import bayesgrad as bg  # noqa: E402
from bayesgrad._quickbench import load_average, machine_info, median_time  # noqa: E402

D, N = 1000, 10_000
LOC, SCALE = np.linspace(-1.0, 1.0, D), np.linspace(0.5, 2.0, D)
CONC, RATE = np.linspace(0.5, 20.0, D), np.linspace(1.0, 2.0, D)
LOGITS, DF = np.linspace(-3.0, 3.0, D), np.linspace(0.5, 30.0, D)
BETA_A, BETA_B = np.linspace(0.5, 5.0, D), np.linspace(1.0, 3.0, D)
DIR = np.linspace(0.5, 3.0, 10)  # Dirichlet: 10 components, N * D / 10 draws (the same 10^7 values)
TEMP, CAT_LOGITS = 0.5, np.linspace(-2.0, 2.0, D).reshape(D // 10, 10)  # the relaxations (100 x 10 classes)


def numpy_formulas():
    """name -> (log_prob(x), score(x)) as plain NumPy / SciPy."""
    half_log_2pi, log2 = 0.5 * math.log(2 * math.pi), math.log(2.0)

    def normal_lp(x):
        z = (x - LOC) / SCALE
        return -0.5 * z * z - np.log(SCALE) - half_log_2pi

    def normal_score(x):
        z = (x - LOC) / SCALE
        return z / SCALE, (z * z - 1.0) / SCALE

    def laplace_lp(x):
        return -np.abs((x - LOC) / SCALE) - np.log(SCALE) - log2

    def laplace_score(x):
        z = (x - LOC) / SCALE
        return np.sign(z) / SCALE, (np.abs(z) - 1.0) / SCALE

    def lognormal_lp(x):
        y = np.log(x)
        z = (y - LOC) / SCALE
        return -0.5 * z * z - np.log(SCALE) - half_log_2pi - y

    def lognormal_score(x):
        z = (np.log(x) - LOC) / SCALE
        return z / SCALE, (z * z - 1.0) / SCALE

    def gumbel_lp(x):
        z = (x - LOC) / SCALE
        return -(z + np.exp(-z)) - np.log(SCALE)

    def gumbel_score(x):
        z = (x - LOC) / SCALE
        e = np.exp(-z)
        return (1.0 - e) / SCALE, (z - z * e - 1.0) / SCALE

    def gamma_lp(x):
        return CONC * np.log(RATE) + (CONC - 1.0) * np.log(x) - RATE * x - special.gammaln(CONC)

    def gamma_score(x):
        return np.log(RATE) + np.log(x) - special.digamma(CONC), CONC / RATE - x

    def bernoulli_lp(x):
        return x * LOGITS - np.logaddexp(0.0, LOGITS)

    def bernoulli_score(x):
        return x - special.expit(LOGITS)

    def poisson_lp(x):
        return x * np.log(CONC) - CONC - special.gammaln(x + 1.0)

    def poisson_score(x):
        return x / CONC - 1.0

    def exponential_lp(x):
        return np.log(RATE) - RATE * x

    def exponential_score(x):
        return 1.0 / RATE - x

    def studentt_lp(x):
        z = (x - LOC) / SCALE
        c = special.gammaln(0.5 * (DF + 1.0)) - special.gammaln(0.5 * DF) - 0.5 * np.log(DF * np.pi) - np.log(SCALE)
        return c - 0.5 * (DF + 1.0) * np.log1p(z * z / DF)

    def studentt_score(x):
        z = (x - LOC) / SCALE
        w = z * z / DF
        psi = special.digamma(0.5 * (DF + 1.0)) - special.digamma(0.5 * DF) - 1.0 / DF
        d_df = 0.5 * (psi - np.log1p(w) + (DF + 1.0) * w / (DF * (1.0 + w)))
        return d_df, (DF + 1.0) * z / (SCALE * (DF + z * z)), ((DF + 1.0) * w / (1.0 + w) - 1.0) / SCALE

    def beta_lp(x):
        return (BETA_A - 1.0) * np.log(x) + (BETA_B - 1.0) * np.log1p(-x) - special.betaln(BETA_A, BETA_B)

    def beta_score(x):
        ab = special.digamma(BETA_A + BETA_B)
        return np.log(x) - special.digamma(BETA_A) + ab, np.log1p(-x) - special.digamma(BETA_B) + ab

    def dirichlet_lp(x):
        lb = special.gammaln(DIR).sum() - special.gammaln(DIR.sum())
        return ((DIR - 1.0) * np.log(x)).sum(-1) - lb

    def dirichlet_score(x):
        return np.log(x) - special.digamma(DIR) + special.digamma(DIR.sum())

    def relaxed_bernoulli_parts(x):
        lx, l1x = np.log(x), np.log1p(-x)
        return lx, l1x, LOGITS - TEMP * lx + TEMP * l1x

    def relaxed_bernoulli_lp(x):
        lx, l1x, _ = relaxed_bernoulli_parts(x)
        return (np.log(TEMP) + LOGITS - (TEMP + 1.0) * (lx + l1x)
                - 2.0 * np.logaddexp(LOGITS - TEMP * lx, -TEMP * l1x))

    def relaxed_bernoulli_score(x):
        lx, l1x, z = relaxed_bernoulli_parts(x)
        w = special.expit(z)
        return 1.0 / TEMP - (lx + l1x) + 2.0 * (w * lx + (1.0 - w) * l1x), 1.0 - 2.0 * w

    def relaxed_categorical_lp(x):
        lx = np.log(x)
        k = CAT_LOGITS.shape[-1]
        return (math.lgamma(k) + (k - 1) * np.log(TEMP) + np.sum(CAT_LOGITS - (TEMP + 1.0) * lx, axis=-1)
                - k * special.logsumexp(CAT_LOGITS - TEMP * lx, axis=-1))

    def relaxed_categorical_score(x):  # (the temperature is one scalar: its gradient summed over coordinates)
        lx = np.log(x)
        k = CAT_LOGITS.shape[-1]
        s = special.softmax(CAT_LOGITS - TEMP * lx, axis=-1)
        d_t = (k - 1) / TEMP - lx.sum(-1) + k * (s * lx).sum(-1)
        return d_t.sum(-1), 1.0 - k * s

    return {"Normal": (normal_lp, normal_score), "Laplace": (laplace_lp, laplace_score),
            "LogNormal": (lognormal_lp, lognormal_score), "Gumbel": (gumbel_lp, gumbel_score),
            "Gamma": (gamma_lp, gamma_score), "Bernoulli": (bernoulli_lp, bernoulli_score),
            "Poisson": (poisson_lp, poisson_score), "Exponential": (exponential_lp, exponential_score),
            "StudentT": (studentt_lp, studentt_score), "Beta": (beta_lp, beta_score),
            "Dirichlet": (dirichlet_lp, dirichlet_score),
            "RelaxedBernoulli": (relaxed_bernoulli_lp, relaxed_bernoulli_score),
            "RelaxedCategorical": (relaxed_categorical_lp, relaxed_categorical_score)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default="densities.json", help="result file name in bench/results/")
    ap.add_argument("--families", default=None, help="comma-separated names: only these rows")
    args = ap.parse_args()
    load_start = load_average()
    B = bg.distributions
    dists = {"Normal": B.Normal(LOC, SCALE), "Laplace": B.Laplace(LOC, SCALE), "LogNormal": B.LogNormal(LOC, SCALE),
             "Gumbel": B.Gumbel(LOC, SCALE), "Gamma": B.Gamma(CONC, RATE), "Bernoulli": B.Bernoulli(logits=LOGITS),
             "Poisson": B.Poisson(CONC), "Exponential": B.Exponential(RATE), "StudentT": B.StudentT(DF, LOC, SCALE),
             "Beta": B.Beta(BETA_A, BETA_B), "Dirichlet": B.Dirichlet(DIR),
             "RelaxedBernoulli": B.RelaxedBernoulli(TEMP, logits=LOGITS),
             "RelaxedCategorical": B.RelaxedCategorical(TEMP, logits=CAT_LOGITS)}
    plain = numpy_formulas()
    threads = bg.get_num_threads()
    rows = []
    print(f"{D} coordinates x {N} draws (and x {N // 10}), float64, median of {args.repeats}; "
          f"load {load_start[0]:.2f}")
    cases = [(name, d, N * D // 10 if name == "Dirichlet" else N) for name, d in dists.items()]
    cases += [(name, dists[name], N // 10) for name in ("Normal", "StudentT")]
    if args.families:
        cases = [c for c in cases if c[0] in args.families.split(",")]
    for name, d, n in cases:
        x = d.sample(n, seed=1)
        for what in ("log_prob", "score"):
            if plain[name][0 if what == "log_prob" else 1] is None:  # (no NumPy formula written for it)
                continue
            fn = getattr(d, what)
            row = {"distribution": name, "call": what, "elements": x.size}
            with bg.use_backend("cpu"):
                for th in (1, 2):
                    bg.set_num_threads(th)
                    row[f"native_{th}t_s"] = median_time(lambda: fn(x), args.repeats)
                bg.set_num_threads(threads)
            with bg.use_backend("numpy"):
                row["twin_s"] = median_time(lambda: fn(x), max(3, args.repeats // 2))
            row["numpy_s"] = median_time(lambda: plain[name][0 if what == "log_prob" else 1](x), args.repeats)
            for k in ("twin_s", "numpy_s"):
                row[k.replace("_s", "_over_native_1t")] = row[k] / row["native_1t_s"]
            rows.append(row)
            print(f"  {name:11s} {x.size:8d} {what:9s} native 1t {1e3 * row['native_1t_s']:7.1f} ms  2t "
                  f"{1e3 * row['native_2t_s']:7.1f} ms  twin {1e3 * row['twin_s']:7.1f} ms  numpy "
                  f"{1e3 * row['numpy_s']:7.1f} ms  (numpy / native 1t x{row['numpy_over_native_1t']:.1f})")
    out = {"benchmark": "densities", "D": D, "N": N, "repeats": args.repeats, "load_average_start": load_start,
           "load_average_end": load_average(), "machine": machine_info(), "results": rows}
    path = os.path.join(os.path.dirname(__file__), "results", args.out)
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print("wrote", path)


if __name__ == "__main__":
    main()
