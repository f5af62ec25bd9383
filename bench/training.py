"""Time per training step: the weight-space MFVI step (sample, forward,
backward, KL, Adam) and the MAP step (forward, backward, weight decay, Adam),
float32, native core vs the NumPy twin vs PyTorch CPU (eager and, unless
--no-compile, torch.compile). PyTorch is optional (``torch==2.13.0`` CPU,
never a dependency): without it its columns are skipped. Medians of repeats;
ratios are against the native step measured in the same run.

The MFVI rows use the weight-space estimator with the Gaussian prior (the
default of ``bg.vi.MFVI``); its native step keeps the S sampled weight vectors
layer by layer, so that the first layer of every sample is one wide GEMM
(B, d_0) x (d_0, S d_1) and its weight gradient one GEMM, the later layers
strided batches (docs/design.md, "MFVI step").

The GEMM limit of a step is the time its GEMMs alone take: every product the
step computes (per layer and sample the forward X W^T, the weight gradient
G^T X and, except for the first layer, the input gradient G W) timed one by
one with the same BLAS (scipy-openblas32's cblas_sgemm, through ctypes) at its
own shape in the same run; ``gemm_limit_fraction`` = that time / the native
step time (1 would mean everything but the GEMMs is free), the median over
``--rounds`` alternating rounds of the two measurements (each round's pair
taken within seconds; the per-round fractions are in the results file).

The machine is shared: the load average before and after is recorded, and
numbers taken under load are noisy (2-thread BLAS and OpenMP suffer most).
Writes bench/results/training.json (training_threads<N>.json for --threads N != 2).

``--ensemble``: deep ensembles instead (issue 15). M = 5 members trained to the
end, float32: ``DeepEnsemble.fit`` (all members in one native call,
``optim.ensemble_epoch``: the 40 epochs of 13-50-2 in one call, the members'
steps in equal shares on the 2 worker threads (2.5 members each); one call per slice of an epoch for
784-400-400-10; ``init="auto"`` so that it starts where ``train_map`` does)
against five sequential ``train_map`` fits (timed alternately, before PyTorch's columns)
(what ``DeepEnsemble.fit`` did before: one member after another, the same
minibatches, initialisations and results) and PyTorch with the five models
stacked (``torch.func.stack_module_state``), ``torch.func.vmap`` of
``functional_call`` over them (each model its own minibatch order), foreach
Adam, eager and torch.compile'd (compilation excluded: one warm-up fit). The
kernel-only columns time one epoch of ``ensemble_epoch`` (a one-epoch call)
against M ``map_epoch`` calls on the same rows. ``gemm_limit_fit_s`` (networks whose products all have at least 2^16
multiply-adds; a smaller product costs less than its ctypes call): the GEMMs of every
member's steps of the fit alone (each product timed at its shape with the same
BLAS and thread count, as for the training rows); a fit cannot beat it by
more than running members in parallel can give, and the 784-400-400-10 fits,
whose time is mostly GEMM, cannot be several times faster than five
sequential ones doing the same products. Fits are timed alternately, medians of
repeats. Writes bench/results/training_ensemble.json
(training_ensemble_threads<N>.json for --threads N != 2).

    PYTHONPATH=python python bench/training.py [--quick] [--no-compile] [--threads N] [--ensemble [--only NAME]]

(``--only`` writes training_ensemble*_only.json, leaving the full results alone.)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

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
    # S = 10 weight samples: the native step runs the first layer of all samples as one GEMM (shared X)
    {"name": "784-400-400-10 classification, batch 128, S=10", "sizes": [784, 400, 400, 10], "batch": 128,
     "S": 10, "lik": "categorical"},
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


ENSEMBLE_CONFIGS = [
    # the UCI regression network (heteroscedastic: mean and log-variance heads), Boston's 455 training rows
    {"name": "13-50-1 regression (13-50-2 heteroscedastic), batch 32, N 455, 40 epochs", "sizes": [13, 50, 2],
     "batch": 32, "N": 455, "epochs": 40, "lik": "heteroscedastic_gaussian"},
    {"name": "784-400-400-10 classification, batch 128, N 1280, 3 epochs", "sizes": [784, 400, 400, 10],
     "batch": 128, "N": 1280, "epochs": 3, "lik": "categorical"},
]


def torch_epochs(cfg):
    """PyTorch is timed on at most 4 epochs and scaled to cfg["epochs"] (its time per epoch is
    constant once compiled; 40 epochs of the small network took minutes under load)."""
    return min(cfg["epochs"], 4)


def torch_ensemble_fit(cfg, X, y, M, compiled):
    """A function that trains M stacked PyTorch models for cfg["epochs"] epochs (vmap over
    functional_call, each model its own minibatch order, foreach Adam on the stacked leaves)."""
    from torch.func import functional_call, stack_module_state, vmap

    sizes, B, N = cfg["sizes"], cfg["batch"], cfg["N"]
    # every minibatch is full; a tensor, since the compiler turns a Python float that changes
    # between configurations into a symbolic one that inductor then rejects
    scale = torch.tensor(float(N) / B)
    Xt = torch.from_numpy(X)
    yt = torch.from_numpy(y[:, 0]).long() if cfg["lik"] == "categorical" else torch.from_numpy(y[:, 0])

    def make():
        return torch.nn.Sequential(*sum([[torch.nn.Linear(a, b), torch.nn.ReLU()]
                                         for a, b in zip(sizes[:-1], sizes[1:])], [])[:-1])

    torch.manual_seed(0)
    models = [make() for _ in range(M)]
    base = make().to("meta")
    params, buffers = stack_module_state(models)
    leaves = list(params.values())

    def member_loss(p, b, xb, yb):
        out = functional_call(base, (p, b), (xb,))
        if cfg["lik"] == "categorical":
            nll = torch.nn.functional.cross_entropy(out, yb, reduction="sum")
        else:  # heteroscedastic Gaussian, up to a constant
            mu, lv = out[:, 0], out[:, 1]
            nll = 0.5 * ((yb - mu) ** 2 * torch.exp(-lv) + lv).sum()
        return scale * nll + 0.5e-4 * sum((q ** 2).sum() for q in p.values())

    def loss(p, b, xb, yb):
        return vmap(member_loss)(p, b, xb, yb).sum()

    step_loss = torch.compile(loss) if compiled else loss
    opt = torch.optim.Adam(leaves, lr=1e-3, foreach=True)
    g = torch.Generator().manual_seed(0)

    def fit():
        for _ in range(torch_epochs(cfg)):
            perms = torch.stack([torch.randperm(N, generator=g) for _ in range(M)])
            for i in range(0, N - B + 1, B):  # full minibatches: one shape, one compilation
                rows = perms[:, i:i + B]
                opt.zero_grad(set_to_none=True)
                step_loss(params, buffers, Xt[rows], yt[rows]).backward()
                opt.step()
    return fit


def ensemble_rows(args, repeats):
    from bayesgrad.ensemble import DeepEnsemble

    M = 5
    rows = []
    for cfg in ENSEMBLE_CONFIGS:
        if args.only and args.only not in cfg["name"]:
            continue
        rng = np.random.default_rng(0)
        N = cfg["N"]
        X = rng.normal(size=(N, cfg["sizes"][0])).astype(np.float32)
        if cfg["lik"] == "categorical":
            y = rng.integers(0, cfg["sizes"][-1], N)
            y2 = y[:, None].astype(np.float32)
        else:
            y = rng.normal(size=N).astype(np.float32)
            y2 = y[:, None]
        mlp = MLP(cfg["sizes"], "relu")
        kw = dict(batch_size=cfg["batch"], lr=1e-3, weight_decay=1e-4)

        def joint():
            DeepEnsemble(mlp, cfg["lik"], n_models=M, init="auto", **kw).fit(X, y, cfg["epochs"], seed=0)

        def sequential():
            for m in range(M):
                bg.nn.train_map(mlp, X, y, cfg["lik"], epochs=cfg["epochs"], seed=0, stream=bg.random.fold_in(0, m),
                                **kw)

        fns = {"ours_joint_s": joint, "ours_sequential_s": sequential}
        if torch is not None:
            fns["torch_vmap_s"] = torch_ensemble_fit(cfg, X, y2, M, False)
            if not args.no_compile:
                try:
                    fns["torch_vmap_compile_s"] = torch_ensemble_fit(cfg, X, y2, M, True)
                except Exception as exc:  # noqa: BLE001 - report, don't die
                    print("torch.compile failed:", exc)
        times = {k: [] for k in fns}
        for f in fns.values():  # warm-up (and compilation)
            f()
        # ours alternately, then PyTorch's columns alternately: after each call PyTorch's
        # OpenMP workers spin on the cores for a while, and interleaved they landed on the
        # joint fit's second thread (13-50: 13.3 ms against 8.0 ms measured apart, load 1)
        groups = [[k for k in fns if k.startswith("ours")], [k for k in fns if not k.startswith("ours")]]
        for group in groups:
            for _ in range(repeats):  # alternate, so that a burst of load hits every column alike
                for name in group:
                    median_time(fns[name], 1, warmup=0, times=times[name])
        row = {"config": cfg["name"], "M": M, **{k: float(np.median(v)) for k, v in times.items()}}
        for key in ("torch_vmap_s", "torch_vmap_compile_s"):
            if key in row:
                row[key] *= cfg["epochs"] / torch_epochs(cfg)
        row["torch_timed_epochs"] = torch_epochs(cfg)
        # the kernels alone: one epoch of ensemble_epoch vs M map_epoch calls on the same rows
        k = bg._backend._core
        net = mlp.net_config(k)
        lik = LIKELIHOODS[cfg["lik"]]
        adam = k.optim.AdamConfig()
        Dy = 1
        st = np.concatenate([np.stack([mlp.init(seed=0, stream=s, dtype=np.float32) for s in range(M)]),
                             np.zeros((M, Dy), np.float32)], axis=1)
        mo, vo = np.zeros_like(st), np.zeros_like(st)
        perms = np.stack([rng.permutation(N) for _ in range(M)]).astype(np.int64)
        ecfg = k.optim.EnsembleConfig(net, lik, weight_decay=1e-4, batch_size=cfg["batch"], adam=adam)
        mcfg = k.optim.MapConfig(net, lik, batch_size=cfg["batch"], adam=adam)
        pp = np.full(mlp.n_params, 1e-4, np.float32)
        kt = {"kernel_joint_epoch_s": [], "kernel_sequential_epoch_s": []}
        for _ in range(repeats):
            median_time(lambda: k.optim.ensemble_epoch(ecfg, st, mo, vo, 0, X, y2, perms), 1, warmup=0,
                        times=kt["kernel_joint_epoch_s"])
            median_time(lambda: [k.optim.map_epoch(mcfg, st[s], mo[s], vo[s], 0, X, y2, perms[s], pp)
                                 for s in range(M)], 1, warmup=0, times=kt["kernel_sequential_epoch_s"])
        row.update({key: float(np.median(v)) for key, v in kt.items()})
        # The GEMM limit of a fit: every product of every member's steps timed alone with the
        # same BLAS (gemm_limit), times the steps of the fit; the FLOP rate it implies.
        # Only for large products: a small one's ctypes call costs more than the product.
        if min(Mg * Ng * Kg for Mg, Ng, Kg, _, _ in gemm_products(cfg)) >= 1 << 16:
            n_steps = cfg["epochs"] * -(-N // cfg["batch"])
            flops, t_gemm = gemm_limit({"batch": cfg["batch"], "sizes": cfg["sizes"], "S": M}, repeats)
            row["gemm_limit_fit_s"] = t_gemm * n_steps
            row["gemm_gflops_per_s"] = flops / t_gemm / 1e9
            row["joint_over_gemm_limit"] = row["ours_joint_s"] / row["gemm_limit_fit_s"]
            row["sequential_over_gemm_limit"] = row["ours_sequential_s"] / row["gemm_limit_fit_s"]
        row["sequential_over_joint"] = row["ours_sequential_s"] / row["ours_joint_s"]
        row["kernel_sequential_over_joint"] = row["kernel_sequential_epoch_s"] / row["kernel_joint_epoch_s"]
        for key in ("torch_vmap_s", "torch_vmap_compile_s"):
            if key in row:
                row[key.replace("_s", "_over_joint")] = row[key] / row["ours_joint_s"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ensemble", action="store_true")
    ap.add_argument("--only", default=None, help="--ensemble: only the configurations whose name contains this")
    ap.add_argument("--rounds", type=int, default=5,
                    help="alternating rounds of the GEMM limit and the native step (training rows)")
    ap.add_argument("--out", default=None, help="results file name under bench/results (training rows)")
    args = ap.parse_args()
    if args.ensemble:
        load_before = load_average()
        bg.set_num_threads(args.threads)
        if torch is not None:
            torch.set_num_threads(args.threads)
        rows = ensemble_rows(args, 3 if args.quick else 7)
        out = {"machine": machine_info(), "threads": args.threads, "load_average_before": load_before,
               "load_average_after": load_average(), "backend": bg.backend_info(),
               "torch": None if torch is None else torch.__version__, "dtype": "float32", "only": args.only,
               "results": rows}
        name = "training_ensemble.json" if args.threads == 2 else f"training_ensemble_threads{args.threads}.json"
        if args.only:
            name = name.replace(".json", "_only.json")
        path = os.path.join(os.path.dirname(__file__), "results", name)
        with open(path, "w") as f:
            json.dump(out, f, indent=1, default=str)
        print("wrote", path)
        return
    load_before = load_average()
    bg.set_num_threads(args.threads)
    if torch is not None:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    repeats = 3 if args.quick else 7
    results = []
    for cfg in CONFIGS:
        big = cfg["sizes"][0] > 100
        X, y = data(cfg, (8 if cfg["S"] > 1 else 20) if big else 200, rng)
        Xs, ys = X[:cfg["batch"] * (4 if big else 20)], y[:cfg["batch"] * (4 if big else 20)]
        for kind in ("mfvi", "map"):
            if kind == "map" and cfg["S"] > 1:
                continue
            # the GEMM limit and the native step in alternating rounds: measured minutes apart, the two
            # drifted apart on this shared machine (fractions 0.50-0.76 in three runs of one build)
            t_gemms, t_nats = [], []
            for _ in range(args.rounds):
                # OpenBLAS's own threads (these ctypes GEMMs run on them, the twin's on NumPy's OpenBLAS, the
                # core's on its pool) spin for about 2^28 cycles after their last product and took a core from
                # whatever came next (784 S=1: 5.7 ms a step right after the GEMMs, 2.8 ms otherwise; a GEMM
                # limit 6x too slow right after the twin): each measurement starts after they have gone idle
                time.sleep(0.5)
                flops, t = gemm_limit(cfg, max(3, repeats // 2))
                t_gemms.append(t)
                time.sleep(0.5)
                t_nats.append(ours(bg._backend._core, cfg, X, y, kind, max(3, repeats // 2)))
            t_gemm = float(np.median(t_gemms))
            row = {"config": cfg["name"], "step": kind, "flops_per_step": flops, "sgemm_flops": flops / t_gemm}
            if kind == "mfvi":
                row["estimator"] = "weight_space"
            row["native_s"] = float(np.median(t_nats))
            row["gemm_limit_fraction_rounds"] = [g / n for g, n in zip(t_gemms, t_nats)]
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
            row["gemm_limit_fraction"] = float(np.median(row["gemm_limit_fraction_rounds"]))  # of the paired rounds
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
    name = args.out or ("training.json" if args.threads == 2 else f"training_threads{args.threads}.json")
    path = os.path.join(os.path.dirname(__file__), "results", name)
    with open(path, "w") as f:
        json.dump(out, f, indent=1, default=str)
    print("wrote", path)


if __name__ == "__main__":
    main()
