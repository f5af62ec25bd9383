"""Post-hoc calibration (bg.calibration) and its plots."""
import numpy as np
import pytest
from scipy import special, stats

import bayesgrad as bg

K = bg.calibration
pytestmark = pytest.mark.single_backend  # NumPy/SciPy only


def _nll(lp, y):
    return -lp[np.arange(len(y)), y].mean()


def _problem(rng, n=4000, C=4):
    z = rng.normal(size=(n, C)) * 2
    a, b = np.array([0.5, 1.5, 1.0, 0.8]), np.array([0.3, -0.2, 0.0, 0.5])
    p = special.softmax(z * a + b, axis=1)
    y = (rng.uniform(size=(n, 1)) > np.cumsum(p, 1)).sum(1)
    return z, np.minimum(y, C - 1), a, b


def test_vector_scaling_recovers_the_generating_scales():
    rng = np.random.default_rng(0)
    z, y, a, b = _problem(rng, n=20000)
    vs = K.fit_vector_scaling(z, y)
    np.testing.assert_allclose(vs.w, a, atol=0.08)
    np.testing.assert_allclose(vs.b - vs.b.mean(), b - b.mean(), atol=0.08)  # softmax ignores a common shift
    np.testing.assert_allclose(vs.transform(z).sum(1), 1, rtol=1e-12)


def test_nested_models_fit_at_least_as_well_and_gradients_are_exact():
    rng = np.random.default_rng(1)
    z, y, _, _ = _problem(rng)
    t = bg.uncertainty.fit_temperature(z, y)
    vs, ms = K.fit_vector_scaling(z, y), K.fit_matrix_scaling(z, y)
    nll_t = _nll(t.log_probs(z), y)
    nll_v, nll_m = _nll(vs.log_probs(z), y), _nll(ms.log_probs(z), y)
    assert nll_m <= nll_v + 1e-7 <= nll_t + 2e-7  # temperature ⊂ vector ⊂ matrix, convex problems
    # at the optimum the gradient of the mean NLL vanishes: check w.r.t. W by central differences
    W, b = ms.W.copy(), ms.b
    eps = 1e-5
    for (i, j) in [(0, 0), (1, 2), (3, 1)]:
        Wp, Wm = W.copy(), W.copy()
        Wp[i, j] += eps
        Wm[i, j] -= eps
        g = (_nll(special.log_softmax(z @ Wp.T + b, 1), y) - _nll(special.log_softmax(z @ Wm.T + b, 1), y)) / (2 * eps)
        assert abs(g) < 1e-5


def test_l2_pulls_matrix_scaling_to_the_identity():
    rng = np.random.default_rng(2)
    z, y, _, _ = _problem(rng, n=300)
    ms = K.fit_matrix_scaling(z, y, l2=1e3)
    np.testing.assert_allclose(ms.W, np.eye(4), atol=5e-3)
    with pytest.raises(ValueError, match="l2"):
        K.fit_matrix_scaling(z, y, l2=-1)
    with pytest.raises(ValueError, match="2 classes"):
        K.fit_vector_scaling(z[:, :1], np.zeros(300, int))


def test_std_scaling_is_the_gaussian_mle():
    rng = np.random.default_rng(3)
    m = rng.normal(size=5000)
    y = m + 2.5 * rng.normal(size=5000)
    s = K.fit_std_scaling(y, m, np.ones(5000))
    assert abs(s.scale - 2.5) < 0.07
    z = (y - m) / s.transform(np.ones(5000))
    np.testing.assert_allclose(np.mean(z ** 2), 1.0, rtol=1e-12)


def test_isotonic_fit_matches_scikit_learn():
    isotonic = pytest.importorskip("sklearn.isotonic")
    rng = np.random.default_rng(4)
    x = rng.uniform(size=300)
    y = x + rng.normal(size=300) * 0.3
    xs, fitted = K.isotonic_fit(x, y)
    ref = isotonic.IsotonicRegression().fit(x, y).predict(xs)
    np.testing.assert_allclose(fitted, ref, atol=1e-12)
    assert np.all(np.diff(fitted) >= 0)


def test_isotonic_recalibration_fixes_a_miscalibrated_std():
    rng = np.random.default_rng(5)
    n = 4000
    m = rng.normal(size=2 * n)
    y = m + rng.standard_t(5, size=2 * n) * 2.0  # heavier tails and twice the stated std
    std = np.ones(2 * n)
    rec = K.fit_isotonic_recalibration(y[:n], m[:n], std[:n])
    before = bg.uncertainty.miscalibration_area(y[n:], m[n:], std[n:])
    pit = rec.cdf(y[n:], m[n:], std[n:])  # recalibrated PIT values are uniform on fresh data
    assert stats.kstest(pit, "uniform").pvalue > 1e-3
    lo, hi = rec.interval(m[n:], std[n:], coverage=0.9)
    cov = np.mean((lo <= y[n:]) & (y[n:] <= hi))
    assert before > 0.1 and abs(cov - 0.9) < 0.025  # binomial sd of the coverage is 0.005
    with pytest.raises(ValueError, match="coverage"):
        rec.interval(m, std, coverage=1.5)


def test_plots_write_files(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(6)
    z, y, _, _ = _problem(rng, n=500)
    p = special.softmax(z, 1)
    path = bg.plotting.plot_reliability({"raw": (p, y), "vector": (K.fit_vector_scaling(z, y).transform(z), y)},
                                        tmp_path / "rel.png")
    assert (tmp_path / "rel.png").stat().st_size > 1000 and path.endswith("rel.png")
    m = rng.normal(size=300)
    yy = m + rng.normal(size=300)
    bg.plotting.plot_calibration_curve({"a": (m, np.ones(300)), "b": (m, 2 * np.ones(300))}, yy, tmp_path / "cal.png")
    assert (tmp_path / "cal.png").stat().st_size > 1000
