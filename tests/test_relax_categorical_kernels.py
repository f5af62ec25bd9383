"""REBAR / RELAX kernels for Categorical coordinates (relax_categorical_sample, _part, _combine): the native
core on each SIMD path against the NumPy twin, the draws against their defining properties, the part
against its temperature's definition, the combine against the estimator's formula, thread-count
independence and argument checks."""
import numpy as np
import pytest

import bayesgrad as bg
from bayesgrad import _backend
from bayesgrad import _numpy as twin
from bayesgrad._numerics import log_softmax

pytestmark = pytest.mark.single_backend

STEP = 1e-4


def _modules():
    from helpers import estimator_modules

    return estimator_modules()


def _paths():
    """(name, runner) for the twin and every native SIMD path this CPU has."""
    from helpers import on_simd_path

    runs = [("twin", twin.estimators, lambda f: f())]
    if _backend.native_available():
        core = _backend._core.estimators
        for p in ("scalar", "avx2", "avx512"):
            if on_simd_path(p, lambda: bg.backend_info()["simd"]).startswith(p):
                runs.append((p, core, lambda f, p=p: on_simd_path(p, f)))
    return runs


def _lp(d, k, seed=0, spread=2.0):
    eta = np.random.default_rng(seed).standard_normal((d, k)) * spread
    return np.ascontiguousarray(log_softmax(eta))


def _sample(mod, run, lp, n, temps, lam=0.7, seed=3):
    p = lp.size
    draws = np.full((5, n, p), np.nan)
    y = None if temps == 0 else np.full(((2 * n, p) if temps == 1 else (3, 2 * n, p)), np.nan)
    run(lambda: mod.relax_categorical_sample(lp, seed, 11, 12, lam, STEP, draws, y))
    return draws, y


# k <= 16 runs on two 8-lane vectors a row on the AVX-512 path (lanes past k masked): both sides of 8 and 16
@pytest.mark.parametrize("d,k,n", [(3, 4, 257), (10, 10, 300), (1, 2, 1000), (2, 37, 130), (2, 8, 90), (3, 9, 70),
                                   (1, 16, 120), (2, 17, 60)])
@pytest.mark.parametrize("temps", [0, 1, 3])
def test_sample_matches_twin_on_every_path(d, k, n, temps):
    lp = _lp(d, k, seed=d * k)
    ref_draws, ref_y = _sample(twin.estimators, lambda f: f(), lp, n, temps)
    for name, mod, run in _paths()[1:]:
        draws, y = _sample(mod, run, lp, n, temps)
        np.testing.assert_array_equal(draws[3], ref_draws[3], err_msg=name)  # the one-hot b
        np.testing.assert_allclose(draws, ref_draws, rtol=1e-13, atol=1e-15, err_msg=name)
        if temps:
            np.testing.assert_allclose(y, ref_y, rtol=1e-13, atol=1e-300, err_msg=name)


@pytest.mark.parametrize("name_mod", _modules(), ids=lambda m: m.__name__)
def test_sample_has_its_defining_properties(name_mod):
    """From the uniforms random.uniform draws: z = lp - log(-log u), b = one-hot argmax z per row of K,
    E = -log v, z~_b = -log E_b, z~_i = -log(E_i / p_i + E_b) < z~_b, r = d z~_i / d log p_i; score = b - p;
    y the softmax of [z; z~] / lam per row."""
    mod, n, d, k, lam = name_mod, 400, 5, 6, 0.4
    lp = _lp(d, k, seed=7)
    draws, y = _sample(mod, lambda f: f(), lp, n, 3, lam=lam)
    z, zt, r, b, score = draws
    u = bg.random.uniform((n, d * k), seed=3, stream=11)
    v = bg.random.uniform((n, d * k), seed=3, stream=12)
    np.testing.assert_allclose(z, lp.reshape(-1) - np.log(-np.log(u)), rtol=1e-13, atol=1e-14)
    z3, b3 = z.reshape(n, d, k), b.reshape(n, d, k)
    np.testing.assert_array_equal(b3.argmax(-1), z3.argmax(-1))
    np.testing.assert_array_equal(b3.sum(-1), 1.0)
    p = np.exp(lp.reshape(-1))
    np.testing.assert_allclose(score, b - p, rtol=0, atol=1e-15)
    e = -np.log(v)
    eb = (e.reshape(n, d, k) * b3).sum(-1, keepdims=True)
    want = np.where(b3 > 0, -np.log(eb), -np.log(e.reshape(n, d, k) / p.reshape(d, k) + eb))
    np.testing.assert_allclose(zt.reshape(n, d, k), want, rtol=1e-13, atol=1e-14)
    assert np.all((zt.reshape(n, d, k) <= -np.log(eb)) | (b3 > 0))
    # r is d z~_i / d log p_i with E held fixed (z~_i = -log(E_i e^{-log p_i} + E_b)), by central differences
    h = 1e-6
    lo = -np.log(e.reshape(n, d, k) / (p.reshape(d, k) * np.exp(-h)) + eb)
    hi = -np.log(e.reshape(n, d, k) / (p.reshape(d, k) * np.exp(h)) + eb)
    np.testing.assert_allclose(r.reshape(n, d, k), np.where(b3 > 0, 0.0, (hi - lo) / (2 * h)), atol=1e-7)
    zz = np.concatenate([z, zt])
    for t, lt in enumerate([lam, lam * np.exp(STEP), lam * np.exp(-STEP)]):
        a = (zz / lt).reshape(2 * n, d, k)
        want = np.exp(a - a.max(-1, keepdims=True))
        want /= want.sum(-1, keepdims=True)
        np.testing.assert_allclose(y[t].reshape(2 * n, d, k), want, rtol=1e-12, atol=1e-300)


def _part_inputs(n=200, d=4, k=5, temps=3, seed=1):
    lp = _lp(d, k, seed=seed)
    draws, y = _sample(twin.estimators, lambda f: f(), lp, n, temps)
    rng = np.random.default_rng(seed)
    m = 2 * n * temps
    fv, gv = rng.standard_normal(m), rng.standard_normal((m, d * k))
    return lp, draws, y.reshape(m, d * k), fv, gv


@pytest.mark.parametrize("k", [5, 8, 13, 16, 17])
def test_part_matches_twin_and_its_definition(k):
    """The part at lam: -f(y~) score + Jz^T v(g) - Jt^T v(g~), v the softmax's VJP; the difference of the
    outer temperatures within rounding of the difference of their parts (each formed at its own lam)."""
    n, d, lam = 200, 4, 0.6
    lp, draws, y, fv, gv = _part_inputs(n, d, k)
    pr = np.exp(lp)
    p3 = pr.reshape(1, d, k)
    r3, s3 = draws[2].reshape(n, d, k), draws[4].reshape(n, d, k)
    parts = []
    for t, lt in enumerate([lam, lam * np.exp(STEP), lam * np.exp(-STEP)]):
        rows = lambda a: a[2 * t * n:2 * (t + 1) * n].reshape(2, n, d, k)  # noqa: E731
        g, yy = rows(gv), rows(y)
        vjp = yy * (g - (g * yy).sum(-1, keepdims=True)) / lt
        jz = vjp[0] - p3 * vjp[0].sum(-1, keepdims=True)
        jt = vjp[1] * r3 - p3 * (vjp[1] * r3).sum(-1, keepdims=True)
        parts.append(-fv[(2 * t + 1) * n:2 * (t + 1) * n, None, None] * s3 + jz - jt)
    for name, mod, run in _paths():
        for temps in (1, 3):
            out = np.full((2, n, d * k) if temps == 3 else (n, d * k), np.nan)
            m = 2 * n * temps
            run(lambda: mod.relax_categorical_part(fv[:m], gv[:m], y[:m], draws, pr, lam, STEP, out))
            a0 = out[0] if temps == 3 else out
            np.testing.assert_allclose(a0.reshape(n, d, k), parts[0], rtol=1e-12, atol=1e-13, err_msg=name)
            if temps == 3:
                diff = (parts[1] - parts[2])
                scale = np.abs(parts[1]).max()
                np.testing.assert_allclose(out[1].reshape(n, d, k), diff, rtol=0, atol=1e-14 * scale, err_msg=name)


@pytest.mark.parametrize("net", [False, True])
@pytest.mark.parametrize("af", ["none", "one", "two"])
@pytest.mark.parametrize("k", [4, 9, 16, 17])
def test_combine_matches_twin_and_the_formula(net, af, k):
    n, d, sc = 150, 3, 0.8
    lp = _lp(d, k, seed=5)
    draws, _ = _sample(twin.estimators, lambda f: f(), lp, n, 0)
    pr, p = np.exp(lp), d * k
    rng = np.random.default_rng(9)
    fb = rng.standard_normal(n)
    a_f = None if af == "none" else rng.standard_normal(((2,) if af == "two" else ()) + (n, p))
    r, gx = (rng.standard_normal(2 * n), rng.standard_normal((2 * n, p))) if net else (None, None)
    score, rr = draws[4], draws[2]
    p3 = pr.reshape(1, d, k)
    g = (fb - (r[n:] if net else 0.0))[:, None] * score
    if a_f is not None:
        g = g + sc * (a_f[0] if af == "two" else a_f)
    if net:
        gz, gt = gx[:n].reshape(n, d, k), gx[n:].reshape(n, d, k)
        r3 = rr.reshape(n, d, k)
        g = g + (gz - p3 * gz.sum(-1, keepdims=True) - (gt * r3 - p3 * (gt * r3).sum(-1, keepdims=True))).reshape(n, p)
    g3 = g.reshape(n, d, k)
    d1 = (g3 - (g3 * p3).sum(-1, keepdims=True)).reshape(n, p)
    want_sums = [np.sum(g * g), 0.0 if a_f is None else np.sum(g * (a_f[0] if af == "two" else a_f)),
                 np.sum(g * a_f[1]) if af == "two" else 0.0]
    for name, mod, run in _paths():
        out = np.full((3, n, p) if net else (n, p), np.nan)
        gs = np.full(n, np.nan) if net else None
        sums = run(lambda: mod.relax_categorical_combine(fb, draws, pr, a_f, sc, r, gx, out, gs))
        np.testing.assert_allclose(sums, want_sums, rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(out[0] if net else out, g, rtol=1e-12, atol=1e-13, err_msg=name)
        if net:
            np.testing.assert_allclose(out[1], d1, rtol=1e-12, atol=1e-13, err_msg=name)
            np.testing.assert_allclose(out[2], rr * d1, rtol=1e-12, atol=1e-13, err_msg=name)
            np.testing.assert_allclose(gs, (g * score).sum(1), rtol=1e-12, atol=1e-13, err_msg=name)


@pytest.mark.skipif(not _backend.native_available(), reason="the native core is not built")
def test_kernels_do_not_depend_on_the_thread_count():
    core = _backend._core.estimators
    n, d, k = 3000, 6, 7
    lp = _lp(d, k, seed=2)
    got = []
    before = bg.get_num_threads()
    try:
        for th in (1, 2, 3):
            bg.set_num_threads(th)
            draws, y = _sample(core, lambda f: f(), lp, n, 3)
            rng = np.random.default_rng(0)
            fv, gv = rng.standard_normal(6 * n), rng.standard_normal((6 * n, d * k))
            out = np.empty((2, n, d * k))
            core.relax_categorical_part(fv, gv, y.reshape(6 * n, -1), draws, np.exp(lp), 0.5, STEP, out)
            g = np.empty((3, n, d * k))
            gs = np.empty(n)
            r, gx = rng.standard_normal(2 * n), rng.standard_normal((2 * n, d * k))
            sums = core.relax_categorical_combine(fv[:n], draws, np.exp(lp), out, 0.7, r, gx, g, gs)
            got.append((draws, y, out, g, gs, np.array(sums)))
    finally:
        bg.set_num_threads(before)
    for other in got[1:]:
        for a, b in zip(got[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mod", _modules(), ids=lambda m: m.__name__)
def test_argument_errors(mod):
    lp = _lp(2, 3)
    n, p = 5, 6
    draws = np.empty((5, n, p))
    with pytest.raises(ValueError, match="lp"):
        mod.relax_categorical_sample(lp.reshape(-1), 1, 0, 1, 0.5, STEP, draws, None)
    with pytest.raises(ValueError, match="draws"):
        mod.relax_categorical_sample(lp, 1, 0, 1, 0.5, STEP, np.empty((4, n, p)), None)
    with pytest.raises(ValueError, match="y"):
        mod.relax_categorical_sample(lp, 1, 0, 1, 0.5, STEP, draws, np.empty((2 * n, p + 1)))
    with pytest.raises(ValueError, match="lam"):
        mod.relax_categorical_sample(lp, 1, 0, 1, -1.0, STEP, draws, np.empty((2 * n, p)))
    with pytest.raises(ValueError, match="step"):
        mod.relax_categorical_sample(lp, 1, 0, 1, 0.5, 2.0, draws, np.empty((3, 2 * n, p)))
    with pytest.raises(ValueError, match="stream"):
        mod.relax_categorical_sample(lp, 1, 2 ** 63, 1, 0.5, STEP, draws, None)
    with pytest.raises(TypeError):
        mod.relax_categorical_sample(lp.astype(np.float32), 1, 0, 1, 0.5, STEP, draws, None)
    pr = np.exp(lp)
    with pytest.raises(ValueError, match="out"):
        mod.relax_categorical_part(np.zeros(2 * n), np.zeros((2 * n, p)), np.zeros((2 * n, p)), draws, pr, 0.5, STEP,
                                   np.empty((n, p + 1)))
    with pytest.raises(ValueError, match="fv"):
        mod.relax_categorical_part(np.zeros(3 * n), np.zeros((2 * n, p)), np.zeros((2 * n, p)), draws, pr, 0.5, STEP,
                                   np.empty((n, p)))
    with pytest.raises(ValueError, match="gx"):
        mod.relax_categorical_combine(np.zeros(n), draws, pr, None, 1.0, np.zeros(2 * n), None, np.empty((3, n, p)),
                                      np.empty(n))
    with pytest.raises(ValueError, match="out"):
        mod.relax_categorical_combine(np.zeros(n), draws, pr, None, 1.0, None, None, np.empty((3, n, p)), None)
    with pytest.raises(ValueError, match="gs"):
        mod.relax_categorical_combine(np.zeros(n), draws, pr, None, 1.0, np.zeros(2 * n), np.zeros((2 * n, p)),
                                      np.empty((3, n, p)), None)
    with pytest.raises(ValueError, match="a_f"):
        mod.relax_categorical_combine(np.zeros(n), draws, pr, np.zeros((3, n, p)), 1.0, None, None, np.empty((n, p)),
                                      None)
    with pytest.raises(ValueError, match="pr"):
        mod.relax_categorical_combine(np.zeros(n), draws, pr.reshape(-1), None, 1.0, None, None, np.empty((n, p)),
                                      None)
    with pytest.raises(ValueError, match="draws"):
        mod.relax_categorical_part(np.zeros(2 * n), np.zeros((2 * n, p)), np.zeros((2 * n, p)), np.zeros((4, n, p)), pr,
                                   0.5, STEP, np.empty((n, p)))
    with pytest.raises(ValueError, match="gv"):
        mod.relax_categorical_part(np.zeros(2 * n), np.zeros((2 * n, p + 1)), np.zeros((2 * n, p)), draws, pr, 0.5,
                                   STEP, np.empty((n, p)))
