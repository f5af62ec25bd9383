"""REBAR and RELAX (bg.estimators.rebar / relax, bg.control_variates.RelaxSurrogate).

Statistical checks: fixed seeds, |estimate - exact| < 4.5 standard errors
(two-sided false alarm 6.8e-6 per coordinate for a Gaussian mean of >= 10^4
terms), with the standard error itself bounded so that a check cannot pass on a
wide error bar. The exact gradients come from enumerating the support
(``exact_gradient``).
"""
import numpy as np
import pytest

import bayesgrad as bg
from bayesgrad import _backend
from bayesgrad.distributions import Bernoulli, Categorical, Normal
from bayesgrad.estimators import RelaxSurrogate
from bayesgrad.estimators.relax import _Draws

E = bg.estimators
Z = 4.5
W = np.array([[1.0, -2.0, 0.5], [0.3, 0.2, -1.0]])
TARGET = np.array([0.3, 0.9, 0.1])


def f_bern(b):
    return ((b - TARGET) ** 2).sum(-1) + b[:, 0] * b[:, 1]


def df_bern(b):
    g = 2.0 * (b - TARGET)
    g[:, 0] += b[:, 1]
    g[:, 1] += b[:, 0]
    return g


def f_cat(y):  # y: (m, 2, 3) one-hot or simplex points
    return (y * W).sum((-1, -2)) ** 2


def df_cat(y):
    return 2.0 * (y * W).sum((-1, -2))[:, None, None] * W


def bern():
    return Bernoulli(logits=np.array([0.3, -0.5, 1.0]))


def cat():
    return Categorical(logits=np.array([[0.2, -0.4, 0.1], [1.0, 0.0, -1.0]]))


def exact(fam):
    if fam == "bernoulli":
        return E.exact_gradient(f_bern, bern()).grad["logits"]
    return E.exact_gradient(lambda X: f_cat(np.eye(3)[X]), cat()).grad["logits"]


def random_surrogate(dim, relaxed_f=True, seed=0):
    """A surrogate with a non-trivial network (untrained networks start at zero output)."""
    s = RelaxSurrogate(hidden=(6,), relaxed_f=relaxed_f, temperature=0.7, scale=0.6)
    s.bind(dim)
    s.params[2:] = np.random.default_rng(seed).standard_normal(s.params.size - 2) * 0.7
    return s


def _case(fam, kind):
    d, f, df, dim = (bern(), f_bern, df_bern, 3) if fam == "bernoulli" else (cat(), f_cat, df_cat, 6)
    if kind == "rebar":
        return E.rebar, d, f, dict(grad_f=df, temperature=0.7, scale=0.8)
    if kind == "rebar_loo":
        return E.rebar, d, f, dict(grad_f=df, temperature=0.7, scale=0.8, baseline="loo")
    if kind == "relax":
        return E.relax, d, f, dict(grad_f=df, surrogate=random_surrogate(dim))
    return E.relax, d, f, dict(surrogate=random_surrogate(dim, relaxed_f=False))  # network only


@pytest.mark.parametrize("fam", ["bernoulli", "categorical"])
@pytest.mark.parametrize("kind", ["rebar", "rebar_loo", "relax", "relax_net"])
def test_unbiased_against_enumeration(fam, kind):
    fn, d, f, kw = _case(fam, kind)
    est = fn(f, d, 20_000, seed=11, train=False, **kw)
    truth = exact(fam)
    g, se = est.grad["logits"], est.stderr["logits"]
    assert g.shape == truth.shape and se.shape == truth.shape
    assert np.all(np.abs(g - truth) <= Z * se), (g, truth, se)
    assert np.all(se < 0.02), se  # precise enough for the check to mean something
    assert est.value == pytest.approx(E.exact_gradient(
        f if fam == "bernoulli" else (lambda X: f_cat(np.eye(3)[X])), d).value, abs=Z * est.value_stderr)


def _on_both_backends(fn):
    """{backend: fn()} for the twin and, where built, the native core."""
    out = {}
    for b in ["numpy"] + (["cpu"] if _backend.native_available() else []):
        with bg.use_backend(b):
            out[b] = fn()
    return out


UNDERFLOW = np.array([[0.2, -0.4, -900.0], [1.0, 0.0, -1.0]])  # class 2 of row 0: p = 0 in float64


@pytest.mark.single_backend
@pytest.mark.parametrize("kind", ["rebar", "relax"])
def test_categorical_unbiased_with_an_underflowing_class(kind):
    """A class whose probability underflows to 0 (logits 900 apart; its conditional draw once needed
    E_i / p_i = inf, then r_i = inf / inf: NaN) leaves the estimate finite, unbiased and equal on both
    backends."""
    d = Categorical(logits=UNDERFLOW)
    assert np.exp(-900.0 - np.logaddexp.reduce([0.2, -0.4, -900.0])) == 0.0
    truth = E.exact_gradient(lambda X: f_cat(np.eye(3)[X]), d).grad["logits"]
    surrogate = RelaxSurrogate(hidden=None if kind == "rebar" else (6,), temperature=0.7, scale=0.8)
    if kind == "relax":
        surrogate.bind(6)
        surrogate.params[2:] = np.random.default_rng(0).standard_normal(surrogate.params.size - 2) * 0.7
    fn = E.rebar if kind == "rebar" else E.relax
    ests = _on_both_backends(lambda: fn(f_cat, d, 20_000, seed=5, grad_f=df_cat, surrogate=surrogate, train=False))
    est = ests["numpy"]
    g, se = est.grad["logits"], est.stderr["logits"]
    assert np.all(np.isfinite(g)) and np.all(se < 0.02), (g, se)
    assert g[0, 2] == 0.0 and truth[0, 2] == 0.0  # a class never drawn: p_i (f(e_i) - E f) = 0
    assert np.all(np.abs(g - truth) <= Z * se), (g, truth, se)
    if "cpu" in ests:
        np.testing.assert_allclose(ests["cpu"].grad["logits"], g, rtol=1e-9, atol=1e-12)


@pytest.mark.single_backend
@pytest.mark.parametrize("logits", [cat().logits, UNDERFLOW], ids=["plain", "underflow"])
def test_categorical_rebar_at_a_vanishing_temperature_is_scaled_reinforce(logits):
    """At lam = 1e-60 the relaxation is the hard argmax on every draw (the relaxation's exponents are
    products of order 1e60: natively once NaN), so the relaxed f terms vanish and f(relax(z~)) = f(b):
    each term is (1 - scale) f(b) (b - p), with b rebuilt here from the draws' uniforms. (Unbiased for
    every lam > 0 in exact arithmetic, but at this lam the correction lives on a set of probability
    ~1e-60 that no sample reaches.)"""
    d, n, sc = Categorical(logits=logits), 500, 0.8
    surrogate = RelaxSurrogate(hidden=None, temperature=1e-60, scale=sc)
    ests = _on_both_backends(lambda: E.rebar(f_cat, d, n, seed=5, stream=2, grad_f=df_cat, surrogate=surrogate,
                                             train=False, per_sample=True))
    lp = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
    u = bg.random.uniform((n, 6), seed=5, stream=2).reshape(n, 2, 3)
    b = np.eye(3)[np.argmax(lp - np.log(-np.log(u)), axis=-1)]
    want = (1.0 - sc) * f_cat(b)[:, None, None] * (b - np.exp(lp))
    for name, est in ests.items():
        np.testing.assert_allclose(est.per_sample["logits"], want, rtol=1e-12, atol=1e-15, err_msg=name)


def _jacobian_terms(dr, gz, gt):
    """Jz^T gz - Jt^T gt (n, P) for cotangents gz on z and gt on z~, as the estimator's combine kernel forms the
    network's terms (f(b) = 0, the network's r = 0, its input gradient [gz; gt]): dc(z)/d eta - dc(z~)/d eta."""
    ke = _backend.kernels().estimators
    n, P = gz.shape
    fb, r, gs = np.zeros(n), np.zeros(2 * n), np.empty(n)
    gx = np.ascontiguousarray(np.concatenate([gz, gt]))
    if dr.fam == "bernoulli":
        out = np.empty((2, n, P))
        ke.relax_bernoulli_combine(fb, dr.score, None, 0.0, r, gx, dr.dzt, out, gs)
    else:
        out = np.empty((3, n, P))
        ke.relax_categorical_combine(fb, dr.draws, dr.p, None, 0.0, r, gx, out, gs)
    return out[0]


@pytest.mark.parametrize("fam", ["bernoulli", "categorical"])
def test_conditional_relaxation_jacobian_matches_finite_differences(fam):
    """The combine kernels' d z / d eta and d z~ / d eta (b held fixed) against central differences of the draws."""
    d = Bernoulli(logits=np.array([0.3, -2.5, 3.0])) if fam == "bernoulli" else cat()
    n, h = 9, 1e-6
    dr = _Draws(fam, d, n, 3, 0)
    P = dr.z.shape[1]
    for j in range(P):
        e = np.zeros(P)
        e[j] = h
        lg = np.asarray(d.logits, dtype=np.float64)
        mk = (lambda x: Bernoulli(logits=x)) if fam == "bernoulli" else (lambda x: Categorical(logits=x))
        hi = _Draws(fam, mk(lg + e.reshape(lg.shape)), n, 3, 0)
        lo = _Draws(fam, mk(lg - e.reshape(lg.shape)), n, 3, 0)
        assert np.array_equal(hi.points, lo.points)  # b unchanged by a small step
        # column j of dz~/d eta, through the VJP with a unit cotangent on every coordinate
        for i in range(P):
            g = np.zeros((n, P))
            g[:, i] = 1.0
            fd_t = (hi.zt[:, i] - lo.zt[:, i]) / (2 * h)
            fd_z = (hi.z[:, i] - lo.z[:, i]) / (2 * h)
            np.testing.assert_allclose(-_jacobian_terms(dr, np.zeros((n, P)), g)[:, j], fd_t, atol=1e-6)
            np.testing.assert_allclose(_jacobian_terms(dr, g, np.zeros((n, P)))[:, j], fd_z, atol=1e-6)


def test_conditional_relaxation_has_the_law_of_z_given_b():
    """z~ given b is drawn from the law of z given b: their conditional means of
    sigmoid(z) agree (z-test on independent draws; b and z~ from one call, z from another)."""
    d = Bernoulli(logits=np.array([0.4]))
    a = _Draws("bernoulli", d, 200_000, 5, 0)
    b = _Draws("bernoulli", d, 200_000, 6, 0)
    for val in (0.0, 1.0):
        m1, m2 = a.points[:, 0] == val, b.points[:, 0] == val
        x, y = 1 / (1 + np.exp(-a.zt[m1, 0])), 1 / (1 + np.exp(-b.z[m2, 0]))
        se = np.sqrt(x.var() / x.size + y.var() / y.size)
        assert abs(x.mean() - y.mean()) < Z * se


@pytest.mark.parametrize("fam", ["bernoulli", "categorical"])
def test_variance_gradient_matches_finite_differences(fam):
    """The gradient each call steps phi along is that of the mean of sum_p g_p^2 over the
    call's draws (common random numbers): compare with central differences of it."""
    fn, d, f, kw = _case(fam, "relax")
    s = kw["surrogate"]
    got = {}
    s.update = lambda g, o: got.setdefault("g", np.array(g))
    fn(f, d, 40, seed=2, train=True, **kw)
    p0 = s.params.copy()
    fd = np.zeros_like(p0)
    for i in range(p0.size):
        for sign in (1.0, -1.0):
            s.params[:] = p0
            s.params[i] += sign * 1e-5
            fd[i] += sign * fn(f, d, 40, seed=2, train=False, **kw).info["second_moment"] / 2e-5
    s.params[:] = p0
    np.testing.assert_allclose(got["g"], fd, rtol=1e-4, atol=1e-6 * np.abs(fd).max())


def rloo_pair_variance(f, p):
    """Exact variance per draw (2 x the variance of one pair's estimate) of REINFORCE with the
    leave-one-out baseline on pairs, d/dlogit, by enumerating the four outcomes of a pair."""
    vals, probs = [], []
    for b1 in (0.0, 1.0):
        for b2 in (0.0, 1.0):
            f1, f2 = f(np.array([[b1]]))[0], f(np.array([[b2]]))[0]
            vals.append(0.5 * ((f1 - f2) * (b1 - p) + (f2 - f1) * (b2 - p)))
            probs.append((p if b1 else 1 - p) * (p if b2 else 1 - p))
    vals, probs = np.array(vals), np.array(probs)
    return 2.0 * (probs @ vals ** 2 - (probs @ vals) ** 2)


def _toy(t):
    return (lambda b: ((b - t) ** 2).sum(-1)), (lambda b: 2.0 * (b - t))


@pytest.mark.parametrize("t", [0.45, 0.499])
def test_toy_problem_variance_order(t):
    """The toy problem of the REBAR and RELAX papers at theta = 1/2, surrogates trained
    for 400 steps: RELAX has the lowest single-sample variance, below REBAR and below
    REINFORCE with a leave-one-out baseline over pairs (the smallest LOO batch)."""
    f, df = _toy(t)
    d = Bernoulli(logits=np.array([0.0]))
    sr, sx = RelaxSurrogate(hidden=None), RelaxSurrogate(hidden=(10,))
    for i in range(400):
        E.rebar(f, d, 16, seed=0, stream=i + 1, grad_f=df, surrogate=sr)
        E.relax(f, d, 16, seed=0, stream=i + 1, grad_f=df, surrogate=sx)
    n = 20_000
    v_rebar = E.rebar(f, d, n, seed=1, grad_f=df, surrogate=sr, train=False).variance["logits"][0]
    v_relax = E.relax(f, d, n, seed=1, grad_f=df, surrogate=sx, train=False).variance["logits"][0]
    v_rloo = rloo_pair_variance(f, 0.5)
    assert v_relax < 0.2 * v_rebar
    assert v_relax < 0.7 * v_rloo
    assert sx.objective[-1] < sx.objective[0]


@pytest.mark.parametrize("scale,temperature", [(0.8, 0.5), (3.0, 2.0)])
def test_rebar_on_one_bernoulli_is_reinforce_with_the_relaxed_midpoint_baseline(scale, temperature):
    """For one Bernoulli, E[g_rebar | b] = (f(b) - eta f(sigma(0))) (b - p): REBAR's control
    variate acts on the REINFORCE term only through the constant baseline eta f(1/2) (the
    relaxed f at the decision boundary z = 0); the rest of it is zero-mean noise given b.
    (Leibniz on E[f(sigma(z / lambda)) 1[z > 0]]: the boundary term is f(1/2) times the
    logistic density at 0, p (1 - p).) This is why REBAR cannot beat a tuned baseline on the
    toy problem, where f(1/2) = (1/2 - t)^2 is nearly 0. z-test per value of b."""
    logit, t = 0.7, 0.3
    f = lambda b: ((b - t) ** 2).sum(-1) + 0.4 * b.sum(-1) ** 3  # noqa: E731
    df = lambda b: 2.0 * (b - t) + 1.2 * b.sum(-1, keepdims=True) ** 2  # noqa: E731
    d = Bernoulli(logits=np.array([logit]))
    seen = []
    est = E.rebar(lambda b: (seen.append(b.copy()) if not seen else None) or f(b), d, 200_000, seed=4,
                  grad_f=df, scale=scale, temperature=temperature, train=False, per_sample=True)
    b = seen[0][:, 0]  # the first evaluation of f is at the discrete draws
    g = est.per_sample["logits"][:, 0]
    p = 1.0 / (1.0 + np.exp(-logit))
    mid = float(f(np.array([[0.5]]))[0])
    for val in (0.0, 1.0):
        gv = g[b == val]
        expect = (float(f(np.array([[val]]))[0]) - scale * mid) * (val - p)
        se = gv.std(ddof=1) / np.sqrt(gv.size)
        assert abs(gv.mean() - expect) < Z * se, (val, gv.mean(), expect, se)
        assert se < 0.01
    # and the midpoint baseline is what separates it from REINFORCE: its size exceeds the error bars
    assert abs(scale * mid * p * (1 - p)) > 10 * se


@pytest.mark.parametrize("est", ["relax", "rebar"])
def test_toy_problem_optimisation_reaches_the_right_end(est):
    """E[(b - t)^2] = theta (1 - 2t) + t^2 is minimised at theta = 0 for t < 1/2."""
    f, df = _toy(0.499)
    s = RelaxSurrogate(hidden=(10,) if est == "relax" else None)
    res = E.minimize(f, Bernoulli(logits=np.array([0.0])), est, steps=3000, n_samples=4, seed=0, grad_f=df,
                     lr=0.05, estimator_options={"surrogate": s})
    assert res.dist.probs[0] < 0.1
    assert s.n_updates == 3000


def test_categorical_minimize_with_relax():
    f = lambda y: -(y * W).sum((-1, -2))  # noqa: E731  best: class 0 in row 0, class 0 in row 1
    res = E.minimize(f, Categorical(logits=np.zeros((2, 3))), "relax", steps=600, n_samples=4, seed=0, lr=0.1,
                     estimator_options={"surrogate": RelaxSurrogate(hidden=(8,), relaxed_f=False)})
    assert np.all(np.argmax(res.dist.probs, -1) == [0, 0])


def test_errors():
    f, df = _toy(0.45)
    d = Bernoulli(logits=np.array([0.0]))
    with pytest.raises(TypeError, match="grad_f"):
        E.rebar(f, d, 4)
    with pytest.raises(TypeError, match="surrogate"):
        E.relax(f, d, 4, surrogate="net")
    with pytest.raises(ValueError, match="rebar's surrogate"):
        E.rebar(f, d, 4, grad_f=df, surrogate=RelaxSurrogate(hidden=(3,)))
    with pytest.raises(TypeError, match="Bernoulli or Categorical"):
        E.relax(f, Normal(np.zeros(1), np.ones(1)), 4)
    with pytest.raises(ValueError, match="n_samples >= 2"):
        E.rebar(f, d, 1, grad_f=df, baseline="loo")
    with pytest.raises(ValueError, match="baseline"):
        E.rebar(f, d, 4, grad_f=df, baseline="mean")
    s = RelaxSurrogate(hidden=(3,), relaxed_f=False)
    E.relax(f, d, 4, surrogate=s)
    with pytest.raises(ValueError, match="1 relaxed coordinates"):
        E.relax(f, Bernoulli(logits=np.zeros(2)), 4, surrogate=s)
    with pytest.raises(ValueError, match="temperature"):
        RelaxSurrogate(temperature=0.0)
    with pytest.raises(ValueError, match="hidden"):
        RelaxSurrogate(hidden=None, relaxed_f=False)
    # the network's own calls check the points' shape (they skip MLP.vjp's checks)
    with pytest.raises(ValueError, match=r"z must have shape \(m, 1\)"):
        s.network(np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"z must have shape \(m, 1\)"):
        s.network_mixed_vjp(np.zeros(4), np.zeros(4), np.ones(4), np.ones(4))
    with pytest.raises(ValueError, match=r"v must have the shape of z \(4, 1\)"):
        s.network_mixed_vjp(np.zeros((4, 1)), np.zeros((3, 1)), np.ones(4), np.ones(4))


@pytest.mark.parametrize("kind", ["rebar", "relax"])
@pytest.mark.parametrize("fam", ["bernoulli", "categorical"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_grad_f_is_refused_before_the_surrogate_moves(kind, fam, bad):
    """A grad_f value that is NaN or inf, at any of the three temperatures (the Bernoulli path checks
    grad_f's values only when the sums formed from them are not finite: every such value reaches
    them), raises a ValueError naming grad_f, training or not, and leaves the surrogate as it was;
    also where the relaxation saturates (y (1 - y) = 0: inf * 0 is NaN, not 0)."""
    d = (Bernoulli(logits=np.array([0.3, -400.0, 0.1])) if fam == "bernoulli"
         else Categorical(logits=np.array([[0.3, -400.0, 0.1]])))
    f = lambda b: (b ** 2).reshape(len(b), -1).sum(-1)  # noqa: E731
    for call in range(3):  # the first call's lambda block, then a block of lambda e^{+-step}, then any
        seen = {"n": 0}

        def df(b, call=call):
            g = 2.0 * b
            m = b.shape[0]
            flat = g.reshape(m, -1)
            row = {0: 0, 1: m // 2, 2: m - 1}[call]
            flat[row, 1] = bad  # coordinate 1 saturates (logit -400: its relaxation is 0 or 1 exactly)
            flat[row, 0] = flat[row, 0] if call else bad
            seen["n"] += 1
            return g
        for train in (True, False):
            s = RelaxSurrogate(hidden=(3,) if kind == "relax" else None, relaxed_f=True)
            kw = {"surrogate": s, "grad_f": df, "train": train}
            with pytest.raises(ValueError, match="grad_f returned NaN or inf"):
                getattr(E, kind)(f, d, 20, seed=1, **kw)
            assert s.n_updates == 0 and s.objective == []
            assert seen["n"] >= 1


def test_float32_distribution():
    f, df = _toy(0.45)
    d = Bernoulli(logits=np.array([0.2, -0.3], dtype=np.float32))
    est = E.relax(f, d, 1000, seed=0, grad_f=df)
    assert est.grad["logits"].dtype == np.float32


def test_variance_curve_and_plot_with_discrete_estimators(tmp_path):
    """variance_curve over t for the toy problem: the single-sample variances of the listed
    estimators, each equal to the estimator's own variance at that t (same seed)."""
    ks = np.array([0.3, 0.45])
    d = Bernoulli(logits=np.array([0.0]))
    s = RelaxSurrogate(hidden=(4,))
    curve = E.variance_curve(_toy, ks, d, estimators=("reinforce_loo", "disarm", "rebar", "relax"), n_samples=500,
                             seed=3, options={"relax": {"surrogate": s}})
    assert set(curve) == {"k", "reinforce_loo", "disarm", "rebar", "relax"}
    f, df = _toy(0.45)
    assert curve["relax"]["logits"][1, 0] == pytest.approx(
        E.relax(f, d, 500, seed=3, grad_f=df, surrogate=s, train=False).variance["logits"][0])
    assert s.n_updates == 0  # held fixed
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    ax = bg.estimators.plot_variance(curve, param="logits", index=(0,))
    assert len(ax.get_lines()) == 4
