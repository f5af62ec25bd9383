import math

import numpy as np
import pytest
from scipy import integrate, special, stats

import bayesgrad as bg
from bayesgrad import _backend, _numpy

from helpers import BACKENDS, on_simd_path

U = bg.uncertainty


def random_log_probs(rng, S, N, C, scale=2.0, dtype=np.float64):
    return special.log_softmax(rng.normal(size=(S, N, C)) * scale, axis=-1).astype(dtype)


def slow_decompose(lp):
    """float64 reference, written per point."""
    lp = lp.astype(np.float64)
    S, N, C = lp.shape
    out = np.zeros((3, N))
    for n in range(N):
        p = np.exp(lp[:, n])
        pm = p.mean(0)
        h = -sum(v * math.log(v) for v in pm if v > 0)
        a = -np.mean([sum(v * math.log(v) for v in row if v > 0) for row in p])
        out[:, n] = h, a, h - a
    return out


# ---------------------------------------------------------------- decompose
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_decompose_matches_reference(rng, dtype, tol):
    lp = random_log_probs(rng, 17, 301, 7, dtype=dtype)  # odd sizes: SIMD tails
    d = U.decompose(lp)
    assert d.total.dtype == dtype
    ref = slow_decompose(lp)
    np.testing.assert_allclose(d.total, ref[0], atol=tol)
    np.testing.assert_allclose(d.aleatoric, ref[1], atol=tol)
    np.testing.assert_allclose(d.epistemic, np.maximum(ref[2], 0), atol=tol)
    np.testing.assert_allclose(d.total, d.aleatoric + d.epistemic, atol=tol)
    assert np.all(d.epistemic >= 0) and np.all(d.aleatoric >= 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("path", ["native", "avx2", "scalar"])
def test_decompose_values_independent_of_row_layout(rng, dtype, path):
    # N = 2500, C = 64: the kernel reads chunks of several L1 blocks; slices of 37 and 401 rows
    # are one block each. Every point's values must be the same bits either way (pools scored
    # block by block on Dask rely on it), and the normalisation check must still see a bad row.
    lp = random_log_probs(rng, 3, 2500, 64, dtype=dtype)
    run = (lambda f: f()) if path == "native" else (lambda f: on_simd_path(path, f))
    whole = run(lambda: U.decompose(lp))
    probs = run(lambda: U.mean_probs(lp))
    for lo, hi in [(0, 37), (37, 438), (438, 2500)]:
        part = run(lambda: U.decompose(lp[:, lo:hi]))
        for a, b in zip(whole, part):
            np.testing.assert_array_equal(a[lo:hi], b)
        np.testing.assert_array_equal(probs[lo:hi], run(lambda: U.mean_probs(lp[:, lo:hi])))
    ref = slow_decompose(lp[:, ::97])
    np.testing.assert_allclose(whole.total[::97], ref[0], atol=1e-12 if dtype == np.float64 else 3e-5)
    bad = lp.copy()
    bad[2, 2345] += 0.1  # one row of one sample sums to e^0.1
    with pytest.raises(ValueError, match="log_probs"):
        run(lambda: U.decompose(bad))


@pytest.mark.parametrize("C", [1, 3, 10, 16, 17, 40])
def test_decompose_sum_check_sees_every_row_on_every_path(rng, C):
    # the float AVX-512 row sums fold 16 rows at a time (then the rest one by one): a bad row at
    # any position of a group or of the tail is found, and the largest deviation the kernel
    # returns is the scalar path's up to float rounding of the sums
    N = 16 * 3 + 5
    lp = random_log_probs(rng, 2, N, C, dtype=np.float32)
    kernel = _backend._core.metrics.decompose if _backend.native_available() else None
    for row in [0, 7, 15, 16, 31, 40, 47, 48, 52]:
        for shift, expect in [(0.05, 0.05), (-0.3, 0.3)]:
            bad = lp.copy()
            bad[1, row] += np.float32(shift)  # this row sums to e^shift
            with pytest.raises(ValueError, match="log_probs"):
                U.decompose(bad)
            if kernel is None or _backend.get_backend() != "cpu":
                continue
            devs = [on_simd_path(p, lambda: kernel(bad, *(np.empty(N, np.float32) for _ in range(3))))
                    for p in ("avx512", "avx2", "scalar")]
            assert devs[2] == pytest.approx(abs(np.expm1(shift)), rel=1e-5)
            np.testing.assert_allclose(devs, devs[2], rtol=0, atol=4e-7 * C)
        nan = lp.copy()
        nan[0, row, 0] = np.nan
        with pytest.raises(ValueError, match="log_probs"):
            U.decompose(nan)


def test_decompose_closed_forms():
    # Two samples: one certain of class 0, one certain of class 1 -> total log 2,
    # aleatoric 0, epistemic log 2 (exact zeros as -inf).
    with np.errstate(divide="ignore"):
        lp = np.log(np.array([[[1.0, 0.0]], [[0.0, 1.0]]]))
    d = U.decompose(lp)
    np.testing.assert_allclose([d.total[0], d.aleatoric[0], d.epistemic[0]], [math.log(2), 0, math.log(2)],
                               atol=1e-15)
    # Uniform over C in every sample: all aleatoric.
    C = 5
    d = U.decompose(np.full((4, 1, C), -math.log(C)))
    np.testing.assert_allclose([d.total[0], d.aleatoric[0], d.epistemic[0]], [math.log(C), math.log(C), 0],
                               atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_entropies_non_negative_for_rows_just_above_one(dtype):
    # accepted rows may sum to 1 + tolerance, where p log p > 0: one float32 class at log p = 3e-4
    # gave total = aleatoric = max_entropy = -3e-4
    shift = 0.5 * U._prob_tol(dtype, 1)
    one = np.full((2, 1, 1), shift, dtype=dtype)
    two = np.log(np.array([[[1.0, 1e-300]], [[1.0, 1e-300]]])).astype(dtype) + dtype(shift)
    for lp in (one, two):
        d = U.decompose(lp)
        for v in (d.total, d.aleatoric, d.epistemic, bg.acquisition.scores(lp, "max_entropy"),
                  bg.acquisition.scores(lp, "bald")):
            assert v[0] == 0


def test_epistemic_zero_when_samples_agree(rng):
    one = random_log_probs(rng, 1, 50, 6)
    d = U.decompose(np.repeat(one, 9, axis=0))
    np.testing.assert_allclose(d.epistemic, 0, atol=1e-13)
    np.testing.assert_allclose(d.total, d.aleatoric, atol=1e-13)


def test_confident_ambiguous_unseen_ordering():
    S = 20
    conf = np.tile([0.98, 0.01, 0.01], (S, 1))            # known point, certain
    amb = np.tile([0.5, 0.5, 1e-12], (S, 1))              # overlap: aleatoric
    eye = np.eye(3)[np.arange(S) % 3] * 0.97 + 0.01      # samples disagree: epistemic
    p = np.stack([conf, amb, eye], axis=1)
    p /= p.sum(-1, keepdims=True)
    d = U.decompose(np.log(p))
    assert d.total[0] < d.total[1] and d.total[0] < d.total[2]
    assert d.aleatoric[1] > 5 * d.aleatoric[2] and d.aleatoric[1] > 5 * d.aleatoric[0]
    assert d.epistemic[2] > 10 * d.epistemic[1] and d.epistemic[2] > 10 * d.epistemic[0]
    assert d.epistemic[1] < 1e-12


def test_minus_inf_is_exact(rng):
    lp = random_log_probs(rng, 6, 40, 4)
    lp[:, :, 3] = -np.inf  # class never predicted
    lp = special.log_softmax(lp, axis=-1)
    d = U.decompose(lp)
    ref = slow_decompose(lp)
    assert np.all(np.isfinite(d.total))
    np.testing.assert_allclose(d.total, ref[0], atol=1e-12)
    np.testing.assert_allclose(d.aleatoric, ref[1], atol=1e-12)


@pytest.mark.single_backend
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 3e-6)])
def test_decompose_backend_parity(rng, dtype, tol):
    if len(BACKENDS) < 2:
        pytest.skip("only one backend available")
    lp = random_log_probs(rng, 13, 1000, 10, dtype=dtype)
    lp[0, :5, 2] = -np.inf
    lp[0, :5] = special.log_softmax(lp[0, :5], axis=-1)
    outs = []
    for be in ("cpu", "numpy"):
        with bg.use_backend(be):
            d = U.decompose(lp)
            outs.append(np.stack([d.total, d.aleatoric, d.epistemic]))
    np.testing.assert_allclose(outs[0], outs[1], atol=tol)
    # many classes (the class sums in double on both) and rows just above 1 (clamped at 0 on both)
    wide = random_log_probs(rng, 3, 4, 10_000, dtype=dtype)
    above = np.full((2, 3, 1), 0.5 * U._prob_tol(dtype, 1), dtype=dtype)
    for lp, rtol in ((wide, 1e-6 if dtype == np.float32 else 1e-12), (above, 0)):
        outs = []
        for be in ("cpu", "numpy"):
            with bg.use_backend(be):
                d = U.decompose(lp)
                outs.append(np.stack([d.total, d.aleatoric, d.epistemic]))
        np.testing.assert_allclose(outs[0], outs[1], rtol=rtol, atol=rtol * float(np.max(outs[1])))


@pytest.mark.parametrize("path", ["native", "avx2", "scalar"])
def test_decompose_many_classes_float32_matches_float64(path):
    # the sums over C = 10^4 classes: float32 running sums drifted by 1e-4 relative (uniform rows)
    rng = np.random.default_rng(7)
    C = 10_000
    p = rng.dirichlet(np.full(C, 0.5), size=(3, 4))
    lp = np.concatenate([np.log(p), np.full((3, 1, C), -np.log(C))], axis=1).astype(np.float32)
    d = U.decompose(lp) if path == "native" else on_simd_path(path, lambda: U.decompose(lp))
    ref = slow_decompose(lp)
    np.testing.assert_allclose(d.total, ref[0], rtol=1e-6)
    np.testing.assert_allclose(d.aleatoric, ref[1], rtol=1e-6)
    np.testing.assert_allclose(d.epistemic, np.maximum(ref[2], 0), rtol=0, atol=2e-6 * ref[0].max())


@pytest.mark.single_backend
def test_decompose_thread_count_invariant(rng):
    if "cpu" not in BACKENDS:
        pytest.skip("needs the native core")
    lp = random_log_probs(rng, 9, 5000, 3, dtype=np.float32)
    prev = bg.get_num_threads()
    with bg.use_backend("cpu"):
        try:
            bg.set_num_threads(1)
            a = U.decompose(lp).epistemic
            bg.set_num_threads(2)
            b = U.decompose(lp).epistemic
        finally:
            bg.set_num_threads(prev)
    np.testing.assert_array_equal(a, b)


def test_decompose_bad_input(rng):
    lp = random_log_probs(rng, 4, 10, 3)
    with pytest.raises(ValueError, match="normalised"):
        U.decompose(lp + 0.1)                    # not log-probabilities (logits)
    bad = lp.copy()
    bad[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        U.decompose(bad)
    bad = lp.copy()
    bad[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or \\+inf"):
        U.decompose(bad)
    with pytest.raises(ValueError, match="3 dimension"):
        U.decompose(lp[0])
    with pytest.raises(ValueError, match="empty"):
        U.decompose(np.zeros((4, 0, 3)))
    with pytest.raises(TypeError):
        U.decompose(np.array([["a"]]))


def test_float16_log_probs_are_taken_to_their_precision(rng):
    """float16 log-probabilities were converted to float64 and held to float64's tolerance:
    refused every time (even log(0.5)), as if logits. Checked to float16's tolerance and
    renormalised, they decompose like the float64 values they round."""
    lp = random_log_probs(rng, 4, 10, 3)
    half = lp.astype(np.float16)
    ref = U.decompose(special.log_softmax(half.astype(np.float64), axis=-1))
    for a, b in zip(U.decompose(half), ref):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(U.mean_probs(half), np.exp(half.astype(np.float64)).mean(0), atol=2e-3)
    with np.errstate(divide="ignore"):
        one_hot = np.log(np.array([[[1.0, 0.0]], [[0.5, 0.5]]])).astype(np.float16)  # -inf stays exact
    np.testing.assert_allclose(U.decompose(one_hot).aleatoric, [math.log(2) / 2], rtol=1e-12)
    assert bg.acquisition.bald(half, 2).indices.tolist() == bg.acquisition.bald(lp, 2).indices.tolist()
    with pytest.raises(ValueError, match="normalised"):
        U.decompose((lp + 0.1).astype(np.float16))  # logits are still refused
    bad = half.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        U.decompose(bad)


# ---------------------------------------------------------------- log_softmax, mean_probs
def _with_special_rows(x):
    x[0, 0, 3] = np.nan          # a NaN row stays NaN
    x[0, 1, :] = -np.inf         # every class impossible: the formula gives NaN
    x[0, 2, 2] = np.inf          # +inf: that class NaN, the others -inf
    x[1, 5, :] = -3e4            # a large common offset: removed exactly by the shift
    x[1, 6, 4] = -np.inf         # one impossible class: exactly -inf
    return x


@pytest.mark.parametrize("dtype,tol", [(np.float64, 4e-15), (np.float32, 5e-7)])
def test_log_softmax_matches_float64_reference(rng, dtype, tol):
    x = _with_special_rows((rng.normal(size=(3, 1001, 11)) * 30).astype(dtype))  # odd sizes: SIMD tails
    with np.errstate(all="ignore"):
        m = np.max(x.astype(np.float64), axis=-1, keepdims=True)
        m = np.where(np.isfinite(m), m, 0)
        ref = x.astype(np.float64) - m - np.log(np.sum(np.exp(x.astype(np.float64) - m), axis=-1, keepdims=True))
    out = U.log_softmax(x)
    assert out.dtype == dtype and out is not x
    np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
    np.testing.assert_array_equal(np.isposinf(out), np.isposinf(ref))
    np.testing.assert_array_equal(np.isneginf(out), np.isneginf(ref))
    fin = np.isfinite(ref)
    np.testing.assert_allclose(out[fin], ref[fin], rtol=tol, atol=tol * 40)
    np.testing.assert_allclose(out[1, 5], special.log_softmax(np.zeros(11)), atol=tol)
    # rows of proper log-probabilities sum to one
    ok = np.isfinite(out).any(-1) & ~np.isnan(out).any(-1)
    np.testing.assert_allclose(np.exp(out[ok].astype(np.float64)).sum(-1), 1.0, atol=20 * tol)


def test_log_softmax_in_place_and_dtypes(rng):
    x = rng.normal(size=(4, 5)).astype(np.float32)
    y = U.log_softmax(x, overwrite=True)
    assert y is x
    ints = U.log_softmax(np.arange(6).reshape(2, 3))
    assert ints.dtype == np.float64
    np.testing.assert_allclose(ints, special.log_softmax(np.arange(6.0).reshape(2, 3), axis=-1), atol=1e-15)
    view = rng.normal(size=(6, 8))[:, ::2]         # not contiguous: a copy, the input untouched
    before = view.copy()
    out = U.log_softmax(view, overwrite=True)
    np.testing.assert_array_equal(view, before)
    np.testing.assert_allclose(out, special.log_softmax(before, axis=-1), atol=1e-14)
    with pytest.raises(ValueError, match="logits"):
        U.log_softmax(np.zeros((3, 0)))
    with pytest.raises(TypeError, match="logits"):
        U.log_softmax(np.array([["a", "b"]]))


@pytest.mark.single_backend
@pytest.mark.parametrize("dtype,tol", [(np.float64, 4e-15), (np.float32, 5e-7)])
def test_log_softmax_and_mean_probs_backend_and_simd_parity(rng, dtype, tol):
    if len(BACKENDS) < 2:
        pytest.skip("only one backend available")
    x = _with_special_rows((rng.normal(size=(5, 777, 10)) * 10).astype(dtype))
    outs = {}
    for be in ("cpu", "numpy"):
        with bg.use_backend(be):
            outs[be] = U.log_softmax(x)
    with bg.use_backend("cpu"):
        outs["scalar"] = on_simd_path("scalar", lambda: U.log_softmax(x))
    for k in ("numpy", "scalar"):
        np.testing.assert_array_equal(np.isnan(outs["cpu"]), np.isnan(outs[k]))
        fin = np.isfinite(outs[k])
        np.testing.assert_allclose(outs["cpu"][fin], outs[k][fin], rtol=tol, atol=tol * 10)
    lp = random_log_probs(rng, 9, 1003, 10, dtype=dtype)
    probs = {}
    for be in ("cpu", "numpy"):
        with bg.use_backend(be):
            probs[be] = U.mean_probs(lp)
    with bg.use_backend("cpu"):
        probs["scalar"] = on_simd_path("scalar", lambda: U.mean_probs(lp))
    np.testing.assert_allclose(probs["cpu"], probs["numpy"], atol=tol)
    np.testing.assert_allclose(probs["cpu"], probs["scalar"], atol=tol)


@pytest.mark.parametrize("dtype,floor", [(np.float64, -700.0), (np.float32, -86.0)])
def test_mean_probs_flushes_probabilities_below_the_floor(dtype, floor):
    # documented: a sample's probability below exp(-700) / exp(-86) counts as 0 (the twin kept
    # 4.5e-309 for log-probability -710 in float64 and 2.7e-38 for -86.5 in float32)
    lp = np.array([[[0.0, floor - 0.5], [0.0, floor + 1.0]], [[0.0, floor - 10.0], [0.0, floor + 1.0]]], dtype=dtype)
    p = U.mean_probs(lp)
    assert p[0, 1] == 0 and p[0, 0] == 1
    np.testing.assert_allclose(p[1, 1], math.exp(floor + 1.0), rtol=1e-6)
    assert np.all(U.decompose(lp).total >= 0)


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-14), (np.float32, 3e-6)])
def test_mean_probs_is_decompose_mixture(rng, dtype, tol):
    lp = random_log_probs(rng, 11, 503, 7, dtype=dtype)
    lp[0, :3, 1] = -np.inf
    lp[0, :3] = special.log_softmax(lp[0, :3], axis=-1)
    p = U.mean_probs(lp)
    assert p.shape == (503, 7) and p.dtype == dtype
    ref = np.exp(special.logsumexp(lp.astype(np.float64), axis=0) - math.log(11))
    np.testing.assert_allclose(p, ref, atol=tol)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(p), 0).sum(-1)
    np.testing.assert_allclose(h, U.decompose(lp).total, atol=5 * tol)
    with pytest.raises(ValueError, match="normalised"):
        U.mean_probs(lp + 0.1)
    with pytest.raises(ValueError, match="3 dimension"):
        U.mean_probs(lp[0])


def test_decompose_regression():
    rng = np.random.default_rng(3)
    m = rng.normal(size=(50, 20, 2))
    v = rng.uniform(0.1, 2, size=(50, 20, 2))
    d = U.decompose_regression(m, v)
    np.testing.assert_allclose(d.aleatoric, v.mean(0))
    np.testing.assert_allclose(d.epistemic, ((m - m.mean(0)) ** 2).mean(0))
    np.testing.assert_allclose(d.total, d.aleatoric + d.epistemic)
    # the total variance is the variance of the mixture: check by moments
    mix_var = (v + m ** 2).mean(0) - m.mean(0) ** 2
    np.testing.assert_allclose(d.total, mix_var, rtol=1e-10)
    e = U.decompose_regression(m, v, kind="entropy")
    c = 0.5 * math.log(2 * math.pi * math.e)
    np.testing.assert_allclose(e.total, c + 0.5 * np.log(d.total))
    np.testing.assert_allclose(e.aleatoric, c + 0.5 * np.log(v).mean(0))
    assert np.all(e.epistemic >= 0)
    # agreeing samples: no epistemic part
    same = U.decompose_regression(np.repeat(m[:1], 5, 0), 0.3)
    np.testing.assert_allclose(same.epistemic, 0, atol=1e-15)
    with pytest.raises(ValueError, match="variances must be positive"):
        U.decompose_regression(m, -v)
    with pytest.raises(ValueError, match="kind"):
        U.decompose_regression(m, v, kind="std")
    with pytest.raises(ValueError, match="broadcast"):
        U.decompose_regression(m, v[:, :3])


# ---------------------------------------------------------------- classification metrics
def probs_labels(rng, N=400, C=4, dtype=np.float64):
    p = special.softmax(rng.normal(size=(N, C)) * 2, axis=1).astype(dtype)
    p /= p.sum(1, keepdims=True)
    y = np.array([rng.choice(C, p=row / row.sum()) for row in p.astype(np.float64)])
    return p, y


def slow_ece(p, y, n_bins):
    conf = p.max(1)
    pred = p.argmax(1)
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        m = [(lo < c <= hi) or (b == 0 and c == 0) for c in conf]
        m = np.array(m)
        if m.any():
            total += m.sum() / len(p) * abs((pred[m] == y[m]).mean() - conf[m].mean())
    return total


def test_ece_against_direct_implementation(rng):
    p, y = probs_labels(rng)
    for n_bins in (1, 10, 15):
        assert U.ece(p, y, n_bins) == pytest.approx(slow_ece(p, y, n_bins), abs=1e-12)


def test_ece_bins_are_right_closed():
    # confidence exactly 0.6 belongs to the bin (0.5, 0.6], with 10 bins bin index 5
    p = np.array([[0.6, 0.4], [0.55, 0.45]])
    d = U.reliability_diagram(p, np.array([0, 1]), n_bins=10)
    assert d["count"][5] == 2 and d["count"].sum() == 2
    np.testing.assert_allclose(d["confidence"][5], 0.575)
    np.testing.assert_allclose(d["accuracy"][5], 0.5)
    assert np.isnan(d["accuracy"][0])
    assert U.ece(p, np.array([0, 1]), 10) == pytest.approx(0.075)


def test_perfectly_calibrated_classifier_has_small_ece():
    rng = np.random.default_rng(7)
    N = 20000
    conf = rng.uniform(0.5, 1.0, N)
    p = np.stack([conf, 1 - conf], axis=1)
    y = (rng.uniform(size=N) > conf).astype(int)  # label 0 with probability conf
    # ECE of a calibrated predictor: per-bin deviations are ~ sqrt(p(1-p)/n_b); 15 bins
    assert U.ece(p, y, 15) < 0.02
    assert U.adaptive_ece(p, y, 15) < 0.02
    overconf = np.stack([np.full(N, 0.99), np.full(N, 0.01)], axis=1)
    assert U.ece(overconf, y, 15) > 0.2


def test_adaptive_and_classwise_ece(rng):
    p, y = probs_labels(rng, N=103)
    conf = p.max(1)
    correct = p.argmax(1) == y
    order = np.argsort(conf, kind="stable")
    groups = np.array_split(order, 10)
    ref = sum(len(g) * abs(correct[g].mean() - conf[g].mean()) for g in groups) / len(p)
    assert U.adaptive_ece(p, y, 10) == pytest.approx(ref, abs=1e-12)
    # classwise: direct loop
    total = 0.0
    for c in range(p.shape[1]):
        for b in range(10):
            lo, hi = b / 10, (b + 1) / 10
            m = np.array([(lo < v <= hi) or (b == 0 and v == 0) for v in p[:, c]])
            if m.any():
                total += abs((y[m] == c).sum() - p[m, c].sum()) / len(p)
    assert U.classwise_ece(p, y, 10) == pytest.approx(total / p.shape[1], abs=1e-12)


def test_accuracy_nll_brier(rng):
    p, y = probs_labels(rng, N=50, C=3)
    assert U.accuracy(p, y) == pytest.approx(np.mean(p.argmax(1) == y))
    assert U.nll(p, y) == pytest.approx(-np.mean(np.log(p[np.arange(50), y])))
    assert U.nll(p, y, reduction="sum") == pytest.approx(-np.sum(np.log(p[np.arange(50), y])))
    onehot = np.eye(3)[y]
    assert U.brier(p, y) == pytest.approx(np.mean(np.sum((p - onehot) ** 2, 1)))
    # range [0, 2]: perfect and maximally wrong predictions
    assert U.brier(np.eye(3)[y], y) == 0.0
    assert U.brier(np.eye(3)[(y + 1) % 3], y) == pytest.approx(2.0)
    assert U.nll(np.eye(3)[(y + 1) % 3], y) == np.inf


def test_aurc_hand_computed():
    # confidences 0.9 (correct), 0.8 (wrong), 0.7 (correct): risks 0, 1/2, 1/3
    p = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]])
    y = np.array([0, 1, 1])
    assert U.aurc(p, y) == pytest.approx((0 + 0.5 + 1 / 3) / 3)
    # a perfect ranking (errors least confident) beats the reverse
    assert U.aurc(p, y, confidence=[3, 1, 2]) < U.aurc(p, y, confidence=[1, 3, 2])


def test_temperature_scaling_recovers_temperature():
    rng = np.random.default_rng(11)
    N, C, T = 4000, 5, 2.5
    logits = rng.normal(size=(N, C)) * 3
    p_true = special.softmax(logits / T, axis=1)
    y = (rng.uniform(size=(N, 1)) > np.cumsum(p_true, 1)).sum(1)
    ts = U.fit_temperature(logits, y)
    # MLE of T from 4000 points: relative sd ~ a few percent
    assert ts.temperature == pytest.approx(T, rel=0.1)
    q = ts.transform(logits)
    assert U.nll(q, y) < U.nll(special.softmax(logits, axis=1), y)
    np.testing.assert_allclose(q.sum(1), 1)
    with pytest.raises(ValueError, match="bounds"):
        U.fit_temperature(logits, y, bounds=(2, 1))


def test_point_metric_bad_input(rng):
    p, y = probs_labels(rng, N=20, C=3)
    with pytest.raises(ValueError, match="sum to one"):
        U.ece(p * 1.01, y)
    with pytest.raises(ValueError, match="sum to one"):
        U.nll(p.astype(np.float32) * 1.001, y)
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        U.brier(np.array([[1.5, -0.5]]), [0])
    with pytest.raises(ValueError, match="finite"):
        U.accuracy(np.array([[np.nan, 1.0]]), [0])
    with pytest.raises(ValueError, match="class labels"):
        U.nll(p, y + 3)
    with pytest.raises(ValueError, match="shape"):
        U.ece(p, y[:-1])
    with pytest.raises(TypeError, match="integer"):
        U.brier(p, y + 0.5)
    with pytest.raises(ValueError, match="n_bins"):
        U.ece(p, y, n_bins=0)
    with pytest.raises(ValueError, match="reduction"):
        U.nll(p, y, reduction="max")
    # float32 probabilities within the dtype-aware tolerance are accepted
    assert np.isfinite(U.nll(p.astype(np.float32), y))


@pytest.mark.parametrize("metric", ["accuracy", "nll", "brier", "ece", "adaptive_ece", "classwise_ece",
                                    "reliability_diagram", "aurc", "calibrate_classification"])
@pytest.mark.parametrize("n", [1, 2])
def test_point_metrics_refuse_missing_labels_by_name(metric, n):
    # y=None reached NumPy as the "no labels" marker: IndexError, AxisError or an unpacking error
    f = getattr(bg.conformal if metric == "calibrate_classification" else U, metric)
    probs = np.array([[0.5, 0.5], [0.2, 0.8]])[:n]
    with pytest.raises(TypeError, match="^y must be integer class labels"):
        f(probs, None)


# ---------------------------------------------------------------- regression metrics
def test_gaussian_and_mixture_nll(rng):
    y = rng.normal(size=30)
    m, v = rng.normal(size=30), rng.uniform(0.2, 2, 30)
    assert U.gaussian_nll(y, m, v) == pytest.approx(-stats.norm.logpdf(y, m, np.sqrt(v)).mean())
    ms, vs = rng.normal(size=(4, 30)), rng.uniform(0.2, 2, (4, 30))
    ref = -np.log(stats.norm.pdf(y, ms, np.sqrt(vs)).mean(0)).mean()
    assert U.mixture_nll(y, ms, vs) == pytest.approx(ref)
    # one component = plain Gaussian NLL
    assert U.mixture_nll(y, m[None], v[None]) == pytest.approx(U.gaussian_nll(y, m, v))
    with pytest.raises(ValueError, match="var must be positive"):
        U.gaussian_nll(y, m, -v)
    with pytest.raises(ValueError, match="means must have shape"):
        U.mixture_nll(y, ms[:, :5], vs[:, :5])


def test_crps_gaussian_against_integral():
    y, m, s = 0.7, -0.2, 1.3
    cdf = lambda t: stats.norm.cdf(t, m, s)  # noqa: E731
    ref = integrate.quad(lambda t: cdf(t) ** 2, -np.inf, y)[0] + \
        integrate.quad(lambda t: (1 - cdf(t)) ** 2, y, np.inf)[0]
    assert U.crps_gaussian([y], [m], [s]) == pytest.approx(ref, rel=1e-7)
    with pytest.raises(ValueError, match="std must be positive"):
        U.crps_gaussian([y], [m], [0.0])


def test_calibration_curve_and_area():
    rng = np.random.default_rng(5)
    N = 20000
    m = rng.normal(size=N)
    s = rng.uniform(0.5, 2, N)
    y = m + s * rng.normal(size=N)
    e, o = U.calibration_curve(y, m, s, n_levels=11)
    np.testing.assert_allclose(e, np.linspace(0, 1, 11))
    # binomial sd at N = 20000 is <= 0.0036; 0.015 is > 4 sd
    np.testing.assert_allclose(o, e, atol=0.015)
    assert U.miscalibration_area(y, m, s) < 0.01
    # intervals twice too narrow: observed coverage of the 'p' interval is P(|Z| <= q/2)
    area = U.miscalibration_area(y, m, s / 2, n_levels=201)
    p = np.linspace(0, 1, 201)
    exact = np.trapezoid(np.abs(2 * stats.norm.cdf(stats.norm.ppf(0.5 + p / 2) / 2) - 1 - p), p)
    assert area == pytest.approx(exact, abs=0.01)


# ---------------------------------------------------------------- OOD
def test_ood_metrics_against_sklearn(rng):
    metrics = pytest.importorskip("sklearn.metrics")
    s = np.round(rng.normal(size=300), 1)  # ties on purpose
    ood = rng.uniform(size=300) < 0.3
    s[ood] += 1.0
    assert U.auroc(s, ood) == pytest.approx(metrics.roc_auc_score(ood, s), abs=1e-12)
    assert U.aupr(s, ood) == pytest.approx(metrics.average_precision_score(ood, s), abs=1e-12)
    fpr, tpr, _ = metrics.roc_curve(ood, s, drop_intermediate=False)
    assert U.fpr_at_tpr(s, ood) == pytest.approx(fpr[np.argmax(tpr >= 0.95)], abs=1e-12)


def test_ood_hand_computed():
    s = np.array([0.1, 0.4, 0.35, 0.8])
    ood = np.array([False, False, True, True])
    # pairs (ood > in): 0.35>0.1, 0.8>0.1, 0.8>0.4 -> 3 of 4
    assert U.auroc(s, ood) == pytest.approx(0.75)
    # ranked 0.8(T) 0.4(F) 0.35(T) 0.1(F): AP = (1/2)(1) + (1/2)(2/3)
    assert U.aupr(s, ood) == pytest.approx(0.5 + 1 / 3)
    # TPR reaches 1 >= 0.95 at threshold 0.35, where 1 of 2 in-distribution points is above
    assert U.fpr_at_tpr(s, ood) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="both classes"):
        U.auroc(s, np.zeros(4, bool))
    with pytest.raises(ValueError, match="booleans"):
        U.auroc(s, np.array([0, 1, 2, 1]))
    with pytest.raises(ValueError, match="shape"):
        U.aupr(s, ood[:3])
    with pytest.raises(ValueError, match="tpr"):
        U.fpr_at_tpr(s, ood, tpr=1.5)
