"""REBAR's temperature difference in one pass: concrete_bernoulli_fd (the relaxation at lam and
lam e^{+-step}, the outer two from the sigmoid's Taylor series on the native core) and
relax_bernoulli_part_fd (the relaxed-f part at lam and the difference of the outer two), native
and twin, against the sigmoid in long double and against relax_bernoulli_part at each temperature."""
import numpy as np
import pytest

from bayesgrad import _backend
from bayesgrad import _numpy as twin

pytestmark = pytest.mark.single_backend

STEP = 1e-4


def _modules():
    from helpers import estimator_modules

    return estimator_modules()


def _simd_paths():
    import bayesgrad as bg
    from helpers import on_simd_path

    if not _backend.native_available():
        return []
    return ["scalar"] + [p for p in ("avx512", "avx2")
                         if on_simd_path(p, lambda: bg.backend_info()["simd"]).startswith(p)]


def _z(seed=0, n=20_001):
    """Typical relaxation inputs, the series' edge (|z / lam| near 1 / (64 (e^step - 1)) = 156 at
    lam = 0.3) and the far tails (the direct sigmoid), 0 and the smallest magnitudes."""
    r = np.random.default_rng(seed)
    edge = 0.3 * np.array([155.0, 156.2, 156.3, 157.0])
    return np.concatenate([r.standard_normal(n) * 20, r.uniform(-800, 800, 999), edge, -edge,
                           [0.0, -0.0, 1e-300, -1e-300, 745.0, -745.0, 800.0, -800.0]])


def _error_in_ulp(y, z, lam, e):
    """|y - sigmoid(z / (lam e^{e step}))| with the argument and the sigmoid in long double, in units of
    ulp(y) (1 + |a|): the double argument's own rounding moves sigmoid by about |a| ulp, so that is the
    accuracy any double evaluation has (values below 1e-300 are left out)."""
    L = np.longdouble
    a = L(z) / (L(lam) * np.exp(L(STEP) * e))
    r = 1 / (1 + np.exp(-a))
    ok = r > 1e-300
    return (np.abs(y[ok] - r[ok]) / np.spacing(r[ok].astype(float)) / (1 + np.abs(a[ok]).astype(float))).max()


@pytest.mark.parametrize("lam", [0.3, 1.0, 7.0])
def test_concrete_bernoulli_fd_against_long_double(lam):
    """Every module and SIMD path within 2.5 ulp (1 + |a|) of the long-double value at each of the
    three temperatures (the twin evaluates each directly: its error is of the same size)."""
    z = _z()
    for mod in _modules():
        y = np.empty((3, z.size))
        mod.concrete_bernoulli_fd(z, lam, STEP, y)
        for k, e in enumerate((0, 1, -1)):
            assert _error_in_ulp(y[k], z, lam, e) < 2.5, (mod.__name__, k)
        y1 = np.empty(z.size)
        mod.concrete_bernoulli(z, lam, y1)
        np.testing.assert_array_equal(y[0], y1)  # the middle temperature is concrete_bernoulli's


def test_concrete_bernoulli_fd_simd_paths():
    """AVX-512 (masked tail), AVX2 (scalar tail) and the scalar path: the same series, each within the
    long-double bound, and within 1e-12 of one another on sizes that leave tails."""
    from helpers import on_simd_path

    paths = _simd_paths()
    if not paths:
        pytest.skip("no native core")
    core = _backend._core.estimators
    outs = {}
    for n in (20_001, 13, 7):
        z = _z(seed=n, n=n)
        for path in paths:
            y = np.empty((3, z.size))
            on_simd_path(path, lambda: core.concrete_bernoulli_fd(z, 0.3, STEP, y))
            for k, e in enumerate((0, 1, -1)):
                assert _error_in_ulp(y[k], z, 0.3, e) < 2.5, (path, n, k)
            outs[path] = y
        for path in paths[1:]:
            np.testing.assert_allclose(outs[path], outs["scalar"], rtol=1e-12, atol=1e-300, err_msg=path)


@pytest.mark.parametrize("n,p", [(1, 1), (37, 5), (300, 7)])
def test_relax_bernoulli_part_fd_against_the_part_at_each_temperature(n, p):
    r = np.random.default_rng(n + p)
    lam = 0.6
    fv, gv = r.standard_normal(6 * n), r.standard_normal((6 * n, p))
    y = r.uniform(size=(6 * n, p))
    dzt, score = r.uniform(0.1, 1, size=(n, p)), r.choice([-0.4, 0.6], size=(n, p))
    want = []
    for k, lk in enumerate((lam, lam * np.exp(STEP), lam * np.exp(-STEP))):
        z, t = slice(2 * k * n, (2 * k + 1) * n), slice((2 * k + 1) * n, (2 * k + 2) * n)
        a = np.empty((n, p))
        twin.estimators.relax_bernoulli_part(fv[t].copy(), gv[z].copy(), gv[t].copy(), y[z].copy(), y[t].copy(),
                                             dzt, score, lk, a)
        want.append(a)
    outs = []
    for mod in _modules():
        out = np.empty((2, n, p))
        mod.relax_bernoulli_part_fd(fv, gv, y, dzt, score, lam, STEP, out)
        np.testing.assert_allclose(out[0], want[0], rtol=1e-13, atol=1e-15)
        # the difference is formed per element: its error is that of the two parts (~1e-16 of them)
        np.testing.assert_allclose(out[1], want[1] - want[2], rtol=0, atol=1e-14)
        outs.append(out)
    if len(outs) == 2:
        np.testing.assert_allclose(outs[1], outs[0], rtol=1e-13, atol=1e-15)


def test_fd_kernels_refuse_bad_arguments():
    n, p = 4, 3
    z = np.zeros((2 * n, p))
    fv, gv, y = np.zeros(6 * n), np.zeros((6 * n, p)), np.zeros((6 * n, p))
    dzt, score = np.zeros((n, p)), np.zeros((n, p))
    for mod in _modules():
        with pytest.raises(ValueError, match="shape"):
            mod.concrete_bernoulli_fd(z, 0.5, STEP, np.empty((2, 2 * n, p)))
        for lam, step, what in ((0.0, STEP, "lam"), (np.inf, STEP, "lam"), (0.5, 0.0, "step"), (0.5, 1.5, "step")):
            with pytest.raises(ValueError, match=what):
                mod.concrete_bernoulli_fd(z, lam, step, np.empty((3, 2 * n, p)))
            with pytest.raises(ValueError, match=what):
                mod.relax_bernoulli_part_fd(fv, gv, y, dzt, score, lam, step, np.empty((2, n, p)))
        with pytest.raises((TypeError, ValueError)):
            mod.concrete_bernoulli_fd(z.astype(np.float32), 0.5, STEP, np.empty((3, 2 * n, p)))
        with pytest.raises(ValueError):
            mod.relax_bernoulli_part_fd(fv[:-1], gv, y, dzt, score, 0.5, STEP, np.empty((2, n, p)))
        with pytest.raises(ValueError):
            mod.relax_bernoulli_part_fd(fv, gv, y[:-1], dzt, score, 0.5, STEP, np.empty((2, n, p)))
        with pytest.raises(ValueError, match="out"):
            mod.relax_bernoulli_part_fd(fv, gv, y, dzt, score, 0.5, STEP, np.empty((3, n, p)))
