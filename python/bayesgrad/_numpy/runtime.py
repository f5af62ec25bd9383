"""NumPy twin of the runtime functions (cpp/bindings/register_runtime.cpp)."""
from __future__ import annotations

import numpy as np

from .. import _codes

__all__ = ["get_num_threads", "set_num_threads", "blas_num_threads", "build_info", "codes", "empty",
           "set_output_cache_limit", "output_cache_info", "value_range", "integer_range"]

_cache = {"limit": 256 << 20}


def get_num_threads():
    return 1


def set_num_threads(n):
    if n < 1:
        raise ValueError(f"n_threads must be >= 1, got {n}")


def blas_num_threads():
    return 1


def build_info():
    return {"compiler": "none", "blas": "numpy", "cuda": "n/a", "simd": "numpy"}


def codes():
    """The enum codes (name -> {member: value}) and the Flipout stream tag, as the core reports them."""
    d = {e.__name__: {m.name: int(m) for m in e} for e in _codes.ENUMS}
    d["flipout_tag"] = _codes.STREAM_TAGS["flipout"]
    return d


def empty(shape, dtype):
    """np.empty: the twin keeps no output cache (its limit is only recorded)."""
    return np.empty(tuple(shape), dtype=dtype)


def set_output_cache_limit(n_bytes):
    prev, _cache["limit"] = _cache["limit"], int(n_bytes)
    return prev


def output_cache_info():
    return {"blocks": 0, "bytes": 0, "limit": _cache["limit"], "hits": 0, "misses": 0}


def value_range(x):
    """(min, max) of a non-empty C-contiguous float array, both NaN when it holds a NaN (NumPy's min and
    max propagate NaN: two passes, no temporary)."""
    if not isinstance(x, np.ndarray) or x.dtype not in (np.float32, np.float64) or not x.flags.c_contiguous:
        raise TypeError("x must be a C-contiguous float32 or float64 array")
    if x.size == 0:
        raise ValueError("x must not be empty")
    lo, hi = float(x.min()), float(x.max())
    if np.isnan(lo) or np.isnan(hi):
        return float("nan"), float("nan")
    return lo, hi


_INTEGER_CHUNK = 1 << 16


def integer_range(x):
    """value_range's (min, max) and whether every value is an integer (rint(x) == x: +-inf are, NaN is
    not), the rounding compared in pieces of _INTEGER_CHUNK values (a whole-array temporary of a large x
    costs more than the comparison)."""
    lo, hi = value_range(x)
    chunk = _INTEGER_CHUNK
    flat = x.reshape(-1)
    buf = np.empty(min(chunk, flat.size), flat.dtype)
    for i in range(0, flat.size, chunk):
        part = flat[i:i + chunk]
        if not np.array_equal(np.rint(part, out=buf[:part.size]), part):
            return lo, hi, False
    return lo, hi, True
