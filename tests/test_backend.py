import os
import subprocess
import sys
import textwrap

import pytest

import bayesgrad as bg
from bayesgrad import _backend
from helpers import native_arg_names as _native_arg_names


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
    r = _run(code, BAYESGRAD_BACKEND="")  # the fallback, whatever backend the suite was told to run
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


def _stub_module(concept):
    import ast
    import pathlib

    src = (pathlib.Path(bg.__file__).parent / "_core" / f"{concept}.pyi").read_text()
    return {n.name: n for n in ast.parse(src).body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}


@pytest.mark.single_backend
def test_every_native_kernel_has_a_twin_and_a_stub():
    """Per concept submodule, _core.<concept>, _numpy.<concept> and the stub
    _core/<concept>.pyi expose the same names, and every kernel the same
    argument names in the same order (docs/design.md: every kernel has a twin)."""
    if not _backend.native_available():
        pytest.skip("native core not built")
    import dataclasses
    import inspect

    import bayesgrad._numpy as twin

    core_concepts = {n for n in dir(_backend._core) if not n.startswith("_")}
    assert core_concepts == set(twin.CONCEPTS)
    for concept in twin.CONCEPTS:
        native, numpy_mod, stubs = getattr(_backend._core, concept), getattr(twin, concept), _stub_module(concept)
        names = {n for n in dir(native) if not n.startswith("_")}
        assert names == set(numpy_mod.__all__), (concept, names ^ set(numpy_mod.__all__))
        assert names == set(stubs), (concept, names ^ set(stubs))
        for name in names:
            obj = getattr(numpy_mod, name)
            if inspect.isclass(obj):  # bound struct vs dataclass: the same constructor fields
                fields = [f.name for f in dataclasses.fields(obj) if f.init]
                init = next(n for n in stubs[name].body if getattr(n, "name", "") == "__init__")
                assert [a.arg for a in init.args.args[1:]] == fields, (concept, name)
                assert _native_arg_names(getattr(native, name).__init__)[1:] == fields, (concept, name)
                continue
            twin_args = list(inspect.signature(obj).parameters)
            assert _native_arg_names(getattr(native, name)) == twin_args, (concept, name)
            assert [a.arg for a in stubs[name].args.args] == twin_args, (concept, name)


@pytest.mark.single_backend
def test_no_kernel_takes_more_than_nine_arguments():
    """Kernels take arrays and one named configuration object, not long lists of codes."""
    import inspect

    import bayesgrad._numpy as twin

    for concept in twin.CONCEPTS:
        mod = getattr(twin, concept)
        for name in mod.__all__:
            obj = getattr(mod, name)
            if not inspect.isclass(obj):
                # the optional per-row likelihood weights of the epoch kernels (issue 18) do not count
                params = [p for p in inspect.signature(obj).parameters.values()
                          if not (p.name == "weights" and p.default is None)]
                assert len(params) <= 9, f"{concept}.{name}"


@pytest.mark.single_backend
def test_configs_agree_between_backends():
    """A config built with the same arguments on both backends reads back the same
    fields, and both refuse the same bad values with a ValueError naming the field."""
    if not _backend.native_available():
        pytest.skip("native core not built")
    import bayesgrad._numpy as twin

    for mod in (_backend._core, twin):
        net = mod.mlp.NetConfig((3, 5, 2), 2)
        assert net.sizes == (3, 5, 2) and net.activation == 2 and net.n_params == 32
        adam = mod.optim.AdamConfig(lr=0.5, beta2=0.9)
        assert (adam.lr, adam.beta1, adam.beta2, adam.eps) == (0.5, 0.9, 0.9, 1e-8)
        vi = mod.vi.ViConfig(net, 3, estimator=2, n_samples=4, batch_size=7, adam=adam, mix_pi=0.25)
        assert (vi.likelihood, vi.estimator, vi.n_samples, vi.batch_size, vi.mix_pi, vi.adam.lr) == \
            (3, 2, 4, 7, 0.25, 0.5)
        assert vi.net.sizes == (3, 5, 2)
        mp = mod.optim.MapConfig(net, 0, dropout_p=0.25, dropout_stream=9)
        assert (mp.dropout_p, mp.dropout_stream, mp.batch_size, mp.adam.lr) == (0.25, 9, 32, 1e-3)
        cv = mod.curvature.CurvatureConfig(net, 2, 1, 1, 1)
        assert (cv.likelihood, cv.kind, cv.n_cols, cv.structure) == (2, 1, 1, 1)
        for bad, match in ((lambda: mod.optim.AdamConfig(beta1=1.0), "beta1"),
                           (lambda: mod.optim.SgdConfig(kappa=0.5), "kappa"),
                           (lambda: mod.optim.MapConfig(net, 0, dropout_p=1.0), "dropout_p"),
                           (lambda: mod.vi.ViConfig(net, 0, prior=2), "prior: vi_prior code 2"),
                           (lambda: mod.vi.ViConfig(net, 0, n_samples=0), "n_samples"),
                           (lambda: mod.vi.ViConfig(net, 4), "likelihood: likelihood code 4"),
                           (lambda: mod.curvature.CurvatureConfig(net, 1, 0, 2), "heteroscedastic"),
                           (lambda: mod.mlp.NetConfig((3, 0), 1), "width")):
            with pytest.raises(ValueError, match=match):
                bad()


@pytest.mark.single_backend
def test_codes_header_is_generated_from_the_python_definitions():
    """cpp/include/bayesgrad/codes.hpp is what python/bayesgrad/_codes.py writes
    (regenerate with `python python/bayesgrad/_codes.py > cpp/include/bayesgrad/codes.hpp`)."""
    import pathlib

    from bayesgrad import _codes

    header = pathlib.Path(__file__).resolve().parents[1] / "cpp" / "include" / "bayesgrad" / "codes.hpp"
    if not header.exists():
        pytest.skip("not run from a source checkout")
    assert header.read_text() == _codes.cpp_header()


def test_compiled_codes_match_the_python_definitions():
    """The core (and the twin) report the codes they were built with: the same as bayesgrad._codes."""
    from bayesgrad import _codes

    got = _backend.kernels().runtime.codes()
    assert got.pop("flipout_tag") == _codes.STREAM_TAGS["flipout"]
    assert got == {e.__name__: {m.name: int(m) for m in e} for e in _codes.ENUMS}


@pytest.mark.single_backend
def test_every_stream_tag_in_the_package_is_registered():
    """Internal code passes registered tag names to fold_in; an unregistered string
    would silently hash to a new stream (docs/design.md, "Streams and tags")."""
    import pathlib
    import re

    from bayesgrad import _codes

    root = pathlib.Path(bg.__file__).parent
    used = set()
    for path in root.rglob("*.py"):
        text = path.read_text()
        used |= set(re.findall(r'fold_in\([^()]*?,\s*"([^"]+)"\)', text))
        used |= set(re.findall(r'_(?:uniforms|normals)\([^()]*?"(dataset/[^"]+)"\)', text))
    assert used, "the scan found no tags: the pattern is stale"
    assert used <= set(_codes.STREAM_TAGS), sorted(used - set(_codes.STREAM_TAGS))
    assert bg.random.TAGS == _codes.STREAM_TAGS
