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
    """``run()`` on the dispatched (AVX2 where available) path and on the forced scalar
    reference path of the native core: returns (fast, reference)."""
    core = _backend._core
    fast = run()
    prev = core.random.random_force_scalar(True)
    try:
        ref = run()
    finally:
        core.random.random_force_scalar(prev)
    return fast, ref
