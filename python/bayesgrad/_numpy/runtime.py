"""NumPy twin of the runtime functions (cpp/bindings/register_runtime.cpp)."""
from __future__ import annotations

from .. import _codes

__all__ = ["get_num_threads", "set_num_threads", "blas_num_threads", "build_info", "codes"]


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
