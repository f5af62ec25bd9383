"""Sampling speed: bayesgrad's native core vs NumPy's default_rng vs bayesgrad's NumPy fallback.

10^7 float32 and float64 standard normals, uniforms and Gamma(alpha) draws, each
side writing into a preallocated ``out=`` array, median of repeats, native at 1
and 2 threads (the outputs must be identical); then each side allocating its
output: NumPy's fresh array (its pages faulted in on first touch), ours from the
core's output cache (the block of the previous, freed draw, reused: what repeated
draws see; docs/design.md, "Output cache"), and ours with the cache off
(``set_output_cache_limit(0)``: a first draw, fresh pages); and the native draw capped at the AVX2
path (on AVX-512 CPUs: what the wider path gains). The machine is shared: the load
average is recorded, and so is the CPU time of the single-threaded calls
(NumPy and native at 1 thread), which other jobs disturb much less than wall
time. The NumPy fallback's Gamma
sampler (a vectorised rejection loop over pending elements) is slow, so it is
timed on a smaller draw (``--fallback-gamma-n``) and its time per draw is
scaled to 10^7; the table says so.

The normal_batch rows draw a Normal over 1000 coordinates (loc and scale arrays, a mean-field
posterior's shape) 10^4 times, against NumPy's standard normals scaled and shifted in place
(allocating: a fresh array, then the same). The gamma_batch rows likewise draw a Gamma over 1000
coordinates (concentration 0.5-20, rate 1-2), against NumPy's standard_gamma of the broadcast
concentrations divided by the rates in place.

The laplace_batch, gumbel_batch, lognormal_batch, exponential_batch and poisson_batch rows draw
those families over the same 1000 coordinates (loc -1..1, scale 0.5..2; the Exponential's rate
1..2; the Poisson's rate 0.5..9.5, its inversion range) against NumPy's Generator.laplace / gumbel / lognormal /
exponential / poisson with the broadcast parameters, which have no out= and no dtype: the NumPy
columns of these rows allocate (float64, int64 for the Poisson).

The categorical_batch row draws a Categorical over 1000 coordinates of 10 classes (int64 class
indices) against what a NumPy user writes for per-row probabilities: uniforms from default_rng,
then the count of partial sums below each, (u[..., None] > cdf).sum(-1) (the previous release's
own code); both sides allocate.

Gamma is timed at --alpha (2.5, the headline row) and at each of
--extra-alphas (default 0.5 and 20: the boosted shape below 1, where a draw
reads a second Philox block, and a large shape), one row each.

Usage: python bench/sampling.py [--n 10000000] [--repeats 5] [--alpha 2.5] [--extra-alphas 0.5,20]
       [--draws normal,uniform,gamma,normal_batch,gamma_batch,laplace_batch,gumbel_batch,lognormal_batch,
                exponential_batch,poisson_batch,categorical_batch]
Writes bench/results/sampling.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import bayesgrad as bg  # noqa: E402
from bayesgrad._quickbench import load_average, machine_info, median_time  # noqa: E402

BATCH = 1000  # coordinates of the normal_batch rows' Normal (n / BATCH draws of all of them)


def _batch_params(dt):
    """loc and scale of the normal_batch rows: a Normal over BATCH coordinates (a mean-field posterior's shape)."""
    return np.linspace(-1, 1, BATCH).astype(dt), np.linspace(0.5, 2, BATCH).astype(dt)


def _gamma_batch_params(dt):
    """concentration and rate of the gamma_batch rows: a Gamma over BATCH coordinates."""
    return np.linspace(0.5, 20, BATCH).astype(dt), np.linspace(1, 2, BATCH).astype(dt)


LOCSCALE = ("laplace_batch", "gumbel_batch", "lognormal_batch", "exponential_batch", "poisson_batch")


def _locscale(kind, dt):
    """(bayesgrad distribution, NumPy Generator method name, its parameters) of a locscale row."""
    loc, scale = _batch_params(dt)
    if kind == "poisson_batch":  # rates 0.5-9.5: inversion (a batch with rates from 10 on: PTRS, unchanged)
        rate = np.linspace(0.5, 9.5, BATCH).astype(dt)
        return bg.distributions.Poisson(rate), "poisson", (rate.astype(np.float64),)
    if kind == "exponential_batch":
        rate = np.linspace(1, 2, BATCH).astype(dt)
        return bg.distributions.Exponential(rate), "exponential", (1.0 / rate.astype(np.float64),)
    cls = {"laplace_batch": bg.distributions.Laplace, "gumbel_batch": bg.distributions.Gumbel,
           "lognormal_batch": bg.distributions.LogNormal}[kind]
    return cls(loc, scale), kind[:-6], (loc.astype(np.float64), scale.astype(np.float64))


def ours(kind, out, alpha):
    if kind in LOCSCALE:
        d = _locscale(kind, out.dtype)[0]
        o2 = out.reshape(-1, BATCH)
        return lambda: d.sample(o2.shape[0], seed=1, out=o2)
    if kind == "gamma_batch":
        d = bg.distributions.Gamma(*_gamma_batch_params(out.dtype))
        o2 = out.reshape(-1, BATCH)
        return lambda: d.sample(o2.shape[0], seed=1, out=o2)
    if kind == "normal_batch":
        d = bg.distributions.Normal(*_batch_params(out.dtype))
        o2 = out.reshape(-1, BATCH)
        return lambda: d.sample(o2.shape[0], seed=1, out=o2)
    if kind == "normal":
        return lambda: bg.random.normal(None, seed=1, dtype=out.dtype, out=out)
    if kind == "uniform":
        return lambda: bg.random.uniform(None, seed=1, dtype=out.dtype, out=out)
    d = bg.distributions.Gamma(np.asarray(alpha, dtype=out.dtype))
    return lambda: d.sample(out.shape[0], seed=1, out=out)


def numpy_rng(kind, out, alpha):
    rng = np.random.default_rng(1)
    if kind in LOCSCALE:  # (no out=: allocates)
        _, name, params = _locscale(kind, out.dtype)
        return lambda: getattr(rng, name)(*params, size=(out.size // BATCH, BATCH))
    if kind == "gamma_batch":
        conc, rate = _gamma_batch_params(out.dtype)
        o2 = out.reshape(-1, BATCH)
        shapes = np.broadcast_to(conc, o2.shape)

        def draw():
            rng.standard_gamma(shapes, out=o2, dtype=o2.dtype)
            np.divide(o2, rate, out=o2)
        return draw
    if kind == "normal_batch":  # what a NumPy user writes into out: standard normals, scaled and shifted in place
        loc, scale = _batch_params(out.dtype)
        o2 = out.reshape(-1, BATCH)

        def draw():
            rng.standard_normal(out=o2, dtype=o2.dtype)
            np.multiply(o2, scale, out=o2)
            np.add(o2, loc, out=o2)
        return draw
    if kind == "normal":
        return lambda: rng.standard_normal(out=out, dtype=out.dtype)
    if kind == "uniform":
        return lambda: rng.random(out=out, dtype=out.dtype)
    return lambda: rng.standard_gamma(alpha, out=out, dtype=out.dtype)


def ours_alloc(kind, n, dt, alpha):
    if kind in LOCSCALE:
        d = _locscale(kind, dt)[0]
        return lambda: d.sample(n // BATCH, seed=1)
    if kind == "gamma_batch":
        d = bg.distributions.Gamma(*_gamma_batch_params(dt))
        return lambda: d.sample(n // BATCH, seed=1)
    if kind == "normal_batch":
        d = bg.distributions.Normal(*_batch_params(dt))
        return lambda: d.sample(n // BATCH, seed=1)
    if kind == "normal":
        return lambda: bg.random.normal(n, seed=1, dtype=dt)
    if kind == "uniform":
        return lambda: bg.random.uniform(n, seed=1, dtype=dt)
    d = bg.distributions.Gamma(np.asarray(alpha, dtype=dt))
    return lambda: d.sample(n, seed=1)


def numpy_alloc(kind, n, dt, alpha):
    rng = np.random.default_rng(1)
    if kind in LOCSCALE:
        _, name, params = _locscale(kind, dt)
        return lambda: getattr(rng, name)(*params, size=(n // BATCH, BATCH))
    if kind == "gamma_batch":
        conc, rate = _gamma_batch_params(dt)

        def draw():
            x = rng.standard_gamma(conc, size=(n // BATCH, BATCH), dtype=dt)
            x /= rate
            return x
        return draw
    if kind == "normal_batch":
        loc, scale = _batch_params(dt)

        def draw():
            x = rng.standard_normal((n // BATCH, BATCH), dtype=dt)
            x *= scale
            x += loc
            return x
        return draw
    if kind == "normal":
        return lambda: rng.standard_normal(n, dtype=dt)
    if kind == "uniform":
        return lambda: rng.random(n, dtype=dt)
    return lambda: rng.standard_gamma(alpha, size=n, dtype=dt)


def categorical_rows(n, repeats):
    """The categorical_batch rows (module docstring); returns their result rows."""
    rows = []
    logits = np.linspace(-2.0, 2.0, BATCH * 10).reshape(BATCH, 10)
    for dt in (np.float32, np.float64):
        d = bg.distributions.Categorical(logits=logits.astype(dt))
        cdf = np.cumsum(np.exp(d.log_probs), axis=-1)[:, :-1]
        rng = np.random.default_rng(1)

        def numpy_draw():
            u = rng.random((n // BATCH, BATCH), dtype=dt)
            return (u[..., None] > cdf).sum(-1)
        t_np = median_time(numpy_draw, repeats)
        t_nat = {}
        with bg.use_backend("cpu"):
            for th in (1, 2):
                bg.set_num_threads(th)
                t_nat[th] = median_time(lambda: d.sample(n // BATCH, seed=1), repeats)
        with bg.use_backend("numpy"):
            t_twin = median_time(lambda: d.sample(n // BATCH, seed=1), max(3, repeats // 3))
        rows.append(dict(draw="categorical_batch", classes=10, dtype=np.dtype(dt).name, n=n, numpy_formula_s=t_np,
                         native_1t_s=t_nat[1], native_2t_s=t_nat[2], twin_s=t_twin,
                         speedup_vs_numpy_formula=t_np / t_nat[2], speedup_1t_vs_numpy_formula=t_np / t_nat[1]))
        print(f"categorical_batch {np.dtype(dt).name}: numpy formula {t_np:.4f}s, native 1t {t_nat[1]:.4f}s, "
              f"2t {t_nat[2]:.4f}s, twin {t_twin:.4f}s (x{t_np / t_nat[2]:.1f}, per core x{t_np / t_nat[1]:.1f})")
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--fallback-repeats", type=int, default=3)
    ap.add_argument("--fallback-gamma-n", type=int, default=1_000_000)
    ap.add_argument("--alpha", type=float, default=2.5)
    ap.add_argument("--draws", default="normal,uniform,gamma",
                    help="comma-separated subset of normal, uniform, gamma, normal_batch, gamma_batch, "
                         + ", ".join(LOCSCALE) + ", categorical_batch (rows of the others are skipped)")
    ap.add_argument("--extra-alphas", default="0.5,20",
                    help="comma-separated further Gamma shapes, one row each ('' for none)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                  "sampling.json"))
    args = ap.parse_args(argv)
    if not bg.backend_info()["native"]:
        sys.exit("the native core is not built: nothing to compare")
    n, rows = args.n, []
    threads_before = bg.get_num_threads()
    load_start = load_average()
    print(f"n = {n:.0e}, median of {args.repeats} (fallback: {args.fallback_repeats}), Gamma alpha = {args.alpha}, "
          f"load average {load_start[0]:.2f} on {os.cpu_count()} cores")
    hdr = f"{'draw':<8}{'dtype':<9}{'numpy rng':>11}{'native 1t':>11}{'native 2t':>11}{'fallback':>11}" \
          f"{'x rng 2t':>10}{'x rng cpu1t':>12}{'x fallback':>12}  same 1t/2t"
    print(hdr)
    print("-" * len(hdr))
    extra = [float(a) for a in args.extra_alphas.split(",") if a.strip()]
    draws = [("normal", args.alpha), ("uniform", args.alpha), ("gamma", args.alpha)] + [("gamma", a) for a in extra] \
        + [("normal_batch", args.alpha), ("gamma_batch", args.alpha)] + [(k, args.alpha) for k in LOCSCALE]
    picked = {d.strip() for d in args.draws.split(",") if d.strip()}
    draws = [(k, a) for k, a in draws if k in picked]
    for kind, alpha in draws:
        for dt in (np.float32, np.float64):
            out = np.empty(n, dtype=dt)
            cpu = []
            t_rng = median_time(numpy_rng(kind, out, alpha), args.repeats, cpu=cpu)
            t_nat, res = {}, {}
            with bg.use_backend("cpu"):
                for th in (1, 2):
                    bg.set_num_threads(th)
                    t_nat[th] = median_time(ours(kind, out, alpha), args.repeats, cpu=cpu if th == 1 else None)
                    res[th] = out.copy()
                # the same draws on the AVX2 path (AVX-512 CPUs: what the wider path gains)
                prev = bg._backend._core.random.simd_limit("avx2")
                try:
                    t_avx2 = median_time(ours(kind, out, alpha), args.repeats)
                finally:
                    bg._backend._core.random.simd_limit(prev)
            bg.set_num_threads(threads_before)
            # each side allocating its output (a fresh buffer's page faults included)
            t_rng_alloc = median_time(numpy_alloc(kind, n, dt, alpha), args.repeats)
            with bg.use_backend("cpu"):
                t_nat_alloc = median_time(ours_alloc(kind, n, dt, alpha), args.repeats)
                prev_limit = bg.set_output_cache_limit(0)
                try:
                    t_nat_fresh = median_time(ours_alloc(kind, n, dt, alpha), args.repeats)
                finally:
                    bg.set_output_cache_limit(prev_limit)
            same = bool(np.array_equal(res[1], res[2]))
            m = min(n, args.fallback_gamma_n) if kind.startswith("gamma") else n
            small = np.empty(m, dtype=dt)
            with bg.use_backend("numpy"):
                t_fb = median_time(ours(kind, small, alpha), args.fallback_repeats) * (n / m)
                # the fallback reproduces the native draws (same Philox words)
                fb = small.copy()
            tol = 1e-5 if dt == np.float32 else 1e-12
            agree = bool(np.allclose(fb, res[1][:m], rtol=tol, atol=tol))
            row = dict(draw=kind, alpha=alpha if kind == "gamma" else None, dtype=np.dtype(dt).name, n=n, numpy_rng_s=t_rng, native_1t_s=t_nat[1],
                       native_2t_s=t_nat[2], numpy_rng_cpu_s=cpu[0], native_1t_cpu_s=cpu[1],
                       speedup_1t_cpu_vs_numpy_rng=cpu[0] / cpu[1], fallback_s=t_fb, fallback_n=m, fallback_scaled=m < n,
                       speedup_vs_numpy_rng=t_rng / t_nat[2], speedup_vs_fallback=t_fb / t_nat[2],
                       identical_1_2_threads=same, fallback_matches_native=agree, native_avx2_path_s=t_avx2,
                       numpy_rng_alloc_s=t_rng_alloc, native_alloc_s=t_nat_alloc,
                       speedup_alloc_vs_numpy_rng=t_rng_alloc / t_nat_alloc, native_alloc_uncached_s=t_nat_fresh,
                       speedup_alloc_uncached_vs_numpy_rng=t_rng_alloc / t_nat_fresh)
            rows.append(row)
            note = f" (fallback timed at n={m:.0e}, scaled)" if m < n else ""
            label = f"g({alpha:g})" if kind == "gamma" else kind
            print(f"{label:<8}{row['dtype']:<9}{t_rng:>10.4f}s{t_nat[1]:>10.4f}s{t_nat[2]:>10.4f}s{t_fb:>10.3f}s"
                  f"{row['speedup_vs_numpy_rng']:>9.1f}x{row['speedup_1t_cpu_vs_numpy_rng']:>11.1f}x"
                  f"{row['speedup_vs_fallback']:>11.1f}x  {same}{note}")
            print(f"{'':<17}allocating: numpy {t_rng_alloc:.4f}s, native {t_nat_alloc:.4f}s "
                  f"({row['speedup_alloc_vs_numpy_rng']:.1f}x), cache off {t_nat_fresh:.4f}s "
                  f"({row['speedup_alloc_uncached_vs_numpy_rng']:.1f}x); native on the AVX2 path {t_avx2:.4f}s")
            if not (same and agree):
                print(f"  WARNING: identical 1t/2t = {same}, fallback matches native = {agree}")
    if "categorical_batch" in picked:
        rows += categorical_rows(n, args.repeats)
        bg.set_num_threads(threads_before)
    payload = dict(benchmark="sampling", n=n, repeats=args.repeats, gamma_alpha=args.alpha,
                   load_average_start=load_start[0], load_average_end=load_average()[0],
                   machine=machine_info(),
                   results=rows)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(payload, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
