"""The input checks' one-pass range kernel (runtime.value_range, _checks.value_range): against
NumPy's min / max on every vector path, both dtypes, NaN / inf anywhere (in a vector, in a tail,
in a later chunk of the parallel path), at 1 and 2 threads; and the checks built on it."""
import numpy as np
import pytest

import bayesgrad as bg
from bayesgrad import _backend
from bayesgrad import _checks as C
from bayesgrad import _numpy as twin

from helpers import native_simd_paths, on_simd_path

pytestmark = pytest.mark.single_backend

# the kernel's vector widths (8 / 16 lanes, four accumulators: 32 / 64 values a step) and its
# parallel chunks (2^16 values, from 2^18)
SIZES = [1, 2, 7, 8, 9, 31, 33, 63, 64, 65, 100, 1000, (1 << 18) - 1, (1 << 18) + 3, 5 * (1 << 16) + 17]


def _modules():
    mods = [("twin", None, twin.runtime)]
    if _backend.native_available():
        mods += [("native", p, _backend._core.runtime) for p in native_simd_paths() + ["scalar"]]
    return mods


def _run(path, mod, x):
    return mod.value_range(x) if path is None else on_simd_path(path, lambda: mod.value_range(x))


def _cases(n, dtype, r):
    x = r.standard_normal(n).astype(dtype) * 3.0
    yield x
    yield np.abs(x) + dtype(100.0)  # all positive: a tail's unused lanes must not count as 0
    yield -np.abs(x) - dtype(100.0)
    for pos in sorted({0, n // 2, n - 1}):
        for bad in (np.nan, np.inf, -np.inf, 1e30):
            y = x.copy()
            y[pos] = bad
            yield y


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
def test_value_range_matches_numpy_min_max(n, dtype):
    r = np.random.default_rng(n)
    for x in _cases(n, dtype, r):
        nan = bool(np.isnan(x).any())
        want = (np.nan, np.nan) if nan else (float(x.min()), float(x.max()))
        before = bg.get_num_threads()
        for threads in (1, 2):
            bg.set_num_threads(threads)
            try:
                for name, path, mod in _modules():
                    got = _run(path, mod, x)
                    assert isinstance(got[0], float) and isinstance(got[1], float)
                    np.testing.assert_array_equal(got, want, err_msg=f"{name} {path} n={n} threads={threads}")
            finally:
                bg.set_num_threads(before)


def test_value_range_refuses_what_it_cannot_read_in_place():
    for _, path, mod in _modules():
        with pytest.raises(TypeError):
            mod.value_range(np.arange(10))  # integers: no conversion (a copy) behind the caller's back
        with pytest.raises(TypeError):
            mod.value_range(np.zeros((4, 6))[:, ::2])  # not C-contiguous
        with pytest.raises(ValueError, match="x must not be empty"):
            mod.value_range(np.zeros(0))
        ro = np.linspace(-1, 2, 50)
        ro.flags.writeable = False
        assert mod.value_range(ro) == (-1.0, 2.0)
        # integer_range: the same refusals, and the same read-only array (not integral) read in place
        with pytest.raises(TypeError):
            mod.integer_range(np.arange(10))
        with pytest.raises(TypeError):
            mod.integer_range(np.zeros((4, 6))[:, ::2])
        with pytest.raises(ValueError, match="x must not be empty"):
            mod.integer_range(np.zeros(0))
        assert mod.integer_range(ro) == (-1.0, 2.0, False)


def test_checks_built_on_it_name_the_argument():
    for backend in ("cpu", "numpy") if _backend.native_available() else ("numpy",):
        with bg.use_backend(backend):
            x = np.zeros((300, 7))
            x[299, 6] = np.inf
            with pytest.raises(ValueError, match="y must be finite"):
                C.as_array(x, "y")
            assert C.as_array(x, "y", finite=False) is not None
            assert C.as_array(np.zeros((0, 3)), "y", allow_empty=True).shape == (0, 3)
            assert C.as_array(np.float32(2.5), "y").shape == ()
            d = bg.distributions.Bernoulli(logits=np.zeros(7))
            x[299, 6] = np.nan
            with pytest.raises(ValueError, match="x must not contain NaN"):
                d.log_prob(x)
            x[299, 6] = 1.5
            with pytest.raises(ValueError, match=r"x must be in \[0, 1\]"):
                d.log_prob(x)


def _integer_cases(n, dtype, r):
    x = np.floor(r.standard_normal(n) * 50.0).astype(dtype)
    yield x
    yield np.abs(x) + dtype(2.0 ** 60 if dtype == np.float64 else 2.0 ** 30)  # beyond exact integers: integral
    for pos in sorted({0, n // 2, n - 1}):
        for bad in (0.5, -0.25, 1e-3, np.inf, -np.inf, np.nan, 1e30):
            y = x.copy()
            y[pos] = dtype(y[pos] + bad) if np.isfinite(bad) and abs(bad) < 1 else dtype(bad)
            yield y


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
def test_integer_range_matches_numpy(n, dtype):
    # (min, max) as value_range, and whether rint(x) == x everywhere (+-inf integral, NaN not), on every
    # path, 1 and 2 threads; the twin compares in pieces
    r = np.random.default_rng(n + 1)
    for x in _integer_cases(n, dtype, r):
        nan = bool(np.isnan(x).any())
        want = ((np.nan, np.nan) if nan else (float(x.min()), float(x.max()))) + (bool(np.all(np.rint(x) == x)),)
        before = bg.get_num_threads()
        for threads in (1, 2):
            bg.set_num_threads(threads)
            try:
                for name, path, mod in _modules():
                    got = mod.integer_range(x) if path is None else on_simd_path(path, lambda: mod.integer_range(x))
                    assert isinstance(got[2], bool)
                    np.testing.assert_array_equal(got[:2], want[:2], err_msg=f"{name} {path} n={n}")
                    assert got[2] == want[2], (name, path, n, threads)
            finally:
                bg.set_num_threads(before)
    for chunk in (1, 7, 64):  # the twin's pieces
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(twin.runtime, "_INTEGER_CHUNK", chunk)
            x = np.arange(100, dtype=dtype) * dtype(3.0)
            assert twin.runtime.integer_range(x)[2]
            x[63] += dtype(0.5)
            assert not twin.runtime.integer_range(x)[2]


def test_poisson_checks_counts_in_one_pass():
    d = bg.distributions.Poisson(np.array([1.0, 2.0, 3.0]))
    x = np.ones((1000, 3))
    assert np.isfinite(d.log_prob(x)).all()
    for bad in (0.5, -1.0, np.inf):
        y = x.copy()
        y[999, 2] = bad
        with pytest.raises(ValueError, match="finite non-negative integer counts"):
            d.log_prob(y)
    assert d.log_prob(np.zeros((0, 3))).shape == (0, 3)
