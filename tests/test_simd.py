"""The native core's SIMD paths against each other (single backend: the test
switches paths of the one native core itself).

The AVX-512 kernels repeat the AVX2 arithmetic operation for operation on
wider vectors, so their results must be bit-identical; both are checked against
the scalar libm reference within the accuracy the vector math states
(simd_math.hpp). Sampling kernels are covered in test_random.py and
test_distributions.py; here the metric and acquisition passes and the MLP
engine's vector tanh and sigmoid."""
import numpy as np
import pytest

import bayesgrad as bg
from bayesgrad import _backend
from bayesgrad.nn import MLP
from helpers import on_simd_path

pytestmark = pytest.mark.single_backend


def _has(path):
    return _backend.native_available() and on_simd_path(path, lambda: bg.backend_info()["simd"]).startswith(path)


def _log_probs(dtype, S=7, N=1001, C=10, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=3.0, size=(S, N, C))
    lp = x - np.log(np.exp(x).sum(-1, keepdims=True))
    lp[0, 0, 3] = -np.inf  # an exact zero probability (0 log 0 = 0)
    lp[0, 0] -= np.log(np.exp(lp[0, 0]).sum())
    return lp.astype(dtype)


def _all_outputs(lp):
    dec = bg.uncertainty.decompose(lp)
    outs = [dec.total, dec.aleatoric, dec.epistemic]
    for name in ("bald", "max_entropy", "variation_ratios", "mean_std", "margin"):
        outs.append(bg.acquisition.scores(lp, name))
    outs.append(np.asarray(bg.acquisition.batchbald(lp, batch_size=3, n_configs=64, seed=1).indices))
    outs.append(np.asarray(bg.acquisition.joint_entropy(lp, [1, 5, 9], n_configs=256, seed=2)))
    return outs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_avx512_metrics_and_acquisition_agree_with_avx2(dtype):
    """Identical picks; scores within 1 ulp. The release build (-O3) gives identical
    values; the sanitizer build (-O2) was measured 1 ulp apart on one point of 1001,
    from the compiler contracting a product and a sum differently in one path."""
    if not _has("avx512"):
        pytest.skip("CPU without AVX-512F/DQ/BW/VL")
    lp = _log_probs(dtype)
    wide = on_simd_path("avx512", lambda: _all_outputs(lp))
    narrow = on_simd_path("avx2", lambda: _all_outputs(lp))
    np.testing.assert_array_equal(wide[8], narrow[8])
    for a, b in zip(wide[:8] + wide[9:], narrow[:8] + narrow[9:]):
        np.testing.assert_array_max_ulp(np.asarray(a), np.asarray(b), maxulp=1)


@pytest.mark.parametrize("path", ["avx512", "avx2"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_simd_metrics_match_scalar_reference(path, dtype):
    if not _has(path):
        pytest.skip(f"CPU without {path}")
    lp = _log_probs(dtype, seed=3)
    fast = on_simd_path(path, lambda: _all_outputs(lp))
    ref = on_simd_path("scalar", lambda: _all_outputs(lp))
    tol = 2e-5 if dtype == np.float32 else 1e-11
    for a, b in zip(fast[:8], ref[:8]):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    # the greedy picks and the joint entropy: same picks, entropy to tolerance
    np.testing.assert_array_equal(fast[8], ref[8])
    np.testing.assert_allclose(fast[9], ref[9], rtol=tol)


def _act_by_network(x, dtype, act):
    """act(x) through the MLP engine: one hidden unit with weight 1 and bias 0 and a
    linear output with weight 1 and bias 0 (the products and sums add nothing)."""
    m = MLP([1, 1, 1], act)
    with bg.use_backend("cpu"):
        return m.forward(np.array([1.0, 0.0, 1.0, 0.0], dtype=dtype), np.asarray(x, dtype=dtype)[:, None])[:, 0]


def _act_reference(x, act):
    xl = x.astype(np.longdouble)
    return np.tanh(xl) if act == "tanh" else 1 / (1 + np.exp(-xl))


@pytest.mark.parametrize("act", ["tanh", "sigmoid"])
@pytest.mark.parametrize("path", ["avx512", "avx2", "scalar"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mlp_activation_within_its_stated_accuracy(act, path, dtype):
    """simd_math.hpp's tanh (expm1 by series on the reduced argument, then e / (e + 2))
    and sigmoid (1 / (1 + e), e / (1 + e) with e = exp(-|x|)) within 2.5 ulp of the
    80-bit long double value, like libm on the scalar path, over six decades and the
    saturation region (sigmoid values below exp(-86) in float32 excepted: exp flushes there);
    tanh odd and exactly +-1 beyond 20; pre-activations that overflow saturate. The
    AVX-512 kernel must equal the AVX2 one bit for bit (same steps)."""
    if not _backend.native_available() or (path != "scalar" and not _has(path)):
        pytest.skip(f"no native core or CPU without {path}")
    if np.finfo(np.longdouble).nmant < 60:
        pytest.skip("needs an 80-bit long double reference")
    rng = np.random.default_rng(11)
    x = np.concatenate([rng.standard_normal(4001) * s for s in (1e-6, 1e-2, 0.2, 0.5, 1.0, 4.0, 12.0, 40.0)]
                       + [np.array([0.0, 1e-30, 0.34657359, 9.0, 9.5, 19.9, 20.5, 300.0, -300.0])]).astype(dtype)
    y = on_simd_path(path, lambda: _act_by_network(x, dtype, act))
    ref = _act_reference(x, act)
    ulp = np.spacing(np.abs(ref.astype(dtype))).astype(np.longdouble)
    # the vector exp gives 0 below -86 (float32) / -700 (float64): values under exp of those
    floor = np.exp(np.longdouble(-86.0 if dtype == np.float32 else -700.0))
    normal = np.abs(ref) >= floor
    assert float(np.max(np.abs(y.astype(np.longdouble) - ref)[normal] / ulp[normal])) <= 2.5
    assert np.all(np.abs(y[~normal]) <= floor)
    big = np.array([np.finfo(dtype).max, 0.0, 1.0, 0.0], dtype=dtype)
    with bg.use_backend("cpu"):
        out = on_simd_path(path, lambda: MLP([1, 1, 1], act).forward(big, np.array([[10.0], [-10.0]], dtype=dtype)))
    np.testing.assert_array_equal(out[:, 0], [1.0, -1.0 if act == "tanh" else 0.0])
    if act == "tanh":
        np.testing.assert_array_equal(on_simd_path(path, lambda: _act_by_network(-x, dtype, act)), -y)
        np.testing.assert_array_equal(y[np.abs(x) >= 20], np.sign(x[np.abs(x) >= 20]))
    if path == "avx512" and _has("avx2"):
        np.testing.assert_array_equal(y, on_simd_path("avx2", lambda: _act_by_network(x, dtype, act)))
