import os
import subprocess
import sys
import textwrap

import pytest

import bayesgrad as bg
from bayesgrad import _backend


def test_backend_info_keys():
    info = bg.backend_info()
    for key in ("name", "native", "cuda_compiled", "cuda_devices", "threads", "blas"):
        assert key in info
    assert info["name"] in ("cpu", "numpy")
    assert isinstance(info["cuda_devices"], int)


def test_set_backend_rejects_unknown():
    with pytest.raises(ValueError, match="backend"):
        bg.set_backend("tpu")
    with pytest.raises(TypeError, match="backend"):
        bg.set_backend(3)


def test_cuda_backend_reports_why_unavailable():
    with pytest.raises(ValueError, match="cuda"):
        bg.set_backend("cuda")


@pytest.mark.single_backend
def test_use_backend_restores():
    before = bg.get_backend()
    with bg.use_backend("numpy"):
        assert bg.get_backend() == "numpy"
    assert bg.get_backend() == before


@pytest.mark.single_backend
def test_set_num_threads_validates():
    with pytest.raises(ValueError, match="n"):
        bg.set_num_threads(0)
    with pytest.raises(TypeError, match="n"):
        bg.set_num_threads(1.5)


def _run(code, **env):
    e = dict(os.environ)
    e.update(env)
    e["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(bg.__file__))] + sys.path)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=e,
                          timeout=120)


@pytest.mark.single_backend
def test_without_core_warns_once_and_falls_back():
    # Hide the compiled module as iminuit's test_without_* do.
    code = """
        import sys, warnings
        sys.modules['bayesgrad._core'] = None
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter('always')
            import bayesgrad as bg
            import bayesgrad.random
        msgs = [str(x.message) for x in w if 'native core' in str(x.message)]
        assert len(msgs) == 1, msgs
        assert bg.get_backend() == 'numpy'
        assert bg.backend_info()['native'] is False
        import numpy as np
        z = bg.random.normal(5, seed=1)
        assert z.shape == (5,)
        try:
            bg.set_backend('cpu')
        except ValueError as e:
            assert 'native core' in str(e)
        else:
            raise AssertionError('cpu backend accepted without core')
        print('ok')
    """
    r = _run(code)
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout


@pytest.mark.single_backend
def test_env_variable_selects_backend():
    r = _run("import bayesgrad as bg; print(bg.get_backend())", BAYESGRAD_BACKEND="numpy")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "numpy"
    r = _run("import bayesgrad as bg; print(bg.get_backend())", BAYESGRAD_BACKEND="bogus")
    assert r.returncode != 0 and "BAYESGRAD_BACKEND" in r.stderr


def test_cli_info_runs():
    from bayesgrad import cli
    assert cli.main(["info"]) == 0


@pytest.mark.single_backend
def test_every_native_kernel_has_a_twin_and_a_stub():
    """_core, _numpy and _core.pyi expose the same kernel names (DESIGN.md: every kernel has a twin)."""
    if not _backend.native_available():
        pytest.skip("native core not built")
    import ast
    import pathlib

    import bayesgrad._numpy as twin

    core = {n for n in dir(_backend._core) if not n.startswith("_")}
    stub_src = (pathlib.Path(bg.__file__).parent / "_core.pyi").read_text()
    stubs = {n.name for n in ast.parse(stub_src).body if isinstance(n, ast.FunctionDef)}
    missing_twin = sorted(n for n in core if not hasattr(twin, n))
    assert not missing_twin, f"native kernels without a NumPy twin: {missing_twin}"
    assert core == stubs, f"stub mismatch: only native {sorted(core - stubs)}, only stub {sorted(stubs - core)}"
