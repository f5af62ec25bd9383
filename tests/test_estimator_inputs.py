"""Bad input and edge cases of bg.estimators and bg.control_variates (the reliability audit of the
estimators): each test failed before its fix. Every test runs on each backend (conftest.py)."""
import numpy as np
import pytest

import bayesgrad as bg
from bayesgrad import _backend, _checks
from bayesgrad.distributions import Bernoulli, Categorical, Normal
from helpers import BACKENDS

E = bg.estimators
CV = bg.control_variates


def _sq(x):
    return (np.asarray(x, dtype=np.float64) ** 2).reshape(len(x), -1).sum(1)


def _normal(dtype=np.float64):
    return Normal(np.linspace(-1, 1, 3).astype(dtype), np.full(3, 0.7, dtype=dtype))


# ---------------------------------------------------------------- what the user's callables return

def test_complex_values_from_the_users_callables_are_refused_by_name():
    # NumPy's float conversion dropped the imaginary part with a warning only: the estimate used Re f
    d = _normal()
    cplx = lambda x: _sq(x) + 1j  # noqa: E731
    with pytest.raises(TypeError, match="f must return a real array"):
        E.score_function(cplx, d, 8)
    with pytest.raises(TypeError, match="grad_f must return a real array"):
        E.pathwise(_sq, d, 8, grad_f=lambda x: 2 * x + 0j)
    with pytest.raises(TypeError, match="hess_f must return a real array"):
        E.score_function(_sq, d, 8, control_variate="delta", grad_f=lambda x: 2 * x,
                         hess_f=lambda x: np.full(x.shape, 2 + 1j))
    vi = bg.bbvi.BBVI(lambda x: -0.5 * (x * x).sum(1) + 0j, 2, grad_log_density=lambda x: -x)
    with pytest.raises(TypeError, match="log_density must return a real array"):
        vi.fit(steps=1, n_samples=4)


# ---------------------------------------------------------------- flags and options

def test_flags_that_are_not_booleans_are_refused():
    # "no" and 1 counted as True
    b = Bernoulli(logits=np.zeros(2))
    for bad in ("no", 1):
        with pytest.raises(TypeError, match="straight_through"):
            E.gumbel_softmax(_sq, b, 4, grad_f=lambda x: 2 * x, straight_through=bad)
        with pytest.raises(TypeError, match="antithetic"):
            E.expectation(_sq, _normal(), 4, antithetic=bad)
    assert np.isfinite(E.expectation(_sq, _normal(), 4, antithetic=np.bool_(False))[0])


def test_exact_gradient_checks_max_configurations_before_allocating():
    b = Bernoulli(logits=np.zeros(40))
    with pytest.raises(ValueError, match="max_configurations=.*would need"):  # was np.arange's MemoryError
        E.exact_gradient(_sq, b, max_configurations=2 ** 62)
    with pytest.raises(TypeError, match="max_configurations must be an integer"):
        E.exact_gradient(_sq, Bernoulli(logits=np.zeros(2)), max_configurations=10.5)
    with pytest.raises(ValueError, match="max_configurations must be >= 1"):
        E.exact_gradient(_sq, Bernoulli(logits=np.zeros(2)), max_configurations=0)


def test_variance_curve_checks_every_name_and_option_before_any_estimate():
    calls = []

    def make_f(k):
        calls.append(k)
        return _sq, lambda x: 2 * x

    d = _normal()
    with pytest.raises(ValueError, match="estimators must be one of"):  # after the pathwise curve's work
        E.variance_curve(make_f, [1.0, 2.0], d, estimators=("pathwise", "nope"), n_samples=10)
    with pytest.raises(TypeError, match="options must be a dict"):  # AttributeError: 'str' ... 'get'
        E.variance_curve(make_f, [1.0], d, options="loo", n_samples=10)
    with pytest.raises(TypeError, match=r"options\['pathwise'\] must be a dict"):
        E.variance_curve(make_f, [1.0], d, options={"pathwise": 3}, n_samples=10)
    with pytest.raises(ValueError, match=r"options \(a key\) must be one of"):  # a misspelt name was ignored
        E.variance_curve(make_f, [1.0], d, options={"score_fuction": {"baseline": "loo"}}, n_samples=10)
    assert calls == []
    with pytest.raises(TypeError, match="make_f must return a pair"):
        E.variance_curve(lambda k: _sq, [1.0], d, n_samples=10)
    one = E.variance_curve(make_f, [1.0], d, estimators="pathwise", n_samples=10)  # a single name
    assert set(one) == {"k", "pathwise"}


def test_moving_average_baseline_beyond_float32_is_refused():
    # the value became inf in float32 and every gradient NaN
    with pytest.raises(ValueError, match="MovingAverageBaseline's value .* beyond the range of float32"):
        E.score_function(_sq, _normal(np.float32), 8, baseline=CV.MovingAverageBaseline(0.5, 1e300))
    est = E.score_function(_sq, _normal(np.float64), 8, baseline=CV.MovingAverageBaseline(0.5, 1e300))
    assert all(np.isfinite(g).all() for g in est.grad.values())


@pytest.mark.parametrize("dist", [Normal(np.zeros(60000), 1.0), Bernoulli(logits=np.zeros(60000))],
                         ids=["Normal", "Bernoulli"])
def test_measure_valued_refuses_a_batch_whose_points_do_not_fit_before_any_work(dist):
    # each sample's D points of D coordinates: 54 GiB at D = 60000, allocated after the draws and f
    calls = []
    with pytest.raises(ValueError, match="D=60000 coordinates.*would need"):
        E.measure_valued(lambda x: calls.append(1) or _sq(x), dist, 1)
    assert calls == []


def test_n_control_is_checked_before_the_main_draws(monkeypatch):
    # the independent samples were refused by dist.sample only after the n draws and f's evaluation
    monkeypatch.setattr(_checks, "MAX_ALLOCATION_BYTES", 10 ** 6)
    calls = []
    f = lambda x: calls.append(1) or _sq(x)  # noqa: E731
    for kw in ({"baseline": "mean"}, {"control_variate": "delta", "grad_f": lambda x: 2 * x,
                                      "hess_f": lambda x: np.full(x.shape, 2.0)}):
        with pytest.raises(ValueError, match="n_control=100000: the independent samples"):
            E.score_function(f, _normal(), 8, n_control=10 ** 5, **kw)
    assert calls == []
    E.score_function(f, _normal(), 8, n_control=10 ** 5)  # no baseline, no control variate: not drawn


def test_naive_gradient_checks_h_and_evaluates_f_once():
    with pytest.raises(ValueError, match="h must be positive"):
        E.naive_gradient(_sq, _normal(), 4, h=-1.0)
    with pytest.raises(TypeError, match="h must be a real number"):
        E.naive_gradient(_sq, _normal(), 4, h="x")
    calls = []
    d = Normal(np.zeros(500), 1.0)  # 2 x 500 evaluations per parameter coordinate before
    est = E.naive_gradient(lambda x: calls.append(1) or _sq(x), d, 4)
    assert len(calls) == 2 and np.all(est.grad["loc"] == 0) and est.grad["scale"] == 0


def test_per_sample_terms_larger_than_a_draw_are_counted_before_any_work(monkeypatch):
    # setup sized its check by one draw: a Categorical's scores are (n, *batch, K), a MultivariateNormal's
    # scale_tril terms (n, k, k) (K = 20000: 7.5 GiB arrays after a check of 4 MiB, then MemoryError)
    monkeypatch.setattr(_checks, "MAX_ALLOCATION_BYTES", 10 ** 6)
    calls = []
    f = lambda x: calls.append(1) or np.asarray(x, dtype=np.float64).reshape(len(x), -1).sum(1)  # noqa: E731
    g = lambda x: np.ones(np.shape(x))  # noqa: E731
    big = Categorical(logits=np.zeros((2, 2000)))  # 4000 logits, one draw of 2 class indices
    mvn = bg.distributions.MultivariateNormal(np.zeros(300), np.eye(300))
    for run in (lambda: E.score_function(f, big, 20), lambda: E.reinforce_loo(f, big, 20),
                lambda: E.gumbel_softmax(f, big, 20, grad_f=g), lambda: E.rebar(f, big, 20, grad_f=g),
                lambda: E.relax(f, big, 20, hidden=(2,)), lambda: E.vimco(f, big, 5, k=4),
                lambda: E.unordered_set(f, big, 20, k=3), lambda: E.pathwise(f, mvn, 20, grad_f=g)):
        with pytest.raises(ValueError, match="n_samples=.* would need"):
            run()
    # REBAR's 23 per-sample arrays with the temperature's finite difference, where setup's 4 fit
    mid = Categorical(logits=np.zeros((2, 500)))
    with pytest.raises(ValueError, match="n_samples=20: rebar's per-sample arrays would need"):
        E.rebar(f, mid, 20, grad_f=g)
    assert calls == []
    monkeypatch.undo()
    assert np.isfinite(E.rebar(f, mid, 20, grad_f=g).grad["logits"]).all()


def test_gradient_estimates_that_overflow_are_an_error_not_inf_or_nan():
    # a float32 Exponential of rate 1e-30: terms of 1e60 overflowed float32; score_function returned -inf,
    # measure_valued NaN on one backend and -inf on the other
    d = bg.distributions.Exponential(np.array([1e-30, 1.0], np.float32))
    f = lambda x: np.asarray(x, dtype=np.float64).sum(1)  # noqa: E731
    for run in (lambda: E.score_function(f, d, 16), lambda: E.score_function(f, d, 16, baseline="loo"),
                lambda: E.measure_valued(f, d, 8)):
        with pytest.raises(FloatingPointError, match="gradient estimate of 'rate' is not finite.*float64 parameters"):
            run()
    est = E.score_function(f, bg.distributions.Exponential(np.array([1e-30, 1.0])), 16)  # float64 holds them
    assert np.isfinite(est.grad["rate"]).all()


def test_float32_value_standard_error_beyond_the_float32_variance_range_is_finite():
    # the variance of values of 1e25 (1e50) overflowed the float32 output of the kernels: value_stderr inf
    d = _normal(np.float32)
    f = lambda x: np.asarray(x, dtype=np.float64).sum(1) * 1e25  # noqa: E731
    mean, se = E.expectation(f, d, 64, antithetic=False)
    est = E.pathwise(f, d, 64, grad_f=lambda x: np.full(x.shape, 1e25))
    for value, stderr in ((mean, se), (est.value, est.value_stderr)):
        assert np.isfinite(stderr) and 1e23 < stderr < 1e26 and abs(value) < 5 * stderr


# ---------------------------------------------------------------- RelaxSurrogate

def test_relax_surrogate_checks_its_arguments_when_built():
    # activation and seed were refused on first use (after the draws), the flags took any truthy value
    for kw, exc, match in [({"activation": "bogus"}, ValueError, "activation must be one of"),
                           ({"seed": -1}, ValueError, "seed must be in"),
                           ({"relaxed_f": "no"}, TypeError, "relaxed_f must be True or False"),
                           ({"tune_temperature": "no"}, TypeError, "tune_temperature must be True or False"),
                           ({"tune_scale": 1}, TypeError, "tune_scale must be True or False"),
                           ({"hidden": 5}, TypeError, "hidden must be a tuple of ints"),
                           ({"hidden": "10"}, TypeError, "hidden must be a tuple of ints")]:
        with pytest.raises(exc, match=match):
            CV.RelaxSurrogate(**kw)
    with pytest.raises(TypeError, match="hidden must be a tuple of ints"):
        E.relax(_sq, Bernoulli(logits=np.zeros(3)), 4, hidden=5)


def test_relax_surrogate_bind_is_all_or_nothing(monkeypatch):
    # a network that could not be built left dim set without a network or an optimiser: the next call
    # estimated without the network, then raised AttributeError ('NoneType' object has no attribute 'step')
    s = CV.RelaxSurrogate(hidden=(1000,), relaxed_f=False)
    b = Bernoulli(logits=np.zeros(3))
    monkeypatch.setattr(_checks, "MAX_ALLOCATION_BYTES", 10 ** 4)  # the network's init is refused
    with pytest.raises(ValueError, match="would need"):
        E.relax(_sq, b, 4, surrogate=s)
    assert s.dim is None and s.mlp is None and s.params.shape == (2,)
    monkeypatch.undo()
    est = E.relax(_sq, b, 4, surrogate=s)
    assert s.mlp is not None and s.n_updates == 1 and np.isfinite(est.grad["logits"]).all()


# ---------------------------------------------------------------- control-variate coefficients

@pytest.mark.parametrize("c", [1e-310, 1e-320])
def test_delta_control_variate_with_subnormal_values_is_finite(c):
    # the coefficient kernels scaled each column by 1 / its largest |value|, inf for a subnormal: NaN
    est = E.score_function(lambda x: np.full(len(x), c), _normal(), 16, control_variate="delta",
                           grad_f=lambda x: 2 * x, hess_f=lambda x: np.full(x.shape, 2.0))
    for g in list(est.grad.values()) + list(est.info["beta"].values()):
        assert np.isfinite(g).all()


@pytest.mark.single_backend
def test_control_coefficient_kernels_agree_on_subnormal_columns():
    from bayesgrad import _numpy

    rng = np.random.default_rng(0)
    score = rng.normal(size=(50, 3))
    f = rng.normal(size=50) * 1e-310
    h = rng.normal(size=50) + f * 1e300
    ref = np.empty(3)
    _numpy.estimators.control_coefficient(score, f, h, ref)
    assert np.isfinite(ref).all()
    for name in BACKENDS:
        with bg.use_backend(name):
            out = np.empty(3)
            _backend.kernels().estimators.control_coefficient(score, f, h, out)
        np.testing.assert_allclose(out, ref, rtol=1e-9)


def test_optimal_coefficient_of_large_values_is_finite():
    # (a - mean)(b - mean) of values of 1e200 overflowed: beta NaN
    a = np.array([[1e200], [-1e200], [0.0]])
    np.testing.assert_allclose(CV.optimal_coefficient(a, a), [1.0])
    np.testing.assert_allclose(CV.optimal_coefficient(a, 2 * a), [0.5])
    sub = a * 1e-255 * 1e-255  # 1e-310: subnormal
    np.testing.assert_allclose(CV.optimal_coefficient(sub, 2 * sub), [0.5])
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(40, 3)), rng.normal(size=(40, 3))
    ac, bc = a - a.mean(0), b - b.mean(0)
    np.testing.assert_allclose(CV.optimal_coefficient(a, b), (ac * bc).sum(0) / (bc * bc).sum(0), rtol=1e-12)
    assert np.all(CV.optimal_coefficient(a, np.ones((40, 3))) == 0)
