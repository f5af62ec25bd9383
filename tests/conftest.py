"""Run every test on each available backend (cpu = native core, numpy = twin).

``BAYESGRAD_BACKEND=numpy`` (or cpu) restricts the run to that backend. Tests
marked ``single_backend`` compare backends themselves and run once.
"""
import numpy as np
import pytest

import bayesgrad as bg
from helpers import BACKENDS

try:  # hypothesis profiles of tests/test_fuzz.py (the module skips without hypothesis)
    import os

    from hypothesis import HealthCheck, settings

    # "ci" (default): derandomized and short, the fuzz module in well under a minute on 2 cores;
    # "long" (HYPOTHESIS_PROFILE=long): randomized, 40x the examples, for local runs.
    _SUPPRESS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]
    settings.register_profile("ci", max_examples=60, derandomize=True, deadline=None, print_blob=True,
                              suppress_health_check=_SUPPRESS)
    settings.register_profile("long", max_examples=500, deadline=None, print_blob=True,
                              suppress_health_check=_SUPPRESS)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
except ImportError:
    pass


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


@pytest.fixture(autouse=True)
def _sigint_handler_restored():
    """Each test sees, and leaves, the SIGINT handler it started with. A library a test uses can
    leave SIGINT ignored (a fresh-clone CI run found an xdist worker at SIG_IGN after the Parquet /
    Zarr tests); the Ctrl-C tests that ran next in that worker then waited for an interrupt that
    never came, to the 600 s timeout."""
    import signal

    before = signal.getsignal(signal.SIGINT)
    yield
    if signal.getsignal(signal.SIGINT) is not before and before is not None:
        signal.signal(signal.SIGINT, before)

