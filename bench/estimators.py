"""Benchmark: Monte Carlo gradient estimates for a D = 1000 mean-field Normal,
n_samples = 1000, cheap f(x) = sum(x^2) (grad 2x).

Times (median of repeats, same run):
* end-to-end estimates per second (sampling + f + accumulation) for pathwise,
  score function (LOO baseline) and score function without baseline, on the
  native backend ("cpu") and the NumPy twin ("numpy");
* the accumulation step alone: the native kernel, its NumPy twin, and the plain
  NumPy expression a user would write (terms, then mean and var(ddof=1)).

Writes bench/results/estimators.json and prints a table.
Run: PYTHONPATH=python python bench/estimators.py [--repeats 15]
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np

import bayesgrad as bg
from bayesgrad import _backend
from bayesgrad._quickbench import load_average, machine_info, median_time

D, N = 1000, 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=None, help="native threads (default: as configured)")
    args = ap.parse_args()
    if args.threads:
        bg.set_num_threads(args.threads)
    E = bg.estimators
    d = bg.distributions.Normal(np.linspace(-1, 1, D), np.linspace(0.5, 2, D))
    f = lambda x: (x * x).sum(-1)  # noqa: E731
    df = lambda x: 2.0 * x  # noqa: E731
    backends = ["cpu", "numpy"] if _backend.native_available() else ["numpy"]
    end_to_end = {
        "pathwise": lambda: E.pathwise(f, d, N, seed=1, grad_f=df),
        "score_function_loo": lambda: E.score_function(f, d, N, seed=1, baseline="loo"),
        "score_function": lambda: E.score_function(f, d, N, seed=1),
    }
    res = {"D": D, "n_samples": N, "repeats": args.repeats, "info": bg.backend_info(), "end_to_end": {},
           "accumulation": {}, "threads": bg.get_num_threads(),
           "load_average_at_start": load_average(), "machine": machine_info()}
    res["info"] = {k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v))
                   for k, v in res["info"].items()}
    for name, fn in end_to_end.items():
        row = {}
        for b in backends:
            with bg.use_backend(b):
                row[b] = median_time(fn, args.repeats)
        if "cpu" in row:
            row["speedup_cpu_vs_numpy"] = row["numpy"] / row["cpu"]
        res["end_to_end"][name] = row

    r = np.random.default_rng(0)
    g = r.standard_normal((N, D))
    eps = r.standard_normal((N, D))
    fx = r.standard_normal(N) + 5.0
    mean, var = np.empty(D), np.empty(D)

    def plain_pathwise():
        t = g * eps
        return t.mean(0), t.var(0, ddof=1)

    def plain_loo():
        b = (fx.sum() - fx) / (N - 1)
        t = eps * (fx - b)[:, None]
        return t.mean(0), t.var(0, ddof=1)

    kernels = {"pathwise_accumulate": (lambda k: k.estimators.pathwise_accumulate(g, eps, mean, var, None),
                                       plain_pathwise),
               "score_accumulate_loo": (lambda k: k.estimators.score_accumulate(eps, fx, None, True, mean, var, None),
                                        plain_loo)}
    for name, (kern, plain) in kernels.items():
        row = {"plain_numpy": median_time(plain, args.repeats)}
        if _backend.native_available():
            from bayesgrad import _core
            row["native"] = median_time(lambda: kern(_core), args.repeats)
        from bayesgrad import _numpy
        row["numpy_twin"] = median_time(lambda: kern(_numpy), args.repeats)
        if "native" in row:
            row["speedup_native_vs_plain_numpy"] = row["plain_numpy"] / row["native"]
        res["accumulation"][name] = row

    print(f"D = {D}, n_samples = {N}, threads = {bg.get_num_threads()}, median of {args.repeats}, "
          f"load average at start {res['load_average_at_start'][0]:.1f}")
    print("end to end (estimates per second):")
    for name, row in res["end_to_end"].items():
        cells = "  ".join(f"{b} {1.0 / row[b]:8.1f}/s ({row[b] * 1e3:6.2f} ms)" for b in backends)
        extra = f"  native/numpy x{row['speedup_cpu_vs_numpy']:.2f}" if "speedup_cpu_vs_numpy" in row else ""
        print(f"  {name:<20} {cells}{extra}")
    print("accumulation only (ms):")
    for name, row in res["accumulation"].items():
        cells = "  ".join(f"{k} {v * 1e3:7.3f}" for k, v in row.items() if not k.startswith("speedup"))
        extra = f"  native vs plain x{row['speedup_native_vs_plain_numpy']:.2f}" if "native" in row else ""
        print(f"  {name:<22} {cells}{extra}")
    out = os.path.join(os.path.dirname(__file__), "results", "estimators.json")
    with open(out, "w") as fh:
        json.dump(res, fh, indent=2)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
