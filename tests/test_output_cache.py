"""The native core's output cache (bayesgrad._backend.empty, docs/design.md "Output cache"):
blocks of freed large outputs reused, never while an array or view still refers to them."""
import pickle
import subprocess
import sys

import numpy as np
import pytest

import bayesgrad as bg
from bayesgrad import _backend
from helpers import BACKENDS

BIG = 3 << 20  # float64 elements: 24 MiB, above the 256 KiB threshold

native = pytest.mark.skipif("cpu" not in BACKENDS, reason="the cache is the native core's")


@pytest.fixture
def cache():
    """A clean cache for the test (emptied before and after; limit restored)."""
    prev = bg.set_output_cache_limit(0)
    bg.set_output_cache_limit(prev)
    yield _backend._core.runtime
    bg.set_output_cache_limit(0)
    bg.set_output_cache_limit(prev)


def test_empty_is_a_plain_c_contiguous_writeable_array():
    for shape, dt in [((BIG,), np.float64), ((3, 5), np.float32), ((1000, 3000), np.float32), ((0,), np.int64)]:
        a = _backend.empty(shape, dt)
        assert a.shape == shape and a.dtype == dt
        assert a.flags.c_contiguous and a.flags.writeable and a.flags.aligned
        a[...] = 1
        assert float(a.sum()) == a.size


@native
@pytest.mark.single_backend
def test_a_block_is_reused_only_when_nothing_refers_to_it(cache):
    with bg.use_backend("cpu"):
        a = _backend.empty((BIG,), np.float64)
        addr = a.ctypes.data
        view = a[10:20]
        view[:] = 7.0
        del a
        b = _backend.empty((BIG,), np.float64)  # the view keeps a's block: a new one
        assert not np.shares_memory(b, view) and b.ctypes.data != addr
        b[:] = -1.0
        assert np.all(view == 7.0)
        del view
        hits = cache.output_cache_info()["hits"]
        c = _backend.empty((BIG,), np.float64)
        assert c.ctypes.data == addr and cache.output_cache_info()["hits"] == hits + 1
        del b, c


@native
@pytest.mark.single_backend
def test_best_fit_within_twice_the_request_and_small_outputs_uncached(cache):
    with bg.use_backend("cpu"):
        big = _backend.empty((4 * BIG,), np.float64)
        del big
        info = cache.output_cache_info()
        assert info["blocks"] == 1 and info["bytes"] >= 32 * BIG
        small = _backend.empty((BIG,), np.float64)  # a quarter of the cached block: not taken
        assert cache.output_cache_info()["hits"] == info["hits"]
        tiny = _backend.empty((1000,), np.float64)  # below 256 KiB: NumPy's own array
        assert tiny.base is None
        mid = _backend.empty((1 << 15,), np.float64)  # 256 KiB: cached
        assert mid.base is not None
        del small, tiny, mid


@native
@pytest.mark.single_backend
def test_limit_bounds_what_is_kept_and_rejects_bad_values(cache):
    with bg.use_backend("cpu"):
        bg.set_output_cache_limit(40 << 20)
        arrays = [_backend.empty((BIG,), np.float64) for _ in range(3)]
        del arrays
        info = cache.output_cache_info()
        assert info["bytes"] <= 40 << 20 and info["blocks"] == 1
        assert bg.set_output_cache_limit(0) == 40 << 20
        assert cache.output_cache_info()["bytes"] == 0
        huge = _backend.empty((BIG,), np.float64)
        del huge  # limit 0: unmapped, not kept
        assert cache.output_cache_info()["blocks"] == 0
    with pytest.raises(ValueError, match="n_bytes"):
        bg.set_output_cache_limit(-1)
    with pytest.raises(TypeError, match="n_bytes"):
        bg.set_output_cache_limit(1.5)
    with pytest.raises(ValueError, match="n_bytes"):
        bg.set_output_cache_limit(1 << 62)


@native
@pytest.mark.single_backend
def test_draws_into_recycled_blocks_equal_draws_into_fresh_arrays(cache):
    with bg.use_backend("cpu"):
        for dt in (np.float32, np.float64):
            n = 3 * BIG
            junk = bg.random.normal(n, seed=5, dtype=dt)  # leaves its values in the block
            del junk
            u = bg.random.uniform(n, seed=1, dtype=dt)
            z = bg.random.normal(n, seed=2, stream=3, dtype=dt)
            g = bg.distributions.Gamma(np.asarray(2.5, dtype=dt)).sample(n, seed=4)
            assert cache.output_cache_info()["hits"] >= 1
            assert np.array_equal(u, bg.random.uniform(None, seed=1, dtype=dt, out=np.empty(n, dt)))
            assert np.array_equal(z, bg.random.normal(None, seed=2, stream=3, dtype=dt, out=np.empty(n, dt)))
            assert np.array_equal(g, bg.distributions.Gamma(np.asarray(2.5, dtype=dt)).sample(n, seed=4,
                                                                                                out=np.empty(n, dt)))
            del u, z, g


@native
@pytest.mark.single_backend
def test_cached_arrays_pickle_and_outlive_the_interpreter(cache):
    with bg.use_backend("cpu"):
        a = bg.random.normal((2, BIG), seed=1)
        b = pickle.loads(pickle.dumps(a))
        assert np.array_equal(a, b)
    # an array alive at exit is freed during finalisation, after the module's statics would be gone
    code = ("import bayesgrad as bg, numpy as np\n"
            "keep = bg.random.normal((2, %d), seed=1)\nview = keep[1]\n"
            "bg.set_output_cache_limit(1 << 30)\n" % BIG)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


@pytest.mark.single_backend
def test_runtime_empty_rejects_negative_and_overflowing_shapes():
    mods = [bg._numpy.runtime] + ([_backend._core.runtime] if "cpu" in BACKENDS else [])
    for rt in mods:
        with pytest.raises(ValueError):
            rt.empty((-1, 3), np.dtype(np.float64))
    if "cpu" in BACKENDS:  # the core checks the byte count before any mapping
        with pytest.raises(ValueError, match="too large"):
            _backend._core.runtime.empty((1 << 40, 1 << 40), np.dtype(np.float64))


def test_twin_keeps_no_cache():
    with bg.use_backend("numpy"):
        a = _backend.empty((BIG,), np.float64)
        assert a.base is None and a.flags.owndata
    info = bg._numpy.runtime.output_cache_info()
    assert info["blocks"] == 0 and info["bytes"] == 0
