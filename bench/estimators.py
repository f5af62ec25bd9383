"""Benchmark: Monte Carlo gradient estimates for a D = 1000 mean-field Normal,
n_samples = 1000, cheap f(x) = sum(x^2) (grad 2x).

Times (medians over the calls of ``--rounds`` alternating blocks per backend, same run: the
native and NumPy blocks take turns, so both sides see the same minutes of a shared machine):
* end-to-end estimates per second (sampling + f + accumulation) for pathwise,
  score function (LOO baseline) and score function without baseline, on the
  native backend ("cpu") and the NumPy twin ("numpy");
* the accumulation step alone: the native kernel, its NumPy twin, and the plain
  NumPy expression a user would write (terms, then mean and var(ddof=1)).

Issue 16 rows: rebar / relax (Bernoulli, D = 100, and Categorical, 10 coordinates
of 10 classes with f the squared distance of the one-hot / simplex point to a fixed
target; surrogate kept across repeats), iwae / dreg / vimco (Normal D = 100, k = 8, n_samples / 8 groups),
the score function with LOO baseline plus the delta control variate (Normal and
Gamma, D = 1000), unordered_set / reinforce_wor (a Categorical of 10 coordinates
with 5 classes, n_samples / 4 sets of k = 4) and measure_valued for Gamma and
Poisson (D = 100, n_samples / 10 draws: 2 to 4 D evaluations each); accumulation
rows for the control-variate and VIMCO kernels.

What each side runs: the same Python estimator code calling the active backend's
kernels, "cpu" the native core and "numpy" the NumPy twins (bayesgrad._numpy). For
measure_valued_poisson_D100 that is the Poisson sampler (native sample_poisson /
the twin's vectorised inversion on the same Philox sub-stream words: identical
draws) and the evaluation points (coordinate_points / NumPy repeat and scatter);
f (sum of squares over 10^4 points of 100 coordinates) is NumPy on both. For
relax_bernoulli_D100: the draws and relaxed-f passes (relax_bernoulli_sample,
_part_fd and _combine / their twins), the surrogate network's forward and VJP
(mlp_backward of the native engine, its narrow-layer GEMMs / the twin's NumPy MLP,
NumPy's BLAS), and NumPy glue on both; the Categorical rows the same with relax_categorical_sample,
_part and _combine / their twins.
``--toy`` instead measures the single-sample variance table of the REBAR/RELAX
toy problem (Bernoulli, f(b) = (b - t)^2, t = 0.45 and 0.499) and writes
bench/results/estimators_toy.json.

Every end-to-end row also records the calling thread's CPU time per backend
(``cpu_time``; with ``--threads 1`` the whole work of both backends, and much
steadier than wall time on a shared machine) and its ratio. The issue-16 rows
record the shared part that no kernel can speed up: the time spent in the
benchmark's own f and grad_f (and, for RELAX, in the surrogate network, a
``bg.nn.MLP`` whose GEMMs are BLAS on both backends), the median over three
separate, untimed calls, with ``bound = numpy / shared(native)``: the largest ratio
possible if the native estimator spent nothing outside that part.

Writes bench/results/estimators.json (``--out`` for another name) and prints a table.
OpenBLAS's idle threads: the twin's surrogate network (the RELAX rows) runs NumPy's BLAS, whose
worker thread then spins for OpenBLAS's thread timeout (2^28 cycles, ~0.1 s) after each product: it
held the second vCPU through most of the native block that followed (its CPU ticks over a block of
five Categorical RELAX calls: 20-30 ms of the block's 26-34 ms), and our pool's worker waited for it
(native wall 5.0-7.3 ms a call against 3.9-4.2 ms of the calling thread's CPU time). Nothing in a
native call runs NumPy's BLAS. The bench therefore sets OPENBLAS_THREAD_TIMEOUT=4 (2^4 cycles,
OpenBLAS's minimum) before NumPy loads, unless the variable is already set (=28 keeps OpenBLAS's
default); the twin's times were the same with either setting (five runs each, RELAX Bernoulli /
Categorical: 15.9-17.0 / 21.8-22.8 ms against 15.7-18.0 / 20.9-24.4 ms).
The results record the value.

Run: PYTHONPATH=python python bench/estimators.py [--repeats 15] [--rounds 3] [--threads 1] [--rows relax,poisson]
(``--rows``: only the end-to-end rows whose name contains one of the substrings).
"""
from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")  # before NumPy's OpenBLAS starts (see above)

import numpy as np  # noqa: E402

import bayesgrad as bg  # noqa: E402
from bayesgrad import _backend  # noqa: E402
from bayesgrad._quickbench import load_average, machine_info, median_time  # noqa: E402

D, N = 1000, 1000


def steady_heap():
    """Stop glibc's heap from returning memory to the system during the run (trim threshold
    1 GiB, mmap threshold at its 32 MiB maximum); returns a description, or "default" where
    there is no glibc.

    Why: with the default (dynamic) thresholds, whether a NumPy temporary of a few MB comes
    from already-mapped heap or from fresh pages (a page fault per 4 KiB and the kernel
    zeroing them) flips with the incidental order of earlier allocations. Measured on the
    relax row: the twin took 27 ms or 44 ms per call depending only on which buffers the
    estimator's pool happened to keep (550 000 against 198 000 page faults over 55 calls),
    and 21-22 ms in both cases with the heap held steady. Both backends run under the same
    setting; ``--default-malloc`` keeps glibc's defaults."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return "default"
    m_trim, m_mmap = -1, -3  # M_TRIM_THRESHOLD, M_MMAP_THRESHOLD (malloc.h)
    if mallopt(m_trim, 1 << 30) and mallopt(m_mmap, 32 << 20):
        return "glibc: trim threshold 1 GiB, mmap threshold 32 MiB"
    return "default"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=15, help="timed calls per backend and row, over all rounds")
    ap.add_argument("--rounds", type=int, default=3, help="alternating blocks of calls per backend and row")
    ap.add_argument("--threads", type=int, default=None, help="native threads (default: as configured)")
    ap.add_argument("--toy", action="store_true", help="the REBAR/RELAX toy variance table instead")
    ap.add_argument("--out", default="estimators.json", help="result file name in bench/results/")
    ap.add_argument("--rows", default=None,
                    help="comma-separated substrings: run only the end-to-end rows whose name contains one "
                         "(and no accumulation rows)")
    ap.add_argument("--default-malloc", action="store_true",
                    help="keep glibc's dynamic heap thresholds (see steady_heap)")
    args = ap.parse_args()
    if args.toy:
        return toy()
    heap = "default" if args.default_malloc else steady_heap()
    block = max(3, -(-args.repeats // max(1, args.rounds)))  # calls per block
    if args.threads:
        bg.set_num_threads(args.threads)
    E = bg.estimators
    d = bg.distributions.Normal(np.linspace(-1, 1, D), np.linspace(0.5, 2, D))
    f = lambda x: (x * x).sum(-1)  # noqa: E731
    df = lambda x: 2.0 * x  # noqa: E731
    backends = ["cpu", "numpy"] if _backend.native_available() else ["numpy"]
    end_to_end = {
        "pathwise": lambda: E.pathwise(f, d, N, seed=1, grad_f=df),
        "score_function_loo": lambda: E.score_function(f, d, N, seed=1, baseline="loo"),
        "score_function": lambda: E.score_function(f, d, N, seed=1),
    }
    res = {"D": D, "n_samples": N, "repeats": args.repeats, "rounds": args.rounds, "calls_per_block": block,
           "info": bg.backend_info(), "end_to_end": {},
           "cpu_time_note": "thread_time of the calling thread: the whole work only with --threads 1",
           "accumulation": {}, "threads": bg.get_num_threads(),
           "load_average_at_start": load_average(), "machine": machine_info(), "heap": heap,
           "openblas_thread_timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT")}
    res["info"] = {k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v))
                   for k, v in res["info"].items()}
    # issue 16: the new estimators, same f; D = 100 Bernoulli / Normal coordinates where the
    # surrogate network or the k-sample groups make D = 1000 slow in the twin
    db = bg.distributions.Bernoulli(logits=np.linspace(-1, 1, 100))
    dn = bg.distributions.Normal(np.linspace(-1, 1, 100), np.linspace(0.5, 2, 100))
    ft = lambda b: ((b - 0.45) ** 2).sum(-1)  # noqa: E731
    dft = lambda b: 2.0 * (b - 0.45)  # noqa: E731
    lj = lambda z: -0.5 * (z * z).sum(-1)  # noqa: E731
    dlj = lambda z: -z  # noqa: E731
    sur = {}
    dg = bg.distributions.Gamma(np.linspace(0.5, 3, D), np.linspace(1, 2, D))
    dg100 = bg.distributions.Gamma(np.linspace(0.5, 3, 100), np.linspace(1, 2, 100))
    # the Poisson sampler is a kernel on each side (native sample_poisson / its NumPy twin), not shared
    dp100 = bg.distributions.Poisson(np.linspace(0.5, 3, 100))
    dc = bg.distributions.Categorical(logits=np.linspace(-1, 1, 50).reshape(10, 5))
    wc = np.linspace(-1, 1, 50).reshape(10, 5)
    fc = lambda X: wc[np.arange(10), X].sum(-1) ** 2  # noqa: E731
    # REBAR / RELAX on 10 Categorical coordinates of 10 classes: f on the one-hot / simplex points
    dk = bg.distributions.Categorical(logits=np.linspace(-1, 1, 100).reshape(10, 10))
    ck = np.linspace(0, 1, 100).reshape(10, 10) / 10
    fk = lambda X: ((X - ck) ** 2).sum((-2, -1))  # noqa: E731
    dfk = lambda X: 2.0 * (X - ck)  # noqa: E731

    clock = {"shared": 0.0, "on": False}

    def timed(fn):
        """fn, adding its wall time to clock["shared"] while clock["on"] (the share-measuring call)."""
        def wrapper(x):
            if not clock["on"]:
                return fn(x)
            t0 = time.perf_counter()
            try:
                return fn(x)
            finally:
                clock["shared"] += time.perf_counter() - t0
        return wrapper

    class TimedSurrogate(E.RelaxSurrogate):
        """RelaxSurrogate whose network calls count as shared time (BLAS GEMMs on both backends)."""

        def network(self, z):
            return timed(super().network)(z)

        def network_mixed_vjp(self, z, v, c, e):
            return timed(lambda zz: super(TimedSurrogate, self).network_mixed_vjp(zz, v, c, e))(z)

    def surrogate(b, kind):
        if (b, kind) not in sur:
            sur[(b, kind)] = TimedSurrogate(hidden=None if kind.startswith("rebar") else (10,))
        return sur[(b, kind)]

    # the user callables of the issue-16 rows, timed on the share-measuring call only
    f_, df_, ft_, dft_, lj_, dlj_, fc_, fk_, dfk_ = (timed(g) for g in (f, df, ft, dft, lj, dlj, fc, fk, dfk))
    h2 = timed(lambda x: np.full_like(x, 2.0))
    new_rows = {
        "rebar_bernoulli_D100": lambda b: E.rebar(ft_, db, N, seed=1, grad_f=dft_, surrogate=surrogate(b, "rebar")),
        "relax_bernoulli_D100": lambda b: E.relax(ft_, db, N, seed=1, grad_f=dft_, surrogate=surrogate(b, "relax")),
        "rebar_categorical_D10_K10": lambda b: E.rebar(fk_, dk, N, seed=1, grad_f=dfk_,
                                                       surrogate=surrogate(b, "rebar_cat")),
        "relax_categorical_D10_K10": lambda b: E.relax(fk_, dk, N, seed=1, grad_f=dfk_,
                                                       surrogate=surrogate(b, "relax_cat")),
        "iwae_k8_D100": lambda b: E.iwae(lj_, dn, N // 8, seed=1, k=8, grad_f=dlj_),
        "dreg_k8_D100": lambda b: E.dreg(lj_, dn, N // 8, seed=1, k=8, grad_f=dlj_),
        "vimco_k8_D100": lambda b: E.vimco(lj_, dn, N // 8, seed=1, k=8),
        "score_function_loo_delta": lambda b: E.score_function(f_, d, N, seed=1, baseline="loo",
                                                               control_variate="delta", grad_f=df_, hess_f=h2),
        "score_function_loo_delta_gamma": lambda b: E.score_function(f_, dg, N, seed=1, baseline="loo",
                                                                     control_variate="delta", grad_f=df_, hess_f=h2),
        "unordered_set_k4_D10": lambda b: E.unordered_set(fc_, dc, N // 4, seed=1, k=4),
        "reinforce_wor_k4_D10": lambda b: E.reinforce_wor(fc_, dc, N // 4, seed=1, k=4),
        "measure_valued_gamma_D100": lambda b: E.measure_valued(f_, dg100, N // 10, seed=1),
        "measure_valued_poisson_D100": lambda b: E.measure_valued(f_, dp100, N // 10, seed=1),
    }

    def measure(fn, share):
        row = {}
        # alternating blocks of calls, `rounds` per backend: both sides see the same minutes of this
        # shared machine (its speed drifts by tens of percent over seconds); medians over all calls
        walls, cpus = {b: [] for b in backends}, {b: [] for b in backends}
        for _ in range(args.rounds):
            for b in backends:
                with bg.use_backend(b):
                    median_time(lambda: fn(b), block, cpu=cpus[b], times=walls[b])
        for b in backends:
            row[b] = float(np.median(walls[b]))
            row[f"cpu_time_{b}"] = float(np.median(cpus[b]))  # median of the blocks' medians
            with bg.use_backend(b):
                if share:  # medians over three untimed calls
                    parts = []
                    for _ in range(3):
                        clock.update(shared=0.0, on=True)
                        t0 = time.perf_counter()
                        fn(b)
                        parts.append((clock["shared"], time.perf_counter() - t0))
                        clock["on"] = False
                    shared, total = np.median(np.array(parts), axis=0)
                    row[f"shared_{b}"] = float(shared)
                    row[f"shared_fraction_{b}"] = float(shared / total)
        if "cpu" in row:
            row["speedup_cpu_vs_numpy"] = row["numpy"] / row["cpu"]
            row["speedup_cpu_time"] = row["cpu_time_numpy"] / row["cpu_time_cpu"]
            if share:
                row["bound_numpy_over_shared"] = row["numpy"] / row["shared_cpu"]
        return row

    picked = None if args.rows is None else [r for r in args.rows.split(",") if r]

    def wanted(name):
        return picked is None or any(r in name for r in picked)

    for name, fn in new_rows.items():
        if wanted(name):
            res["end_to_end"][name] = measure(fn, True)
    for name, fn in end_to_end.items():
        if wanted(name):
            res["end_to_end"][name] = measure(lambda b, fn=fn: fn(), False)

    r = np.random.default_rng(0)
    g = r.standard_normal((N, D))
    eps = r.standard_normal((N, D))
    fx = r.standard_normal(N) + 5.0
    mean, var = np.empty(D), np.empty(D)

    def plain_pathwise():
        t = g * eps
        return t.mean(0), t.var(0, ddof=1)

    def plain_loo():
        b = (fx.sum() - fx) / (N - 1)
        t = eps * (fx - b)[:, None]
        return t.mean(0), t.var(0, ddof=1)

    kernels = {"pathwise_accumulate": (lambda k: k.estimators.pathwise_accumulate(g, eps, mean, var, None),
                                       plain_pathwise),
               "score_accumulate_loo": (lambda k: k.estimators.score_accumulate(eps, fx, None, True, mean, var, None),
                                        plain_loo)}
    beta, egv = r.standard_normal(D), r.standard_normal(D)
    hx = r.standard_normal(N)
    shift = np.array([N / (N - 1), fx.mean(), hx.mean()])
    logw = r.standard_normal((N, 8))
    sig_out = np.empty((N, 8))

    def plain_cv():
        t = N / (N - 1) * eps * ((fx - shift[1])[:, None] - beta * (hx - shift[2])[:, None]) + beta * egv
        return t.mean(0), t.var(0, ddof=1)

    def plain_vimco():
        mx = logw.max(1, keepdims=True)
        e = np.exp(logw - mx)
        tot = e.sum(1, keepdims=True)
        others = (logw.sum(1, keepdims=True) - logw) / 7
        m = np.maximum(mx, others)
        loo = np.log(tot * np.exp(mx - m) - np.exp(logw - m) + np.exp(others - m)) + m
        return np.log(tot) + mx - loo - e / tot

    kernels["control_variate_accumulate"] = (
        lambda k: k.estimators.control_variate_accumulate(eps, fx, hx, beta, egv, shift, mean, var, None), plain_cv)
    kernels["vimco_signal_k8"] = (lambda k: k.estimators.vimco_signal(logw, sig_out), plain_vimco)
    for name, (kern, plain) in kernels.items():
        if picked is not None:
            break
        row = {"plain_numpy": median_time(plain, args.repeats)}
        if _backend.native_available():
            from bayesgrad import _core
            row["native"] = median_time(lambda: kern(_core), args.repeats)
        from bayesgrad import _numpy
        row["numpy_twin"] = median_time(lambda: kern(_numpy), args.repeats)
        if "native" in row:
            row["speedup_native_vs_plain_numpy"] = row["plain_numpy"] / row["native"]
        res["accumulation"][name] = row

    print(f"D = {D}, n_samples = {N}, threads = {bg.get_num_threads()}, "
          f"median of {args.rounds} x {block} calls in alternating blocks, "
          f"load average at start {res['load_average_at_start'][0]:.1f}, heap: {heap}")
    print("end to end (wall ms; native/numpy ratio by wall and by CPU time; shared = f, grad_f, network):")
    for name, row in res["end_to_end"].items():
        cells = "  ".join(f"{b} {row[b] * 1e3:7.2f} ms" for b in backends)
        extra = ""
        if "speedup_cpu_vs_numpy" in row:
            extra = f"  x{row['speedup_cpu_vs_numpy']:5.2f} (CPU time x{row['speedup_cpu_time']:5.2f})"
        if "bound_numpy_over_shared" in row:
            extra += (f"  shared {row['shared_fraction_cpu']:4.0%} of native, {row['shared_fraction_numpy']:4.0%} "
                      f"of numpy: bound x{row['bound_numpy_over_shared']:.1f}")
        print(f"  {name:<31} {cells}{extra}")
    print("accumulation only (ms):")
    for name, row in res["accumulation"].items():
        cells = "  ".join(f"{k} {v * 1e3:7.3f}" for k, v in row.items() if not k.startswith("speedup"))
        extra = f"  native vs plain x{row['speedup_native_vs_plain_numpy']:.2f}" if "native" in row else ""
        print(f"  {name:<22} {cells}{extra}")
    out = os.path.join(os.path.dirname(__file__), "results", args.out)
    with open(out, "w") as fh:
        json.dump(res, fh, indent=2)
    print(f"wrote {out}")


def rebar_profile(f, df, d, n_eval, temperatures=(0.5, 1.0, 10.0, 100.0, 1000.0, 1e4)):
    """REBAR's single-sample variance at the variance-minimising scale eta*(lambda), per
    temperature lambda. g(eta) = A + eta C is affine in eta on common draws, so A (scale 0)
    and C (scale 1 minus scale 0) give eta* = -cov(A, C) / var(C) exactly; the variance at
    eta* is then measured by a third call at that scale."""
    E = bg.estimators
    rows = {}
    for lam in temperatures:
        kw = dict(seed=7, grad_f=df, temperature=lam, train=False, per_sample=True)
        a = E.rebar(f, d, n_eval, scale=0.0, **kw).per_sample["logits"][:, 0]
        c = E.rebar(f, d, n_eval, scale=1.0, **kw).per_sample["logits"][:, 0] - a
        cov = np.cov(a, c)
        eta = float(-cov[0, 1] / cov[1, 1])
        var = float(E.rebar(f, d, n_eval, scale=eta, **kw).variance["logits"][0])
        rows[repr(lam)] = {"scale": eta, "variance": var,
                           "implied_baseline": eta * float(f(np.array([[0.5]]))[0])}
    return rows


def _row(est):
    v = float(sum(np.sum(a) for a in est.variance.values()))
    return {"variance": v, "evaluations_per_term": est.n_evaluations / est.n_samples,
            "variance_per_evaluation": v * est.n_evaluations / est.n_samples}


def categorical_table(n):
    """Without-replacement estimators on a Categorical of 2 coordinates x 3 classes (9 configurations),
    f = (w_0[x_0] + w_1[x_1])^2: variance of one term and variance times evaluations per term."""
    E = bg.estimators
    W = np.array([[1.0, -2.0, 0.5], [0.3, 0.2, -1.0]])
    f = lambda X: (W[0][X[:, 0]] + W[1][X[:, 1]]) ** 2  # noqa: E731
    d = bg.distributions.Categorical(logits=np.array([[0.2, -0.4, 0.1], [1.0, 0.0, -1.0]]))
    rows = {"reinforce_loo (4 draws per term)": None}
    loo = E.reinforce_loo(f, d, 4 * n, seed=5)
    v = float(np.sum(loo.variance["logits"])) / 4  # the mean of 4 LOO terms
    rows["reinforce_loo (4 draws per term)"] = {"variance": v, "evaluations_per_term": 4.0,
                                                "variance_per_evaluation": 4 * v}
    rows["unordered_set k=4, built-in baseline"] = _row(E.unordered_set(f, d, n, seed=5, k=4))
    rows["unordered_set k=4, no baseline"] = _row(E.unordered_set(f, d, n, seed=5, k=4, baseline=False))
    rows["reinforce_wor k=4"] = _row(E.reinforce_wor(f, d, n, seed=5, k=4))
    rows["reinforce_wor k=4, normalized (biased)"] = _row(E.reinforce_wor(f, d, n, seed=5, k=4,
                                                                          baseline="normalized"))
    return rows


def family_table(n):
    """f = sum cos(x) + x^2 / 10 over 10 coordinates of Gamma, Exponential, Poisson, a correlated
    MultivariateNormal and a Dirichlet: score function (LOO), score function + delta control variate (LOO),
    measure-valued (coupled; the mean-field three), pathwise where it exists."""
    E = bg.estimators
    f = lambda x: (np.cos(x) + 0.1 * x * x).sum(-1)  # noqa: E731
    df = lambda x: -np.sin(x) + 0.2 * x  # noqa: E731
    hf = lambda x: -np.cos(x) + 0.2  # noqa: E731
    # the vector families: one correlated 10-dimensional Normal (L: 1 on the diagonal, 0.3 below it) and
    # one Dirichlet over 10 components (f on the simplex points)
    corr = np.eye(10) + np.tril(np.full((10, 10), 0.3), -1)
    dists = {"Gamma(0.5..3, 1..2)": bg.distributions.Gamma(np.linspace(0.5, 3, 10), np.linspace(1, 2, 10)),
             "Exponential(0.5..3)": bg.distributions.Exponential(np.linspace(0.5, 3, 10)),
             "Poisson(0.5..3)": bg.distributions.Poisson(np.linspace(0.5, 3, 10)),
             "MultivariateNormal(-1..1, L)": bg.distributions.MultivariateNormal(np.linspace(-1, 1, 10), corr),
             "Dirichlet(0.5..3)": bg.distributions.Dirichlet(np.linspace(0.5, 3, 10))}
    rows = {}
    for name, d in dists.items():
        rows[f"{name} score_function loo"] = _row(E.score_function(f, d, n, seed=5, baseline="loo"))
        rows[f"{name} score_function loo+delta"] = _row(E.score_function(
            f, d, n, seed=5, baseline="loo", control_variate="delta", grad_f=df, hess_f=hf))
        if type(d).__name__ in ("Gamma", "Exponential", "Poisson"):
            rows[f"{name} measure_valued"] = _row(E.measure_valued(f, d, n // 10, seed=5))
        if d.reparam is not None:
            rows[f"{name} pathwise"] = _row(E.pathwise(f, d, n, seed=5, grad_f=df))
    return rows


def toy(train_steps=1000, n_eval=200_000):
    """Single-sample variances of d E[(b - t)^2] / d logit at theta = 1/2 (logit 0), after
    ``train_steps`` surrogate updates (16 draws each) at that theta; exact RLOO-pair variance."""
    E = bg.estimators
    d = bg.distributions.Bernoulli(logits=np.array([0.0]))
    out = {"theta": 0.5, "train_steps": train_steps, "n_eval": n_eval, "machine": machine_info(), "rows": {}}
    for t in (0.45, 0.499):
        f = lambda b, t=t: ((b - t) ** 2).sum(-1)  # noqa: E731
        df = lambda b, t=t: 2.0 * (b - t)  # noqa: E731
        sr, sx, sn = E.RelaxSurrogate(hidden=None), E.RelaxSurrogate(hidden=(10,)), E.RelaxSurrogate(
            hidden=(10,), relaxed_f=False)
        for i in range(train_steps):
            E.rebar(f, d, 16, seed=0, stream=i + 1, grad_f=df, surrogate=sr)
            E.relax(f, d, 16, seed=0, stream=i + 1, grad_f=df, surrogate=sx)
            E.relax(f, d, 16, seed=0, stream=i + 1, surrogate=sn)
        vals = []
        for b1 in (0.0, 1.0):  # RLOO over pairs, by enumeration of the four outcomes
            for b2 in (0.0, 1.0):
                f1, f2 = float(f(np.array([[b1]]))[0]), float(f(np.array([[b2]]))[0])
                vals.append(0.5 * ((f1 - f2) * (b1 - 0.5) + (f2 - f1) * (b2 - 0.5)))
        row = {
            "exact_gradient": float(E.exact_gradient(f, d).grad["logits"][0]),
            "reinforce_no_baseline": float(E.score_function(f, d, n_eval, seed=5).variance["logits"][0]),
            "reinforce_loo_pairs": float(2.0 * np.var(vals)),
            "rebar": float(E.rebar(f, d, n_eval, seed=5, grad_f=df, surrogate=sr, train=False).variance["logits"][0]),
            "rebar_loo_all_others": float(E.rebar(f, d, n_eval, seed=5, grad_f=df, surrogate=sr, train=False,
                                             baseline="loo").variance["logits"][0]),
            "relax_relaxed_f_plus_mlp": float(E.relax(f, d, n_eval, seed=5, grad_f=df, surrogate=sx,
                                                      train=False).variance["logits"][0]),
            "relax_mlp_only": float(E.relax(f, d, n_eval, seed=5, surrogate=sn, train=False).variance["logits"][0]),
            "disarm": float(E.disarm(f, d, n_eval, seed=5).variance["logits"][0]),
            "rebar_surrogate": repr(sr), "relax_surrogate": repr(sx),
            "rebar_optimal_scale_by_temperature": rebar_profile(f, df, d, n_eval),
        }
        out["rows"][str(t)] = row
        print(f"t = {t}:")
        for k, v in row.items():
            if isinstance(v, dict):
                for lam, r in v.items():
                    print(f"  rebar at lambda={lam:<8} eta*={r['scale']:.4g}  variance {r['variance']:.4g}  "
                          f"eta* f(1/2) = {r['implied_baseline']:.4g}")
                continue
            print(f"  {k:<28} {v:.4g}" if isinstance(v, float) else f"  {k:<28} {v}")
    out["categorical"] = categorical_table(n_eval // 10)
    out["families"] = family_table(n_eval // 10)
    for title in ("categorical", "families"):
        print(f"{title} (single-sample variance, summed over coordinates; per evaluation of f):")
        for k, v in out[title].items():
            print(f"  {k:<34} {v['variance']:.4g}   per evaluation {v['variance_per_evaluation']:.4g}")
    path = os.path.join(os.path.dirname(__file__), "results", "estimators_toy.json")
    with open(path, "w") as fh:
        json.dump(out, fh, indent=2)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
