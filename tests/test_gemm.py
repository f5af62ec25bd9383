"""The engine's GEMM (mlp.gemm: pool_gemm, the MLP engine's and curvature kernels' products):
the narrow-dimension kernels of cpp/src/narrow_gemm.cpp (a weight gradient A^T B with M <= 16;
N <= two 64-byte vectors) and OpenBLAS beyond them, against a float64 reference on every
SIMD path, with alpha, beta (C never read when beta is 0), both dtypes and every transpose, on
shapes that leave tails; the same values at 1 and 2 threads; the twin beside them."""
import numpy as np
import pytest

import bayesgrad as bg
from bayesgrad import _backend
from bayesgrad import _numpy as twin

pytestmark = pytest.mark.single_backend

native = pytest.mark.skipif(not _backend.native_available(), reason="no native core")


def _paths():
    from helpers import on_simd_path

    return ["scalar"] + [p for p in ("avx512", "avx2")
                         if on_simd_path(p, lambda: bg.backend_info()["simd"]).startswith(p)]


def _cases():
    """(M, N, K) by kernel: reduce (A^T B, 2 <= M <= 16 or 2 <= N <= 16, K >= 256), rows (N <= 2 vectors), and products
    left to OpenBLAS (short inner dimensions among them)."""
    reduce = [(m, n, k) for m in (1, 3, 10, 16) for n in (8, 9, 17, 100) for k in (256, 2049)]
    reduce += [(10, 100, 5000), (2, 8, 300)]
    # the same with the roles swapped (N <= 16 columns of a wide M: reduce on B^T A, stored transposed)
    reduce += [(m, n, k) for m in (8, 17, 100) for n in (2, 10, 16) for k in (128, 2049)] + [(100, 10, 5000)]
    reduce += [(400, 10, 127), (400, 10, 128)]  # either side of the swapped reduce's threshold
    rows = [(m, n, k) for m in (16, 17, 103) for n in (1, 2, 7, 8, 9, 16, 31) for k in (1, 13, 100)]
    short = [(m, n, k) for m in (16, 37) for n in (8, 9, 33, 100, 401) for k in (1, 10, 16)]
    blas = [(40, 50, 30), (3, 5, 7), (200, 64, 64)]
    return reduce + rows + short + blas


def _operands(M, N, K, ta, tb, dtype, seed):
    r = np.random.default_rng(seed)
    a = r.standard_normal((K, M) if ta else (M, K)).astype(dtype)
    b = r.standard_normal((N, K) if tb else (K, N)).astype(dtype)
    c0 = r.standard_normal((M, N)).astype(dtype)
    return a, b, c0


def _check(mod, M, N, K, ta, tb, dtype, alpha, beta, seed=0):
    a, b, c0 = _operands(M, N, K, ta, tb, dtype, seed)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    ref = alpha * ((a64.T if ta else a64) @ (b64.T if tb else b64)) + beta * c0.astype(np.float64)
    c = c0.copy() if beta != 0 else np.full((M, N), np.nan, dtype=dtype)  # beta 0: c must not be read
    mod.gemm(a, b, c, ta, tb, alpha, beta)
    # error bound of a K-term sum: K eps sum |a||b| (+ the beta term's rounding)
    scale = abs(alpha) * ((np.abs(a64.T if ta else a64) @ np.abs(b64.T if tb else b64))) + abs(beta) * np.abs(c0)
    eps = np.finfo(dtype).eps
    assert np.all(np.abs(c - ref) <= (K + 2) * eps * scale + 1e-300), (M, N, K, ta, tb)
    return c


@native
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False), (True, True)])
def test_gemm_against_float64_reference_on_every_path(dtype, ta, tb):
    from helpers import on_simd_path

    core = _backend._core.mlp
    for path in _paths():
        for i, (M, N, K) in enumerate(_cases()):
            for alpha, beta in ((1.0, 0.0), (-0.5, 1.0), (2.0, 0.25)) if i % 7 == 0 else ((1.0, 0.0),):
                on_simd_path(path, lambda: _check(core, M, N, K, ta, tb, dtype, alpha, beta, seed=i))


@native
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_same_values_at_any_thread_count_and_twin_parity(dtype):
    core = _backend._core.mlp
    prev = bg.get_num_threads()
    try:
        for i, (M, N, K) in enumerate(_cases()[::3] + [(10, 100, 9000), (100, 10, 9000), (4000, 10, 100),
                                                        (4000, 100, 10)]):
            for ta, tb in ((True, False), (False, True), (False, False)):
                a, b, c0 = _operands(M, N, K, ta, tb, dtype, i)
                outs = []
                for t in (1, 2):
                    bg.set_num_threads(t)
                    c = np.empty((M, N), dtype=dtype)
                    core.gemm(a, b, c, ta, tb, 1.0, 0.0)
                    outs.append(c)
                np.testing.assert_array_equal(outs[0], outs[1])
                ct = np.empty((M, N), dtype=dtype)
                twin.mlp.gemm(a, b, ct, ta, tb, 1.0, 0.0)
                tol = 1e-4 if dtype == np.float32 else 1e-11
                np.testing.assert_allclose(outs[0], ct, rtol=tol, atol=tol * np.sqrt(K))
    finally:
        bg.set_num_threads(prev)


def test_gemm_refuses_bad_arguments():
    mods = [twin.mlp] + ([_backend._core.mlp] if _backend.native_available() else [])
    a, b = np.ones((4, 3)), np.ones((3, 5))
    for mod in mods:
        with pytest.raises(ValueError, match="inner"):
            mod.gemm(a, b.T.copy(), np.empty((4, 5)), False, False, 1.0, 0.0)
        with pytest.raises(ValueError, match="shape"):
            mod.gemm(a, b, np.empty((5, 4)), False, False, 1.0, 0.0)
        with pytest.raises((TypeError, ValueError)):
            mod.gemm(a.astype(np.float32), b, np.empty((4, 5)), False, False, 1.0, 0.0)
        ro = np.empty((4, 5))
        ro.flags.writeable = False
        with pytest.raises(ValueError, match="c"):
            mod.gemm(a, b, ro, False, False, 1.0, 0.0)
