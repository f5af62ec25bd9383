"""REBAR / RELAX kernels for Bernoulli coordinates (cpp/src/relax_bernoulli.cpp: relax_bernoulli_draws,
_sample, _part, _part_fd, concrete_bernoulli(_fd), relax_bernoulli_combine): native against the NumPy twin,
each SIMD path against the scalar reference, and each twin against a direct float64 reference formula.
Moved from test_estimators_kernels.py (which passed 700 lines), beside test_relax_categorical_kernels.py."""
import numpy as np
import pytest

from bayesgrad import _backend
from bayesgrad import _numpy as twin

from helpers import estimator_modules, native_simd_paths

pytestmark = pytest.mark.single_backend


def test_relax_bernoulli_kernels():
    r = np.random.default_rng(4)
    n, p = 200, 5
    eta = np.array([-3.0, -0.5, 0.0, 0.7, 4.0])
    u, v = r.uniform(size=(n, p)), r.uniform(size=(n, p))
    pr = 1 / (1 + np.exp(-eta))
    b_ref = (u < pr).astype(float)
    z_ref = eta + np.log1p(-u) - np.log(u)
    wt = np.where(b_ref > 0, 1 - pr + pr * v, (1 - pr) * v)
    zt_ref = eta + np.log(wt) - np.log1p(-wt)
    # d z~ / d eta by a central difference of the defining formula (b and v fixed)
    hstep = 1e-6

    def ztilde(e):
        q = 1 / (1 + np.exp(-e))
        w = np.where(b_ref > 0, 1 - q + q * v, (1 - q) * v)
        return e + np.log(w) - np.log1p(-w)

    dzt_ref = (ztilde(eta + hstep) - ztilde(eta - hstep)) / (2 * hstep)
    lam = 0.6
    fzt, gz, gzt = r.standard_normal(n), r.standard_normal((n, p)), r.standard_normal((n, p))
    outs = []
    for mod in estimator_modules():
        z, zt, dzt, b, score = (np.empty((n, p)) for _ in range(5))
        mod.relax_bernoulli_draws(eta, u, v, z, zt, dzt, b, score)
        np.testing.assert_array_equal(b, b_ref)
        np.testing.assert_allclose(score, b_ref - pr, rtol=1e-15, atol=1e-16)
        np.testing.assert_allclose(z, z_ref, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(zt, zt_ref, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(dzt, dzt_ref, rtol=1e-5, atol=1e-7)
        y = np.empty((n, p))
        mod.concrete_bernoulli(z, lam, y)
        np.testing.assert_allclose(y, 1 / (1 + np.exp(-z / lam)), rtol=1e-13, atol=1e-300)
        out = np.empty((n, p))
        yt = np.empty((n, p))
        mod.concrete_bernoulli(zt, lam, yt)
        mod.relax_bernoulli_part(fzt, gz, gzt, y, yt, dzt, score, lam, out)
        ref = -fzt[:, None] * score + gz * y * (1 - y) / lam - gzt * yt * (1 - yt) / lam * dzt
        np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-13)
        outs.append((z, zt, dzt, out))
    if len(outs) == 2:  # native against twin, tighter than against the references
        for a, c in zip(*outs):
            np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("n, p", [(7, 5), (30000, 5)])  # one row block; several (the sum's block order)
@pytest.mark.parametrize("relaxed_f, network", [(True, True), (True, False), (False, True)])
def test_relax_bernoulli_combine(n, p, relaxed_f, network):
    r = np.random.default_rng(5)
    fb, score, a_f, dzt = r.standard_normal(n), r.standard_normal((n, p)), r.standard_normal((n, p)), r.uniform(
        0.1, 2.0, (n, p))
    rr, gx = r.standard_normal(2 * n), r.standard_normal((2 * n, p))
    sc = 0.7
    g_ref = (fb - (rr[n:] if network else 0.0))[:, None] * score
    if relaxed_f:
        g_ref = g_ref + sc * a_f
    if network:
        g_ref = g_ref + gx[:n] - gx[n:] * dzt
    a_d = r.standard_normal((n, p))
    res = []
    for mod in estimator_modules():
        # a_f alone, or stacked with a second array a_d whose sum of products with g is returned too
        for two in (False, True) if relaxed_f else (False,):
            # with the network: out = [g; g dzt] and gs; without: out = g alone
            out = np.full((2, n, p) if network else (n, p), np.nan)
            gs = np.full(n, np.nan) if network else None
            a = (np.stack([a_f, a_d]) if two else a_f) if relaxed_f else None
            ss = mod.relax_bernoulli_combine(fb, score, a, sc, rr if network else None, gx if network else None,
                                             dzt, out, gs)
            if network:
                np.testing.assert_allclose(out[0], g_ref, rtol=1e-13, atol=1e-13)
                np.testing.assert_allclose(out[1], g_ref * dzt, rtol=1e-13, atol=1e-13)
                np.testing.assert_allclose(gs, (g_ref * score).sum(1), rtol=1e-12, atol=1e-12)
            else:
                np.testing.assert_allclose(out, g_ref, rtol=1e-13, atol=1e-13)
            want = ((g_ref ** 2).sum(), (g_ref * a_f).sum() if relaxed_f else 0.0, (g_ref * a_d).sum() if two else 0.0)
            np.testing.assert_allclose(ss, want, rtol=1e-12, atol=1e-12 * np.sqrt(n * p))
        res.append((out, gs, ss))
    if len(res) == 2:
        np.testing.assert_allclose(res[0][0], res[1][0], rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(res[0][2], res[1][2], rtol=1e-13, atol=1e-13 * np.sqrt(n * p))
    for mod in estimator_modules():
        out, gs = np.empty((2, n, p)), np.empty(n)
        with pytest.raises(ValueError, match="together"):
            mod.relax_bernoulli_combine(fb, score, None, sc, rr, None, dzt, out, gs)
        with pytest.raises(ValueError, match="out"):
            mod.relax_bernoulli_combine(fb, score, None, sc, rr, gx, dzt, np.empty((n, p)), gs)
        with pytest.raises(ValueError, match="out"):
            mod.relax_bernoulli_combine(fb, score, a_f, sc, None, None, dzt, out, None)
        with pytest.raises(ValueError, match="gs"):
            mod.relax_bernoulli_combine(fb, score, None, sc, rr, gx, dzt, out, None)
        with pytest.raises(ValueError, match="gs"):
            mod.relax_bernoulli_combine(fb, score, a_f, sc, None, None, dzt, np.empty((n, p)), gs)
        with pytest.raises(ValueError, match="gx"):
            mod.relax_bernoulli_combine(fb, score, None, sc, rr, gx[:n], dzt, out, gs)
        with pytest.raises(ValueError, match="a_f"):
            mod.relax_bernoulli_combine(fb, score, np.zeros((3, n, p)), sc, None, None, dzt, out[0], None)


def test_relax_bernoulli_part_fd_and_combine_simd_paths_match_scalar():
    """relax_bernoulli_part_fd and relax_bernoulli_combine (every variant of terms present) on the AVX-512
    and AVX2 paths against the scalar one, on rows whose length leaves a tail of the vectors and of
    the combine's eight lane sums (p = 13), and the twin."""
    from helpers import on_simd_path

    paths = native_simd_paths()
    if not paths:
        pytest.skip("no SIMD path on this CPU / no native core")
    core = _backend._core.estimators
    r = np.random.default_rng(33)
    n, p, lam = 301, 13, 0.45
    fv, gv, y = r.standard_normal(6 * n), r.standard_normal((6 * n, p)), r.uniform(size=(6 * n, p))
    dzt, score, fb = r.uniform(0.1, 1, (n, p)), r.choice([-0.3, 0.7], size=(n, p)), r.standard_normal(n)
    rr, gx = r.standard_normal(2 * n), r.standard_normal((2 * n, p))

    def run(mod):
        res = []
        a = np.empty((2, n, p))
        mod.relax_bernoulli_part_fd(fv, gv, y, dzt, score, lam, 1e-4, a)
        res.append(a)
        for a_f in (None, a[0], a):
            for net in (False, True):
                out, gs = np.empty((2, n, p) if net else (n, p)), np.empty(n) if net else None
                ss = mod.relax_bernoulli_combine(fb, score, a_f, 0.8, rr if net else None, gx if net else None, dzt,
                                                 out, gs)
                res += [out, np.asarray(ss)] + ([gs] if net else [])
        return res

    ref = run(twin.estimators)
    for path in ["scalar"] + paths:
        got = on_simd_path(path, lambda: run(core))
        for k, (a, b) in enumerate(zip(got, ref)):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=f"{path} {k}")


def test_relax_bernoulli_kernels_simd_paths_match_scalar_reference():
    """concrete_bernoulli (AVX-512 with a masked tail, AVX2) and relax_bernoulli_draws (AVX2) against
    the scalar libm path, on sizes that leave a tail and on z far out in both tails."""
    from helpers import on_simd_path

    paths = native_simd_paths()
    if not paths:
        pytest.skip("no SIMD path on this CPU / no native core")
    core = _backend._core.estimators
    r = np.random.default_rng(12)
    n, p = 201, 7
    eta = r.standard_normal(p) * 3
    u, v = r.uniform(size=(n, p)), r.uniform(size=(n, p))
    z = np.concatenate([r.standard_normal(n * p - 6) * 20, [-800.0, 800.0, -1e-300, 0.0, 1e-300, 40.0]])

    def run():
        outs = [np.empty((n, p)) for _ in range(5)]
        core.relax_bernoulli_draws(eta, u, v, *outs)
        y = np.empty(n * p)
        core.concrete_bernoulli(z, 0.3, y)
        return outs + [y]

    ref = on_simd_path("scalar", run)
    for path in paths:
        got = on_simd_path(path, run)
        for a, b in zip(got, ref):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-300, err_msg=path)


def test_relax_bernoulli_draws_logs_of_ratios_within_two_ulp():
    """z = eta + log((1 - u) / u) from simd::logratiox4/x8d (one division, the ratio never formed)
    within 2 ulp of the long-double value (in units of ulp(|eta| + |log|), the size of the terms
    summed) on every SIMD path, u over the whole of (0, 1) down to 2^-53; AVX-512 equal to AVX2 bit
    for bit (same steps) on the coordinates both take in whole vectors (AVX2 leaves a row's last
    p mod 4 to the scalar code), and z~, dz~/deta, b and the score as well."""
    from helpers import on_simd_path

    if not _backend.native_available() or np.finfo(np.longdouble).nmant < 60:
        pytest.skip("needs the native core and an 80-bit long double reference")
    core = _backend._core.estimators
    r = np.random.default_rng(21)
    n, p = 400, 11
    eta = r.standard_normal(p) * 4
    u = np.exp(-r.uniform(0, 36.7, size=(n, p)))  # 1e-16 .. 1
    u[:, 0] = r.uniform(size=n)
    u[0, :4] = [2.0 ** -53, 0.5, 1 - 2.0 ** -53, np.nextafter(0.5, 1)]
    v = r.uniform(size=(n, p))
    L = np.longdouble
    logr = np.log((1 - L(u)) / L(u))
    ref = L(eta) + logr
    scale = np.spacing((np.abs(eta) + np.abs(logr)).astype(float))
    outs = {}
    for path in ["scalar"] + native_simd_paths():
        o = [np.empty((n, p)) for _ in range(5)]
        on_simd_path(path, lambda: core.relax_bernoulli_draws(eta, u, v, *o))
        assert float(np.max(np.abs(o[0] - ref) / scale)) <= 2.0, path
        outs[path] = o
    if "avx512" in outs and "avx2" in outs:
        for a, b in zip(outs["avx512"], outs["avx2"]):
            np.testing.assert_array_equal(a[:, :p - p % 4], b[:, :p - p % 4])


@pytest.mark.parametrize("n, p", [(3, 5), (700, 100), (1000, 7)])
def test_relax_bernoulli_sample_equals_draws_on_random_uniforms_and_their_relaxation(n, p):
    """The uniforms generated inside the pass are random.uniform's (same seed, streams, offset 0): the
    draws equal relax_bernoulli_draws on those arrays bit for bit, on each module and SIMD path, in
    chunks that cut rows and Philox groups anywhere (n p not a multiple of the chunk or of 32); and y
    is concrete_bernoulli / concrete_bernoulli_fd of [z; z~] (bit for bit, except on the AVX2 path,
    whose scalar tails fall elsewhere in the fused pass's chunks: within 2 ulp there)."""
    from bayesgrad import random as rnd
    from helpers import on_simd_path

    eta = np.linspace(-3, 2, p)
    seed, su, lam, step = 12345, 7, 0.37, 1e-4
    sv = rnd.fold_in(su, "relax/conditional")
    runs = [(twin.estimators, None)]
    if _backend.native_available():
        runs += [(_backend._core.estimators, path) for path in ["scalar"] + native_simd_paths()]
    for mod, path in runs:
        rmod = twin.random if mod is twin.estimators else _backend._core.random
        u, v = np.empty((n, p)), np.empty((n, p))
        rmod.fill_uniform(u, seed, su, 0)
        rmod.fill_uniform(v, seed, sv, 0)

        def run():
            want = np.empty((5, n, p))
            mod.relax_bernoulli_draws(eta, u, v, *want)
            zz = want[:2].reshape(2 * n, p)
            y1, y3 = np.empty((2 * n, p)), np.empty((3, 2 * n, p))
            mod.concrete_bernoulli(zz, lam, y1)
            mod.concrete_bernoulli_fd(zz, lam, step, y3)
            got = {k: (np.full((5, n, p), np.nan), y) for k, y in
                   (("none", None), ("one", np.full((2 * n, p), np.nan)), ("fd", np.full((3, 2 * n, p), np.nan)))}
            for d, y in got.values():
                mod.relax_bernoulli_sample(eta, seed, su, sv, lam, step, d, y)
            return want, y1, y3, got

        want, y1, y3, got = run() if path is None else on_simd_path(path, run)
        for d, _ in got.values():
            np.testing.assert_array_equal(d, want, err_msg=str(path))
        for y, ref in ((got["one"][1], y1), (got["fd"][1], y3)):
            if path == "avx2":
                np.testing.assert_allclose(y, ref, rtol=4.5e-16, atol=0, err_msg=path)
            else:
                np.testing.assert_array_equal(y, ref, err_msg=str(path))
        d = got["none"][0]
        with pytest.raises(ValueError, match="stream"):
            mod.relax_bernoulli_sample(eta, seed, 2 ** 63, sv, lam, step, d, None)
        with pytest.raises(ValueError, match="eta"):
            mod.relax_bernoulli_sample(eta[:-1], seed, su, sv, lam, step, d, None)
        with pytest.raises(ValueError, match="draws"):
            mod.relax_bernoulli_sample(eta, seed, su, sv, lam, step, d[:4], None)
        with pytest.raises(ValueError, match="y must"):
            mod.relax_bernoulli_sample(eta, seed, su, sv, lam, step, d, np.empty((n, p)))
        with pytest.raises(ValueError, match="lam"):
            mod.relax_bernoulli_sample(eta, seed, su, sv, 0.0, step, d, got["one"][1])
        with pytest.raises(ValueError, match="step"):
            mod.relax_bernoulli_sample(eta, seed, su, sv, lam, 0.0, d, got["fd"][1])
        mod.relax_bernoulli_sample(eta, seed, su, sv, lam, 0.0, d, got["one"][1])  # step unread at one temperature
