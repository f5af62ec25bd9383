"""Benchmark: how close can the MFVI step on 784-400-400-10 (batch 128, S = 1, float32) come to its GEMM
limit on this machine? Issue 14 asks for 0.70 of it (bench/training.py's ``gemm_limit_fraction``).

A step is its GEMMs plus the element-wise passes over the P = 478,410 parameters (vi_passes.hpp,
FusedPre / FusedPost, S = 1), which stream whole parameter-sized float32 arrays:
* before the forward pass: read mu, rho; write W, ed = eps d sigma / d rho, kr = d KL / d rho;
* after the backward pass: read gW, ed, kr, mu, rho and the four Adam moments; write mu, rho and the moments;
that is 20 array passes of 4 P bytes (38 MB; counted without the write-allocate reads of the written
arrays, in the bound's favour), and P standard normals (Philox) drawn before the first. No step whose
products are BLAS GEMMs can do with fewer than 18: Adam reads and writes mu, rho and their moments (12),
W is written for the GEMMs and gW read after them (2), and the next step's W needs mu and rho, which one
pass fused across the step boundary could take from registers, but then eps d sigma / d rho and
d KL / d rho must be kept for the update (written and read: 4); recomputing them instead costs a second
draw of the normals, more than those 4 passes at these rates.

The bound: the step's GEMMs as fast as alone (``gemm_limit``, each product timed at its shape with
the same BLAS), the passes at the streaming rate this machine reaches on a working set of the
step's size (ten parameter-sized arrays, 19 MB, hot in L3) with one process per thread, and the
normals at the rate of ``bg.random.normal`` at the same thread count:
``bound = gemm / (gemm + bytes / bandwidth + normals)``, the largest fraction any implementation
of this step could reach here (everything else, the activations, the loss, the thread hand-offs,
free), and ``bound_min_traffic`` the same with the 18 passes of that fused scheme. The L3 of this VM is
shared with other tenants and the step's GEMMs run between the passes, so the passes may find their
arrays in DRAM instead: ``bound_dram`` takes the streaming rate of a working set ten times the
step's (190 MB). Measured in the same run, with the native step's own fraction (alternating rounds).

    PYTHONPATH=python python bench/mfvi_limit.py [--rounds 5] [--threads 2]

Writes bench/results/mfvi_limit.json (``--out`` for another name).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
import bayesgrad as bg  # noqa: E402
import training as T  # noqa: E402  (bench/training.py: the step and its GEMM limit)
from bayesgrad._quickbench import load_average, machine_info, median_time, write_results  # noqa: E402

CFG = next(c for c in T.CONFIGS if c["sizes"][0] == 784 and c["S"] == 1)
ARRAY_PASSES = 20  # parameter-sized float32 array passes of a step (module docstring)
ARRAY_PASSES_MIN = 18  # the fewest any step can make (module docstring)
DISTINCT = 10  # parameter-sized arrays a step touches: mu, rho, 4 moments, W, ed, kr, gW


def n_params(sizes):
    return sum(i * o + o for i, o in zip(sizes[:-1], sizes[1:]))


def _stream(n, rounds, barrier, out):
    """One process's share: DISTINCT / 2 pairs of arrays of n float32, b = a + 1 over each pair in turn
    (a read and a write of 4 n bytes each); per round the seconds of one sweep over all pairs."""
    pairs = [(np.ones(n, np.float32), np.empty(n, np.float32)) for _ in range(DISTINCT // 2)]
    for a, b in pairs:  # first touch, outside the timing
        np.add(a, 1.0, out=b)
    times = []
    for _ in range(rounds):
        barrier.wait()
        t0 = time.perf_counter()
        for _ in range(20):
            for a, b in pairs:
                np.add(a, 1.0, out=b)
        times.append((time.perf_counter() - t0) / 20)
    out.put(times)


def bandwidth(P, procs, scale=1, rounds=15):
    """Aggregate streaming rate (bytes read + written per second) of `procs` processes sharing `scale`
    times the step's working set (DISTINCT arrays of scale P float32 split between them): median over
    rounds of the slowest process's sweep time."""
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(procs), ctx.Queue()
    n = scale * P // procs
    ps = [ctx.Process(target=_stream, args=(n, rounds, barrier, out)) for _ in range(procs)]
    for p in ps:
        p.start()
    per = [out.get() for _ in ps]
    for p in ps:
        p.join()
    slowest = np.max(np.array(per), axis=0)
    moved = procs * (DISTINCT // 2) * 2 * 4 * n
    return float(moved / np.median(slowest))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds of the GEMM limit and the step")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="mfvi_limit.json")
    args = ap.parse_args()
    load0 = load_average()
    bg.set_num_threads(args.threads)
    P = n_params(CFG["sizes"])
    bytes_step = ARRAY_PASSES * 4 * P
    bw = {procs: bandwidth(P, procs) for procs in sorted({1, args.threads})}
    bw_dram = bandwidth(P, args.threads, scale=10, rounds=5)
    rng = np.random.default_rng(0)
    X, y = T.data(CFG, 20, rng)
    t_gemms, t_steps = [], []
    for _ in range(args.rounds):
        time.sleep(0.5)  # OpenBLAS's spinning threads idle again (bench/training.py)
        _, t = T.gemm_limit(CFG, 3)
        t_gemms.append(t)
        time.sleep(0.5)
        t_steps.append(T.ours(bg._backend._core, CFG, X, y, "mfvi", 3))
    gemm, step = float(np.median(t_gemms)), float(np.median(t_steps))
    eps = np.empty(P, np.float32)
    t_normals = median_time(lambda: bg.random.normal(None, seed=1, dtype=np.float32, out=eps), 101)
    passes = bytes_step / bw[args.threads]
    bound = gemm / (gemm + passes + t_normals)
    bound_min = gemm / (gemm + passes * ARRAY_PASSES_MIN / ARRAY_PASSES + t_normals)
    bound_dram = gemm / (gemm + bytes_step / bw_dram + t_normals)
    res = {"config": CFG["name"], "threads": args.threads, "n_params": P, "bytes_per_step": bytes_step,
           "bandwidth_bytes_per_s": {str(k): v for k, v in bw.items()}, "dram_bandwidth_bytes_per_s": bw_dram,
           "normals_s": t_normals,
           "passes_at_bandwidth_s": passes, "gemm_limit_s": gemm, "gemm_limit_rounds_s": t_gemms,
           "native_step_s": step, "native_step_rounds_s": t_steps,
           "native_fraction": float(np.median([g / s for g, s in zip(t_gemms, t_steps)])),
           "bound_fraction": bound,
           "bound_min_traffic_fraction": bound_min, "bound_dram_fraction": bound_dram, "target_fraction": 0.70,
           "load_average_at_start": load0, "machine": machine_info()}
    print(f"P = {P}, {bytes_step / 1e6:.1f} MB of array passes a step; streaming "
          + ", ".join(f"{k} process(es) {v / 1e9:.1f} GB/s" for k, v in bw.items())
          + f"; ten times the working set: {bw_dram / 1e9:.1f} GB/s")
    print(f"GEMM limit {gemm * 1e3:.3f} ms, passes at that rate {passes * 1e3:.3f} ms, normals "
          f"{t_normals * 1e3:.3f} ms: bound {bound:.3f} of the GEMM limit ({bound_min:.3f} with the fewest passes, "
          f"{bound_dram:.3f} at the DRAM rate); native step {step * 1e3:.3f} ms, "
          f"fraction {res['native_fraction']:.3f} (target 0.70)")
    write_results(res, __file__, args.out)


if __name__ == "__main__":
    main()
