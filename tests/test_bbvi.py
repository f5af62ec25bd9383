"""Black-box VI (bg.bbvi) and bg.estimators.minimize.

Bayesian linear regression has a Gaussian posterior N(m, Lam^-1), so the
optimal full-covariance q is the posterior itself and the optimal mean-field q
has mean m and precisions diag(Lam) (the KL(q||p) minimiser of a Gaussian
target). Tolerances: the fits use Adam with Polyak averaging over the last
n_avg = steps/2 iterates and S draws per step; averaged stochastic approximation
leaves an error of about sd / sqrt(S n_avg) in each mean coordinate and a relative
error of about sqrt(2 / (S n_avg)) in each variance (Polyak & Juditsky 1992:
the pathwise gradient noise at the optimum has covariance Lam / S, the curvature
is Lam). Adam's constant step inflates that by 2-3x (measured); the tests allow
6x, which keeps the false-alarm probability negligible for these fixed seeds.

Bayesian logistic regression: every estimator must reach the same ELBO as the
pathwise fit, and the pathwise estimator must need the fewest evaluations of the
model for a given gradient precision at the optimum.
"""
import numpy as np
import pytest

import bayesgrad as bg
from bayesgrad.bbvi import BBVI
from bayesgrad.distributions import MultivariateNormal, Normal


# ---------------------------------------------------------------- linear regression
def _linear_problem():
    rng = np.random.default_rng(0)
    N, D, noise, tau = 30, 3, 0.5, 1.0
    # correlated features, so that the posterior is far from mean-field
    X = rng.normal(size=(N, D)) @ np.array([[1.0, 0.8, 0.5], [0.0, 0.6, 0.4], [0.0, 0.0, 0.7]])
    y = X @ np.array([1.0, -0.5, 0.3]) + noise * rng.normal(size=N)
    Lam = X.T @ X / noise ** 2 + np.eye(D) / tau ** 2
    m = np.linalg.solve(Lam, X.T @ y / noise ** 2)

    def logp(W):
        R = y - W @ X.T
        return -0.5 * (R * R).sum(1) / noise ** 2 - 0.5 * (W * W).sum(1) / tau ** 2

    def glogp(W):
        return (y - W @ X.T) @ X / noise ** 2 - W / tau ** 2

    return D, Lam, m, logp, glogp


S_LIN, T_LIN = 128, 600


def test_fullrank_equals_exact_posterior():
    D, Lam, m, logp, glogp = _linear_problem()
    res = BBVI(logp, D, family="fullrank", grad_log_density=glogp).fit(steps=T_LIN, n_samples=S_LIN, seed=0,
                                                                        lr=0.1, average=0.5)
    assert isinstance(res.q, MultivariateNormal)
    Sig = np.linalg.inv(Lam)
    sd = np.sqrt(np.diag(Sig))
    se = 1.0 / np.sqrt(S_LIN * T_LIN / 2)
    np.testing.assert_array_less(np.abs(res.mean - m) / sd, 6 * se)
    # every covariance entry, in units of sd_i sd_j
    assert np.max(np.abs(res.covariance - Sig) / np.outer(sd, sd)) < 6 * np.sqrt(2) * se
    assert res.n_samples == S_LIN * T_LIN and res.steps == T_LIN and not res.interrupted
    # the ELBO at the exact posterior is log Z; a fit's ELBO trace climbs towards it
    assert res.elbo.shape == (T_LIN,) and np.all(res.elbo_stderr[1:] > 0)
    assert res.elbo[-50:].mean() > res.elbo[:10].mean() + 10


def test_fullrank_score_function_with_the_delta_control_variate_is_exact_on_a_gaussian_target():
    """-log p is quadratic, so the delta control variate (MultivariateNormal: its Hessian blocks) equals f:
    every step's gradient is exact and the score-function fit reaches the posterior to the optimiser's
    precision, far inside the Monte Carlo error a plain score-function fit of this size leaves."""
    D, Lam, m, logp, glogp = _linear_problem()
    opts = {"control_variate": "delta", "grad_f": lambda W: -glogp(W),
            "hess_f": lambda W: np.broadcast_to(Lam, W.shape + (D,)).copy()}
    res = BBVI(logp, D, family="fullrank", estimator="score_function", grad_log_density=glogp,
               estimator_options=opts).fit(steps=T_LIN, n_samples=8, seed=0, lr=0.1, average=0.5)
    plain = BBVI(logp, D, family="fullrank", estimator="score_function", grad_log_density=glogp).fit(
        steps=T_LIN, n_samples=8, seed=0, lr=0.1, average=0.5)
    Sig = np.linalg.inv(Lam)
    sd = np.sqrt(np.diag(Sig))
    err = {k: max(np.max(np.abs(r.mean - m) / sd), np.max(np.abs(r.covariance - Sig) / np.outer(sd, sd)))
           for k, r in (("delta", res), ("plain", plain))}
    assert err["delta"] < 3e-3 and err["plain"] > 10 * err["delta"], err


def test_meanfield_exact_mean_and_diagonal_precisions():
    D, Lam, m, logp, glogp = _linear_problem()
    res = BBVI(logp, D, family="meanfield", grad_log_density=glogp).fit(steps=T_LIN, n_samples=S_LIN, seed=1,
                                                                        lr=0.1, average=0.5)
    assert isinstance(res.q, Normal)
    sd_mf = 1.0 / np.sqrt(np.diag(Lam))
    se = 1.0 / np.sqrt(S_LIN * T_LIN / 2)
    np.testing.assert_array_less(np.abs(res.mean - m) / sd_mf, 6 * se)
    prec = 1.0 / np.diag(res.covariance)
    np.testing.assert_array_less(np.abs(prec / np.diag(Lam) - 1), 6 * np.sqrt(2) * se)
    # not the marginal precisions 1/diag(Lam^-1), which differ here by far more than the tolerance
    marg = 1.0 / np.diag(np.linalg.inv(Lam))
    assert np.max(np.abs(marg / np.diag(Lam) - 1)) > 10 * 6 * np.sqrt(2) * se


# ---------------------------------------------------------------- logistic regression
def _logistic_problem():
    rng = np.random.default_rng(1)
    N, D = 40, 3
    X = rng.normal(size=(N, D))
    y = (rng.uniform(size=N) < 1 / (1 + np.exp(-X @ np.array([1.5, -1.0, 0.5])))).astype(float)

    def logp(W):
        Z = W @ X.T
        return (y * Z - np.logaddexp(0, Z)).sum(1) - 0.5 * (W * W).sum(1)

    def glogp(W):
        Z = W @ X.T
        return (y - 1 / (1 + np.exp(-Z))) @ X - W

    return D, logp, glogp


def _paired_elbo_gap(logp, qa, qb, n=20000, seed=11):
    """ELBO(qa) - ELBO(qb) and its standard error, with common random numbers."""
    z = bg.random.normal((n, qa.loc.size), seed=seed)
    fa = logp(qa.loc + qa.scale * z) + qa.entropy().sum()
    fb = logp(qb.loc + qb.scale * z) + qb.entropy().sum()
    d = fa - fb
    return d.mean(), d.std(ddof=1) / np.sqrt(n)


def test_logistic_all_estimators_reach_same_elbo_pathwise_needs_fewest_samples():
    D, logp, glogp = _logistic_problem()
    fits = {}
    for est in ("pathwise", "score_function", "measure_valued"):
        vi = BBVI(logp, D, family="meanfield", estimator=est, grad_log_density=glogp)
        fits[est] = vi.fit(steps=200, n_samples=16, seed=3, lr=0.05, average=0.5)
    ref = fits["pathwise"].q
    # The ELBO is flat at its maximum: a parameter error delta costs delta' H delta / 2, about
    # 1e-3 nats for the averaged iterates here; allow 0.01 nats of optimisation slack on top of
    # 4 paired standard errors. A poor q (the start, N(0, I)) is tens of nats below.
    for est in ("score_function", "measure_valued"):
        gap, se = _paired_elbo_gap(logp, fits[est].q, ref)
        assert abs(gap) < 4 * se + 0.01, (est, gap, se)
    gap0, _ = _paired_elbo_gap(logp, Normal(np.zeros(D), np.ones(D)), ref)
    assert gap0 < -5
    # Evaluations of the model needed for gradient standard error eps at the optimum:
    # (sum of single-sample gradient variances) * (evaluations per draw) / eps^2.
    E = bg.estimators
    n = 2000
    ests = {"pathwise": E.pathwise(logp, ref, n, seed=5, grad_f=glogp),
            "score_function": E.score_function(logp, ref, n, seed=5, baseline="loo"),
            "measure_valued": E.measure_valued(logp, ref, n, seed=5)}
    need = {k: sum(v.sum() for v in e.variance.values()) * e.n_evaluations / e.n_samples
            for k, e in ests.items()}
    assert need["pathwise"] < 0.5 * need["score_function"], need
    assert need["pathwise"] < 0.5 * need["measure_valued"], need
    # the fits report what they used: 16 draws per step; measure-valued evaluates 4 D + 1 per draw
    assert fits["pathwise"].n_evaluations == 200 * 16
    assert fits["measure_valued"].n_evaluations == 200 * 16 * (4 * D + 1)


def test_fullrank_logistic_score_function_matches_pathwise():
    D, logp, glogp = _logistic_problem()
    a = BBVI(logp, D, family="fullrank", grad_log_density=glogp).fit(steps=200, n_samples=16, seed=4, lr=0.05,
                                                                     average=0.5)
    b = BBVI(logp, D, family="fullrank", estimator="score_function").fit(steps=200, n_samples=16, seed=4,
                                                                         lr=0.05, average=0.5)
    vi = BBVI(logp, D, family="fullrank", estimator="score_function")
    ea, sa = vi.elbo(a.q, 20000, seed=9)
    eb, sb = vi.elbo(b.q, 20000, seed=9)
    assert abs(ea - eb) < 4 * np.hypot(sa, sb)
    np.testing.assert_allclose(a.mean, b.mean, atol=0.1)


# ---------------------------------------------------------------- minimize
def test_minimize_normal_reaches_closed_form_optimum():
    # E_{N(mu, s^2)}[(x - 2)^2 - 2 log s]... = (mu - 2)^2 + s^2 - 2 log s: optimum mu = 2, s = 1
    f = lambda x: ((x - 2.0) ** 2).sum(1)  # noqa: E731
    gf = lambda x: 2.0 * (x - 2.0)  # noqa: E731
    pen = lambda q: (-2.0 * np.log(q.scale).sum(), {"scale": -2.0 / q.scale})  # noqa: E731
    q0 = Normal(np.zeros(2), np.full(2, 3.0))
    for est in ("pathwise", "score_function"):
        opts = {"baseline": "loo"} if est == "score_function" else None
        r = bg.estimators.minimize(f, q0, est, steps=400, n_samples=64, seed=1, grad_f=gf, lr=0.05,
                                   penalty=pen, average=0.5, estimator_options=opts)
        np.testing.assert_allclose(r.dist.loc, 2.0, atol=0.05)
        np.testing.assert_allclose(r.dist.scale, 1.0, atol=0.05)
        assert r.trace.shape == (400,) and r.n_samples == 400 * 64
    # SGD with Robbins-Monro steps a_t = 0.5 / (5 + t)^0.7 on (mu, log s), with averaging
    r = bg.estimators.minimize(f, q0, "pathwise", steps=400, n_samples=64, seed=2, grad_f=gf, penalty=pen,
                               optimizer="sgd", lr=0.5, optimizer_options={"t0": 5.0, "kappa": 0.7},
                               positive="exp", average=0.5)
    np.testing.assert_allclose(r.dist.loc, 2.0, atol=0.03)
    np.testing.assert_allclose(r.dist.scale, 1.0, atol=0.03)

    class Plain:  # a user's optimiser: x is the unconstrained vector, updated in place
        def __init__(self, x):
            self.x, self.calls = x, 0

        def step(self, g):
            self.x -= 0.02 * g
            self.calls += 1

    made = []
    r = bg.estimators.minimize(f, q0, "pathwise", steps=600, n_samples=64, seed=3, grad_f=gf, penalty=pen,
                               optimizer=lambda x: made.append(Plain(x)) or made[-1])
    assert made[0].calls == 600
    np.testing.assert_allclose(r.dist.loc, 2.0, atol=0.05)
    np.testing.assert_allclose(r.dist.scale, 1.0, atol=0.05)
    with pytest.raises(TypeError, match="step"):
        bg.estimators.minimize(f, q0, "pathwise", steps=2, grad_f=gf, optimizer=lambda x: object())


def test_minimize_bernoulli_logits_and_fixed_params():
    # minimise E_{Bern(sigmoid(eta))}[(b - 0.9)^2] -> p -> 1 (eta grows); DisARM, logits only
    q0 = bg.distributions.Bernoulli(logits=np.zeros(3))
    r = bg.estimators.minimize(lambda b: ((b - 0.9) ** 2).sum(1), q0, "disarm", steps=200, n_samples=16,
                               lr=0.1)
    assert np.all(r.dist.logits > 3)
    # a Normal with the scale held fixed: only loc moves
    q1 = Normal(np.zeros(2), np.full(2, 0.5))
    r = bg.estimators.minimize(lambda x: ((x - 1.0) ** 2).sum(1), q1, "pathwise", steps=300, n_samples=8,
                               grad_f=lambda x: 2 * (x - 1.0), params=("loc",), lr=0.05, average=0.5)
    np.testing.assert_array_equal(r.dist.scale, 0.5)
    np.testing.assert_allclose(r.dist.loc, 1.0, atol=0.05)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bbvi_dtype_and_same_seed_same_result(dtype):
    D, logp, glogp = _logistic_problem()
    vi = BBVI(logp, D, family="fullrank", grad_log_density=glogp, init_loc=np.zeros(D, dtype=dtype))
    a = vi.fit(steps=20, n_samples=4, seed=7)
    b = vi.fit(steps=20, n_samples=4, seed=7)
    assert a.q.loc.dtype == dtype and a.q.scale_tril.dtype == dtype
    np.testing.assert_array_equal(a.q.loc, b.q.loc)
    np.testing.assert_array_equal(a.elbo, b.elbo)
    c = vi.fit(steps=20, n_samples=4, seed=8)
    assert not np.array_equal(a.q.loc, c.q.loc)


def test_ctrl_c_keeps_parameters_reached():
    D, logp, glogp = _logistic_problem()

    def stop_at_5(W):
        stop_at_5.calls += 1
        if stop_at_5.calls == 6:
            raise KeyboardInterrupt
        return logp(W)

    stop_at_5.calls = 0
    with pytest.warns(RuntimeWarning, match="interrupted"):
        res = BBVI(stop_at_5, D, grad_log_density=glogp).fit(steps=100, n_samples=4, seed=0)
    assert res.interrupted and res.steps == 5 and res.elbo.shape == (5,)
    assert not np.allclose(res.q.loc, 0.0)  # five updates were kept


def test_callback_stops():
    D, logp, glogp = _logistic_problem()
    res = BBVI(logp, D, grad_log_density=glogp).fit(steps=100, n_samples=4, callback=lambda t, q, e: t >= 7)
    assert res.steps == 7 and not res.interrupted


def test_bad_input():
    D, logp, glogp = _logistic_problem()
    with pytest.raises(TypeError, match="log_density"):
        BBVI(None, D)
    with pytest.raises(TypeError, match="grad_log_density"):
        BBVI(logp, D, estimator="pathwise")
    with pytest.raises(ValueError, match="family"):
        BBVI(logp, D, family="diag-ish", grad_log_density=glogp)
    with pytest.raises(ValueError, match="estimator"):
        BBVI(logp, D, estimator="magic")
    with pytest.raises(ValueError, match="measure_valued"):
        BBVI(logp, D, family="fullrank", estimator="measure_valued")
    with pytest.raises(ValueError, match="dim"):
        BBVI(logp, 0, grad_log_density=glogp)
    with pytest.raises(ValueError, match="init_loc"):
        BBVI(logp, D, grad_log_density=glogp, init_loc=np.zeros(D + 1))
    with pytest.raises(ValueError, match="init_scale"):
        BBVI(logp, D, grad_log_density=glogp, init_scale=-1.0)
    vi = BBVI(logp, D, grad_log_density=glogp)
    with pytest.raises(ValueError, match="steps"):
        vi.fit(steps=0)
    with pytest.raises(ValueError, match="n_samples"):
        vi.fit(n_samples=0)
    with pytest.raises(ValueError, match="average"):
        vi.fit(steps=5, average=1.0)
    with pytest.raises(ValueError, match="optimizer"):
        vi.fit(steps=5, optimizer="lbfgs")
    with pytest.raises(ValueError, match="kappa"):
        vi.fit(steps=5, optimizer="sgd", optimizer_options={"kappa": 0.4})
    with pytest.raises(ValueError, match="lr"):
        vi.fit(steps=5, lr=-1.0)
    with pytest.raises(ValueError, match="log_density returned NaN"):
        BBVI(lambda W: np.full(W.shape[0], np.nan), D, grad_log_density=glogp).fit(steps=5)
    with pytest.raises(ValueError, match="log_density must map .* shape"):
        BBVI(lambda W: W, D, grad_log_density=glogp).fit(steps=5)
    with pytest.raises(ValueError, match="grad_log_density returned NaN"):
        BBVI(logp, D, grad_log_density=lambda W: W * np.nan).fit(steps=5)
    with pytest.raises(ValueError, match="grad_log_density must map"):
        BBVI(logp, D, grad_log_density=lambda W: W[:, :1]).fit(steps=5)
    with pytest.raises(ValueError, match="log_density returned NaN"):
        BBVI(lambda W: np.full(W.shape[0], np.nan), D, estimator="vimco").fit(steps=5)
    with pytest.raises(ValueError, match="log_density returned NaN"):
        BBVI(lambda W: np.full(W.shape[0], np.nan), D, estimator="measure_valued").fit(steps=5)
    with pytest.raises(ValueError, match="log_density returned NaN"):
        BBVI(lambda W: np.full(W.shape[0], np.nan), D, estimator="score_function").elbo(
            Normal(np.zeros(D), np.ones(D)))
    with pytest.raises(TypeError, match="grad_log_density"):
        BBVI(logp, D, estimator="dreg")
    with pytest.raises(ValueError, match="meanfield"):
        BBVI(logp, D, family="fullrank", estimator="iwae", grad_log_density=glogp)
    with pytest.raises(TypeError, match="q0"):
        vi.fit(steps=5, q0=MultivariateNormal(np.zeros(D), np.eye(D)))
    q = Normal(np.zeros(2), np.ones(2))
    with pytest.raises(TypeError, match="grad_f"):
        bg.estimators.minimize(lambda x: x.sum(1), q, "pathwise", steps=5)
    with pytest.raises(ValueError, match="params"):
        bg.estimators.minimize(lambda x: x.sum(1), q, "score_function", steps=5, params=("rate",))
    with pytest.raises(ValueError, match="positive"):
        bg.estimators.minimize(lambda x: x.sum(1), q, "score_function", steps=5, positive="square")
    with pytest.raises(TypeError, match="dist"):
        bg.estimators.minimize(lambda x: x.sum(1), "normal", "score_function", steps=5)
    with pytest.raises(TypeError, match="logits"):
        bg.estimators.minimize(lambda x: x.sum(1), bg.distributions.Bernoulli(probs=np.full(2, 0.5)), "arm",
                               steps=5)


@pytest.mark.parametrize("est", ["iwae", "dreg", "vimco"])
def test_iwae_bound_fits_reach_the_posterior_mean(est):
    """The IWAE bound L_K (K = 8) is maximised by q = the exact posterior when it is in the
    family; a mean-field q's mean still lands on the posterior mean m of a Gaussian target
    (the bound's maximiser is symmetric about it). Tolerance as for the ELBO fits above."""
    D, Lam, m, logp, glogp = _linear_problem()
    vi = BBVI(logp, D, family="meanfield", estimator=est, grad_log_density=glogp, estimator_options={"k": 8})
    res = vi.fit(steps=400, n_samples=16, seed=2, lr=0.05, average=0.5)
    sd = np.sqrt(np.diag(np.linalg.inv(Lam)))
    assert np.all(np.abs(res.mean - m) < 0.15 * sd + 0.02), (est, res.mean, m, sd)
    assert res.elbo[-50:].mean() > res.elbo[:10].mean()


# ---------------------------------------------------------------- bad input (the estimators' audit)
def _quad(x):
    return (x * x).sum(1)


def _dquad(x):
    return 2 * x


def test_minimize_checks_its_options_and_sizes_before_the_loop():
    q = Normal(np.zeros(3), np.ones(3))
    run = lambda **kw: bg.estimators.minimize(_quad, q, steps=kw.pop("steps", 2), n_samples=4,  # noqa: E731
                                              grad_f=_dquad, **kw)
    with pytest.raises(ValueError, match=r"steps=1000000000000: the \(steps,\) traces would need"):
        run(steps=10 ** 12)  # np.full's MemoryError
    with pytest.raises(TypeError, match="estimator_options must be a dict"):
        run(estimator_options="loo")  # "dictionary update sequence element #0 ..."
    with pytest.raises(TypeError, match="optimizer_options must be a dict"):
        run(optimizer_options="x")
    with pytest.raises(TypeError, match="optimizer_options must not hold 'lr'"):
        run(optimizer_options={"lr": 0.1})  # "got multiple values for keyword argument 'lr'"
    with pytest.raises(TypeError, match="optimizer_options: .*unexpected keyword argument 'bogus'"):
        run(optimizer_options={"bogus": 1})
    with pytest.raises(ValueError, match="params names a parameter twice"):
        run(params=("loc", "loc"))  # a second copy of loc was optimised but never used
    assert run(params="loc").raw.shape == (3,)  # one name (it was read as 'l', 'o', 'c')


def test_minimize_checks_what_the_penalty_returns():
    q = Normal(np.zeros(3), np.ones(3))
    run = lambda pen: bg.estimators.minimize(_quad, q, steps=2, n_samples=4, grad_f=_dquad,  # noqa: E731
                                             penalty=pen)
    with pytest.raises(ValueError, match="penalty returned a non-finite value"):
        run(lambda q: (np.nan, {}))  # went into the trace unnoticed
    with pytest.raises(ValueError, match="penalty returned NaN or inf in its gradient 'loc'"):
        run(lambda q: (0.0, {"loc": np.full(3, np.inf)}))  # "non-finite gradient ...; lower lr"
    with pytest.raises(ValueError, match="penalty's gradient 'loc' has shape"):
        run(lambda q: (0.0, {"loc": np.zeros(5)}))
    with pytest.raises(TypeError, match=r"penalty must return \(value"):
        run(lambda q: None)


def test_minimize_checks_what_a_custom_estimator_returns():
    q = Normal(np.zeros(3), np.ones(3))
    est = lambda grad: lambda f, d, n, seed, stream: bg.estimators.Estimate(  # noqa: E731
        "x", 0.0, 0.0, grad, {}, n, n, seed)
    run = lambda fn: bg.estimators.minimize(_quad, q, fn, steps=2, n_samples=4)  # noqa: E731
    with pytest.raises(TypeError, match="must return an Estimate"):
        run(lambda f, d, n, seed, stream: 3)  # AttributeError: 'int' object has no attribute 'grad'
    with pytest.raises(ValueError, match=r"returned no gradient for \['scale'\]"):
        run(est({"loc": np.zeros(3)}))  # KeyError: 'scale'
    with pytest.raises(ValueError, match="returned a gradient 'loc' of shape"):
        run(est({"loc": np.zeros(7), "scale": np.zeros(3)}))


def test_minimize_names_lr_when_the_parameters_leave_the_domain():
    # a scale driven to 0 was reported by Normal itself: "scale must be positive"
    q = Normal(np.zeros(2), np.ones(2))
    with pytest.raises(FloatingPointError, match="step 2: the parameters left the distribution's domain.*lower lr"):
        bg.estimators.minimize(_quad, q, steps=5, n_samples=4, grad_f=_dquad, lr=1e300)


def test_bbvi_checks_dim_and_estimator_options_when_built():
    with pytest.raises(ValueError, match="dim=1000000000000: q's parameters would need"):
        BBVI(lambda x: -_quad(x), 10 ** 12, grad_log_density=lambda x: -_dquad(x))  # np.zeros' MemoryError
    with pytest.raises(TypeError, match="estimator_options must be a dict"):
        BBVI(lambda x: -_quad(x), 2, grad_log_density=lambda x: -_dquad(x), estimator_options="loo")
