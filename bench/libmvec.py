"""glibc's libmvec vector exp/log against the core's own vector math (issue 14, item 2).

Compiles bench/libmvec.cpp with the core's flags (-O3 -fno-fast-math
-fno-math-errno), links libmvec, runs it ``--repeats`` times and records the
median ns per element of each function over an L1-resident block, with the
largest relative error against libm in double. Linux/glibc with AVX-512 only.

Usage: python bench/libmvec.py [--repeats 5]
Writes bench/results/libmvec.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
from bayesgrad._quickbench import load_average, machine_info  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "libmvec.json"))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        exe = os.path.join(tmp, "libmvec")
        subprocess.run(["g++", "-O3", "-fno-fast-math", "-fno-math-errno", "-std=c++17",
                        "-I", os.path.join(HERE, "..", "cpp", "include"), os.path.join(HERE, "libmvec.cpp"),
                        "-o", exe, "-lmvec", "-lm"], check=True)
        load0 = load_average()
        runs = [json.loads(subprocess.run([exe], check=True, capture_output=True, text=True).stdout)
                for _ in range(args.repeats)]
    if "error" in runs[0]:
        sys.exit(runs[0]["error"])
    rows = {}
    for name in runs[0]:
        rows[name] = {"ns_per_element": statistics.median(r[name]["ns_per_element"] for r in runs),
                      "max_rel_err": runs[0][name]["max_rel_err"]}
    ratios = {}
    for fn in ("expf_avx512", "expf_avx2", "logf_avx512", "exp_avx512", "log_avx512"):
        base, width = fn.rsplit("_", 1)
        ratios[fn] = rows[f"{base}_libmvec_{width}"]["ns_per_element"] / rows[f"{base}_core_{width}"]["ns_per_element"]
    for k, v in rows.items():
        print(f"{k:24s} {v['ns_per_element']:.3f} ns  max rel err {v['max_rel_err']:.2g}")
    print("libmvec time / core time:", {k: round(v, 2) for k, v in ratios.items()})
    res = {"benchmark": "libmvec vs simd_math.hpp", "repeats": args.repeats, "load_average_start": load0,
           "load_average_end": load_average(), "machine": machine_info(), "rows": rows,
           "libmvec_over_core_time": ratios}
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
