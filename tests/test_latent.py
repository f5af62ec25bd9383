import math
import warnings

import numpy as np
import pytest

import bayesgrad as bg

from helpers import BACKENDS

L = bg.latent


def setup(seed=0, N=6, D=3, K=2, P=2, dtype=np.float64):
    rng = np.random.default_rng(seed)
    p = {"Wz": rng.normal(size=(K, D)) * 0.7, "bz": rng.normal(size=K) * 0.3, "log_sz": rng.normal(size=K) * 0.3,
         "Wy": rng.normal(size=(P, K)), "by": rng.normal(size=P) * 0.3, "log_sy": np.array([-0.3])}
    p = {k: v.astype(dtype) for k, v in p.items()}
    x = rng.normal(size=(N, D)).astype(dtype)
    y = rng.normal(size=(N, P)).astype(dtype)
    return p, x, y


def exact_grad(p, x, y, h=1e-6):
    """Central differences of the exact marginal log-likelihood (float64 closed form)."""
    g = {}
    for k, v in p.items():
        gk = np.zeros_like(v, dtype=np.float64)
        for i in np.ndindex(v.shape):
            up = {kk: vv.astype(np.float64).copy() for kk, vv in p.items()}
            dn = {kk: vv.astype(np.float64).copy() for kk, vv in p.items()}
            up[k][i] += h
            dn[k][i] -= h
            gk[i] = (L.exact_log_likelihood(up, x, y).sum() - L.exact_log_likelihood(dn, x, y).sum()) / (2 * h)
        g[k] = gk
    return g


def test_exact_marginal_matches_sampling():
    # the closed form is the density of y = Wy (mu + sz e1) + by + sy e2
    p, x, _ = setup(N=1, P=1)
    rng = np.random.default_rng(1)
    mu = x @ p["Wz"].T + p["bz"]
    z = mu + np.exp(p["log_sz"]) * rng.normal(size=(200000, 2))
    ys = z @ p["Wy"].T + p["by"] + math.exp(p["log_sy"][0]) * rng.normal(size=(200000, 1))
    # compare the density at a few points with a histogram estimate
    for y0 in (-1.0, 0.0, 1.0):
        frac = np.mean(np.abs(ys[:, 0] - y0) < 0.05) / 0.1
        dens = math.exp(L.exact_log_likelihood(p, x, np.array([[y0]]))[0])
        assert frac == pytest.approx(dens, rel=0.05, abs=0.01)


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-6), (np.float32, 3e-2)])
def test_gradient_matches_finite_differences_with_fixed_eps(dtype, tol):
    p, x, y = setup(dtype=dtype)
    eps = bg.random.normal((5, 6, 2), seed=3, dtype=dtype)
    est = L.mc_log_likelihood(p, x, y, eps=eps)
    assert est.grad["Wz"].dtype == dtype and est.per_point.dtype == dtype
    p64 = {k: v.astype(np.float64) for k, v in p.items()}
    e64 = eps.astype(np.float64)
    h = 1e-6
    for k in L.PARAM_NAMES:
        for i in np.ndindex(p[k].shape):
            up = {kk: vv.copy() for kk, vv in p64.items()}
            dn = {kk: vv.copy() for kk, vv in p64.items()}
            up[k][i] += h
            dn[k][i] -= h
            fd = (L.mc_log_likelihood(up, x, y, eps=e64, grad=False).value
                  - L.mc_log_likelihood(dn, x, y, eps=e64, grad=False).value) / (2 * h)
            assert est.grad[k][i] == pytest.approx(fd, abs=tol, rel=tol), (k, i)


def test_unbiased_likelihood_and_gradient():
    # p_hat = mean_s p(y|z_s) is unbiased for p(y|x), and so is its gradient
    # grad p_hat = p_hat * grad log p_hat. R = 40 replicates of S = 50: the
    # mean's |t| > 5 has probability < 1e-4 per coordinate (t, 39 df, ~2e-5).
    p, x, y = setup(N=1, P=2)
    R, S = 40, 50
    vals, grads = [], []
    for r in range(R):
        est = L.mc_log_likelihood(p, x, y, n_samples=S, seed=11, stream=r)
        ph = math.exp(est.value)
        vals.append(ph)
        grads.append(np.concatenate([ph * est.grad[k].ravel() for k in L.PARAM_NAMES]))
    vals, grads = np.array(vals), np.array(grads)
    exact = math.exp(L.exact_log_likelihood(p, x, y)[0])
    se = vals.std(ddof=1) / math.sqrt(R)
    assert abs(vals.mean() - exact) < 5 * se + 1e-12
    ge = exact_grad(p, x, y)
    gexact = exact * np.concatenate([ge[k].ravel() for k in L.PARAM_NAMES])
    gse = grads.std(0, ddof=1) / math.sqrt(R)
    assert np.all(np.abs(grads.mean(0) - gexact) < 5 * gse + 1e-9)
    assert np.all(np.abs(gexact) > 1e-6)  # every coordinate carries signal


def test_log_estimate_bias_shrinks_with_samples():
    # E[log p_hat] = log p - Var[p(y|z)] / (2 S p^2) + O(S^-2): the error of the
    # mean of R replicates must fit within c/S + 5 standard errors.
    p, x, y = setup(N=1, P=2)
    exact = L.exact_log_likelihood(p, x, y)[0]
    R = 30
    errs = []
    for S in (4, 64, 1024):
        v = np.array([L.mc_log_likelihood(p, x, y, n_samples=S, seed=5, stream=r, grad=False).value
                      for r in range(R)])
        se = v.std(ddof=1) / math.sqrt(R)
        assert abs(v.mean() - exact) < 2.0 / S + 5 * se, S
        errs.append(abs(v.mean() - exact))
    assert errs[2] < errs[0]


def test_naive_sampling_of_z_has_no_gradient():
    # Draw z ~ q(z|x) directly and hold the draws as constants: the estimate
    # (1/S) sum_s p(y|z_s) then does not depend on (Wz, bz, log_sz) at all, so
    # its derivative is exactly 0 -- while the true derivative is not.
    p, x, y = setup(N=1, P=2)
    S = 4000
    mu = x @ p["Wz"].T + p["bz"]
    z = bg.distributions.Normal(mu, np.exp(p["log_sz"])).sample(S, seed=2)[:, 0]  # (S, K), constants

    def naive(params):
        r = y[0] - z @ params["Wy"].T - params["by"]
        sy2 = math.exp(2 * params["log_sy"][0])
        lp = -0.5 * np.sum(r * r, 1) / sy2 - r.shape[1] * (0.5 * math.log(2 * math.pi * sy2))
        return np.log(np.mean(np.exp(lp)))

    ge = exact_grad(p, x, y)
    for k in ("Wz", "bz", "log_sz"):
        up = {kk: vv.copy() for kk, vv in p.items()}
        up[k] = up[k] + 1e-3
        assert naive(up) - naive(p) == 0.0               # held samples: no gradient signal
        assert np.max(np.abs(ge[k])) > 0.05               # but the true gradient is not zero
    # The reparameterised estimate does carry the signal: over R = 20
    # replicates of S = 2000 its mean is within 5 standard errors (plus the
    # O(1/S) bias of a self-normalised gradient, allowed as 5/S) of the truth.
    R = 20
    reps = [L.mc_log_likelihood(p, x, y, n_samples=2000, seed=7, stream=r) for r in range(R)]
    for k in ("Wz", "bz", "log_sz"):
        g = np.array([e.grad[k] for e in reps])
        se = g.std(0, ddof=1) / math.sqrt(R)
        assert np.all(np.abs(g.mean(0) - ge[k]) < 5 * se + 5 / 2000)
        assert np.max(np.abs(g.mean(0))) > 0.05


@pytest.mark.single_backend
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_backend_parity(dtype, tol):
    if len(BACKENDS) < 2:
        pytest.skip("only one backend available")
    p, x, y = setup(N=300, D=4, K=3, P=2, dtype=dtype)  # > 1 row chunk
    res = []
    for be in ("cpu", "numpy"):
        with bg.use_backend(be):
            res.append(L.mc_log_likelihood(p, x, y, n_samples=7, seed=1))
    np.testing.assert_allclose(res[0].per_point, res[1].per_point, rtol=tol, atol=tol)
    for k in L.PARAM_NAMES:
        np.testing.assert_allclose(res[0].grad[k], res[1].grad[k], rtol=tol * 10, atol=tol * 10)


def test_fit_reaches_true_marginal_likelihood():
    rng = np.random.default_rng(0)
    true, _, _ = setup(seed=4, D=2, K=2, P=2)
    N = 400
    x = rng.normal(size=(N, 2))
    z = x @ true["Wz"].T + true["bz"] + np.exp(true["log_sz"]) * rng.normal(size=(N, 2))
    y = z @ true["Wy"].T + true["by"] + math.exp(true["log_sy"][0]) * rng.normal(size=(N, 2))
    m = L.LatentGaussianModel(2, 2, 2, seed=0)
    start = m.exact_log_likelihood(x, y).mean()
    m.fit(x, y, steps=400, n_samples=16, batch_size=100, lr=0.03, progress=False)
    end = m.exact_log_likelihood(x, y).mean()
    ref = L.exact_log_likelihood(true, x, y).mean()
    # the MLE is at least as good as the truth on the training data; allow
    # 0.05 nats per point for SGD noise and the O(1/S) bias of the objective
    assert end > start + 0.2
    assert end > ref - 0.05
    assert len(m.history_) == 400 and not m.interrupted_


def test_fit_is_interruptible():
    p, x, y = setup(N=50)
    m = L.LatentGaussianModel(3, 2, 2, seed=1)

    def cb(t, est):
        if t == 5:
            raise KeyboardInterrupt

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        m.fit(x, y, steps=100, callback=cb, progress=False)
    assert m.interrupted_ and len(m.history_) == 5
    assert any("interrupted" in str(i.message) for i in w)
    assert np.all(np.isfinite(m.params["Wz"]))


def test_latent_bad_input():
    p, x, y = setup()
    with pytest.raises(ValueError, match="columns"):
        L.mc_log_likelihood(p, x[:, :2], y)
    with pytest.raises(ValueError, match="y must have shape"):
        L.mc_log_likelihood(p, x, y[:3])
    with pytest.raises(ValueError, match="finite"):
        L.mc_log_likelihood(p, np.where(x > 1, np.nan, x), y)
    with pytest.raises(ValueError, match="missing"):
        L.mc_log_likelihood({"Wz": p["Wz"]}, x, y)
    with pytest.raises(ValueError, match="bz must have shape"):
        L.mc_log_likelihood({**p, "bz": np.zeros(5)}, x, y)
    with pytest.raises(ValueError, match="n_samples"):
        L.mc_log_likelihood(p, x, y, n_samples=0)
    with pytest.raises(ValueError, match="eps must have shape"):
        L.mc_log_likelihood(p, x, y, eps=np.zeros((3, 6, 5)))
    with pytest.raises(TypeError, match="dict"):
        L.mc_log_likelihood([1, 2], x, y)
    with pytest.raises(ValueError, match="lr"):
        L.LatentGaussianModel(3, 2, 2).fit(x, y, lr=-1.0)


def test_overflow_is_an_error_on_every_backend():
    """Scales beyond the float range: nan per point and gradient were returned (native), or
    the twin raised OverflowError from math.exp (log_sy < -354); lr=inf was accepted and
    left every parameter non-finite; the exact marginal raised OverflowError / LinAlgError."""
    p, x, y = setup()
    for bad, xx, yy in [({"log_sz": np.full(2, 400.0)}, x, y), ({"log_sy": np.array([-400.0])}, x, y),
                        ({}, x, y * 1e200)]:
        with pytest.raises(ValueError, match="the estimate overflowed"):
            L.mc_log_likelihood({**p, **bad}, xx, yy, 4)
    big = L.mc_log_likelihood({**p, "log_sy": np.array([800.0])}, x, y, 4)  # a flat likelihood: finite
    assert np.all(np.isfinite(big.per_point))
    with pytest.raises(ValueError, match="overflows float64"):
        L.exact_log_likelihood({**p, "log_sy": np.array([400.0])}, x, y)
    m = L.LatentGaussianModel(3, 2, 2, seed=0)
    with pytest.raises(ValueError, match="lr must be a finite number"):
        m.fit(x, y, steps=2, lr=np.inf, progress=False)
    with pytest.raises(ValueError, match="fit diverged at step"):
        m.fit(x, y, steps=3, lr=1e300, progress=False)
    assert all(np.all(np.isfinite(v)) for v in m.params.values())  # the last finite parameters are kept
    with pytest.raises(ValueError, match=r"Wz is 2x3"):  # said P x D
        L.mc_log_likelihood(p, x[:, :2], y)
