"""Benchmark: repeated engine calls from Python under glibc's default heap: the MLP
engine's VJP (``mlp.mlp_backward``, a 100-10-1 tanh network, float64, the shape of
RELAX's surrogate) on N = 2000 / 4000 / 8000 rows, one thread, the same arrays on
every call, as the RELAX estimator makes it on every estimate. Per call: the median
wall time and the page faults (``getrusage``'s minor faults, averaged over the
calls). A trace allocated afresh per call is faulted in again each time (its N x 10
buffers lie above glibc's mmap threshold); the engine keeps the calling thread's
trace between calls (docs/design.md, "Traces kept per thread"), so the faults per
call should be about 0. Each N runs in a fresh process: whether a freed buffer goes
back to the system depends on the heap's history (glibc raises its thresholds as
large blocks are freed), and a fresh process is where a user's loop starts.

    PYTHONPATH=python python bench/engine_calls.py [--repeats 201] [--out engine_calls.json]

Writes bench/results/<out>. Run it without the estimators benchmark's steady-heap
``mallopt``: glibc's defaults are what a user's process has.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
import bayesgrad as bg  # noqa: E402
from bayesgrad import _backend  # noqa: E402
from bayesgrad._quickbench import load_average, machine_info, median_time, write_results  # noqa: E402
from bayesgrad.nn import MLP  # noqa: E402


def one(n, repeats):
    """Time and page faults per call for N = n rows, in this (fresh) process."""
    bg.set_num_threads(1)
    k = _backend._core
    net = MLP((100, 10, 1), activation="tanh")
    cfg = net.net_config(k)
    rho = np.random.default_rng(0).standard_normal((1, net.n_params)) * 0.1
    grad = np.empty((1, net.n_params))
    X = np.random.default_rng(1).standard_normal((n, 100))
    w = np.random.default_rng(2).standard_normal((1, n, 1))

    def call():
        k.mlp.mlp_backward(cfg, rho, X, w, grad)

    t = median_time(call, repeats, warmup=3)
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(repeats):
        call()
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / repeats
    print(json.dumps({"seconds": t, "page_faults_per_call": faults}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=201)
    ap.add_argument("--out", default="engine_calls.json")
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # the child process's N
    args = ap.parse_args()
    if not _backend.native_available():
        sys.exit("needs the native core")
    if args.one is not None:
        return one(args.one, args.repeats)
    res = {"benchmark": "engine_calls", "repeats": args.repeats, "threads": 1, "heap": "glibc defaults",
           "load_average_at_start": load_average(), "machine": machine_info(), "rows": {}}
    for n in (2000, 4000, 8000):
        out = subprocess.run([sys.executable, __file__, "--one", str(n), "--repeats", str(args.repeats)],
                             check=True, capture_output=True, text=True).stdout
        row = json.loads(out.strip().splitlines()[-1])
        key = f"mlp_backward 100-10-1 tanh, N = {n}, float64"
        res["rows"][key] = row
        print(f"  {key:<45} {1e3 * row['seconds']:7.3f} ms  {row['page_faults_per_call']:7.1f} page faults a call")
    write_results(res, __file__, args.out)


if __name__ == "__main__":
    main()
