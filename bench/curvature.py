"""Benchmark: time and peak memory of Laplace curvature fits on a 784-400-400-10 MLP.

Cases (float32, categorical likelihood, the same weights and data everywhere):

* ``diag``  — exact diagonal GGN of the whole net: bayesgrad native, its NumPy
  twin, BackPACK ``DiagGGNExact``, laplace-torch (BackPACK backend);
* ``kron``  — exact Kronecker factors (KFLR): the same four;
* ``full_last_layer`` — full GGN of the last layer (4 010 parameters):
  bayesgrad native and NumPy, laplace-torch;
* ``glm_last_layer`` — the last-layer GLM probit predictive on N_test inputs
  after the full last-layer fit: bayesgrad native, laplace-torch.
* ``pred_diag``, ``pred_kron``, ``pred_full_last_layer`` — the GLM probit
  predictive (issue 12) on N_pred = 1000 test points after a fit on N_fit =
  2000 points: whole-network diagonal and Kronecker, full last layer.
  bayesgrad native (warm: the factorisation kept from a first call) against
  laplace-torch predicting in batches of 25 (its Jacobians are N x C x P: at
  500 points at once it needs more than 24 GB), after one warm-up batch.
  Probabilities are compared as max |p_a - p_b|; ``fraction_of_sgemm_rate``
  uses the hand-counted FLOPs of ``flops``. Recorded (Dec 2026, load 3-5 on the
  2 shared cores): results/curvature_predictive.json (2 threads, the issue's
  setting), curvature_predictive_1thread.json (both tools on 1 thread), and
  curvature_predictive_native*.json (bayesgrad alone). With 2 threads the same
  diag call ran 0.035 s in some processes and 0.16-0.46 s in others under that
  load; 1 thread was stable (0.052-0.056 s). bench/predictive_memory.py checks
  the peak memory at 10^5 test points. ``cpu_time_s`` and
  ``fraction_of_sgemm_rate_per_cpu_s`` (process CPU time, all threads, against sgemm's FLOPs
  per CPU-second in the same run) are the figures the other tenants' load moves least.
  Native rows only (laplace-torch absent): ``--tools native --cases pred_diag,pred_kron``;
  recorded so (load 6-8) after the GLM kernel's row chunks moved onto the pool:
  curvature_predictive_native.json (2 threads) and curvature_predictive_native_1thread.json.

Every measurement runs in its own subprocess (``--worker``), so its peak RSS
(VmHWM, read right after the fits and before the marginal likelihood) is the
peak of that fit plus the interpreter, libraries and data
(``rss_before_fit_bytes``); ``peak_rss_incl_lml_bytes`` adds the log marginal
likelihood computed afterwards for the agreement check.
Threads: ``--threads`` for every tool (default: all cores). On the shared
2-core machine both OpenBLAS pools lose badly to other tenants' load with 2
threads (a syrk ran 10x slower than on 1), so the recorded run uses 1.
Times are medians over repeats; the sgemm rate is measured in the same run
(NumPy's OpenBLAS: a square 2048³ product and the net's dominant shape), FLOPs
are counted by hand (see ``flops``) and the efficiency is FLOPs / time / rate.
Agreement: max |a − b| / max |b| of the curvature against the native result.
The machine is shared: the load averages are recorded before and after.

BackPACK and laplace-torch are benchmark references only, never dependencies:
    pip install torch==2.13.0
    pip install --no-deps --target /tmp/benchpkgs backpack-for-pytorch laplace-torch einops unfoldNd \
        torchmetrics lightning-utilities einconv
laplace-torch imports its ASDL and curvlinops backends at import time; this
script only uses its BackPACK backend and stubs those two modules when absent.

    PYTHONPATH=python python bench/curvature.py [--quick] [--torch-path /tmp/benchpkgs]

Writes bench/results/curvature.json.
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import types

import numpy as np

SIZES = [784, 400, 400, 10]
N_FIT, N_PRED = 2000, 1000   # the predictive cases: fit points, test points
HERE = os.path.dirname(os.path.abspath(__file__))


def flops(case, sizes=SIZES):
    """Floating-point operations per data point (multiply-add = 2) of bayesgrad's algorithm."""
    C = sizes[-1]
    shapes = list(zip(sizes[:-1], sizes[1:]))
    fwd = sum(2 * i * o for i, o in shapes)
    backprop = sum(2 * C * o * i for i, o in shapes[1:])        # S (C cols) through W_l, l >= 1
    if case == "diag":
        return fwd + backprop + sum(2 * i * o for i, o in shapes)  # Σ S² ⊗ a² GEMM per layer
    if case == "kron":
        return fwd + backprop + sum(i * i + C * o * o for i, o in shapes)   # syrk A and B
    if case == "full_last_layer":
        I, O = shapes[-1]
        return sum(2 * i * o for i, o in shapes[:-1]) + I * I * O * (O + 1)   # features + blockwise Gram
    # GLM predictive per test point: forward, the C output directions back-propagated, per layer
    # the variance weights (a² var_Wᵀ, a GEMM) and G diag(w) Gᵀ (C² O); kron adds the rotations
    # a Q_A and G Q_B; the full last layer is φ̃ᵀ Σ_cd φ̃ for the C(C+1)/2 blocks d >= c
    if case == "pred_diag":
        return fwd + backprop + sum(2 * i * o + C * C * o for i, o in shapes)
    if case == "pred_kron":
        return fwd + backprop + sum(2 * i * o + C * C * o + 2 * i * i + 2 * C * o * o for i, o in shapes)
    if case == "pred_full_last_layer":
        I, O = shapes[-1]
        return fwd + (I + 1) ** 2 * O * (O + 1)
    raise ValueError(case)


# --------------------------------------------------------------------------- workers
def rss_now():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def rss_peak():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def data(N, Nt):
    import bayesgrad as bg

    rng = np.random.default_rng(0)
    mlp = bg.nn.MLP(SIZES, "relu")
    theta = mlp.init(seed=0, dtype=np.float32)
    theta[mlp.offsets[0][1]:mlp.offsets[0][1] + SIZES[1]] = 0.1     # non-zero biases
    X = rng.normal(size=(N, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], N).astype(np.float32)
    Xt = rng.normal(size=(Nt, SIZES[0])).astype(np.float32)
    return mlp, theta, X, y, Xt


def timed(fn, reps, warmup=0):
    """(median seconds, every repeat's seconds, the last result) of ``fn()``.

    No warm-up by default: the fits are the expensive calls being measured, and
    running one only to discard it would double the run."""
    from bayesgrad._quickbench import median_time

    ts, out = [], [None]

    def call():
        out[0] = fn()

    t = median_time(call, reps, warmup=warmup, times=ts)
    return t, ts, out[0]


class ProcessCpu:
    """Wraps ``fn`` to record each call's CPU time of the whole process (every thread:
    bayesgrad's pool and OpenBLAS's), steadier than wall time on a shared machine."""

    def __init__(self, fn):
        self.fn, self.times = fn, []

    def __call__(self):
        c = time.process_time()
        out = self.fn()
        self.times.append(time.process_time() - c)
        return out

    def median(self, skip=0):
        return float(np.median(self.times[skip:]))


def worker_bayesgrad(job):
    import bayesgrad as bg

    bg.set_num_threads(job["threads"])
    mlp, theta, X, y, Xt = data(job["N"], job["N_test"])
    base = rss_now()
    case, reps = job["case"], job["reps"]
    structure, subset = STRUCTURE_SUBSET[case]
    with bg.use_backend(job["backend"]):
        la = bg.laplace.Laplace(mlp, theta, "categorical", structure=structure, subset=subset, chunk_size=512)
        if case.startswith("pred_"):
            la.fit(X, y)
            Xp = Xt[:job["N_pred"]]
            base = rss_now()
            # warm: the first call factorises the posterior (and the full one its covariance)
            call = ProcessCpu(lambda: la.predict(Xp, link="probit"))
            t, ts, pred = timed(call, reps, warmup=1)
            res = {"probs": pred.probs, "cpu_s": np.array(call.median(skip=1))}
        elif case == "glm_last_layer":
            la.fit(X, y)
            t, ts, pred = timed(lambda: la.predict(Xt, link="probit"), reps)
            res = {"probs": pred.probs}
        else:
            t, ts, _ = timed(lambda: la.fit(X, y), reps)
            res = curvature_arrays(la)
        res["peak"] = np.array(rss_peak())          # before the marginal likelihood (a dense P x P solve)
        res["lml"] = np.array(la.log_marginal_likelihood())
    return t, ts, base, res


STRUCTURE_SUBSET = {"diag": ("diag", "all"), "kron": ("kron", "all"), "full_last_layer": ("full", "last_layer"),
                    "glm_last_layer": ("full", "last_layer"), "pred_diag": ("diag", "all"),
                    "pred_kron": ("kron", "all"), "pred_full_last_layer": ("full", "last_layer")}


def curvature_arrays(la):
    if la.structure == "kron":
        return {f"{n}{i}": m for i, (A, B) in enumerate(la.H) for n, m in (("A", A), ("B", B))}
    return {"H": la.H}


def _stub(name):
    def getattr_(attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return type(attr, (), {})   # a stand-in class so the import succeeds; never instantiated

    mod = types.ModuleType(name)
    mod.__getattr__ = getattr_
    sys.modules[name] = mod


def torch_setup(job):
    if job.get("torch_path"):
        sys.path.insert(0, job["torch_path"])
    # laplace-torch imports its optional ASDL and curvlinops backends at import time;
    # only its BackPACK backend is used here
    if importlib.util.find_spec("asdl") is None:
        for name in ("asdl", "asdl.fisher", "asdl.grad_maker", "asdl.gradient", "asdl.hessian", "asdl.matrices"):
            _stub(name)
    if importlib.util.find_spec("curvlinops") is None:
        _stub("curvlinops")
    import torch

    torch.set_num_threads(job["threads"])
    return torch


def torch_model(torch, theta):
    layers = []
    for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(SIZES) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers).float()
    torch.nn.utils.vector_to_parameters(torch.tensor(theta), model.parameters())
    return model


def worker_backpack(job):
    torch = torch_setup(job)
    from backpack import backpack, extend
    from backpack.extensions import KFLR, DiagGGNExact

    mlp, theta, X, y, _ = data(job["N"], job["N_test"])
    model = extend(torch_model(torch, theta))
    lossf = extend(torch.nn.CrossEntropyLoss(reduction="sum"))
    Xt, yt = torch.tensor(X), torch.tensor(y).long()
    N, B = X.shape[0], 512
    base = rss_now()
    params = list(model.parameters())

    def fit():
        acc = None
        for s in range(0, N, B):
            model.zero_grad()
            loss = lossf(model(Xt[s:s + B]), yt[s:s + B])
            if job["case"] == "diag":
                with backpack(DiagGGNExact()):
                    loss.backward()
                part = [p.diag_ggn_exact.detach().clone() for p in params]
                acc = part if acc is None else [a + p for a, p in zip(acc, part)]
            else:
                with backpack(KFLR()):
                    loss.backward()
                M = min(B, N - s)
                # laplace-torch's accumulation: B factors summed, A factors weighted M/N
                part = [[f.detach().clone() for f in p.kflr] for p in params]
                for p in part:
                    if len(p) == 2:
                        p[1] *= M / N
                acc = part if acc is None else [[a + f for a, f in zip(ap, pp)] for ap, pp in zip(acc, part)]
        return acc

    t, ts, acc = timed(fit, job["reps"])
    peak = rss_peak()
    if job["case"] == "diag":
        res = {"H": torch.cat([a.flatten() for a in acc]).numpy()}
    else:
        res = {}
        for i, l in enumerate(range(0, len(params), 2)):
            res[f"B{i}"], res[f"A{i}"] = acc[l][0].numpy(), acc[l][1].numpy()
    res["peak"] = np.array(peak)
    return t, ts, base, res


def worker_laplace_torch(job):
    torch = torch_setup(job)
    from laplace import Laplace as LT
    from laplace.curvature import BackPackGGN

    mlp, theta, X, y, Xtest = data(job["N"], job["N_test"])
    model = torch_model(torch, theta)
    ds = torch.utils.data.TensorDataset(torch.tensor(X), torch.tensor(y).long())
    dl = torch.utils.data.DataLoader(ds, batch_size=512)
    base = rss_now()
    case = job["case"]
    structure, subset = STRUCTURE_SUBSET[case]
    lt = LT(model, "classification", subset_of_weights=subset, hessian_structure=structure, backend=BackPackGGN)
    if case.startswith("pred_"):
        lt.fit(dl)
        xt = torch.tensor(Xtest[:job["N_pred"]])
        B = 25

        def predict():
            return np.concatenate([lt(xt[s:s + B], pred_type="glm", link_approx="probit").detach().numpy()
                                   for s in range(0, xt.shape[0], B)])

        lt(xt[:B], pred_type="glm", link_approx="probit")    # warm-up batch: its posterior factors
        base = rss_now()
        t, ts, p = timed(predict, job["reps"])
        res = {"probs": p}
    elif case == "glm_last_layer":
        lt.fit(dl)
        xt = torch.tensor(Xtest)
        t, ts, p = timed(lambda: lt(xt, pred_type="glm", link_approx="probit").detach().numpy(), job["reps"])
        res = {"probs": p}
    else:
        t, ts, _ = timed(lambda: lt.fit(dl), job["reps"])
        if structure == "kron":
            res = {}
            kf = lt.H_facs.kfacs
            for i, l in enumerate(range(0, len(kf), 2)):
                res[f"B{i}"], res[f"A{i}"] = (f.detach().numpy() for f in kf[l])
        else:
            res = {"H": lt.H.detach().numpy()}
    res["peak"] = np.array(rss_peak())
    res["lml"] = np.array(float(lt.log_marginal_likelihood().item()))
    return t, ts, base, res


def worker_sgemm(job):
    rng = np.random.default_rng(1)
    out = {}
    for name, (m, k, n) in {"square_2048": (2048, 2048, 2048), "net_5120x400x400": (5120, 400, 400)}.items():
        A = rng.normal(size=(m, k)).astype(np.float32)
        B = rng.normal(size=(k, n)).astype(np.float32)
        call = ProcessCpu(lambda: A @ B)
        t, _, _ = timed(call, 7, warmup=1)
        out[name] = 2.0 * m * k * n / t
        out[name + "_per_cpu_s"] = 2.0 * m * k * n / call.median(skip=1)
    return out


def run_worker(job, outdir):
    job = dict(job, out=os.path.join(outdir, f"{job['tool']}_{job.get('backend', '')}_{job['case']}.npz"))
    env = dict(os.environ)
    for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[v] = str(job["threads"])
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(HERE, "..", "python"), env.get("PYTHONPATH", "")])
    r = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], capture_output=True, text=True,
                       env=env, timeout=3600)
    if r.returncode != 0:
        return {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"rc {r.returncode}"}, None
    rec = json.loads(r.stdout.strip().splitlines()[-1])
    arrays = dict(np.load(job["out"])) if os.path.exists(job["out"]) else None
    return rec, arrays


def worker_main(spec):
    job = json.loads(spec)
    if job["tool"] == "sgemm":
        print(json.dumps(worker_sgemm(job)))
        return
    fn = {"bayesgrad": worker_bayesgrad, "backpack": worker_backpack, "laplace_torch": worker_laplace_torch}[job["tool"]]
    t, ts, base, res = fn(job)
    peak_fit = int(res.pop("peak"))
    cpu = res.pop("cpu_s", None)
    np.savez(job["out"], **{k: np.asarray(v) for k, v in res.items()})
    rec = {"time_s": t, "times_s": ts, "repeats": job["reps"], "peak_rss_bytes": peak_fit,
           "peak_rss_incl_lml_bytes": rss_peak(), "rss_before_fit_bytes": base}
    if cpu is not None:
        rec["cpu_time_s"] = float(cpu)   # median process CPU time per call (all threads)
    print(json.dumps(rec))


# --------------------------------------------------------------------------- driver
def rel_diff(a, b):
    """max |a − b| / max |b| over matching arrays (kron: each factor, worst case)."""
    worst = 0.0
    for k in b:
        if k in ("lml", "peak") or k not in a:
            continue
        x, y = np.asarray(a[k], np.float64), np.asarray(b[k], np.float64)
        worst = max(worst, float(np.max(np.abs(x - y)) / max(np.max(np.abs(y)), 1e-300)))
    return worst


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="N = 2000, 2 repeats")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--torch-path", default="/tmp/benchpkgs",
                    help="extra sys.path entry holding backpack / laplace (installed --no-deps)")
    ap.add_argument("--no-numpy", action="store_true", help="skip the NumPy-twin column")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="threads of every tool (bayesgrad, both OpenBLAS builds, torch)")
    ap.add_argument("--cases", default="diag,kron,full_last_layer,glm_last_layer,pred_diag,pred_kron,"
                                       "pred_full_last_layer")
    ap.add_argument("--out", help="results file (default bench/results/curvature.json)")
    ap.add_argument("--n-pred", type=int, default=1000, help="test points of the pred_* cases (default 1000)")
    ap.add_argument("--tools", default="native,numpy,backpack,laplace_torch")
    args = ap.parse_args()
    if args.worker:
        worker_main(args.worker)
        return
    N, Nt, reps = (2000, 500, 2) if args.quick else (10000, 2000, 3)
    global N_PRED
    N_PRED = args.n_pred
    sys.path.insert(0, os.path.join(HERE, "..", "python"))
    import bayesgrad as bg
    from bayesgrad._quickbench import load_average

    have_torch = importlib.util.find_spec("torch") is not None
    have_torch = have_torch or os.path.isdir(os.path.join(args.torch_path, "torch"))
    torch_ok = have_torch and all(os.path.isdir(os.path.join(args.torch_path, m)) or importlib.util.find_spec(m)
                                  for m in ("backpack", "laplace"))
    results = {"N": N, "N_test": Nt, "sizes": SIZES, "dtype": "float32", "repeats": reps, "quick": args.quick,
               "threads": args.threads, "cpu_count": os.cpu_count(), "load_average_before": load_average(),
               "N_fit_pred": N_FIT, "N_pred": N_PRED,
               "flops_per_point": {c: flops(c) for c in ("diag", "kron", "full_last_layer", "pred_diag", "pred_kron",
                                                         "pred_full_last_layer")}, "cases": []}
    with tempfile.TemporaryDirectory() as tmp:
        sg, _ = run_worker({"tool": "sgemm", "case": "rate", "N": N, "N_test": Nt, "reps": reps,
                            "threads": args.threads}, tmp)
        results["sgemm_flops_per_s"] = sg
        rate = max(v for k, v in sg.items() if not k.endswith("_per_cpu_s")) if "error" not in sg else None
        rate_cpu = max(v for k, v in sg.items() if k.endswith("_per_cpu_s")) if "error" not in sg else None
        print("sgemm", json.dumps(sg), flush=True)
        tools = {"diag": ["native", "numpy", "backpack", "laplace_torch"],
                 "kron": ["native", "numpy", "backpack", "laplace_torch"],
                 "full_last_layer": ["native", "numpy", "laplace_torch"],
                 "glm_last_layer": ["native", "laplace_torch"],
                 "pred_diag": ["native", "laplace_torch"], "pred_kron": ["native", "laplace_torch"],
                 "pred_full_last_layer": ["native", "laplace_torch"]}
        for case, names in tools.items():
            if case not in args.cases.split(","):
                continue
            row = {"case": case}
            arrays = {}
            for name in names:
                if (name == "numpy" and args.no_numpy) or name not in args.tools.split(","):
                    continue
                if name in ("backpack", "laplace_torch") and not torch_ok:
                    row[name] = {"skipped": "torch / backpack / laplace not importable"}
                    continue
                # laplace-torch's full last-layer fit takes ~1.5 min at N = 10 000: one repeat there
                r = 1 if (name == "laplace_torch" and case != "diag" and case != "kron" and not args.quick) else reps
                if case.startswith("pred_"):
                    # the setting: fit on 2000 points, predict 1000; laplace-torch's
                    # whole-network predictive takes minutes: one repeat
                    r = 1 if name == "laplace_torch" else reps
                job = {"case": case, "N": N_FIT if case.startswith("pred_") else N,
                       "N_test": max(Nt, N_PRED), "N_pred": N_PRED, "reps": r, "torch_path": args.torch_path,
                       "threads": args.threads}
                if name in ("native", "numpy"):
                    job.update(tool="bayesgrad", backend="cpu" if name == "native" else "numpy")
                else:
                    job["tool"] = name
                rec, arr = run_worker(job, tmp)
                row[name] = rec
                if arr is not None:
                    arrays[name] = arr
                print(case, name, json.dumps(rec), flush=True)
            ref = arrays.get("native")
            if ref is not None and "probs" in ref:
                for name, arr in arrays.items():
                    if name != "native" and "probs" in arr:
                        row[name]["probs_max_abs_diff_vs_native"] = float(np.max(np.abs(arr["probs"] - ref["probs"])))
            if ref is not None:
                for name, arr in arrays.items():
                    if name != "native":
                        row[name]["rel_diff_vs_native"] = rel_diff(ref, arr)
                        if "lml" in arr and "lml" in ref:
                            row[name]["lml_rel_diff_vs_native"] = float(abs(arr["lml"] - ref["lml"]) / abs(ref["lml"]))
                if "lml" in ref:
                    row["native_lml"] = float(ref["lml"])
            nat = row.get("native", {})
            if "time_s" in nat:
                for name in names:
                    if name != "native" and "time_s" in row.get(name, {}):
                        row[f"speedup_vs_{name}"] = row[name]["time_s"] / nat["time_s"]
                if case in results["flops_per_point"] and rate:
                    achieved = results["flops_per_point"][case] * (N_PRED if case.startswith("pred_") else N) \
                        / nat["time_s"]
                    row["native_gflops"] = achieved / 1e9
                    row["fraction_of_sgemm_rate"] = achieved / rate
                    if "cpu_time_s" in nat and rate_cpu:
                        # FLOPs per CPU-second of the process against sgemm's, both summed over
                        # threads: the share that the other tenants' load does not move much
                        row["fraction_of_sgemm_rate_per_cpu_s"] = \
                            results["flops_per_point"][case] * N_PRED / nat["cpu_time_s"] / rate_cpu
            results["cases"].append(row)
    results["load_average_after"] = load_average()
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    name = "curvature.json" if not args.quick else "curvature_quick.json"
    with open(args.out or os.path.join(HERE, "results", name), "w") as fh:
        json.dump(results, fh, indent=1)
    print(json.dumps({k: results[k] for k in ("load_average_before", "load_average_after")}))


if __name__ == "__main__":
    main()
