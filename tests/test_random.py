import numpy as np
import pytest
from scipy import stats

import bayesgrad as bg
from bayesgrad import _backend, _numpy

from helpers import BACKENDS, on_simd_path, simd_and_scalar

# Random123 kat_vectors, philox4x32 10: counter, key -> output
KAT = [
    ([0, 0, 0, 0], [0, 0], [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
    ([0xFFFFFFFF] * 4, [0xFFFFFFFF] * 2, [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
    ([0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344], [0xA4093822, 0x299F31D0],
     [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]),
]


@pytest.mark.parametrize("ctr,key,expected", KAT)
def test_philox_known_answers(ctr, key, expected):
    out = bg.random.philox4x32(np.array([ctr], dtype=np.uint32), np.array(key, dtype=np.uint32))
    assert out.dtype == np.uint32
    assert out.tolist() == [expected]


def test_word_addressing_matches_design():
    # word w of (seed, stream) is lane w % 4 of block w // 4 with
    # key = (seed lo, seed hi), counter = (block lo, block hi, stream lo, stream hi)
    seed, stream = 0x0123456789ABCDEF, 0x1122334455667788 & (2 ** 63 - 1)
    blocks = np.array([0, 1, 2 ** 32 + 5], dtype=np.uint64)
    ctr = np.stack([blocks & 0xFFFFFFFF, blocks >> 32, np.full(3, stream & 0xFFFFFFFF),
                    np.full(3, stream >> 32)], axis=1).astype(np.uint32)
    words = bg.random.philox4x32(ctr, np.array([seed & 0xFFFFFFFF, seed >> 32], dtype=np.uint32))
    for b, w in zip(blocks, words):
        got = bg.random.uniform(4, seed=seed, stream=stream, dtype=np.float32, offset=int(b) * 4)
        want = ((w >> 9).astype(np.float64) + 0.5) * 2.0 ** -23
        np.testing.assert_array_equal(got, want.astype(np.float32))
        got64 = bg.random.uniform(2, seed=seed, stream=stream, dtype=np.float64, offset=int(b) * 2)
        w64 = w.astype(np.uint64)
        m = [(int(w64[2 * j + 1]) << 20) | (int(w64[2 * j]) >> 12) for j in range(2)]
        np.testing.assert_array_equal(got64, [(mm + 0.5) * 2.0 ** -52 for mm in m])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_uniform_range_and_exactness(dtype):
    u = bg.random.uniform(100_000, seed=3, dtype=dtype)
    assert u.dtype == dtype
    assert u.min() > 0 and u.max() < 1
    bits = 23 if dtype == np.float32 else 52
    k = u.astype(np.float64) * 2.0 ** bits - 0.5
    np.testing.assert_array_equal(k, np.round(k))  # on the (m + 1/2) 2^-bits grid


@pytest.mark.single_backend
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("offset", [0, 1, 3, 33, 1000])
@pytest.mark.parametrize("n", [1, 7, 64, 1031, 100_003])
def test_backend_parity(dtype, offset, n):
    if len(BACKENDS) < 2:
        pytest.skip("only one backend available")
    res = {}
    for name in BACKENDS:
        with bg.use_backend(name):
            res[name] = (bg.random.uniform(n, seed=11, stream=5, dtype=dtype, offset=offset),
                         bg.random.normal(n, seed=11, stream=5, dtype=dtype, offset=offset))
    (u0, z0), (u1, z1) = res.values()
    np.testing.assert_array_equal(u0, u1)
    tol = 2e-6 if dtype == np.float32 else 1e-13
    assert np.max(np.abs(z0.astype(np.float64) - z1) / (1 + np.abs(z1.astype(np.float64)))) < tol


@pytest.mark.single_backend
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_simd_path_matches_scalar_reference(dtype):
    if not _backend.native_available():
        pytest.skip("native core not built")
    core = _backend._core
    buf = np.empty(50_000, dtype)

    def draw():
        core.random.fill_normal(buf, 5, 9, 0)
        return buf.copy()

    a, b = simd_and_scalar(draw)
    tol = 2e-6 if dtype == np.float32 else 1e-13
    assert np.max(np.abs(a.astype(np.float64) - b) / (1 + np.abs(b.astype(np.float64)))) < tol


def _cpu_has_avx512():
    return _backend.native_available() and on_simd_path("avx512", lambda: bg.backend_info()["simd"]) == "avx512"


@pytest.mark.single_backend
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_avx512_path_is_bit_identical_to_avx2(dtype):
    """The AVX-512 kernels repeat the AVX2 arithmetic operation for operation on
    wider vectors: uniforms, normals and the Gamma family must agree bit for bit,
    on ranges with scalar heads and tails (offset 7) and on an output above the
    8 MiB size where the bulk samplers switch to 2 MiB chunks."""
    if not _cpu_has_avx512():
        pytest.skip("CPU without AVX-512F/DQ/BW/VL")
    core = _backend._core
    gamma = bg.distributions.Gamma(np.array([0.4, 1.0, 2.5, 7.0], dtype=dtype))
    beta = bg.distributions.Beta(np.array([0.5, 3.0], dtype=dtype), np.array([2.0, 0.7], dtype=dtype))
    scalar_gamma = bg.distributions.Gamma(np.asarray(0.7, dtype=dtype), np.asarray(3.0, dtype=dtype))

    def draws():
        big = np.empty((9 << 20) // np.dtype(dtype).itemsize + 5, dtype)
        core.random.fill_normal(big, 3, 1, 0)
        u = bg.random.uniform(100_003, seed=4, stream=2, dtype=dtype, offset=7)
        z = bg.random.normal(100_003, seed=4, stream=2, dtype=dtype, offset=7)
        return (big, u, z, gamma.sample(20_001, seed=5), beta.sample(10_001, seed=6),
                scalar_gamma.sample(20_003, seed=7))

    wide, narrow = on_simd_path("avx512", draws), on_simd_path("avx2", draws)
    for a, b in zip(wide, narrow):
        np.testing.assert_array_equal(a, b)
    # uniforms are exact on every path (the RNG contract)
    np.testing.assert_array_equal(wide[1], on_simd_path("scalar", lambda: bg.random.uniform(
        100_003, seed=4, stream=2, dtype=dtype, offset=7)))


@pytest.mark.single_backend
def test_simd_limit_rejects_unknown_paths():
    if not _backend.native_available():
        pytest.skip("native core not built")
    with pytest.raises(ValueError, match="path"):
        _backend._core.random.simd_limit("sse9")


@pytest.mark.single_backend
def test_same_output_for_any_thread_count():
    if not _backend.native_available():
        pytest.skip("native core not built")
    prev = bg.get_num_threads()
    outs = []
    try:
        for t in (1, 2, 3):
            bg.set_num_threads(t)
            outs.append((bg.random.normal(300_001, seed=1, dtype=np.float32),
                         bg.random.uniform(300_001, seed=1, dtype=np.float64)))
    finally:
        bg.set_num_threads(prev)
    for z, u in outs[1:]:
        np.testing.assert_array_equal(z, outs[0][0])
        np.testing.assert_array_equal(u, outs[0][1])


@pytest.mark.single_backend
def test_concurrent_calls_from_python_threads():
    # The GIL is released in the kernels, so several Python threads can be in
    # the thread pool's parallel_chunks at once: one gets the pool, the others
    # run serially on their own thread. Every result must equal the serial one.
    import threading

    if not _backend.native_available():
        pytest.skip("native core not built")
    prev = bg.get_num_threads()
    jobs = [(seed, n) for seed in range(6) for n in (200_003, 77_777)]
    try:
        bg.set_num_threads(1)
        want = [bg.random.normal(n, seed=s, dtype=np.float32) for s, n in jobs]
        bg.set_num_threads(2)
        got = [None] * len(jobs)

        def run(k):
            s, n = jobs[k]
            for _ in range(3):
                got[k] = bg.random.normal(n, seed=s, dtype=np.float32)

        threads = [threading.Thread(target=run, args=(k,)) for k in range(len(jobs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        bg.set_num_threads(prev)
    for w, g in zip(want, got):
        np.testing.assert_array_equal(g, w)


def test_offsets_compose():
    whole = bg.random.normal(1000, seed=2, stream=1)
    parts = np.concatenate([bg.random.normal(n, seed=2, stream=1, offset=o)
                            for o, n in [(0, 3), (3, 500), (503, 497)]])
    np.testing.assert_allclose(parts, whole, rtol=0, atol=1e-13)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normal_goodness_of_fit(dtype):
    # KS test at fixed seeds; false-alarm probability 1e-3 per call.
    z = bg.random.normal(200_000, seed=123, dtype=dtype).astype(np.float64)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    u = bg.random.uniform(200_000, seed=321, dtype=dtype).astype(np.float64)
    assert stats.kstest(u, "uniform").pvalue > 1e-3


def test_streams_and_seeds_are_independent():
    a = bg.random.normal(100_000, seed=1, stream=0)
    b = bg.random.normal(100_000, seed=1, stream=1)
    c = bg.random.normal(100_000, seed=2, stream=0)
    # |corr| of independent N=1e5 samples exceeds 5/sqrt(N) with prob ~ 6e-7
    for x, y in [(a, b), (a, c), (b, c)]:
        assert abs(np.corrcoef(x, y)[0, 1]) < 5 / np.sqrt(1e5)


def test_fold_in():
    s = bg.random.fold_in(0, "dropout")
    assert 0 <= s < 2 ** 63
    assert s == bg.random.fold_in(0, bg.random.TAGS["dropout"])
    assert s != bg.random.fold_in(0, "weights") and s != bg.random.fold_in(1, "dropout")
    assert bg.random.fold_in(7, "my-own-tag") == bg.random.fold_in(7, "my-own-tag")
    # the SplitMix64 finaliser of 0 is a published constant
    assert _numpy.random._mix64(0) == 0xE220A8397B1DCDAF


@pytest.mark.single_backend
def test_fold_in_parity():
    if not _backend.native_available():
        pytest.skip("native core not built")
    for stream, tag in [(0, 0), (5, 123), (2 ** 63 - 1, 2 ** 64 - 1)]:
        assert _backend._core.random.fold_in(stream, tag) == _numpy.random.fold_in(stream, tag)


def test_seed_none_records_entropy():
    a = bg.random.normal(10, seed=None)
    s = bg.random.last_seed
    assert isinstance(s, int)
    np.testing.assert_array_equal(a, bg.random.normal(10, seed=s))


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(shape=-1), ValueError, "shape"),
    (dict(shape=3, dtype=np.int32), TypeError, "dtype"),
    (dict(shape=3, seed=-1), ValueError, "seed"),
    (dict(shape=3, seed=2 ** 64), ValueError, "seed"),
    (dict(shape=3, seed=1.5), TypeError, "seed"),
    (dict(shape=3, stream=2 ** 63), ValueError, "stream"),
    (dict(shape=3, offset=-2), ValueError, "offset"),
    (dict(shape=3, out=np.empty(3, np.float32)), TypeError, "out"),
    (dict(shape=3, out=np.empty((3, 2))[:, 0]), ValueError, "out"),
])
def test_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        bg.random.normal(**kwargs)


def test_philox_bad_arguments():
    with pytest.raises(ValueError, match="counter"):
        bg.random.philox4x32(np.zeros((2, 3), np.uint32), np.zeros(2, np.uint32))
    with pytest.raises(ValueError, match="key"):
        bg.random.philox4x32(np.zeros((2, 4), np.uint32), np.zeros(3, np.uint32))
    with pytest.raises(TypeError, match="counter"):
        bg.random.philox4x32(np.zeros((2, 4)), np.zeros(2, np.uint32))


def test_empty_and_out():
    assert bg.random.uniform(0).shape == (0,)
    out = np.empty((3, 4), np.float32)
    r = bg.random.normal((3, 4), seed=1, dtype=np.float32, out=out)
    assert r is out
    np.testing.assert_array_equal(out.ravel(), bg.random.normal(12, seed=1, dtype=np.float32))
