"""SGD with Robbins-Monro step sizes and Polyak averaging (bg.optim).

On a quadratic with additive Gaussian gradient noise the SGD recursion is
linear, so the law of every iterate is known exactly: with curvature lam,
e_t = (1 - a_t lam) e_{t-1} and v_t = (1 - a_t lam)^2 v_{t-1} + a_t^2 s^2 give
theta_t - c ~ N(e_t, v_t). Many independent coordinates are independent
replicates, so the tests compare the empirical mean and variance with e_T, v_T.
"""
import numpy as np
import pytest

import bayesgrad as bg
from bayesgrad import _backend
from bayesgrad.optim import SGD, PolyakAverage


def _noisy_quadratic_run(dtype, D, lam, s, T, lr, t0, kappa, seed=7, average_from=None):
    c = np.linspace(-1.0, 1.0, D)
    p = np.full(D, 3.0, dtype=dtype)
    opt = SGD(p, lr=lr, t0=t0, kappa=kappa)
    avg = PolyakAverage(D) if average_from is not None else None
    for t in range(1, T + 1):
        xi = bg.random.normal(D, seed=seed, stream=bg.random.fold_in(5, t))
        opt.step(lam * (p - c) + s * xi)
        if avg is not None and t > average_from:
            avg.update(p)
    return p.astype(np.float64) - c, (avg.mean - c if avg is not None else None)


def _exact_law(x0, lam, s, T, lr, t0, kappa):
    e, v = x0, 0.0
    for t in range(1, T + 1):
        a = lr / (t0 + t) ** kappa
        e, v = (1 - a * lam) * e, (1 - a * lam) ** 2 * v + a * a * s * s
    return e, v


@pytest.mark.parametrize("kappa", [1.0, 0.7])
def test_sgd_robbins_monro_law_on_noisy_quadratic(kappa):
    D, lam, s, lr, t0 = 4000, 2.0, 1.0, 1.0, 2.0
    for T in (50, 400):
        err, _ = _noisy_quadratic_run(np.float64, D, lam, s, T, lr, t0, kappa)
        e, v = _exact_law(3.0 - np.linspace(-1, 1, D), lam, s, T, lr, t0, kappa)
        z = err - e
        # mean within 4.5 standard errors; variance within 4.5 sd of its chi^2 law
        # (each check fails by chance with probability < 1e-5)
        assert abs(z.mean()) < 4.5 * np.sqrt(v / D)
        assert abs(z.var() / v - 1) < 4.5 * np.sqrt(2.0 / D)
    # Robbins-Monro: the variance keeps shrinking (~ a_T s^2 / (2 lam)), it does not plateau
    _, v50 = _exact_law(0.0, lam, s, 50, lr, t0, kappa)
    _, v400 = _exact_law(0.0, lam, s, 400, lr, t0, kappa)
    assert v400 < v50 * (52 / 402) ** kappa * 1.5


def test_polyak_average_beats_last_iterate():
    # kappa < 1 plus averaging: the averaged iterate's variance ~ s^2 / (lam^2 n) (Polyak-Juditsky),
    # far below that of the last iterate.
    D, lam, s, T = 2000, 2.0, 1.0, 600
    err, avg_err = _noisy_quadratic_run(np.float64, D, lam, s, T, 1.0, 1.0, 0.6, average_from=T // 2)
    pj = s * s / (lam * lam * (T // 2))
    _, v_last = _exact_law(0.0, lam, s, T, 1.0, 1.0, 0.6)
    assert np.mean(avg_err ** 2) < 1.3 * pj  # the chi^2 spread of the mean square is ~3% at D = 2000
    assert np.mean(err ** 2) > 0.8 * v_last
    assert pj < 0.35 * v_last


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sgd_step_is_exact_update(dtype, rng):
    p0 = rng.normal(size=9).astype(dtype)
    g = rng.normal(size=9).astype(dtype)
    p = p0.copy()
    opt = SGD(p, lr=0.3, t0=4.0, kappa=0.75)
    assert opt.rate() == pytest.approx(0.3 / 5.0 ** 0.75, rel=1e-15)
    opt.step(g)
    opt.step(g)
    ref = p0.copy()
    for t in (1, 2):
        ref = ref - dtype(0.3 / (4.0 + t) ** 0.75) * g
    np.testing.assert_array_equal(p, ref)
    assert opt.t == 2 and p.dtype == dtype


@pytest.mark.single_backend
@pytest.mark.skipif(not _backend.native_available(), reason="needs the native core")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sgd_native_matches_numpy(dtype, rng):
    out = {}
    g = rng.normal(size=(5, 101)).astype(dtype)
    for b in ("cpu", "numpy"):
        p = np.linspace(-1, 1, 101).astype(dtype)
        with bg.use_backend(b):
            opt = SGD(p, lr=0.1, t0=3.0, kappa=0.9)
            for gi in g:
                opt.step(gi)
        out[b] = p
    np.testing.assert_array_equal(out["cpu"], out["numpy"])


def test_sgd_bad_input():
    with pytest.raises(TypeError, match="params"):
        SGD([1.0, 2.0])
    with pytest.raises(ValueError, match="params"):
        SGD(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="params must not be empty"):
        SGD(np.zeros(0))
    with pytest.raises(ValueError, match="kappa"):
        SGD(np.zeros(2), kappa=0.5)
    with pytest.raises(ValueError, match="kappa"):
        SGD(np.zeros(2), kappa=1.5)
    with pytest.raises(ValueError, match="lr"):
        SGD(np.zeros(2), lr=0.0)
    with pytest.raises(ValueError, match="t0"):
        SGD(np.zeros(2), t0=-1.0)
    with pytest.raises(ValueError, match="finite"):
        SGD(np.zeros(2), lr=np.inf)
    with pytest.raises(ValueError, match="grad"):
        SGD(np.zeros(2)).step(np.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        SGD(np.zeros(2)).step([np.nan, 0.0])
    k = bg._backend.kernels()
    with pytest.raises(ValueError, match="SgdConfig: kappa"):
        k.optim.SgdConfig(1.0, 0.0, 0.3)
    with pytest.raises(ValueError, match="t must"):
        k.optim.sgd_update(np.zeros(2), np.zeros(2), 0, k.optim.SgdConfig(1.0, 0.0, 0.7))
    with pytest.raises(ValueError, match="x must"):
        PolyakAverage(2).update(np.zeros(3))
    with pytest.raises(ValueError, match="x must be finite"):  # a NaN iterate was averaged in
        PolyakAverage(2).update(np.array([np.nan, 0.0]))
    with pytest.raises(TypeError, match="x must be a real numeric array"):
        PolyakAverage(2).update(np.array(["a", "b"]))


def test_polyak_average_size_and_extreme_iterates():
    # size = 10**12 reached np.zeros' MemoryError; (x - mean) / k of iterates +-1.7e308 overflowed to -inf
    with pytest.raises(ValueError, match="size=1000000000000: the running mean would need"):
        PolyakAverage(10 ** 12)
    avg = PolyakAverage(2)
    avg.update(np.full(2, 1.7e308))
    np.testing.assert_array_equal(avg.update(np.full(2, -1.7e308)), 0.0)
    avg = PolyakAverage(3)
    xs = np.random.default_rng(0).normal(size=(50, 3))
    for x in xs:
        avg.update(x)
    np.testing.assert_allclose(avg.mean, xs.mean(0), rtol=1e-13, atol=1e-15)

