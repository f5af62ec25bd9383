"""The CUDA module bayesgrad._cuda (docs/design.md, "CUDA backend").

Two groups:

* everywhere: the backend stays unselectable and says why, backend_info's
  CUDA state, the verification record, and that every CUDA kernel has the
  name and argument order of its core kernel and NumPy twin;
* the kernel comparisons, parametrised by ``impl``: on a GPU every CUDA
  kernel against the NumPy twin on CuPy arrays (skipped with the reason
  otherwise: module not built, CuPy missing, no device), and everywhere the
  C++ core's kernel of the same name on NumPy arrays, so that the comparisons
  and their tolerances are exercised without a GPU. Uniforms must be
  bit-identical for the same (seed, stream, index); everything else agrees
  within the tolerances stated per test, which allow for the device libm
  (log, sin, cos, exp within a few ulps of glibc's);
* on a GPU only: CuPy's current stream, and argument errors on device arrays.

The per-element code these kernels run is shared with the C++ core
(cpp/include/bayesgrad/hd.hpp), so the CPU tests of random, distributions,
estimators, metrics and nn exercise the same source on every machine; this
file is not its only check. tools/verify_cuda.sh runs it on a GPU.
"""
import json

import numpy as np
import pytest

import bayesgrad as bg
import bayesgrad._numpy as twin
from bayesgrad import _backend
from bayesgrad._codes import LocScaleFamily
from helpers import native_arg_names

pytestmark = pytest.mark.single_backend


def _gpu_unavailable():
    if _backend._cuda is None:
        return f"bayesgrad._cuda is not built or failed to import ({_backend._cuda_error})"
    try:
        import cupy  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means no CuPy to test with
        return f"CuPy is not importable ({type(exc).__name__}: {exc})"
    if _backend._cuda_devices() == 0:
        return "no CUDA device is visible"
    return None


_REASON = _gpu_unavailable()
gpu = pytest.mark.skipif(_REASON is not None, reason=f"needs a GPU: {_REASON}")
needs_module = pytest.mark.skipif(_backend._cuda is None, reason=f"bayesgrad._cuda not built ({_backend._cuda_error})")

DTYPES = (np.float32, np.float64)


# ------------------------------------------------------------------ everywhere
def test_gpu_present_when_required():
    """tools/verify_cuda.sh sets BAYESGRAD_REQUIRE_GPU=1: there a skip would hide a broken setup."""
    import os

    if os.environ.get("BAYESGRAD_REQUIRE_GPU") != "1":
        pytest.skip("BAYESGRAD_REQUIRE_GPU is not set")
    assert _REASON is None, _REASON


def test_cuda_backend_refused_with_a_reason():
    with pytest.raises(ValueError, match="backend 'cuda' is not available: ") as info:
        bg.set_backend("cuda")
    if _backend._cuda is not None and not _backend._cuda_has_kernels():
        assert "not yet for" in str(info.value)
    assert bg.get_backend() in ("cpu", "numpy")


def test_backend_info_reports_the_cuda_state():
    info = bg.backend_info()
    assert set(info["cuda_kernels"]) <= set(twin.CONCEPTS)
    if _backend._cuda is None:
        assert info["cuda_kernels"] == []
    elif info["cuda_verified"] is None or info["cuda_verified"].get("scope") != "full":
        assert info["cuda_status"].startswith("compiled, not verified on a GPU")
    else:
        assert info["cuda_status"].startswith(f"verified on {info['cuda_verified']['device']}")


def test_verification_record_is_read_strictly(tmp_path, monkeypatch):
    path = tmp_path / "record.json"
    monkeypatch.setattr(_backend, "CUDA_VERIFIED_FILE", str(path))
    assert _backend.cuda_verified() is None  # absent
    path.write_text("{not json")
    assert _backend.cuda_verified() is None
    path.write_text(json.dumps({"date": "2026-12-02", "device": "NVIDIA H200", "passed": False}))
    assert _backend.cuda_verified() is None
    path.write_text(json.dumps({"date": "2026-12-02", "passed": True}))
    assert _backend.cuda_verified() is None  # no device
    rec = {"date": "2026-12-02T09:00:00Z", "device": "NVIDIA H200", "passed": True, "scope": "kernels",
           "concepts": ["random"]}
    path.write_text(json.dumps(rec))
    assert _backend.cuda_verified() == rec
    if _backend._cuda is not None:
        # a kernels-only record: the backend is still "not verified"
        assert bg.backend_info()["cuda_status"].startswith("compiled, not verified on a GPU as a backend")
    with pytest.raises(ValueError, match="cuda"):  # never selectable from a kernels-only record
        bg.set_backend("cuda")
    rec["scope"] = "full"
    path.write_text(json.dumps(rec))
    if _backend._cuda is None or not _backend._cuda_has_kernels() or _backend._cuda_devices() == 0:
        with pytest.raises(ValueError, match="cuda"):  # nor a partial module or a machine without a GPU
            bg.set_backend("cuda")
    else:
        with bg.use_backend("cuda"):
            assert bg.get_backend() == "cuda"


def test_committed_record_is_well_formed():
    """A record in the repository must come from a passing run (tools/verify_cuda.sh)."""
    import os

    if not os.path.exists(_backend.CUDA_VERIFIED_FILE):
        pytest.skip("no GPU verification recorded yet")
    with open(_backend.CUDA_VERIFIED_FILE, encoding="utf-8") as fh:
        rec = json.load(fh)
    assert rec["passed"] is True and rec["device"] and rec["date"]


@needs_module
def test_cuda_kernels_match_core_names_and_arguments():
    """Each CUDA concept is a subset of the core's, with the twin's argument names and order."""
    import inspect

    assert _backend._cuda_concepts(), "the CUDA module has no concept submodule"
    for concept in _backend._cuda_concepts():
        mod = getattr(_backend._cuda, concept)
        names = {n for n in dir(mod) if not n.startswith("_")}
        twin_mod = getattr(twin, concept)
        assert names <= set(twin_mod.__all__), (concept, names - set(twin_mod.__all__))
        if _backend._core is not None:
            assert names <= {n for n in dir(getattr(_backend._core, concept)) if not n.startswith("_")}
        for name in names:
            twin_args = list(inspect.signature(getattr(twin_mod, name)).parameters)
            assert native_arg_names(getattr(mod, name)) == twin_args, (concept, name)


@needs_module
def test_host_arguments_are_checked_before_any_device_work():
    """NumPy arrays are refused by name (no silent host round-trip), on any machine."""
    k = _backend._cuda
    with pytest.raises(TypeError, match="out must be a CUDA device array"):
        k.random.fill_uniform(np.zeros(4, np.float32), 1, 2, 0)
    with pytest.raises(TypeError, match="out must be a CUDA device array"):
        k.distributions.sample_gamma(np.zeros(4), np.ones(1), np.ones(1), 1, 2)
    with pytest.raises(TypeError, match="mean_out must be a CUDA device array"):
        k.estimators.column_mean_var(np.zeros((3, 2)), np.zeros(2), np.zeros(2))
    with pytest.raises(TypeError, match="total must be a CUDA device array"):
        k.metrics.decompose(np.zeros((1, 2, 2)), np.zeros(2), np.zeros(2), np.zeros(2))
    assert k.random.fold_in(5, 7) == twin.random.fold_in(5, 7)


# ------------------------------------------------------------------ on a GPU
class _HostArrays:
    """NumPy standing in for CuPy, so that the same comparisons run on the core."""

    float32, float64, int32 = np.float32, np.float64, np.int32
    empty = staticmethod(np.empty)
    zeros = staticmethod(np.zeros)
    ones = staticmethod(np.ones)
    asarray = staticmethod(np.asarray)
    asnumpy = staticmethod(np.asarray)


@pytest.fixture(params=["core", "cuda"])
def impl(request):
    """(kernel module, array module): the CUDA module with CuPy on a GPU, and
    everywhere the C++ core with NumPy, which checks these tests' logic and
    tolerances on machines without a GPU (the core's own tests are elsewhere)."""
    if request.param == "core":
        if _backend._core is None:
            pytest.skip("the native core is not built")
        return _backend._core, _HostArrays()
    if _REASON is not None:
        pytest.skip(f"needs a GPU: {_REASON}")
    import cupy

    return _backend._cuda, cupy


@pytest.fixture
def cp():
    import cupy

    return cupy


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, offset", [(1, 0), (7, 0), (1025, 3), (4099, 1), (64, 2**40 + 1), (5, 2**64 - 5)])
def test_fill_uniform_bit_identical(impl, dtype, n, offset):
    k, cp = impl
    ref = np.empty(n, dtype)
    twin.random.fill_uniform(ref, 12345, 678, offset)
    out = cp.empty(n, dtype)
    k.random.fill_uniform(out, 12345, 678, offset)
    np.testing.assert_array_equal(cp.asnumpy(out).view(np.uint8), ref.view(np.uint8))


def test_fill_uniform_unaligned_output(impl):
    """A view starting one element in takes the scalar-store path of the kernel."""
    k, cp = impl
    base = cp.zeros(1001, np.float32)
    k.random.fill_uniform(base[1:], 9, 3, 0)
    ref = np.empty(1000, np.float32)
    twin.random.fill_uniform(ref, 9, 3, 0)
    got = cp.asnumpy(base)
    assert got[0] == 0.0
    np.testing.assert_array_equal(got[1:], ref)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("offset", [0, 1, 3])
def test_fill_normal_matches_twin(impl, dtype, offset):
    k, cp = impl
    # float64: Box-Muller in double, device log/sin/cos within a few ulps;
    # float32: the same double values rounded once, so at most 1 ulp apart.
    n = 3001
    ref = np.empty(n, dtype)
    twin.random.fill_normal(ref, 77, 5, offset)
    out = cp.empty(n, dtype)
    k.random.fill_normal(out, 77, 5, offset)
    tol = dict(rtol=3e-7, atol=3e-7) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(cp.asnumpy(out), ref, **tol)


@gpu
def test_work_runs_on_cupys_current_stream(cp):
    """Launched on the stream CuPy's interface names; ordered with CuPy work on it."""
    ref = np.empty(1 << 16, np.float32)
    twin.random.fill_uniform(ref, 1, 2, 0)
    s = cp.cuda.Stream(non_blocking=True)
    with s:
        out = cp.empty(1 << 16, np.float32)
        _backend._cuda.random.fill_uniform(out, 1, 2, 0)
        doubled = out * 2  # CuPy work after ours on the same stream
    s.synchronize()
    np.testing.assert_array_equal(cp.asnumpy(doubled), ref * 2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fam", list(LocScaleFamily))
def test_sample_locscale_matches_twin(impl, dtype, fam):
    k, cp = impl
    loc, scale = np.array([0.5, -1.0, 2.0], dtype), np.array([1.0, 0.3, 2.5], dtype)
    ref = np.empty((1001, 3), dtype)
    twin.distributions.sample_locscale(ref, loc, scale, int(fam), 31, 4)
    out = cp.empty((1001, 3), dtype)
    k.distributions.sample_locscale(out, cp.asarray(loc), cp.asarray(scale), int(fam), 31, 4)
    # base draws as in the fill tests; the transforms add a few ulps (log, log1p, exp)
    tol = dict(rtol=2e-6, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cp.asnumpy(out), ref, **tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fam", list(LocScaleFamily))
def test_locscale_log_prob_matches_twin(impl, dtype, fam):
    k, cp = impl
    rng = np.random.default_rng(int(fam))
    loc, scale = np.array([0.5, -1.0, 2.0], dtype), np.array([1.0, 0.3, 2.5], dtype)
    x = (rng.normal(size=(400, 3)) * 3).astype(dtype)
    x[0, 0] = 0.0  # on the boundary of the lognormal / exponential supports
    outs = [np.empty_like(x) for _ in range(3)]
    twin.distributions.locscale_log_prob(x, loc, scale, int(fam), *outs)
    g = [cp.empty(x.shape, dtype) for _ in range(3)]
    k.distributions.locscale_log_prob(cp.asarray(x), cp.asarray(loc), cp.asarray(scale), int(fam), *g)
    tol = dict(rtol=2e-6, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for a, b in zip(g, outs):
        np.testing.assert_allclose(cp.asnumpy(a), b, **tol)  # -inf outside the support on both


@pytest.mark.parametrize("dtype", DTYPES)
def test_gamma_beta_dirichlet_match_twin(impl, dtype):
    k, cp = impl
    # The same words give the same accept/reject decisions; a decision within
    # an ulp of its boundary could differ, which for these 3 x 2000 fixed draws
    # has probability below 1e-9. Accepted values agree within the device libm.
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-13)
    alpha = np.array([0.3, 1.0, 4.5, 50.0], dtype)
    rate = np.array([1.0, 2.0, 0.5, 3.0], dtype)
    ref = np.empty((500, 4), dtype)
    twin.distributions.sample_gamma(ref, alpha, rate, 8, 2)
    out = cp.empty((500, 4), dtype)
    k.distributions.sample_gamma(out, cp.asarray(alpha), cp.asarray(rate), 8, 2)
    np.testing.assert_allclose(cp.asnumpy(out), ref, **tol)

    twin.distributions.sample_beta(ref, alpha, rate, 8, 3)
    k.distributions.sample_beta(out, cp.asarray(alpha), cp.asarray(rate), 8, 3)
    np.testing.assert_allclose(cp.asnumpy(out), ref, **tol)

    conc = np.stack([alpha, rate[::-1].copy()])
    refd = np.empty((250, 2, 4), dtype)
    twin.distributions.sample_dirichlet(refd, conc, 8, 4)
    outd = cp.empty((250, 2, 4), dtype)
    k.distributions.sample_dirichlet(outd, cp.asarray(conc), 8, 4)
    np.testing.assert_allclose(cp.asnumpy(outd), refd, **tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_estimator_accumulations_match_twin(impl, dtype):
    k, cp = impl
    # Welford per 1024-row chunk and Chan's merge, in double, as the core does;
    # the twin sums differently, so the comparison is within double rounding
    # (float64) or the final cast (float32).
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    rng = np.random.default_rng(3)
    n, p = 2500, 37  # three chunks, the last one partial
    x = rng.normal(size=(n, p)).astype(dtype)
    f = rng.normal(size=n).astype(dtype)
    b = rng.normal(size=n).astype(dtype)
    jac = rng.normal(size=(n, p)).astype(dtype)
    dx, df, db, dj = (cp.asarray(a) for a in (x, f, b, jac))

    def both(run_twin, run_cuda, with_terms):
        m, v, t = np.empty(p, dtype), np.empty(p, dtype), np.empty((n, p), dtype) if with_terms else None
        run_twin(m, v, t)
        gm, gv = cp.empty(p, dtype), cp.empty(p, dtype)
        gt = cp.empty((n, p), dtype) if with_terms else None
        run_cuda(gm, gv, gt)
        np.testing.assert_allclose(cp.asnumpy(gm), m, **tol)
        np.testing.assert_allclose(cp.asnumpy(gv), v, **tol)
        if with_terms:
            np.testing.assert_allclose(cp.asnumpy(gt), t, **tol)

    both(lambda m, v, t: twin.estimators.column_mean_var(x, m, v),
         lambda m, v, t: k.estimators.column_mean_var(dx, m, v), False)
    for base, loo in ((None, False), (b, False), (None, True)):
        dbase = None if base is None else db
        both(lambda m, v, t: twin.estimators.score_accumulate(x, f, base, loo, m, v, t),
             lambda m, v, t: k.estimators.score_accumulate(dx, df, dbase, loo, m, v, t), True)
    both(lambda m, v, t: twin.estimators.pathwise_accumulate(x, jac, m, v, t),
         lambda m, v, t: k.estimators.pathwise_accumulate(dx, dj, m, v, t), True)
    both(lambda m, v, t: twin.estimators.pathwise_accumulate(x, None, m, v),
         lambda m, v, t: k.estimators.pathwise_accumulate(dx, None, m, v), False)
    # one sample: mean, NaN variance, as on every backend
    m1, v1 = cp.empty(p, dtype), cp.empty(p, dtype)
    k.estimators.column_mean_var(dx[:1], m1, v1)
    np.testing.assert_array_equal(cp.asnumpy(m1), x[0])
    assert np.isnan(cp.asnumpy(v1)).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_decompose_matches_twin(impl, dtype):
    k, cp = impl
    rng = np.random.default_rng(5)
    lp = rng.normal(size=(12, 300, 7)) * 3
    lp -= np.log(np.exp(lp).sum(-1, keepdims=True))
    lp[0, 0, 0] = -np.inf  # an exact zero probability: 0 log 0 = 0
    lp = lp.astype(dtype)
    outs = [np.empty(300, dtype) for _ in range(3)]
    dev_ref = twin.metrics.decompose(lp, *outs)
    g = [cp.empty(300, dtype) for _ in range(3)]
    dev = k.metrics.decompose(cp.asarray(lp), *g)
    tol = dict(rtol=2e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    for a, b in zip(g, outs):
        np.testing.assert_allclose(cp.asnumpy(a), b, **tol)
    assert abs(dev - dev_ref) <= (1e-5 if dtype == np.float32 else 1e-13)
    lp[3, 5, 2] = np.nan
    assert np.isnan(k.metrics.decompose(cp.asarray(lp), *g))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_classes", [1, 2, 7])
def test_point_scores_match_twin(impl, dtype, n_classes):
    k, cp = impl
    from bayesgrad._codes import PointScore

    rng = np.random.default_rng(n_classes)
    lp = rng.normal(size=(11, 200, n_classes)) * 2
    lp -= np.log(np.exp(lp).sum(-1, keepdims=True))
    lp[:, 3, :] = lp[0, 3, :]  # every sample predicts alike: ties in the counts
    lp = lp.astype(dtype)
    tol = dict(rtol=2e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    for kind in PointScore:
        ref = np.empty(200, dtype)
        dev_ref = twin.acquisition.point_scores(lp, int(kind), ref)
        out = cp.empty(200, dtype)
        dev = k.acquisition.point_scores(cp.asarray(lp), int(kind), out)
        # variation ratios: the same argmax counts, 1 - count / S rounded as the core does (within an ulp of
        # the twin's); the others go through exp
        got = cp.asnumpy(out)
        if kind == PointScore.mean_std:
            # point 3's samples agree: the sums shifted by the first sample are exact zeros everywhere
            assert got[3] == 0 and ref[3] == 0
        np.testing.assert_allclose(got, ref, **tol)
        assert abs(dev - dev_ref) <= (1e-5 if dtype == np.float32 else 1e-13)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lik", [0, 1, 2, 3])
def test_likelihood_nll_matches_twin(impl, dtype, lik):
    k, cp = impl
    rng = np.random.default_rng(lik)
    S, N, K = 3, 50, 4
    F = (rng.normal(size=(S, N, K)) * 3).astype(dtype)
    D = {0: K, 1: K // 2, 2: 1, 3: K}[lik]
    y = {0: rng.normal(size=(N, D)), 1: rng.normal(size=(N, D)), 2: rng.integers(0, K, size=(N, 1)),
         3: rng.integers(0, 2, size=(N, D))}[lik].astype(dtype)
    log_noise = rng.normal(size=D).astype(dtype) * 0.3
    ref = np.empty((S, N), dtype)
    twin.mlp.likelihood_nll(F, y, lik, log_noise, ref)
    out = cp.empty((S, N), dtype)
    k.mlp.likelihood_nll(cp.asarray(F), cp.asarray(y), lik, cp.asarray(log_noise), out)
    tol = dict(rtol=2e-6, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cp.asnumpy(out), ref, **tol)
    if lik == 2:  # a label outside [0, K) is a ValueError, as on every backend
        y[7, 0] = K
        with pytest.raises(ValueError, match="class label"):
            k.mlp.likelihood_nll(cp.asarray(F), cp.asarray(y), lik, cp.asarray(log_noise), out)


@gpu
def test_device_arguments_are_checked(cp):
    k = _backend._cuda
    out = cp.empty((10, 3), np.float64)
    with pytest.raises(TypeError, match="loc must have the dtype of out"):
        k.distributions.sample_locscale(out, cp.zeros(3, np.float32), cp.ones(3), 0, 1, 2)
    with pytest.raises(ValueError, match="family"):
        k.distributions.sample_locscale(out, cp.zeros(3), cp.ones(3), 99, 1, 2)
    with pytest.raises(ValueError, match="multiple of loc size"):
        k.distributions.sample_locscale(out, cp.zeros(4), cp.ones(4), 0, 1, 2)
    with pytest.raises(ValueError, match="C-contiguous"):
        k.random.fill_uniform(cp.empty((10, 4))[:, ::2], 1, 2, 0)
    with pytest.raises(TypeError, match="float32 or float64"):
        k.random.fill_uniform(cp.empty(4, np.int32), 1, 2, 0)
    with pytest.raises(ValueError, match="offset"):
        k.random.fill_uniform(cp.empty(4), 1, 2, 2**64 - 2)
    with pytest.raises(ValueError, match="mean_out must have shape"):
        k.estimators.column_mean_var(cp.zeros((5, 3)), cp.zeros(2), cp.zeros(3))
    with pytest.raises(ValueError, match="either baseline or loo"):
        k.estimators.score_accumulate(cp.zeros((5, 3)), cp.zeros(5), cp.zeros(5), True, cp.zeros(3), cp.zeros(3))
