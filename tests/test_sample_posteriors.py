"""Posteriors represented by weight samples: SG-MCMC (SGLD, SGHMC, cyclical)
and SWAG / MultiSWAG."""
import numpy as np
import pytest

import bayesgrad as bg
from bayesgrad.nn import MLP


def _linear_gaussian(seed=0, N=200, sig=0.5, lam=1.0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, 2))
    y = X @ np.array([1.0, -0.5]) + 0.3 + sig * rng.normal(size=N)
    A = np.hstack([X, np.ones((N, 1))])  # parameter order: W (1, 2), then b
    cov = np.linalg.inv(A.T @ A / sig ** 2 + lam * np.eye(3))
    return X, y, cov @ A.T @ y / sig ** 2, cov


@pytest.mark.parametrize("method", ["sgld", "sghmc"])
def test_sgmcmc_samples_the_exact_linear_gaussian_posterior(method):
    """Posterior mean within 0.2 sd and variances within 25% (the MC error of
    ~400 effective samples is ~0.05 sd and ~7%; the step-size bias ~4%)."""
    X, y, mu, cov = _linear_gaussian()
    q = bg.sgmcmc.SGMCMC(MLP([2, 1], "identity"), "gaussian", method=method, lr=2e-4, friction=0.2, noise=0.5,
                         batch_size=200, prior_precision=1.0).fit(X, y, n_steps=8000, thin=4, seed=1, verbose=0)
    s = q.samples_
    assert s.shape == (1000, 3)
    sd = np.sqrt(np.diag(cov))
    assert np.all(np.abs(s.mean(0) - mu) < 0.2 * sd)
    ratio = s.var(0) / np.diag(cov)
    assert np.all((ratio > 0.75) & (ratio < 1.25)), ratio


def test_sgmcmc_cyclical_keeps_samples_in_the_sampling_stages_and_round_trips(tmp_path):
    X, y, mu, cov = _linear_gaussian()
    q = bg.sgmcmc.SGMCMC(MLP([2, 1], "identity"), "gaussian", method="sgld", lr=4e-4, noise=0.5, batch_size=50,
                         cycles=4, explore=0.5).fit(X, y, n_steps=4000, thin=1, seed=2, verbose=0)
    assert q.samples_.shape[0] == 2000  # the second half of each 1000-step cycle
    assert np.all(np.abs(q.samples_.mean(0) - mu) < 0.5 * np.sqrt(np.diag(cov)))
    pred = q.predict(X[:5])
    assert pred.mean.shape == (5, 1)
    q.save(tmp_path / "q.npz")
    r = bg.sgmcmc.SGMCMC.load(tmp_path / "q.npz")
    np.testing.assert_array_equal(r.samples_, q.samples_)
    np.testing.assert_array_equal(r.predict(X[:5]).mean, pred.mean)


def test_sgmcmc_bad_input():
    m = MLP([2, 1], "identity")
    with pytest.raises(ValueError, match="method"):
        bg.sgmcmc.SGMCMC(m, method="hmc")
    with pytest.raises(ValueError, match="friction"):
        bg.sgmcmc.SGMCMC(m, friction=0)
    with pytest.raises(ValueError, match="burn_in"):
        bg.sgmcmc.SGMCMC(m).fit(np.zeros((4, 2)), np.zeros(4), n_steps=10, burn_in=10, verbose=0)
    with pytest.raises(FloatingPointError, match="lower lr"):
        bg.sgmcmc.SGMCMC(m, lr=10.0, method="sgld", batch_size=4).fit(
            np.ones((4, 2)) * 100, np.zeros(4), n_steps=200, verbose=0)


def test_swag_moments_are_the_moments_of_the_collected_iterates():
    X, y, _, _ = _linear_gaussian(N=120)
    q = bg.swag.SWAG(MLP([2, 4, 1], "tanh"), "gaussian", rank=5, lr=5e-2, noise=0.5, batch_size=20)
    q.fit(X, y, epochs=12, burn_in_epochs=2, map_epochs=20, seed=3, verbose=0, keep_iterates=True)
    it = q.iterates_
    assert it.shape == (12, q.mlp.n_params)
    np.testing.assert_allclose(q.mean_, it.mean(0), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(q.sq_mean_, (it ** 2).mean(0), rtol=1e-12, atol=1e-14)
    running = np.cumsum(it, 0) / np.arange(1, 13)[:, None]
    np.testing.assert_allclose(q.deviations_, (it[-5:] - running[-5:]).T, rtol=1e-10, atol=1e-13)
    # the sampled Gaussian has the stated covariance: 0.5 diag + 0.5 D Dᵀ / (K - 1)
    s = q.sample_params(40000, seed=4).astype(np.float64)
    D = q.deviations_
    want = 0.5 * np.diag(q.diag_var_) + 0.5 * D @ D.T / 4
    got = np.cov(s.T)
    assert np.max(np.abs(got - want)) < 0.05 * np.max(np.abs(want))
    np.testing.assert_allclose(s.mean(0), q.mean_, atol=0.02 * np.sqrt(np.max(np.diag(want))) + 1e-12)


def test_swag_fits_small_data_from_its_own_map_start():
    """Fewer than 50 rows and no theta0: the MAP start trains without a validation split (it passed
    validation=None, which train_map refused, so SWAG and MultiSWAG failed on every small data set)."""
    X, y, _, _ = _linear_gaussian(N=40)
    for cls, kw in ((bg.swag.SWAG, {}), (bg.swag.MultiSWAG, {"n_models": 2})):
        q = cls(MLP([2, 4, 1], "tanh"), "gaussian", rank=3, lr=2e-2, noise=0.5, batch_size=10, **kw)
        q.fit(X, y, epochs=4, map_epochs=60, seed=1, verbose=0)
        mean = q.predict(X, n_samples=20).mean[:, 0]
        assert np.mean((mean - y) ** 2) < 0.5 * np.var(y)  # the start was trained: it explains y
        with pytest.raises(ValueError, match="n_samples=10000000000"):  # named: it said only "shape=(...)"
            q.predict(X, n_samples=10 ** 10)


def test_multiswag_mixes_members_and_round_trips(tmp_path):
    X, y, _, _ = _linear_gaussian(N=80)
    m = bg.swag.MultiSWAG(MLP([2, 3, 1], "relu"), "gaussian", n_models=3, rank=3, lr=2e-2, noise=0.5,
                          batch_size=16, schedule="cyclical")
    m.fit(X, y, epochs=5, map_epochs=10, seed=0, verbose=0)
    assert len({float(s.mean_[0]) for s in m.members}) == 3  # independent MAP solutions
    th = m.sample_params(7, seed=1)
    assert th.shape == (7, m.mlp.n_params)
    pred = m.predict(X[:4], n_samples=9)
    m.save(tmp_path / "ms.npz")
    r = bg.swag.MultiSWAG.load(tmp_path / "ms.npz")
    np.testing.assert_array_equal(r.predict(X[:4], n_samples=9).mean, pred.mean)
    with pytest.raises(ValueError, match="does not hold a SWAG model"):
        bg.swag.SWAG.load(tmp_path / "ms.npz")
    one = m.members[0]  # a single SWAG's own round trip
    one.save(tmp_path / "s.npz")
    r1 = bg.swag.SWAG.load(tmp_path / "s.npz")
    np.testing.assert_array_equal(r1.predict(X[:4], n_samples=9, seed=2).mean,
                                  one.predict(X[:4], n_samples=9, seed=2).mean)
    with pytest.raises(TypeError, match="members"):
        bg.swag.MultiSWAG.from_members([])


def test_deep_ensemble_grows_epistemic_uncertainty_in_the_gap(tmp_path):
    """On the 1-D gap problem the members agree on the data and disagree in the gap."""
    data = bg.datasets.regression_1d_gap(seed=0)
    X, y = data.X, data.y
    ens = bg.ensemble.DeepEnsemble(MLP([1, 50, 50, 2], "relu"), "heteroscedastic_gaussian", n_models=5, lr=3e-3,
                                   batch_size=32).fit(X, y, epochs=300, seed=0)  # ratio 36 (seed 0), 6 (seed 1)
    xs = np.array([[0.0]])  # the middle of the gap [-1.5, 1.5]
    on_data = X
    gap = ens.predict(xs)
    data_pred = ens.predict(on_data)
    assert gap.epistemic_var.mean() > 3 * data_pred.epistemic_var.mean()
    ens.save(tmp_path / "e.npz")
    r = bg.ensemble.DeepEnsemble.load(tmp_path / "e.npz")
    np.testing.assert_array_equal(r.predict(xs).mean, gap.mean)
    assert ens.sample_params(7).shape == (7, ens.mlp.n_params)


def test_deep_ensemble_gaussian_round_trips_its_noise(tmp_path):
    """A homoscedastic ensemble keeps each member's learned noise through save / load (its log_noise array)."""
    X, y, _, _ = _linear_gaussian(N=60)
    ens = bg.ensemble.DeepEnsemble(MLP([2, 4, 1], "tanh"), "gaussian", n_models=2).fit(X, y, 3, seed=0, verbose=0)
    pred = ens.predict(X[:5])
    ens.save(tmp_path / "g.npz")
    r = bg.ensemble.DeepEnsemble.load(tmp_path / "g.npz")
    np.testing.assert_array_equal(r.log_noise_, ens.log_noise_)
    back = r.predict(X[:5])
    np.testing.assert_array_equal(back.mean, pred.mean)
    np.testing.assert_array_equal(back.aleatoric_var, pred.aleatoric_var)


def _rewrite(src, dst, **arrays):
    with np.load(src) as z:
        files = {k: z[k] for k in z.files}
    files.update(arrays)
    np.savez(dst, **files)
    return dst


def test_corrupt_member_arrays_are_refused_at_load(tmp_path, rng):
    # arrays that load_npz does not check (a MultiSWAG's prefixed members, a DeepEnsemble's log_noise)
    # loaded with NaN, strings or a wrong shape, and the first predict failed
    X = rng.normal(size=(20, 2))
    y = X[:, :1] - X[:, 1:]
    ms = bg.swag.MultiSWAG(MLP([2, 3, 1], "tanh"), n_models=2, rank=2, batch_size=10)
    ms.fit(X, y, epochs=2, map_epochs=1, verbose=0).save(tmp_path / "ms.npz")
    ens = bg.ensemble.DeepEnsemble(MLP([2, 3, 1], "tanh"), "gaussian", n_models=2, batch_size=10)
    ens.fit(X, y, 1, verbose=0).save(tmp_path / "e.npz")
    P = ms.mlp.n_params
    bad = {"ms": [("m1_mean", np.full(P, np.nan)), ("m0_deviations", np.full((P, 2), np.inf))],
           "e": [("log_noise", np.full((2, 1), np.nan)), ("log_noise", np.full((2, 1), "x")),
                 ("log_noise", np.zeros((2, 3))), ("log_noise", np.full((2, 1), -1e308))]}
    for name, cls in (("ms", bg.swag.MultiSWAG), ("e", bg.ensemble.DeepEnsemble)):
        for i, (key, value) in enumerate(bad[name]):
            path = _rewrite(tmp_path / f"{name}.npz", tmp_path / f"{name}_{i}.npz", **{key: value})
            with pytest.raises(ValueError, match=key):
                cls.load(path)
        assert np.isfinite(cls.load(tmp_path / f"{name}.npz").predict(X[:2]).mean).all()
