"""The thread budget (bayesgrad/_threads.py): defaults from the environment,
worker processes, CPU affinity and the cgroup quota; one budget for the core,
scipy-openblas32 and NumPy's BLAS."""
import multiprocessing
import os

import numpy as np
import pytest

import bayesgrad as bg
from bayesgrad import _backend, _threads

from helpers import BACKENDS

pytestmark = pytest.mark.single_backend


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("BAYESGRAD_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(_threads, "_in_worker_process", lambda: False)
    monkeypatch.setattr(_threads, "_affinity_cpus", lambda: 8)
    return monkeypatch


def _cgroup(tmp_path, v2=None, v1=None):
    if v2 is not None:
        (tmp_path / "cpu.max").write_text(v2)
    if v1 is not None:
        (tmp_path / "cpu").mkdir()
        (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(str(v1[0]))
        (tmp_path / "cpu" / "cpu.cfs_period_us").write_text(str(v1[1]))
    return str(tmp_path)


def test_default_is_the_affinity_capped_by_the_cgroup_quota(clean_env, tmp_path):
    assert _threads.default_threads(_cgroup(tmp_path / "none")) == 8  # no cgroup files: the affinity
    (tmp_path / "a").mkdir()
    assert _threads.default_threads(_cgroup(tmp_path / "a", v2="150000 100000\n")) == 2  # 1.5 CPUs -> 2
    (tmp_path / "b").mkdir()
    assert _threads.default_threads(_cgroup(tmp_path / "b", v2="max 100000\n")) == 8
    (tmp_path / "c").mkdir()
    assert _threads.default_threads(_cgroup(tmp_path / "c", v1=(300000, 100000))) == 3
    (tmp_path / "d").mkdir()
    assert _threads.default_threads(_cgroup(tmp_path / "d", v1=(-1, 100000))) == 8
    (tmp_path / "e").mkdir()
    assert _threads.default_threads(_cgroup(tmp_path / "e", v2="50000 100000")) == 1  # half a CPU -> 1


def test_environment_and_worker_processes(clean_env, tmp_path):
    root = str(tmp_path)
    clean_env.setenv("OMP_NUM_THREADS", "3,1")
    assert _threads.default_threads(root) == 3
    clean_env.setenv("BAYESGRAD_NUM_THREADS", "5")  # ours wins
    assert _threads.default_threads(root) == 5
    clean_env.setenv("BAYESGRAD_NUM_THREADS", "zero")
    with pytest.raises(ValueError, match="BAYESGRAD_NUM_THREADS"):
        _threads.default_threads(root)
    clean_env.delenv("BAYESGRAD_NUM_THREADS")
    clean_env.setenv("OMP_NUM_THREADS", "garbage")  # another library's variable: ignored
    assert _threads.default_threads(root) == 8
    clean_env.delenv("OMP_NUM_THREADS")
    clean_env.setattr(_threads, "_in_worker_process", lambda: True)
    assert _threads.default_threads(root) == 1


def _child_threads(q):
    import bayesgrad

    q.put(bayesgrad.get_num_threads())


@pytest.mark.skipif(not _backend.native_available(), reason="needs the native core")
@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_a_multiprocessing_worker_defaults_to_one_thread(method):
    env = {k: os.environ.pop(k) for k in ("BAYESGRAD_NUM_THREADS", "OMP_NUM_THREADS") if k in os.environ}
    state = dict(_backend._threads_state)
    _backend._init_threads()  # the parent on its default budget, as a user's would be
    if bg.get_num_threads() == 1:
        os.environ.update(env)
        _backend._apply_threads(state["n"], limit_numpy=False)
        pytest.skip("this process may use one CPU only: a worker's 1 would prove nothing")
    ctx = multiprocessing.get_context(method)
    q = ctx.Queue()
    try:
        p = ctx.Process(target=_child_threads, args=(q,))
        p.start()
        got = q.get(timeout=120)
        p.join(60)
    finally:
        os.environ.update(env)
        _backend._apply_threads(state["n"], limit_numpy=False)
        _backend._threads_state.update(state)
    assert got == 1


@pytest.mark.skipif(not _backend.native_available(), reason="needs the native core")
def test_set_num_threads_is_one_budget_for_the_core_and_every_blas():
    before = bg.get_num_threads()
    try:
        bg.set_num_threads(1)
        info = bg.backend_info()
        assert info["threads"] == 1 and info["blas_threads"] == 1
        try:
            import threadpoolctl
        except ImportError:
            assert info["numpy_blas_limited"] is False
        else:
            assert info["numpy_blas_limited"] is True
            blas = [p for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
            assert blas and all(p["num_threads"] == 1 for p in blas)
    finally:
        bg.set_num_threads(before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tiled_products_give_the_same_values_for_any_thread_count(dtype):
    # Products from 2^21 multiply-adds on run as fixed tiles of their output on the pool (one BLAS
    # thread each): the tiles depend on the shapes only, so forward values and gradients must be the
    # same bits at 1 and 2 threads, and match a float64 NumPy reference to rounding.
    net = bg.nn.MLP([300, 256, 200, 7], activation="tanh")
    theta = net.init(seed=3).astype(dtype)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(700, 300)).astype(dtype)
    g = rng.normal(size=(700, 7)).astype(dtype)
    if "cpu" not in BACKENDS:
        pytest.skip("the native core is not built (the NumPy twin's products are NumPy's BLAS)")
    out = {}
    prev = bg.get_num_threads()
    try:
        with bg.use_backend("cpu"):
            for n in (1, 2):
                bg.set_num_threads(n)
                out[n] = (net.forward(theta, X), net.vjp(theta, X, g))
    finally:
        bg.set_num_threads(prev)
    np.testing.assert_array_equal(out[1][0], out[2][0])
    np.testing.assert_array_equal(out[1][1], out[2][1])
    ref = X.astype(np.float64)
    th = theta.astype(np.float64)
    layers = net.unflatten(th)
    for W, b in layers[:-1]:
        ref = np.tanh(ref @ W.T + b)
    W, b = layers[-1]
    ref = ref @ W.T + b
    np.testing.assert_allclose(out[2][0], ref, rtol=0, atol=(2e-4 if dtype == np.float32 else 1e-11) * np.abs(ref).max())
