"""bg.laplace.Laplace: exact Bayesian linear regression, structure identities,
GLM predictive against explicit J P⁻¹ Jᵀ, marginal-likelihood optimisation,
MLP curvature against finite-difference Jacobians, laplace-torch agreement
(when installed) and bad input."""
import importlib.util
import json
import math

import numpy as np
import pytest
from scipy.special import expit
from scipy.stats import multivariate_normal

import bayesgrad as bg
from bayesgrad.laplace import Curvature, Laplace, LinearHead

STRUCTS = ["diag", "kron", "full", "lowrank"]


def blr(rng, N=40, F=3, alpha=0.7, sigma=0.4):
    """Data and the exact MAP of Bayesian linear regression with features [x, 1]."""
    X = rng.normal(size=(N, F))
    y = X @ rng.normal(size=F) + 0.3 + sigma * rng.normal(size=N)
    Phi = np.hstack([X, np.ones((N, 1))])
    Pm = Phi.T @ Phi / sigma ** 2 + alpha * np.eye(F + 1)
    th = np.linalg.solve(Pm, Phi.T @ y / sigma ** 2)
    return X, y, Phi, Pm, th


def test_bayesian_linear_regression_exact(rng):
    alpha, sigma = 0.7, 0.4
    X, y, Phi, Pm, th = blr(rng, alpha=alpha, sigma=sigma)
    exact = multivariate_normal(np.zeros(len(y)), sigma ** 2 * np.eye(len(y)) + Phi @ Phi.T / alpha).logpdf(y)
    for s in ("full", "lowrank"):
        la = Laplace.from_features(th[None, :-1], th[-1:], "gaussian", structure=s, prior_precision=alpha,
                                   sigma_noise=sigma, rank=4, chunk_size=7).fit(X, y)
        np.testing.assert_allclose(la.posterior_precision, Pm, rtol=1e-11)
        assert la.log_marginal_likelihood() == pytest.approx(exact, rel=1e-11)
    # an MLP without hidden layers is the same model
    mlp = bg.nn.MLP([3, 1])
    la = Laplace(mlp, th, "gaussian", structure="full", prior_precision=alpha, sigma_noise=sigma).fit(X, y)
    assert la.log_marginal_likelihood() == pytest.approx(exact, rel=1e-11)
    np.testing.assert_allclose(la.posterior_covariance, np.linalg.inv(Pm), rtol=1e-9)


@pytest.mark.parametrize("structure", STRUCTS)
@pytest.mark.parametrize("lik", ["categorical", "bernoulli", "gaussian"])
def test_structure_identities_and_glm_variance(structure, lik, rng):
    """log det, P⁻¹ application, diag(P⁻¹) and P^{-1/2} against the dense matrix; f_var = J P⁻¹ Jᵀ."""
    C = 1 if lik == "bernoulli" else 3
    X = rng.normal(size=(30, 4))
    W, b = rng.normal(size=(C, 4)), rng.normal(size=C)
    y = rng.integers(0, max(C, 2), 30).astype(float) if lik != "gaussian" else rng.normal(size=(30, C))
    prior = rng.uniform(0.5, 2.0, size=2)           # one per weight and bias tensor
    la = Laplace.from_features(W, b, lik, structure=structure, prior_precision=prior, temperature=0.8,
                               rank=C * 5).fit(X, y)
    post = la._posterior()
    Pd = post.matrix()
    assert post.logdet() == pytest.approx(np.linalg.slogdet(Pd)[1], rel=1e-10)
    Sig = np.linalg.inv(Pd)
    np.testing.assert_allclose(post.diag_inv(), np.diag(Sig), rtol=1e-8)
    R = post.inv_sqrt_apply(np.eye(la.n_params))
    np.testing.assert_allclose(R.T @ R, Sig, rtol=1e-8, atol=1e-12)
    fmu, fvar = la.functional_variance(X[:5])
    J = np.zeros((5, C, la.n_params))
    for c in range(C):
        J[:, c, c * 4:(c + 1) * 4] = X[:5]
        J[:, c, C * 4 + c] = 1
    np.testing.assert_allclose(fvar, np.einsum("ncp,pq,ndq->ncd", J, Sig, J), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(fmu, X[:5] @ W.T + b, rtol=1e-12)
    # many rows (N C > P): the head's block formula on the dense covariance
    fmu_all, fvar_all = la.functional_variance(X)
    Ja = np.zeros((30, C, la.n_params))
    for c in range(C):
        Ja[:, c, c * 4:(c + 1) * 4] = X
        Ja[:, c, C * 4 + c] = 1
    np.testing.assert_allclose(fvar_all, np.einsum("ncp,pq,ndq->ncd", Ja, Sig, Ja), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(fmu_all, X @ W.T + b, rtol=1e-12)
    pred = la.predict(X[:5])
    if lik == "gaussian":
        np.testing.assert_allclose(pred.epistemic_var, np.diagonal(fvar, axis1=1, axis2=2), rtol=1e-12)
        np.testing.assert_allclose(pred.var, pred.epistemic_var + 1.0, rtol=1e-12)
    elif lik == "bernoulli":
        p1 = expit(fmu[:, 0] / np.sqrt(1 + np.pi / 8 * fvar[:, 0, 0]))
        np.testing.assert_allclose(pred.probs[:, 1], p1, rtol=1e-12)
    else:
        z = fmu / np.sqrt(1 + np.pi / 8 * np.diagonal(fvar, axis1=1, axis2=2))
        np.testing.assert_allclose(pred.probs, np.exp(z) / np.exp(z).sum(1, keepdims=True), rtol=1e-12)


def test_lowrank_full_rank_equals_full(rng):
    X = rng.normal(size=(25, 3))
    W, b = rng.normal(size=(2, 3)), rng.normal(size=2)
    y = rng.integers(0, 2, 25).astype(float)
    full = Laplace.from_features(W, b, "categorical", structure="full", prior_precision=0.3).fit(X, y)
    lr = Laplace.from_features(W, b, "categorical", structure="lowrank", rank=8, prior_precision=0.3).fit(X, y)
    assert lr.log_marginal_likelihood() == pytest.approx(full.log_marginal_likelihood(), rel=1e-10)
    np.testing.assert_allclose(lr.posterior_precision, full.posterior_precision, rtol=1e-9, atol=1e-10)


def test_mlp_ggn_against_finite_difference_jacobians(rng):
    mlp = bg.nn.MLP([3, 5, 4, 2], "tanh")
    th = mlp.init(seed=1)
    X = rng.normal(size=(12, 3))
    y = rng.integers(0, 2, 12).astype(float)
    P, eps = mlp.n_params, 1e-6
    J = np.stack([(mlp.forward(th + eps * e, X) - mlp.forward(th - eps * e, X)) / (2 * eps) for e in np.eye(P)], 2)
    f = mlp.forward(th, X)
    p = np.exp(f - f.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    Gr = sum(J[n].T @ (np.diag(p[n]) - np.outer(p[n], p[n])) @ J[n] for n in range(12))
    cv = Curvature(mlp, th, "categorical", chunk_size=5)
    G, _ = cv.full(X, y)
    np.testing.assert_allclose(G, Gr, atol=1e-8)
    np.testing.assert_allclose(cv.diag(X, y)[0], np.diag(Gr), atol=1e-8)
    V = rng.normal(size=(2, P))
    np.testing.assert_allclose(cv.gvp(X, y, V), V @ Gr, atol=1e-8)
    # Kronecker on one data point is exact for the last layer's weight block
    (A, B) = cv.kron(X[:1], y[:1])[0][-1]
    w0, b0 = mlp.offsets[-1]
    G1 = J[0].T @ (np.diag(p[0]) - np.outer(p[0], p[0])) @ J[0]
    np.testing.assert_allclose(np.kron(B, A), G1[w0:b0, w0:b0], atol=1e-8)
    # last-layer Laplace equals the full-network one restricted to the last layer's block
    la = Laplace(mlp, th, "categorical", structure="full", subset="last_layer").fit(X, y)
    np.testing.assert_allclose(la.H, Gr[w0:, w0:], atol=1e-8)


def test_marglik_optimisation(rng):
    X, y, _, _, th = blr(rng, N=60)
    for s, ps in [("diag", "diag"), ("kron", "layerwise"), ("full", "scalar")]:
        la = Laplace.from_features(th[None, :-1], th[-1:], "gaussian", structure=s, prior_precision=50.0,
                                   sigma_noise=2.0).fit(X, y)
        before = la.log_marginal_likelihood()
        la.optimize_prior_precision(prior_structure=ps, optimize_sigma=True)
        after = la.log_marginal_likelihood()
        assert after > before
        # at the optimum the exact gradient vanishes: check by central differences
        p, sg = la.prior_precision, la.sigma_noise
        h = 1e-5
        d = (la._lml(p * math.exp(h), sg)[0] - la._lml(p * math.exp(-h), sg)[0]) / (2 * h)
        assert abs(d) < 1e-3 * max(1.0, abs(after))


def test_lml_gradient_matches_finite_differences(rng):
    X = rng.normal(size=(30, 3))
    y = rng.integers(0, 3, 30).astype(float)
    W, b = rng.normal(size=(3, 3)), rng.normal(size=3)
    for s in STRUCTS:
        la = Laplace.from_features(W, b, "categorical", structure=s, rank=6).fit(X, y)
        p = np.array([0.7, 1.9])
        _, g, _ = la._lml(p, 1.0, grad=True)
        for j in range(2):
            e = np.zeros(2)
            e[j] = 1e-6
            fd = (la._lml(p + e, 1.0)[0] - la._lml(p - e, 1.0)[0]) / 2e-6
            assert g[j] == pytest.approx(fd, rel=1e-5, abs=1e-7)


def test_recovers_noise_level():
    """N = 2000, σ = 0.3: σ̂ has sd ≈ σ/√(2N) ≈ 0.005, so ±0.03 fails with negligible probability."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(2000, 2))
    y = X @ np.array([1.0, -2.0]) + 0.5 + 0.3 * rng.normal(size=2000)
    Phi = np.hstack([X, np.ones((2000, 1))])
    th = np.linalg.lstsq(Phi, y, rcond=None)[0]
    la = Laplace.from_features(th[None, :2], th[2:], "gaussian", structure="full", sigma_noise=1.0).fit(X, y)
    la.optimize_prior_precision(optimize_sigma=True)
    assert abs(la.sigma_noise - 0.3) < 0.03


def test_gridsearch_picks_best_validation_nll(rng):
    X = rng.normal(size=(60, 3))
    y = (X[:, 0] + 0.5 * rng.normal(size=60) > 0).astype(float)
    la = Laplace.from_features(np.array([[2.0, 0, 0]]), None, "bernoulli", structure="diag").fit(X[:40], y[:40])
    grid = np.logspace(-2, 2, 5)
    la.optimize_prior_precision(method="gridsearch", val=(X[40:], y[40:]), grid=grid)
    nlls = []
    for g in grid:
        la.prior_precision = g
        nlls.append(-la.predict(X[40:]).log_likelihood(y[40:]).sum())
    assert la.prior_precision is not None
    la2 = Laplace.from_features(np.array([[2.0, 0, 0]]), None, "bernoulli", structure="diag").fit(X[:40], y[:40])
    la2.optimize_prior_precision(method="gridsearch", val=(X[40:], y[40:]), grid=grid)
    assert la2.prior_precision[0] == grid[int(np.argmin(nlls))]


def test_mc_link_against_quadrature(rng):
    """Bernoulli GLM predictive by MC (S = 20000) vs Gauss-Hermite quadrature; 5 standard errors
    (false alarm < 1e-5 over the 4 points)."""
    X = rng.normal(size=(30, 2))
    y = rng.integers(0, 2, 30).astype(float)
    la = Laplace.from_features(np.array([[1.0, -1.0]]), np.array([0.2]), "bernoulli", structure="full",
                               prior_precision=0.5).fit(X, y)
    pred = la.predict(X[:4], link="mc", n_samples=20000, seed=3)
    fmu, fvar = la.functional_variance(X[:4])
    t, w = np.polynomial.hermite_e.hermegauss(80)
    ref = np.array([np.sum(w * expit(m + math.sqrt(v) * t)) / math.sqrt(2 * math.pi)
                    for m, v in zip(fmu[:, 0], fvar[:, 0, 0])])
    ps = np.exp(pred.log_probs[:, :, 1])
    se = ps.std(0) / math.sqrt(20000)
    assert np.all(np.abs(pred.probs[:, 1] - ref) < 5 * se)
    assert pred.log_probs.shape == (20000, 4, 2)


def test_sample_moments_and_reproducibility(rng):
    X = rng.normal(size=(40, 2))
    y = rng.integers(0, 2, 40).astype(float)
    la = Laplace.from_features(np.ones((2, 2)), None, "categorical", structure="kron").fit(X, y)
    s1 = la.sample(4000, seed=11)
    np.testing.assert_array_equal(s1, la.sample(4000, seed=11))
    # mean within 5 standard errors per coordinate (false alarm < 6 · 6e-7)
    sd = np.sqrt(np.diag(la.posterior_covariance))
    assert np.all(np.abs(s1.mean(0) - la.mean) < 5 * sd / math.sqrt(4000))


@pytest.mark.parametrize("lik", ["categorical", "gaussian"])
def test_glm_samples_for_uncertainty_decomposition(lik, rng):
    X = rng.normal(size=(20, 3))
    y = rng.integers(0, 3, 20).astype(float) if lik == "categorical" else rng.normal(size=(20, 3))
    la = Laplace.from_features(rng.normal(size=(3, 3)), None, lik, structure="diag").fit(X, y)
    pred = la.predict(X[:6], n_samples=50, seed=1)
    assert pred.n_samples == 50
    if lik == "categorical":
        assert pred.log_probs.shape == (50, 6, 3)
        np.testing.assert_allclose(np.exp(pred.log_probs).sum(-1), 1, rtol=1e-12)
        nnp = la.predict(X[:6], pred_type="nn", n_samples=30)
        assert nnp.log_probs.shape == (30, 6, 3)
    else:
        assert pred.samples_mean.shape == (50, 6, 3)


def test_bridge_probabilities(rng):
    X = rng.normal(size=(20, 3))
    y = rng.integers(0, 3, 20).astype(float)
    la = Laplace.from_features(rng.normal(size=(3, 3)), None, "categorical", structure="full").fit(X, y)
    p = la.predict(X[:5], link="bridge").probs
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-12)
    # a tiny posterior variance: the bridge, probit and the MAP softmax all agree
    la.prior_precision = 1e8
    f = X[:5] @ la.model.weight.T
    sm = np.exp(f) / np.exp(f).sum(1, keepdims=True)
    np.testing.assert_allclose(la.predict(X[:5], link="probit").probs, sm, atol=1e-6)


def test_float32(rng):
    X = rng.normal(size=(30, 3)).astype(np.float32)
    y = rng.integers(0, 2, 30).astype(np.float32)
    la = Laplace.from_features(np.ones((2, 3), np.float32), None, "categorical", structure="kron").fit(X, y)
    la64 = Laplace.from_features(np.ones((2, 3)), None, "categorical", structure="kron").fit(X.astype(float), y)
    assert la.H[0][0].dtype == np.float32
    assert la.log_marginal_likelihood() == pytest.approx(la64.log_marginal_likelihood(), rel=1e-5)


def test_bad_input(rng):
    X = rng.normal(size=(10, 2))
    y = rng.integers(0, 2, 10).astype(float)
    W = np.ones((2, 2))
    with pytest.raises(ValueError, match="structure"):
        Laplace.from_features(W, None, "categorical", structure="block")
    with pytest.raises(ValueError, match="prior_precision"):
        Laplace.from_features(W, None, "categorical", prior_precision=0.0)
    with pytest.raises(ValueError, match="prior_precision"):
        Laplace.from_features(W, None, "categorical", prior_precision=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="eigenbasis"):
        Laplace.from_features(W, None, "categorical", structure="kron", prior_precision=np.ones(6))
    with pytest.raises(ValueError, match="sigma_noise"):
        Laplace.from_features(W, None, "gaussian", sigma_noise=-1.0)
    with pytest.raises(ValueError, match="sigma_noise"):
        Laplace.from_features(W, None, "categorical", sigma_noise=2.0)
    with pytest.raises(ValueError, match="temperature"):
        Laplace.from_features(W, None, "categorical", temperature=0)
    # sigma_noise whose curvature factor 1 / (sigma^2 T) is not a finite positive float (fit passed,
    # then predict raised ZeroDivisionError at 1e-170)
    for s in (1e-170, 1e200, np.inf):
        with pytest.raises(ValueError, match="sigma_noise"):
            Laplace.from_features(W, None, "gaussian", sigma_noise=s)
    with pytest.raises(ValueError, match="subset"):
        Laplace.from_features(W, None, "categorical", subset="first")
    with pytest.raises(RuntimeError, match="fit"):
        Laplace.from_features(W, None, "categorical").log_marginal_likelihood()
    la = Laplace.from_features(W, None, "categorical").fit(X, y)
    with pytest.raises(ValueError, match="X"):
        la.predict(X[:, :1])
    with pytest.raises(ValueError, match="link"):
        la.predict(X, link="logit")
    with pytest.raises(ValueError, match="bridge"):
        Laplace.from_features(W[:1], None, "bernoulli").fit(X, y).predict(X, link="bridge")
    with pytest.raises(ValueError, match="val"):
        la.optimize_prior_precision(method="gridsearch")
    with pytest.raises(ValueError, match="optimize_sigma"):
        la.optimize_prior_precision(optimize_sigma=True)
    for bad in (0, -1):  # L-BFGS-B took max_iter <= 0 as "no limit"
        with pytest.raises(ValueError, match="max_iter"):
            la.optimize_prior_precision(max_iter=bad)
    with pytest.raises(TypeError, match="max_iter"):
        la.optimize_prior_precision(max_iter="a")
    with pytest.raises(TypeError, match="theta"):
        Laplace(bg.nn.MLP([2, 2]), None, "categorical")
    with pytest.raises(ValueError, match="theta"):
        Laplace(bg.nn.MLP([2, 2]), np.zeros(3), "categorical")
    with pytest.raises(TypeError, match="model"):
        Laplace("mlp", np.zeros(3), "categorical")


@pytest.mark.single_backend
@pytest.mark.skipif(importlib.util.find_spec("laplace") is None or importlib.util.find_spec("torch") is None,
                    reason="laplace-torch is an optional reference (bench extra), not installed")
@pytest.mark.parametrize("structure", ["diag", "kron", "full"])
def test_agrees_with_laplace_torch(structure):
    import torch
    from laplace import Laplace as LT

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 4))
    y = rng.integers(0, 3, 40)
    mlp = bg.nn.MLP([4, 6, 3], "tanh")
    th = mlp.init(seed=2)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)).double()
    torch.nn.utils.vector_to_parameters(torch.tensor(th), model.parameters())
    ds = torch.utils.data.TensorDataset(torch.tensor(X), torch.tensor(y))
    from laplace.curvature import BackPackGGN   # BackPack: the reference that needs no further extras
    lt = LT(model, "classification", subset_of_weights="all", hessian_structure=structure, backend=BackPackGGN,
            prior_precision=torch.tensor([0.5, 1.0, 1.5, 2.0], dtype=torch.float64))
    lt.fit(torch.utils.data.DataLoader(ds, batch_size=16))
    ours = Laplace(mlp, th, "categorical", structure=structure, prior_precision=[0.5, 1.0, 1.5, 2.0]).fit(X, y)
    # laplace-torch's full GGN goes through a different numerical path: agreement to ~1e-9
    assert ours.log_marginal_likelihood() == pytest.approx(lt.log_marginal_likelihood().item(), rel=1e-8)
    for link in ("probit", "bridge", "bridge_norm"):   # the native GLM predictive, every closed-form link
        p_lt = lt(torch.tensor(X[:5]), pred_type="glm", link_approx=link).detach().numpy()
        np.testing.assert_allclose(ours.predict(X[:5], link=link).probs, p_lt, rtol=1e-6)
    # last layer, full (the structure the estimators pick for small heads)
    ll = LT(model, "classification", subset_of_weights="last_layer", hessian_structure=structure,
            backend=BackPackGGN, prior_precision=0.7)
    ll.fit(torch.utils.data.DataLoader(ds, batch_size=16))
    ours_ll = Laplace(mlp, th, "categorical", structure=structure, subset="last_layer", prior_precision=0.7).fit(X, y)
    p_lt = ll(torch.tensor(X[:5]), pred_type="glm", link_approx="probit").detach().numpy()
    np.testing.assert_allclose(ours_ll.predict(X[:5]).probs, p_lt, rtol=1e-6)


@pytest.mark.parametrize("structure", STRUCTS)
def test_save_load_roundtrip(structure, rng, tmp_path):
    mlp = bg.nn.MLP([3, 6, 3], "tanh")
    th = mlp.init(seed=3)
    X = rng.normal(size=(25, 3))
    y = rng.integers(0, 3, 25).astype(float)
    prior = [0.5, 1.0, 1.5, 2.0]
    la = Laplace(mlp, th, "categorical", structure=structure, prior_precision=prior, rank=5, temperature=0.9)
    f0 = tmp_path / "unfitted.npz"
    la.save(f0)
    assert not Laplace.load(f0)._fitted
    la.fit(X, y)
    f = tmp_path / "la.npz"
    la.save(f)
    lb = Laplace.load(f)
    assert lb.structure == structure and lb.temperature == 0.9
    np.testing.assert_array_equal(lb.mean, la.mean)
    np.testing.assert_array_equal(lb.prior_precision, la.prior_precision)
    assert lb.log_marginal_likelihood() == pytest.approx(la.log_marginal_likelihood(), rel=1e-14)
    np.testing.assert_allclose(lb.predict(X[:4]).probs, la.predict(X[:4]).probs, rtol=1e-13)
    np.testing.assert_array_equal(lb.sample(3, seed=1), la.sample(3, seed=1))
    # last-layer on an MLP and a feature head round-trip too
    for lx in (Laplace(mlp, th, "categorical", subset="last_layer", structure="full").fit(X, y),
               Laplace.from_features(rng.normal(size=(1, 3)), None, "gaussian", sigma_noise=0.3).fit(X, X[:, 0])):
        lx.save(f)
        ly = Laplace.load(f)
        assert ly.log_marginal_likelihood() == pytest.approx(lx.log_marginal_likelihood(), rel=1e-14)


def test_load_rejects_malformed_and_hostile_files(rng, tmp_path):
    mlp = bg.nn.MLP([2, 3, 2], "tanh")
    th = mlp.init(seed=1)
    la = Laplace(mlp, th, "categorical", structure="diag").fit(rng.normal(size=(5, 2)), np.array([0., 1, 0, 1, 1]))
    good = tmp_path / "good.npz"
    la.save(good)
    with np.load(good) as z:
        files = {k: z[k] for k in z.files}
    meta = json.loads(files["__meta__"].tobytes())

    def write(name, meta_=meta, **over):
        arr = dict(files, **over)
        arr["__meta__"] = np.frombuffer(json.dumps(meta_).encode(), np.uint8)
        arr = {k: v for k, v in arr.items() if v is not None}
        np.savez(tmp_path / name, **arr)
        return tmp_path / name

    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    bad = [tmp_path / "junk.npz",
           write("obj.npz", H=np.array([object()], dtype=object)),           # pickled object array
           write("nan.npz", H=np.full_like(files["H"], np.nan)),
           write("shape.npz", H=files["H"][:-1]),
           write("missing.npz", H=None),
           write("theta.npz", theta=files["theta"][:-1]),
           write("kind.npz", dict(meta, kind="MFVI")),
           write("struct.npz", dict(meta, structure="blocks")),
           write("meta.npz", dict(meta, fitted=True, n_data="many")),
           write("nometa.npz", {k: v for k, v in meta.items() if k != "likelihood"}),
           write("prior.npz", prior_precision=-files["prior_precision"])]
    for path in bad:
        with pytest.raises(ValueError):
            Laplace.load(path)


def test_lowrank_eigsh_matches_dense(rng):
    """Matrix-free ARPACK on GGN-vector products gives the dense eigh's top eigenpairs."""
    mlp = bg.nn.MLP([3, 6, 3], "tanh")
    th = mlp.init(seed=3)
    X = rng.normal(size=(30, 3))
    y = rng.integers(0, 3, 30).astype(float)
    kw = dict(structure="lowrank", rank=6, prior_precision=0.5)
    dense = Laplace(mlp, th, "categorical", lowrank_solver="dense", **kw).fit(X, y)
    arp = Laplace(mlp, th, "categorical", lowrank_solver="eigsh", **kw).fit(X, y)
    assert arp.H is None                      # no (P, P) matrix was built
    np.testing.assert_allclose(arp._post.lam, dense._post.lam, rtol=1e-8)
    np.testing.assert_allclose(arp.posterior_precision, dense.posterior_precision, rtol=1e-7, atol=1e-9)
    assert arp.log_marginal_likelihood() == pytest.approx(dense.log_marginal_likelihood(), rel=1e-10)
    with pytest.raises(ValueError, match="lowrank_solver"):
        Laplace(mlp, th, "categorical", lowrank_solver="lanczos")


def test_empirical_fisher_regression_convention(rng):
    """EF for the gaussian likelihood is Σ g gᵀ with g = ∇θ ½||y − f||² (unit noise,
    Λ = I): with residuals of exactly ±1 per point (one output) it equals the GGN.
    laplace-torch's EF is 2× this (it squares the gradient of MSELoss(sum) = 2(f − y)
    and then applies the factor ½ once): we keep Λ = I, as the issue states."""
    mlp = bg.nn.MLP([2, 4, 1], "tanh")
    th = mlp.init(seed=0)
    X = rng.normal(size=(12, 2))
    y = mlp.forward(th, X)[:, 0] + rng.choice([-1.0, 1.0], 12)
    for s in ("diag", "full"):
        ef = Laplace(mlp, th, "gaussian", structure=s, hessian="ef").fit(X, y)
        ggn = Laplace(mlp, th, "gaussian", structure=s, hessian="ggn").fit(X, y)
        np.testing.assert_allclose(ef.H, ggn.H, rtol=1e-12, atol=1e-14)


@pytest.mark.single_backend
@pytest.mark.skipif(importlib.util.find_spec("laplace") is None or importlib.util.find_spec("torch") is None,
                    reason="laplace-torch is an optional reference (bench extra), not installed")
def test_empirical_fisher_regression_is_half_of_laplace_torch():
    import torch
    from laplace import Laplace as LT

    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 3))
    y = rng.normal(size=(20, 1))
    mlp = bg.nn.MLP([3, 5, 1], "tanh")
    th = mlp.init(seed=2)
    model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1)).double()
    torch.nn.utils.vector_to_parameters(torch.tensor(th), model.parameters())
    ds = torch.utils.data.TensorDataset(torch.tensor(X), torch.tensor(y))
    from laplace.curvature import BackPackEF
    lt = LT(model, "regression", subset_of_weights="all", hessian_structure="diag", backend=BackPackEF)
    lt.fit(torch.utils.data.DataLoader(ds, batch_size=8))
    ours = Laplace(mlp, th, "gaussian", structure="diag", hessian="ef").fit(X, y)
    np.testing.assert_allclose(lt.H.detach().numpy(), 2 * ours.H, rtol=1e-10)


def test_marglik_optimisation_survives_singular_trial_steps(monkeypatch):
    """L-BFGS's first trial step can reach priors so weak that P is numerically singular (the
    Cholesky fails); the optimiser must back off and still reach the stationary point. Here the
    failure is forced for p0 < 0.2, while the optimum lies above it."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((200, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(np.int64)
    mlp = bg.nn.MLP([2, 12, 12, 2], activation="tanh")
    theta = bg.nn.train_map(mlp, X, y, likelihood="categorical", epochs=10, seed=0, verbose=0)
    la = bg.laplace.Laplace(mlp, theta, likelihood="categorical", structure="full").fit(X, y)
    real = la._lml
    la.optimize_prior_precision()
    p_opt = float(la.prior_precision[0])
    assert p_opt > 0.3  # the unconstrained optimum, so the forced failures below never bind there

    def failing(p, sigma, grad=False):
        if np.min(p) < 0.2:
            raise ValueError("posterior precision is not positive definite; increase prior_precision")
        return real(p, sigma, grad)

    monkeypatch.setattr(la, "_lml", failing)
    la.prior_precision = 50.0  # far above: the first trial step overshoots below 0.2
    la.optimize_prior_precision()
    assert abs(float(la.prior_precision[0]) - p_opt) < 1e-3 * p_opt


def test_structure_registry():
    """Every structure is one registered class behind the posterior protocol."""
    from bayesgrad.laplace._posterior import Posterior
    from bayesgrad.laplace.approximation import POSTERIORS
    assert bg.laplace.STRUCTURES == tuple(STRUCTS) == tuple(POSTERIORS)
    for key, cls in POSTERIORS.items():
        assert issubclass(cls, Posterior) and cls.key == key


@pytest.mark.parametrize("structure", STRUCTS)
def test_posterior_covariance_is_the_posteriors(structure, rng):
    X = rng.normal(size=(30, 3))
    y = rng.integers(0, 2, 30).astype(float)
    la = Laplace.from_features(rng.normal(size=(2, 3)), None, "categorical", structure=structure, rank=5).fit(X, y)
    Sig = la.posterior_covariance
    np.testing.assert_array_equal(Sig, la._posterior().covariance())
    np.testing.assert_allclose(Sig, np.linalg.inv(la.posterior_precision), rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("subset", ["all", "last_layer"])
def test_predict_checks_inputs_once(subset, monkeypatch, rng):
    """X is converted and checked once, where predict receives it, on every path below
    (Jacobians, the linear head's block formula, features, network samples)."""
    from bayesgrad import _checks
    mlp = bg.nn.MLP([3, 4, 2], "tanh")
    X = rng.normal(size=(40, 3))
    la = Laplace(mlp, mlp.init(seed=0), "categorical", structure="full", subset=subset).fit(X, X[:, 0] > 0)
    names, real = [], _checks.as_array

    def counting(x, name, *args, **kwargs):
        names.append(name)
        return real(x, name, *args, **kwargs)

    monkeypatch.setattr(_checks, "as_array", counting)
    for Xq in (X[:2], X):
        for kw in (dict(), dict(link="mc", n_samples=3), dict(pred_type="nn", n_samples=3)):
            names.clear()
            la.predict(Xq, **kw)
            assert names.count("X") == 1, (len(Xq), kw, names)


def _reference_fvar(la, X):
    """float64 reference J Σ Jᵀ: Jacobians from float64 central differences of the model
    the approximation sees (whole MLP or last layer), Σ the dense posterior covariance."""
    m, th = la.model, la.mean.astype(np.float64)
    cols = []
    for p in range(th.size):
        e = np.zeros_like(th)
        e[p] = 1e-6
        cols.append((m.forward(th + e, X) - m.forward(th - e, X)) / 2e-6)
    J = np.stack(cols, axis=2)
    return m.forward(th, X), np.einsum("ncp,pq,ndq->ncd", J, la.posterior_covariance, J)


@pytest.mark.parametrize("subset", ["all", "last_layer"])
@pytest.mark.parametrize("structure", STRUCTS)
def test_native_glm_predictive_matches_dense_reference(structure, subset, rng):
    """The native GLM predictive (layer-by-layer for diag / kron, Jacobian chunks for full /
    lowrank, features once for the last layer) equals J Σ Jᵀ with float64 finite-difference
    Jacobians (error ~1e-9) and the dense covariance, on both backends, to 1e-7."""
    mlp = bg.nn.MLP([3, 5, 4, 3], "tanh")
    X = rng.normal(size=(60, 3))
    y = rng.integers(0, 3, 60).astype(float)
    la = Laplace(mlp, mlp.init(seed=1), "categorical", structure=structure, subset=subset, rank=7,
                 prior_precision=0.5).fit(X, y)
    Xq = rng.normal(size=(9, 3))
    f, V = la.functional_variance(Xq)
    fr, Vr = _reference_fvar(la, Xq)
    np.testing.assert_allclose(f, fr, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(V, Vr, rtol=1e-7, atol=1e-9)
    kappa = 1 / np.sqrt(1 + np.pi / 8 * np.diagonal(Vr, axis1=1, axis2=2))
    z = kappa * fr
    ref = np.exp(z - z.max(1, keepdims=True))
    np.testing.assert_allclose(la.predict(Xq).probs, ref / ref.sum(1, keepdims=True), rtol=1e-7)


def test_nn_sampling_is_chunk_independent(rng, monkeypatch):
    """The sampling predictive runs the S-sample forward in row chunks; the result does not
    depend on the chunking (here 1 row at a time vs all at once)."""
    from bayesgrad.laplace import predictive as P
    mlp = bg.nn.MLP([3, 8, 3], "relu")
    X = rng.normal(size=(50, 3))
    la = Laplace(mlp, mlp.init(seed=2), "categorical", structure="kron").fit(X, X[:, 0] > 0)
    whole = la.predict(X, pred_type="nn", n_samples=20, seed=3)
    monkeypatch.setattr(P, "_NN_CHUNK_ELEMS", 1)
    rows = la.predict(X, pred_type="nn", n_samples=20, seed=3)
    np.testing.assert_allclose(rows.log_probs, whole.log_probs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("link", ["probit", "bridge", "mc"])
def test_glm_predictive_is_one_distribution(link, rng):
    """With samples, probs is the mean of the sampled GLM probabilities (so the entropy of
    probs is the decomposition's total), samples are log-probabilities of f ~ N(f*, J Σ Jᵀ),
    and the closed-form link's answer is link_probs, equal to the sample-free probs."""
    from scipy.special import logsumexp
    mlp = bg.nn.MLP([3, 6, 3], "tanh")
    X = rng.normal(size=(40, 3))
    la = Laplace(mlp, mlp.init(seed=4), "categorical", structure="kron").fit(X, rng.integers(0, 3, 40))
    pred = la.predict(X[:8], link=link, n_samples=64, seed=5)
    assert np.all(np.isfinite(pred.log_probs)) and pred.log_probs.shape == (64, 8, 3)
    mean = np.exp(logsumexp(pred.log_probs, axis=0) - math.log(64))
    np.testing.assert_allclose(pred.probs, mean, rtol=1e-12)
    u = bg.uncertainty.decompose(pred.log_probs)
    np.testing.assert_allclose(u.total, -np.sum(pred.probs * np.log(pred.probs), axis=1), rtol=1e-10)
    if link != "mc":
        np.testing.assert_allclose(pred.link_probs, la.predict(X[:8], link=link).probs, rtol=1e-12)
    # the samples are those of N(f*, J Σ Jᵀ): their logits' sample mean is within 5 standard errors
    f, V = la.functional_variance(X[:8])
    logits = pred.log_probs - pred.log_probs.mean(axis=2, keepdims=True)
    sd = np.sqrt(np.einsum("ncc->nc", V) + 1e-12)
    fc = f - f.mean(axis=1, keepdims=True)
    assert np.all(np.abs(logits.mean(0) - fc) < 5 * 2 * sd.max(axis=1, keepdims=True) / 8 + 1e-9)


def test_subset_of_another_laplaces_model_is_honoured(rng):
    """Laplace(full.model, full.mean, subset="last_layer") fits the last layer only (it used to
    fit the whole network silently), and equals the last-layer Laplace of the MLP itself."""
    mlp = bg.nn.MLP([3, 10, 3], "tanh")
    theta = mlp.init(seed=6)
    X = rng.normal(size=(50, 3))
    y = rng.integers(0, 3, 50)
    full = Laplace(mlp, theta, "categorical", structure="kron").fit(X, y)
    assert full.n_params == mlp.n_params == 73
    ll = Laplace(full.model, full.mean, likelihood="categorical", subset="last_layer").fit(X, y)
    ref = Laplace(mlp, theta, "categorical", subset="last_layer").fit(X, y)
    assert ll.n_params == ref.n_params == 33
    np.testing.assert_array_equal(ll.H, ref.H)
    np.testing.assert_allclose(ll.predict(X[:5]).probs, ref.predict(X[:5]).probs, rtol=1e-12)
    again = Laplace(full.model, full.mean, likelihood="categorical", structure="kron").fit(X, y)
    assert again.n_params == 73
    with pytest.raises(ValueError, match="theta must have shape"):
        Laplace(full.model, full.mean[:-1], likelihood="categorical", subset="last_layer")


@pytest.mark.parametrize("link", ["bridge", "bridge_norm"])
def test_bridge_links_against_laplace_torch_formula(link, rng):
    """The Laplace bridge and its normalised variant equal a direct transcription of
    laplace-torch 0.3's formula (BaseLaplace._glm_predictive, float64) on our f, f_var."""
    X = rng.normal(size=(30, 3))
    la = Laplace.from_features(rng.normal(size=(4, 3)), None, "categorical", structure="full").fit(
        X, rng.integers(0, 4, 30))
    f, V = la.functional_variance(X[:6])
    f, V = f.copy(), V.copy()
    f -= V.sum(-1) * f.sum(-1).reshape(-1, 1) / V.sum(axis=(1, 2)).reshape(-1, 1)
    V -= np.einsum("bi,bj->bij", V.sum(-1), V.sum(-2)) / V.sum(axis=(1, 2)).reshape(-1, 1, 1)
    K = f.shape[-1]
    vd = np.diagonal(V, axis1=1, axis2=2).copy()
    if link == "bridge_norm":
        m = vd.mean(axis=1) / np.sqrt(K / 2)
        f /= np.sqrt(m)[:, None]
        vd /= m[:, None]
    alpha = (1 - 2 / K + np.exp(f) / K ** 2 * np.exp(-f).sum(1, keepdims=True)) / vd
    np.testing.assert_allclose(la.predict(X[:6], link=link).probs, alpha / alpha.sum(1, keepdims=True), rtol=1e-10)


@pytest.mark.parametrize("structure", ["full", "diag"])
def test_subnetwork_laplace(structure, rng, tmp_path):
    """A subnetwork (mask or indices) is the whole-network GGN restricted to its rows and columns
    (float64, to rounding), its GLM predictive is J_sub Σ_sub J_subᵀ with finite-difference
    Jacobians, largest_variance_subnetwork picks the largest diagonal marginal variances, and
    it saves and loads."""
    mlp = bg.nn.MLP([3, 5, 3], "tanh")
    theta = mlp.init(seed=8)
    X = rng.normal(size=(40, 3))
    y = rng.integers(0, 3, 40)
    whole = Laplace(mlp, theta, "categorical", structure="full").fit(X, y)
    diag = Laplace(mlp, theta, "categorical", structure="diag").fit(X, y)
    idx = bg.laplace.largest_variance_subnetwork(diag, 12)
    v = diag._posterior().diag_inv()
    assert len(idx) == 12 and np.all(np.diff(idx) > 0) and v[idx].min() >= np.delete(v, idx).max()
    mask = np.zeros(mlp.n_params, bool)
    mask[idx] = True
    sub = Laplace(mlp, theta, "categorical", structure=structure, subset=mask, prior_precision=0.5).fit(X, y)
    assert sub.subset == "subnetwork" and sub.n_params == 12
    H = whole.H[np.ix_(idx, idx)]
    np.testing.assert_allclose(sub.H, H if structure == "full" else np.diag(H), rtol=1e-10, atol=1e-12)
    same = Laplace(whole.model, theta, "categorical", structure=structure, subset=idx, prior_precision=0.5).fit(X, y)
    np.testing.assert_array_equal(same.H, sub.H)
    f, V = sub.functional_variance(X[:5])
    fr, Vr = _reference_fvar(sub, X[:5])
    np.testing.assert_allclose(V, Vr, rtol=1e-7, atol=1e-10)
    sub.save(tmp_path / "s.npz")
    back = Laplace.load(tmp_path / "s.npz")
    np.testing.assert_array_equal(back.subnet_indices, idx)
    np.testing.assert_allclose(back.predict(X[:5]).probs, sub.predict(X[:5]).probs, rtol=1e-12)
    assert sub.predict(X[:5], pred_type="nn", n_samples=4).log_probs.shape == (4, 5, 3)
    with pytest.raises(ValueError, match="subnetwork"):
        Laplace(mlp, theta, "categorical", structure="kron", subset=idx)
    with pytest.raises(ValueError, match="indices must be in"):
        Laplace(mlp, theta, "categorical", structure="full", subset=[0, mlp.n_params])


def test_cross_validated_prior(rng):
    """method="cv" picks the grid value with the smallest summed held-out NLL, each fold's
    curvature refitted without it (checked against fold-by-fold Laplaces built by hand)."""
    X = rng.normal(size=(60, 3))
    y = rng.integers(0, 3, 60)
    W, b = rng.normal(size=(3, 3)), rng.normal(size=3)
    grid = [0.01, 1.0, 100.0]
    la = Laplace.from_features(W, b, "categorical", structure="kron").fit(X, y)
    la.optimize_prior_precision(method="cv", val=(X, y), grid=grid, n_folds=3)
    fold = np.arange(60) % 3
    ref = np.zeros(3)
    for j in range(3):
        lj = Laplace.from_features(W, b, "categorical", structure="kron").fit(X[fold != j], y[fold != j])
        for i, p in enumerate(grid):
            lj.prior_precision = p
            pr = lj.predict(X[fold == j]).probs
            ref[i] -= np.sum(np.log(pr[np.arange(pr.shape[0]), y[fold == j]]))
    np.testing.assert_allclose(la.cv_nll_, ref, rtol=1e-10)
    assert la.prior_precision[0] == grid[int(np.argmin(ref))]
    assert la.n_data == 60      # the approximation itself keeps its full-data curvature
    with pytest.raises(ValueError, match="val"):
        la.optimize_prior_precision(method="cv")
