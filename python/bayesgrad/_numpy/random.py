"""NumPy twin of cpp/src/random.cpp and cpp/include/bayesgrad/philox.hpp.

Same functions, same signatures, same streams: uniforms bit-identical to the
native core; normals computed in float64 by libm (float32 results rounded).
"""
from __future__ import annotations

import numpy as np

# The kernels; the helpers below them (blocks_at, substream_blocks, u01_*) are
# shared with the other twins.
__all__ = ["philox4x32", "fill_uniform", "fill_normal", "fold_in", "simd_limit"]

M0, M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
W0, W1 = 0x9E3779B9, 0xBB67AE85
MASK32 = np.uint64(0xFFFFFFFF)
SUBSTREAM_BIT = 1 << 63
SUBSTREAM_BLOCKS = 1 << 16
_CHUNK_BLOCKS = 1 << 18
_TWO_PI = 2.0 * np.pi


def _rounds(c0, c1, c2, c3, k0, k1):
    """Ten Philox rounds on uint64 arrays that hold 32-bit values."""
    for r in range(10):
        if r:
            k0 = (k0 + W0) & 0xFFFFFFFF
            k1 = (k1 + W1) & 0xFFFFFFFF
        p0 = c0 * M0
        p1 = c2 * M1
        c0, c1, c2, c3 = (p1 >> np.uint64(32)) ^ c1 ^ np.uint64(k0), p1 & MASK32, \
            (p0 >> np.uint64(32)) ^ c3 ^ np.uint64(k1), p0 & MASK32
    return c0, c1, c2, c3


def philox4x32(counter, key):
    """Philox4x32-10 blocks: counter (n, 4) uint32, key (2,) -> (n, 4) uint32."""
    c = np.ascontiguousarray(counter, dtype=np.uint32)
    k = np.ascontiguousarray(key, dtype=np.uint32)
    if c.ndim != 2 or c.shape[1] != 4:
        raise ValueError("counter must have shape (n, 4)")
    if k.shape != (2,):
        raise ValueError("key must have shape (2,)")
    cols = [c[:, i].astype(np.uint64) for i in range(4)]
    out = _rounds(*cols, int(k[0]), int(k[1]))
    return np.stack(out, axis=1).astype(np.uint32)


def blocks_at(seed, stream, blocks):
    """Philox blocks at the given uint64 block indices of (seed, stream): (n, 4) uint32."""
    seed, stream = int(seed), int(stream)
    blk = np.asarray(blocks, dtype=np.uint64).reshape(-1)
    n = blk.size
    c2 = np.full(n, stream & 0xFFFFFFFF, dtype=np.uint64)
    c3 = np.full(n, stream >> 32, dtype=np.uint64)
    out = _rounds(blk & MASK32, blk >> np.uint64(32), c2, c3, seed & 0xFFFFFFFF, seed >> 32)
    return np.stack(out, axis=1).astype(np.uint32)


def stream_blocks(seed, stream, first_block, n_blocks):
    """Blocks first_block .. first_block+n_blocks-1 of (seed, stream): (n, 4) uint32."""
    return blocks_at(seed, stream, np.uint64(first_block) + np.arange(n_blocks, dtype=np.uint64))


def substream_blocks(seed, stream, elements, k):
    """Block k of each element's sub-stream (docs/design.md): (len(elements), 4) uint32.

    Vectorised form of philox.hpp's SubStream: a rejection sampler in NumPy runs
    its k-th round for all still-pending elements at once.
    """
    el = np.asarray(elements, dtype=np.uint64)
    blk = el * np.uint64(SUBSTREAM_BLOCKS) + np.uint64(int(k) & (SUBSTREAM_BLOCKS - 1))
    return blocks_at(seed, int(stream) | SUBSTREAM_BIT, blk)


def u01_f32(w):
    """float32 uniforms from 32-bit words (exact)."""
    return ((w >> np.uint32(9)).astype(np.float32) + np.float32(0.5)) * np.float32(2.0 ** -23)


def u01_f64(lo, hi):
    """float64 uniforms from word pairs (exact)."""
    m = (hi.astype(np.uint64) << np.uint64(20)) | (lo.astype(np.uint64) >> np.uint64(12))
    return (m.astype(np.float64) + 0.5) * 2.0 ** -52


def _block_values(w, dtype, normal):
    """Elements produced by blocks w (n, 4): (n, E) with E = 4 (f32) or 2 (f64)."""
    if dtype == np.float32:
        if not normal:
            return u01_f32(w)
        u = u01_f32(w).astype(np.float64)
        r = np.sqrt(-2.0 * np.log(u[:, 0::2]))
        th = _TWO_PI * u[:, 1::2]
        z = np.empty(w.shape, dtype=np.float64)
        z[:, 0::2] = r * np.cos(th)
        z[:, 1::2] = r * np.sin(th)
        return z.astype(np.float32)
    a = u01_f64(w[:, 0], w[:, 1])
    b = u01_f64(w[:, 2], w[:, 3])
    if not normal:
        return np.stack([a, b], axis=1)
    r = np.sqrt(-2.0 * np.log(a))
    th = _TWO_PI * b
    return np.stack([r * np.cos(th), r * np.sin(th)], axis=1)


def _fill(out, seed, stream, offset, normal):
    if out.dtype not in (np.float32, np.float64) or not out.flags.c_contiguous:
        raise TypeError("out must be a C-contiguous float32 or float64 array")
    flat = out.reshape(-1)
    n = flat.size
    if n == 0:
        return
    per = 4 if out.dtype == np.float32 else 2
    g0 = int(offset)
    if g0 < 0 or g0 + n - 1 > 2 ** 64 - 1:  # the core's contract: refuse, never wrap
        raise ValueError("offset: the draw's last element offset + n - 1 exceeds 2^64 - 1")
    b_first = g0 // per
    b_last = (g0 + n - 1) // per
    pos = 0
    b = b_first
    while b <= b_last:
        nb = min(_CHUNK_BLOCKS, b_last - b + 1)
        vals = _block_values(stream_blocks(seed, stream, b, nb), out.dtype, normal).reshape(-1)
        start = g0 - b * per if b == b_first else 0
        take = min(vals.size - start, n - pos)
        flat[pos:pos + take] = vals[start:start + take]
        pos += take
        b += nb


def fill_uniform(out, seed, stream, offset):
    """Uniforms in (0, 1) into ``out``; element i is stream element offset+i."""
    _fill(out, seed, stream, offset, normal=False)


def fill_normal(out, seed, stream, offset):
    """Standard normals into ``out``; element i is stream element offset+i."""
    _fill(out, seed, stream, offset, normal=True)


_M64 = (1 << 64) - 1


def _mix64(z):
    z = (z + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def fold_in(stream, tag):
    """SplitMix64-style derivation of an independent stream id (< 2**63)."""
    return _mix64((int(stream) ^ _mix64(int(tag))) & _M64) & (SUBSTREAM_BIT - 1)


def simd_limit(path):
    """No SIMD paths of its own in NumPy; kept for signature parity with the native core.

    Returns ``"scalar"``; ``path`` is checked as the native core checks it."""
    if path not in ("scalar", "avx2", "avx2+fma", "avx512"):
        raise ValueError(f"path must be 'scalar', 'avx2' or 'avx512', got {path!r}")
    return "scalar"
