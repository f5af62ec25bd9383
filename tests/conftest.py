"""Run every test on each available backend (cpu = native core, numpy = twin).

``BAYESGRAD_BACKEND=numpy`` (or cpu) restricts the run to that backend. Tests
marked ``single_backend`` compare backends themselves and run once.
"""
import os

import numpy as np
import pytest

import bayesgrad as bg
from bayesgrad import _backend


def available_backends():
    names = ["cpu", "numpy"] if _backend.native_available() else ["numpy"]
    env = os.environ.get("BAYESGRAD_BACKEND")
    if env:
        names = [env.strip().lower()]
    return names


BACKENDS = available_backends()


def pytest_generate_tests(metafunc):
    if "bg_backend" in metafunc.fixturenames:
        return  # the test parametrises itself
    if metafunc.definition.get_closest_marker("single_backend"):
        return
    metafunc.fixturenames.append("_per_backend")
    metafunc.parametrize("_per_backend", BACKENDS, scope="function")


@pytest.fixture(autouse=True)
def _activate_backend(request):
    name = request.node.callspec.params.get("_per_backend") if hasattr(request.node, "callspec") else None
    if name is None:
        yield
        return
    with bg.use_backend(name):
        yield


@pytest.fixture
def backend():
    """Name of the backend the current test runs on."""
    return bg.get_backend()


def pytest_report_header(config):
    info = bg.backend_info()
    return f"bayesgrad backends: {BACKENDS}; native={info['native']} simd={info.get('simd')} blas={info.get('blas')}"


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


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
