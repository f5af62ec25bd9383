"""Measure-valued gradients for Bernoulli, Poisson, Exponential and Gamma, the Poisson
distribution, and the delta-method control variate for every family with a
closed-form mean and variance (the vector families' in test_delta_vector_families.py).

Statistical checks use fixed seeds: |estimate - closed form| < 4.5 standard errors
(two-sided false alarm 6.8e-6 per coordinate for a Gaussian mean of >= 10^4 terms),
the standard error bounded so that a check cannot pass on a wide error bar;
frequencies by Pearson's chi-square at false-alarm probability 1e-4.
"""
import numpy as np
import pytest
from scipy import special, stats

import bayesgrad as bg
from bayesgrad.control_variates import moment_derivatives
from bayesgrad.distributions import (Bernoulli, Beta, Exponential, Gamma, Gumbel, Laplace, LogNormal, Normal,
                                     Poisson, StudentT, Uniform)
from bayesgrad.estimators.mvd import gamma_shape_constant

E = bg.estimators
Z = 4.5


def f_sq(x):
    """Sum of squares plus a cross term: E = sum (v + m^2) + m_0 m_1 under a mean-field q."""
    return (x ** 2).sum(-1) + x[:, 0] * x[:, 1]


def grad_sq(m, dm_d, dv_d, d):
    """d/dtheta_d E[f_sq] from the mean m (2,) and the derivatives of coordinate d's moments."""
    return dv_d + 2 * m[d] * dm_d + m[1 - d] * dm_d


MV_CASES = {
    "poisson": (lambda: Poisson(np.array([0.7, 3.0])), {"rate": lambda l: (np.ones(2), np.ones(2))}),
    "exponential": (lambda: Exponential(np.array([0.8, 2.0])),
                    {"rate": lambda l: (-1 / l ** 2, -2 / l ** 3)}),
}


@pytest.mark.parametrize("coupling", [True, False])
@pytest.mark.parametrize("case", ["poisson", "exponential", "gamma"])
def test_measure_valued_against_closed_forms(case, coupling):
    if case == "gamma":
        a, b = np.array([0.3, 2.5]), np.array([1.5, 0.7])
        d = Gamma(a, b)
        m = a / b
        truth = {"concentration": np.array([grad_sq(m, 1 / b[i], 1 / b[i] ** 2, i) for i in range(2)]),
                 "rate": np.array([grad_sq(m, -a[i] / b[i] ** 2, -2 * a[i] / b[i] ** 3, i) for i in range(2)])}
    else:
        mk, derivs = MV_CASES[case]
        d = mk()
        lam = d.rate.astype(np.float64)
        m = np.asarray(d.mean, dtype=np.float64)
        dm, dv = derivs["rate"](lam)
        truth = {"rate": np.array([grad_sq(m, dm[i], dv[i], i) for i in range(2)])}
    est = E.measure_valued(f_sq, d, 20_000, seed=1, coupling=coupling)
    for k, t in truth.items():
        g, se = est.grad[k], est.stderr[k]
        assert np.all(np.abs(g - t) <= Z * se), (k, g, t, se)
        assert np.all(se < 0.03 * np.abs(t) + 1e-3), (k, se, t)
    assert est.info["coupling"] is coupling


def test_measure_valued_gamma_shape_at_large_and_small_concentration():
    """The shape's weak-derivative parts drawn by rejection with eps = psi'(a)^{-1/2} accept 41-74% for
    every a (a fixed eps = 1/2 accepted 2% at a = 100 and gave up beyond a ~ 30; the clamped draws put
    every p- proposal on the wrong side below a ~ 1e-3). f = x: d E / da = 1; f = log x: psi'(a)."""
    d = Gamma(np.array([50.0, 1e3, 1e6]), np.ones(3))
    a = d.concentration
    est = E.measure_valued(lambda x: x.sum(-1), d, 4_000, seed=3)
    g, se = est.grad["concentration"], est.stderr["concentration"]
    assert np.all(np.abs(g - 1.0) <= Z * se) and np.all(se < 0.05), (g, se)
    est = E.measure_valued(lambda x: np.log(x).sum(-1), d, 4_000, seed=4)
    g, se = est.grad["concentration"], est.stderr["concentration"]
    want = special.polygamma(1, a)
    assert np.all(np.abs(g - want) <= Z * se) and np.all(se < 0.05 * want), (g, want, se)
    # below the sampler's underflow the parts still come (the draws clamped to the smallest normal)
    tiny = E.measure_valued(lambda x: x.sum(-1), Gamma(np.array([1e-4, 1e-3]), np.ones(2)), 500, seed=5)
    assert np.all(np.isfinite(tiny.grad["concentration"]))


def test_measure_valued_coupling_lowers_the_variance():
    for d in (Exponential(np.array([0.8, 2.0])), Gamma(np.array([2.0, 3.0]), np.array([1.0, 2.0])),
              Poisson(np.array([2.0, 5.0]))):
        p = "rate"
        v1 = E.measure_valued(f_sq, d, 20_000, seed=2, coupling=True).variance[p]
        v0 = E.measure_valued(f_sq, d, 20_000, seed=2, coupling=False).variance[p]
        assert np.all(v1 < 0.8 * v0), (type(d).__name__, v1, v0)


@pytest.mark.parametrize("param", ["logits", "probs"])
def test_measure_valued_bernoulli_against_enumeration(param):
    p = np.array([0.3, 0.8, 0.55])
    d = Bernoulli(probs=p) if param == "probs" else Bernoulli(logits=np.log(p / (1 - p)))
    f = lambda b: (b * np.array([1.0, -2.0, 0.5])).sum(-1) ** 2 + b[:, 0] * b[:, 2]  # noqa: E731
    est = E.measure_valued(f, d, 20_000, seed=3)
    # exact: sum over {0,1}^3 of q(b) f(b) score(b)
    bs = np.array([[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)], dtype=np.float64)
    q = np.prod(np.where(bs > 0, p, 1 - p), axis=1)
    sc = d.score(bs)[param]
    truth = (q * f(bs)) @ sc
    g, se = est.grad[param], est.stderr[param]
    assert np.all(np.abs(g - truth) <= Z * se), (g, truth, se)
    assert np.all(se < 0.02)
    assert est.n_evaluations == 20_000 * (1 + 2 * 3)


def test_gamma_shape_constant_and_parts():
    """c(a) = E[(log X - psi(a))^+] = E|log X - psi(a)| / 2 (a Monte Carlo check), and the
    rejection draws of p+ / p- have the right law (their mean of log X against quadrature)."""
    from scipy import integrate

    from bayesgrad.estimators.mvd import _gamma_shape_parts

    a = np.array([0.2, 1.0, 4.0])
    c = gamma_shape_constant(a)
    y = Gamma(np.broadcast_to(a, (3,)), np.ones(3)).sample(400_000, seed=5)
    s = np.log(y) - special.digamma(a)
    mc = 0.5 * np.abs(s)
    assert np.all(np.abs(mc.mean(0) - c) < Z * mc.std(0) / np.sqrt(mc.shape[0]))
    for sign in (1, -1):
        x = _gamma_shape_parts(a, 40_000, 7, 0, sign)
        lx = np.log(x)
        for j, aj in enumerate(a):
            psi = special.digamma(aj)
            dens = lambda t, aj=aj: np.exp(aj * t - np.exp(t) - special.gammaln(aj))  # noqa: E731
            wfun = lambda t, psi=psi: max(sign * (t - psi), 0.0)  # noqa: E731
            lo, hi = (psi, 50.0) if sign > 0 else (-200.0, psi)
            want = integrate.quad(lambda t: t * wfun(t) * dens(t), lo, hi, limit=200)[0] / c[j]
            got = lx[:, j]
            assert abs(got.mean() - want) < Z * got.std() / np.sqrt(got.size), (sign, aj, got.mean(), want)
            assert np.all(sign * (got - psi) > 0)


def test_poisson_distribution():
    d = Poisson(np.array([0.5, 4.0, 30.0]))
    x = d.sample(50_000, seed=1)
    assert x.shape == (50_000, 3) and np.all(x == np.round(x)) and np.all(x >= 0)
    for j, lam in enumerate(d.rate):
        top = int(stats.poisson.ppf(1 - 1e-3, lam))
        obs = np.bincount(x[:, j].astype(int), minlength=top + 2)
        exp_ = stats.poisson.pmf(np.arange(top + 1), lam) * x.shape[0]
        cells = exp_ >= 5
        o = np.append(obs[:top + 1][cells], obs[:top + 1][~cells].sum() + obs[top + 1:].sum())
        e = np.append(exp_[cells], x.shape[0] - exp_[cells].sum())
        chi2 = ((o - e) ** 2 / e).sum()
        assert chi2 < stats.chi2.ppf(1 - 1e-4, o.size - 1), (lam, chi2)
    k = np.array([[0.0, 3.0, 29.0]])
    np.testing.assert_allclose(d.log_prob(k), stats.poisson.logpmf(k, d.rate), rtol=1e-12)
    h = 1e-6
    fd = (Poisson(d.rate + h).log_prob(k) - Poisson(d.rate - h).log_prob(k)) / (2 * h)
    np.testing.assert_allclose(d.score(k)["rate"], fd, rtol=1e-6)
    np.testing.assert_allclose(d.mean, d.rate)
    np.testing.assert_allclose(d.variance, d.rate)
    with pytest.raises(ValueError, match="integer"):
        d.log_prob(np.array([[0.5, 1.0, 2.0]]))
    with pytest.raises(ValueError, match="rate"):
        Poisson(np.array([-1.0]))
    # the score-function estimator works on it (unbiased against the closed form 1 + 2 rate)
    est = E.score_function(lambda x: (x ** 2).sum(-1), Poisson(np.array([2.0])), 40_000, seed=2, baseline="loo")
    assert abs(est.grad["rate"][0] - 5.0) < Z * est.stderr["rate"][0]


FAMILIES = {
    "Normal": lambda: Normal(np.array([0.3, -1.0]), np.array([0.7, 1.3])),
    "LogNormal": lambda: LogNormal(np.array([0.1, -0.4]), np.array([0.3, 0.5])),
    "Exponential": lambda: Exponential(np.array([0.8, 2.0])),
    "Uniform": lambda: Uniform(np.array([-1.0, 0.5]), np.array([0.5, 2.0])),
    "Laplace": lambda: Laplace(np.array([0.3, -1.0]), np.array([0.7, 1.3])),
    "Gumbel": lambda: Gumbel(np.array([0.3, -1.0]), np.array([0.7, 1.3])),
    "StudentT": lambda: StudentT(np.array([5.0, 7.0]), np.array([0.3, -1.0]), np.array([0.7, 1.3])),
    "Gamma": lambda: Gamma(np.array([1.5, 3.0]), np.array([2.0, 0.7])),
    "Beta": lambda: Beta(np.array([2.0, 0.7]), np.array([1.5, 3.0])),
    "Poisson": lambda: Poisson(np.array([0.7, 3.0])),
    "Bernoulli": lambda: Bernoulli(logits=np.array([0.3, -1.0])),
    "BernoulliProbs": lambda: Bernoulli(probs=np.array([0.3, 0.6])),
}


def _rebuild(d, name, value):
    kw = {k: getattr(d, k) for k in d.params}
    kw[name] = value
    return type(d)(**kw)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_moment_derivatives_match_finite_differences(family):
    d = FAMILIES[family]()
    got = moment_derivatives(d)
    assert set(got) == set(d.params)
    for name in d.params:
        base = np.asarray(getattr(d, name), dtype=np.float64)
        for j in range(base.size):
            h = 1e-6 * max(1.0, abs(base.flat[j]))
            e = np.zeros_like(base)
            e.flat[j] = h
            hi, lo = _rebuild(d, name, base + e), _rebuild(d, name, base - e)
            dm = (np.asarray(hi.mean, np.float64) - np.asarray(lo.mean, np.float64)) / (2 * h)
            dv = (np.asarray(hi.variance, np.float64) - np.asarray(lo.variance, np.float64)) / (2 * h)
            np.testing.assert_allclose(got[name][0][j], dm[j], rtol=1e-6, atol=1e-8)
            np.testing.assert_allclose(got[name][1][j], dv[j], rtol=1e-6, atol=1e-8)


K = np.array([0.4, -0.2])


def f_quad(x):
    return ((x - K) ** 2).sum(-1)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_delta_control_variate_is_exact_for_a_separable_quadratic(family):
    """f = sum (x - K)^2 is its own second-order expansion: the coefficient is 1, the
    residual 0, and the estimate the closed form dv + 2 (m - K) dm for every family."""
    d = FAMILIES[family]()
    est = E.score_function(f_quad, d, 500, seed=1, control_variate="delta", grad_f=lambda x: 2 * (x - K),
                           hess_f=lambda x: np.full(x.shape, 2.0))
    m = np.asarray(d.mean, dtype=np.float64)
    for name, (dm, dv) in moment_derivatives(d).items():
        np.testing.assert_allclose(est.grad[name], dv + 2 * (m - K) * dm, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("family", ["Gamma", "Poisson", "Beta", "Bernoulli"])
def test_delta_control_variate_is_unbiased_and_helps(family):
    d = FAMILIES[family]()
    f = lambda x: np.cos(x).sum(-1) + 0.3 * x[:, 0] * x[:, 1]  # noqa: E731
    df = lambda x: -np.sin(x) + 0.3 * x[:, ::-1]  # noqa: E731
    hf = lambda x: -np.cos(x)  # noqa: E731
    n = 20_000
    cv = E.score_function(f, d, n, seed=2, control_variate="delta", grad_f=df, hess_f=hf)
    ref = E.score_function(f, d, 150_000, seed=3, baseline="loo")  # an independent, precise reference
    for name in d.params:
        se = np.sqrt(cv.stderr[name] ** 2 + ref.stderr[name] ** 2)
        assert np.all(np.abs(cv.grad[name] - ref.grad[name]) <= Z * se), (name, cv.grad[name], ref.grad[name], se)
        plain = E.score_function(f, d, n, seed=2).variance[name]
        assert np.all(cv.variance[name] < plain), (name, cv.variance[name], plain)


def test_measure_valued_and_delta_errors():
    from bayesgrad.distributions import Categorical, MultivariateNormal, RelaxedCategorical

    with pytest.raises(TypeError, match="Poisson"):
        E.measure_valued(lambda x: x.sum(-1), Beta(np.ones(2), np.ones(2)), 10)
    with pytest.raises(TypeError, match="closed-form mean.*class labels"):
        E.score_function(lambda x: x.sum(-1), Categorical(logits=np.zeros(3)), 10, control_variate="delta",
                         grad_f=lambda x: np.ones_like(x), hess_f=lambda x: np.zeros_like(x))
    with pytest.raises(TypeError, match="closed-form mean"):
        E.score_function(lambda x: x.sum(-1), RelaxedCategorical(0.5, logits=np.zeros(3)), 10,
                         control_variate="delta", grad_f=lambda x: np.ones_like(x), hess_f=lambda x: np.zeros_like(x))
    with pytest.raises(ValueError, match="hess_f must return shape"):  # neither diagonal, blocks nor full
        E.score_function(lambda x: x.sum(-1), MultivariateNormal(np.zeros(2), np.eye(2)), 10, control_variate="delta",
                         grad_f=lambda x: np.ones_like(x), hess_f=lambda x: np.zeros((1, 3)))
    with pytest.raises(ValueError, match="df > 2"):
        E.score_function(lambda x: x.sum(-1), StudentT(np.array([1.5]), np.zeros(1), np.ones(1)), 10,
                         control_variate="delta", grad_f=lambda x: np.ones_like(x), hess_f=lambda x: np.zeros_like(x))


def test_delta_control_variate_on_top_of_the_loo_baseline_lowers_its_variance():
    """The coefficient is fitted to what the baseline leaves (f and h centred), so adding the control
    variate to a leave-one-out baseline helps rather than fighting it."""
    f = lambda x: (np.cos(x) + 0.1 * x * x).sum(-1)  # noqa: E731
    kw = dict(grad_f=lambda x: -np.sin(x) + 0.2 * x, hess_f=lambda x: -np.cos(x) + 0.2)
    for d in (Exponential(np.linspace(0.5, 3, 4)), Poisson(np.linspace(0.5, 3, 4))):
        loo = E.score_function(f, d, 20_000, seed=6, baseline="loo").variance["rate"].sum()
        both = E.score_function(f, d, 20_000, seed=6, baseline="loo", control_variate="delta", **kw)
        assert both.variance["rate"].sum() < 0.7 * loo, (type(d).__name__, both.variance["rate"].sum(), loo)
