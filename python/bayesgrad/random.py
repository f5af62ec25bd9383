"""Counter-based random numbers: Philox4x32-10, the same stream on every backend.

A stream of 32-bit words is addressed by ``(seed, stream, word)``
(docs/design.md, "RNG"). Element ``i`` of a draw always maps to the same words, so results do
not depend on the backend or the thread count; uniforms are bit-identical
everywhere, normals agree within 2e-6(1+|z|) (float32) and 1e-13(1+|z|)
(float64).

Call shape: ``f(shape, seed=0, stream=0, dtype=np.float64, offset=0, out=None)``.
``seed=None`` draws fresh OS entropy; the seed used is kept in
``bayesgrad.random.last_seed`` (and models record theirs) so that the run can
be repeated.
"""
from __future__ import annotations

import numpy as np

from . import _backend
from . import _checks as C
from ._codes import STREAM_TAGS, fnv1a64

__all__ = ["philox4x32", "uniform", "normal", "fold_in", "resolve_seed", "TAGS", "last_seed"]

#: The registered tags for ``fold_in``: the independent uses of random words
#: inside the package (defined once in bayesgrad._codes.STREAM_TAGS).
TAGS = dict(STREAM_TAGS)

last_seed = None  # the seed drawn for the most recent seed=None call


def resolve_seed(seed, name="seed"):
    """A seed as a 64-bit int; ``None`` gives fresh OS entropy (recorded in ``last_seed``). ``name``:
    the argument's name in error messages (``random_state`` for the scikit-learn estimators)."""
    global last_seed
    if seed is None:
        import secrets  # here, not at import: it pulls in hashlib and hmac (~10 ms)

        seed = secrets.randbits(64)
        last_seed = seed
        return seed
    seed = C.integer(seed, name)
    if not 0 <= seed < 2 ** 64:
        raise ValueError(f"{name} must be in [0, 2**64), got {seed}")
    return seed


def check_stream(stream):
    """A user stream id as an int in [0, 2**63) (shared by every function that draws)."""
    stream = C.integer(stream, "stream")
    if not 0 <= stream < 2 ** 63:
        raise ValueError(f"stream must be in [0, 2**63) (ids >= 2**63 are per-element sub-streams), got {stream}")
    return stream


def check_offset(offset, n):
    """``offset`` of a draw of ``n`` elements: an int >= 0 whose last element
    ``offset + n - 1`` is at most 2**64 - 1 (element indices are 64-bit; a draw
    past the end is refused on every backend, never wrapped)."""
    offset = C.integer(offset, "offset", 0)
    if offset + max(int(n), 1) - 1 > 2 ** 64 - 1:
        raise ValueError(f"offset + n - 1 must be <= 2**64 - 1 (64-bit element indices), got offset={offset} "
                         f"with n={n}")
    return offset


def _tag_int(tag):
    if isinstance(tag, str):
        return STREAM_TAGS[tag] if tag in STREAM_TAGS else fnv1a64(tag)
    tag = C.integer(tag, "tag")
    if not 0 <= tag < 2 ** 64:
        raise ValueError(f"tag must be in [0, 2**64), got {tag}")
    return tag


def fold_in(stream, tag) -> int:
    """An independent stream id derived from ``stream`` and ``tag`` (int or str).

    ``mix64(stream ^ mix64(tag)) mod 2**63`` with SplitMix64's finaliser; string
    tags from ``TAGS`` map to their integer, other strings through FNV-1a 64.
    """
    return int(_backend.kernels().random.fold_in(check_stream(stream), _tag_int(tag)))


def philox4x32(counter, key):
    """Raw Philox4x32-10: ``counter`` (n, 4) uint32, ``key`` (2,) uint32 -> (n, 4) uint32."""
    c = C.to_numpy(counter, "counter")
    k = C.to_numpy(key, "key")
    for name, a in (("counter", c), ("key", k)):
        if a.dtype.kind not in "ui":
            raise TypeError(f"{name} must be an unsigned integer array, got dtype {a.dtype}")
        if a.size and (a.min() < 0 or a.max() > 0xFFFFFFFF):
            raise ValueError(f"{name} values must fit in 32 bits")
    if c.ndim == 1:
        c = c.reshape(1, -1)
    if c.ndim != 2 or c.shape[1] != 4:
        raise ValueError(f"counter must have shape (n, 4), got {C.to_numpy(counter, 'counter').shape}")
    if k.shape != (2,):
        raise ValueError(f"key must have shape (2,), got {k.shape}")
    c = np.ascontiguousarray(c, dtype=np.uint32)
    k = np.ascontiguousarray(k, dtype=np.uint32)
    return _backend.kernels().random.philox4x32(c, k)


def _draw(kind, shape, seed, stream, dtype, offset, out):
    dt = C.float_dtype(dtype)
    if out is None:
        shape = C.shape_tuple(shape)
        C.check_allocation(C.n_bytes(shape, dt), f"shape={shape}")
        out = _backend.empty(shape, dt)
    else:
        if not isinstance(out, np.ndarray):
            raise TypeError("out must be a NumPy array")
        if out.dtype != dt:
            raise TypeError(f"out must have dtype {dt}, got {out.dtype}")
        if not out.flags.c_contiguous or not out.flags.writeable:
            raise ValueError("out must be C-contiguous and writeable")
        if shape is not None and tuple(out.shape) != C.shape_tuple(shape):
            raise ValueError(f"out has shape {out.shape}, expected {C.shape_tuple(shape)}")
    seed = resolve_seed(seed)
    stream = check_stream(stream)
    offset = check_offset(offset, out.size)
    k = _backend.kernels()
    getattr(k.random, "fill_" + kind)(out, seed, stream, offset)
    return out


def uniform(shape, seed=0, stream=0, dtype=np.float64, offset=0, out=None):
    """Uniforms in the open interval (0, 1).

    Parameters
    ----------
    shape : int or tuple of int
    seed : int in [0, 2**64) or None
    stream : int in [0, 2**63)
    dtype : float32 or float64
    offset : int
        Index of the first element in the stream (element ``offset + i`` of the
        flattened output), so a long draw can be produced in pieces. The last
        element ``offset + n - 1`` must be at most 2**64 - 1 (ValueError otherwise).
    out : ndarray, optional
        C-contiguous array of ``dtype`` to fill (``shape`` may then be None).
    """
    return _draw("uniform", shape, seed, stream, dtype, offset, out)


def normal(shape, seed=0, stream=0, dtype=np.float64, offset=0, out=None):
    """Standard normals by Box-Muller from uniform pairs (same arguments as ``uniform``)."""
    return _draw("normal", shape, seed, stream, dtype, offset, out)

