"""The deep-ensemble epoch (``optim.ensemble_epoch``: M MAP trainings in one native
call) and ``DeepEnsemble.fit`` on it: backend parity, members equal to lone MAP
trainings, exact row weights, the fast-gradient-sign point, and adversarial training."""
import numpy as np
import pytest

import bayesgrad as bg
from bayesgrad import _backend
from bayesgrad.nn import LIKELIHOODS, MLP
from helpers import BACKENDS

# (likelihood, output width K, target width Dy)
CASES = [("heteroscedastic_gaussian", 4, 2), ("gaussian", 2, 2), ("categorical", 3, 1), ("bernoulli", 2, 2)]


def _data(lik, K, Dy, N, rng, dtype=np.float64):
    X = rng.normal(size=(N, 3))
    if lik == "categorical":
        y = rng.integers(0, K, size=(N, 1))
    elif lik == "bernoulli":
        y = rng.integers(0, 2, size=(N, Dy))
    else:
        y = rng.normal(size=(N, Dy))
    return X.astype(dtype), y.astype(dtype)


def _run(k, lik, K, Dy, X, y, perms, weights, adv, state0, *, lr=0.01, eps=1e-8, wd=0.3, batch_size=5, slices=(15,)):
    net = k.mlp.NetConfig((3, 7, 5, K), 2)
    cfg = k.optim.EnsembleConfig(net, LIKELIHOODS[lik], learn_noise=lik == "gaussian", weight_decay=wd,
                                 batch_size=batch_size, adam=k.optim.AdamConfig(lr=lr, eps=eps),
                                 adv_eps=[0.1, 0.2, 0.05] if adv else [])
    st = state0.copy()
    m, v = np.zeros_like(st), np.zeros_like(st)
    step, parts, i0 = 0, [], 0
    for i1 in list(slices) + [perms.shape[1]]:  # slices at minibatch boundaries continue the epoch
        step, stats = k.optim.ensemble_epoch(cfg, st, m, v, step, X, y, np.ascontiguousarray(perms[:, i0:i1]),
                                             weights)
        parts.append(stats)
        i0 = i1
    return step, np.concatenate(parts), st


@pytest.mark.single_backend
@pytest.mark.skipif(len(BACKENDS) < 2, reason="needs the native core")
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-11), (np.float32, 2e-4)])
@pytest.mark.parametrize("lik,K,Dy", CASES)
@pytest.mark.parametrize("adv", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_ensemble_epoch_native_equals_numpy(lik, K, Dy, adv, weighted, dtype, tol):
    rng = np.random.default_rng(0)
    N, M = 23, 3
    X, y = _data(lik, K, Dy, N, rng, dtype)
    P = bg.nn.MLP([3, 7, 5, K], "tanh").n_params
    state0 = (0.5 * rng.normal(size=(M, P + Dy))).astype(dtype)
    perms = np.stack([rng.permutation(N) for _ in range(M)]).astype(np.int64)
    w = rng.uniform(0, 2, N).astype(dtype) if weighted else None
    out = []
    for name in BACKENDS:
        with _backend.use_backend(name):
            out.append(_run(_backend.kernels(), lik, K, Dy, X, y, perms, w, adv, state0))
    (s0, st0, th0), (s1, st1, th1) = out
    assert s0 == s1 == 5
    assert st0.shape == (5, M, 2)
    np.testing.assert_allclose(st0, st1, rtol=tol, atol=tol)
    np.testing.assert_allclose(th0, th1, rtol=tol, atol=tol)


def test_members_equal_lone_map_epochs():
    """Member s of one call follows exactly the trajectory of map_epoch on its own rows."""
    k = _backend.kernels()
    rng = np.random.default_rng(1)
    N, M, K = 30, 4, 2
    X, y = _data("gaussian", K, K, N, rng)
    net = k.mlp.NetConfig((3, 7, 5, K), 2)
    P = net.n_params
    state0 = 0.5 * rng.normal(size=(M, P + K))
    perms = np.stack([rng.permutation(N) for _ in range(M)]).astype(np.int64)
    _, stats, joint = _run(k, "gaussian", K, K, X, y, perms, None, False, state0, slices=())
    adam = k.optim.AdamConfig(lr=0.01)
    cfg = k.optim.MapConfig(net, LIKELIHOODS["gaussian"], learn_noise=True, batch_size=5, adam=adam)
    for s in range(M):
        st = state0[s].copy()
        m, v = np.zeros_like(st), np.zeros_like(st)
        _, lone = k.optim.map_epoch(cfg, st, m, v, 0, X, y, perms[s], np.full(P, 0.3))
        np.testing.assert_allclose(joint[s], st, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(stats[:, s], lone, rtol=1e-12)


def test_weight_two_equals_a_duplicated_row():
    """Full-batch training: weight 2 on a row is that row twice (the exact weighted likelihood)."""
    k = _backend.kernels()
    rng = np.random.default_rng(2)
    N, K = 12, 4
    X, y = _data("heteroscedastic_gaussian", K, 2, N, rng)
    w = np.ones(N)
    w[[3, 7]] = 2.0
    X2, y2 = np.concatenate([X, X[[3, 7]]]), np.concatenate([y, y[[3, 7]]])
    P = bg.nn.MLP([3, 7, 5, K]).n_params
    state0 = 0.5 * rng.normal(size=(1, P + 2))
    results = []
    for Xa, ya, wa in ((X, y, w), (X2, y2, None)):
        n = Xa.shape[0]
        perms = np.tile(np.arange(n), 6)[None].astype(np.int64)  # six full-batch steps
        results.append(_run(k, "heteroscedastic_gaussian", K, 2, Xa, ya, perms, wa, False, state0,
                            batch_size=n, slices=()))
    np.testing.assert_allclose(results[0][2], results[1][2], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-10)


def test_weighted_gradient_and_adversarial_point_match_finite_differences():
    """With Adam's eps huge the first step is -lr/eps * gradient: the kernel's gradient of
    sum_n w_n (nll(x_n) + nll(x_n + eps sign(d nll / d x_n))) + prior, the adversarial
    points held fixed (fast gradient sign), against central differences."""
    k = _backend.kernels()
    rng = np.random.default_rng(3)
    N, K = 9, 2
    lik = "heteroscedastic_gaussian"
    X, y = _data(lik, K, 1, N, rng)
    mlp = MLP([3, 7, 5, K], "tanh")
    P = mlp.n_params
    w = rng.uniform(0, 2, N)
    eps_x = np.array([0.1, 0.2, 0.05])
    state0 = 0.5 * rng.normal(size=(1, P + 1))
    theta = state0[0, :P]
    # the FGSM points from the engine's input gradient, computed here through vjp
    F = mlp.forward(theta, X)
    r = y[:, 0] - F[:, 0]
    e = np.exp(-F[:, 1])
    g_out = np.stack([-r * e, 0.5 * (1 - r * r * e)], axis=1)
    _, gx = mlp.vjp(theta, X, g_out, wrt_input=True)
    Xa = X + eps_x * np.sign(gx)

    def objective(t):
        return float(w @ (-_rows(mlp, t, X, y) - _rows(mlp, t, Xa, y)) + 0.5 * 0.3 * t @ t)

    fd = np.array([(objective(theta + h) - objective(theta - h)) / 2e-6 for h in 1e-6 * np.eye(P)])
    big = 1e9
    _, stats, st = _run(k, lik, K, 1, X, y, np.arange(N)[None].astype(np.int64), w, True, state0, lr=big,
                        eps=big, batch_size=N, slices=())
    grad = -(st[0, :P] - theta) * (1 + np.abs(fd) / big)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats[0, 0, 1], objective(theta), rtol=1e-12)
    np.testing.assert_allclose(stats[0, 0, 0], float(-w @ _rows(mlp, theta, X, y)), rtol=1e-12)


def _rows(mlp, theta, X, y):
    """Per-row heteroscedastic Gaussian log-likelihood (N,)."""
    F = mlp.forward(theta, X)
    return -0.5 * ((y[:, 0] - F[:, 0]) ** 2 * np.exp(-F[:, 1]) + F[:, 1] + np.log(2 * np.pi))


def test_ensemble_epoch_bad_input():
    k = _backend.kernels()
    net = k.mlp.NetConfig((3, 4, 2), 1)
    with pytest.raises(ValueError, match="adv_eps"):
        k.optim.EnsembleConfig(net, 0, adv_eps=[0.1])
    with pytest.raises(ValueError, match="weight_decay"):
        k.optim.EnsembleConfig(net, 0, weight_decay=-1.0)
    cfg = k.optim.EnsembleConfig(net, 0)
    P = net.n_params
    st = np.zeros((2, P + 2))
    X, y = np.zeros((5, 3)), np.zeros((5, 2))
    perms = np.zeros((2, 5), dtype=np.int64)
    with pytest.raises(ValueError, match="state"):
        k.optim.ensemble_epoch(cfg, np.zeros((3, P + 2)), st.copy(), st.copy(), 0, X, y, perms)
    with pytest.raises(ValueError, match="perm"):
        k.optim.ensemble_epoch(cfg, st, st.copy(), st.copy(), 0, X, y, perms + 5)
    with pytest.raises(ValueError, match="sample_weight"):
        k.optim.ensemble_epoch(cfg, st, st.copy(), st.copy(), 0, X, y, perms, np.full(5, -1.0))
    with pytest.raises(ValueError, match="sample_weight"):
        k.optim.ensemble_epoch(cfg, st, st.copy(), st.copy(), 0, X, y, perms, np.ones(4))


def test_deep_ensemble_fit_equals_members_trained_alone():
    """One call for all members gives each member what ``train_map`` on its own stream gives."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(60, 2))
    y = np.sin(X[:, 0]) + 0.1 * rng.normal(size=60)
    mlp = MLP([2, 16, 2], "relu")
    ens = bg.ensemble.DeepEnsemble(mlp, n_models=3, lr=5e-3, batch_size=16, weight_decay=1e-2, init="auto")
    ens.fit(X, y, 7, seed=3)  # the 7 epochs in one native call (small network, no validation)
    for m in range(3):
        alone = bg.nn.train_map(mlp, X, y, "heteroscedastic_gaussian", epochs=7, batch_size=16, lr=5e-3,
                                weight_decay=1e-2, seed=3, stream=bg.random.fold_in(0, m))
        np.testing.assert_allclose(ens.thetas_[m], alone, rtol=1e-10, atol=1e-12)
    assert len(ens.history_) == 3 and len(ens.history_[0]) == 7


def test_deep_ensemble_validation_and_sample_weight(tmp_path):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(80, 2))
    y = (X[:, 0] > 0).astype(int)
    mlp = MLP([2, 8, 2], "relu")
    ens = bg.ensemble.DeepEnsemble(mlp, "categorical", n_models=2, lr=1e-2, validation=0.25, patience=3)
    ens.fit(X, y, 40, sample_weight=np.where(y == 1, 2.0, 1.0), seed=0)
    assert ens.best_epochs_.shape == (2,)
    for m in range(2):  # each member keeps its epoch of lowest validation loss
        vals = [h["val_loss"] for h in ens.history_[m]]
        assert ens.best_epochs_[m] == int(np.argmin(vals[:ens.best_epochs_[m] + 4]))
    assert (ens.predict(X).probs.argmax(1) == y).mean() > 0.9
    with pytest.raises(ValueError, match="sample_weight"):
        ens.fit(X, y, 2, sample_weight=-np.ones(80))
    with pytest.raises(ValueError, match="sample_weight"):
        ens.fit(X, y, 2, sample_weight=np.ones(3))


def test_adversarial_training_runs_and_round_trips(tmp_path):
    data = bg.datasets.regression_1d_gap(seed=0)
    ens = bg.ensemble.DeepEnsemble(MLP([1, 20, 2], "relu"), n_models=2, lr=1e-2, adversarial=0.01)
    ens.fit(data.X, data.y, 20, seed=0)
    plain = bg.ensemble.DeepEnsemble(MLP([1, 20, 2], "relu"), n_models=2, lr=1e-2).fit(data.X, data.y, 20, seed=0)
    assert not np.allclose(ens.thetas_, plain.thetas_)  # the adversarial term changes the trajectory
    assert np.all(np.isfinite(ens.predict(data.X).mean))
    ens.save(tmp_path / "a.npz")
    assert bg.ensemble.DeepEnsemble.load(tmp_path / "a.npz").adversarial == 0.01
    with pytest.raises(ValueError, match="adversarial"):
        bg.ensemble.DeepEnsemble(MLP([1, 4, 2]), adversarial=-0.1)


@pytest.mark.parametrize("lik,K", [("gaussian", 2), ("heteroscedastic_gaussian", 2), ("categorical", 3),
                                   ("bernoulli", 2)])
def test_weighted_nll_grad_equals_duplicated_rows(lik, K):
    rng = np.random.default_rng(6)
    Dy = bg.nn.target_dim(lik, K)
    X, y = _data(lik, K, Dy, 10, rng)
    mlp = MLP([3, 6, K], "tanh")
    theta = mlp.init(seed=1)
    w = np.ones(10)
    w[[2, 5]] = [2.0, 3.0]
    rows = np.concatenate([np.arange(10), [2, 5, 5]])
    val, g = bg.sgmcmc.weighted_nll_grad(mlp, theta, X, y, lik, 0.7, w)
    ref, gref = mlp.nll(theta, X[rows], y[rows], lik, 0.7, grad=True)
    np.testing.assert_allclose(val, ref, rtol=1e-12)
    np.testing.assert_allclose(g, gref, rtol=1e-10, atol=1e-12)
    # negative weights (an NLL of -200 was returned) and weights of another length are refused by name
    for bad in (-w, w[:4]):
        with pytest.raises(ValueError, match="weights"):
            bg.sgmcmc.weighted_nll_grad(mlp, theta, X, y, lik, 0.7, bad)


def test_swag_and_sgmcmc_sample_weight():
    """Unit weights change nothing; zero weights remove rows; bad weights are refused."""
    rng = np.random.default_rng(7)
    X = rng.normal(size=(40, 2))
    y = X[:, 0] + 0.1 * rng.normal(size=40)
    mlp = MLP([2, 8, 1], "tanh")
    theta0 = mlp.init(seed=0)
    opts = dict(theta0=theta0, seed=0, verbose=0)
    a = bg.swag.SWAG(mlp, rank=3, lr=1e-2).fit(X, y, 4, **opts)
    b = bg.swag.SWAG(mlp, rank=3, lr=1e-2).fit(X, y, 4, sample_weight=np.ones(40), **opts)
    np.testing.assert_allclose(a.mean_, b.mean_, rtol=1e-9, atol=1e-12)
    s1 = bg.sgmcmc.SGMCMC(mlp, lr=1e-4, batch_size=40).fit(X, y, 30, **opts)
    w = np.r_[np.ones(30), np.zeros(10)]
    s2 = bg.sgmcmc.SGMCMC(mlp, lr=1e-4, batch_size=40).fit(X, y, 30, sample_weight=w, **opts)
    # full batches: zero-weight rows drop out of U, whose minibatch estimate is N/B * sum = sum
    s3 = bg.sgmcmc.SGMCMC(mlp, lr=1e-4, batch_size=30).fit(X[:30], y[:30], 30, **opts)
    np.testing.assert_allclose(s2.samples_, s3.samples_, rtol=1e-9, atol=1e-12)
    assert not np.allclose(s1.samples_, s2.samples_)
    ms = bg.swag.MultiSWAG(mlp, n_models=2, rank=3, lr=1e-2).fit(X, y, 3, sample_weight=2 * np.ones(40), seed=0,
                                                                   verbose=0, map_epochs=5)
    assert np.all(np.isfinite(ms.predict(X[:3]).mean))
    with pytest.raises(ValueError, match="sample_weight"):
        bg.sgmcmc.SGMCMC(mlp).fit(X, y, 10, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="sample_weight"):
        bg.swag.SWAG(mlp, rank=3).fit(X, y, 4, sample_weight=-np.ones(40), theta0=theta0)


def test_ensemble_epoch_same_for_any_thread_count():
    """Members with small products run one per worker thread (20-64-64-3 at batch 32: every
    product < 2^18, B P >= 2^17), else through one S = M pass: the same numbers."""
    k = _backend.kernels()
    rng = np.random.default_rng(8)
    N, M, sizes = 80, 3, (20, 64, 64, 3)
    X = rng.normal(size=(N, 20))
    y = rng.integers(0, 3, size=(N, 1)).astype(np.float64)
    net = k.mlp.NetConfig(sizes, 1)
    P = net.n_params
    cfg = k.optim.EnsembleConfig(net, LIKELIHOODS["categorical"], batch_size=32, adv_eps=[0.05] * 20)
    state0 = 0.1 * rng.normal(size=(M, P + 1))
    perms = np.stack([rng.permutation(N) for _ in range(M)]).astype(np.int64)
    prev = bg.get_num_threads()
    out = []
    try:
        for n in (1, 2, 3):
            bg.set_num_threads(n)
            st = state0.copy()
            m, v = np.zeros_like(st), np.zeros_like(st)
            _, stats = k.optim.ensemble_epoch(cfg, st, m, v, 0, X, y, perms)
            out.append((None, stats, st))
    finally:
        bg.set_num_threads(prev)
    for o in out[1:]:
        np.testing.assert_array_equal(o[1], out[0][1])
        np.testing.assert_array_equal(o[2], out[0][2])


def test_members_cut_between_threads_take_the_same_steps():
    """With several threads each member's minibatch steps are cut into one part per thread,
    run part after part on whichever thread is free (5 members on 2 threads: 2.5 members'
    steps each), so a member's later steps may run on another thread than its first ones.
    Every thread count gives the numbers of the one S = M pass on one thread, bit for bit,
    over several epochs in one call; a member whose first part fails (a label out of range
    in every member's rows) raises instead of leaving the thread with its next part waiting."""
    k = _backend.kernels()
    rng = np.random.default_rng(12)
    N, M, E, sizes = 70, 5, 3, (20, 64, 64, 3)
    X = rng.normal(size=(N, 20))
    y = rng.integers(0, 3, size=(N, 1)).astype(np.float64)
    net = k.mlp.NetConfig(sizes, 1)
    P = net.n_params
    cfg = k.optim.EnsembleConfig(net, LIKELIHOODS["categorical"], weight_decay=0.01, batch_size=32,
                                 adam=k.optim.AdamConfig(lr=0.01))
    state0 = 0.1 * rng.normal(size=(M, P + 1))
    perms = np.stack([np.stack([rng.permutation(N) for _ in range(M)]) for _ in range(E)]).astype(np.int64)
    prev = bg.get_num_threads()
    out = []
    try:
        for n in (1, 2, 3, 4, 6):  # 6 > M: whole members, one per thread
            bg.set_num_threads(n)
            st = state0.copy()
            m, v = np.zeros_like(st), np.zeros_like(st)
            step, stats = k.optim.ensemble_epoch(cfg, st, m, v, 0, X, y, perms)
            assert step == E * 3
            out.append((stats, st, m, v))
        bad = y.copy()
        bad[N // 2] = 7.0
        for n in (2, 3):
            bg.set_num_threads(n)
            st = state0.copy()
            with pytest.raises(ValueError, match="label"):
                k.optim.ensemble_epoch(cfg, st, np.zeros_like(st), np.zeros_like(st), 0, X, bad, perms)
    finally:
        bg.set_num_threads(prev)
    for o in out[1:]:
        for a, b in zip(o, out[0]):
            np.testing.assert_array_equal(a, b)
    assert not np.array_equal(out[0][1], state0)


def test_several_epochs_in_one_call_equal_epoch_by_epoch_calls():
    """perms (E, M, L): E epochs in one call equal E one-epoch calls (bit for bit), on both backends."""
    rng = np.random.default_rng(9)
    N, M, E, K = 23, 3, 3, 4
    X, y = _data("heteroscedastic_gaussian", K, 2, N, rng)
    P = bg.nn.MLP([3, 7, 5, K], "tanh").n_params
    state0 = 0.5 * rng.normal(size=(M, P + 2))
    perms = np.stack([np.stack([rng.permutation(N) for _ in range(M)]) for _ in range(E)]).astype(np.int64)
    out = []
    for name in BACKENDS:
        with _backend.use_backend(name):
            k = _backend.kernels()
            net = k.mlp.NetConfig((3, 7, 5, K), 2)
            cfg = k.optim.EnsembleConfig(net, LIKELIHOODS["heteroscedastic_gaussian"], weight_decay=0.3,
                                         batch_size=5, adam=k.optim.AdamConfig(lr=0.01), adv_eps=[0.1, 0.2, 0.05])
            runs = []
            for blocks in ([perms], list(perms)):
                st = state0.copy()
                m, v = np.zeros_like(st), np.zeros_like(st)
                step, parts = 2, []
                for p in blocks:
                    step, stats = k.optim.ensemble_epoch(cfg, st, m, v, step, X, y, np.ascontiguousarray(p))
                    parts.append(stats)
                runs.append((step, np.concatenate(parts), st))
            (s0, st0, th0), (s1, st1, th1) = runs
            assert s0 == s1 == 2 + E * 5 and st0.shape == (E * 5, M, 2)
            np.testing.assert_array_equal(st0, st1)
            np.testing.assert_array_equal(th0, th1)
            out.append((st0, th0))
    for st, th in out[1:]:
        np.testing.assert_allclose(st, out[0][0], rtol=1e-11, atol=1e-11)
        np.testing.assert_allclose(th, out[0][1], rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("N", [41, 5000])
def test_ensemble_orders_are_the_training_permutations(backend, N):
    """Native (and twin) minibatch orders equal _training.permutation of each member's stream."""
    from bayesgrad import _training

    streams = [bg.random.fold_in(5, m) for m in range(3)]
    shuffle = np.array([bg.random.fold_in(s, "shuffle") for s in streams], dtype=np.uint64)
    with _backend.use_backend(backend):
        k = _backend.kernels()
        out = np.empty((4, 3, N), dtype=np.int64)
        k.optim.ensemble_orders(11, shuffle, 6, out)
        for e in range(4):
            for m in range(3):
                np.testing.assert_array_equal(out[e, m], _training.permutation(N, 11, streams[m], 6 + e))
        with pytest.raises(ValueError, match="out"):
            k.optim.ensemble_orders(11, shuffle, 0, np.empty((4, 2, N), dtype=np.int64))
        with pytest.raises(ValueError, match="epoch0"):
            k.optim.ensemble_orders(11, shuffle, -1, out)
        with pytest.raises(ValueError, match="streams"):
            k.optim.ensemble_orders(11, np.array([2 ** 63], dtype=np.uint64), 0, out[:, :1].copy())


def test_members_on_worker_threads_over_several_epochs_same_for_any_thread_count():
    """13-50-2 at batch 32 over three epochs in one call: members one per worker thread (small
    products, enough work in the call) or all in one S = M pass on one thread, the same numbers."""
    k = _backend.kernels()
    rng = np.random.default_rng(10)
    N, M, E = 100, 5, 3
    X = rng.normal(size=(N, 13))
    y = rng.normal(size=(N, 1))
    net = k.mlp.NetConfig((13, 50, 2), 1)
    cfg = k.optim.EnsembleConfig(net, LIKELIHOODS["heteroscedastic_gaussian"], batch_size=32,
                                 adv_eps=[0.02] * 13, adam=k.optim.AdamConfig(lr=0.01))
    state0 = 0.1 * rng.normal(size=(M, net.n_params + 1))
    perms = np.stack([np.stack([rng.permutation(N) for _ in range(M)]) for _ in range(E)]).astype(np.int64)
    prev = bg.get_num_threads()
    out = []
    try:
        for n in (1, 2, 3):
            bg.set_num_threads(n)
            st = state0.copy()
            m, v = np.zeros_like(st), np.zeros_like(st)
            _, stats = k.optim.ensemble_epoch(cfg, st, m, v, 0, X, y, perms)
            out.append((stats, st))
    finally:
        bg.set_num_threads(prev)
    for o in out[1:]:
        np.testing.assert_array_equal(o[0], out[0][0])
        np.testing.assert_array_equal(o[1], out[0][1])


def test_uniform_init_bounds_and_schemes():
    """init="uniform": every weight and bias of a layer in (-1/sqrt(fan_in), 1/sqrt(fan_in)), filling
    that range (P(max |w| < 0.9 bound) = 0.9^650 < 1e-29 for the first layer); other schemes are
    ``MLP.init``'s."""
    mlp = MLP([13, 50, 2], "relu")
    X, y = np.zeros((4, 13)), np.zeros(4)
    ens = bg.ensemble.DeepEnsemble(mlp, n_models=2, lr=1e-12).fit(X, y, 1, seed=0)
    for m in range(2):
        for (W, b), din in zip(mlp.unflatten(ens.thetas_[m]), mlp.sizes[:-1]):
            bound = 1 / np.sqrt(din)
            assert np.abs(W).max() < bound and np.abs(b).max() < bound
        assert np.abs(mlp.unflatten(ens.thetas_[m])[0][0]).max() > 0.9 / np.sqrt(13)
    assert not np.allclose(ens.thetas_[0], ens.thetas_[1])
    he = bg.ensemble.DeepEnsemble(mlp, n_models=2, lr=1e-12, init="he").fit(X, y, 1, seed=0)
    np.testing.assert_allclose(he.thetas_[1], mlp.init(seed=0, stream=bg.random.fold_in(0, 1)), atol=1e-9)
    with pytest.raises(ValueError, match="init"):
        bg.ensemble.DeepEnsemble(mlp, init="xavier")
