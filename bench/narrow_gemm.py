"""Benchmark: the engine's GEMMs with one narrow dimension (cpp/src/narrow_gemm.cpp,
reached through ``mlp.gemm``, i.e. pool_gemm) against scipy-openblas32's own
cblas_?gemm (the BLAS the core links, through ctypes) on the same arrays, one
thread on both sides, alternating, medians of repeats. The shapes are the MLP
engine's: forwards onto 1-32 output units, a 10-output weight gradient over a
long batch (as G^T X and as X^T G), an input gradient through a 10-unit layer (a short inner dimension,
which stays with OpenBLAS) and the first layer of a 13-input network. Rows that
the narrow kernels do not take time OpenBLAS on both sides (ratio about 1): they
show what the dispatch leaves alone.

    PYTHONPATH=python python bench/narrow_gemm.py [--repeats 21] [--out narrow_gemm.json]

Writes bench/results/<out>.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
import bayesgrad as bg  # noqa: E402
from bayesgrad import _backend  # noqa: E402
from bayesgrad._quickbench import load_average, machine_info, median_time, write_results  # noqa: E402

# (label, M, N, K, trans_a, trans_b): C (M x N) = op(A) op(B)
CASES = [
    ("forward 5000x100 -> 10 (RELAX's surrogate)", 5000, 10, 100, False, True),
    ("forward 2000x100 -> 10", 2000, 10, 100, False, True),
    ("forward 128x400 -> 10 (784-400-400-10 output layer)", 128, 10, 400, False, True),
    ("forward 10000x50 -> 1", 10000, 1, 50, False, True),
    ("weight gradient 10x100 over 5000 rows", 10, 100, 5000, True, False),
    ("weight gradient 10x400 over 128 rows", 10, 400, 128, True, False),
    ("weight gradient 2x50 over 10000 rows", 2, 50, 10000, True, False),
    ("weight gradient 100x10 over 5000 rows (X^T G: the roles swapped)", 100, 10, 5000, True, False),
    ("weight gradient 400x10 over 128 rows (X^T G)", 400, 10, 128, True, False),
    ("weight gradient 400x10 over 64 rows (X^T G: the rows kernel)", 400, 10, 64, True, False),
    ("weight gradient 50x2 over 10000 rows (X^T G)", 50, 2, 10000, True, False),
    ("input gradient 5000x10 -> 100 (K = 10: OpenBLAS)", 5000, 100, 10, False, False),
    ("forward 10000x13 -> 50 (N = 50: OpenBLAS)", 10000, 50, 13, False, True),
] + [(f"forward 10000x100 -> {n}", 10000, n, 100, False, True) for n in (2, 4, 6, 8, 12, 16, 24, 32)]


def _blas():
    import scipy_openblas32 as sob

    lib = ctypes.CDLL(os.path.join(sob.get_lib_dir(), sob.get_library(True)))
    lib.scipy_openblas_set_num_threads(1)
    fns = {}
    for name, ct in (("d", ctypes.c_double), ("s", ctypes.c_float)):
        f = getattr(lib, f"scipy_cblas_{name}gemm")
        i32, vp = ctypes.c_int, ctypes.c_void_p
        f.argtypes = [i32, i32, i32, i32, i32, i32, ct, vp, i32, vp, i32, ct, vp, i32]
        f.restype = None
        fns[np.dtype(np.float64 if name == "d" else np.float32)] = f
    return fns


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--out", default="narrow_gemm.json")
    args = ap.parse_args()
    if not _backend.native_available():
        sys.exit("needs the native core")
    bg.set_num_threads(1)
    core, blas = _backend._core.mlp, _blas()
    res = {"benchmark": "narrow_gemm", "repeats": args.repeats, "threads": 1, "load_average_at_start": load_average(),
           "machine": machine_info(), "rows": {}}
    for dt in (np.float64, np.float32):
        for label, M, N, K, ta, tb in CASES:
            r = np.random.default_rng(0)
            a = r.standard_normal((K, M) if ta else (M, K)).astype(dt)
            b = r.standard_normal((N, K) if tb else (K, N)).astype(dt)
            c = np.empty((M, N), dt)
            f = blas[np.dtype(dt)]

            def ours():
                core.gemm(a, b, c, ta, tb, 1.0, 0.0)

            def theirs():
                f(101, 112 if ta else 111, 112 if tb else 111, M, N, K, 1.0, a.ctypes.data, a.shape[1],
                  b.ctypes.data, b.shape[1], 0.0, c.ctypes.data, N)

            t_ours, t_blas = [], []
            for _ in range(3):  # alternating blocks: both sides see the same minutes of this shared machine
                t_ours.append(median_time(ours, args.repeats))
                t_blas.append(median_time(theirs, args.repeats))
            row = {"engine_s": float(np.median(t_ours)), "openblas_s": float(np.median(t_blas))}
            row["openblas_over_engine"] = row["openblas_s"] / row["engine_s"]
            key = f"{label}, {np.dtype(dt).name}"
            res["rows"][key] = row
            print(f"  {key:<62} engine {1e6 * row['engine_s']:8.1f} us  OpenBLAS {1e6 * row['openblas_s']:8.1f} us"
                  f"  x{row['openblas_over_engine']:.2f}")
    write_results(res, __file__, args.out)


if __name__ == "__main__":
    main()
