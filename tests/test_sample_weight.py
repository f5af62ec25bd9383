"""Per-row likelihood weights (issue 18): the MAP / MC-dropout and MFVI epoch kernels and the
Laplace curvature. Integer weights must give the fit (curvature) of the data set with each row
repeated that many times, and weight 0 must equal dropping the row: exactly with full batches,
up to round-off, on each backend."""
import numpy as np
import pytest

import bayesgrad as bg
from bayesgrad import _backend, nn, vi

RNG = np.random.default_rng(11)
X = RNG.normal(size=(14, 3))
Y_REG = X @ [0.5, -1.0, 2.0] + 0.1 * RNG.normal(size=14)
Y_CLS = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)
W = np.array([1, 2, 0, 3, 1, 1, 2, 0, 1, 1, 4, 1, 2, 1])
REP = np.repeat(np.arange(14), W)
KEEP = W > 0

CASES = [("gaussian", Y_REG, 1), ("categorical", Y_CLS, 3)]


@pytest.mark.parametrize("lik,y,K", CASES)
def test_map_weights_are_repeated_rows(lik, y, K):
    mlp = nn.MLP([3, 6, K])
    kw = dict(likelihood=lik, epochs=20, batch_size=1000, lr=1e-2, weight_decay=0.5, learn_noise=lik == "gaussian",
              seed=2)
    a = nn.train_map(mlp, X, y, sample_weight=W, **kw)
    b = nn.train_map(mlp, X[REP], y[REP], **kw)
    c = nn.train_map(mlp, X[KEEP], y[KEEP], sample_weight=W[KEEP], **kw)
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a, c, rtol=1e-10, atol=1e-12)
    ones = nn.train_map(mlp, X, y, sample_weight=np.ones(14), **kw)
    np.testing.assert_allclose(ones, nn.train_map(mlp, X, y, **kw), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("lik,y,K", CASES)
def test_mfvi_weights_are_repeated_rows(lik, y, K):
    """weight_space draws one weight sample per step, independent of the rows."""
    mlp = nn.MLP([3, 6, K])

    def fit(Xa, ya, w=None):
        q = vi.MFVI(mlp, likelihood=lik, estimator="weight_space", n_samples=2, batch_size=1000, lr=1e-2,
                    learn_noise=lik == "gaussian")
        return q.fit(Xa, ya, 15, seed=4, verbose=0, sample_weight=w)

    a = fit(X, y, W)
    np.testing.assert_allclose(a.state_, fit(X[REP], y[REP]).state_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.state_, fit(X[KEEP], y[KEEP], W[KEEP]).state_, rtol=1e-10, atol=1e-12)
    # the ELBO's expected log-likelihood is that of the repeated data set
    np.testing.assert_allclose(a.history_[-1]["expected_loglik"], fit(X[REP], y[REP]).history_[-1]["expected_loglik"],
                               rtol=1e-10)


def test_epoch_kernels_weight_rows_in_a_minibatch():
    """One minibatch step with weights: a row of weight 0 (any target) changes nothing, the
    reported nll is sum_n w_n nll_n computed by hand, and bad weights are refused."""
    k = _backend.kernels()
    mlp = nn.MLP([3, 4, 1])
    theta = mlp.init(seed=0)
    cfg = k.optim.MapConfig(mlp.net_config(k), nn.LIKELIHOODS["gaussian"], batch_size=14,
                            adam=k.optim.AdamConfig(lr=1e-3))
    y = Y_REG[:, None].copy()
    pp = np.zeros(mlp.n_params)

    def step(yy, w):
        state = np.concatenate([theta, [0.0]])
        m, v = np.zeros_like(state), np.zeros_like(state)
        _, stats = k.optim.map_epoch(cfg, state, m, v, 0, X, yy, np.arange(14), pp, w)
        return state, stats

    s1, st1 = step(y, W.astype(float))
    y2 = y.copy()
    y2[W == 0] = 1e3
    s2, st2 = step(y2, W.astype(float))
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_allclose(st1, st2, rtol=1e-14)
    # the reported nll is the weighted sum of the rows' nll
    F = mlp.forward(theta, X)
    per = 0.5 * (Y_REG - F[:, 0]) ** 2 + 0.5 * np.log(2 * np.pi)
    np.testing.assert_allclose(st1[0, 0], np.dot(W, per), rtol=1e-12)
    for bad, msg in [(np.ones(13), "weights must have shape"), (-np.ones(14), "finite and >= 0"),
                     (np.full(14, np.nan), "finite and >= 0")]:
        with pytest.raises(ValueError, match=msg):
            step(y, bad)


@pytest.mark.parametrize("structure", ["diag", "kron", "full", "lowrank"])
@pytest.mark.parametrize("subset", ["all", "last_layer"])
@pytest.mark.parametrize("lik,y,K", CASES)
def test_laplace_weights_are_repeated_rows(structure, subset, lik, y, K):
    mlp = nn.MLP([3, 5, K], activation="tanh")
    theta = nn.train_map(mlp, X, y, lik, epochs=5, batch_size=1000, lr=1e-2, seed=1)
    kw = dict(likelihood=lik, structure=structure, subset=subset, prior_precision=0.7,
              **({"rank": 4, "lowrank_solver": "dense"} if structure == "lowrank" else {}))
    a = bg.laplace.Laplace(mlp, theta, **kw).fit(X, y, sample_weight=W)
    b = bg.laplace.Laplace(mlp, theta, **kw).fit(X[REP], y[REP])
    c = bg.laplace.Laplace(mlp, theta, **kw).fit(X[KEEP], y[KEEP], sample_weight=W[KEEP])
    for other in (b, c):
        np.testing.assert_allclose(a.posterior_precision, other.posterior_precision, rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(a.loss, other.loss, rtol=1e-12)
        np.testing.assert_allclose(a.log_marginal_likelihood(), other.log_marginal_likelihood(), rtol=1e-9)
    assert a.n_data == W.sum()


def test_laplace_weighted_gvp_and_save(tmp_path):
    """The matrix-free products (eigsh's path) of a weighted whole-network fit, and a
    fractional n_data through save/load."""
    mlp = nn.MLP([3, 5, 3], activation="tanh")
    theta = mlp.init(seed=0)
    curv = bg.laplace.Curvature(mlp, theta, "categorical")
    Xc, yc = curv.check_data(X, Y_CLS)
    V = np.random.default_rng(0).normal(size=(2, mlp.n_params))
    curv.weights = W.astype(float)
    got = curv._gvp(Xc, yc, V)
    curv.weights = None
    Xr, yr = curv.check_data(X[REP], Y_CLS[REP])
    np.testing.assert_allclose(got, curv._gvp(Xr, yr, V), rtol=1e-9, atol=1e-10)
    la = bg.laplace.Laplace(mlp, theta, likelihood="categorical", structure="diag").fit(X, Y_CLS,
                                                                                       sample_weight=W * 0.5)
    la.save(tmp_path / "la")
    back = bg.laplace.Laplace.load(tmp_path / "la")
    assert back.n_data == la.n_data == 0.5 * W.sum()
    np.testing.assert_allclose(back.log_marginal_likelihood(), la.log_marginal_likelihood(), rtol=1e-12)
