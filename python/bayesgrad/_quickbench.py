"""``bayesgrad bench``: a quick version of the bench/ suites, inside the package.

Each case times one operation on the native core and on a NumPy baseline in
the same run (median of ``repeats``) and reports the ratio. The baseline is
what a user would otherwise run: NumPy's own generator for sampling, a
straightforward NumPy formula for the uncertainty decomposition, and the
package's pure-NumPy twin (the fallback backend) for training, gradient
estimators and curvature. The full suites, with PyTorch/BackPACK/laplace-torch
baselines, are the scripts in bench/ of the source tree.
"""
from __future__ import annotations

import os
import time

import numpy as np

from . import _backend


def median_time(fn, repeats=5, warmup=1, cpu=None, times=None):
    """Median wall time of ``fn()`` in seconds over ``repeats`` calls.

    With a list ``cpu``, also appends the median CPU time of the calling thread
    (meaningful for single-threaded calls: on a machine shared with other jobs
    it is much steadier than wall time); with a list ``times``, extends it by
    every call's wall time. The bench/ scripts use this too.
    """
    for _ in range(warmup):
        fn()
    ts, cs = [], []
    for _ in range(repeats):
        c0, t0 = time.thread_time(), time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
        cs.append(time.thread_time() - c0)
    if cpu is not None:
        cpu.append(float(np.median(cs)))
    if times is not None:
        times.extend(ts)
    return float(np.median(ts))


def load_average():
    """The 1, 5 and 15-minute load averages, as a list (JSON-ready).

    The bench/ scripts record it next to their timings: on a shared machine it
    tells a clean run from one taken under other jobs' load.
    """
    return list(os.getloadavg())


def write_results(res, bench_file, name):
    """Record the load average at the end in ``res`` and write it as JSON to
    ``results/<name>`` beside the bench/ script ``bench_file`` (its
    ``__file__``); prints the path. The bench/ scripts end with this."""
    import json

    from ._files import replacing

    res["load_average_at_end"] = load_average()
    path = os.path.join(os.path.dirname(os.path.abspath(bench_file)), "results", name)
    text = json.dumps(res, indent=1)  # a value JSON cannot hold fails here, not half-way into the file
    with replacing(path) as tmp, open(tmp, "w") as fh:
        fh.write(text)
    print("wrote", path)
    return path


_SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni",
               "avx512_bf16", "avx512ifma", "avx512_vbmi2")


def machine_info():
    """What a benchmark figure depends on, JSON-ready: the CPU model and its
    SIMD flags, the CPUs this process may use, NumPy's version and the SIMD
    extensions it found, Python, bayesgrad's SIMD path (the path its kernels
    took: ``simd`` of backend_info), BLAS, thread budget and the load average.
    Every bench/ script stores it in its results file."""
    import platform
    import sys

    from . import _backend

    cpu, flags, family = platform.processor() or platform.machine(), [], {}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and cpu in ("", platform.machine(), platform.processor()):
                    cpu = value.strip()
                elif key.strip() in ("cpu family", "model"):
                    # a VM may name the CPU only "AMD EPYC": family and model tell Zen 3, 4 and 5 apart
                    family.setdefault(key.strip().replace(" ", "_"), int(value))
                elif key.strip() == "flags":
                    have = set(value.split())
                    flags = [f for f in _SIMD_FLAGS if f in have]
                    break
    except OSError:
        pass
    try:
        numpy_simd = np.__config__.CONFIG.get("SIMD Extensions")
    except AttributeError:  # NumPy < 1.25
        numpy_simd = None
    info = _backend.backend_info()
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    return {
        "cpu": cpu, "cpu_family_model": family or None, "cpu_simd_flags": flags, "cpus_usable": affinity, "platform": platform.platform(),
        "python": sys.version.split()[0], "numpy": np.__version__, "numpy_simd": numpy_simd,
        "bayesgrad_simd_path": info.get("simd"), "blas": info.get("blas"), "compiler": info.get("compiler"),
        "threads": info.get("threads"), "threads_source": info.get("threads_source"),
        "blas_threads": info.get("blas_threads"), "load_average": load_average(),
    }


def _on(backend, fn):
    def run():
        with _backend.use_backend(backend):
            return fn()
    return run


def _twin_pair(fn):
    """(native, numpy twin) versions of ``fn``."""
    return _on("cpu", fn), _on("numpy", fn)


# -- cases: each returns (label, baseline name, native fn, baseline fn) --

def _case_normal(dtype):
    from . import random
    n = 1_000_000
    out = np.empty(n, dtype)
    rng = np.random.default_rng(0)
    return (f"normal sampling, 10^6 {np.dtype(dtype).name}", "numpy default_rng",
            _on("cpu", lambda: random.normal(n, seed=1, dtype=dtype, out=out)),
            lambda: rng.standard_normal(out=out, dtype=dtype))


def case_normal_f32():
    return _case_normal(np.float32)


def case_normal_f64():
    return _case_normal(np.float64)


def case_decompose():
    from . import uncertainty
    S, N, C = 100, 5_000, 10
    z = np.random.default_rng(0).standard_normal((S, N, C)).astype(np.float32)
    log_probs = z - np.log(np.exp(z).sum(-1, keepdims=True))

    def straightforward():
        p = np.exp(log_probs)
        pm = p.mean(0)
        total = -(pm * np.log(pm)).sum(-1)
        alea = -(p * log_probs).sum(-1).mean(0)
        return total, alea, total - alea

    return (f"uncertainty.decompose S={S} N={N} C={C} f32", "numpy formula",
            _on("cpu", lambda: uncertainty.decompose(log_probs)), straightforward)


def case_pathwise():
    from . import distributions, estimators
    D, n = 1000, 1000
    d = distributions.Normal(np.zeros(D), np.ones(D))

    def run():
        return estimators.pathwise(lambda x: (x * x).sum(-1), d, n_samples=n, seed=0, grad_f=lambda x: 2 * x)

    return (f"pathwise gradient, D={D}, {n} samples", "numpy twin", *_twin_pair(run))


def case_mfvi_epoch():
    from . import nn, vi
    rng = np.random.default_rng(0)
    X = rng.standard_normal((512, 13))
    y = (X[:, :1] + 0.1 * rng.standard_normal((512, 1)))

    def run():
        vi.MFVI(nn.MLP([13, 50, 1], activation="relu"), likelihood="gaussian", batch_size=32).fit(
            X, y, epochs=1, seed=0, verbose=0)

    return ("MFVI epoch, 13-50-1, N=512, batch 32", "numpy twin", *_twin_pair(run))


def case_laplace_diag():
    from . import laplace, nn
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2000, 20))
    y = rng.integers(0, 5, 2000)
    mlp = nn.MLP([20, 100, 5], activation="relu")
    theta = mlp.init(seed=0)

    def run():
        laplace.Laplace(mlp, theta, likelihood="categorical", structure="diag").fit(X, y)

    return ("Laplace diag GGN fit, 20-100-5, N=2000", "numpy twin", *_twin_pair(run))


CASES = [case_normal_f32, case_normal_f64, case_decompose, case_pathwise, case_mfvi_epoch, case_laplace_diag]


#: Timed repeats per case of ``bayesgrad bench`` (and of :func:`run`).
REPEATS = 5


def run(repeats=REPEATS, cases=None, out=print):
    """Time every case and print the ratio table; returns a list of result dicts."""
    from . import backend_info

    info = backend_info()
    out(f"bayesgrad quick bench: native threads {info.get('threads')}, simd {info.get('simd')}, "
        f"blas {info.get('blas')}; median of {repeats}")
    if not _backend.native_available():
        out("the native core is not available: nothing to compare (see `bayesgrad info`)")
        return []
    out(f"   {'case':<44} {'baseline':<18} {'native ms':>10} {'baseline ms':>12} {'speed-up':>9}")
    results = []
    for case in cases or CASES:
        try:
            label, base, fast, slow = case()
        except ImportError as exc:
            out(f"   {case.__name__[5:]:<44} not in this build ({exc})")
            continue
        try:
            t_fast = median_time(fast, repeats)
            t_slow = median_time(slow, repeats)
        except (ValueError, TypeError, RuntimeError) as exc:
            out(f"   {label:<44} failed: {exc}")
            continue
        results.append(dict(case=label, baseline=base, native_s=t_fast, baseline_s=t_slow, ratio=t_slow / t_fast))
        out(f"   {label:<44} {base:<18} {t_fast * 1e3:>10.2f} {t_slow * 1e3:>12.2f} {t_slow / t_fast:>8.1f}x")
    return results
