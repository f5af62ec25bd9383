"""Tests of bayesgrad.distributions and the special-function kernels.

Statistical tests use fixed seeds; each states its false-alarm probability
(the probability that it fails for a correct implementation at a random
seed): KS and chi-square tests reject at p < 1e-4; mean-zero and MC checks at
|z| > 5 (about 6e-7 per component). With the few hundred such checks here the
whole suite's false-alarm probability is below 1%.
"""
import math

import numpy as np
import pytest

from bayesgrad._codes import LocScaleFamily
from scipy import special as sp
from scipy import stats

import bayesgrad as bg
from bayesgrad import _backend
from bayesgrad import _numpy as twin
from bayesgrad._numpy import random as twin_random

from helpers import BACKENDS

D = bg.distributions
P_REJECT = 1e-4  # KS / chi-square threshold
Z_REJECT = 5.0  # mean-zero / MC threshold in standard errors


# ------------------------------------------------------------------ the families
# name -> (factory(dtype), scipy frozen distribution or None)
def _cases():
    return {
        "normal": (lambda dt: D.Normal(np.array([0.5, -1.0], dt), np.array([2.0, 0.3], dt)),
                   [stats.norm(0.5, 2.0), stats.norm(-1.0, 0.3)]),
        "lognormal": (lambda dt: D.LogNormal(np.array([0.2, -1.0], dt), np.array([0.5, 1.5], dt)),
                      [stats.lognorm(0.5, scale=math.exp(0.2)), stats.lognorm(1.5, scale=math.exp(-1.0))]),
        "exponential": (lambda dt: D.Exponential(np.array([0.5, 3.0], dt)),
                        [stats.expon(scale=2.0), stats.expon(scale=1 / 3.0)]),
        "uniform": (lambda dt: D.Uniform(np.array([-1.0, 2.0], dt), np.array([3.0, 2.5], dt)),
                    [stats.uniform(-1.0, 4.0), stats.uniform(2.0, 0.5)]),
        "laplace": (lambda dt: D.Laplace(np.array([1.0, -2.0], dt), np.array([0.5, 2.0], dt)),
                    [stats.laplace(1.0, 0.5), stats.laplace(-2.0, 2.0)]),
        "gumbel": (lambda dt: D.Gumbel(np.array([1.0, -2.0], dt), np.array([0.5, 2.0], dt)),
                   [stats.gumbel_r(1.0, 0.5), stats.gumbel_r(-2.0, 2.0)]),
        "studentt": (lambda dt: D.StudentT(np.array([1.5, 7.0], dt), np.array([0.5, -1.0], dt),
                                           np.array([2.0, 0.5], dt)),
                     [stats.t(1.5, 0.5, 2.0), stats.t(7.0, -1.0, 0.5)]),
        "gamma": (lambda dt: D.Gamma(np.array([0.05, 0.7, 1.0, 4.5, 300.0], dt),
                                     np.array([1.0, 2.0, 1.0, 0.5, 3.0], dt)),
                  [stats.gamma(0.05), stats.gamma(0.7, scale=0.5), stats.gamma(1.0),
                   stats.gamma(4.5, scale=2.0), stats.gamma(300.0, scale=1 / 3.0)]),
        "beta": (lambda dt: D.Beta(np.array([0.05, 0.5, 2.0, 30.0], dt), np.array([0.08, 3.0, 2.0, 0.7], dt)),
                 [stats.beta(0.05, 0.08), stats.beta(0.5, 3.0), stats.beta(2.0, 2.0), stats.beta(30.0, 0.7)]),
    }


CASES = _cases()
DTYPES = [np.float32, np.float64]


def _ks_each(x, dists):
    """KS test of each batch column of x (n, B) against its scipy distribution."""
    for j, ref in enumerate(dists):
        col = x[:, j].astype(np.float64)
        p = stats.kstest(col, ref.cdf).pvalue
        assert p > P_REJECT, f"column {j}: KS p = {p:.2e}"


# ---------------------------------------------------------------- goodness of fit
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(CASES))
def test_sampler_goodness_of_fit(name, dtype):
    make, refs = CASES[name]
    d = make(dtype)
    x = d.sample(3000, seed=11, stream=2)
    assert x.shape == (3000,) + d.batch_shape and x.dtype == dtype
    if name == "beta" and dtype == np.float32:
        # Beta(0.05, 0.08) puts ~25% of its mass within 6e-8 of 1, which float32
        # rounds to exactly 1: its law is tested in float64 only.
        x, refs = x[:, 1:], refs[1:]
    _ks_each(x, refs)


def test_beta_small_concentrations_are_stable():
    d = D.Beta(np.array([1e-3, 0.02]), np.array([2e-3, 0.01]))
    x = d.sample(4000, seed=5)
    assert np.all((x >= 0) & (x <= 1)) and not np.any(np.isnan(x))
    # The mass at each end follows the Beta law: P(x < 1/2) = I_{1/2}(a, b)
    for j, (a, b) in enumerate([(1e-3, 2e-3), (0.02, 0.01)]):
        p = sp.betainc(a, b, 0.5)
        k = np.sum(x[:, j] < 0.5)
        assert stats.binomtest(k, 4000, p).pvalue > P_REJECT


@pytest.mark.parametrize("dtype", DTYPES)
def test_dirichlet_goodness_of_fit(dtype):
    alpha = np.array([[0.3, 1.0, 4.0], [2.0, 2.0, 0.05]], dtype)
    x = D.Dirichlet(alpha).sample(3000, seed=3)
    assert x.shape == (3000, 2, 3)
    np.testing.assert_allclose(x.sum(-1), 1.0, rtol=1e-5 if dtype == np.float32 else 1e-12)
    a = alpha.astype(np.float64)
    for b in range(2):
        # each marginal is Beta(a_j, a0 - a_j); x_0 / (x_0 + x_1) is Beta(a_0, a_1)
        _ks_each(x[:, b, :], [stats.beta(a[b, j], a[b].sum() - a[b, j]) for j in range(3)])
        r = x[:, b, 0] / (x[:, b, 0] + x[:, b, 1])
        assert stats.kstest(r.astype(np.float64), stats.beta(a[b, 0], a[b, 1]).cdf).pvalue > P_REJECT


def _chisq(counts, probs):
    counts = np.asarray(counts, np.float64)
    p = stats.chisquare(counts, counts.sum() * np.asarray(probs)).pvalue
    assert p > P_REJECT, f"chi-square p = {p:.2e}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("how", ["logits", "probs"])
def test_bernoulli_and_categorical_goodness_of_fit(how, dtype):
    pb = np.array([0.1, 0.5, 0.97])
    arg = {"logits": (np.log(pb) - np.log1p(-pb)).astype(dtype)} if how == "logits" else {"probs": pb.astype(dtype)}
    x = D.Bernoulli(**arg).sample(4000, seed=2)
    assert x.dtype == dtype and set(np.unique(x)) <= {0.0, 1.0}
    for j in range(3):
        k = int(x[:, j].sum())
        _chisq([k, 4000 - k], [pb[j], 1 - pb[j]])
    pc = np.array([[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]])
    arg = {"logits": np.log(pc).astype(dtype)} if how == "logits" else {"probs": pc.astype(dtype)}
    c = D.Categorical(**arg).sample(4000, seed=4)
    assert c.shape == (4000, 2) and c.dtype == np.int64
    for b in range(2):
        _chisq(np.bincount(c[:, b], minlength=4), pc[b])


@pytest.mark.parametrize("dtype", DTYPES)
def test_relaxed_goodness_of_fit(dtype):
    logits, tau = np.array([0.5, -1.0], dtype), np.array([0.7, 2.0], dtype)
    x = D.RelaxedBernoulli(tau, logits=logits).sample(3000, seed=8).astype(np.float64)
    for j in range(2):
        # P(X <= x) = sigmoid(tau logit(x) - logits)
        cdf = lambda v, j=j: sp.expit(float(tau[j]) * sp.logit(v) - float(logits[j]))  # noqa: E731
        assert stats.kstest(x[:, j], cdf).pvalue > P_REJECT
    lg = np.log(np.array([0.2, 0.3, 0.5]))
    y = D.RelaxedCategorical(np.array(0.4, dtype), logits=lg.astype(dtype)).sample(4000, seed=9)
    assert y.shape == (4000, 3)
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-5)
    # Gumbel-max: the argmax of a Concrete draw is Categorical(logits) at any temperature
    _chisq(np.bincount(np.argmax(y, -1), minlength=3), np.exp(lg))


@pytest.mark.parametrize("dtype", DTYPES)
def test_mvn_goodness_of_fit(dtype):
    L = np.array([[1.0, 0, 0], [0.5, 2.0, 0], [-1.0, 0.3, 0.7]])
    mu = np.array([1.0, -2.0, 0.5])
    d = D.MultivariateNormal(mu.astype(dtype), L.astype(dtype))
    x = d.sample(3000, seed=6).astype(np.float64)
    cov = L @ L.T
    for a in (np.array([1.0, 0, 0]), np.array([0.3, -1.0, 2.0])):
        ref = stats.norm(a @ mu, math.sqrt(a @ cov @ a))
        assert stats.kstest(x @ a, ref.cdf).pvalue > P_REJECT
    w = np.linalg.solve(L, (x - mu).T)
    assert stats.kstest((w * w).sum(0), stats.chi2(3).cdf).pvalue > P_REJECT


# ------------------------------------------------------------ log_prob vs scipy
@pytest.mark.parametrize("name", sorted(CASES))
def test_log_prob_and_moments_match_scipy(name):
    make, refs = CASES[name]
    d = make(np.float64)
    x = np.stack([r.ppf(np.linspace(0.01, 0.99, 7)) for r in refs], axis=1)
    lp = d.log_prob(x)
    want = np.stack([r.logpdf(x[:, j]) for j, r in enumerate(refs)], axis=1)
    np.testing.assert_allclose(lp, want, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(d.entropy(), [r.entropy() for r in refs], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(d.mean, [r.mean() for r in refs], rtol=1e-10)
    np.testing.assert_allclose(d.variance, [r.var() for r in refs], rtol=1e-10)


def test_log_prob_multivariate_and_discrete_match_scipy():
    L = np.array([[1.0, 0], [0.5, 2.0]])
    mu = np.array([1.0, -2.0])
    d = D.MultivariateNormal(mu, L)
    x = np.array([[0.0, 0.0], [1.0, 3.0], [-2.0, 1.0]])
    ref = stats.multivariate_normal(mu, L @ L.T)
    np.testing.assert_allclose(d.log_prob(x), ref.logpdf(x), rtol=1e-12)
    np.testing.assert_allclose(d.entropy(), ref.entropy(), rtol=1e-12)
    np.testing.assert_allclose(d.covariance_matrix, L @ L.T)
    alpha = np.array([0.5, 2.0, 3.0])
    y = np.array([[0.2, 0.3, 0.5], [0.01, 0.9, 0.09]])
    dd = D.Dirichlet(alpha)
    np.testing.assert_allclose(dd.log_prob(y), [stats.dirichlet(alpha).logpdf(v) for v in y], rtol=1e-12)
    np.testing.assert_allclose(dd.entropy(), stats.dirichlet(alpha).entropy(), rtol=1e-12)
    p = np.array([0.2, 0.7])
    b = D.Bernoulli(probs=p)
    np.testing.assert_allclose(b.log_prob(np.array([[1.0, 0.0]])), [[np.log(0.2), np.log(0.3)]], rtol=1e-12)
    np.testing.assert_allclose(D.Bernoulli(logits=sp.logit(p)).entropy(), stats.bernoulli(p).entropy(), rtol=1e-12)
    pc = np.array([0.1, 0.2, 0.7])
    c = D.Categorical(logits=np.log(pc) + 3.0)
    np.testing.assert_allclose(c.log_prob(np.array([0, 2])), np.log(pc[[0, 2]]), rtol=1e-12)
    np.testing.assert_allclose(c.entropy(), stats.entropy(pc), rtol=1e-12)


def test_relaxed_log_prob_is_a_density():
    # the binary Concrete density integrates to one; the Concrete on the 2-simplex too
    d = D.RelaxedBernoulli(np.array(0.6), logits=np.array(0.4))
    u = np.linspace(1e-6, 1 - 1e-6, 200001)
    assert abs(np.trapezoid(np.exp(d.log_prob(u)), u) - 1.0) < 2e-3
    c = D.RelaxedCategorical(np.array(1.3), logits=np.array([0.4, -0.2]))
    v = np.stack([u, 1 - u], -1)
    # on the 1-simplex parameterised by x_0 the density is w.r.t. dx_0
    assert abs(np.trapezoid(np.exp(c.log_prob(v)), u) - 1.0) < 2e-3


# --------------------------------------------------------------- score tests
def _all_families(dt=np.float64):
    fams = {k: v[0](dt) for k, v in CASES.items()}
    fams.update({
        "dirichlet": D.Dirichlet(np.array([[0.5, 2.0, 3.0], [4.0, 1.0, 1.5]], dt)),
        "mvn": D.MultivariateNormal(np.array([1.0, -1.0], dt), np.array([[1.5, 0.0], [0.4, 0.8]], dt)),
        "bernoulli": D.Bernoulli(logits=np.array([0.3, -2.0], dt)),
        "bernoulli_p": D.Bernoulli(probs=np.array([0.3, 0.8], dt)),
        "categorical": D.Categorical(logits=np.array([[0.1, 1.0, -1.0], [2.0, 0.0, 0.5]], dt)),
        "categorical_p": D.Categorical(probs=np.array([0.2, 0.5, 0.3], dt)),
        "relaxed_bernoulli": D.RelaxedBernoulli(np.array([0.8, 1.5], dt), logits=np.array([0.3, -1.0], dt)),
        "relaxed_categorical": D.RelaxedCategorical(np.array([0.9, 1.6], dt),
                                                    logits=np.array([[0.1, 1.0, -1.0], [0.0, 0.0, 0.5]], dt)),
    })
    return fams


def _rebuild(d, name, value):
    kw = {k: getattr(d, k) for k in d.params}
    kw[name] = value
    if isinstance(d, (D.Bernoulli, D.Categorical)):
        return type(d)(**{d.prob_param: kw[d.prob_param]})
    if isinstance(d, (D.RelaxedBernoulli, D.RelaxedCategorical)):
        return type(d)(kw["temperature"], **{d.prob_param: kw[d.prob_param]})
    return type(d)(**kw)


FAMILY_NAMES = sorted(_all_families())


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_score_matches_finite_differences(name):
    d = _all_families()[name]
    x = d.sample(5, seed=21)
    if name == "beta":  # Beta(0.05, 0.08) draws can round to exactly 0 or 1, where log p is infinite
        x = np.clip(x, 1e-12, 1 - 1e-12)
    sc = d.score(x)
    assert set(sc) == set(d.params)
    for p in d.params:
        theta = getattr(d, p)
        assert sc[p].shape == (5,) + theta.shape
        fd = np.zeros_like(sc[p])
        for idx in np.ndindex(theta.shape):
            if isinstance(d, D.MultivariateNormal) and p == "scale_tril" and idx[-1] > idx[-2]:
                continue
            # probs stay within the sum-to-one tolerance (1e-6 K in float64)
            h = (1e-7 if p == "probs" else 1e-6) * max(1.0, abs(theta[idx]))
            tp, tm = theta.copy(), theta.copy()
            tp[idx] += h
            tm[idx] -= h
            lp, lm = _rebuild(d, p, tp).log_prob(x), _rebuild(d, p, tm).log_prob(x)
            diff = (lp - lm) / (2 * h)
            fd[(slice(None),) + idx] = diff.reshape(5, -1).sum(-1)
        np.testing.assert_allclose(sc[p], fd, rtol=2e-5, atol=2e-6, err_msg=p)


@pytest.mark.parametrize("name", [n for n in FAMILY_NAMES if n != "uniform"])
def test_score_has_mean_zero(name):
    # Uniform is excluded: its support depends on the parameters, so E[score] != 0.
    d = _all_families()[name]
    if name == "beta":
        # Beta(0.05, 0.08) puts ~2.5% of its mass within one float64 ulp (1.1e-16)
        # of 1: those draws are exactly 1.0 (correctly rounded), where the
        # concentration0 score ln(1 - x) - psi(b) + psi(a + b) is -inf, so its
        # sample mean does not exist in floating point. Beta(0.05, 0.6) keeps the
        # tiny-a regime (mass piled near 0, which floats resolve) with < 1e-9 of
        # its mass within an ulp of 1.
        d = D.Beta(np.array([0.05, 0.5, 2.0, 30.0]), np.array([0.6, 3.0, 2.0, 0.7]))
    x = d.sample(4000, seed=33)
    for p, s in d.score(x).items():
        s = s.reshape(4000, -1)
        assert np.all(np.isfinite(s)), p  # a non-finite score would silently drop out of the check below
        se = s.std(0) / math.sqrt(4000)
        live = se > 0
        assert np.all(np.abs(s.mean(0)[live]) < Z_REJECT * se[live]), p


# ---------------------------------------------------------- reparameterisation
PATHWISE = ["normal", "lognormal", "exponential", "uniform", "laplace", "gumbel", "mvn",
            "relaxed_bernoulli", "relaxed_categorical"]


@pytest.mark.parametrize("name", PATHWISE)
def test_rsample_vjp_matches_sampler_finite_differences(name):
    d = _all_families()[name]
    x = d.sample(6, seed=5, stream=1)
    g = np.random.default_rng(0).normal(size=x.shape)
    vjp = d.rsample_vjp(x, g)
    for p in d.params:
        theta = getattr(d, p)
        assert vjp[p].shape == (6,) + theta.shape
        for idx in np.ndindex(theta.shape):
            if isinstance(d, D.MultivariateNormal) and p == "scale_tril" and idx[-1] > idx[-2]:
                assert np.all(vjp[p][(slice(None),) + idx] == 0)
                continue
            h = 1e-6 * max(1.0, abs(theta[idx]))
            tp, tm = theta.copy(), theta.copy()
            tp[idx] += h
            tm[idx] -= h
            xp = _rebuild(d, p, tp).sample(6, seed=5, stream=1)
            xm = _rebuild(d, p, tm).sample(6, seed=5, stream=1)
            fd = ((xp - xm) / (2 * h) * g).reshape(6, -1).sum(-1)
            np.testing.assert_allclose(vjp[p][(slice(None),) + idx], fd, rtol=1e-6, atol=1e-7, err_msg=p)


def _richardson(f, p):
    h = min(1e-3 * p, 2e-3 * math.sqrt(p))
    return (4 * (f(p + h / 2) - f(p - h / 2)) / h - (f(p + h) - f(p - h)) / (2 * h)) / 3


def _implicit_ref(cdf_of_param, pdf, p):
    """-(dF/dp)/pdf by Richardson differences of the (lower or upper) CDF from SciPy."""
    return -_richardson(cdf_of_param, p) / pdf


def test_gamma_rsample_vjp_implicit():
    a = np.array([1e-3, 0.05, 0.7, 1.0, 4.5, 60.0, 1e3])
    rate = np.array([1.0, 2.0, 0.5, 1.0, 3.0, 1.0, 0.1])
    d = D.Gamma(a, rate)
    x = d.sample(5, seed=2)
    x = np.maximum(x, 1e-300)  # tiny concentrations underflow to 0 in float64 occasionally
    g = np.ones_like(x)
    vjp = d.rsample_vjp(x, g)
    for j in range(a.size):
        X = x[:, j] * rate[j]
        small = sp.gammainc(a[j], X) < 0.5
        lo = -_richardson(lambda s: sp.gammainc(s, X), a[j])
        up = _richardson(lambda s: sp.gammaincc(s, X), a[j])
        dX = np.where(small, lo, up) / stats.gamma(a[j]).pdf(X)
        np.testing.assert_allclose(vjp["concentration"][:, j], dX / rate[j], rtol=1e-6, atol=1e-300)
        np.testing.assert_allclose(vjp["rate"][:, j], -x[:, j] / rate[j], rtol=1e-12)
    # rate is pathwise: finite differences of the sampler at a fixed seed
    xp = D.Gamma(a, rate * (1 + 1e-7)).sample(5, seed=2)
    xm = D.Gamma(a, rate * (1 - 1e-7)).sample(5, seed=2)
    ok = x > 1e-250
    np.testing.assert_allclose(((xp - xm) / (2e-7 * rate))[ok], vjp["rate"][ok], rtol=1e-6)


def test_beta_and_studentt_rsample_vjp_implicit():
    a = np.array([0.05, 0.5, 2.0, 30.0, 500.0])
    b = np.array([0.3, 3.0, 2.0, 0.7, 800.0])
    d = D.Beta(a, b)
    x = d.sample(4, seed=7)
    x = np.clip(x, 1e-12, 1 - 1e-12)
    vjp = d.rsample_vjp(x, np.ones_like(x))
    for j in range(a.size):
        pdf = stats.beta(a[j], b[j]).pdf(x[:, j])
        small = sp.betainc(a[j], b[j], x[:, j]) < 0.5
        for key, f_lo, f_up, p in (
                ("concentration1", lambda s: sp.betainc(s, b[j], x[:, j]), lambda s: sp.betaincc(s, b[j], x[:, j]), a[j]),
                ("concentration0", lambda s: sp.betainc(a[j], s, x[:, j]), lambda s: sp.betaincc(a[j], s, x[:, j]), b[j])):
            ref = np.where(small, _implicit_ref(f_lo, pdf, p), -_implicit_ref(f_up, pdf, p))
            np.testing.assert_allclose(vjp[key][:, j], ref, rtol=1e-6, err_msg=f"{key} {j}")
    df = np.array([0.7, 3.0, 40.0])
    t = D.StudentT(df, np.array([1.0, 0.0, -1.0]), np.array([2.0, 1.0, 0.5]))
    xs = t.sample(5, seed=1)
    v = t.rsample_vjp(xs, np.ones_like(xs))
    z = (xs - t.loc) / t.scale
    for j in range(3):
        # the smaller tail F(-|z|); dT/d df is odd in z
        ref = np.sign(z[:, j]) * _richardson(lambda s: sp.stdtr(s, -np.abs(z[:, j])), df[j]) / stats.t(df[j]).pdf(z[:, j])
        np.testing.assert_allclose(v["df"][:, j], t.scale[j] * ref, rtol=1e-6)


def test_dirichlet_rsample_vjp():
    alpha = np.array([0.8, 2.0, 3.5])
    d = D.Dirichlet(alpha)
    x = d.sample(4, seed=3)
    # g = e_i: the vjp w.r.t. alpha_i is the marginal Beta(alpha_i, a0 - alpha_i) implicit derivative
    for i in range(3):
        g = np.zeros_like(x)
        g[:, i] = 1.0
        v = d.rsample_vjp(x, g)["concentration"][:, i]
        rest = alpha.sum() - alpha[i]
        pdf = stats.beta(alpha[i], rest).pdf(x[:, i])
        ref = _implicit_ref(lambda s: sp.betainc(s, rest, x[:, i]), pdf, alpha[i])
        np.testing.assert_allclose(v, ref, rtol=1e-6)
    # unbiased gradient of E[x_0^2] = a_0 (a_0 + 1) / (A (A + 1))
    n = 2000
    x = d.sample(n, seed=13)
    g = np.zeros_like(x)
    g[:, 0] = 2 * x[:, 0]
    v = d.rsample_vjp(x, g)["concentration"]

    def m2(a):
        A = a.sum()
        return a[0] * (a[0] + 1) / (A * (A + 1))

    for j in range(3):
        e = np.zeros(3)
        e[j] = 1e-6
        want = (m2(alpha + e) - m2(alpha - e)) / 2e-6
        se = v[:, j].std() / math.sqrt(n)
        assert abs(v[:, j].mean() - want) < Z_REJECT * se, j


# ------------------------------------------------------------------------- KL
def _kl_pairs():
    return [
        (D.Normal(np.array([0.0, 1.0]), np.array([1.0, 0.5])), D.Normal(np.array([0.5, 0.0]), np.array([2.0, 1.0]))),
        (D.LogNormal(0.3, 0.5), D.LogNormal(0.0, 0.8)),
        (D.MultivariateNormal(np.array([1.0, 0.0]), np.array([[1.0, 0], [0.3, 0.5]])),
         D.MultivariateNormal(np.array([0.0, 0.5]), np.array([[2.0, 0], [-0.4, 1.0]]))),
        (D.Exponential(np.array([1.0, 3.0])), D.Exponential(np.array([2.0, 0.5]))),
        (D.Uniform(0.2, 0.9), D.Uniform(0.0, 1.5)),
        (D.Laplace(0.5, 1.0), D.Laplace(-0.3, 2.0)),
        (D.Gumbel(0.5, 1.0), D.Gumbel(-0.3, 2.0)),
        (D.Gamma(np.array([0.7, 3.0]), np.array([1.0, 2.0])), D.Gamma(np.array([1.5, 2.0]), np.array([0.5, 1.0]))),
        (D.Exponential(1.5), D.Gamma(2.0, 1.0)),
        (D.Gamma(2.0, 1.0), D.Exponential(0.7)),
        (D.Beta(np.array([0.7, 3.0]), np.array([2.0, 1.5])), D.Beta(np.array([1.5, 2.0]), np.array([0.5, 4.0]))),
        (D.Dirichlet(np.array([0.7, 2.0, 3.0])), D.Dirichlet(np.array([1.5, 1.0, 2.0]))),
        (D.Bernoulli(logits=np.array([0.3, -2.0])), D.Bernoulli(probs=np.array([0.6, 0.4]))),
        (D.Categorical(logits=np.array([0.1, 1.0, -1.0])), D.Categorical(probs=np.array([0.5, 0.25, 0.25]))),
    ]


@pytest.mark.parametrize("k", range(len(_kl_pairs())))
def test_kl_matches_monte_carlo(k):
    p, q = _kl_pairs()[k]
    kl = D.kl_divergence(p, q)
    x = p.sample(20000, seed=17)
    r = p.log_prob(x) - q.log_prob(x)
    se = r.std(0) / math.sqrt(r.shape[0])
    assert np.all(np.abs(r.mean(0) - kl) <= Z_REJECT * se + 1e-12), (r.mean(0), kl)
    assert np.all(D.kl_divergence(p, p) < 1e-12)


def test_kl_unregistered_pair_raises():
    with pytest.raises(TypeError, match="no closed-form"):
        D.kl_divergence(D.Normal(0.0, 1.0), D.Laplace(0.0, 1.0))
    assert D.kl_divergence(D.Uniform(0.0, 2.0), D.Uniform(0.5, 1.0)) == np.inf


def test_parameters_of_more_than_32_dimensions_are_refused_by_name():
    """NumPy's broadcasting takes at most 32 dimensions; a 33-dimensional parameter raised its RuntimeError."""
    with pytest.raises(ValueError, match="loc has 33 dimensions; at most 32"):
        D.Normal(np.zeros((1,) * 33), np.ones((1,) * 33))


def test_probs_scores_at_the_ends_of_the_simplex():
    """d log p(x) / d probs where a probability is 0 or 1, at the values that can be drawn: each term of
    the score only where its indicator is non-zero (x / p - (1 - x) / (1 - p) at x = 1, p = 1 was
    1 - 0 / 0 = NaN, and so was onehot / probs for a class of probability 0)."""
    b = D.Bernoulli(probs=np.array([1.0, 0.0, 0.5]))
    s = b.score(np.array([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]]))["probs"]
    np.testing.assert_array_equal(s, [[1.0, -1.0, 2.0], [1.0, -1.0, -2.0]])
    c = D.Categorical(probs=np.array([0.5, 0.5, 0.0]))
    np.testing.assert_array_equal(c.score(np.array([0, 1]))["probs"], [[1.0, -1.0, -1.0], [-1.0, 1.0, -1.0]])


# --------------------------------------------------------------- backend parity
SAMPLED = ["normal", "lognormal", "exponential", "uniform", "laplace", "gumbel", "studentt", "gamma", "beta",
           "dirichlet", "mvn", "bernoulli", "categorical", "relaxed_bernoulli", "relaxed_categorical"]


@pytest.mark.single_backend
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", SAMPLED)
def test_backend_parity_of_draws_and_scores(name, dtype):
    if len(BACKENDS) < 2:
        pytest.skip("only one backend available")
    d = _all_families(dtype)[name]
    res = {}
    for be in ("cpu", "numpy"):
        with bg.use_backend(be):
            x = d.sample(257, seed=123, stream=9)
            res[be] = (x, d.log_prob(x), d.score(x))
    rtol = 2e-5 if dtype == np.float32 else 1e-11
    xc, xn = res["cpu"][0], res["numpy"][0]
    np.testing.assert_allclose(xc, xn, rtol=rtol, atol=rtol)
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(res["cpu"][1], res["numpy"][1], rtol=rtol * 10, atol=rtol * 10)
        for k in res["cpu"][2]:
            np.testing.assert_allclose(res["cpu"][2][k], res["numpy"][2][k], rtol=rtol * 10, atol=rtol * 10)


@pytest.mark.single_backend
@pytest.mark.parametrize("name", ["normal", "gamma", "beta", "dirichlet", "laplace", "poisson"])
def test_native_draws_do_not_depend_on_thread_count(name):
    if not _backend.native_available():
        pytest.skip("native core not built")
    d = D.Poisson(np.array([0.5, 6.0, 80.0])) if name == "poisson" else _all_families(np.float32)[name]
    before = bg.get_num_threads()
    try:
        with bg.use_backend("cpu"):
            draws = []
            for n in (1, 2, 3):
                bg.set_num_threads(n)
                draws.append(d.sample(20011, seed=4))
    finally:
        bg.set_num_threads(before)
    for other in draws[1:]:
        np.testing.assert_array_equal(draws[0], other)


def _documented_gamma_draw(alpha, seed, stream, i):
    """Gamma element i drawn with math (libm) from the words distributions.hpp documents:
    iteration k reads block 2k (u1 from two words, u2 and ua from one each), and an
    accepted draw of a shape below 1 reads block 2k+1 (ub). Returns (X, k)."""
    boost = alpha < 1
    d = (alpha + 1 if boost else alpha) - 1 / 3
    c = 1 / math.sqrt(9 * d)
    for k in range(64):
        w = twin_random.substream_blocks(seed, stream, [i], 2 * k)[0]
        u1 = twin_random.u01_f64(w[0:1], w[1:2])[0]
        u2, ua = (int(w[2]) + 0.5) * 2.0 ** -32, (int(w[3]) + 0.5) * 2.0 ** -32
        z = math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2)
        t = 1 + c * z
        if t <= 0:
            continue
        v = t ** 3
        if ua < 1 - 0.0331 * z ** 4 or math.log(ua) < 0.5 * z * z + d * (1 - v + math.log(v)):
            x = d * v
            if boost:
                q = twin_random.substream_blocks(seed, stream, [i], 2 * k + 1)[0]
                x *= math.exp(math.log(twin_random.u01_f64(q[0:1], q[1:2])[0]) / alpha)
            return x, k
    raise AssertionError("no acceptance in 64 iterations")


@pytest.mark.parametrize("alpha", [0.3, 1.0, 2.5, 20.0])
def test_gamma_word_layout_matches_documentation(alpha):
    # every draw, whichever iteration accepts it, is the documented one up to
    # rounding; a scalar shape takes the kernels' scalar-parameter path, and
    # 203 draws leave a partial vector at the end
    n = 203
    x = D.Gamma(alpha).sample(n, seed=42, stream=6)
    ref = [_documented_gamma_draw(alpha, 42, 6, i) for i in range(n)]
    np.testing.assert_allclose(x, [r[0] for r in ref], rtol=1e-12, atol=0)
    if alpha == 2.5:  # the retry rounds (iteration >= 1) were exercised
        assert max(r[1] for r in ref) >= 1


# -------------------------------------------------------------- out= and shapes
def test_sample_into_out_and_shapes():
    d = D.Normal(np.zeros((2, 3)), 1.0)
    out = np.empty((4, 2, 3))
    r = d.sample(4, seed=1, out=out)
    assert r is out
    np.testing.assert_array_equal(out, d.sample(4, seed=1))
    assert d.sample(0).shape == (0, 2, 3)
    g = D.Gamma(np.float32(2.0))
    o32 = np.empty((5,), np.float32)
    g.sample(5, seed=1, out=o32)
    np.testing.assert_array_equal(o32, g.sample(5, seed=1))
    with pytest.raises(TypeError, match="out"):
        d.sample(4, out=np.empty((4, 2, 3), np.float32))
    with pytest.raises(ValueError, match="out"):
        d.sample(4, out=np.empty((3, 2, 3)))
    # scalar parameters give scalar batch shapes; broadcasting parameters sums scores back
    assert D.Normal(0.0, 1.0).sample(3).shape == (3,)
    s = D.Normal(np.zeros(3), 2.0).score(np.ones((5, 3)))
    assert s["loc"].shape == (5, 3) and s["scale"].shape == (5,)


# ------------------------------------------------------------------- bad input
@pytest.mark.parametrize("make, arg", [
    (lambda: D.Normal(0.0, -1.0), "scale"),
    (lambda: D.Normal(0.0, np.nan), "scale"),
    (lambda: D.Normal(np.inf, 1.0), "loc"),
    (lambda: D.LogNormal(0.0, 0.0), "scale"),
    (lambda: D.Exponential(-2.0), "rate"),
    (lambda: D.Uniform(1.0, 1.0), "high"),
    (lambda: D.Laplace(0.0, -1.0), "scale"),
    (lambda: D.Gumbel(0.0, 0.0), "scale"),
    (lambda: D.StudentT(-1.0), "df"),
    (lambda: D.Gamma(-1.0, 1.0), "concentration"),
    (lambda: D.Gamma(1.0, 0.0), "rate"),
    (lambda: D.Beta(0.0, 1.0), "concentration1"),
    (lambda: D.Beta(1.0, np.inf), "concentration0"),
    (lambda: D.Dirichlet([1.0, -1.0]), "concentration"),
    (lambda: D.Dirichlet([1.0]), "concentration"),
    (lambda: D.Bernoulli(probs=1.5), "probs"),
    (lambda: D.Bernoulli(logits=np.nan), "logits"),
    (lambda: D.Bernoulli(), "logits"),
    (lambda: D.Categorical(probs=[0.5, 0.6]), "probs"),
    (lambda: D.Categorical(probs=[-0.1, 1.1]), "probs"),
    (lambda: D.RelaxedBernoulli(-1.0, logits=0.0), "temperature"),
    (lambda: D.RelaxedCategorical(1.0, probs=[0.5, 1.5]), "probs"),
    (lambda: D.MultivariateNormal([0.0, 0.0], [[1.0, 0.5], [0.0, 1.0]]), "scale_tril"),
    (lambda: D.MultivariateNormal([0.0, 0.0], [[1.0, 0.0], [0.0, -1.0]]), "scale_tril"),
    (lambda: D.MultivariateNormal([0.0, 0.0, 0.0], np.eye(2)), "scale_tril"),
    (lambda: D.Normal(np.zeros(3), np.ones(2)), "parameter shapes"),
    (lambda: D.Normal(np.zeros(3), 1.0).sample(-1), "n"),
    (lambda: D.Gamma(1.0).sample(3, seed=-1), "seed"),
    (lambda: D.Gamma(1.0).sample(3, stream=2 ** 63), "stream"),
    (lambda: D.Normal(np.zeros(3), 1.0).log_prob(np.zeros(2)), "x"),
    (lambda: D.Normal(0.0, 1.0).log_prob(np.nan), "x"),
    (lambda: D.Normal(0.0, 1.0).rsample_vjp(np.zeros(3), np.zeros(2)), "g"),
    (lambda: D.Categorical(logits=[0.0, 1.0]).log_prob([2]), "x"),
    (lambda: D.Categorical(logits=[0.0, 1.0]).log_prob([0.5]), "x"),
    (lambda: D.Bernoulli(logits=0.0).log_prob(2.0), "x"),
])
def test_bad_input_raises_value_error_naming_argument(make, arg):
    with pytest.raises(ValueError, match=arg):
        make()


@pytest.mark.parametrize("make, arg", [
    (lambda: D.Normal(np.array([1j]), 1.0), "loc"),
    (lambda: D.Normal(0.0, "a"), "scale"),
    (lambda: D.Gamma(None), "concentration"),
    (lambda: D.Normal(0.0, 1.0).sample(2.5), "n"),
    (lambda: D.Categorical(logits=[0.0, 1.0]).log_prob(["a"]), "x"),
    (lambda: D.Bernoulli(logits=0.0).rsample_vjp(np.zeros(1), np.zeros(1)), "Bernoulli"),
])
def test_bad_types_raise_type_error(make, arg):
    with pytest.raises(TypeError, match=arg):
        make()


@pytest.mark.single_backend
def test_kernels_validate_sizes():
    # the native kernels check the sizes they index with (never crash)
    for k in [twin] + ([_backend._core] if _backend.native_available() else []):
        with pytest.raises(ValueError):
            k.distributions.sample_gamma(np.empty(5), np.ones(2), np.ones(2), 0, 0)
        with pytest.raises(ValueError):
            k.distributions.sample_locscale(np.empty(4), np.ones(2), np.ones(3), LocScaleFamily.normal, 0, 0)
        with pytest.raises(ValueError, match="family: loc_scale_family code 99"):
            k.distributions.sample_locscale(np.empty(4), np.ones(2), np.ones(2), 99, 0, 0)
        with pytest.raises(ValueError):
            k.distributions.gammainc(np.ones(3), np.ones(2), np.empty(3))
        with pytest.raises((TypeError, ValueError)):
            k.distributions.sample_beta(np.empty(4, np.int64), np.ones(2), np.ones(2), 0, 0)
