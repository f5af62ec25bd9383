"""Benchmark: entropy decomposition and BatchBALD.

Three implementations, timed in the same run (median of repeats):
  native    bayesgrad on the "cpu" backend (C++ core)
  twin      bayesgrad on the "numpy" backend (our NumPy twin)
  reference a plain NumPy implementation written the way batchbald_redux and
            baal do it (full-size temporaries, one array op per formula term)

    PYTHONPATH=python python bench/uncertainty.py [--quick]

Writes bench/results/uncertainty.json and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
import bayesgrad as bg  # noqa: E402
from bayesgrad._quickbench import machine_info, median_time  # noqa: E402


# ---------------------------------------------------------------- references
def reference_decompose(log_probs):
    """batchbald_redux's compute_entropy / compute_conditional_entropy, in NumPy."""
    probs = np.exp(log_probs)
    mean_log_probs = np.log(probs.mean(axis=0))
    nats = mean_log_probs * probs.mean(axis=0)
    nats = np.nan_to_num(nats)  # 0 log 0
    total = -nats.sum(axis=-1)
    cond = np.nan_to_num(log_probs * probs)
    aleatoric = -cond.sum(axis=-1).mean(axis=0)
    return total, aleatoric, total - aleatoric


def lean_decompose(log_probs):
    """The shortest NumPy formula (one exp, no nan_to_num passes): the stricter baseline."""
    p = np.exp(log_probs)
    pm = p.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        total = -np.nansum(pm * np.log(pm), axis=-1)
    aleatoric = -(p * log_probs).sum(axis=-1).mean(axis=0)
    return total, aleatoric, total - aleatoric


def reference_batchbald(log_probs, batch_size, n_configs, seed=0):
    """Greedy BatchBALD as batchbald_redux structures it: joint probabilities of
    the batch (S, M) grown exactly while C^k <= n_configs, then sampled
    configurations with importance weights; einsum over the whole pool."""
    rng = np.random.default_rng(seed)
    lp = log_probs.astype(np.float64)
    S, N, C = lp.shape
    probs = np.exp(lp)
    cond = -np.nan_to_num(lp * probs).sum(-1).mean(0)
    chosen, scores = [], []
    for j in range(batch_size):
        K = len(chosen)
        if K == 0:
            P, w = np.ones((S, 1)), np.ones(1)
        elif C ** K <= n_configs:
            P = np.ones((S, 1))
            for i in chosen:
                P = (P[:, :, None] * probs[:, i, None, :]).reshape(S, -1)
            w = np.ones(P.shape[1])
        else:
            s = rng.integers(0, S, n_configs)
            ys = np.stack([(rng.uniform(size=(n_configs, 1)) > np.cumsum(probs[s, i], -1)).sum(-1) for i in chosen],
                          axis=1).clip(0, C - 1)
            P = np.prod(probs[:, np.array(chosen)[None, :], ys], axis=-1)  # (S, M)
            w = 1.0 / (n_configs * P.mean(0))
        q = (P.T @ probs.reshape(S, N * C)).reshape(-1, N, C) / S   # (M, N, C), BLAS as torch.matmul
        h = -np.einsum("m,mnc->n", w, np.nan_to_num(q * np.log(q)))
        score = h - (cond[chosen].sum() + cond)
        score[chosen] = -np.inf
        i = int(np.argmax(score))
        chosen.append(i)
        scores.append(score[i])
    return np.array(chosen), np.array(scores)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller sizes (smoke test)")
    ap.add_argument("--threads", type=int, default=None, help="native threads (default: all cores)")
    args = ap.parse_args()
    if args.threads:
        bg.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    S, N, C = (20, 10_000, 10) if args.quick else (100, 100_000, 10)
    reps = 3
    logits = rng.normal(size=(S, N, C)).astype(np.float32) * 3
    lp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    lp = lp.astype(np.float32)
    results = {"machine": machine_info(), "threads": bg.get_num_threads(),
               "backend_info": {k: str(v) for k, v in bg.backend_info().items()}, "cases": []}

    def add(name, shape, times, check):
        base = times["reference"]
        row = {"case": name, "shape": shape, "seconds": times,
               "speedup_vs_reference": {k: base / v for k, v in times.items()}, "check": check}
        results["cases"].append(row)
        print(f"{name:28s} {str(shape):28s} " + "  ".join(f"{k}={v * 1e3:9.1f} ms" for k, v in times.items())
              + "   native/reference speed-up " + f"{base / times['native']:.1f}x")

    # decompose
    ref = reference_decompose(lp)
    times = {"reference": median_time(lambda: reference_decompose(lp), reps, warmup=0)}
    outs = {}
    for be, key in (("cpu", "native"), ("numpy", "twin")):
        with bg.use_backend(be):
            outs[key] = bg.uncertainty.decompose(lp)
            times[key] = median_time(lambda: bg.uncertainty.decompose(lp), reps, warmup=0)
    err = float(max(np.max(np.abs(outs[k].epistemic - ref[2])) for k in outs))
    t_lean = median_time(lambda: lean_decompose(lp), reps, warmup=0)
    add("decompose float32", (S, N, C), times, {"max_abs_diff_epistemic_vs_reference": err,
                                                "lean_numpy_s": t_lean,
                                                "native_speedup_vs_lean_numpy": t_lean / times["native"]})
    print(f"{'':28s} lean NumPy formula {t_lean * 1e3:.1f} ms: native speed-up {t_lean / times['native']:.1f}x")

    # BatchBALD
    Nb = 500 if args.quick else 2000
    Sb = 20 if args.quick else 100
    lpb = lp[:Sb, :Nb]
    bs, nc = 10, 1000
    times = {"reference": median_time(lambda: reference_batchbald(lpb, bs, nc), 1 if not args.quick else 2, warmup=0)}
    sel = {}
    for be, key in (("cpu", "native"), ("numpy", "twin")):
        with bg.use_backend(be):
            sel[key] = bg.acquisition.batchbald(lpb, batch_size=bs, n_configs=nc, seed=0)
            times[key] = median_time(lambda: bg.acquisition.batchbald(lpb, batch_size=bs, n_configs=nc, seed=0),
                                     1 if not args.quick else 2, warmup=0)
    ridx, _ = reference_batchbald(lpb, bs, nc)
    add(f"batchbald b={bs} configs={nc}", (Sb, Nb, C), times,
        {"native_equals_twin": bool(np.array_equal(sel["native"].indices, sel["twin"].indices)),
         "exact_steps_agree_with_reference": bool(np.array_equal(sel["native"].indices[:4], ridx[:4]))})

    os.makedirs(os.path.join(os.path.dirname(__file__), "results"), exist_ok=True)
    path = os.path.join(os.path.dirname(__file__), "results", "uncertainty.json")
    with open(path, "w") as fh:
        json.dump(results, fh, indent=2)
    print("wrote", path)


if __name__ == "__main__":
    main()
