"""Adam (fused native update) against a NumPy float64 reference of
Kingma & Ba's algorithm, and MAP training."""
import numpy as np
import pytest

import bayesgrad as bg
from bayesgrad.optim import Adam
from helpers import simd_and_scalar


def _ref_adam(p, grads, lr, b1, b2, eps):
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for t, g in enumerate(grads, 1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    return p


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_adam_matches_reference(dtype, tol, rng):
    p0 = rng.normal(size=20)
    grads = [rng.normal(size=20) for _ in range(7)]
    p = p0.astype(dtype)
    opt = Adam(p, lr=0.05, betas=(0.8, 0.99), eps=1e-6)
    for g in grads:
        opt.step(g)
    np.testing.assert_allclose(p, _ref_adam(p0, grads, 0.05, 0.8, 0.99, 1e-6), rtol=tol, atol=tol)


def test_adam_minimises_quadratic():
    p = np.array([3.0, -2.0])
    opt = Adam(p, lr=0.1)
    for _ in range(500):
        opt.step(2 * (p - np.array([1.0, 0.5])))
    np.testing.assert_allclose(p, [1.0, 0.5], atol=1e-2)


def test_adam_bad_input():
    with pytest.raises(TypeError):
        Adam([1.0, 2.0])
    with pytest.raises(ValueError, match="lr"):
        Adam(np.zeros(2), lr=-1)
    with pytest.raises(ValueError, match="betas"):
        Adam(np.zeros(2), betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="grad"):
        Adam(np.zeros(2)).step(np.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        Adam(np.zeros(2)).step([np.nan, 0])
    with pytest.raises(ValueError, match="params must not be empty"):  # at the first step, naming grad
        Adam(np.zeros(0))


def test_train_map_reaches_low_loss(rng):
    X = rng.normal(size=(200, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    m = bg.nn.MLP([2, 32, 2], "relu")
    theta, info = bg.nn.train_map(m, X, y, "classification", epochs=60, batch_size=32, lr=1e-2, seed=1,
                                  return_info=True)
    acc = (m.forward(theta, X).argmax(1) == y).mean()
    assert acc > 0.95
    assert info["history"][-1]["nll"] < 0.25 * info["history"][0]["nll"]


def test_train_map_regression_learns_noise(rng):
    X = rng.uniform(-2, 2, size=(300, 1))
    y = 2 * X[:, 0] - 1 + 0.3 * rng.normal(size=300)
    m = bg.nn.MLP([1, 1], "identity")
    theta, info = bg.nn.train_map(m, X, y, epochs=150, batch_size=50, lr=3e-2, learn_noise=True,
                                  return_info=True)
    # least squares and the ML noise of a linear model
    A = np.c_[X, np.ones(300)]
    coef = np.linalg.lstsq(A, y, rcond=None)[0]
    np.testing.assert_allclose(theta, coef, atol=0.02)
    sd = np.sqrt(np.mean((y - A @ coef) ** 2))
    np.testing.assert_allclose(info["noise"][0], sd, rtol=0.05)


def test_train_map_weight_decay_is_the_gaussian_prior(rng):
    # linear-Gaussian model: the MAP with prior precision lam is ridge regression
    X = rng.normal(size=(40, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.5 * rng.normal(size=40)
    m = bg.nn.MLP([3, 1], "identity")
    lam = 5.0
    theta = bg.nn.train_map(m, X, y, epochs=1500, batch_size=40, lr=1e-2, weight_decay=lam, noise=0.5)
    A = np.c_[X, np.ones(40)]
    ridge = np.linalg.solve(A.T @ A / 0.25 + lam * np.eye(4), A.T @ y / 0.25)
    np.testing.assert_allclose(theta, ridge, atol=2e-3)


def test_train_map_validation_and_same_on_backends(rng):
    X = rng.normal(size=(60, 2))
    y = X.sum(1) + 0.1 * rng.normal(size=60)
    m = bg.nn.MLP([2, 8, 1], "tanh")
    th, info = bg.nn.train_map(m, X, y, epochs=5, batch_size=16, validation=0.25, patience=2, seed=4,
                               return_info=True)
    assert all("val_loss" in h for h in info["history"])
    assert len(info["history"]) <= 5
    if bg._backend.native_available():
        with bg.use_backend("numpy"):
            th_np = bg.nn.train_map(m, X, y, epochs=5, batch_size=16, validation=0.25, patience=2, seed=4)
        with bg.use_backend("cpu"):
            th_c = bg.nn.train_map(m, X, y, epochs=5, batch_size=16, validation=0.25, patience=2, seed=4)
        np.testing.assert_allclose(th_c, th_np, rtol=1e-9, atol=1e-11)


def test_train_map_bad_input(rng):
    m = bg.nn.MLP([2, 3, 1])
    X = rng.normal(size=(10, 2))
    with pytest.raises(ValueError, match="finite"):
        bg.nn.train_map(m, X, np.full(10, np.nan))
    with pytest.raises(ValueError, match="y"):
        bg.nn.train_map(m, X, np.zeros(9))
    with pytest.raises(ValueError, match="batch_size"):
        bg.nn.train_map(m, X, np.zeros(10), batch_size=0)
    with pytest.raises(ValueError, match="validation"):
        bg.nn.train_map(m, X, np.zeros(10), validation=1.5)
    with pytest.raises(ValueError, match="weight_decay"):
        bg.nn.train_map(m, X, np.zeros(10), weight_decay=-1.0)
    with pytest.raises(ValueError, match="epochs"):
        bg.nn.train_map(m, X, np.zeros(10), epochs=0)


def test_ctrl_c_keeps_what_was_trained():
    from bayesgrad import _training

    def one_epoch(e):
        if e == 2:
            raise KeyboardInterrupt
        return {"loss": float(e)}

    with pytest.warns(RuntimeWarning, match="interrupted"):
        hist, interrupted = _training.run_epochs(10, one_epoch, verbose=0)
    assert interrupted and [h["loss"] for h in hist] == [0.0, 1.0]
    # with validation the best snapshot is restored
    state = {"x": 0}

    def ep(e):
        state["x"] = e
        return {}

    vals = iter([3.0, 1.0, 2.0, 5.0, 6.0])
    hist, _ = _training.run_epochs(5, ep, verbose=0, validate=lambda: next(vals), patience=2,
                                   snapshot=lambda: state["x"], restore=lambda s: state.update(x=s))
    assert len(hist) == 4 and state["x"] == 1


@pytest.mark.single_backend
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_map_epoch_avx2_agrees_with_scalar_reference(dtype, tol):
    """The AVX2 build of the MAP weight-decay + Adam pass against the
    baseline-compiled scalar path of the same core (simd_limit("scalar")):
    parameters, moments and objectives agree up to float rounding. P = 1043
    is not a multiple of the lanes, so the tails run too."""
    from bayesgrad import _backend, _training
    from bayesgrad.nn import LIKELIHOODS, MLP
    if not _backend.native_available():
        pytest.skip("native core not built")
    core = _backend._core
    rng = np.random.default_rng(4)
    m = MLP([9, 41, 31, 3], "relu")
    X = rng.normal(size=(40, 9)).astype(dtype)
    y = rng.integers(0, 3, 40)[:, None].astype(dtype)
    state0 = np.concatenate([m.init(seed=1, dtype=dtype), np.zeros(1, dtype)])
    prec = rng.uniform(0, 2, m.n_params).astype(dtype)

    def run():
        st = state0.copy()
        mv = [np.zeros_like(st), np.zeros_like(st)]
        cfg = core.optim.MapConfig(m.net_config(core), LIKELIHOODS["categorical"], dropout_stream=1, batch_size=8,
                                   adam=core.optim.AdamConfig(lr=1e-2))
        _, stats = core.optim.map_epoch(cfg, st, mv[0], mv[1], 0, X, y, _training.permutation(40, 0, 0, 0), prec)
        return st, mv[0], mv[1], stats

    fast, ref = simd_and_scalar(run)
    for a, b in zip(fast, ref):
        assert np.all(np.isfinite(b))
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * np.max(np.abs(b)))
