"""Regression tests of issue 13 (reliability): each test failed before its fix."""
import numpy as np
import pytest

import bayesgrad as bg
from bayesgrad import _backend

from helpers import BACKENDS

TOP = 2 ** 64 - 1


# ---------------------------------------------------------------- 1. RNG offsets near 2^64

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["uniform", "normal"])
def test_rng_offset_past_2_64_is_refused(kind, dtype):
    draw = getattr(bg.random, kind)
    o = np.full(5, 7.0, dtype=dtype)
    with pytest.raises(ValueError, match="offset"):
        draw(None, seed=3, offset=2 ** 64 - 2, out=o, dtype=dtype)
    np.testing.assert_array_equal(o, 7.0)
    for off, n in ((2 ** 64, 1), (2 ** 64 - 1, 3), (2 ** 70, 2)):
        with pytest.raises(ValueError, match="offset"):
            draw(n, seed=3, offset=off, dtype=dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["uniform", "normal"])
def test_rng_last_elements_below_2_64_agree(kind, dtype):
    # a draw ending exactly at element 2^64 - 1 is allowed and the same in pieces and on every backend
    draw = getattr(bg.random, kind)
    n = 200  # crosses an 8-block group boundary near the top
    whole = draw(n, seed=3, stream=5, offset=2 ** 64 - n, dtype=dtype)
    assert np.all(np.isfinite(whole))
    if kind == "uniform":
        assert np.all((whole > 0) & (whole < 1))
    tol = dict(rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)  # SIMD vs scalar normals
    last = draw(1, seed=3, stream=5, offset=TOP, dtype=dtype)
    np.testing.assert_allclose(last[0], whole[-1], **tol)
    piece = draw(7, seed=3, stream=5, offset=2 ** 64 - 150, dtype=dtype)
    np.testing.assert_allclose(piece, whole[50:57], **tol)
    for name in BACKENDS:
        with bg.use_backend(name):
            other = draw(n, seed=3, stream=5, offset=2 ** 64 - n, dtype=dtype)
        np.testing.assert_allclose(other, whole, **tol)


@pytest.mark.single_backend
@pytest.mark.skipif(not _backend.native_available(), reason="native core not built")
def test_rng_kernels_refuse_overflow_directly():
    # a direct kernel call cannot leave its output unwritten either
    from bayesgrad import _core, _numpy
    for mod in (_core.random, _numpy.random):
        for fn in (mod.fill_uniform, mod.fill_normal):
            o = np.full(5, 7.0)
            with pytest.raises(ValueError, match="offset"):
                fn(o, 3, 0, 2 ** 64 - 2)
            np.testing.assert_array_equal(o, 7.0)
