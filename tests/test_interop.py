"""Interop with other libraries.

- Arrays from other libraries (issue 20, item 2): every public function takes
  objects that export DLPack or the NumPy array interface, through the one
  conversion ``bayesgrad._checks.to_numpy``; results are NumPy arrays. The fake
  exporters below wrap a NumPy array and export ONLY one protocol, so the suite
  needs neither PyTorch nor JAX; pandas objects are tested directly, PyTorch
  tensors where torch imports.
- PyTorch networks (item 1): ``bg.nn.MLP.from_torch`` / ``to_torch``, where
  torch imports.
"""
import numpy as np
import pytest

import bayesgrad as bg
from bayesgrad import _checks as C
from bayesgrad.nn import MLP



class DLPackOnly:
    """Exports its array through ``__dlpack__`` only (like a tensor of a library NumPy does not know)."""

    def __init__(self, a):
        self._a = np.asarray(a)

    def __dlpack__(self, **kw):
        return self._a.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


class ArrayInterfaceOnly:
    """Exports its array through ``__array_interface__`` only, read-only: a function
    that wrote into its input would fail here."""

    def __init__(self, a):
        self._a = np.asarray(a)
        self.__array_interface__ = dict(self._a.__array_interface__, data=(self._a.ctypes.data, True))


class OnDevice(DLPackOnly):
    """A DLPack exporter that says its memory is on CUDA device 0."""

    def __dlpack_device__(self):
        return (2, 0)


def _same(x):
    return x


WRAPPERS = [pytest.param(DLPackOnly, id="dlpack"), pytest.param(ArrayInterfaceOnly, id="array_interface")]


# ---------------------------------------------------------------- the conversion itself

@pytest.mark.single_backend
@pytest.mark.parametrize("wrap", WRAPPERS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_as_array_does_not_copy(wrap, dtype):
    a = np.arange(12, dtype=dtype).reshape(3, 4)
    out = C.as_array(wrap(a), "x")
    assert type(out) is np.ndarray and out.dtype == dtype and out.shape == (3, 4)
    assert np.shares_memory(out, a)


@pytest.mark.single_backend
@pytest.mark.parametrize("wrap", WRAPPERS)
def test_conversion_keeps_integer_and_bool_dtypes(wrap):
    for a in (np.arange(5, dtype=np.int32), np.array([True, False]), np.arange(4, dtype=np.uint8)):
        out = C.to_numpy(wrap(a), "y")
        assert out.dtype == a.dtype and np.shares_memory(out, a)


@pytest.mark.single_backend
def test_strided_input_is_copied_to_c_order():
    a = np.arange(24.0).reshape(4, 6)[:, ::2]
    out = C.as_array(DLPackOnly(a), "x")
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, a)


@pytest.mark.single_backend
def test_errors_name_the_argument_and_what_it_got():
    with pytest.raises(TypeError, match=r"probs is a .*OnDevice in cuda memory.*host"):
        bg.uncertainty.nll(OnDevice(np.full((2, 2), 0.5)), np.array([0, 1]))
    with pytest.raises(TypeError, match=r"X must be a real numeric array, got dtype object \(converted from object\)"):
        bg.nn.MLP([2, 1]).forward(np.zeros(3), object())
    with pytest.raises(TypeError, match="theta must be an array, got None"):
        bg.nn.MLP([2, 1]).forward(None, np.zeros((1, 2)))

    class Broken:
        def __array__(self, *a, **k):
            raise RuntimeError("no host copy")

    with pytest.raises(TypeError, match=r"y must be array-like .*got .*Broken \(no host copy\)"):
        bg.uncertainty.gaussian_nll(Broken(), np.zeros(2), np.ones(2))
    with pytest.raises(TypeError, match=r"mean must be a real number, got .*OnDevice"):
        C.real(OnDevice(np.zeros(())), "mean")


# ---------------------------------------------------------------- public functions

_rng = np.random.default_rng(0)
N, K, S = 24, 3, 5
LOGITS = _rng.normal(size=(N, K))
PROBS = np.exp(LOGITS) / np.exp(LOGITS).sum(1, keepdims=True)
LABELS = _rng.integers(0, K, N)
LABELS[:K] = np.arange(K)
YR = _rng.normal(size=N)
MEAN = _rng.normal(size=N)
STD = np.exp(0.3 * _rng.normal(size=N))
LOG_PROBS = np.log(_rng.dirichlet(np.ones(K), size=(S, N)))
SAMPLE_MEANS = _rng.normal(size=(S, N))
X = _rng.normal(size=(N, 4))
NET = MLP([4, 6, 1], activation="tanh")
THETA = NET.init(seed=0)
NET_C = MLP([4, 6, K])
THETA_C = NET_C.init(seed=1)
OOD = np.arange(N) % 2 == 0


def _fit_kw():
    return dict(seed=0, verbose=0)


# Each case calls public functions with every array argument passed through w.
CASES = {
    "uncertainty.decompose": lambda w: bg.uncertainty.decompose(w(LOG_PROBS)).epistemic,
    "uncertainty.decompose_regression": lambda w: bg.uncertainty.decompose_regression(
        w(SAMPLE_MEANS), w(np.broadcast_to(STD ** 2, (S, N)).copy())).total,
    "uncertainty.nll": lambda w: bg.uncertainty.nll(w(PROBS), w(LABELS)),
    "uncertainty.ece": lambda w: bg.uncertainty.ece(w(PROBS), w(LABELS), n_bins=5),
    "uncertainty.brier": lambda w: bg.uncertainty.brier(w(PROBS), w(LABELS)),
    "uncertainty.aurc": lambda w: bg.uncertainty.aurc(w(PROBS), w(LABELS)),
    "uncertainty.fit_temperature": lambda w: bg.uncertainty.fit_temperature(w(LOGITS), w(LABELS)).temperature,
    "uncertainty.gaussian_nll": lambda w: bg.uncertainty.gaussian_nll(w(YR), w(MEAN), w(STD ** 2)),
    "uncertainty.crps_gaussian": lambda w: bg.uncertainty.crps_gaussian(w(YR), w(MEAN), w(STD)),
    "uncertainty.miscalibration_area": lambda w: bg.uncertainty.miscalibration_area(w(YR), w(MEAN), w(STD)),
    "uncertainty.auroc": lambda w: bg.uncertainty.auroc(w(STD), w(OOD)),
    "uncertainty.fpr_at_tpr": lambda w: bg.uncertainty.fpr_at_tpr(w(STD), w(OOD)),
    "calibration.fit_vector_scaling": lambda w: bg.calibration.fit_vector_scaling(w(LOGITS), w(LABELS)).w,
    "calibration.fit_std_scaling": lambda w: bg.calibration.fit_std_scaling(w(YR), w(MEAN), w(STD)).scale,
    "conformal.calibrate_regression": lambda w: bg.conformal.calibrate_regression(w(YR), w(MEAN), w(STD)).quantile,
    "conformal.calibrate_classification": lambda w: bg.conformal.calibrate_classification(
        w(PROBS), w(LABELS)).quantile,
    "distributions.Normal": lambda w: bg.distributions.Normal(w(MEAN), w(STD)).log_prob(w(YR)),
    "distributions.Gamma": lambda w: bg.distributions.Gamma(w(STD), w(STD)).sample(3, seed=0),
    "distributions.MultivariateNormal": lambda w: bg.distributions.MultivariateNormal(
        w(np.zeros(2)), w(np.eye(2))).log_prob(w(X[:, :2])),
    "estimators.pathwise": lambda w: bg.estimators.pathwise(
        lambda z: (z ** 2).sum(-1), bg.distributions.Normal(w(np.zeros(2)), w(np.ones(2))), 64, seed=0,
        grad_f=lambda z: 2 * z).grad["loc"],
    "random.philox4x32": lambda w: bg.random.philox4x32(w(np.arange(8, dtype=np.uint32).reshape(2, 4)),
                                                        w(np.array([1, 2], np.uint32))),
    "nn.MLP.forward": lambda w: NET.forward(w(THETA), w(X)),
    "nn.MLP.unflatten": lambda w: NET.unflatten(w(THETA))[0][0],
    "nn.train_map": lambda w: bg.nn.train_map(NET, w(X), w(YR), epochs=2, **_fit_kw()),
    "nn.Predictive.log_likelihood": lambda w: bg.nn.Predictive.from_outputs(
        w(np.stack([NET.forward(THETA, X)] * 2)), "gaussian").log_likelihood(w(YR)),
    "vi.MFVI": lambda w: bg.vi.MFVI(NET).fit(w(X), w(YR), epochs=2, **_fit_kw()).predict(
        w(X), n_samples=3, seed=0).mean,
    "dropout.MCDropout": lambda w: bg.dropout.MCDropout(NET_C, likelihood="categorical").fit(
        w(X), w(LABELS), epochs=2, **_fit_kw()).predict(w(X), n_samples=3, seed=0).probs,
    "laplace.Laplace": lambda w: bg.laplace.Laplace(NET, w(THETA), likelihood="gaussian", structure="kron",
                                                    prior_precision=w(np.array([1.0, 2.0, 1.0, 2.0]))).fit(
        w(X), w(YR)).predict(w(X)).epistemic_var,
    "ensemble.DeepEnsemble": lambda w: bg.ensemble.DeepEnsemble(NET, "gaussian", n_models=2).fit(
        w(X), w(YR), 2, **_fit_kw()).predict(w(X)).mean,
    "sgmcmc.SGMCMC": lambda w: bg.sgmcmc.SGMCMC(NET, "gaussian", lr=1e-4).fit(
        w(X), w(YR), 20, theta0=w(THETA), **_fit_kw()).predict(w(X)).mean,
    "latent.exact_log_likelihood": lambda w: bg.latent.exact_log_likelihood(
        bg.latent.init_params(4, 2, 1, seed=0), w(X), w(YR[:, None])),
    "ddu.DDU": lambda w: bg.ddu.DDU().fit(w(X), w(LABELS)).predict(w(X), w(PROBS)).log_density,
    "optim.PolyakAverage": lambda w: bg.optim.PolyakAverage(4).update(w(X[0])),
    "acquisition.bald": lambda w: bg.acquisition.bald(w(LOG_PROBS), 2).indices,
    "acquisition.batchbald": lambda w: bg.acquisition.batchbald(w(LOG_PROBS), 2, n_configs=50).indices,
    "acquisition.random": lambda w: bg.acquisition.random(w(LOG_PROBS), 2).indices,
    "acquisition.stochastic_batch": lambda w: bg.acquisition.stochastic_batch(w(LOG_PROBS), 2).indices,
    "distributions.Categorical.log_prob": lambda w: bg.distributions.Categorical(logits=w(LOGITS)).log_prob(
        w(LABELS)),
}


def _check_case(fn, wrap):
    ref = fn(_same)
    got = fn(wrap)
    if isinstance(ref, np.ndarray):
        assert type(got) is np.ndarray and got.dtype == ref.dtype
    np.testing.assert_array_equal(np.asarray(got), np.asarray(ref))


@pytest.mark.parametrize("wrap", WRAPPERS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_public_functions_take_foreign_arrays(case, wrap):
    _check_case(CASES[case], wrap)


def test_pandas_objects():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(X, columns=list("abcd"))
    s = pd.Series(YR, name="y")
    np.testing.assert_array_equal(NET.forward(pd.Series(THETA), df), NET.forward(THETA, X))
    assert bg.uncertainty.gaussian_nll(s, pd.Series(MEAN), pd.Series(STD ** 2)) == \
        bg.uncertainty.gaussian_nll(YR, MEAN, STD ** 2)
    lab = pd.Series(LABELS)
    assert bg.uncertainty.nll(pd.DataFrame(PROBS), lab) == bg.uncertainty.nll(PROBS, LABELS)
    ll = bg.laplace.Laplace(NET, THETA, likelihood="gaussian").fit(df, s).predict(df)
    np.testing.assert_array_equal(ll.mean, bg.laplace.Laplace(NET, THETA, likelihood="gaussian").fit(X, YR)
                                  .predict(X).mean)
    # a float64 column is viewed, not copied
    assert np.shares_memory(C.as_array(s, "y"), s.to_numpy())
    with pytest.raises(TypeError, match=r"X must be a real numeric array, got dtype object \(converted from pandas.DataFrame\)"):
        NET.forward(THETA, df.assign(a=list("xyzw" * 6)))


# ---------------------------------------------------------------- PyTorch (optional)

@pytest.fixture(scope="module")
def torch():
    """PyTorch, or a skip where it is not installed (an optional test dependency)."""
    return pytest.importorskip("torch")


def test_torch_tensors_are_viewed(torch):
    t = torch.from_numpy(X.copy())
    out = C.as_array(t, "X")
    assert type(out) is np.ndarray and np.shares_memory(out, t.numpy())
    np.testing.assert_array_equal(NET.forward(torch.from_numpy(THETA), t), NET.forward(THETA, X))
    assert bg.uncertainty.nll(torch.from_numpy(PROBS), torch.from_numpy(LABELS)) == \
        bg.uncertainty.nll(PROBS, LABELS)
    with pytest.raises(TypeError, match=r"theta must be array-like.*got torch.Tensor.*detach"):
        NET.forward(torch.from_numpy(THETA).requires_grad_(), X)


@pytest.mark.parametrize("name", ["relu", "tanh", "sigmoid", "gelu"])
@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
def test_round_trip_outputs_agree(torch, name, dtype_name):
    act_cls = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid, "gelu": torch.nn.GELU}[name]
    dtype = getattr(torch, dtype_name)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 7), act_cls(), torch.nn.Dropout(0.1), torch.nn.Linear(7, 6),
                              act_cls(), torch.nn.Linear(6, 3)).to(dtype).eval()
    mlp, theta = MLP.from_torch(net)
    assert mlp.sizes == (5, 7, 6, 3) and mlp.activation == name and theta.shape == (mlp.n_params,)
    want = torch.nn.utils.parameters_to_vector(net.parameters()).detach().numpy()
    np.testing.assert_array_equal(theta, want)  # PyTorch's own order, bit for bit
    Xt = np.random.default_rng(1).normal(size=(11, 5)).astype(theta.dtype)
    with torch.no_grad():
        ref = net(torch.from_numpy(Xt)).numpy()
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    np.testing.assert_allclose(mlp.forward(theta, Xt), ref, rtol=tol, atol=tol)
    back = mlp.to_torch(theta)
    with torch.no_grad():
        np.testing.assert_array_equal(back(torch.from_numpy(Xt)).numpy(), ref)


def test_unsupported_layers_are_named(torch):
    with pytest.raises(ValueError, match="layer 1 \\(Softplus\\)"):
        MLP.from_torch(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Softplus(), torch.nn.Linear(3, 1)))
    with pytest.raises(ValueError, match="ends with an activation"):
        MLP.from_torch(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU()))
    with pytest.raises(ValueError, match="one activation"):
        MLP.from_torch(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 3),
                                           torch.nn.Tanh(), torch.nn.Linear(3, 1)))
    with pytest.raises(ValueError, match="tanh approximation"):
        MLP.from_torch(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.GELU("tanh"), torch.nn.Linear(3, 1)))
    with pytest.raises(TypeError, match="Sequential"):
        MLP.from_torch(torch.nn.ReLU())


def test_linear_without_bias_gets_zero_bias(torch):
    net = torch.nn.Sequential(torch.nn.Linear(3, 2, bias=False))
    mlp, theta = MLP.from_torch(net)
    np.testing.assert_array_equal(theta[-2:], 0)
    Xt = np.ones((4, 3), np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(mlp.forward(theta, Xt), net(torch.from_numpy(Xt)).numpy(), rtol=1e-6)
