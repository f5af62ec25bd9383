"""Time per training step: the weight-space MFVI step (sample, forward,
backward, KL, Adam) and the MAP step (forward, backward, weight decay, Adam),
float32, native core vs the NumPy twin vs PyTorch CPU (eager and, unless
--no-compile, torch.compile). PyTorch is optional (``torch==2.13.0`` CPU,
never a dependency): without it its columns are skipped. Medians of repeats;
ratios are against the native step measured in the same run.

The GEMM limit of a step is the time its GEMMs alone take: every product the
step computes (per layer and sample the forward X W^T, the weight gradient
G^T X and, except for the first layer, the input gradient G W) timed one by
one with the same BLAS (scipy-openblas32's cblas_sgemm, through ctypes) at its
own shape in the same run; ``gemm_limit_fraction`` = that time / the native
step time (1 would mean everything but the GEMMs is free).

The machine is shared: the load average before and after is recorded, and
numbers taken under load are noisy (2-thread BLAS and OpenMP suffer most).
Writes bench/results/training.json (training_threads<N>.json for --threads N != 2).

    PYTHONPATH=python python bench/training.py [--quick] [--no-compile] [--threads N]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
import bayesgrad as bg  # noqa: E402
from bayesgrad import _numpy as twin  # noqa: E402
from bayesgrad import _training as tr  # noqa: E402
from bayesgrad._quickbench import load_average, machine_info, median_time  # noqa: E402
from bayesgrad.nn import LIKELIHOODS, MLP  # noqa: E402

try:
    import torch
except ImportError:  # the PyTorch columns are optional
    torch = None

CONFIGS = [
    {"name": "13-50-1 regression, batch 32, S=1", "sizes": [13, 50, 1], "batch": 32, "S": 1, "lik": "gaussian"},
    {"name": "13-50-1 regression, batch 32, S=10", "sizes": [13, 50, 1], "batch": 32, "S": 10, "lik": "gaussian"},
    {"name": "784-400-400-10 classification, batch 128, S=1", "sizes": [784, 400, 400, 10], "batch": 128, "S": 1,
     "lik": "categorical"},
]


def data(cfg, n_batches, rng):
    N = cfg["batch"] * n_batches
    X = rng.normal(size=(N, cfg["sizes"][0])).astype(np.float32)
    if cfg["lik"] == "categorical":
        y = rng.integers(0, cfg["sizes"][-1], N)[:, None].astype(np.float32)
    else:
        y = rng.normal(size=(N, 1)).astype(np.float32)
    return X, y


def time_epochs(fn, n_steps, repeats):
    """Median seconds per step of ``fn()``, which runs ``n_steps`` steps (one warm-up call first)."""
    return median_time(fn, repeats) / n_steps


def ours(kern, cfg, X, y, kind, repeats):
    m = MLP(cfg["sizes"], "relu")
    P = m.n_params
    N = X.shape[0]
    B = cfg["batch"]
    perm = np.arange(N, dtype=np.int64)
    adam = kern.optim.AdamConfig(**tr.adam_options(1e-3))
    net = m.net_config(kern)
    n_b = N // B
    lik = LIKELIHOODS[cfg["lik"]]
    if kind == "mfvi":
        state = np.concatenate([m.init(dtype=np.float32), np.full(P, -3.5, np.float32), np.zeros(1, np.float32)
                                if cfg["lik"] == "gaussian" else np.zeros(1, np.float32)])
        mv = [np.zeros_like(state), np.zeros_like(state)]
        w = np.full(n_b, B / N, dtype=np.float32)
        vcfg = kern.vi.ViConfig(net, lik, n_samples=cfg["S"], seed=0, stream=1, batch_size=B, adam=adam)

        def run():
            kern.vi.vi_epoch(vcfg, state, mv[0], mv[1], 0, X, y, perm, w)
    else:
        state = np.concatenate([m.init(dtype=np.float32), np.zeros(1, np.float32)])
        mv = [np.zeros_like(state), np.zeros_like(state)]
        pp = np.full(P, 1e-4, np.float32)
        mcfg = kern.optim.MapConfig(net, lik, dropout_stream=1, batch_size=B, adam=adam)

        def run():
            kern.optim.map_epoch(mcfg, state, mv[0], mv[1], 0, X, y, perm, pp)
    return time_epochs(run, n_b, repeats)


def torch_steps(cfg, X, y, kind, compiled):
    """The same steps in PyTorch, written well: the S weight samples as one
    batched matmul (no Python loop over S), fused Adam (foreach)."""
    sizes, S, B = cfg["sizes"], cfg["S"], cfg["batch"]
    Xt = torch.from_numpy(X)
    yt = torch.from_numpy(y[:, 0]).long() if cfg["lik"] == "categorical" else torch.from_numpy(y)
    N = X.shape[0]
    g = torch.Generator().manual_seed(0)
    if kind == "mfvi":
        mus, rhos = [], []
        for din, dout in zip(sizes[:-1], sizes[1:]):
            mus += [torch.randn(dout, din, generator=g) * (2 / din) ** 0.5, torch.zeros(dout)]
            rhos += [torch.full((dout, din), -3.5), torch.full((dout,), -3.5)]
        params = [p.requires_grad_() for p in mus + rhos]
    else:
        net = torch.nn.Sequential(*sum([[torch.nn.Linear(a, b), torch.nn.ReLU()]
                                        for a, b in zip(sizes[:-1], sizes[1:])], [])[:-1])
        params = list(net.parameters())
    opt = torch.optim.Adam(params, lr=1e-3, foreach=True)
    L = len(sizes) - 1

    def loss_fn(xb, yb):
        if kind == "mfvi":
            h = xb.expand(S, *xb.shape)
            kl = 0.0
            for l in range(L):
                mw, mb, rw, rb = params[2 * l], params[2 * l + 1], params[2 * L + 2 * l], params[2 * L + 2 * l + 1]
                sw, sb = torch.nn.functional.softplus(rw), torch.nn.functional.softplus(rb)
                W = mw + sw * torch.randn(S, *mw.shape)
                b = mb + sb * torch.randn(S, *mb.shape)
                h = torch.baddbmm(b.unsqueeze(1), h, W.transpose(1, 2))
                if l + 1 < L:
                    h = torch.relu(h)
                kl = kl + (-torch.log(sw) + 0.5 * (sw ** 2 + mw ** 2) - 0.5).sum() \
                    + (-torch.log(sb) + 0.5 * (sb ** 2 + mb ** 2) - 0.5).sum()
            out = h
        else:
            out = net(xb).unsqueeze(0)
            kl = 1e-4 * 0.5 * sum((p ** 2).sum() for p in params)
        if cfg["lik"] == "categorical":
            nll = torch.nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), yb.repeat(out.shape[0]),
                                                    reduction="sum") / out.shape[0]
        else:
            nll = 0.5 * ((out - yb) ** 2).sum() / out.shape[0]
        return (N / xb.shape[0]) * nll + (xb.shape[0] / N) * (N / xb.shape[0]) * kl

    step_loss = torch.compile(loss_fn) if compiled else loss_fn

    def run():
        for i in range(N // B):
            xb, yb = Xt[i * B:(i + 1) * B], yt[i * B:(i + 1) * B]
            opt.zero_grad(set_to_none=True)
            step_loss(xb, yb).backward()
            opt.step()
    run()  # warm-up (and compilation)
    return run


def _sgemm():
    """scipy-openblas32's cblas_sgemm through ctypes: the BLAS the core links."""
    import ctypes

    import scipy_openblas32 as sob

    lib = ctypes.CDLL(os.path.join(sob.get_lib_dir(), sob.get_library(True)))
    f = lib.scipy_cblas_sgemm
    i32, fl, vp = ctypes.c_int, ctypes.c_float, ctypes.c_void_p
    f.argtypes = [i32, i32, i32, i32, i32, i32, fl, vp, i32, vp, i32, fl, vp, i32]
    f.restype = None
    return f


def gemm_products(cfg):
    """(M, N, K, transA, transB) of every GEMM one training step computes, per sample:
    forward X W^T, weight gradient G^T X, and input gradient G W for all but the first layer."""
    B, sizes = cfg["batch"], cfg["sizes"]
    prods = []
    for li, (din, dout) in enumerate(zip(sizes[:-1], sizes[1:])):
        prods.append((B, dout, din, False, True))
        prods.append((dout, din, B, True, False))
        if li > 0:
            prods.append((B, din, dout, False, False))
    return prods


def gemm_limit(cfg, repeats):
    """(FLOPs, seconds) of the step's GEMMs alone, each timed with the same BLAS at its own
    shape in this run (median of repeats), times S samples: the time a step would take if
    everything but the GEMMs were free."""
    sgemm = _sgemm()
    rng = np.random.default_rng(0)
    flops = t_total = 0.0
    for M, N, K, ta, tb in gemm_products(cfg):
        A = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
        Bm = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
        Cm = np.empty((M, N), np.float32)
        lda, ldb = A.shape[1], Bm.shape[1]
        reps = max(1, int(5e7 // (2 * M * N * K)))

        def run():
            for _ in range(reps):
                sgemm(101, 112 if ta else 111, 112 if tb else 111, M, N, K, 1.0, A.ctypes.data, lda,
                      Bm.ctypes.data, ldb, 0.0, Cm.ctypes.data, N)
        t = time_epochs(run, reps, max(5, repeats))
        flops += 2.0 * M * N * K * cfg["S"]
        t_total += t * cfg["S"]
    return flops, t_total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    load_before = load_average()
    bg.set_num_threads(args.threads)
    if torch is not None:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    repeats = 3 if args.quick else 7
    results = []
    for cfg in CONFIGS:
        big = cfg["sizes"][0] > 100
        X, y = data(cfg, 20 if big else 200, rng)
        Xs, ys = X[:cfg["batch"] * (4 if big else 20)], y[:cfg["batch"] * (4 if big else 20)]
        flops, t_gemm = gemm_limit(cfg, repeats)
        rate = flops / t_gemm
        for kind in ("mfvi", "map"):
            if kind == "map" and cfg["S"] > 1:
                continue
            row = {"config": cfg["name"], "step": kind, "flops_per_step": flops, "sgemm_flops": rate}
            row["native_s"] = ours(bg._backend._core, cfg, X, y, kind, repeats)
            row["numpy_s"] = ours(twin, cfg, Xs, ys, kind, max(2, repeats // 2))
            if torch is not None:
                run = torch_steps(cfg, X, y, kind, False)
                row["torch_s"] = time_epochs(run, X.shape[0] // cfg["batch"], repeats)
                if not args.no_compile:
                    try:
                        run = torch_steps(cfg, X, y, kind, True)
                        row["torch_compile_s"] = time_epochs(run, X.shape[0] // cfg["batch"], repeats)
                    except Exception as exc:  # noqa: BLE001 - report, don't die
                        row["torch_compile_error"] = f"{type(exc).__name__}: {exc}"[:200]
            row["gemm_limit_s"] = t_gemm
            row["gemm_limit_fraction"] = t_gemm / row["native_s"]
            for k in ("numpy_s", "torch_s", "torch_compile_s"):
                if k in row:
                    row[k.replace("_s", "_over_native")] = row[k] / row["native_s"]
            best = [row[k] for k in ("torch_s", "torch_compile_s") if k in row]
            if best:
                row["best_torch_over_native"] = min(best) / row["native_s"]
            results.append(row)
            cols = "  ".join(f"{k}={v:.3g}" for k, v in row.items() if isinstance(v, float))
            print(f"{cfg['name']:48s} {kind:5s} {cols}", flush=True)
    out = {"machine": machine_info(), "threads": args.threads,
           "load_average_before": load_before, "load_average_after": load_average(), "backend": bg.backend_info(),
           "torch": None if torch is None else torch.__version__, "dtype": "float32", "results": results}
    name = "training.json" if args.threads == 2 else f"training_threads{args.threads}.json"
    path = os.path.join(os.path.dirname(__file__), "results", name)
    with open(path, "w") as f:
        json.dump(out, f, indent=1, default=str)
    print("wrote", path)


if __name__ == "__main__":
    main()
