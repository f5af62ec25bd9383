"""bg.laplace.marglik_training (online marginal-likelihood training, Immer et al.
2021): on a linear-Gaussian model, where the Laplace evidence is exact, it must
reach the closed-form empirical-Bayes hyper-parameters; otherwise its result
must be a stationary point of the evidence at the returned parameters; the
update schedule and bad input."""
import numpy as np
import pytest
from scipy import optimize

import bayesgrad as bg


def _linear_data(N=200, D=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, D))
    y = X @ np.array([1.5, -2.0, 0.5])[:D] + 0.7 + 0.3 * rng.normal(size=N)
    return X, y[:, None]


def _empirical_bayes(X, y):
    """argmax over (weight precision a_w, bias precision a_b, sigma) of the exact evidence
    log N(y | 0, sigma^2 I + Phi diag(1/a) Phi^T), Phi = [X, 1], in the (D+1)-dimensional
    form of the matrix determinant lemma and Woodbury's identity."""
    N, D = X.shape
    Phi = np.hstack([X, np.ones((N, 1))])
    G, b, yy = Phi.T @ Phi, Phi.T @ y[:, 0], y[:, 0] @ y[:, 0]

    def nlml(x):
        aw, ab, s = np.exp(x)
        prec = np.append(np.full(D, aw), ab)
        A = G / s ** 2 + np.diag(prec)  # the posterior precision
        quad = (yy - b @ np.linalg.solve(A, b) / s ** 2) / s ** 2
        logdet = 2 * N * np.log(s) + np.linalg.slogdet(A)[1] - np.log(prec).sum()
        return 0.5 * (quad + logdet + N * np.log(2 * np.pi))

    res = optimize.minimize(nlml, np.zeros(3), method="Nelder-Mead",
                            options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 5000})
    return np.exp(res.x), -res.fun


def test_linear_gaussian_reaches_closed_form_empirical_bayes():
    X, y = _linear_data()
    r = bg.laplace.marglik_training(bg.nn.MLP([3, 1]), X, y, "gaussian", structure="full", epochs=300,
                                    batch_size=50, lr=1e-2, burnin_epochs=20, marglik_frequency=10, seed=0)
    (aw, ab, s), lml = _empirical_bayes(X, y)
    # Adam's last steps leave theta within its minibatch noise of the MAP: 1% on the hyper-parameters
    np.testing.assert_allclose(r.prior_precision, [aw, ab], rtol=1e-2)
    assert r.sigma_noise == pytest.approx(s, rel=1e-2)
    assert r.log_marglik[-1] == pytest.approx(lml, abs=0.1)
    assert r.log_marglik[-1] == pytest.approx(r.laplace.log_marginal_likelihood(), rel=1e-12)


def test_classification_result_is_stationary_and_schedule_is_kept():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 4))
    y = (X[:, 0] + X[:, 1] ** 2 > 1).astype(np.int64) + (X[:, 2] > 0.5)
    mlp = bg.nn.MLP([4, 8, 3], "tanh")
    r = bg.laplace.marglik_training(mlp, X, y, "categorical", structure="kron", epochs=10, burnin_epochs=2,
                                    marglik_frequency=3, batch_size=30, lr=1e-2, seed=2)
    updated = [h["epoch"] for h in r.history if "log_marglik" in h]
    assert updated == [1, 4, 7]  # after epochs 2, 5 and 8 (0-based 1, 4, 7); the final one after training
    assert len(r.log_marglik) == 4
    assert r.prior_precision.shape == (4,)  # layerwise: W1, b1, W2, b2
    np.testing.assert_array_equal(r.theta, r.laplace.mean)
    before = r.laplace.log_marginal_likelihood()
    r.laplace.optimize_prior_precision("marglik", max_iter=200)
    assert r.laplace.log_marginal_likelihood() == pytest.approx(before, abs=1e-3)
    assert r.laplace.predict(X[:5]).probs.shape == (5, 3)


def test_bad_input():
    X, y = _linear_data(N=20)
    mlp = bg.nn.MLP([3, 1])
    with pytest.raises(ValueError, match="prior_structure"):
        bg.laplace.marglik_training(mlp, X, y, "gaussian", structure="kron", prior_structure="diag")
    with pytest.raises(ValueError, match="optimize_sigma"):
        bg.laplace.marglik_training(mlp, X, (y[:, 0] > 0).astype(int), "bernoulli", optimize_sigma=True)
    with pytest.raises(ValueError, match="marglik_frequency"):
        bg.laplace.marglik_training(mlp, X, y, "gaussian", marglik_frequency=0)
    with pytest.raises(TypeError, match="mlp"):
        bg.laplace.marglik_training("net", X, y, "gaussian")
    with pytest.raises(ValueError, match="sigma_noise"):
        bg.laplace.marglik_training(mlp, X, y, "gaussian", sigma_noise=-1.0)
