"""The kernels of bayesgrad.distributions tested on their own: the special functions (native against
SciPy and against the twin; the Gamma family's SIMD paths against the scalar reference) and the Poisson
sampler. Moved from tests/test_distributions.py (which passed 900 lines), whose conventions apply: KS and
chi-square tests reject at p < 1e-4, mean-zero and MC checks at |z| > 5 (about 6e-7 per component)."""
import math

import numpy as np
import pytest
from scipy import special as sp
from scipy import stats

import bayesgrad as bg
from bayesgrad import _backend
from bayesgrad import _numpy as twin

from bayesgrad._numpy import random as twin_random

from helpers import BACKENDS, on_simd_path, simd_and_scalar

D = bg.distributions
DTYPES = [np.float32, np.float64]
P_REJECT = 1e-4  # KS / chi-square threshold
Z_REJECT = 5.0  # mean-zero / MC threshold in standard errors

@pytest.mark.single_backend
def test_special_functions_native_vs_scipy():
    if not _backend.native_available():
        pytest.skip("native core not built")
    core = _backend._core
    x = np.geomspace(1e-3, 1e3, 501)

    def run(name, *args):
        out = np.empty(np.broadcast(*args).shape)
        getattr(core.distributions, name)(*[np.ascontiguousarray(np.broadcast_to(a, out.shape)) for a in args], out)
        return out

    # absolute error near the roots of lgamma (1, 2) and digamma (1.46) ~ 1e-15
    np.testing.assert_allclose(run("lgamma", x), sp.gammaln(x), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(run("digamma", x), sp.digamma(x), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(run("trigamma", x), sp.polygamma(1, x), rtol=1e-13)
    A, X = np.meshgrid(np.geomspace(1e-3, 1e3, 40), np.geomspace(1e-4, 3e3, 40))
    np.testing.assert_allclose(run("gammainc", A, X), sp.gammainc(A, X), rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(run("gammaincc", A, X), sp.gammaincc(A, X), rtol=1e-10, atol=1e-300)
    a, b, u = np.meshgrid(np.geomspace(1e-2, 1e3, 12), np.geomspace(1e-2, 1e3, 12), np.linspace(0.001, 0.999, 9))
    ref = sp.betainc(a, b, u)
    ok = ref > 1e-250  # SciPy itself loses digits close to the underflow limit (checked with mpmath)
    np.testing.assert_allclose(run("betainc", a, b, u)[ok], ref[ok], rtol=1e-10)


@pytest.mark.single_backend
def test_gamma_functions_at_huge_shapes():
    """From a = 1e8 the series and continued fraction (O(sqrt(a)) terms) give way to Temme's expansion
    for P and Q (P(1e10, 1e10) was 0.341) and Wilson-Hilferty for dX/da (3% off at 1e10): P and Q against
    SciPy within |z| <= 3 and beyond it against the normal-quantile form of Wilson-Hilferty; dX/da
    continuous across the switch and equal on both backends (the twin's Wilson-Hilferty from a = 1e6
    against the native series there); the pathwise Gamma gradient of E[x] is 1."""
    mods = [twin.distributions] + ([_backend._core.distributions] if _backend.native_available() else [])
    a = np.repeat([1e8, 3e9, 1e10, 1e12], 5)
    z = np.tile([-3.0, -0.5, 0.0, 0.5, 3.0], 4)
    x = a + z * np.sqrt(a)
    for mod in mods[1:]:
        for name in ("gammainc", "gammaincc"):
            out = np.empty_like(a)
            getattr(mod, name)(a, x, out)
            np.testing.assert_allclose(out, getattr(sp, name)(a, x), rtol=1e-12, err_msg=name)
        # the far lower tail, where SciPy's P (1 - Q) has no digits left: Wilson-Hilferty's normal
        # quantile is accurate to O(a^-1/2 z^3) relative there
        lo = np.array([1e8, 1e10]) - 8 * np.sqrt([1e8, 1e10])
        out = np.empty(2)
        mod.gammainc(np.array([1e8, 1e10]), lo, out)
        w = np.cbrt(lo / np.array([1e8, 1e10]))
        zwh = (w - 1 + 1 / (9 * np.array([1e8, 1e10]))) * 3 * np.sqrt([1e8, 1e10])
        np.testing.assert_allclose(out, stats.norm.cdf(zwh), rtol=1e-5)
    zz = np.array([-3.0, 0.5, 2.0])
    for mod in mods:  # (the twin switches at 1e6, where SciPy's differences start to lose more)
        below, above = np.empty(3), np.empty(3)
        mod.gamma_dx_da(np.full(3, 1e8 * (1 - 1e-12)), 1e8 + zz * 1e4, below)
        mod.gamma_dx_da(np.full(3, 1e8), 1e8 + zz * 1e4, above)
        np.testing.assert_allclose(above, below, rtol=1e-11)
    if len(mods) == 2:
        for a0 in (1e6, 1e7, 1e8 * (1 - 1e-12)):
            got = [np.empty(3), np.empty(3)]
            for mod, out in zip(mods, got):
                mod.gamma_dx_da(np.full(3, a0), a0 + zz * np.sqrt(a0), out)
            np.testing.assert_allclose(got[0], got[1], rtol=5e-10)
    for b in ["numpy"] + (["cpu"] if _backend.native_available() else []):
        with bg.use_backend(b):
            est = bg.estimators.pathwise(lambda v: v.sum(1), D.Gamma(np.array([1e10, 1e9]), 1.0), 1000, seed=1,
                                         grad_f=np.ones_like)
            g, se = est.grad["concentration"], est.stderr["concentration"]
            assert np.all(np.abs(g - 1.0) <= 4.5 * se + 1e-12), (b, g, se)


@pytest.mark.single_backend
def test_implicit_derivatives_native_vs_twin():
    if not _backend.native_available():
        pytest.skip("native core not built")
    core = _backend._core
    a = np.repeat(np.geomspace(1e-3, 1e3, 19), 7)
    q = np.tile([1e-5, 0.01, 0.2, 0.5, 0.8, 0.99, 1 - 1e-5], 19)
    x = sp.gammaincinv(a, q)
    keep = x > 1e-280
    a, x = a[keep], x[keep]
    o1, o2 = np.empty_like(x), np.empty_like(x)
    core.distributions.gamma_dx_da(a, x, o1)
    twin.distributions.gamma_dx_da(a, x, o2)
    np.testing.assert_allclose(o1, o2, rtol=1e-6)
    aa, bb = [v.ravel() for v in np.meshgrid(np.geomspace(0.01, 1e3, 7), np.geomspace(0.01, 1e3, 7))]
    aa, bb = np.repeat(aa, 5), np.repeat(bb, 5)
    xb = sp.betaincinv(aa, bb, np.tile([1e-3, 0.2, 0.5, 0.8, 0.999], 49))
    keep = (xb > 1e-200) & (xb < 1 - 1e-12)
    aa, bb, xb = aa[keep], bb[keep], xb[keep]
    r = [np.empty_like(xb) for _ in range(4)]
    core.distributions.beta_dx_dab(aa, bb, xb, r[0], r[1])
    twin.distributions.beta_dx_dab(aa, bb, xb, r[2], r[3])
    np.testing.assert_allclose(r[0], r[2], rtol=1e-6)
    np.testing.assert_allclose(r[1], r[3], rtol=1e-6)
    df = np.repeat(np.geomspace(0.1, 1e3, 9), 6)
    t = stats.t.ppf(np.tile([1e-4, 0.1, 0.4, 0.6, 0.9, 1 - 1e-4], 9), df)
    o1, o2 = np.empty_like(t), np.empty_like(t)
    core.distributions.studentt_dt_ddf(df, t, o1)
    twin.distributions.studentt_dt_ddf(df, t, o2)
    np.testing.assert_allclose(o1, o2, rtol=1e-6, atol=1e-12)


@pytest.mark.single_backend
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gamma_family_simd_path_matches_scalar_reference(dtype):
    # The vector paths (lanes of any element and iteration, squeeze and log
    # tests, retries) must give the scalar loop's draws: same words, libm vs
    # vector log / exp / sine only.
    # Shapes span the boost branch (< 1), 1, and large shapes; the lengths are
    # not multiples of 8, so the scalar tail is exercised as well.
    if not _backend.native_available():
        pytest.skip("native core not built")
    conc = np.array([0.03, 0.4, 0.999, 1.0, 1.7, 2.5, 9.0, 250.0], dtype)

    def draws():
        with bg.use_backend("cpu"):
            return [D.Gamma(conc, np.asarray(2.0, dtype)).sample(1001, seed=11, stream=3),
                    D.Beta(conc, conc[::-1].copy()).sample(1001, seed=12),
                    D.Dirichlet(conc[None, :5].copy()).sample(999, seed=13),
                    # scalar shapes: the kernels' hoisted-constant path, with and without a rate
                    D.Gamma(np.asarray(2.5, dtype)).sample(5003, seed=14),
                    D.Gamma(np.asarray(0.3, dtype), np.asarray(1.5, dtype)).sample(5003, seed=15),
                    D.Gamma(np.asarray(0.02, dtype)).sample(5003, seed=16)]

    fast, slow = simd_and_scalar(draws)
    rtol = 2e-6 if dtype == np.float32 else 1e-13
    for f, s in zip(fast, slow):
        assert f.dtype == s.dtype == dtype
        np.testing.assert_allclose(f, s, rtol=rtol, atol=0)


@pytest.mark.single_backend
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gamma_family_batches_across_chunks_match_twin(dtype):
    # Parameters of a prime batch (37) cycling along draws that span several of the kernels' 4096-element
    # chunks, so that chunks start in the middle of the batch: the native runs of consecutive parameters
    # (shapes, per-shape constants, the division by the rate) against the twin's broadcasting, element
    # for element (the same words; vector against NumPy's log / exp / sine only).
    if len(BACKENDS) < 2:
        pytest.skip("only one backend available")
    conc = np.geomspace(0.02, 300.0, 37).astype(dtype)
    rate = np.linspace(0.25, 8.0, 37).astype(dtype)[::-1].copy()

    def draws():
        return [D.Gamma(conc, rate).sample(333, seed=21, stream=2),
                D.Beta(conc, rate).sample(333, seed=22),
                D.Dirichlet(conc[:36].reshape(4, 9).copy()).sample(333, seed=23)]

    with bg.use_backend("cpu"):
        native = draws()
    with bg.use_backend("numpy"):
        ref = draws()
    rtol = 2e-6 if dtype == np.float32 else 1e-12
    for a, b in zip(native, ref):
        assert a.dtype == b.dtype == dtype and a.size > 2 * 4096
        np.testing.assert_allclose(a, b, rtol=rtol, atol=0)


@pytest.mark.single_backend
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("family", ["normal", "uniform", "exponential", "laplace", "gumbel", "lognormal"])
def test_locscale_log_prob_kernels_agree_with_and_without_gradients(dtype, family):
    # A batch of 37 parameters over 5000 rows (several 4096-element chunks, starting mid-batch), points
    # inside and outside the supports, on 0 exactly, at z = 0 exactly and far in the tails (Gumbel's
    # exp(-z) past the vector exp's range, redone by the scalar rules): the native kernel's per-run
    # loops against the twin (to rounding) and against its own scalar path (below); without
    # d_loc / d_scale (log p only) log p is unchanged.
    from bayesgrad._codes import LocScaleFamily
    from helpers import native_simd_paths, on_simd_path

    r = np.random.default_rng(5)
    loc = np.linspace(-1.0, 1.0, 37).astype(dtype)
    scale = np.linspace(0.3, 3.0, 37).astype(dtype)
    x = (2.0 * r.standard_normal((5000, 37))).astype(dtype)
    x[0, :4] = [0.0, -0.0, np.inf, -np.inf]
    x[1] = loc
    x[2, :6] = [-1e3, -300.0, -150.0, np.finfo(dtype).smallest_subnormal, 1e30, 5e2]
    code = LocScaleFamily[family]
    mods = [twin.distributions] + ([_backend._core.distributions] if _backend.native_available() else [])
    res = []
    for mod in mods:
        outs = [np.empty_like(x) for _ in range(3)]
        with np.errstate(all="ignore"):
            mod.locscale_log_prob(x, loc, scale, code, *outs)
            lp_only = np.empty_like(x)
            mod.locscale_log_prob(x, loc, scale, code, lp_only, None, None)
        np.testing.assert_array_equal(lp_only, outs[0])
        with pytest.raises(ValueError, match="both"):
            mod.locscale_log_prob(x, loc, scale, code, lp_only, outs[1], None)
        res.append(outs)
    if len(res) == 2:
        tol = 1e-6 if dtype == np.float32 else 1e-12
        for a, b in zip(res[0], res[1]):
            fin = np.isfinite(a) & np.isfinite(b)
            np.testing.assert_array_equal(np.isfinite(a), np.isfinite(b))
            np.testing.assert_allclose(b[fin], a[fin], rtol=tol, atol=tol)
        core = _backend._core.distributions

        def native():
            outs = [np.empty_like(x) for _ in range(3)]
            with np.errstate(all="ignore"):
                core.locscale_log_prob(x, loc, scale, code, *outs)
            return outs

        # the four families without a transcendental per element: every path the scalar path's bits;
        # LogNormal's log and Gumbel's exp come from the vector math on the vector paths (their values
        # the same on AVX-512 and AVX2) and from libm on the scalar one: equal to rounding
        ref = on_simd_path("scalar", native)
        exact = family not in ("lognormal", "gumbel")
        by_path = {path: on_simd_path(path, native) for path in native_simd_paths()}
        for path, got in by_path.items():
            for a, b in zip(got, ref):
                if exact:
                    np.testing.assert_array_equal(a, b, err_msg=path)
                else:
                    np.testing.assert_array_equal(np.isfinite(a), np.isfinite(b))
                    fin = np.isfinite(b)
                    np.testing.assert_allclose(a[fin], b[fin], rtol=tol, atol=tol, err_msg=path)
        if len(by_path) == 2:
            for a, b in zip(*by_path.values()):
                np.testing.assert_array_equal(a, b)


@pytest.mark.single_backend
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gamma_log_prob_kernels_agree_across_chunks_paths_and_edges(dtype):
    # 41 shapes from 0.05 to 2e4 (the last past the Stirling switch at 1e4) over 3000 rows: several
    # 4096-element chunks starting mid-batch; x = 0, a subnormal, inf and draws far in both tails. The
    # native kernel (a vector log per chunk, the common case per run of parameters, the rest by the
    # full rules) against the twin, and its vector paths against its scalar path (libm's log).
    if len(BACKENDS) < 2:
        pytest.skip("only one backend available")
    a = np.geomspace(0.05, 2e4, 41).astype(dtype)
    r = np.geomspace(0.01, 100.0, 41).astype(dtype)
    x = D.Gamma(a, r).sample(3000, seed=6)
    tiny = np.finfo(dtype).smallest_subnormal if dtype == np.float64 else np.finfo(dtype).tiny
    x[0, :4] = [0.0, tiny, np.inf, 1e30]
    x[1, :] = np.where(a < 1, 1e-30, 1e3).astype(dtype)
    core, mods = _backend._core.distributions, [twin.distributions, _backend._core.distributions]

    def run(mod):
        outs = [np.empty_like(x) for _ in range(3)]
        with np.errstate(all="ignore"):
            mod.gamma_log_prob(x, a, r, *outs)
        return outs

    # rounding of the terms, not of their (cancelling) sum: a ln r + (a - 1) ln x - r x - lgamma(a)
    xd, ad, rd = x.astype(np.float64), a.astype(np.float64), r.astype(np.float64)
    with np.errstate(all="ignore"):
        size = ad * (np.abs(np.log(rd)) + np.abs(np.log(xd)) + np.abs(sp.gammaln(ad)) / ad + 1) + np.abs(rd * xd)
    tol = 2e-6 if dtype == np.float32 else 1e-13
    for want, got in [(run(mods[0]), run(mods[1])), (on_simd_path("scalar", lambda: run(core)), run(core))]:
        for w, g in zip(want, got):
            np.testing.assert_array_equal(np.isnan(w), np.isnan(g))
            np.testing.assert_array_equal(np.isinf(w), np.isinf(g))
            fin = np.isfinite(w)
            assert np.all(np.abs(g[fin] - w[fin]) <= tol * size[fin])


@pytest.mark.single_backend
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_studentt_log_prob_kernels_agree_across_chunks_paths_and_edges(dtype):
    # 37 coordinates (df 1e-3 .. 1e12, loc and scale varied) over 700 rows: several 4096-element chunks
    # starting mid-batch; z = 0, w = z^2 / df on both sides of 1e-2 and 1, |z| past 1e150 (float64), a tiny
    # df whose w overflows, x = +-inf. The native kernel (a vector log per chunk, the common case per run of
    # parameters, the rest by the scalar rules) against the twin, with and without the gradients, and its
    # vector paths against its scalar path (libm's log).
    if len(BACKENDS) < 2:
        pytest.skip("only one backend available")
    df = np.geomspace(1e-3, 1e12, 37).astype(dtype)
    loc = np.linspace(-3, 3, 37).astype(dtype)
    scale = np.geomspace(0.1, 10, 37).astype(dtype)
    with np.errstate(over="ignore"):  # (float32 draws at df = 1e-3 pass its range: inf)
        x = D.StudentT(df, loc, scale).sample(700, seed=8)
    df[5] = 1e-300 if dtype == np.float64 else 1e-30  # float64: w = z^2 / df overflows from |z| ~ 1e-146
    x[0] = loc  # z = 0
    x[1] = loc + scale * np.sqrt(df.astype(np.float64) * 5e-3).astype(dtype)  # w = 5e-3: the series
    x[2] = loc + scale * np.sqrt(df.astype(np.float64) * 0.5).astype(dtype)  # 1e-2 <= w < 1
    x[3, :3] = [np.inf, -np.inf, 1e200 if dtype == np.float64 else 3e38]
    x[4, 5] = 1e5
    x[5, 5] = 1e30 if dtype == np.float32 else 1e150
    core = _backend._core.distributions
    f64 = np.float64
    dfd = df.astype(f64)
    from bayesgrad.distributions.locscale import _psi_half_step_minus
    from bayesgrad.distributions._base import lgamma_half_diff

    c = lgamma_half_diff(0.5 * dfd) - 0.5 * np.log(dfd * np.pi) - np.log(scale.astype(f64))
    psi = _psi_half_step_minus(dfd)
    with np.errstate(over="ignore"):
        assert dtype == np.float32 or np.isinf(((x[4, 5] - loc[5]) / scale[5]) ** 2 / dfd[5])

    def run(mod, grads=True):
        lp, g = np.empty_like(x), (np.empty((3,) + x.shape, dtype) if grads else None)
        with np.errstate(all="ignore"):
            mod.studentt_log_prob(x, df, loc, scale, c, psi if grads else None, lp, g)
        return [lp] + (list(g) if grads else [])

    tol = 3e-6 if dtype == np.float32 else 2e-13
    twin_out, core_out = run(twin.distributions), run(core)
    pairs = list(zip(twin_out, core_out)) + [(run(core, False)[0], core_out[0])]
    pairs += list(zip(on_simd_path("scalar", lambda: run(core)), core_out))
    for w, g in pairs:
        np.testing.assert_array_equal(np.isinf(w), np.isinf(g))
        assert not np.isnan(g).any()
        fin = np.isfinite(w)
        np.testing.assert_allclose(g[fin], w[fin], rtol=tol, atol=tol)
    assert np.all(core_out[0][3, :2] == -np.inf) and np.all(np.stack(core_out[1:])[:, 3, :2] == 0)
    with pytest.raises(ValueError, match="psi and grads"):
        core.studentt_log_prob(x, df, loc, scale, c, None, np.empty_like(x), np.empty((3,) + x.shape, dtype))
    with pytest.raises(ValueError, match="psi and grads"):
        twin.distributions.studentt_log_prob(x, df, loc, scale, c, None, np.empty_like(x),
                                             np.empty((3,) + x.shape, dtype))
    for mod in (core, twin.distributions):
        with pytest.raises(ValueError, match="grads must have 3 times the size of x"):
            mod.studentt_log_prob(x, df, loc, scale, c, psi, np.empty_like(x), np.empty((2,) + x.shape, dtype))
        with pytest.raises(ValueError, match="grads must have 2 times the size of x"):
            mod.relaxed_bernoulli_log_prob(x, df, loc, None, np.empty((3,) + x.shape, dtype))


@pytest.mark.single_backend
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relaxed_bernoulli_log_prob_kernels_agree_across_chunks_paths_and_edges(dtype):
    # 29 coordinates (temperature 0.05 .. 10, logits -30 .. 30) over 500 rows: several 4096-element chunks
    # starting mid-batch; x near 0 (1e-10, subnormal) and 1, exactly 0 and 1, outside [0, 1]. The native
    # kernel against the twin (log p alone, gradients alone, both), and its vector paths against its scalar path.
    if len(BACKENDS) < 2:
        pytest.skip("only one backend available")
    t = np.geomspace(0.05, 10, 29).astype(dtype)
    lg = np.linspace(-30, 30, 29).astype(dtype)
    x = D.RelaxedBernoulli(t, logits=lg).sample(500, seed=9)
    tiny = np.finfo(dtype).smallest_subnormal
    x[0, :8] = [0.0, 1.0, -0.5, 1.5, tiny, 1e-10, np.nextafter(dtype(1), dtype(0)), 0.5]
    core = _backend._core.distributions

    def run(mod, lp=True, grads=True):
        out_lp = np.empty_like(x) if lp else None
        out_g = np.empty((2,) + x.shape, dtype) if grads else None
        with np.errstate(all="ignore"):
            mod.relaxed_bernoulli_log_prob(x, t, lg, out_lp, out_g)
        return ([out_lp] if lp else []) + (list(out_g) if grads else [])

    tol = 3e-6 if dtype == np.float32 else 1e-12
    both = run(core)
    pairs = list(zip(run(twin.distributions), both)) + list(zip(run(core, grads=False) + run(core, lp=False), both))
    pairs += list(zip(on_simd_path("scalar", lambda: run(core)), both))
    for w, g in pairs:
        np.testing.assert_array_equal(np.isnan(w), np.isnan(g))
        np.testing.assert_array_equal(np.isinf(w), np.isinf(g))
        fin = np.isfinite(w)
        # the terms of log p reach ~(t + 1) |ln x| ~ 1e3 at the edges: a relative and an absolute part
        np.testing.assert_allclose(g[fin], w[fin], rtol=tol, atol=tol * 10)
    lp, gt, gl = both
    assert np.all(lp[0, :4] == -np.inf) and np.all(gt[0, :2] == -np.inf) and np.all(gl[0, :2] == [-1.0, 1.0])
    assert np.all(gt[0, 2:4] == 0) and np.all(gl[0, 2:4] == 0) and np.isfinite(lp[0, 4:]).all()
    for mod in (core, twin.distributions):
        with pytest.raises(ValueError, match="logp, grads or both"):
            mod.relaxed_bernoulli_log_prob(x, t, lg, None, None)


@pytest.mark.single_backend
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bernoulli_log_prob_kernels_agree_and_are_exact_at_zero_and_one(dtype):
    # 23 coordinates over 3000 rows (several chunks, starting mid-batch), logits -40 .. 40 and p = 0 / 1
    # (a log -inf); x in {0, 1} and fractional: exactly ln p at 1 and ln(1 - p) at 0, no NaN from 0 * -inf,
    # native (every path) against the twin
    if len(BACKENDS) < 2:
        pytest.skip("only one backend available")
    lg = np.linspace(-40, 40, 23)
    lp1, lp0 = (-np.logaddexp(0, -lg)).astype(dtype), (-np.logaddexp(0, lg)).astype(dtype)
    lp1[3], lp0[3] = -np.inf, 0.0  # p = 0
    lp1[7], lp0[7] = 0.0, -np.inf  # p = 1
    rng = np.random.default_rng(5)
    x = rng.integers(0, 2, (3000, 23)).astype(dtype)
    x[::7] = rng.uniform(0, 1, (x[::7].shape)).astype(dtype)
    core = _backend._core.distributions

    def run(mod):
        out = np.full_like(x, np.nan)
        mod.bernoulli_log_prob(x, lp1, lp0, out)
        return out

    got = run(core)
    for other in (run(twin.distributions), on_simd_path("scalar", lambda: run(core))):
        np.testing.assert_allclose(got, other, rtol=4 * np.finfo(dtype).eps, atol=0)
    ones, zeros = x == 1, x == 0
    np.testing.assert_array_equal(got[ones], np.broadcast_to(lp1, x.shape)[ones])
    np.testing.assert_array_equal(got[zeros], np.broadcast_to(lp0, x.shape)[zeros])
    assert not np.isnan(got).any() and np.isneginf(got[:, 3][x[:, 3] > 0]).all()
    for mod in (core, twin.distributions):
        with pytest.raises(ValueError, match="lp1 and lp0"):
            mod.bernoulli_log_prob(x, lp1, lp0[:5], np.empty_like(x))


@pytest.mark.single_backend
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relaxed_categorical_log_prob_kernels_agree_with_scipy_on_every_path(dtype):
    # 7 coordinates of 6 classes (temperature 0.05 .. 5, logits -20 .. 20, one logit -inf) over 400 rows: chunks
    # of whole rows starting mid-batch; rows with a value 0, negative, inf or subnormal, one near a vertex. The
    # native kernel (every vector path and the scalar one) and the twin against the definition through SciPy's
    # logsumexp per row, and their gradients against SciPy's softmax.
    if len(BACKENDS) < 2:
        pytest.skip("only one backend available")
    from scipy.special import logsumexp, softmax

    k = 6
    t = np.geomspace(0.05, 5, 7).astype(dtype)
    lg = np.linspace(-20, 20, 7 * k).reshape(7, k).astype(dtype)
    lg[4, 2] = -np.inf
    x = D.RelaxedCategorical(t, logits=np.where(np.isinf(lg), -30, lg)).sample(400, seed=4)
    tiny = np.finfo(dtype).smallest_subnormal
    x[0, 1, 3], x[1, 2, 0], x[2, 3, 5], x[3, 5, 1] = 0.0, -0.25, np.inf, tiny
    x[5, 6] = [1 - 5 * np.finfo(dtype).eps] + [np.finfo(dtype).eps] * (k - 1)
    if dtype == np.float64:  # y spread by t |ln x| ~ 3450 beyond exp's range, its maximum not first: the shift
        x[6, 6] = [0.5, 1e-300, 0.1, 0.1, 0.2, 0.1]
    f64 = np.float64
    c = math.lgamma(k) + (k - 1) * np.log(t.astype(f64)) + lg.astype(f64).sum(-1)
    core = _backend._core.distributions

    def run(mod, grads=False):
        out = np.full(x.shape[:-1], np.nan, dtype)
        if not grads:
            mod.relaxed_categorical_log_prob(x, t, lg, c, out)
            return out
        g_t, g_l = np.full(x.shape[:-1], 7.0, dtype), np.full(x.shape, 7.0, dtype)
        mod.relaxed_categorical_log_prob(x, t, lg, c, out, g_t, g_l)
        return out, g_t, g_l

    xd, td, lgd = x.astype(f64), t.astype(f64)[:, None], lg.astype(f64)
    inside = ((xd > 0) & (xd < np.inf)).all(-1)
    with np.errstate(all="ignore"):
        lx = np.log(np.where(inside[..., None], xd, 1.0))
        want = (math.lgamma(k) + (k - 1) * np.log(td[:, 0]) + (lgd - (td + 1) * lx).sum(-1)
                - k * logsumexp(lgd - td * lx, axis=-1))
    want[~inside] = -np.inf
    assert np.isneginf(want[:, 4]).all() and np.isfinite(want[3, 5]) and (~inside).sum() == 3
    scale = np.abs(lgd).sum(-1) + ((td + 1) * np.abs(lx)).sum(-1)  # the terms that cancel in log p
    # the gradients: (K - 1) / t - sum ln x + K sum s ln x and 1 - K s with s SciPy's softmax of y; NaN where the
    # density vanishes
    with np.errstate(all="ignore"):
        sm = softmax(lgd - td * lx, axis=-1)
        want_t = (k - 1) / td[:, 0] - lx.sum(-1) + k * (sm * lx).sum(-1)
        want_l = 1.0 - k * sm
    want_t[~inside], want_l[~inside] = np.nan, np.nan
    tol = 1e-6 if dtype == np.float32 else 1e-14
    runs = [run(core, True), run(twin.distributions, True), on_simd_path("scalar", lambda: run(core, True))]
    for got in [run(core), run(twin.distributions), on_simd_path("scalar", lambda: run(core))] + [r[0] for r in runs]:
        np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
        fin = np.isfinite(want)
        assert np.isfinite(got[fin]).all()
        err = np.abs(got[fin] - want[fin]) / np.maximum(np.abs(want[fin]), scale[fin])
        assert err.max() < tol, err.max()
    t_scale = (k - 1) / td[:, 0] + ((1 + k) * np.abs(lx)).sum(-1)
    for _, g_t, g_l in runs:
        np.testing.assert_array_equal(np.isnan(g_t), ~inside)
        np.testing.assert_array_equal(np.isnan(g_l), np.broadcast_to(~inside[..., None], x.shape))
        assert np.abs(g_t[inside] - want_t[inside]).max() / t_scale[inside].max() < tol
        np.testing.assert_allclose(g_l[inside], want_l[inside], rtol=0, atol=k * tol)
    assert (runs[0][2][:, 4, 2] == 1.0).all()  # a -inf logit: s = 0 there


def _density_kernel_modules():
    mods = [twin.distributions]
    if _backend.native_available():
        mods.append(_backend._core.distributions)
    return mods


@pytest.mark.single_backend
@pytest.mark.parametrize("mod", _density_kernel_modules(), ids=lambda m: m.__name__)
def test_density_kernels_refuse_mismatched_sizes_naming_the_arrays(mod):
    x, p3, p2, c = np.full((4, 3), 0.5), np.ones(3), np.ones(2), np.zeros(3)
    lp, lp_short, g3 = np.empty((4, 3)), np.empty((4, 2)), np.empty((3, 4, 3))
    cases = [
        (lambda: mod.studentt_log_prob(x, p3, p2, p3, c, c, lp, g3), "df and loc"),
        (lambda: mod.studentt_log_prob(x, p3, p3, p3, c[:2], None, lp), "df and c"),
        (lambda: mod.studentt_log_prob(x, p3, p3, p3, c, c[:2], lp, g3), "df and psi"),
        (lambda: mod.studentt_log_prob(np.full((4, 2), 0.5), p3, p3, p3, c, None, np.empty((4, 2))),
         "multiple of df"),
        (lambda: mod.studentt_log_prob(x, p3, p3, p3, c, None, lp_short), "x and "),
        (lambda: mod.relaxed_bernoulli_log_prob(x, p3, p2, lp), "temperature and logits"),
        (lambda: mod.relaxed_bernoulli_log_prob(np.full((4, 2), 0.5), p3, p3, np.empty((4, 2))),
         "multiple of temperature"),
        (lambda: mod.relaxed_bernoulli_log_prob(x, p3, p3, lp_short), "x and "),
        # (x as 4 rows of one coordinate of 3 classes: logp of 4 values)
        (lambda: mod.relaxed_categorical_log_prob(x, p2, p3, c[:2], np.empty(4)), "logits must have K times"),
        (lambda: mod.relaxed_categorical_log_prob(x, p3[:1], p3, c, np.empty(4)), "temperature and c"),
        (lambda: mod.relaxed_categorical_log_prob(np.full((4, 2), 0.5), p3[:1], p3, c[:1], np.empty(4)),
         "multiple of logits"),
        (lambda: mod.relaxed_categorical_log_prob(x, p3[:1], p3, c[:1], np.empty(3)), "logp must have the size of x"),
        (lambda: mod.relaxed_categorical_log_prob(x, p3[:1], p3, c[:1], np.empty(4), np.empty(3), np.empty(12)),
         "logp and d_t"),
        (lambda: mod.relaxed_categorical_log_prob(x, p3[:1], p3, c[:1], np.empty(4), np.empty(4), np.empty(11)),
         "x and d_logits"),
        (lambda: mod.relaxed_categorical_log_prob(x, p3[:1], p3, c[:1], np.empty(4), np.empty(4)),
         "d_t and d_logits"),
        (lambda: mod.bernoulli_log_prob(np.full((4, 2), 0.5), p3, p3, np.empty((4, 2))), "multiple of lp1"),
        (lambda: mod.bernoulli_log_prob(x, p3, p3, lp_short), "x and "),
    ]
    for call, words in cases:
        with pytest.raises(ValueError) as exc:
            call()
        msg = str(exc.value)
        assert all(w in msg for w in words.split(" and ") if w.strip()), (words, msg)


# -------------------------------------------------------------- Poisson sampler
# rates on both sides of the switch from inversion (rate < 10) to PTRS, and far into PTRS
POISSON_RATES = np.array([0.05, 0.7, 3.0, 9.999, 10.0, 10.5, 37.0, 1000.0, 2.5e6])


def _poisson_cells(lam, n_cells=30):
    """Cells [lo_c, hi_c] of consecutive counts, about equiprobable, with their exact pmf mass."""
    cuts = np.unique(stats.poisson.ppf(np.linspace(0, 1, n_cells + 1)[1:-1], lam).astype(np.int64))
    hi = np.append(cuts, np.iinfo(np.int64).max)
    lo = np.concatenate([[0], cuts + 1])
    mass = np.diff(np.concatenate([[0.0], stats.poisson.cdf(cuts, lam), [1.0]]))
    return lo, hi, mass


@pytest.mark.parametrize("dtype", DTYPES)
def test_poisson_sampler_goodness_of_fit(dtype):
    # chi-square against the exact pmf (scipy), cells merged to about 30 equiprobable runs of
    # counts; each of the 9 rates rejects at p < 1e-4 (false alarm <= 9e-4 per call)
    n = 20000
    x = D.Poisson(POISSON_RATES.astype(dtype)).sample(n, seed=11, stream=5)
    assert x.dtype == dtype and x.shape == (n, POISSON_RATES.size)
    assert np.all(x >= 0) and np.all(x == np.round(x))
    for j, lam in enumerate(POISSON_RATES.astype(dtype).astype(np.float64)):
        col = x[:, j].astype(np.float64)
        if lam >= 2 ** 24 / 8 and dtype == np.float32:
            continue  # float32 rounds counts above 2^24; the float64 column checks the draws
        lo, hi, mass = _poisson_cells(lam)
        counts = np.array([np.count_nonzero((col >= a) & (col <= b)) for a, b in zip(lo, hi)])
        assert counts.sum() == n
        p = stats.chisquare(counts, n * mass).pvalue
        assert p > P_REJECT, f"rate {lam}: chi-square p = {p:.2e}"


def test_poisson_sampler_mean_and_variance():
    # the first two moments at |z| > 5 (about 6e-7 per check, 18 checks): the variance's
    # standard error from the fourth central moment lam (1 + 3 lam)
    n = 40000
    x = D.Poisson(POISSON_RATES).sample(n, seed=3).astype(np.float64)
    for j, lam in enumerate(POISSON_RATES):
        m, v = x[:, j].mean(), x[:, j].var(ddof=1)
        assert abs(m - lam) < Z_REJECT * math.sqrt(lam / n), (lam, m)
        se_v = math.sqrt((lam * (1 + 3 * lam) - lam * lam * (n - 3) / (n - 1)) / n)
        assert abs(v - lam) < Z_REJECT * se_v, (lam, v)


def test_poisson_word_layout_matches_documentation():
    # inversion (rate < 10): the draw is the smallest x with u <= F(x), u from words 0, 1 of
    # block 0 of the element's sub-stream: scipy's inverse CDF at that u
    lam = 4.2
    x = D.Poisson(np.array([lam])).sample(50, seed=42, stream=6)[:, 0]
    for i in range(50):
        w = twin_random.substream_blocks(42, 6, [i], 0)[0]
        u = twin_random.u01_f64(w[0:1], w[1:2])[0]
        assert x[i] == stats.poisson.ppf(u, lam)
    # PTRS (rate >= 10): round 0 from block 0; a quickly accepted round gives k directly
    lam = 250.0
    x = D.Poisson(np.array([lam])).sample(50, seed=42, stream=6)[:, 0]
    b = 0.931 + 2.53 * math.sqrt(lam)
    a = -0.059 + 0.02483 * b
    vr = 0.9277 - 3.6224 / (b - 2)
    quick = 0
    for i in range(50):
        w = twin_random.substream_blocks(42, 6, [i], 0)[0]
        U = twin_random.u01_f64(w[0:1], w[1:2])[0] - 0.5
        V = twin_random.u01_f64(w[2:3], w[3:4])[0]
        us = 0.5 - abs(U)
        if us >= 0.07 and V <= vr:
            quick += 1
            assert x[i] == math.floor((2 * a / us + b) * U + lam + 0.43)
    assert quick > 30  # about 88% of rounds are accepted without the log test


@pytest.mark.single_backend
@pytest.mark.parametrize("dtype", DTYPES)
def test_poisson_native_and_twin_draws_are_identical(dtype):
    if len(BACKENDS) < 2:
        pytest.skip("only one backend available")
    # a (2, 5) batch broadcast from a (5,) row and a (2, 1) column: both algorithms in one call; then
    # every rate by inversion (its uniforms 16 / 8 blocks at a time, a tail of 10 in the last chunk) and
    # every rate by PTRS
    for rate in (np.array([0.3, 2.0, 9.99, 10.0, 400.0], dtype) * np.array([[1.0], [3.0]], dtype),
                 np.linspace(0.01, 9.99, 10).astype(dtype), np.linspace(10.0, 50.0, 10).astype(dtype)):
        d = D.Poisson(rate)
        draws = {}
        for be in ("cpu", "numpy"):
            with bg.use_backend(be):
                draws[be] = d.sample(3001, seed=77, stream=4)
        np.testing.assert_array_equal(draws["cpu"], draws["numpy"])
        # on every SIMD cap (the vector Philox blocks are the scalar ones: the cap must not change a draw)
        if _backend.native_available():
            from helpers import on_simd_path
            with bg.use_backend("cpu"):
                for path in ("scalar", "avx2"):
                    np.testing.assert_array_equal(on_simd_path(path, lambda: d.sample(3001, seed=77, stream=4)),
                                                  draws["cpu"])


@pytest.mark.parametrize("rate", [-1.0, 0.0, np.nan, np.inf, 2e10])
def test_poisson_bad_rate_raises_value_error_naming_it(rate):
    with pytest.raises(ValueError, match="rate"):
        D.Poisson(np.array([1.0, rate]))


@pytest.mark.single_backend
@pytest.mark.parametrize("rate", [-1.0, np.nan, np.inf, -np.inf, 2e10])
def test_poisson_kernel_validates_rate(rate):
    # the kernels check the rate themselves (before any draw) and accept rate 0 (all zeros)
    for k in [twin] + ([_backend._core] if _backend.native_available() else []):
        out = np.full(4, -1.0)
        with pytest.raises(ValueError, match="rate must be finite"):
            k.distributions.sample_poisson(out, np.array([1.0, rate]), 0, 0)
        assert np.all(out == -1.0)
        k.distributions.sample_poisson(out, np.array([0.0, 0.0]), 0, 0)
        assert np.all(out == 0.0)
        with pytest.raises(ValueError):
            k.distributions.sample_poisson(np.empty(5), np.ones(2), 0, 0)


@pytest.mark.single_backend
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("family", ["lognormal", "exponential", "laplace", "gumbel", "logistic"])
def test_locscale_draws_vector_transforms_match_the_scalar_path(dtype, family):
    """The transcendental transforms of the location-scale draws (vector log / exp passes over each
    4096-value chunk): every vector path against the core's scalar path (libm, the reference's own
    calls) to rounding, AVX-512 and AVX2 bit for bit, the twin to rounding; a batch of 37 (runs that
    straddle the chunks) and a batch of one; LogNormal far past the vector exp's range on both sides
    (redone by std::exp, then clamped to the smallest normal number)."""
    from bayesgrad._codes import LocScaleFamily
    from helpers import native_simd_paths, on_simd_path

    if not _backend.native_available():
        pytest.skip("needs the native core")
    core = _backend._core.distributions
    code = LocScaleFamily[family]
    tol = 2e-6 if dtype == np.float32 else 1e-13
    cases = [(np.linspace(-1.0, 1.0, 37), np.linspace(0.3, 3.0, 37)), (np.array([0.4]), np.array([1.7]))]
    if family == "lognormal":
        cases.append((np.array([-800.0, -704.0, -699.0, 79.0, 85.0, 600.0, 0.0]), np.full(7, 1.5)))
    for loc, scale in cases:
        loc, scale = loc.astype(dtype), scale.astype(dtype)
        shape = (9001 // loc.size + 1, loc.size)

        def draw(mod=core):
            out = np.empty(shape, dtype)
            with np.errstate(all="ignore"):
                mod.sample_locscale(out, loc, scale, code, 7, 3)
            return out

        # far in LogNormal's tails the base normals' own rounding (paths differ by an ulp there) is
        # amplified by exp: compared as logs, i.e. the exponents to rounding
        view = np.log if loc.size == 7 else (lambda v: v)
        ref = on_simd_path("scalar", draw)
        np.testing.assert_allclose(view(draw(twin.distributions)), view(ref), rtol=tol, atol=tol)
        got = {p: on_simd_path(p, draw) for p in native_simd_paths()}
        for p, g in got.items():
            np.testing.assert_allclose(view(g), view(ref), rtol=tol, atol=tol, err_msg=p)
        if len(got) == 2:
            np.testing.assert_array_equal(got["avx512"], got["avx2"])
        if family == "lognormal":
            assert np.all(ref >= np.finfo(dtype).tiny)


@pytest.mark.single_backend
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls", [D.Normal, D.Laplace, D.Uniform])
def test_location_scale_draws_across_chunks_with_rows_split(cls, dtype):
    """Batches whose rows straddle the sampler's chunks (4096 values a chunk; 37 coordinates do not divide it)
    and a batch of one: the native draws equal the twin's (base draws transformed by runs of parameters) and do
    not depend on the thread count."""
    if len(BACKENDS) < 2:
        pytest.skip("only one backend available")
    rtol = 2e-5 if dtype == np.float32 else 1e-12
    for loc, scale in ((np.linspace(-1, 1, 37), np.linspace(0.5, 2, 37)), (0.3, 1.7)):
        d = cls(np.asarray(loc, dtype=dtype), np.asarray(scale, dtype=dtype))
        with bg.use_backend("numpy"):
            ref = np.asarray(d.sample(3001, seed=5, stream=2))
        before = bg.get_num_threads()
        try:
            got = []
            with bg.use_backend("cpu"):
                for th in (1, 2):
                    bg.set_num_threads(th)
                    got.append(np.asarray(d.sample(3001, seed=5, stream=2)))
        finally:
            bg.set_num_threads(before)
        np.testing.assert_array_equal(got[0], got[1])
        np.testing.assert_allclose(got[0], ref, rtol=rtol, atol=rtol)


@pytest.mark.single_backend
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 2, 10, 33, 34, 100])
def test_categorical_from_uniform_counts_the_partial_sums_below_u(dtype, k):
    """Inversion against a direct count (np.sum(cdf < u)), native and twin: rows of 37 coordinates over
    several 4096-value chunks, the per-class count (k - 1 <= 32) and the binary search (above), classes
    of probability zero (repeated partial sums) and uniforms equal to a partial sum (not counted:
    strictly below)."""
    r = np.random.default_rng(k)
    b = 37
    p = r.dirichlet(np.full(k, 0.7), size=b)
    p[:, k // 2] = 0.0  # a class of probability zero (k = 1: the only class, then renormalised)
    p = p / np.maximum(p.sum(1, keepdims=True), 1e-300) if k > 1 else np.ones((b, 1))
    cdf = np.ascontiguousarray(np.cumsum(p, axis=1)[:, :-1].astype(dtype))
    u = r.uniform(size=(300, b)).astype(dtype)
    if k > 2:
        u[0] = cdf[:, 0]  # ties
        u[1] = cdf[:, -1]
    want = np.sum(cdf[None, :, :] < u[:, :, None], axis=-1)
    mods = [twin.distributions] + ([_backend._core.distributions] if _backend.native_available() else [])
    for mod in mods:
        out = np.full(u.shape, -1, np.int64)
        mod.categorical_from_uniform(u, cdf, out)
        np.testing.assert_array_equal(out, want, err_msg=mod.__name__)
        with pytest.raises(ValueError):
            mod.categorical_from_uniform(u, cdf.reshape(-1), out)
        with pytest.raises(ValueError):
            mod.categorical_from_uniform(np.ascontiguousarray(u[:, :-1]), cdf, np.empty((300, b - 1), np.int64))
        with pytest.raises(ValueError):
            mod.categorical_from_uniform(u, cdf, np.empty((300, b + 1), np.int64))
        with pytest.raises(TypeError):
            mod.categorical_from_uniform(u, cdf, out.astype(np.int32))
