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
