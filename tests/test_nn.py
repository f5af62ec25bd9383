"""The MLP engine: layout, init, forward/backward against finite differences and
a NumPy float64 reference, likelihoods, native/NumPy parity, Predictive, MAP."""
import math

import numpy as np
import pytest

import bayesgrad as bg
from bayesgrad import _numpy as twin
from bayesgrad import _backend
from bayesgrad.nn import MLP, Predictive

ACTS = ["relu", "tanh", "gelu", "sigmoid", "identity"]
LIKS = ["gaussian", "heteroscedastic_gaussian", "categorical", "bernoulli"]


def _ref_forward(mlp, theta, X):
    """Plain NumPy float64 reference of the documented layout."""
    f = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh, "identity": lambda z: z,
         "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
         "gelu": lambda z: 0.5 * z * (1 + np.vectorize(math.erf)(z / math.sqrt(2)))}[mlp.activation]
    A = np.asarray(X, dtype=np.float64)
    off = 0
    for l, (din, dout) in enumerate(zip(mlp.sizes[:-1], mlp.sizes[1:])):
        W = theta[off:off + din * dout].reshape(dout, din)
        off += din * dout
        b = theta[off:off + dout]
        off += dout
        A = A @ W.T + b
        if l + 1 < mlp.n_layers:
            A = f(A)
    return A


def _targets(lik, N, K, rng):
    if lik == "categorical":
        return rng.integers(0, K, N)
    if lik == "bernoulli":
        return rng.integers(0, 2, (N, K)).astype(float)
    D = K // 2 if lik == "heteroscedastic_gaussian" else K
    return rng.normal(size=(N, D))


def _same_at_thread_counts(run):
    """run() at 1, 2 and 3 native threads (the count restored after): asserts its arrays (one array or a
    tuple of them) are equal bit for bit at every count, and returns the 1-thread result."""
    before = bg.get_num_threads()
    try:
        got = []
        for th in (1, 2, 3):
            bg.set_num_threads(th)
            got.append(run())
    finally:
        bg.set_num_threads(before)
    for other in got[1:]:
        for a, b in zip(*(g if isinstance(g, tuple) else (g,) for g in (got[0], other))):
            np.testing.assert_array_equal(a, b)
    return got[0]


def test_layout_matches_torch_order():
    m = MLP([3, 4, 2], "tanh")
    assert m.n_params == 3 * 4 + 4 + 4 * 2 + 2
    theta = np.arange(m.n_params, dtype=float)
    (W0, b0), (W1, b1) = m.unflatten(theta)
    assert W0.shape == (4, 3) and W0[1, 0] == 3.0  # row-major (out, in)
    np.testing.assert_array_equal(b0, np.arange(12, 16))
    assert W1[0, 0] == 16.0 and b1[0] == 24.0
    np.testing.assert_array_equal(m.flatten(m.unflatten(theta)), theta)
    for bad in (None, [1, 2], [(W0, b0, W1)]):  # were "no len()" / unpacking errors
        with pytest.raises(TypeError, match="layers must be a list of"):
            m.flatten(bad)


@pytest.mark.parametrize("act", ACTS)
def test_forward_matches_reference(act, rng):
    m = MLP([3, 5, 4, 2], act)
    theta = m.init(seed=1) + 0.1 * rng.normal(size=m.n_params)
    X = rng.normal(size=(7, 3))
    np.testing.assert_allclose(m.forward(theta, X), _ref_forward(m, theta, X), rtol=1e-12, atol=1e-12)
    th32 = theta.astype(np.float32)
    out32 = m.forward(th32, X.astype(np.float32))
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, _ref_forward(m, theta, X), rtol=1e-4, atol=1e-5)
    # S samples at once equals S single calls
    T = np.stack([theta, 2 * theta, -theta])
    out = m.forward(T, X)
    for s in range(3):
        np.testing.assert_allclose(out[s], _ref_forward(m, T[s], X), rtol=1e-12, atol=1e-12)


def test_forward_in_row_tiles_with_masks_and_per_sample_inputs(rng):
    """Prediction runs S samples of N rows in row tiles (a few hundred rows each,
    in parallel): many tiles, per-row masks (S, N, H) and per-sample inputs
    (S, N, D) must give the float64 reference exactly up to rounding, and the
    same for any thread count."""
    m = MLP([6, 40, 30, 3], "tanh")
    S, N = 3, 1500
    T = m.init(seed=2)[None] * (1 + 0.1 * rng.normal(size=(S, m.n_params)))
    X = rng.normal(size=(S, N, 6))
    masks = (rng.random((S, N, m.n_hidden_units)) > 0.2) / 0.8
    k = _backend.kernels()
    out = np.empty((S, N, 3))
    k.mlp.mlp_forward(m.net_config(k), T, X, out, masks)
    for s in range(S):
        A = X[s]
        off, h = 0, 0
        for l, (din, dout) in enumerate(zip(m.sizes[:-1], m.sizes[1:])):
            W = T[s, off:off + din * dout].reshape(dout, din)
            off += din * dout
            A = A @ W.T + T[s, off:off + dout]
            off += dout
            if l + 1 < m.n_layers:
                A = np.tanh(A) * masks[s, :, h:h + dout]
                h += dout
        np.testing.assert_allclose(out[s], A, rtol=1e-11, atol=1e-12)
    if bg.get_backend() == "cpu":
        prev = bg.get_num_threads()
        try:
            bg.set_num_threads(1)
            out1 = np.empty_like(out)
            k.mlp.mlp_forward(m.net_config(k), T, X, out1, masks)
            np.testing.assert_array_equal(out1, out)
        finally:
            bg.set_num_threads(prev)


def test_one_network_under_many_masks(rng):
    """theta (1, P) with S masks is MC dropout's forward: the same outputs as S copies
    of theta (the first layer's product, shared by the masks, is formed once)."""
    m = MLP([5, 30, 20, 2], "relu")
    theta = m.init(seed=3)
    X = rng.normal(size=(700, 5))
    for masks in ((rng.random((9, m.n_hidden_units)) > 0.3) / 0.7,
                  (rng.random((9, 700, m.n_hidden_units)) > 0.3) / 0.7):
        shared = m.forward(theta[None], X, masks=masks)
        copies = m.forward(np.repeat(theta[None], 9, axis=0), X, masks=masks)
        assert shared.shape == (9, 700, 2)
        np.testing.assert_array_equal(shared, copies)
        # and the NumPy twin's kernel takes the same (1, P) + masks call
        ref = np.empty_like(shared)
        twin.mlp.mlp_forward(m.net_config(twin), theta[None], X,
                             ref, m._masks(masks, 9, 700, theta.dtype))
        np.testing.assert_allclose(shared, ref, rtol=1e-11, atol=1e-12)
    with pytest.raises(ValueError, match="masks"):
        m.forward(np.repeat(theta[None], 2, axis=0), X, masks=masks)  # 2 networks, 9 masks


def test_init_scales_and_stream():
    m = MLP([400, 300, 10], "relu")
    th = m.init(seed=3)
    (W0, b0), (W1, _) = m.unflatten(th)
    assert np.all(b0 == 0)
    # He: var 2/fan_in; 120000 draws, relative sd of the sample variance ~ 0.4%
    assert abs(W0.var() / (2 / 400) - 1) < 0.03
    g = MLP([400, 300, 10], "tanh").init(seed=3)
    Wg = MLP([400, 300, 10], "tanh").unflatten(g)[0][0]
    assert abs(Wg.var() / (2 / 700) - 1) < 0.03
    np.testing.assert_array_equal(th, m.init(seed=3))
    assert not np.allclose(th, m.init(seed=3, stream=1))


@pytest.mark.parametrize("act", ["tanh", "gelu", "sigmoid", "relu"])
@pytest.mark.parametrize("lik", LIKS)
def test_nll_gradient_finite_differences(act, lik, rng):
    K = 4 if lik == "heteroscedastic_gaussian" else (3 if lik == "categorical" else 2)
    m = MLP([3, 4, K], act)
    theta = m.init(seed=2) + 0.3 * rng.normal(size=m.n_params)
    X = rng.normal(size=(5, 3)) + 0.05  # keep relu pre-activations off 0
    y = _targets(lik, 5, K, rng)
    noise = np.array([0.7, 1.3])[:K] if lik == "gaussian" else 1.0
    val, g = m.nll(theta, X, y, lik, noise=noise, grad=True)
    eps = 1e-6
    fd = np.empty_like(theta)
    for i in range(m.n_params):
        e = np.zeros_like(theta)
        e[i] = eps
        fd[i] = (m.nll(theta + e, X, y, lik, noise) - m.nll(theta - e, X, y, lik, noise)) / (2 * eps)
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-6)


def test_nll_values_closed_form(rng):
    m = MLP([2, 3], "relu")
    theta = rng.normal(size=m.n_params)
    X = rng.normal(size=(4, 2))
    F = _ref_forward(m, theta, X)
    y = rng.normal(size=(4, 3))
    sig = np.array([0.5, 1.0, 2.0])
    want = (0.5 * ((y - F) / sig) ** 2 + np.log(sig) + 0.5 * np.log(2 * np.pi)).sum()
    np.testing.assert_allclose(m.nll(theta, X, y, "gaussian", noise=sig), want, rtol=1e-12)
    lab = rng.integers(0, 3, 4)
    lse = np.log(np.exp(F).sum(1))
    np.testing.assert_allclose(m.nll(theta, X, lab, "classification"), (lse - F[np.arange(4), lab]).sum(), rtol=1e-12)
    yb = rng.integers(0, 2, (4, 3)).astype(float)
    p = 1 / (1 + np.exp(-F))
    want_b = -(yb * np.log(p) + (1 - yb) * np.log(1 - p)).sum()
    np.testing.assert_allclose(m.nll(theta, X, yb, "bernoulli"), want_b, rtol=1e-10)


@pytest.mark.parametrize("act", ["tanh", "gelu"])
def test_vjp_and_input_gradient(act, rng):
    m = MLP([3, 6, 2], act)
    T = rng.normal(size=(2, m.n_params))
    X = rng.normal(size=(4, 3))
    G = rng.normal(size=(2, 4, 2))
    grad, gx = m.vjp(T, X, G, wrt_input=True)
    eps = 1e-6
    for s in range(2):
        for i in range(0, m.n_params, 3):
            e = np.zeros(m.n_params)
            e[i] = eps
            fd = ((m.forward(T[s] + e, X) - m.forward(T[s] - e, X)) * G[s]).sum() / (2 * eps)
            assert abs(grad[s, i] - fd) < 1e-6 * (1 + abs(fd))
        for n, d in [(0, 0), (3, 2), (1, 1)]:
            e = np.zeros_like(X)
            e[n, d] = eps
            fd = ((m.forward(T[s], X + e) - m.forward(T[s], X - e)) * G[s]).sum() / (2 * eps)
            assert abs(gx[s, n, d] - fd) < 1e-6 * (1 + abs(fd))


@pytest.mark.parametrize("single", [True, False])
def test_vjp_outputs_are_the_forward_outputs(single, rng):
    """vjp(..., outputs=) fills the outputs of the forward pass it runs (one call for
    forward and VJP) and returns the same products as without them."""
    m = MLP([3, 6, 2], "tanh")
    T = rng.normal(size=(m.n_params,) if single else (2, m.n_params))
    X = rng.normal(size=(4, 3))
    G = rng.normal(size=(4, 2) if single else (2, 4, 2))
    out = np.full(G.shape, np.nan)
    grad, gx = m.vjp(T, X, G, wrt_input=True, outputs=out)
    np.testing.assert_allclose(out, m.forward(T, X), rtol=1e-13, atol=1e-15)
    grad2, gx2 = m.vjp(T, X, G, wrt_input=True)
    np.testing.assert_array_equal(grad, grad2)
    np.testing.assert_array_equal(gx, gx2)
    ro = np.zeros(G.shape)
    ro.flags.writeable = False
    for bad in (np.zeros(G.shape[:-1] + (3,)), np.zeros(G.shape, np.float32), np.zeros(G.shape[::-1]).T, ro,
                [[0.0] * 2] * 4):
        with pytest.raises(ValueError, match="outputs"):
            m.vjp(T, X, G, outputs=bad)


@pytest.mark.single_backend
def test_mlp_backward_kernel_outputs_checked_and_equal_on_both_backends(rng):
    """The kernel's own outputs argument (twin and core): the forward outputs, equal on both;
    a wrong shape is refused naming it."""
    m = MLP([3, 5, 2], "tanh")
    T = rng.normal(size=(2, m.n_params))
    X, G = rng.normal(size=(4, 3)), rng.normal(size=(2, 4, 2))
    mods = [twin] + ([_backend._core] if _backend.native_available() else [])
    outs = []
    for mod in mods:
        grad, out = np.empty((2, m.n_params)), np.full((2, 4, 2), np.nan)
        mod.mlp.mlp_backward(m.net_config(mod), T, X, G, grad, None, None, out)
        outs.append(out)
        with pytest.raises(ValueError, match="outputs"):
            mod.mlp.mlp_backward(m.net_config(mod), T, X, G, grad, None, None, np.empty((2, 4, 3)))
    np.testing.assert_allclose(outs[0], np.stack([_ref_forward(m, t, X) for t in T]), rtol=1e-12, atol=1e-14)
    if len(outs) == 2:
        np.testing.assert_allclose(outs[1], outs[0], rtol=1e-13, atol=1e-15)


@pytest.mark.skipif(not _backend.native_available(), reason="no native core")
def test_engine_calls_reusing_the_thread_trace_give_the_same_values(rng):
    """mlp_backward and mlp_nll_grad keep their trace for the calling thread's next call (and release
    one over 32 MB): calls on other networks, depths, row counts, dtypes, with masks, and one large
    enough to be released, in between, leave a repeated call's values unchanged bit for bit, and
    equal to the twin's."""
    core = _backend._core.mlp
    small, deep = MLP([5, 7, 3], "tanh"), MLP([4, 20, 20, 2], "relu")

    def call(m, n, dtype=np.float64, seed=0, masks=False, nll=False):
        r = np.random.default_rng(seed)
        T = r.normal(size=(2, m.n_params)).astype(dtype)
        X = r.normal(size=(n, m.sizes[0])).astype(dtype)
        grad = np.empty((2, m.n_params), dtype)
        if nll:
            y = r.normal(size=(n, m.sizes[-1])).astype(dtype)
            out = np.empty(2, dtype)
            core.mlp_nll_grad(m.net_config(_backend._core), 0, T, X, y, np.zeros(m.sizes[-1], dtype), out, grad)
            return grad, out
        G = r.normal(size=(2, n, m.sizes[-1])).astype(dtype)
        gx = np.empty((2, n, m.sizes[0]), dtype)
        mk = (r.uniform(size=(2, n, sum(m.sizes[1:-1]))) < 0.8).astype(dtype) / dtype(0.8) if masks else None
        core.mlp_backward(m.net_config(_backend._core), T, X, G, grad, gx, mk)
        return grad, gx

    first = [call(small, 50), call(small, 40, nll=True), call(deep, 30, masks=True)]
    call(deep, 3000, seed=1)
    call(small, 700, np.float32, seed=2, masks=True)
    call(MLP([100, 200, 1], "tanh"), 12000, seed=3)  # a 38 MB trace: released at the end of the call
    call(deep, 5, seed=4, nll=True)
    again = [call(small, 50), call(small, 40, nll=True), call(deep, 30, masks=True)]
    for a, b in zip(first, again):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    r = np.random.default_rng(0)
    T, X, G = r.normal(size=(2, small.n_params)), r.normal(size=(50, 5)), r.normal(size=(2, 50, 3))
    grad, gx = np.empty((2, small.n_params)), np.empty((2, 50, 5))
    twin.mlp.mlp_backward(small.net_config(twin), T, X, G, grad, gx)
    np.testing.assert_allclose(first[0][0], grad, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(first[0][1], gx, rtol=1e-12, atol=1e-13)


def test_masks_forward_and_gradient(rng):
    m = MLP([3, 4, 5, 2], "tanh")
    T = rng.normal(size=(2, m.n_params))
    X = rng.normal(size=(6, 3))
    masks = (rng.random((2, m.n_hidden_units)) > 0.3) / 0.7
    out = m.forward(T, X, masks=masks)
    # reference: the mask multiplies each hidden layer's activations
    for s in range(2):
        (W0, b0), (W1, b1), (W2, b2) = m.unflatten(T[s])
        h1 = np.tanh(X @ W0.T + b0) * masks[s, :4]
        h2 = np.tanh(h1 @ W1.T + b1) * masks[s, 4:]
        np.testing.assert_allclose(out[s], h2 @ W2.T + b2, rtol=1e-12, atol=1e-12)
    y = rng.normal(size=(6, 2))
    _, g = m.nll(T, X, y, "gaussian", grad=True, masks=masks)
    eps = 1e-6
    for i in range(0, m.n_params, 5):
        e = np.zeros(m.n_params)
        e[i] = eps
        fd = (m.nll(T + e, X, y, masks=masks) - m.nll(T - e, X, y, masks=masks)) / (2 * eps)
        np.testing.assert_allclose(g[:, i], fd, rtol=1e-5, atol=1e-6)
    # per-row masks (S, N, H) are accepted too
    per_row = np.broadcast_to(masks[:, None, :], (2, 6, m.n_hidden_units))
    np.testing.assert_allclose(m.forward(T, X, masks=per_row), out, rtol=1e-13)


@pytest.mark.single_backend
@pytest.mark.skipif(not _backend.native_available(), reason="needs the native core to compare")
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-11), (np.float32, 2e-4)])
@pytest.mark.parametrize("lik", LIKS)
def test_native_matches_numpy_twin(lik, dtype, tol, rng):
    K = 4 if lik == "heteroscedastic_gaussian" else 3
    m = MLP([5, 8, 7, K], "gelu")
    T = (0.5 * rng.normal(size=(3, m.n_params))).astype(dtype)
    X = rng.normal(size=(9, 5)).astype(dtype)
    y = _targets(lik, 9, K, rng)
    masks = ((rng.random((3, 9, m.n_hidden_units)) > 0.2) / 0.8).astype(dtype)
    res = {}
    for b in ("cpu", "numpy"):
        with bg.use_backend(b):
            v, g = m.nll(T, X, y, lik, noise=0.8, grad=True, masks=masks)
            gr, gx = m.vjp(T, X, np.ones((3, 9, K), dtype), wrt_input=True)
            res[b] = (v, g, gr, gx, m.forward(T, X))
    for a, b in zip(res["cpu"], res["numpy"]):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def test_bad_inputs():
    with pytest.raises(ValueError, match="activation"):
        MLP([2, 3], "swish")
    with pytest.raises(ValueError, match="sizes"):
        MLP([2])
    with pytest.raises(ValueError, match="sizes"):
        MLP([2, 0, 1])
    m = MLP([2, 3, 3])
    th = m.init()
    with pytest.raises(ValueError, match="theta"):
        m.forward(th[:-1], np.zeros((4, 2)))
    with pytest.raises(ValueError, match="X"):
        m.forward(th, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="finite"):
        m.forward(th, np.full((4, 2), np.nan))
    with pytest.raises(ValueError, match="labels"):
        m.nll(th, np.zeros((2, 2)), [0, 3], "categorical")
    with pytest.raises(ValueError, match="finite"):
        m.nll(th, np.zeros((2, 2)), [[0, np.nan, 1], [1, 1, 1]], "gaussian")
    with pytest.raises(ValueError, match="likelihood"):
        m.nll(th, np.zeros((2, 2)), [0, 1], "poisson")
    with pytest.raises(ValueError, match="binary"):
        m.nll(th, np.zeros((2, 2)), np.full((2, 3), 0.5), "bernoulli")
    with pytest.raises(ValueError, match="noise"):
        m.nll(th, np.zeros((2, 2)), np.zeros((2, 3)), "gaussian", noise=-1.0)
    with pytest.raises(ValueError, match="masks"):
        m.forward(th, np.zeros((4, 2)), masks=np.ones((1, 2)))
    with pytest.raises(ValueError, match="heteroscedastic"):
        m.nll(th, np.zeros((2, 2)), np.zeros((2, 1)), "heteroscedastic_gaussian")


def test_kernel_level_errors():
    k = _backend.kernels()
    net = k.mlp.NetConfig((2, 3), 1)
    k.mlp.mlp_forward(net, np.zeros((1, 9)), np.zeros((4, 2)), np.zeros((1, 4, 3)))  # P = 9 is right
    with pytest.raises(ValueError):
        k.mlp.mlp_forward(net, np.zeros((1, 8)), np.zeros((4, 2)), np.zeros((1, 4, 3)))
    with pytest.raises(ValueError):
        k.mlp.mlp_forward(net, np.zeros((1, 9)), np.zeros((4, 3)), np.zeros((1, 4, 3)))
    with pytest.raises(ValueError, match="activation: activation code 9"):
        k.mlp.NetConfig((2, 3), 9)
    with pytest.raises(ValueError):
        k.mlp.NetConfig((2,), 1)
    with pytest.raises(ValueError, match="likelihood: likelihood code 7"):
        k.mlp.mlp_nll_grad(net, 7, np.zeros((1, 9)), np.zeros((2, 2)), np.zeros((2, 3)), np.zeros(3), np.zeros(1))
    with pytest.raises(ValueError):  # labels out of range reach the kernel
        k.mlp.mlp_nll_grad(net, 2, np.zeros((1, 9)), np.zeros((2, 2)), np.array([[0.0], [7.0]]), np.zeros(1),
                           np.zeros(1))


# ---------------------------------------------------------------- Predictive

def test_predictive_regression_decomposition(rng):
    F = rng.normal(size=(50, 4, 1))
    p = Predictive.from_outputs(F, "regression", noise=0.5)
    np.testing.assert_allclose(p.mean, F.mean(0))
    np.testing.assert_allclose(p.epistemic_var, F.var(0))
    np.testing.assert_allclose(p.aleatoric_var, 0.25)
    np.testing.assert_allclose(p.var, F.var(0) + 0.25)
    y = rng.normal(size=4)
    lp = np.stack([-0.5 * ((y - F[s, :, 0]) / 0.5) ** 2 - np.log(0.5) - 0.5 * np.log(2 * np.pi) for s in range(50)])
    want = np.log(np.exp(lp).mean(0))
    np.testing.assert_allclose(p.log_likelihood(y), want, rtol=1e-10)
    H = np.concatenate([F, rng.normal(size=(50, 4, 1))], -1)
    ph = Predictive.from_outputs(H, "heteroscedastic_gaussian")
    np.testing.assert_allclose(ph.aleatoric_var, np.exp(H[..., 1:]).mean(0))
    # no samples or no outputs (the mean of nothing was NaN), and an odd heteroscedastic width (means of
    # one column against variances of two) are refused
    for F0, lik in ((F[:0], "regression"), (F[:0], "categorical"), (F[..., :0], "regression")):
        with pytest.raises(ValueError, match="at least one sample and one output"):
            Predictive.from_outputs(F0, lik)
    with pytest.raises(ValueError, match="even output width"):
        Predictive.from_outputs(H[..., :1].repeat(3, -1), "heteroscedastic_gaussian")


def test_predictive_classification(rng):
    F = rng.normal(size=(20, 6, 3))
    p = Predictive.from_outputs(F, "categorical")
    assert p.log_probs.shape == (20, 6, 3)
    np.testing.assert_allclose(p.probs.sum(1), 1.0)
    sm = np.exp(F) / np.exp(F).sum(-1, keepdims=True)
    np.testing.assert_allclose(p.probs, sm.mean(0), rtol=1e-12)
    lab = rng.integers(0, 3, 6)
    np.testing.assert_allclose(p.log_likelihood(lab), np.log(sm.mean(0)[np.arange(6), lab]), rtol=1e-12)
    pb = Predictive.from_outputs(F[..., :1], "bernoulli")
    np.testing.assert_allclose(pb.probs[:, 1], (1 / (1 + np.exp(-F[..., 0]))).mean(0), rtol=1e-12)
    with pytest.raises(AttributeError):
        p.var
    with pytest.raises(ValueError, match="labels"):
        p.log_likelihood([0, 1, 2, 3, 0, 1])


def test_forward_into_out_buffer(rng):
    mlp = bg.nn.MLP([3, 5, 2])
    theta = mlp.init(seed=1)
    X = rng.normal(size=(7, 3))
    thetas = np.stack([theta, theta * 0.5])
    out = np.full((2, 7, 2), np.nan)
    res = mlp.forward(thetas, X, out=out)
    assert res is out
    np.testing.assert_array_equal(out, mlp.forward(thetas, X))
    one = np.empty((7, 2))
    assert mlp.forward(theta, X, out=one) is one
    np.testing.assert_array_equal(one, mlp.forward(theta, X))
    with pytest.raises(ValueError, match="out"):
        mlp.forward(thetas, X, out=np.empty((2, 7, 3)))
    with pytest.raises(ValueError, match="out"):
        mlp.forward(thetas, X, out=np.empty((2, 7, 2), dtype=np.float32))


def test_mlp_backward_kernel_input_gradient_alone(rng):
    """grad=None: the input gradient alone (no weight gradient formed), equal to the one computed beside
    the weight gradient, on both backends; both None refused."""
    m = MLP([6, 10, 1], "tanh")
    T = rng.normal(size=(1, m.n_params))
    X, G = rng.normal(size=(300, 6)), rng.normal(size=(1, 300, 1))
    mods = [twin] + ([_backend._core] if _backend.native_available() else [])
    for mod in mods:
        grad, out = np.empty((1, m.n_params)), np.empty((1, 300, 1))
        gx, gx1 = np.empty((1, 300, 6)), np.empty((1, 300, 6))
        mod.mlp.mlp_backward(m.net_config(mod), T, X, G, grad, gx)
        mod.mlp.mlp_backward(m.net_config(mod), T, X, G, None, gx1, None, out)
        np.testing.assert_array_equal(gx1, gx)
        np.testing.assert_allclose(out[0], _ref_forward(m, T[0], X), rtol=1e-12, atol=1e-14)
        with pytest.raises(ValueError, match="nothing to compute"):
            mod.mlp.mlp_backward(m.net_config(mod), T, X, G, None, None)


@pytest.mark.single_backend
@pytest.mark.skipif(not _backend.native_available(), reason="no native core")
@pytest.mark.parametrize("act", ["tanh", "relu", "sigmoid"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_mlp_backward_row_tiles_of_one_network(act, dtype):
    """One parameter vector on many rows of a narrow network runs in row tiles through every layer and
    back (kTiledRows = 256 rows a tile, chunks of consecutive tiles on the pool): outputs, weight and input gradients equal the twin's,
    the weight and input gradients equal those of row blocks small enough for the layer-at-a-time path
    (under 512 rows; the weight gradient as their sum), and every value is the same at 1, 2 and 3 threads, bit for bit."""
    import bayesgrad as bg

    core = _backend._core.mlp
    tol = dict(rtol=1e-11, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-5)
    # six tiles, the last one partial; 36 tiles in 18 chunks of two (a chunk's tiles accumulate into one slot)
    for sizes, N in (([30, 10, 1], 1300), ([12, 50, 20, 3], 1300), ([8, 16, 2], 9000)):
        m = MLP(sizes, act)
        r = np.random.default_rng(len(sizes))
        T = (r.normal(size=(1, m.n_params)) * 0.5).astype(dtype)
        X = r.normal(size=(N, sizes[0])).astype(dtype)
        G = r.normal(size=(1, N, sizes[-1])).astype(dtype)

        def run(mod, rows=slice(None)):
            n = X[rows].shape[0]
            grad, gx, out = np.empty((1, m.n_params), dtype), np.empty((1, n, sizes[0]), dtype), \
                np.empty((1, n, sizes[-1]), dtype)
            mod.mlp_backward(m.net_config(_backend._core if mod is core else twin), T, X[rows],
                             np.ascontiguousarray(G[:, rows]), grad, gx, None, out)
            return grad, gx, out

        got = _same_at_thread_counts(lambda: run(core))
        ref = run(twin.mlp)
        for a, b in zip(got, ref):
            np.testing.assert_allclose(a, b, **tol)
        blocks = [run(core, slice(i, min(N, i + 500))) for i in range(0, N, 500)]
        np.testing.assert_allclose(got[0], sum(b[0] for b in blocks), **tol)
        np.testing.assert_allclose(got[1][0], np.concatenate([b[1][0] for b in blocks]), **tol)


def _mixed_case(sizes, act, N, dtype=np.float64, seed=0):
    m = MLP(sizes, act)
    r = np.random.default_rng(seed)
    T = (r.normal(size=(1, m.n_params)) * 0.5).astype(dtype)
    X, V = (r.normal(size=(N, sizes[0])).astype(dtype) for _ in range(2))
    Go, Gd = (r.normal(size=(1, N, sizes[-1])).astype(dtype) for _ in range(2))
    return m, T, X, V, Go, Gd


def _mixed(mod, m, T, X, V, Go, Gd):
    grad = np.empty((1, m.n_params), T.dtype)
    mod.mlp.mlp_mixed_vjp(m.net_config(mod), T, X, V, Go, Gd, grad)
    return grad


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("sizes", [[5, 3], [7, 6, 1], [6, 5, 4, 2]])
@pytest.mark.parametrize("with_g_out", [True, False])
def test_mlp_mixed_vjp_matches_finite_differences(act, sizes, with_g_out):
    """mlp_mixed_vjp = sum over rows of d/dparams [g_out . r(x) + g_dot . (J_x r(x) v)]: against central
    differences along V of the twin's vector-Jacobian products (h = 1e-5, error O(h^2)), on each backend's
    kernel; without g_out the values' term is absent."""
    m, T, X, V, Go, Gd = _mixed_case(sizes, act, 300)
    Go = Go if with_g_out else None
    h = 1e-5

    def vjp(Xq, G):
        grad = np.empty((1, m.n_params))
        twin.mlp.mlp_backward(m.net_config(twin), T, Xq, G, grad)
        return grad

    want = (vjp(X + h * V, Gd) - vjp(X - h * V, Gd)) / (2 * h)
    if with_g_out:
        want = want + vjp(X, Go)
    mods = [twin] + ([_backend._core] if _backend.native_available() else [])
    for mod in mods:
        np.testing.assert_allclose(_mixed(mod, m, T, X, V, Go, Gd), want, rtol=1e-6,
                                   atol=1e-8 * np.abs(want).max())


@pytest.mark.single_backend
@pytest.mark.skipif(not _backend.native_available(), reason="no native core")
@pytest.mark.parametrize("act", ["tanh", "gelu", "relu"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_mlp_mixed_vjp_row_tiles_threads_and_twin(act, dtype):
    """The native mixed product runs in row tiles (256 rows; 64 with a hidden layer over 128 wide) in chunks
    on the pool: equal to the twin, to the sum of its values on row blocks, and bit for bit the same at 1, 2
    and 3 threads (one tile; six; 36 tiles in chunks of two; wide tiles; 19 wide tiles of a 300 k-parameter
    network in 5 chunks of up to 4, the gradient slots' budget allowing 6 chunks there)."""
    tol = dict(rtol=1e-11, atol=1e-12) if dtype == np.float64 else dict(rtol=3e-4)
    core = _backend._core
    for sizes, N in (([9, 7, 1], 200), ([30, 10, 1], 1300), ([12, 50, 20, 3], 1300), ([8, 16, 2], 9000),
                     ([20, 140, 2], 700), ([1000, 300, 2], 1200)):
        m, T, X, V, Go, Gd = _mixed_case(sizes, act, N, dtype, seed=len(sizes) + N)
        got = _same_at_thread_counts(lambda: _mixed(core, m, T, X, V, Go, Gd))
        # sums of 10^3 products: near-cancelling entries' errors are relative to the largest entry
        tol["atol"] = (1e-12 if dtype == np.float64 else 1e-5) * np.abs(got).max()
        np.testing.assert_allclose(got, _mixed(twin, m, T, X, V, Go, Gd), **tol)
        blocks = sum(_mixed(core, m, T, X[i:i + 500], V[i:i + 500], np.ascontiguousarray(Go[:, i:i + 500]),
                            np.ascontiguousarray(Gd[:, i:i + 500])) for i in range(0, N, 500))
        np.testing.assert_allclose(got, blocks, **tol)


def test_mlp_mixed_vjp_argument_errors():
    m, T, X, V, Go, Gd = _mixed_case([4, 3, 2], "tanh", 10)
    mods = [twin] + ([_backend._core] if _backend.native_available() else [])
    for mod in mods:
        net, g = m.net_config(mod), np.empty((1, m.n_params))
        with pytest.raises(ValueError, match="one parameter vector"):
            mod.mlp.mlp_mixed_vjp(net, np.vstack([T, T]), X, V, Go, Gd, np.empty((2, m.n_params)))
        with pytest.raises(ValueError, match="one parameter vector"):  # per-sample inputs (1, N, D)
            mod.mlp.mlp_mixed_vjp(net, T, X[None], V, Go, Gd, g)
        with pytest.raises(ValueError, match="V"):
            mod.mlp.mlp_mixed_vjp(net, T, X, V[:5], Go, Gd, g)
        with pytest.raises(ValueError, match="g_out"):
            mod.mlp.mlp_mixed_vjp(net, T, X, V, Go[:, :5], Gd, g)
        with pytest.raises(ValueError, match="g_dot"):
            mod.mlp.mlp_mixed_vjp(net, T, X, V, Go, Gd[..., :1], g)
        with pytest.raises(ValueError, match="grad"):
            mod.mlp.mlp_mixed_vjp(net, T, X, V, Go, Gd, g[:, :3])
        # no rows: a zero gradient
        g0 = np.full((1, m.n_params), np.nan)
        mod.mlp.mlp_mixed_vjp(net, T, X[:0], V[:0], None, Gd[:, :0], g0)
        np.testing.assert_array_equal(g0, 0.0)


@pytest.mark.parametrize("act", ["tanh", "gelu"])
def test_mlp_mixed_vjp_method_is_the_gradient_of_a_directional_derivative(act):
    """MLP.mixed_vjp: the gradient of sum_n g_dot_n . (J_x f(x_n) v_n) (+ g_out . f) in theta, against central
    differences in theta of that objective formed from MLP.vjp's input gradients (a double-backpropagation
    penalty's gradient, which needs the second derivatives), on the active backend; then its argument checks."""
    m = MLP([4, 6, 2], act)
    r = np.random.default_rng(3)
    th, X, V = m.init(seed=1), r.normal(size=(40, 4)), r.normal(size=(40, 4))
    gd, go = r.normal(size=(40, 2)), r.normal(size=(40, 2))

    def objective(t):
        _, gx = m.vjp(t, X, gd, wrt_input=True)  # sum_n gd_n J_x f(x_n): its dot with V is the directional term
        return float((gx * V).sum() + (go * m.forward(t, X)).sum())

    h = 1e-6
    fd = np.array([(objective(th + h * e) - objective(th - h * e)) / (2 * h) for e in np.eye(m.n_params)])
    np.testing.assert_allclose(m.mixed_vjp(th, X, V, gd, go), fd, rtol=1e-6, atol=1e-7 * np.abs(fd).max())
    no_out = m.mixed_vjp(th, X, V, gd)
    np.testing.assert_allclose(no_out + m.vjp(th, X, go), m.mixed_vjp(th, X, V, gd, go), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="one parameter vector"):
        m.mixed_vjp(np.stack([th, th]), X, V, gd)
    with pytest.raises(ValueError, match=r"V must have the shape of X \(40, 4\)"):
        m.mixed_vjp(th, X, V[:5], gd)
    with pytest.raises(ValueError, match=r"g_dot must have the outputs' shape \(40, 2\)"):
        m.mixed_vjp(th, X, V, gd[:, :1])
    with pytest.raises(ValueError, match="g_out must have the outputs' shape"):
        m.mixed_vjp(th, X, V, gd, go.T)
    with pytest.raises(TypeError, match="g_dot must be an array"):
        m.mixed_vjp(th, X, V, None)


@pytest.mark.single_backend
@pytest.mark.skipif(not _backend.native_available(), reason="no native core")
@pytest.mark.parametrize("lik", LIKS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_mlp_nll_grad_row_tiles_of_one_network(lik, dtype):
    """mlp_nll_grad with one parameter vector on many rows of a narrow network runs in row tiles (each tile's
    outputs straight into the likelihood and back): the NLL and its gradient equal the twin's and the sums over
    row blocks on the layer-at-a-time path (under 512 rows), the same at 1, 2 and 3 threads bit for bit; a
    class label out of range is refused before any work."""
    from bayesgrad._codes import Likelihood

    core = _backend._core.mlp
    tol = dict(rtol=1e-11, atol=1e-10) if dtype == np.float64 else dict(rtol=3e-4)
    code = int(getattr(Likelihood, lik))
    for sizes, N in (([12, 20, 4], 1300), ([8, 16, 2], 9000)):
        m = MLP(sizes, "tanh")
        r = np.random.default_rng(N)
        T = (r.normal(size=(1, m.n_params)) * 0.5).astype(dtype)
        X = r.normal(size=(N, sizes[0])).astype(dtype)
        y = np.asarray(_targets(lik, N, sizes[-1], r), dtype=dtype).reshape(N, -1)
        ln = np.full(y.shape[1], -0.3, dtype)

        def run(mod, rows=slice(None)):
            out, grad = np.empty(1, dtype), np.empty((1, m.n_params), dtype)
            mod.mlp_nll_grad(m.net_config(_backend._core if mod is core else twin), code, T, X[rows],
                             np.ascontiguousarray(y[rows]), ln, out, grad)
            return out, grad

        got = _same_at_thread_counts(lambda: run(core))
        blocks = [run(core, slice(i, min(N, i + 500))) for i in range(0, N, 500)]
        for want in (run(twin.mlp), tuple(sum(b[k] for b in blocks) for k in (0, 1))):
            np.testing.assert_allclose(got[0], want[0], **tol)
            np.testing.assert_allclose(got[1], want[1], **(tol if dtype == np.float64 else
                                                               dict(rtol=3e-4, atol=3e-6 * np.abs(want[1]).max())))
        if lik == "categorical":
            bad = y.copy()
            bad[-1] = sizes[-1]
            out, grad = np.full(1, np.nan, dtype), np.full((1, m.n_params), np.nan, dtype)
            with pytest.raises(ValueError, match="class label out of range"):
                core.mlp_nll_grad(m.net_config(_backend._core), code, T, X, bad, ln, out, grad)
            assert np.isnan(grad).all()
