"""Benchmark: MLP forward and vector-Jacobian product with smooth activations
(tanh, sigmoid; relu for reference), native engine against its NumPy twin
(NumPy's own AVX-512 tanh / exp) and, when importable, PyTorch CPU eager, in
the same run. The engine's tanh and sigmoid are the vector functions of
simd_math.hpp on the AVX-512 / AVX2 paths (libm's scalar calls before).

Cases (float32):
* 13-50-1, S = 100 parameter samples, N = 10^4 inputs: outputs (S, N, 1);
* 784-400-400-10, one parameter vector, N = 2000: outputs and the VJP.

Medians of repeats; ratios against the native time of the same run. Records
the machine (CPU model and flags, SIMD path, NumPy's SIMD features, threads,
load average). Writes bench/results/activations.json (``--out`` for another name).

    PYTHONPATH=python python bench/activations.py [--repeats 9] [--out NAME]
"""
from __future__ import annotations

import argparse
import os

import numpy as np

import bayesgrad as bg
from bayesgrad._quickbench import load_average, machine_info, median_time, write_results
from bayesgrad.nn import MLP


def _torch_net(sizes, act):
    import torch

    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i + 2 < len(sizes):
            layers.append({"tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid, "relu": torch.nn.ReLU}[act]())
    return torch.nn.Sequential(*layers)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--out", default="activations.json")
    args = ap.parse_args()
    try:
        import torch

        torch.set_num_threads(bg.get_num_threads())
    except ImportError:
        torch = None
    rng = np.random.default_rng(0)
    res = {"repeats": args.repeats, "threads": bg.get_num_threads(), "load_average_at_start": load_average(),
           "machine": machine_info(), "torch": None if torch is None else torch.__version__, "rows": {}}
    for act in ("tanh", "sigmoid", "relu"):
        small, big = MLP([13, 50, 1], act), MLP([784, 400, 400, 10], act)
        ts = np.stack([small.init(seed=s, dtype=np.float32) for s in range(100)])
        Xs = rng.standard_normal((10 ** 4, 13)).astype(np.float32)
        tb = big.init(seed=0, dtype=np.float32)
        Xb = rng.standard_normal((2000, 784)).astype(np.float32)
        Gb = rng.standard_normal((2000, 10)).astype(np.float32)
        cases = {
            f"{act} 13-50-1 forward S=100 N=1e4": lambda b: small.forward(ts, Xs),
            f"{act} 784-400-400-10 forward N=2000": lambda b: big.forward(tb, Xb),
            f"{act} 784-400-400-10 vjp N=2000": lambda b: big.vjp(tb, Xb, Gb),
        }
        for name, fn in cases.items():
            row = {}
            for b in ("cpu", "numpy"):
                with bg.use_backend(b):
                    row[b] = median_time(lambda: fn(b), args.repeats)
            if torch is not None:
                with torch.no_grad():
                    if "13-50-1" in name:
                        # the S networks batched: (S, N, 13) x (S, 13, 50) and so on
                        W1, b1 = torch.randn(100, 13, 50), torch.randn(100, 1, 50)
                        W2, b2 = torch.randn(100, 50, 1), torch.randn(100, 1, 1)
                        xs = torch.from_numpy(Xs)
                        f = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu}[act]
                        row["torch_eager"] = median_time(lambda: f(xs @ W1 + b1) @ W2 + b2, args.repeats)
                    elif "forward" in name:
                        net = _torch_net([784, 400, 400, 10], act)
                        xb = torch.from_numpy(Xb)
                        row["torch_eager"] = median_time(lambda: net(xb), args.repeats)
                if "vjp" in name:
                    net = _torch_net([784, 400, 400, 10], act)
                    xb, gb = torch.from_numpy(Xb), torch.from_numpy(Gb)

                    def step():
                        net.zero_grad()
                        net(xb).backward(gb)

                    row["torch_eager"] = median_time(step, args.repeats)
            row["numpy_over_native"] = row["numpy"] / row["cpu"]
            if "torch_eager" in row:
                row["torch_over_native"] = row["torch_eager"] / row["cpu"]
            res["rows"][name] = row
            extra = f"  torch {row['torch_eager'] * 1e3:8.2f} ms x{row['torch_over_native']:5.2f}" \
                if "torch_eager" in row else ""
            print(f"  {name:40s} native {row['cpu'] * 1e3:8.2f} ms  numpy {row['numpy'] * 1e3:8.2f} ms "
                  f"x{row['numpy_over_native']:5.2f}{extra}")
    write_results(res, __file__, args.out)


if __name__ == "__main__":
    main()
