"""The ``bayesgrad`` command: ``bayesgrad demo``, ``bayesgrad info``."""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def _demo_gradients(args):
    import bayesgrad as bg

    n = 100_000
    print("1. Gradient of an expectation: L(mu, sigma) = E_{W ~ N(mu, sigma^2)}[W + W^2] = mu + mu^2 + sigma^2")
    print(f"   at (mu, sigma) = (0, 1), n = {n:,} samples, +- one standard error")
    print(f"   {'method':<32}{'dL/dmu':>20}{'dL/dsigma':>20}")
    for r in bg.estimators.seed_example(n_samples=n, seed=args.seed):
        print(f"   {r['method']:<32}{r['d_loc']:>+11.4f} +- {r['se_loc']:<6.4f}{r['d_scale']:>+11.4f} +- {r['se_scale']:<6.4f}")
    print("   Differentiating the sample average with the samples held fixed gives 0: the samples")
    print("   themselves depend on (mu, sigma), which the three estimators account for.")


def _median_time(fn, repeats=5):
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def _demo_speed(args):
    import bayesgrad as bg

    n = 10_000_000
    rng = np.random.default_rng(0)
    info = bg.backend_info()
    print(f"\n2. Sampling speed, 10^7 normals (backend {info['name']}, {info['threads']} threads, "
          f"simd {info.get('simd')}); median of 5")
    for dt in (np.float32, np.float64):
        out = np.empty(n, dtype=dt)
        t_bg = _median_time(lambda: bg.random.normal(n, seed=1, dtype=dt, out=out))
        t_np = _median_time(lambda: rng.standard_normal(out=out, dtype=dt))
        print(f"   {np.dtype(dt).name}: bayesgrad {t_bg * 1e3:7.1f} ms   numpy default_rng "
              f"{t_np * 1e3:7.1f} ms   ratio {t_np / t_bg:5.1f}x")


def cmd_demo(args):
    _demo_gradients(args)
    _demo_speed(args)
    return 0


def cmd_info(args):
    import bayesgrad as bg

    for k, v in bg.backend_info().items():
        print(f"{k:>14}: {v}")
    return 0


def build_parser():
    p = argparse.ArgumentParser(prog="bayesgrad", description="bayesgrad command line")
    sub = p.add_subparsers(dest="command")
    d = sub.add_parser("demo", help="run the built-in demonstration")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=cmd_demo)
    i = sub.add_parser("info", help="show the active backend and build")
    i.set_defaults(func=cmd_info)
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError) as exc:
        print(f"bayesgrad: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
