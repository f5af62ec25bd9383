"""Benchmark: the REBAR/RELAX Bernoulli and Categorical kernels on each SIMD path of the native
core (scalar, AVX2, AVX-512 where the CPU has them) and the NumPy twin, one thread, at a
REBAR call's size (n = 1000 draws of p = 100 coordinates, 10 Categorical coordinates of 10
classes, the temperature's three-point difference): ``relax_bernoulli_sample`` /
``relax_categorical_sample`` (draws and relaxations), ``relax_bernoulli_part_fd`` /
``relax_categorical_part`` and the combine kernels without a network (REBAR) and with one
(RELAX). Paths are timed in alternating blocks, medians of repeats.

    PYTHONPATH=python python bench/relax_kernels.py [--repeats 51] [--out relax_kernels.json]

Writes bench/results/<out>.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
import bayesgrad as bg  # noqa: E402
from bayesgrad import _backend  # noqa: E402
from bayesgrad import _numpy as twin  # noqa: E402
from bayesgrad._quickbench import load_average, machine_info, median_time, write_results  # noqa: E402

N, P, LAM, STEP = 1000, 100, 0.5, 1e-4


def cases(mod):
    """name -> a call of the kernel of module ``mod`` on fixed inputs."""
    r = np.random.default_rng(0)
    eta = np.linspace(-1, 1, P)
    draws, y = np.empty((5, N, P)), np.empty((3, 2 * N, P))
    fv, gv = r.standard_normal(6 * N), r.standard_normal((6 * N, P))
    yv, dzt, score, fb = r.uniform(size=(6 * N, P)), r.uniform(0.1, 1, (N, P)), r.standard_normal((N, P)), \
        r.standard_normal(N)
    a = np.empty((2, N, P))
    rr, gx = r.standard_normal(2 * N), r.standard_normal((2 * N, P))
    g1, g2, gs = np.empty((N, P)), np.empty((2, N, P)), np.empty(N)
    ke = mod.estimators
    lp = np.log(np.full((10, P // 10), 1.0 / (P // 10))) + np.linspace(-1, 1, P).reshape(10, -1)
    lp -= np.log(np.exp(lp).sum(1, keepdims=True))
    pr, cdraws, g3 = np.exp(lp), np.empty((5, N, P)), np.empty((3, N, P))
    twin.estimators.relax_categorical_sample(lp, 1, 2, 3, LAM, STEP, cdraws, None)  # valid r, b, score
    return {
        "relax_categorical_sample (draws, three temperatures)":
            lambda: ke.relax_categorical_sample(lp, 1, 2, 3, LAM, STEP, draws, y),
        "relax_categorical_part (three temperatures)":
            lambda: ke.relax_categorical_part(fv, gv, yv, cdraws, pr, LAM, STEP, a),
        "relax_categorical_combine, REBAR (no network)":
            lambda: ke.relax_categorical_combine(fb, cdraws, pr, a, 0.7, None, None, g1, None),
        "relax_categorical_combine, RELAX (network)":
            lambda: ke.relax_categorical_combine(fb, cdraws, pr, a, 0.7, rr, gx, g3, gs),
        "relax_bernoulli_sample (draws, three temperatures)":
            lambda: ke.relax_bernoulli_sample(eta, 1, 2, 3, LAM, STEP, draws, y),
        "relax_bernoulli_part_fd": lambda: ke.relax_bernoulli_part_fd(fv, gv, yv, dzt, score, LAM, STEP, a),
        "relax_bernoulli_combine, REBAR (no network)":
            lambda: ke.relax_bernoulli_combine(fb, score, a, 0.7, None, None, dzt, g1, None),
        "relax_bernoulli_combine, RELAX (network)":
            lambda: ke.relax_bernoulli_combine(fb, score, a, 0.7, rr, gx, dzt, g2, gs),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=51)
    ap.add_argument("--out", default="relax_kernels.json")
    args = ap.parse_args()
    if not _backend.native_available():
        sys.exit("needs the native core")
    bg.set_num_threads(1)
    core = _backend._core

    def on_path(p, fn):
        prev = core.random.simd_limit(p)
        try:
            return fn()
        finally:
            core.random.simd_limit(prev)

    # the paths this CPU has: capped at p, the core reports p itself
    paths = ["scalar"] + [p for p in ("avx2", "avx512") if on_path(p, lambda: bg.backend_info()["simd"]).startswith(p)]
    res = {"benchmark": "relax_kernels", "n": N, "p": P, "repeats": args.repeats, "threads": 1,
           "load_average_at_start": load_average(), "machine": machine_info(), "rows": {}}
    native, numpy = cases(core), cases(twin)
    for name in native:
        times = {p: [] for p in paths + ["numpy twin"]}
        for _ in range(3):  # alternating blocks
            for p in paths:
                times[p].append(on_path(p, lambda: median_time(native[name], args.repeats)))
            times["numpy twin"].append(median_time(numpy[name], max(5, args.repeats // 5)))
        row = {p: float(np.median(t)) for p, t in times.items()}
        res["rows"][name] = row
        print(f"  {name:<52}" + "  ".join(f"{p} {1e3 * v:6.3f} ms" for p, v in row.items()))
    write_results(res, __file__, args.out)


if __name__ == "__main__":
    main()
