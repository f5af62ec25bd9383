"""Edge cases of bayesgrad.distributions found by a differential fuzz: support
edges, overflow of log-densities inside the support, parameter conversion,
cancellation at large shape parameters, and twin special-function edges.

References are closed forms or mpmath at 50 digits; every test runs on each
backend (conftest.py) unless it compares the backends itself.
"""
import math

import mpmath as mp
import numpy as np
import pytest

import bayesgrad as bg
from bayesgrad import _backend
from bayesgrad.distributions._base import special_kernel

from helpers import BACKENDS

D = bg.distributions
mp.mp.dps = 50


def _close(got, want, rtol):
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), want, rtol=rtol, atol=0)


# ------------------------------------------------------------ support edges (finding 1)
def test_beta_log_prob_at_the_support_edge_with_unit_concentration():
    # (b - 1) log(1 - x) is 0 * -inf at x = 1 when b = 1: the factor (1 - x)^0 is 1
    _close(D.Beta(2.0, 1.0).log_prob(1.0), math.log(2.0), 1e-15)
    _close(D.Beta(1.0, 3.0).log_prob(0.0), math.log(3.0), 1e-15)
    _close(D.Beta(1.0, 1.0).log_prob(np.array([0.0, 0.5, 1.0])), [0.0, 0.0, 0.0], 0)
    assert D.Beta(2.0, 1.0).log_prob(0.0) == -np.inf
    assert D.Beta(0.5, 1.0).log_prob(0.0) == np.inf


def test_zero_factor_edges_of_the_other_families():
    _close(D.Gamma(1.0, 2.0).log_prob(0.0), math.log(2.0), 1e-15)
    _close(D.Exponential(3.0).log_prob(0.0), math.log(3.0), 1e-15)
    _close(D.Dirichlet([1.0, 2.0]).log_prob(np.array([0.0, 1.0])), math.log(2.0), 1e-15)


# ------------------------------------------------- gradients where log p overflows (finding 2)
@pytest.mark.parametrize("make, x, want", [
    (lambda: D.Normal(0.0, 1.0), 1e200, {"loc": 1e200, "scale": np.inf}),
    (lambda: D.Laplace(0.0, 1e-10), -1e300, {"loc": -1e10, "scale": np.inf}),
    (lambda: D.Gumbel(0.0, 1.0), -1000.0, {"loc": -np.inf, "scale": np.inf}),
    (lambda: D.LogNormal(0.0, 1e-200), 2.0, {"loc": np.inf, "scale": np.inf}),
    (lambda: D.Exponential(1e300), 1e300, {"rate": -1e300}),
    (lambda: D.Exponential(1e-200), 1.0, {"rate": 1e200 - 1.0}),
    (lambda: D.Exponential(2.0), -1.0, {"rate": 0.0}),
])
def test_score_inside_the_support_where_log_prob_overflows(make, x, want):
    got = make().score(x)
    assert set(got) == set(want)
    for k, v in want.items():
        _close(got[k], v, 1e-14)


def test_gumbel_far_left_tail_is_minus_inf_not_nan():
    assert D.Gumbel(0.0, 0.5).log_prob(-1e308) == -np.inf
    assert D.Gumbel(0.0, 1.0).log_prob(-1000.0) == -np.inf


@pytest.mark.single_backend
def test_locscale_kernels_agree_in_the_overflowing_tails():
    if len(BACKENDS) < 2:
        pytest.skip("only one backend available")
    x = np.array([-1e308, -1e300, -1e200, -1000.0, -800.0, 1e200, 1e300, 1e308])
    fams = [D.Normal(0.0, 1e-10), D.LogNormal(0.0, 1e-200), D.Laplace(0.0, 1e-10), D.Gumbel(0.0, 0.5),
            D.Exponential(1e300), D.Uniform(-1.0, 1.0)]
    for d in fams:
        res = []
        for be in ("cpu", "numpy"):
            with bg.use_backend(be):
                res.append((d.log_prob(x), d.score(x)))
        np.testing.assert_allclose(res[0][0], res[1][0], rtol=1e-14)
        for k in res[0][1]:
            np.testing.assert_allclose(res[0][1][k], res[1][1][k], rtol=1e-14, err_msg=f"{d} {k}")


# ------------------------------------------------------- parameter conversion (finding 3)
@pytest.mark.parametrize("make, name, exc", [
    (lambda: D.StudentT(3.0, 10 ** 400), "loc", TypeError),
    (lambda: D.StudentT(3.0, 0.0, 10 ** 400), "scale", TypeError),
    (lambda: D.Gamma(2.0, 10 ** 400), "rate", TypeError),
    (lambda: D.Gamma(10 ** 400), "concentration", TypeError),
    (lambda: D.Gamma(2.0, "a"), "rate", TypeError),
    (lambda: D.Gamma(2.0, 1j), "rate", TypeError),
    (lambda: D.StudentT(3.0, 1j), "loc", TypeError),
    (lambda: D.Normal(1j, 1.0), "loc", TypeError),
    (lambda: D.StudentT([[1.0, 2.0], [3.0]]), "df", TypeError),
    (lambda: D.Dirichlet([[1.0, 2.0], [3.0]]), "concentration", TypeError),
    (lambda: D.StudentT(3.0, np.datetime64("2020")), "loc", TypeError),
    (lambda: D.Gamma(2.0, np.datetime64("2020")), "rate", TypeError),
    (lambda: D.StudentT(3.0, np.inf), "loc", ValueError),
    (lambda: D.Gamma(np.float32(2.0), 1e300), "rate", ValueError),
])
def test_parameters_are_converted_and_checked_by_name(make, name, exc):
    with pytest.raises(exc, match=name):
        make()


def test_scalar_defaults_keep_a_float32_distribution_float32():
    assert D.Gamma(np.float32(2.0)).rate.dtype == np.float32
    t = D.StudentT(np.float32(2.0), 1.0, 2.0)
    assert t.loc.dtype == t.scale.dtype == np.float32
    assert D.Gamma(2.0, np.float32(3.0)).dtype == np.float64


# ------------------------------------------- cancellation at large shape parameters (findings 4-6)
def _mp_lbeta(a, b):
    return mp.loggamma(a) + mp.loggamma(b) - mp.loggamma(a + b)


def _mp_beta_log_prob(a, b, x):
    a, b, x = mp.mpf(a), mp.mpf(b), mp.mpf(x)
    return float((a - 1) * mp.log(x) + (b - 1) * mp.log1p(-x) - _mp_lbeta(a, b))


def _dps(*vals):
    """mpmath digits enough for the cancellation of terms ~v ln v (v up to 1e300)."""
    return 40 + int(max(math.log10(max(v, 1.0)) for v in vals))


def _mp_beta_entropy(a, b):
    a, b = mp.mpf(a), mp.mpf(b)
    with mp.workdps(_dps(a, b)):
            return float(_mp_lbeta(a, b) - (a - 1) * mp.digamma(a) - (b - 1) * mp.digamma(b)
                     + (a + b - 2) * mp.digamma(a + b))


@pytest.mark.parametrize("a, b, x", [(1.0, 1e8, 1e-8), (2.0, 1e17, 1e-17), (30.0, 1e12, 3e-11),
                                     (1e9, 2e9, 0.33), (0.5, 0.3, 0.2), (3e5, 7.0, 0.99998)])
def test_beta_log_prob_with_large_concentrations(a, b, x):
    _close(D.Beta(a, b).log_prob(x), _mp_beta_log_prob(a, b, x), 1e-11)


@pytest.mark.parametrize("a, b", [(2.0, 1e17), (1.0, 1e8), (1e6, 3e6), (12.0, 9.0), (0.5, 0.3), (2.0, 5.0)])
def test_beta_entropy_with_large_concentrations(a, b):
    # the floor: relative changes of 2^-53 in a and b move the entropy by ~(a + b) 2^-53 nats
    want = _mp_beta_entropy(a, b)
    np.testing.assert_allclose(D.Beta(a, b).entropy(), want, rtol=1e-12, atol=1e-13 + 3e-16 * (a + b))


def test_beta_kl_with_large_concentrations():
    a1, b1, a2, b2 = 2.0, 1e15, 3.0, 2e15
    m = [mp.mpf(v) for v in (a1, b1, a2, b2)]
    want = (_mp_lbeta(m[2], m[3]) - _mp_lbeta(m[0], m[1]) + (m[0] - m[2]) * mp.digamma(m[0])
            + (m[1] - m[3]) * mp.digamma(m[1]) + (m[2] - m[0] + m[3] - m[1]) * mp.digamma(m[0] + m[1]))
    _close(D.kl_divergence(D.Beta(a1, b1), D.Beta(a2, b2)), float(want), 1e-9)


def _mp_t_log_prob(df, x):
    with mp.workdps(_dps(df)):
        df, x = mp.mpf(df), mp.mpf(x)
        return float(mp.loggamma((df + 1) / 2) - mp.loggamma(df / 2) - mp.log(df * mp.pi) / 2
                     - (df + 1) / 2 * mp.log1p(x * x / df))


def _mp_t_entropy(df):
    with mp.workdps(_dps(df)):
        df = mp.mpf(df)
        return float((df + 1) / 2 * (mp.digamma((df + 1) / 2) - mp.digamma(df / 2)) + mp.log(df) / 2
                     + _mp_lbeta(df / 2, mp.mpf(0.5)))


@pytest.mark.parametrize("df", [0.3, 3.0, 40.0, 1e6, 1e12, 1e17, 1e300])
def test_studentt_log_prob_and_entropy_for_large_df(df):
    x = np.array([0.0, 1.0, -7.5, 1e3])
    want = [_mp_t_log_prob(df, v) for v in x]
    np.testing.assert_allclose(D.StudentT(df).log_prob(x), want, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(D.StudentT(df).entropy(), _mp_t_entropy(df), rtol=1e-13)


def test_studentt_log_prob_far_in_the_tail():
    # z * z overflows (float32 from |z| ~ 2e19, float64 from ~1e154) while log p is finite
    _close(D.StudentT(np.float32(0.5)).log_prob(np.float32(1e20)), _mp_t_log_prob(0.5, 1e20), 1e-6)
    _close(D.StudentT(3.0).log_prob(1e200), _mp_t_log_prob(3.0, 1e200), 1e-14)


def _mp_gamma_log_prob(a, r, x):
    with mp.workdps(_dps(a)):
        a, r, x = mp.mpf(a), mp.mpf(r), mp.mpf(x)
        return float(a * mp.log(r) + (a - 1) * mp.log(x) - r * x - mp.loggamma(a))


def _mp_gamma_entropy(a):
    with mp.workdps(_dps(a)):
        a = mp.mpf(a)
        return float(a + mp.loggamma(a) + (1 - a) * mp.digamma(a))


@pytest.mark.parametrize("a, r, x", [(1e12, 1e300, 1.0000007e-288), (1e12, 1.0, 1e12 + 3e6), (1e4, 2.0, 5.1e3),
                                     (1e16, 1e-100, 1e116), (2.5, 3.0, 0.7), (1e7, 1e300, 1e-320)])
def test_gamma_log_prob_with_large_concentrations(a, r, x):
    # the kernels' Stirling form; the floor: r x / a rounds, ~a |r x / a - 1| 2^-53 nats (3e-10 at most
    # here), where the direct form lost ~a ln(a) 2^-53 (0.09 nats at a = 1e12, r = 1e300)
    np.testing.assert_allclose(D.Gamma(a, r).log_prob(x), _mp_gamma_log_prob(a, r, x), rtol=1e-13, atol=1e-9)


@pytest.mark.parametrize("a", [0.3, 9.0, 10.0, 1e4, 1e10, 1e300])
def test_gamma_entropy_with_large_concentrations(a):
    np.testing.assert_allclose(D.Gamma(a, 3.0).entropy(), _mp_gamma_entropy(a) - math.log(3.0), rtol=1e-13)


def test_gumbel_kl_with_the_locations_far_apart_is_inf():
    assert D.kl_divergence(D.Gumbel(-1e300, 1e-10), D.Gumbel(0.0, 1e-10)) == np.inf
    assert D.kl_divergence(D.Gumbel(1e300, 1e-10), D.Gumbel(0.0, 1e-10)) == np.inf


def test_studentt_score_is_zero_at_infinity_and_finite_in_the_tails():
    d = D.StudentT(3.0, 0.5, 2.0)
    s = d.score(np.array([np.inf, -np.inf]))
    for k in ("df", "loc", "scale"):
        np.testing.assert_array_equal(s[k], 0.0)
    s = d.score(1e200)
    z = (1e200 - 0.5) / 2.0
    _close(s["loc"], 4.0 / (2.0 * z), 1e-14)  # (df + 1) z / (scale (df + z^2))
    _close(s["scale"], 3.0 / 2.0, 1e-14)  # ((df + 1) z^2 / (df + z^2) - 1) / scale
    assert np.isfinite(s["df"])


@pytest.mark.single_backend
def test_gamma_log_prob_kernels_agree_around_the_large_shape_switch():
    if len(BACKENDS) < 2:
        pytest.skip("only one backend available")
    a = np.array([9999.0, 1e4, 3e6, 1e12, 1e12, 1e7, 1e5])
    r = np.array([1.0, 2.0, 1e-3, 1e300, 1.0, 1e300, 1e-200])
    x = np.array([1e4, 5e3, 1e9, 1e-288, 3e12, 1e-320, 1e205])
    res = []
    for be in ("cpu", "numpy"):
        with bg.use_backend(be):
            d = D.Gamma(a, r)
            res.append((d.log_prob(x), d.score(x)))
    np.testing.assert_allclose(res[0][0], res[1][0], rtol=1e-13)
    for k in res[0][1]:
        np.testing.assert_allclose(res[0][1][k], res[1][1][k], rtol=1e-12)


# --------------------------------------------------------------- variances (finding 7)
def test_variances_finite_where_their_closed_forms_are():
    with mp.workdps(50):
        want = float(mp.expm1(900) * mp.exp(-2000 + 900))
    _close(D.LogNormal(-1000.0, 30.0).variance, want, 1e-12)
    d = D.LogNormal(np.array([0.2, 300.0]), np.array([0.5, 1e-200]))
    _close(d.variance, [math.expm1(0.25) * math.exp(0.4 + 0.25), float(mp.mpf("1e-400") * mp.exp(600))], 1e-13)
    _close(D.Beta(1e-200, 1e-200).variance, 0.25, 1e-15)
    _close(D.Beta(2.0, 3.0).variance, 6.0 / (25.0 * 6.0), 1e-15)
    _close(D.Dirichlet([1e-200, 1e-200]).variance, [0.25, 0.25], 1e-15)
    _close(D.Dirichlet([1.0, 3.0]).variance, [3.0 / 80.0, 3.0 / 80.0], 1e-15)
    _close(D.Gamma(1e-300, 1e-300).variance, 1e300, 1e-15)


# ----------------------------------------------------------- smaller formula bugs (finding 8)
def test_mvn_log_prob_is_minus_inf_where_the_distance_overflows():
    d = D.MultivariateNormal(loc=[1e300] * 5, scale_tril=1e-150 * np.eye(5))
    assert d.log_prob(np.zeros(5)) == -np.inf


def test_mvn_score_is_zero_at_infinity():
    d = D.MultivariateNormal([0.5, 0.0], [[1.0, 0.0], [0.3, 2.0]])
    s = d.score(np.array([[np.inf, 0.0], [1.0, -np.inf], [1.5, 0.3]]))
    np.testing.assert_array_equal(s["loc"][:2], 0.0)
    np.testing.assert_array_equal(s["scale_tril"][:2], 0.0)
    assert np.all(np.isfinite(s["loc"])) and np.all(np.isfinite(s["scale_tril"]))


@pytest.mark.parametrize("logit", [40.0, -40.0, 700.0, 0.3, -3.0])
def test_bernoulli_entropy_in_the_logit_tails(logit):
    with mp.workdps(400):
        p = 1 / (1 + mp.exp(-mp.mpf(logit)))
        want = float(-p * mp.log(p) - (1 - p) * mp.log(1 - p))
    _close(D.Bernoulli(logits=logit).entropy(), want, 1e-14)


def test_poisson_refuses_infinite_counts_by_name():
    with pytest.raises(ValueError, match="x must hold finite"):
        D.Poisson(2.0).log_prob(np.inf)
    with pytest.raises(ValueError, match="x must hold finite"):
        D.Poisson(2.0).score(np.array([1.0, np.inf]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bernoulli_log_prob_exact_at_both_ends_and_fractional_between(dtype):
    """log p at x = 1 and log(1 - p) at x = 0 to the last bits (mpmath), in the logit tails where
    log p + log(1 - p)-style cancellation would lose them; the relaxed form x log p + (1 - x) log(1 - p)
    between; p = 0 and 1 from probs (the ends chosen, not multiplied by -inf)."""
    logits = np.array([-800.0, -40.0, -3.0, 0.0, 0.3, 40.0, 700.0], dtype)
    with mp.workdps(400):
        lp1 = np.array([float(-mp.log1p(mp.exp(-mp.mpf(float(v))))) for v in logits])
        lp0 = np.array([float(-mp.log1p(mp.exp(mp.mpf(float(v))))) for v in logits])
    d = D.Bernoulli(logits=logits)
    x = np.array([[1.0] * 7, [0.0] * 7, [0.25] * 7], dtype)
    lp = d.log_prob(x)
    assert lp.dtype == dtype and lp.shape == x.shape
    rtol = 1e-6 if dtype == np.float32 else 1e-15
    want = np.stack([lp1, lp0, 0.25 * lp1 + 0.75 * lp0]).astype(dtype).astype(np.float64)
    finite = np.abs(want) > 1e-300
    np.testing.assert_allclose(lp[finite], want[finite], rtol=rtol, atol=0)
    np.testing.assert_allclose(lp[~finite], 0.0, atol=1e-300)
    b = D.Bernoulli(probs=np.array([0.0, 1.0, 0.5], dtype))
    np.testing.assert_array_equal(b.log_prob(np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]], dtype)),
                                  np.array([[0.0, 0.0, np.log(0.5)], [-np.inf, -np.inf, np.log(0.5)]], dtype))
    np.testing.assert_allclose(b.log_prob(np.array([0.5, 0.5, 0.5], dtype))[2], np.log(0.5), rtol=rtol)
    assert b.log_prob(np.array([0.5, 0.5, 0.5], dtype))[0] == -np.inf


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_poisson_log_prob_table_and_lgamma_agree(dtype):
    """Counts below the log-factorial table and beyond it (1023, 1024, 10^6) against mpmath, and
    the table's values bit for bit lgamma's; non-integer and negative counts refused by name."""
    from bayesgrad.distributions.discrete import _FACTORIAL_TABLE, _log_factorial
    from bayesgrad.distributions._base import lgamma

    k = np.array([0.0, 1.0, 2.0, 17.0, 170.0, _FACTORIAL_TABLE - 1.0])
    np.testing.assert_array_equal(_log_factorial(k), lgamma(k + 1.0))
    rate = np.array([0.5, 3.0, 1e3], dtype)
    d = D.Poisson(rate)
    for counts in ([0.0, 2.0, 1023.0], [1.0, 1024.0, 1e6 if dtype == np.float64 else 1e5]):
        x = np.array(counts, dtype)
        want = [float(c * mp.log(mp.mpf(float(r))) - mp.mpf(float(r)) - mp.loggamma(c + 1))
                for c, r in zip(counts, rate)]
        _close(d.log_prob(x), np.array(want, dtype), 1e-6 if dtype == np.float32 else 1e-13)
    for bad in ([0.5, 1.0, 2.0], [-1.0, 1.0, 2.0]):
        with pytest.raises(ValueError, match="x must hold finite"):
            d.log_prob(np.array(bad, dtype))


def test_exponential_score_zero_outside_the_support():
    d = D.Exponential(np.array([2.0, 1e-200, 1e200]))
    x = np.array([[0.5, 3.0, 0.0], [-1.0, -np.inf, np.inf], [np.inf, -0.0, 5e-324]])
    got = d.score(x)["rate"]
    with np.errstate(over="ignore"):
        want = np.where((x >= 0) & (x < np.inf), 1.0 / d.rate - x, 0.0)
    np.testing.assert_array_equal(got, want)
    assert got[0, 1] == 1e200 - 3.0 and got[1, 0] == 0.0


# ------------------------------------------------------- special-function edges (finding 9)
def _mp_gamma_dx_da(a, x):
    a, x = mp.mpf(a), mp.mpf(x)
    dp = mp.diff(lambda s: mp.gammainc(s, 0, x, regularized=True), a)
    return float(-dp / (x ** (a - 1) * mp.exp(-x) / mp.gamma(a)))


@pytest.mark.parametrize("a, x", [(1.5, 1e-100), (1.5, 1e-300), (0.01, 0.9), (1e-8, 0.3), (3.0, 0.99),
                                  (20.0, 0.5), (2.0, 2.0)])
def test_gamma_dx_da_at_small_x(a, x):
    _close(special_kernel("gamma_dx_da", a, x), _mp_gamma_dx_da(a, x), 1e-11)


@pytest.mark.parametrize("x", [1e-310, 5e-324, 1e-300, 1e-200, 0.5, 30.0])
def test_lgamma_at_subnormal_and_tiny_x(x):
    _close(special_kernel("lgamma", x), float(mp.loggamma(mp.mpf(x))), 4e-15)


# ------------------------------------------------------- draws at the support's edge (finding 10)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lognormal_draws_are_clamped_into_the_support(dtype):
    d = D.LogNormal(np.array(-800.0, dtype), np.array(1.0, dtype))
    x = d.sample(64, seed=3)
    assert np.all(x == np.finfo(dtype).tiny)
    assert np.all(np.isfinite(d.log_prob(x)))
    v = d.rsample_vjp(x, np.ones_like(x))
    assert all(np.all(np.isfinite(a)) for a in v.values())
    y = D.LogNormal(np.array(0.5, dtype), np.array(2.0, dtype)).sample(4096, seed=3)
    assert np.all(y > 0) and np.all(np.isfinite(y))


@pytest.mark.single_backend
def test_lognormal_clamp_agrees_across_backends():
    if len(BACKENDS) < 2:
        pytest.skip("only one backend available")
    for dt in (np.float32, np.float64):
        d = D.LogNormal(np.array([-800.0, -87.0, -700.0, 0.0], dt), np.array([1.0, 1.0, 8.0, 1.0], dt))
        res = []
        for be in ("cpu", "numpy"):
            with bg.use_backend(be):
                res.append(d.sample(300, seed=11, stream=2))
        np.testing.assert_allclose(res[0], res[1], rtol=2e-5 if dt == np.float32 else 1e-12)
        assert np.all(res[0] >= np.finfo(dt).tiny)


def test_uniform_with_a_width_beyond_the_float_range():
    d = D.Uniform(-1e308, 1e308)
    x = d.sample(2000, seed=5)
    assert np.all(np.isfinite(x)) and np.all((x >= -1e308) & (x <= 1e308))
    assert x.min() < -0.9e308 and x.max() > 0.9e308
    lw = math.log(2.0) + math.log(1e308)
    _close(d.log_prob(np.array([0.0, -1e308, 1e308])), [-lw] * 3, 1e-15)
    assert d.log_prob(1.7e308) == -np.inf
    _close(d.entropy(), lw, 1e-15)
    _close(d.mean, 0.0, 0)
    # the same uniforms as a narrow Uniform: u = (x - low) / (high - low)
    u = D.Uniform(0.0, 1.0).sample(2000, seed=5)
    np.testing.assert_allclose(x, -1e308 + 1e308 * u + 1e308 * u, rtol=1e-15)


# --------------------------------------------------- StudentT's implicit df gradient (finding 11)
def _mp_t_dt_ddf(df, t, dps=60):
    """-(dF/d df) / p at t by mpmath: F's lower tail through the incomplete beta, differentiated numerically."""
    with mp.workdps(dps):
        df, t = mp.mpf(df), mp.mpf(t)
        z = df / (df + t * t)
        dF = mp.diff(lambda nu: mp.betainc(nu / 2, mp.mpf(0.5), 0, nu / (nu + t * t), regularized=True) / 2,
                     df, h=df * mp.mpf(10) ** -(dps // 3))
        lp = (mp.loggamma((df + 1) / 2) - mp.loggamma(df / 2) - mp.log(df * mp.pi) / 2
              + (df + 1) / 2 * mp.log(z))
        return float(mp.sign(t) * dF / mp.exp(lp))


@pytest.mark.parametrize("df, t, rtol", [
    (1e-3, 1e100, 1e-14), (1e-3, -1e80, 1e-14), (3.0, 1e200, 1e-14), (3.0, 1e10, 1e-12),
    (0.5, 1e-160, 1e-13), (100.0, -1e-160, 1e-10), (1e-3, 2.0, 1e-9), (2.5, -3.0, 1e-9),
    (1e4, 1.0, 1e-13), (1e6, 1.0, 1e-13), (1e8, 1.0, 1e-13), (1e6, -3.0, 1e-13), (1e5, 2.0, 1e-13),
    (1e12, 50.0, 1e-13), (3e4, 0.1, 1e-13)])
def test_studentt_dt_ddf_in_the_far_tail_and_near_zero(df, t, rtol):
    dps = 400 if abs(t) < 1e-100 else (120 if df >= 1e4 else 60)
    _close(special_kernel("studentt_dt_ddf", df, t), _mp_t_dt_ddf(df, t, dps), rtol)


def test_studentt_dt_ddf_at_tiny_df():
    # mpmath at 400 digits (_mp_t_dt_ddf(1e-300, 1.0, 400), 12 s): -1/a - psi(a) cancelled from 4e300
    _close(special_kernel("studentt_dt_ddf", 1e-300, 1.0), -3.455809111296668e+302, 1e-12)


def test_studentt_df_gradients_finite_at_its_own_draws():
    d = D.StudentT(1e-3)
    x = d.sample(1000, seed=7)
    g = d.rsample_vjp(x, np.ones_like(x))["df"]
    assert np.all(np.isfinite(g[np.isfinite(x)]))


def test_dirichlet_normaliser_and_entropy_with_large_concentrations():
    # K = 2 is the Beta; K = 3 against mpmath
    np.testing.assert_allclose(D.Dirichlet([2.0, 1e17]).entropy(), _mp_beta_entropy(2.0, 1e17), rtol=1e-12)
    a = [1.5, 2.0, 3e8]
    x = np.array([1e-9, 2e-9, 1.0 - 3e-9])
    with mp.workdps(60):
        m = [mp.mpf(v) for v in a]
        lb = sum(mp.loggamma(v) for v in m) - mp.loggamma(sum(m))
        want = float(sum((v - 1) * mp.log(mp.mpf(xi)) for v, xi in zip(m, x)) - lb)
        a0 = sum(m)
        h = float(lb + (a0 - 3) * mp.digamma(a0) - sum((v - 1) * mp.digamma(v) for v in m))
    np.testing.assert_allclose(D.Dirichlet(a).log_prob(x), want, rtol=1e-9)
    np.testing.assert_allclose(D.Dirichlet(a).entropy(), h, rtol=1e-10)


@pytest.mark.parametrize("a1, r1, a2, r2", [(1e10, 1.0, 1e10, 1.00001), (1e10, 1.0, 1.0001e10, 1.0),
                                            (3e12, 2.0, 2.9e12, 2.1), (2.5, 1.0, 7.0, 0.3), (0.5, 1e-3, 20.0, 4.0),
                                            (50.0, 1e-300, 40.0, 1e300)])
def test_gamma_kl_with_large_concentrations(a1, r1, a2, r2):
    with mp.workdps(_dps(a1, a2) + 20):
        m1, s1, m2, s2 = (mp.mpf(v) for v in (a1, r1, a2, r2))
        want = float((m1 - m2) * mp.digamma(m1) - mp.loggamma(m1) + mp.loggamma(m2)
                     + m2 * (mp.log(s1) - mp.log(s2)) + m1 * (s2 - s1) / s1)
    _close(D.kl_divergence(D.Gamma(a1, r1), D.Gamma(a2, r2)), want, 1e-9)


@pytest.mark.parametrize("df", [0.7, 3.0, 30.0, 1e6, 1e12, 1e17])
def test_studentt_df_score_for_large_df(df):
    x = np.array([0.0, 1.0, -2.5, 40.0])
    with mp.workdps(_dps(df) + 40):
        want = [float(mp.diff(lambda nu: mp.loggamma((nu + 1) / 2) - mp.loggamma(nu / 2) - mp.log(nu * mp.pi) / 2
                                - (nu + 1) / 2 * mp.log1p(mp.mpf(v) ** 2 / nu), mp.mpf(df))) for v in x]
    np.testing.assert_allclose(D.StudentT(df).score(x)["df"], want, rtol=1e-9, atol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_multivariate_normal_draws_are_loc_plus_factor_times_the_streams_normals(dtype):
    """One factor (a single product) and a batch of factors broadcast against the samples: loc + L z with
    z the stream's normals, to rounding."""
    r = np.random.default_rng(0)
    for L, m in [(np.tril(r.standard_normal((3, 4, 4))) + 4 * np.eye(4), r.standard_normal((3, 4))),
                 (np.tril(r.standard_normal((4, 4))) + 4 * np.eye(4), r.standard_normal((2, 3, 4))),
                 (np.tril(r.standard_normal((5, 5))) + 4 * np.eye(5), np.zeros(5))]:
        d = D.MultivariateNormal(m.astype(dtype), scale_tril=L.astype(dtype))
        x = d.sample(7, seed=2, stream=5)
        z = np.empty(x.shape, dtype)
        _backend.kernels().random.fill_normal(z, 2, 5, 0)
        want = m + np.einsum("...ij,...j->...i", L, z.astype(np.float64))
        assert x.dtype == dtype and x.shape == (7,) + d.batch_shape + (L.shape[-1],)
        tol = 1e-5 if dtype == np.float32 else 1e-13
        np.testing.assert_allclose(x, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_beta_and_dirichlet_log_prob_fast_path_is_the_masked_one(dtype):
    # x inside the support (read from x's range) skips the masks: the same bits as the rows of an x that
    # takes the masked path (one point outside), unit concentrations (the 0 * log x terms) included
    r = np.random.default_rng(3)
    a, b = np.array([0.5, 1.0, 2.0, 7.5], dtype), np.array([1.0, 0.3, 3.0, 1e3], dtype)
    d = bg.distributions.Beta(a, b)
    x = r.beta(a.astype(float), b.astype(float), (200, 4)).astype(dtype)
    x[0, 1] = 0.0  # on the edge, still inside
    bad = np.concatenate([x, np.full((1, 4), 1.5, dtype)])
    fast, masked = d.log_prob(x), d.log_prob(bad)
    assert fast.dtype == dtype and np.all(masked[-1] == -np.inf)
    np.testing.assert_array_equal(fast, masked[:-1])
    dd = bg.distributions.Dirichlet(np.array([0.5, 1.0, 2.0, 3.0], dtype))
    xd = r.dirichlet(np.ones(4), 200).astype(dtype)
    bad = np.concatenate([xd, np.array([[0.5, 0.5, 0.0, 0.0]], dtype)])  # zeros: the boundary path
    np.testing.assert_array_equal(dd.log_prob(xd), dd.log_prob(bad)[:-1])


# ------------------------------------------------------------------ the shared sigmoid
@pytest.mark.parametrize("dtype, ulps", [(np.float64, 2.0), (np.float32, 2.5)])
def test_sigmoid_is_accurate_and_exact_in_both_tails(dtype, ulps):
    from bayesgrad._numerics import sigmoid

    tail = -745.0 if dtype == np.float64 else -103.0  # below: exp(x) rounds to 0 in the dtype
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.normal(0, 8, 2000), np.linspace(tail, 40, 2000), [0.0, -0.0]]).astype(dtype)
    got = sigmoid(x)
    assert got.dtype == dtype
    xl = x.astype(np.longdouble)  # 64-bit mantissa: the reference's own error is far below an ulp of dtype
    ref = np.where(xl >= 0, 1 / (1 + np.exp(-xl)), np.exp(xl) / (1 + np.exp(xl)))
    err = np.abs(got.astype(np.longdouble) - ref) / np.spacing(np.abs(got)).astype(np.longdouble)
    assert float(err.max()) <= ulps
    # where exp(-x) overflows (SciPy's expit gives 0 there) the value is exp(x), subnormal included
    deep = x < (-709.0 if dtype == np.float64 else -88.0)
    assert deep.sum() > 50 and np.all(got[deep] == np.exp(x[deep]))
    assert np.all(got[x > -700 if dtype == np.float64 else x > -85] > 0)
    np.testing.assert_array_equal(sigmoid(np.array([np.inf, -np.inf, np.nan], dtype)), [1.0, 0.0, np.nan])


def test_sigmoid_keeps_shapes_and_dtypes():
    from bayesgrad._numerics import sigmoid

    s = sigmoid(2.0)
    assert isinstance(s, np.ndarray) and s.shape == () and s.dtype == np.float64
    assert sigmoid(np.float32(1)).dtype == np.float32 and sigmoid(np.float16(1)).dtype == np.float16
    assert sigmoid(np.array([1, 2])).dtype == np.float64 and sigmoid(np.zeros((0, 3))).shape == (0, 3)
    np.testing.assert_allclose(sigmoid(np.float16([-3, 0, 3])), [0.0474, 0.5, 0.9526], rtol=1e-3)


def test_relaxed_bernoulli_score_at_the_support_edges():
    # at x = 0 / 1 d log p / d temperature is -inf (it goes as log x / log(1 - x)), the logits' score
    # -1 / +1; next to the edges both match central differences of log_prob
    t, lg = 0.7, 0.4
    d = D.RelaxedBernoulli(np.array([t]), logits=np.array([lg]))
    s = d.score(np.array([[0.0], [1.0]]))
    assert np.all(s["temperature"] == -np.inf)
    np.testing.assert_array_equal(s["logits"][:, 0], [-1.0, 1.0])
    x = np.array([[1e-300], [1e-12], [1 - 1e-12]])
    s, h = d.score(x), 1e-6
    for name, at in (("temperature", t), ("logits", lg)):
        kw = {"temperature": np.array([t]), "logits": np.array([lg])}
        kw[name] = np.array([at + h])
        up = D.RelaxedBernoulli(kw["temperature"], logits=kw["logits"]).log_prob(x)
        kw[name] = np.array([at - h])
        down = D.RelaxedBernoulli(kw["temperature"], logits=kw["logits"]).log_prob(x)
        np.testing.assert_allclose(s[name], (up - down) / (2 * h), rtol=1e-6, atol=1e-8, err_msg=name)
