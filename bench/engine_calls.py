"""Benchmark: repeated engine calls from Python under glibc's default heap, one thread
(``--threads`` for another count), the same arrays on every call, as a user's loop makes them:

* the MLP engine's VJP (``mlp.mlp_backward``, a 100-10-1 tanh network, float64, the
  shape of RELAX's surrogate, which calls it on every estimate) on N = 2000 / 4000 /
  8000 / 5000 rows, and its exact mixed product (``mlp.mlp_mixed_vjp``) on 2000 rows: RELAX's
  surrogate gradient for 1000 samples, which had been a VJP on 5000 points of central differences;
  and its summed Gaussian NLL with gradient (``mlp.mlp_nll_grad``) on N = 4000 / 8000 rows;
* a diagonal GGN Laplace fit of a 784-400-400-10 ReLU network on 2000 rows (float64):
  ``Laplace.fit`` calls the curvature kernel once per chunk of 256 rows;
* that posterior's GLM predictive (diagonal and Kronecker) at 1000 points: the kernel
  runs its chunks of rows (here 256) on the calling thread.

Per call: the median wall time and the page faults (``getrusage``'s minor faults,
averaged over the calls). Buffers allocated afresh per call are faulted in again each
time (they lie above glibc's mmap threshold); the engine keeps the calling thread's
workspace between calls (docs/design.md, "Workspaces kept per thread"), so the faults per
call should be about 0. Each case runs in a fresh process: whether a freed buffer goes
back to the system depends on the heap's history (glibc raises its thresholds as large
blocks are freed), and a fresh process is where a user's loop starts.

    PYTHONPATH=python python bench/engine_calls.py [--repeats 201] [--threads 1] [--only mlp_backward]
        [--out engine_calls.json]

(``--only``: the cases whose name contains the substring.) At 2 threads the VJP rows show the
engine's row tiles on the pool (one network on many rows of a narrow network: docs/design.md,
"Row tiles of one network").

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


def _small_net():
    """The 100-10-1 tanh network (RELAX's surrogate shape): the core, its config, parameters (1, P), grad (1, P)."""
    k = _backend._core
    net = MLP((100, 10, 1), activation="tanh")
    rho = np.random.default_rng(0).standard_normal((1, net.n_params)) * 0.1
    return k, net.net_config(k), rho, np.empty((1, net.n_params))


def vjp_case(n):
    """One VJP of the 100-10-1 network on n rows."""
    k, cfg, rho, grad = _small_net()
    X = np.random.default_rng(1).standard_normal((n, 100))
    w = np.random.default_rng(2).standard_normal((1, n, 1))
    return lambda: k.mlp.mlp_backward(cfg, rho, X, w, grad)


def mixed_case(n):
    """One exact mixed product (``mlp.mlp_mixed_vjp``) of the 100-10-1 network on n rows: RELAX's surrogate
    gradient on [z; z~] (n = 2 n_samples), which replaced a VJP on 5 n_samples points of central differences."""
    k, cfg, rho, grad = _small_net()
    r = np.random.default_rng(1)
    X, V = r.standard_normal((n, 100)), r.standard_normal((n, 100))
    c, e = r.standard_normal((1, n, 1)), r.standard_normal((1, n, 1))
    return lambda: k.mlp.mlp_mixed_vjp(cfg, rho, X, V, c, e, grad)


def nll_case(n):
    """The summed Gaussian NLL and its gradient (``mlp.mlp_nll_grad``, ``MLP.nll(grad=True)``) of the
    100-10-1 network on n rows: full-batch training and SG-MCMC's full-data gradients."""
    k, cfg, rho, grad = _small_net()
    r = np.random.default_rng(1)
    X, y, ln, out = r.standard_normal((n, 100)), r.standard_normal((n, 1)), np.zeros(1), np.empty(1)
    return lambda: k.mlp.mlp_nll_grad(cfg, 0, rho, X, y, ln, out, grad)


def laplace_case():
    """One diagonal GGN Laplace fit of 784-400-400-10 on 2000 rows."""
    from bayesgrad import laplace

    r = np.random.default_rng(0)
    X, y = r.standard_normal((2000, 784)), r.integers(0, 10, 2000)
    mlp = MLP([784, 400, 400, 10], activation="relu")
    theta = mlp.init(seed=0)
    return lambda: laplace.Laplace(mlp, theta, likelihood="categorical", structure="diag").fit(X, y)


def predictive_case(structure):
    """The GLM predictive (probit) of a fitted Laplace posterior of 784-400-400-10 at 1000 points."""
    from bayesgrad import laplace

    r = np.random.default_rng(0)
    X, y = r.standard_normal((2000, 784)), r.integers(0, 10, 2000)
    mlp = MLP([784, 400, 400, 10], activation="relu")
    la = laplace.Laplace(mlp, mlp.init(seed=0), likelihood="categorical", structure=structure).fit(X, y)
    Xt = r.standard_normal((1000, 784))
    return lambda: la.predict(Xt)


CASES = {"mlp_backward 100-10-1 tanh, N = 2000, float64": (lambda: vjp_case(2000), 1),
         "mlp_backward 100-10-1 tanh, N = 4000, float64": (lambda: vjp_case(4000), 1),
         "mlp_backward 100-10-1 tanh, N = 8000, float64": (lambda: vjp_case(8000), 1),
         "mlp_backward 100-10-1 tanh, N = 5000, float64": (lambda: vjp_case(5000), 1),
         "mlp_mixed_vjp 100-10-1 tanh, N = 2000, float64": (lambda: mixed_case(2000), 1),
         "mlp_nll_grad 100-10-1 tanh gaussian, N = 4000, float64": (lambda: nll_case(4000), 1),
         "mlp_nll_grad 100-10-1 tanh gaussian, N = 8000, float64": (lambda: nll_case(8000), 1),
         "Laplace diag GGN fit, 784-400-400-10 relu, N = 2000, float64": (laplace_case, 20),
         "Laplace GLM predictive, diag, 784-400-400-10, 1000 points": (lambda: predictive_case("diag"), 20),
         "Laplace GLM predictive, kron, 784-400-400-10, 1000 points": (lambda: predictive_case("kron"), 40)}


def one(name, repeats, threads):
    """Time and page faults per call of case ``name`` (repeats divided by its cost), in this (fresh) process."""
    bg.set_num_threads(threads)
    make, cost = CASES[name]
    call = make()
    reps = max(5, repeats // cost)
    t = median_time(call, reps, warmup=3)
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(reps):
        call()
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / reps
    print(json.dumps({"seconds": t, "page_faults_per_call": faults, "repeats": reps}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=201)
    ap.add_argument("--out", default="engine_calls.json")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", default=None, help="only the cases whose name contains this substring")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # the child process's case
    args = ap.parse_args()
    if not _backend.native_available():
        sys.exit("needs the native core")
    if args.one is not None:
        return one(args.one, args.repeats, args.threads)
    res = {"benchmark": "engine_calls", "repeats": args.repeats, "threads": args.threads, "heap": "glibc defaults",
           "load_average_at_start": load_average(), "machine": machine_info(), "rows": {}}
    for key in CASES:
        if args.only and args.only not in key:
            continue
        out = subprocess.run([sys.executable, __file__, "--one", key, "--repeats", str(args.repeats),
                              "--threads", str(args.threads)],
                             check=True, capture_output=True, text=True).stdout
        row = json.loads(out.strip().splitlines()[-1])
        res["rows"][key] = row
        print(f"  {key:<62} {1e3 * row['seconds']:8.3f} ms  {row['page_faults_per_call']:8.1f} page faults a call")
    write_results(res, __file__, args.out)


if __name__ == "__main__":
    main()
