"""Bayes by Backprop: ELBO gradients against finite differences for every
estimator, prior, likelihood and activation; native/NumPy parity; the ELBO
decomposition and KL weighting identities; the linear-Gaussian optimum."""
import math

import numpy as np
import pytest

import bayesgrad as bg
from bayesgrad import _backend, _training
from bayesgrad.nn import LIKELIHOODS, MLP
from bayesgrad.vi import ESTIMATORS, MFVI, PRIORS
from helpers import on_simd_path

PP = dict(prior_sigma=0.8, mix_pi=0.4, mix_s1=1.0, mix_s2=0.05)


def vi_config(k, m, lik, est, prior, S, seed=11, stream=5, batch_size=32, lr=1e-3):
    """A kernel ViConfig of backend module k for these tests' models."""
    return k.vi.ViConfig(m.net_config(k), LIKELIHOODS[lik], learn_noise=True, estimator=ESTIMATORS[est],
                         prior=PRIORS[prior], n_samples=S, seed=seed, stream=stream, batch_size=batch_size,
                         adam=k.optim.AdamConfig(lr=lr), **PP)


def _data(lik, N, K, rng):
    X = rng.normal(size=(N, 2))
    if lik == "categorical":
        y = rng.integers(0, K, N)[:, None].astype(float)
    elif lik == "bernoulli":
        y = rng.integers(0, 2, (N, K)).astype(float)
    else:
        y = rng.normal(size=(N, K // 2 if lik == "heteroscedastic_gaussian" else K))
    return X, y


def _objective_and_grad(m, state, X, y, lik, est, prior, S=2, step=3, klw=0.7):
    k = _backend.kernels()
    g = np.empty_like(state)
    st = k.vi.vi_grad(vi_config(k, m, lik, est, prior, S), state, X, y, step, klw, g)
    return st, g


CASES = [(e, lik, "tanh", "gaussian") for e in ESTIMATORS for lik in LIKELIHOODS] + \
    [(e, "gaussian", "tanh", "scale_mixture") for e in ESTIMATORS] + \
    [("flipout", "categorical", a, "gaussian") for a in ("relu", "gelu", "sigmoid")] + \
    [("local_reparam", "gaussian", a, "gaussian") for a in ("relu", "gelu", "sigmoid")] + \
    [("weight_space", "bernoulli", a, "gaussian") for a in ("relu", "gelu", "sigmoid")]


@pytest.mark.parametrize("est,lik,act,prior", CASES)
def test_elbo_gradient_finite_differences(est, lik, act, prior, rng):
    K = 4 if lik == "heteroscedastic_gaussian" else (3 if lik == "categorical" else 2)
    m = MLP([2, 3, K], act)
    X, y = _data(lik, 5, K, rng)
    P = m.n_params
    Dy = y.shape[1]
    state = np.concatenate([0.5 * rng.normal(size=P), rng.uniform(-2, 0, P), 0.2 * rng.normal(size=Dy)])
    st, g = _objective_and_grad(m, state, X, y, lik, est, prior)
    np.testing.assert_allclose(st[2], st[0] + 0.7 * st[1], rtol=1e-12)  # N/B = 1 here
    eps = 1e-6
    fd = np.empty_like(state)
    for i in range(state.size):
        e = np.zeros_like(state)
        e[i] = eps
        fd[i] = (_objective_and_grad(m, state + e, X, y, lik, est, prior)[0][2]
                 - _objective_and_grad(m, state - e, X, y, lik, est, prior)[0][2]) / (2 * eps)
    if lik != "gaussian":
        fd[2 * P:] = 0.0  # log_noise only enters the homoscedastic gaussian
    np.testing.assert_allclose(g, fd, rtol=2e-5, atol=2e-6)


@pytest.mark.single_backend
@pytest.mark.skipif(not _backend.native_available(), reason="needs the native core")
@pytest.mark.parametrize("est", list(ESTIMATORS))
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-9), (np.float32, 2e-3)])
def test_native_matches_numpy_epochs(est, dtype, tol, rng):
    m = MLP([3, 6, 2], "gelu")
    X = rng.normal(size=(23, 3)).astype(dtype)
    y = rng.integers(0, 2, 23)
    res = {}
    for b in ("cpu", "numpy"):
        with bg.use_backend(b):
            q = MFVI(m, "categorical", estimator=est, n_samples=3, prior="scale_mixture", lr=1e-2, batch_size=8)
            q.fit(X, y, epochs=2, seed=3, verbose=0)
            res[b] = (q.state_.copy(), [h["elbo"] for h in q.history_])
    assert res["cpu"][0].dtype == dtype
    np.testing.assert_allclose(res["cpu"][0], res["numpy"][0], rtol=tol, atol=tol)
    np.testing.assert_allclose(res["cpu"][1], res["numpy"][1], rtol=tol)


def test_kl_weightings_sum_to_full_kl():
    N = 100
    sizes = _training.batch_sizes(N, 32)
    np.testing.assert_array_equal(sizes, [32, 32, 32, 4])  # ragged last batch
    w = _training.kl_weights("proportional", sizes, N, 0, 1)
    np.testing.assert_allclose(w, sizes / N)
    assert math.isclose(w.sum(), 1.0, rel_tol=1e-15)
    wb = _training.kl_weights("blundell", sizes, N, 0, 1)
    np.testing.assert_allclose(wb, [8 / 15, 4 / 15, 2 / 15, 1 / 15], rtol=1e-15)
    assert math.isclose(wb.sum(), 1.0, rel_tol=1e-15)
    assert math.isclose(_training.kl_weights("blundell", np.ones(2000), 2000, 0, 1).sum(), 1.0, rel_tol=1e-12)
    wa = [_training.kl_weights("annealed", sizes, N, e, 4).sum() for e in range(6)]
    np.testing.assert_allclose(wa, [0.25, 0.5, 0.75, 1, 1, 1])


@pytest.mark.parametrize("scheme", ["proportional", "blundell"])
def test_epoch_objectives_add_up_to_the_negative_elbo(scheme, rng):
    # sum_i (B_i/N) objective_i = sum_i nll_i + sum_i w_i KL_i; with lr ~ 0 the
    # KL is the same at every step, so the epoch adds up to -ELBO.
    m = MLP([2, 4, 1], "tanh")
    X = rng.normal(size=(50, 2))
    y = rng.normal(size=50)
    q = MFVI(m, kl_weighting=scheme, batch_size=16, lr=1e-12).fit(X, y, epochs=1, verbose=0)
    k = _backend.kernels()
    sizes = _training.batch_sizes(50, 16)
    w = _training.kl_weights(scheme, sizes, 50, 0, 1)
    state = q.state_.copy()
    h = q.history_[0]
    st2 = state.copy()
    cfg = q.kernel_config(k, seed=0, stream=bg.random.fold_in(0, "weights"))
    _, stats = k.vi.vi_epoch(cfg, st2, np.zeros_like(st2), np.zeros_like(st2), 0, X, y[:, None],
                             _training.permutation(50, 0, 0, 0), w)
    total = float(np.sum(sizes / 50 * stats[:, 2]))
    np.testing.assert_allclose(total, stats[:, 0].sum() + stats[0, 1], rtol=1e-9)
    np.testing.assert_allclose(h["elbo"], h["expected_loglik"] - h["kl"], rtol=1e-12)


def test_elbo_decomposition_and_closed_form_kl(rng):
    m = MLP([2, 5, 1], "tanh")
    X = rng.normal(size=(30, 2))
    y = np.sin(X[:, 0])
    q = MFVI(m, prior_sigma=0.7, noise=0.5, lr=1e-2).fit(X, y, epochs=3, verbose=0)
    e = q.elbo(X, y, n_samples=200, seed=1)
    mu, sg = q.mu_, q.sigma_
    kl = np.sum(np.log(0.7 / sg) + (sg ** 2 + mu ** 2) / (2 * 0.49) - 0.5)
    np.testing.assert_allclose(e["kl"], kl, rtol=1e-10)
    np.testing.assert_allclose(e["elbo"], e["expected_loglik"] - e["kl"], rtol=1e-12)
    # the expected log-likelihood is the mean over weight samples of log p(y | w)
    th = q.sample_params(4000, seed=2)
    ell = -np.mean(m.nll(th, X, y, noise=0.5))
    sd = np.std(m.nll(th, X, y, noise=0.5)) / math.sqrt(200)
    assert abs(e["expected_loglik"] - ell) < 5 * sd + 1e-9  # 5 sigma: false alarm < 1e-6


def test_scale_mixture_kl_is_an_unbiased_estimate(rng):
    # MC KL (scale mixture) vs a quadrature of the same KL for each weight
    m = MLP([1, 1], "identity")
    q = MFVI(m, prior="scale_mixture", mixture=(0.3, 1.0, 0.1))
    q.state_ = np.array([0.4, -0.2, -1.0, -2.0, 0.0])
    mu, sg = q.mu_, q.sigma_
    w = np.linspace(-8, 8, 20001)
    kl = 0.0
    for j in range(2):
        qd = np.exp(-0.5 * ((w - mu[j]) / sg[j]) ** 2) / (sg[j] * math.sqrt(2 * math.pi))
        pd = (0.3 * np.exp(-0.5 * w ** 2) + 0.7 * np.exp(-0.5 * (w / 0.1) ** 2) / 0.1) / math.sqrt(2 * math.pi)
        kl += np.trapezoid(qd * (np.log(qd + 1e-300) - np.log(pd)), w)
    e = q.elbo(np.zeros((1, 1)), [0.0], n_samples=20000, seed=3)
    assert abs(e["kl"] - kl) < 0.03  # MC sd ~ 0.006 at 20000 samples


@pytest.mark.parametrize("est", ["local_reparam", "weight_space"])
def test_linear_gaussian_optimum_matches_exact_posterior(est, rng):
    # For a linear-Gaussian model the mean-field optimum has the exact posterior
    # mean and variances 1/Lambda_jj (Lambda the posterior precision).
    N, s_noise, s_prior = 40, 0.5, 1.0
    X = rng.normal(size=(N, 2))
    y = X @ np.array([0.8, -0.4]) + 0.3 + s_noise * rng.normal(size=N)
    A = np.c_[X, np.ones(N)]
    Lam = A.T @ A / s_noise ** 2 + np.eye(3) / s_prior ** 2
    mean = np.linalg.solve(Lam, A.T @ y / s_noise ** 2)
    m = MLP([2, 1], "identity")
    q = MFVI(m, estimator=est, prior_sigma=s_prior, noise=s_noise, n_samples=8, lr=2e-2, batch_size=N, rho_init=-3.0)
    q.fit(X, y, epochs=1500, verbose=0, seed=0)
    post_sd = 1 / np.sqrt(np.diag(Lam))
    assert np.all(np.abs(q.mu_ - mean) < 0.25 * post_sd)
    np.testing.assert_allclose(q.sigma_, post_sd, rtol=0.25)


def test_predict_save_load(rng, tmp_path):
    m = MLP([2, 6, 3], "relu")
    X = rng.normal(size=(40, 2))
    y = rng.integers(0, 3, 40)
    q = MFVI(m, "classification", estimator="flipout", n_samples=2).fit(X, y, epochs=2, verbose=0, seed=None)
    assert isinstance(q.seed_, int)
    p = q.predict(X[:5], n_samples=7, seed=1)
    assert p.log_probs.shape == (7, 5, 3) and p.probs.shape == (5, 3)
    np.testing.assert_allclose(p.probs.sum(1), 1.0)
    f = tmp_path / "q.npz"
    q.save(f)
    q2 = MFVI.load(f)
    np.testing.assert_array_equal(q2.state_, q.state_)
    np.testing.assert_allclose(q2.predict(X[:5], n_samples=7, seed=1).probs, p.probs)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(ValueError):
        MFVI.load(bad)
    np.savez(tmp_path / "foreign.npz", state=np.zeros(3))
    with pytest.raises(ValueError, match="metadata"):
        MFVI.load(tmp_path / "foreign.npz")
    np.savez(tmp_path / "obj.npz", state=np.array([object()], dtype=object))
    with pytest.raises(ValueError):
        MFVI.load(tmp_path / "obj.npz")


def test_streams_never_overlap():
    tags = ["weights", "dropout", "shuffle", "predict", "posterior", "init", "split"]
    ids = {bg.random.fold_in(s, t) for s in range(4) for t in tags}
    ids |= {bg.random.fold_in(bg.random.fold_in(s, "weights"), step) for s in range(2) for step in range(1, 50)}
    assert len(ids) == 4 * len(tags) + 2 * 49


def test_bad_input(rng):
    m = MLP([2, 3, 1])
    X = rng.normal(size=(10, 2))
    with pytest.raises(ValueError, match="estimator"):
        MFVI(m, estimator="magic")
    with pytest.raises(ValueError, match="prior"):
        MFVI(m, prior="laplace")
    with pytest.raises(ValueError, match="kl_weighting"):
        MFVI(m, kl_weighting="none")
    with pytest.raises(ValueError, match="n_samples"):
        MFVI(m, n_samples=0)
    with pytest.raises(ValueError, match="prior_sigma"):
        MFVI(m, prior_sigma=-1)
    with pytest.raises(ValueError, match="mixture"):
        MFVI(m, prior="scale_mixture", mixture=(1.5, 1, 1))
    with pytest.raises(TypeError):
        MFVI("mlp")
    with pytest.raises(ValueError, match="finite"):
        MFVI(m).fit(X, np.r_[np.nan, np.zeros(9)], epochs=1, verbose=0)
    with pytest.raises(ValueError, match="labels"):
        MFVI(MLP([2, 3]), "categorical").fit(X, np.full(10, 3), epochs=1, verbose=0)
    with pytest.raises(RuntimeError):
        MFVI(m).predict(X)


def _gap_data(seed, n=400, noise=0.01):
    """1-D regression with a gap: x uniform on [-1.5, -1] and [1, 1.5] (two
    clusters of width 0.5 with a gap of width 2 between them), y = sin(2x) +
    N(0, noise^2)."""
    r = np.random.default_rng(seed)
    x = np.concatenate([r.uniform(-1.5, -1.0, n // 2), r.uniform(1.0, 1.5, n // 2)])
    y = np.sin(2 * x) + noise * r.normal(size=n)
    return x[:, None], y[:, None]


@pytest.mark.parametrize("method", ["mfvi", "mc_dropout"])
def test_predictive_std_grows_in_the_gap(method):
    """In-between uncertainty: the predictive std (total, noise included) at
    the middle of the gap (x = 0) is at least twice its mean over the training
    inputs.

    Single-hidden-layer MFVI provably cannot do this (Foong et al. 2019, "'In-
    Between' Uncertainty in Bayesian Neural Networks"); a deeper ReLU net,
    small observation noise and enough steps for the variances to leave their
    initial value are needed. Offline, over data/training seeds 0..9 (float64):
    MFVI (1-50-50-50-1 relu, S = 4, rho_init = -5, lr 3e-2, batch 64, 100
    epochs) gave ratios 3.71 8.38 15.2 10.7 4.75 7.51 2.12 5.24 9.99 6.25;
    MC dropout (1-50-50-1 relu, p = 0.1, tau = 1/0.01^2, batch 200, 400 epochs)
    4.25 3.58 4.70 4.15 5.37 5.53 2.99 3.68 2.76 3.13. Seed 0 is used here.
    The margin is thin on the worst seeds (2.1, 2.8). Noisier data (0.02),
    two hidden layers, S = 1 or half the training steps failed on 1-3 seeds
    in 10 (dropout: 200 epochs failed on 2 in 10).
    """
    seed, noise = 0, 0.01
    X, y = _gap_data(seed, noise=noise)
    Xq = np.vstack([X, [[0.0]]])
    if method == "mfvi":
        q = MFVI(MLP([1, 50, 50, 50, 1], "relu"), "gaussian", prior_sigma=1.0, rho_init=-5.0, noise=noise,
                 n_samples=4, lr=3e-2, batch_size=64, dtype=np.float64)
        q.fit(X, y, epochs=100, seed=seed, verbose=0)
    else:
        q = bg.dropout.MCDropout(MLP([1, 50, 50, 1], "relu"), p=0.1, tau=1 / noise ** 2, length_scale=1e-2,
                                 lr=1e-2, batch_size=200, dtype=np.float64)
        q.fit(X, y, epochs=400, seed=seed, verbose=0)
    sd = np.sqrt(q.predict(Xq, 200, seed=99).var[:, 0])
    assert sd[-1] >= 2 * sd[:-1].mean(), (sd[-1], sd[:-1].mean())


def _wide_state(m, Dy, rng, dtype):
    """mu and rho over the ranges the element-wise passes must handle: rho
    from -30 (sigma ~ 1e-13, exp underflow side of softplus) to +30 (sigma ~
    rho), P not a multiple of the 8 AVX2 lanes, so the scalar tails run too."""
    P = m.n_params
    rho = rng.uniform(-30, 30, P)
    rho[: P // 2] = rng.uniform(-6, 2, P // 2)  # the usual range, densely
    return np.concatenate([0.5 * rng.normal(size=P), rho, 0.2 * rng.normal(size=Dy)]).astype(dtype)


def _has_simd(path):
    """Whether the native core can take SIMD path `path` on this CPU."""
    return _backend.native_available() and on_simd_path(path, lambda: bg.backend_info()["simd"]).startswith(path)


@pytest.mark.single_backend
@pytest.mark.skipif(not _backend.native_available(), reason="needs the native core")
@pytest.mark.parametrize("path", ["avx512", "avx2"])
@pytest.mark.parametrize("rho_range", ["wide", "usual"])
@pytest.mark.parametrize("sizes,S", [((7, 37, 3), 3), ((7, 37, 3), 1), ((41, 400, 83), 1), ((41, 400, 83), 2)])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_simd_paths_agree_with_scalar_reference(path, rho_range, sizes, S, dtype, tol, rng):
    """The AVX-512 and AVX2 element-wise passes (softplus, KL logs, sums, Adam;
    for float on AVX-512 the single-loop fused passes) against the libm scalar
    path of the same core (simd_limit("scalar")), for the gradient and for a few
    Adam steps: same results up to float rounding, which also shows that every
    path draws the same normals (other draws would differ by O(1)). P = 412
    (one element chunk, one full 256 block and a tail, 412 % 16 = 12) and
    P = 50 283 (four chunks: the normals drawn chunk by chunk, sample 1's from
    mid-group); S = 1 takes the one-loop AVX-512 post-pass, S > 1 the blocked one.
    rho over the edge ranges (_wide_state: sigma up to 30, gradients up to 10^6,
    so the absolute tolerance is loose) and over the usual range [-6, 1]
    (gradients of order 10-100: there a wrong KL term or Adam coefficient shows)."""
    if not _has_simd(path):
        pytest.skip(f"CPU without {path}")
    core = _backend._core
    m = MLP(list(sizes), "relu")
    K = sizes[-1]
    X = rng.normal(size=(9, sizes[0])).astype(dtype)
    y = rng.normal(size=(9, K)).astype(dtype)
    if rho_range == "wide":
        state = _wide_state(m, K, rng, dtype)
    else:
        P = m.n_params
        state = np.concatenate([0.5 * rng.normal(size=P), rng.uniform(-6, 1, P), 0.2 * rng.normal(size=K)]).astype(dtype)

    def run():
        g = np.empty_like(state)
        st = core.vi.vi_grad(vi_config(core, m, "gaussian", "weight_space", "gaussian", S), state, X, y, 3, 0.7, g)
        s2 = state.copy()
        mv = [np.zeros_like(s2), np.zeros_like(s2)]
        cfg = vi_config(core, m, "gaussian", "weight_space", "gaussian", S, batch_size=3, lr=1e-2)
        _, stats = core.vi.vi_epoch(cfg, s2, mv[0], mv[1], 0, X, y, _training.permutation(9, 0, 0, 0),
                                    np.full(3, 1 / 3, dtype))
        return g, st, s2, mv[1], stats

    fast, ref = on_simd_path(path, run), on_simd_path("scalar", run)
    for a, b in zip(fast, ref):
        assert np.all(np.isfinite(b))
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * np.max(np.abs(b)))


@pytest.mark.single_backend
@pytest.mark.skipif(not _backend.native_available(), reason="needs the native core")
@pytest.mark.parametrize("est", list(ESTIMATORS))
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_native_gradient_matches_numpy_gaussian_prior(est, dtype, tol, rng):
    """The closed-form (Gaussian prior) KL path of the fused post-pass, over
    a wide rho range, against the NumPy twin."""
    m = MLP([5, 21, 2], "relu")
    X = rng.normal(size=(6, 5)).astype(dtype)
    y = rng.normal(size=(6, 2)).astype(dtype)
    state = _wide_state(m, 2, rng, dtype)
    out = {}
    for b in ("cpu", "numpy"):
        with bg.use_backend(b):
            k = _backend.kernels()
            g = np.empty_like(state)
            st = k.vi.vi_grad(vi_config(k, m, "gaussian", est, "gaussian", 2), state, X, y, 3, 0.7, g)
            out[b] = (g, st)
    np.testing.assert_allclose(out["cpu"][1], out["numpy"][1], rtol=tol)
    g0, g1 = out["cpu"][0], out["numpy"][0]
    np.testing.assert_allclose(g0, g1, rtol=tol, atol=tol * np.max(np.abs(g1)))


@pytest.mark.single_backend
@pytest.mark.skipif(not _backend.native_available(), reason="needs the native core")
@pytest.mark.parametrize("sizes", [(4, 9, 7, 3), (3, 2)])
@pytest.mark.parametrize("est", list(ESTIMATORS))
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_samples_batched_layouts_match_numpy(sizes, est, dtype, tol, rng):
    """S = 3 samples through the batched layouts: weight space with the Gaussian
    prior keeps the sampled weights layer by layer (the first layer one GEMM for
    every sample, hidden layers (B, S d) wide), the local reparameterisation and
    Flipout share the first layer's mean (and variance) GEMM over the B rows;
    one hidden layer between two others, and a network of one layer only,
    against the twin's sample-by-sample reference, gradient and three Adam steps."""
    m = MLP(list(sizes), "tanh")
    X = rng.normal(size=(7, sizes[0])).astype(dtype)
    y = rng.normal(size=(7, sizes[-1])).astype(dtype)
    state = _wide_state(m, sizes[-1], rng, dtype)
    out = {}
    for b in ("cpu", "numpy"):
        with bg.use_backend(b):
            k = _backend.kernels()
            g = np.empty_like(state)
            st = k.vi.vi_grad(vi_config(k, m, "gaussian", est, "gaussian", 3), state, X, y, 3, 0.7, g)
            s2 = state.copy()
            mv = [np.zeros_like(s2), np.zeros_like(s2)]
            cfg = vi_config(k, m, "gaussian", est, "gaussian", 3, batch_size=3, lr=1e-2)
            _, stats = k.vi.vi_epoch(cfg, s2, mv[0], mv[1], 0, X[:6], y[:6], np.arange(6, dtype=np.int64),
                                     np.full(2, 0.5, dtype))
            out[b] = (g, st, s2, stats)
    for a, r in zip(out["cpu"], out["numpy"]):
        np.testing.assert_allclose(a, r, rtol=tol, atol=tol * np.max(np.abs(r)))


@pytest.mark.single_backend
@pytest.mark.skipif(not _backend.native_available(), reason="needs the native core")
@pytest.mark.parametrize("est", list(ESTIMATORS))
def test_vi_epoch_same_for_any_thread_count(est, rng):
    """The fused passes run in fixed chunks and draw their normals chunk by chunk
    (P > 2 chunks here, S = 2, P odd so that sample 1's draws start mid-group):
    identical states and statistics at 1, 2 and 3 threads."""
    core = _backend._core
    m = MLP([41, 400, 83], "relu")  # P = 50 283: four element chunks
    X = rng.normal(size=(12, 41)).astype(np.float32)
    y = rng.normal(size=(12, 83)).astype(np.float32)
    state0 = _wide_state(m, 83, rng, np.float32)
    prev = bg.get_num_threads()
    outs = []
    try:
        for t in (1, 2, 3):
            bg.set_num_threads(t)
            s2 = state0.copy()
            mv = [np.zeros_like(s2), np.zeros_like(s2)]
            cfg = vi_config(core, m, "gaussian", est, "gaussian", 2, batch_size=6, lr=1e-2)
            _, stats = core.vi.vi_epoch(cfg, s2, mv[0], mv[1], 0, X, y, np.arange(12, dtype=np.int64),
                                        np.full(2, 0.5, np.float32))
            outs.append((s2, mv[0], mv[1], stats))
    finally:
        bg.set_num_threads(prev)
    for o in outs[1:]:
        for a, b in zip(o, outs[0]):
            np.testing.assert_array_equal(a, b)
