"""Benchmark: the time ``import bayesgrad`` adds to ``import numpy``.

Each measurement is a fresh interpreter run with ``python -X importtime``; the
cumulative microseconds of the top-level module are read from its report.
Medians over repeats, interleaved (numpy, bayesgrad, numpy, ...) so that load
changes hit both alike; the load average is recorded.

    PYTHONPATH=python python bench/import_time.py [--repeats 21]

Writes bench/results/import_time.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
from bayesgrad._quickbench import load_average, machine_info  # noqa: E402


def import_us(module):
    """Cumulative import time (µs) of ``module`` in a fresh interpreter."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], capture_output=True,
                         text=True, check=True, env=dict(os.environ)).stderr
    for line in reversed(out.splitlines()):
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2] == module:
            return int(parts[1])
    raise RuntimeError(f"no importtime line for {module}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=21)
    args = ap.parse_args()
    load_start = load_average()
    runs = {"numpy": [], "bayesgrad": []}
    for _ in range(args.repeats):
        for m in runs:
            runs[m].append(import_us(m))
    med = {m: float(np.median(v)) / 1e3 for m, v in runs.items()}
    res = {"repeats": args.repeats, "median_ms": med, "bayesgrad_minus_numpy_ms": med["bayesgrad"] - med["numpy"],
           "runs_us": runs, "load_average_start": load_start, "load_average_end": load_average(),
           "machine": machine_info()}
    print(f"import numpy {med['numpy']:.1f} ms, import bayesgrad {med['bayesgrad']:.1f} ms "
          f"(+{res['bayesgrad_minus_numpy_ms']:.1f} ms over numpy), median of {args.repeats}, "
          f"load average {load_start[0]:.1f}")
    path = os.path.join(os.path.dirname(__file__), "results", "import_time.json")
    with open(path, "w") as fh:
        json.dump(res, fh, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
