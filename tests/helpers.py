"""Helpers shared by the test modules: ``from helpers import BACKENDS``.

pytest's ``pythonpath`` option (pyproject.toml) puts tests/ on sys.path, so this
import works in every import mode, under pytest-xdist and from any working
directory; conftest.py keeps only pytest hooks and fixtures.
"""
import os

from bayesgrad import _backend


def available_backends():
    """Backends the suite runs on: both when the native core is built, unless
    ``BAYESGRAD_BACKEND`` names one."""
    names = ["cpu", "numpy"] if _backend.native_available() else ["numpy"]
    env = os.environ.get("BAYESGRAD_BACKEND")
    if env:
        names = [env.strip().lower()]
    return names


BACKENDS = available_backends()


def simd_and_scalar(run):
    """``run()`` on the dispatched (AVX-512 or AVX2 where available) path and on the
    forced scalar reference path of the native core: returns (fast, reference)."""
    return run(), on_simd_path("scalar", run)


def on_simd_path(path, run):
    """``run()`` with the native core's SIMD paths capped at ``path`` ('avx512',
    'avx2' or 'scalar')."""
    core = _backend._core
    prev = core.random.simd_limit(path)
    try:
        return run()
    finally:
        core.random.simd_limit(prev)


def native_simd_paths():
    """The native core's vector paths this CPU has ('avx512', 'avx2'; empty without the core): the paths a
    kernel test runs against its scalar reference."""
    if not _backend.native_available():
        return []
    import bayesgrad as bg

    return [p for p in ("avx512", "avx2") if on_simd_path(p, lambda: bg.backend_info()["simd"]).startswith(p)]


def native_arg_names(fn):
    """Argument names of a pybind11 function, read from its signature line (every
    overload of one name has the same names)."""
    lines = fn.__doc__.lstrip().splitlines()
    if "Overloaded function." in fn.__doc__:  # the first overload's line: "1. name(...)"
        lines = [ln[3:] for ln in lines if ln.startswith("1. ")]
    line = lines[0]
    args, depth, start = [], 0, line.index("(") + 1
    for i in range(start, len(line)):  # split at top-level commas (types contain brackets)
        ch = line[i]
        if ch in "([":
            depth += 1
        elif ch in ")]":
            if depth == 0:
                args.append(line[start:i])
                break
            depth -= 1
        elif ch == "," and depth == 0:
            args.append(line[start:i])
            start = i + 1
    return [a.split(":")[0].strip() for a in args if a.strip()]


def estimator_modules():
    """The estimators kernels' modules to compare: the twin's, and the native core's when it is built."""
    from bayesgrad import _numpy as twin

    return [twin.estimators] + ([_backend._core.estimators] if _backend.native_available() else [])
