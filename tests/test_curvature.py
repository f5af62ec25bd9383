"""Curvature kernels and bg.laplace.Curvature on a linear head: exact GGN,
Fisher, Kronecker factors, GGN-vector products, against explicit float64
computations; native vs NumPy parity; chunk-size independence; bad input."""
import numpy as np
import pytest

import bayesgrad as bg
from bayesgrad import _backend, _numpy
from bayesgrad._codes import Activation, CurvatureKind, Likelihood
from bayesgrad.laplace import Curvature, LinearHead

LIKS = ["gaussian", "categorical", "bernoulli"]


def problem(lik, rng, N=23, F=4, C=3, dtype=np.float64):
    if lik == "bernoulli":
        C = 1
    X = rng.normal(size=(N, F))
    W = rng.normal(size=(C, F))
    b = rng.normal(size=C)
    if lik == "gaussian":
        y = rng.normal(size=(N, C))
    elif lik == "categorical":
        y = rng.integers(0, C, N).astype(float)
    else:
        y = rng.integers(0, 2, N).astype(float)
    return X.astype(dtype), W.astype(dtype), b.astype(dtype), y.astype(dtype)


def explicit_ggn(lik, X, W, b, y, kind="ggn"):
    """Σ_n J_nᵀ Λ_n J_n with J_n = I_C ⊗ [x_n, 1] (after reordering to W row-major, b)."""
    N, F = X.shape
    C = W.shape[0]
    P = C * F + C
    G = np.zeros((P, P))
    for n in range(N):
        J = np.zeros((C, P))
        for c in range(C):
            J[c, c * F:(c + 1) * F] = X[n]
            J[c, C * F + c] = 1.0
        f = W @ X[n] + b
        if lik == "gaussian":
            lam = np.eye(C) if kind == "ggn" else np.outer(f - y[n], f - y[n])
        elif lik == "categorical":
            p = np.exp(f - f.max())
            p /= p.sum()
            if kind == "ggn":
                lam = np.diag(p) - np.outer(p, p)
            else:
                g = p - np.eye(C)[int(y[n])]
                lam = np.outer(g, g)
        else:
            p = 1 / (1 + np.exp(-f[0]))
            lam = np.array([[p * (1 - p)]]) if kind == "ggn" else np.array([[(p - y[n]) ** 2]])
        G += J.T @ lam @ J
    return G


@pytest.mark.parametrize("lik", LIKS)
@pytest.mark.parametrize("kind", ["ggn", "ef"])
def test_full_diag_gvp_against_explicit(lik, kind, rng):
    X, W, b, y = problem(lik, rng)
    cv = Curvature(LinearHead(W, b), None, lik, hessian=kind, chunk_size=7)
    G_ref = explicit_ggn(lik, X, W, b, y, kind)
    G, loss = cv.full(X, y)
    np.testing.assert_allclose(G, G_ref, rtol=1e-12, atol=1e-11)
    d, loss2 = cv.diag(X, y)
    np.testing.assert_allclose(d, np.diag(G_ref), rtol=1e-12, atol=1e-11)
    assert loss == pytest.approx(loss2, rel=1e-14)
    V = rng.normal(size=(3, G.shape[0]))
    np.testing.assert_allclose(cv.gvp(X, y, V), V @ G_ref, rtol=1e-11, atol=1e-10)
    np.testing.assert_allclose(cv.gvp(X, y, V[0]), G_ref @ V[0], rtol=1e-11, atol=1e-10)


@pytest.mark.parametrize("lik", LIKS)
def test_loss_value(lik, rng):
    X, W, b, y = problem(lik, rng)
    f = X @ W.T + b
    if lik == "gaussian":
        ref = 0.5 * np.sum((y - f) ** 2)
    elif lik == "categorical":
        ref = -np.sum(f[np.arange(len(y)), y.astype(int)] - np.log(np.exp(f).sum(1)))
    else:
        ref = np.sum(np.log1p(np.exp(f[:, 0])) - y * f[:, 0])
    _, loss = Curvature(LinearHead(W, b), None, lik).diag(X, y)
    assert loss == pytest.approx(ref, rel=1e-12)


def test_gaussian_ggn_is_loss_hessian(rng):
    """For a linear model with unit-noise Gaussian likelihood the GGN is the Hessian of
    L = ½ Σ ||y − f||², here by central second differences of L."""
    X, W, b, y = problem("gaussian", rng, N=9, F=2, C=2)
    head = LinearHead(W, b)
    th = head.parameters()

    def L(t):
        return 0.5 * np.sum((y - head.forward(t, X)) ** 2)

    P, h = th.size, 1e-3
    Hfd = np.zeros((P, P))
    E = np.eye(P) * h
    for i in range(P):
        for j in range(P):
            Hfd[i, j] = (L(th + E[i] + E[j]) - L(th + E[i] - E[j]) - L(th - E[i] + E[j]) + L(th - E[i] - E[j])) / (4 * h * h)
    G, _ = Curvature(head, None, "gaussian").full(X, y)
    np.testing.assert_allclose(G, Hfd, atol=1e-6)


@pytest.mark.parametrize("lik", LIKS)
def test_kron_factors(lik, rng):
    X, W, b, y = problem(lik, rng)
    cv = Curvature(LinearHead(W, b), None, lik, chunk_size=5)
    [(A, B)], _ = cv.kron(X, y)
    np.testing.assert_allclose(A, X.T @ X / X.shape[0], rtol=1e-12)
    G = explicit_ggn(lik, X, W, b, y)
    Cc, F = W.shape
    # the bias block of the GGN is exactly B = Σ Λ_n
    np.testing.assert_allclose(B, G[Cc * F:, Cc * F:], rtol=1e-12, atol=1e-12)
    # one data point: B ⊗ A is the exact W block
    cv1 = Curvature(LinearHead(W, b), None, lik)
    [(A1, B1)], _ = cv1.kron(X[:1], y[:1])
    G1 = explicit_ggn(lik, X[:1], W, b, y[:1])
    np.testing.assert_allclose(np.kron(B1, A1), G1[: Cc * F, : Cc * F], rtol=1e-12, atol=1e-12)


def test_mc_fisher_converges_to_ggn(rng):
    """The K-sample Fisher diagonal is an average of K iid terms T_k with mean the GGN
    diagonal; each of the P entries is checked within 5 standard errors estimated
    from the T_k (normal approximation: false alarm < P · 6e-7 ≈ 1e-5)."""
    X, W, b, y = problem("categorical", rng, N=15, F=3, C=3)
    K = 4000
    cv = Curvature(LinearHead(W, b), None, "categorical", hessian="fisher_mc", n_mc_samples=K, seed=7)
    d, _ = cv.diag(X, y)
    ref = np.diag(explicit_ggn("categorical", X, W, b, y))
    # per-sample terms from the kernel's square-root factors
    [(_, layers)] = list(cv.passes(*cv.check_data(X, y)))
    a, S = layers[0]
    S2 = (S * np.sqrt(K)) ** 2                                  # (n, K, C)
    Tw = np.einsum("nkc,nf->kcf", S2, a * a).reshape(K, -1)
    T = np.concatenate([Tw, S2.sum(0)], axis=1)                # (K, P)
    np.testing.assert_allclose(T.mean(0), d, rtol=1e-10)
    se = T.std(0, ddof=1) / np.sqrt(K)
    assert np.all(np.abs(d - ref) < 5 * se + 1e-12)


@pytest.mark.parametrize("kind", ["ggn", "ef", "fisher_mc"])
@pytest.mark.parametrize("lik", LIKS)
def test_chunk_size_independent(lik, kind, rng):
    X, W, b, y = problem(lik, rng, N=37)
    outs = []
    for cs in (1, 8, 100):
        cv = Curvature(LinearHead(W, b), None, lik, hessian=kind, n_mc_samples=3, chunk_size=cs, seed=3)
        d, loss = cv.diag(X, y)
        [(A, B)], _ = cv.kron(X, y)
        outs.append((d, loss, A, B))
    for o in outs[1:]:
        for u, v in zip(o, outs[0]):
            np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-13)


@pytest.mark.single_backend
@pytest.mark.skipif(not _backend.native_available(), reason="native core not built")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["ggn", "ef", "fisher_mc"])
@pytest.mark.parametrize("lik", LIKS)
def test_native_numpy_parity(lik, kind, dtype, rng):
    from bayesgrad import _core

    X, W, b, y = problem(lik, rng, N=40, F=5, C=4, dtype=dtype)
    f = np.ascontiguousarray(X @ W.T + b, dtype=dtype)
    Co = f.shape[1]
    K = {"ggn": 1 if lik == "bernoulli" else Co, "ef": 1, "fisher_mc": 3}[kind]
    draws = (rng.normal(size=(40, K, Co)) if lik == "gaussian" else rng.uniform(size=(40, K))).astype(dtype)
    tol = dict(rtol=2e-4, atol=2e-4) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-11)
    res = []
    for mod in (_core, _numpy):
        S = np.empty((40, K, Co), dtype)
        loss = mod.curvature.curv_sqrt_loss(f, y, draws, Likelihood[lik], CurvatureKind[kind], S)
        w, bb = np.zeros((Co, 5), dtype), np.zeros(Co, dtype)
        mod.curvature.linear_diag_accum(X, S, w, bb)
        A, B = np.zeros((5, 5), dtype), np.zeros((Co, Co), dtype)
        mod.curvature.linear_kron_accum(X, S, A, B)
        J = np.empty((40, K, Co * 6), dtype)
        mod.curvature.linear_jacobian(X, S, J)
        G = np.zeros((Co * 6, Co * 6), dtype)
        mod.curvature.gram_accum(J.reshape(-1, Co * 6), G)
        V = np.ascontiguousarray(rng.normal(size=(2, Co * 6)).astype(dtype)) if mod is _core else V
        gv = np.zeros((2, Co * 6), dtype)
        mod.curvature.linear_ggn_vp(X, S, V, gv)
        res.append((S, np.array(loss), w, bb, A, B, J, G, gv))
    for u, v in zip(*res):
        np.testing.assert_allclose(u, v, **tol)


@pytest.mark.single_backend
@pytest.mark.skipif(not _backend.native_available(), reason="native core not built")
def test_native_kernels_reject_bad_shapes():
    from bayesgrad import _core

    a = np.zeros((4, 3))
    S = np.zeros((4, 2, 2))
    with pytest.raises(ValueError, match="out_w"):
        _core.curvature.linear_diag_accum(a, S, np.zeros((3, 2)), np.zeros(2))
    with pytest.raises(ValueError, match="rows"):
        _core.curvature.linear_kron_accum(a[:3], S, np.zeros((3, 3)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="out"):
        _core.curvature.linear_jacobian(a, S, np.zeros((4, 2, 7)))
    with pytest.raises(ValueError, match="V"):
        _core.curvature.linear_ggn_vp(a, S, np.zeros((1, 7)), np.zeros((1, 8)))
    with pytest.raises(ValueError, match="likelihood"):
        _core.curvature.curv_sqrt_loss(np.zeros((4, 2)), np.zeros(4), np.zeros((4, 2)), 9, 0, np.zeros((4, 2, 2)))
    with pytest.raises(ValueError, match="heteroscedastic"):
        _core.curvature.curv_sqrt_loss(np.zeros((4, 2)), np.zeros(4), np.zeros((4, 2)),
                                       Likelihood.heteroscedastic_gaussian, 0, np.zeros((4, 2, 2)))
    with pytest.raises(ValueError, match="label"):
        _core.curvature.curv_sqrt_loss(np.zeros((4, 2)), np.full(4, 5.0), np.zeros((4, 2)), Likelihood.categorical,
                                       CurvatureKind.ggn, np.zeros((4, 2, 2)))
    with pytest.raises(TypeError):  # out must already be float64 (noconvert)
        _core.curvature.gram_accum(np.zeros((3, 2)), np.zeros((2, 2), np.int64))


def test_curvature_bad_input(rng):
    X, W, b, y = problem("categorical", rng)
    head = LinearHead(W, b)
    with pytest.raises(ValueError, match="hessian"):
        Curvature(head, None, "categorical", hessian="hessian")
    with pytest.raises(ValueError, match="likelihood"):
        Curvature(head, None, "poisson")
    with pytest.raises(ValueError, match="bernoulli"):
        Curvature(head, None, "bernoulli")
    cv = Curvature(head, None, "categorical")
    with pytest.raises(ValueError, match="X"):
        cv.diag(X[:, :2], y)
    with pytest.raises(ValueError, match="y"):
        cv.diag(X, y[:-1])
    with pytest.raises(ValueError, match="labels"):
        cv.diag(X, y + 10)
    with pytest.raises(ValueError, match="finite"):
        cv.diag(np.where(X > 1, np.nan, X), y)
    with pytest.raises(ValueError, match="theta"):
        Curvature(head, np.zeros(3), "categorical")
    with pytest.raises(ValueError, match="chunk_size"):
        Curvature(head, None, "categorical", chunk_size=0)
    with pytest.raises(ValueError, match="V"):
        cv.gvp(X, y, np.zeros((2, 5)))
    with pytest.raises(ValueError, match="bias"):
        LinearHead(W, b[:-1])


# --------------------------------------------------------------------------- whole MLP
ACTS = ["tanh", "relu", "gelu", "sigmoid"]


def mlp_problem(lik, act, rng, N=9, sizes=(3, 5, 4, 3)):
    sizes = list(sizes)
    if lik == "bernoulli":
        sizes[-1] = 1
    mlp = bg.nn.MLP(sizes, act)
    th = mlp.init(seed=4) + 0.1 * rng.normal(size=mlp.n_params)   # non-zero biases
    X = rng.normal(size=(N, sizes[0]))
    if lik == "gaussian":
        y = rng.normal(size=(N, sizes[-1]))
    else:
        y = rng.integers(0, max(2, sizes[-1]), N).astype(float)
    return mlp, th, X, y


def explicit_mlp_curvature(mlp, th, X, y, lik, kind):
    """Σ_n J_nᵀ Λ_n J_n with central-difference Jacobians J_n (C, P) (float64)."""
    eps = 1e-6
    P = mlp.n_params
    J = np.stack([(mlp.forward(th + eps * e, X) - mlp.forward(th - eps * e, X)) / (2 * eps) for e in np.eye(P)], 2)
    F = mlp.forward(th, X)
    G = np.zeros((P, P))
    for n in range(X.shape[0]):
        f = F[n]
        if lik == "gaussian":
            g = f - y[n]
            lam = np.eye(len(f))
        elif lik == "categorical":
            p = np.exp(f - f.max())
            p /= p.sum()
            g = p - np.eye(len(f))[int(y[n])]
            lam = np.diag(p) - np.outer(p, p)
        else:
            p = 1 / (1 + np.exp(-f[0]))
            g = np.array([p - y[n]])
            lam = np.array([[p * (1 - p)]])
        if kind == "ef":
            lam = np.outer(g, g)
        G += J[n].T @ lam @ J[n]
    return G, J


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("lik", LIKS)
def test_mlp_diag_gvp_kron_against_finite_differences(lik, act, rng):
    """The whole-MLP kernels (forward, back-propagated square roots, per-layer sums)
    against Σ Jᵀ Λ J from finite-difference Jacobians, GGN and empirical Fisher."""
    mlp, th, X, y = mlp_problem(lik, act, rng)
    for kind in ("ggn", "ef"):
        G, J = explicit_mlp_curvature(mlp, th, X, y, lik, kind)
        cv = Curvature(mlp, th, lik, hessian=kind, chunk_size=4)
        np.testing.assert_allclose(cv.diag(X, y)[0], np.diag(G), rtol=1e-6, atol=1e-8)
        V = rng.normal(size=(2, mlp.n_params))
        np.testing.assert_allclose(cv.gvp(X, y, V), V @ G, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(cv.full(X, y)[0], G, rtol=1e-6, atol=1e-8)
    # Kronecker on one data point is exact for every layer's weight and bias blocks
    G1, _ = explicit_mlp_curvature(mlp, th, X[:1], y[:1], lik, "ggn")
    facs, _ = Curvature(mlp, th, lik).kron(X[:1], y[:1])
    for (w0, b0), o, (A, B) in zip(mlp.offsets, mlp.sizes[1:], facs):
        np.testing.assert_allclose(np.kron(B, A), G1[w0:b0, w0:b0], rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(B, G1[b0:b0 + o, b0:b0 + o], rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("kind", ["ggn", "ef", "fisher_mc"])
@pytest.mark.parametrize("lik", LIKS)
def test_mlp_chunk_size_independent(lik, kind, rng):
    mlp, th, X, y = mlp_problem(lik, "tanh", rng, N=21)
    outs = []
    for cs in (1, 5, 100):
        cv = Curvature(mlp, th, lik, hessian=kind, n_mc_samples=2, chunk_size=cs, seed=5)
        d, loss = cv.diag(X, y)
        facs, _ = cv.kron(X, y)
        gv = cv.gvp(X, y, np.ones(mlp.n_params))
        outs.append([d, np.array(loss), gv] + [m for AB in facs for m in AB])
    for o in outs[1:]:
        for u, v in zip(o, outs[0]):
            np.testing.assert_allclose(u, v, rtol=1e-11, atol=1e-13)


def test_mlp_fisher_mc_is_unbiased_for_ggn(rng):
    """The sampled Fisher's diagonal averages to the exact GGN diagonal (categorical:
    E[g gᵀ] over y ~ p(y|f) is the loss Hessian); 4000 labels per point, 6-σ band
    (false-alarm probability < 1e-6 per entry)."""
    mlp, th, X, y = mlp_problem("categorical", "tanh", rng, N=4)
    K = 4000
    ggn = Curvature(mlp, th, "categorical").diag(X, y)[0]
    mc = Curvature(mlp, th, "categorical", hessian="fisher_mc", n_mc_samples=K, seed=1).diag(X, y)[0]
    # per-sample values: rerun with K = 1 over independent streams for a standard error
    singles = np.stack([Curvature(mlp, th, "categorical", hessian="fisher_mc", seed=1, stream=s).diag(X, y)[0]
                        for s in range(200)])
    se = singles.std(0, ddof=1) / np.sqrt(K)
    assert np.all(np.abs(mc - ggn) < 6 * se + 1e-12)


@pytest.mark.single_backend
@pytest.mark.skipif(not _backend.native_available(), reason="native core not built")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["ggn", "ef", "fisher_mc"])
@pytest.mark.parametrize("lik", LIKS)
def test_mlp_kernels_native_numpy_parity(lik, kind, dtype, rng):
    from bayesgrad import _core

    mlp, th, X, y = mlp_problem(lik, "gelu", rng, N=70, sizes=(4, 7, 6, 3))
    th, X, y = th.astype(dtype), X.astype(dtype), y.astype(dtype)
    Co = mlp.sizes[-1]
    K = {"ggn": 1 if lik == "bernoulli" else Co, "ef": 1, "fisher_mc": 3}[kind]
    draws = (rng.normal(size=(70, K, Co)) if lik == "gaussian" else rng.uniform(size=(70, K))).astype(dtype)
    V = rng.normal(size=(2, mlp.n_params)).astype(dtype)
    nk = sum(i * i + o * o for i, o in zip(mlp.sizes[:-1], mlp.sizes[1:]))
    tol = dict(rtol=2e-4, atol=2e-4) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-11)
    res = []
    for mod in (_core, _numpy):
        d, kr, gv = np.zeros(mlp.n_params, dtype), np.zeros(nk, dtype), np.zeros((2, mlp.n_params), dtype)
        net = mod.mlp.NetConfig(mlp.sizes, 4)
        cfg = {st: mod.curvature.CurvatureConfig(net, Likelihood[lik], CurvatureKind[kind], K, st) for st in (0, 1)}
        l1 = mod.curvature.mlp_curv_accum(cfg[0], th, X, y, draws, d)
        l2 = mod.curvature.mlp_curv_accum(cfg[1], th, X, y, draws, kr)
        mod.curvature.mlp_ggn_vp(cfg[0], th, X, y, draws, V, gv)
        S = rng.normal(size=(70, 3, 5)).astype(dtype) if mod is _core else S
        full = np.zeros((5 * 4 + 5, 5 * 4 + 5), dtype)
        mod.curvature.linear_full_accum(X, S, full)
        res.append((d, kr, gv, np.array([l1, l2]), full))
    for u, v in zip(*res):
        np.testing.assert_allclose(u, v, **tol)


@pytest.mark.single_backend
@pytest.mark.skipif(not _backend.native_available(), reason="native core not built")
def test_mlp_curv_accum_reusing_the_thread_workspace_gives_the_same_values(rng):
    """mlp_curv_accum keeps its workspace for the calling thread's next call (released over 32 MB):
    calls on other networks, row counts, kinds, structures and dtypes in between, and one large
    enough to be released, leave a repeated call's values unchanged bit for bit."""
    from bayesgrad import _core

    def call(sizes, n, kind="ggn", st=0, dtype=np.float64, seed=0):
        r = np.random.default_rng(seed)
        mlp, th, X, y = mlp_problem("categorical", "relu", r, N=n, sizes=sizes)
        th, X, y = th.astype(dtype), X.astype(dtype), y.astype(dtype)
        K = {"ggn": sizes[-1], "ef": 1, "fisher_mc": 2}[kind]
        draws = r.uniform(size=(n, K)).astype(dtype)
        nk = sum(i * i + o * o for i, o in zip(mlp.sizes[:-1], mlp.sizes[1:]))
        out = np.zeros(mlp.n_params if st == 0 else nk, dtype)
        net = _core.mlp.NetConfig(mlp.sizes, Activation["relu"])
        cfg = _core.curvature.CurvatureConfig(net, Likelihood["categorical"], CurvatureKind[kind], K, st)
        loss = _core.curvature.mlp_curv_accum(cfg, th, X, y, draws, out)
        return out, loss

    first = [call((4, 7, 6, 3), 50), call((5, 9, 3), 40, "ef", 1)]
    call((6, 30, 30, 4), 300, "fisher_mc")
    call((4, 7, 6, 3), 80, dtype=np.float32)
    call((50, 300, 10), 300)  # square-root factors of 7 MB each, a workspace over 32 MB: released
    call((3, 5, 2), 7, st=1)
    again = [call((4, 7, 6, 3), 50), call((5, 9, 3), 40, "ef", 1)]
    for (a, la), (b, lb) in zip(first, again):
        np.testing.assert_array_equal(a, b)
        assert la == lb


@pytest.mark.parametrize("lik", LIKS)
def test_linear_full_accum_equals_jacobian_gram(lik, rng):
    """The block-wise full GGN of a linear layer equals the Gram of its Jacobian rows."""
    k = _backend.kernels()
    a = rng.normal(size=(13, 4))
    S = rng.normal(size=(13, 3, 5))
    J = np.empty((13, 3, 25))
    k.curvature.linear_jacobian(a, S, J)
    ref = np.full((25, 25), 0.5)
    k.curvature.gram_accum(J.reshape(-1, 25), ref)
    out = np.full((25, 25), 0.5)
    k.curvature.linear_full_accum(a, S, out)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)


def test_mlp_kernels_reject_bad_input(rng):
    k = _backend.kernels()
    mlp, th, X, y = mlp_problem("categorical", "tanh", rng)
    net = mlp.net_config(k)
    cat, ggn = Likelihood.categorical, CurvatureKind.ggn
    cfg = k.curvature.CurvatureConfig(net, cat, ggn, 3)
    d = np.zeros(mlp.n_params)
    dr = np.zeros((1, 1))
    with pytest.raises(ValueError, match="structure"):
        k.curvature.CurvatureConfig(net, cat, ggn, 3, 2)
    with pytest.raises(ValueError, match="out"):
        k.curvature.mlp_curv_accum(cfg, th, X, y, dr, d[:-1])
    with pytest.raises(ValueError, match="n_cols"):
        k.curvature.mlp_curv_accum(k.curvature.CurvatureConfig(net, cat, ggn, 2), th, X, y, dr, d)
    with pytest.raises(ValueError, match="n_cols"):
        k.curvature.CurvatureConfig(net, cat, ggn, 0)
    with pytest.raises(ValueError, match="params"):
        k.curvature.mlp_curv_accum(cfg, th[:-1], X, y, dr, d)
    with pytest.raises(ValueError, match="X"):
        k.curvature.mlp_curv_accum(cfg, th, X[:, :2], y, dr, d)
    with pytest.raises(ValueError, match="y"):
        k.curvature.mlp_curv_accum(cfg, th, X, y[:-1], dr, d)
    with pytest.raises(ValueError, match="draws"):
        k.curvature.mlp_curv_accum(k.curvature.CurvatureConfig(net, cat, CurvatureKind.fisher_mc, 3), th, X, y, dr, d)
    with pytest.raises(ValueError, match="kind"):
        k.curvature.CurvatureConfig(net, cat, 7, 3)
    with pytest.raises(ValueError, match="V"):
        k.curvature.mlp_ggn_vp(cfg, th, X, y, dr, np.zeros((1, 5)), np.zeros((1, 5)))
    with pytest.raises(ValueError, match="out"):
        k.curvature.linear_full_accum(X, np.zeros((X.shape[0], 2, 2)), np.zeros((7, 7)))


# --------------------------------------------------------------------------- GLM predictive kernels
def _glm_problem(rng, dtype, sizes=(3, 5, 4, 3), act="tanh"):
    net = bg.nn.MLP(list(sizes), activation=act)
    theta = (0.7 * rng.normal(size=net.n_params)).astype(dtype)
    X = rng.normal(size=(7, sizes[0])).astype(dtype)
    return net, theta, X


def _fd_jacobian(net, theta, X, h=1e-6):
    """Central finite differences in float64: (n, C, P)."""
    th = theta.astype(np.float64)
    X = X.astype(np.float64)
    cols = []
    for p in range(th.size):
        e = np.zeros_like(th)
        e[p] = h
        cols.append((net.forward(th + e, X) - net.forward(th - e, X)) / (2 * h))
    return np.stack(cols, axis=2)


def _random_glm_factors(net, rng, structure):
    """(rot, var, dense Σ) for a random diagonal or Kronecker-factored covariance."""
    shapes = list(zip(net.sizes[:-1], net.sizes[1:]))
    var = rng.uniform(0.1, 2.0, size=net.n_params)
    if structure == "diag":
        return np.empty(0), var, np.diag(var)
    import scipy.linalg as sla

    rot, blocks, off = [], [], 0
    for I, O in shapes:
        QA = np.linalg.qr(rng.normal(size=(I, I)))[0]
        QB = np.linalg.qr(rng.normal(size=(O, O)))[0]
        rot += [QA.ravel(), QB.ravel()]
        vW, vb = var[off:off + O * I], var[off + O * I:off + O * I + O]
        Q = np.kron(QB, QA)
        blocks += [(Q * vW) @ Q.T, (QB * vb) @ QB.T]
        off += O * I + O
    return np.concatenate(rot), var, sla.block_diag(*blocks)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("structure", ["diag", "kron"])
def test_glm_fvar_kernel_against_dense_reference(structure, dtype, rng):
    """mlp_glm_fvar (no Jacobians) equals J Σ Jᵀ with J from float64 central differences
    (error ~1e-9) and Σ dense; float64 to 1e-7, float32 to 2e-4 relative."""
    from bayesgrad._codes import CurvatureStructure

    k = _backend.kernels()
    net, theta, X = _glm_problem(rng, dtype)
    rot, var, Sig = _random_glm_factors(net, rng, structure)
    cfg = k.curvature.GlmConfig(net.net_config(k), int(CurvatureStructure[structure]))
    f = np.empty((7, 3), dtype)
    V = np.empty((7, 3, 3), dtype)
    k.curvature.mlp_glm_fvar(cfg, theta, X, rot.astype(dtype), var.astype(dtype), f, V)
    J = _fd_jacobian(net, theta, X)
    ref = np.einsum("ncp,pq,ndq->ncd", J, Sig, J)
    tol = dict(rtol=1e-7, atol=1e-8) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-4 * np.abs(ref).max())
    np.testing.assert_allclose(V, ref, **tol)
    np.testing.assert_allclose(f, net.forward(theta.astype(np.float64), X.astype(np.float64)),
                               **(dict(rtol=1e-12) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-5)))
    # the Jacobian kernel of the full / low-rank route
    Jk = np.empty((7, 3, net.n_params), dtype)
    k.curvature.mlp_jacobian(net.net_config(k), theta, X, f, Jk)
    np.testing.assert_allclose(Jk, J, **(dict(rtol=1e-7, atol=1e-8) if dtype == np.float64
                                          else dict(rtol=1e-4, atol=1e-4)))


@pytest.mark.single_backend
@pytest.mark.skipif(not _backend.native_available(), reason="native core not built")
@pytest.mark.parametrize("structure", ["diag", "kron"])
def test_glm_fvar_native_chunks_do_not_depend_on_threads(structure, rng):
    """The native GLM predictive runs its fixed row chunks on the thread pool (one-thread BLAS in
    each) when there are several: the same bits on 1 and 3 threads, also with a partial last
    chunk (n = 700 rows, chunks of 256)."""
    import bayesgrad as bg
    from bayesgrad import _core
    from bayesgrad._codes import CurvatureStructure

    net, theta, _ = _glm_problem(rng, np.float32, sizes=(5, 16, 8, 3), act="tanh")
    X = rng.normal(size=(700, 5)).astype(np.float32)
    rot, var, _ = _random_glm_factors(net, rng, structure)
    cfg = _core.curvature.GlmConfig(net.net_config(_core), int(CurvatureStructure[structure]))
    out = []
    prev = bg.get_num_threads()
    try:
        for t in (1, 3):
            bg.set_num_threads(t)
            f, V = np.empty((700, 3), np.float32), np.empty((700, 3, 3), np.float32)
            _core.curvature.mlp_glm_fvar(cfg, theta, X, rot.astype(np.float32), var.astype(np.float32), f, V)
            out.append((f, V))
    finally:
        bg.set_num_threads(prev)
    np.testing.assert_array_equal(out[0][0], out[1][0])
    np.testing.assert_array_equal(out[0][1], out[1][1])
    # each row from that row alone: the last rows computed on their own agree
    f1, V1 = np.empty((3, 3), np.float32), np.empty((3, 3, 3), np.float32)
    _core.curvature.mlp_glm_fvar(cfg, theta, X[-3:].copy(), rot.astype(np.float32), var.astype(np.float32), f1, V1)
    np.testing.assert_allclose(V1, out[0][1][-3:], rtol=1e-5, atol=1e-6)


@pytest.mark.single_backend
@pytest.mark.skipif(not _backend.native_available(), reason="native core not built")
def test_glm_fvar_reusing_the_thread_workspaces_gives_the_same_values(rng):
    """Each thread running mlp_glm_fvar's chunks keeps its workspace between chunks and calls:
    calls on other networks, structures, dtypes and thread counts in between (and one whose
    workspace is released, over 32 MB) leave a repeated call's values unchanged bit for bit."""
    import bayesgrad as bg
    from bayesgrad import _core
    from bayesgrad._codes import CurvatureStructure

    def call(sizes, n, structure, dtype=np.float64, seed=0):
        r = np.random.default_rng(seed)
        net, theta, _ = _glm_problem(r, dtype, sizes=sizes, act="tanh")
        X = r.normal(size=(n, sizes[0])).astype(dtype)
        if structure == "diag":  # (without the dense covariance _random_glm_factors also forms)
            rot, var = np.empty(0), r.uniform(0.1, 2.0, size=net.n_params)
        else:
            rot, var, _ = _random_glm_factors(net, r, structure)
        cfg = _core.curvature.GlmConfig(net.net_config(_core), int(CurvatureStructure[structure]))
        f, V = np.empty((n, sizes[-1]), dtype), np.empty((n, sizes[-1], sizes[-1]), dtype)
        _core.curvature.mlp_glm_fvar(cfg, theta, X, rot.astype(dtype), var.astype(dtype), f, V)
        return f, V

    prev = bg.get_num_threads()
    try:
        first = [call((5, 16, 8, 3), 600, "kron"), call((4, 6, 2), 300, "diag")]
        bg.set_num_threads(1)
        call((6, 40, 40, 4), 700, "kron", np.float32)
        call((300, 300, 300, 100), 256, "diag")  # chunks of 69 rows, square-root factors over 32 MB
        bg.set_num_threads(prev)
        call((3, 9, 5), 513, "diag", seed=1)
        again = [call((5, 16, 8, 3), 600, "kron"), call((4, 6, 2), 300, "diag")]
    finally:
        bg.set_num_threads(prev)
    for a, b in zip(first, again):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


@pytest.mark.single_backend
@pytest.mark.skipif(not _backend.native_available(), reason="native core not built")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_glm_kernels_native_numpy_parity(dtype, rng):
    """Native and NumPy GLM kernels agree within rounding, across the native kernel's internal
    row chunks (n = 600 > 256 rows per chunk), and reject bad shapes alike."""
    from bayesgrad import _core
    from bayesgrad._codes import CurvatureStructure

    net, theta, _ = _glm_problem(rng, dtype, sizes=(4, 6, 2), act="relu")
    X = rng.normal(size=(600, 4)).astype(dtype)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-12)
    for structure in ("diag", "kron"):
        rot, var, _ = _random_glm_factors(net, rng, structure)
        res = []
        for mod in (_core, _numpy):
            cfg = mod.curvature.GlmConfig(net.net_config(mod), int(CurvatureStructure[structure]))
            f, V = np.empty((600, 2), dtype), np.empty((600, 2, 2), dtype)
            mod.curvature.mlp_glm_fvar(cfg, theta, X, rot.astype(dtype), var.astype(dtype), f, V)
            J = np.empty((50, 2, net.n_params), dtype)
            mod.curvature.mlp_jacobian(net.net_config(mod), theta, X[:50], f[:50].copy(), J)
            res.append((f, V, J))
            with pytest.raises(ValueError, match="var"):
                mod.curvature.mlp_glm_fvar(cfg, theta, X, rot.astype(dtype), var[:-1].astype(dtype), f, V)
            with pytest.raises(ValueError, match="rot"):
                mod.curvature.mlp_glm_fvar(cfg, theta, X, np.zeros(3, dtype), var.astype(dtype), f, V)
        for u, v in zip(*res):
            np.testing.assert_allclose(u, v, **tol)
