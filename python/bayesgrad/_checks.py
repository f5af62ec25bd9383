"""Argument checks shared by every public function.

Each raises ``TypeError`` (wrong kind of object or dtype) or ``ValueError``
(wrong value or shape) naming the argument, before any work starts.
"""
from __future__ import annotations

import math
import numbers
import operator
import os

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _default_allocation_limit():
    env = os.environ.get("BAYESGRAD_MAX_ALLOCATION_BYTES")
    if env:
        return int(env)
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows)
        return 64 * 2 ** 30


#: The largest allocation (bytes) a public function starts: the machine's physical
#: memory (``BAYESGRAD_MAX_ALLOCATION_BYTES`` overrides it at import; tests may set
#: this attribute). A request beyond it is a ValueError naming the argument that
#: sized it, raised before any work, instead of a MemoryError (or the OOM killer)
#: after the work that preceded it.
MAX_ALLOCATION_BYTES = _default_allocation_limit()


def _fmt_bytes(n):
    for unit, scale in (("TiB", 2 ** 40), ("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= scale:
            v = n / scale
            return f"{v:.3g} {unit}" if v < 1000 else f"{v:,.0f} {unit}"
    return f"{n} bytes"


def check_allocation(n_bytes, what):
    """ValueError when ``n_bytes`` (what an allocation sized by the user's argument would
    take) exceeds ``MAX_ALLOCATION_BYTES``. ``what`` names the argument and the array,
    e.g. ``"n_samples=10**12: the (S, N, C) samples"``."""
    n_bytes = int(n_bytes)
    if n_bytes > MAX_ALLOCATION_BYTES:
        raise ValueError(f"{what} would need {_fmt_bytes(n_bytes)} of memory, more than the "
                         f"{_fmt_bytes(MAX_ALLOCATION_BYTES)} limit (bayesgrad._checks.MAX_ALLOCATION_BYTES, "
                         f"the physical memory); ask for less or split the work")
    return n_bytes


def n_bytes(shape, dtype=np.float64, copies=1):
    """Bytes of ``copies`` arrays of ``shape`` and ``dtype`` (Python ints: no overflow)."""
    return copies * math.prod(int(d) for d in shape) * np.dtype(dtype).itemsize


def float_dtype(dtype, name="dtype"):
    """Normalise ``dtype`` to float32 or float64."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"{name} must be float32 or float64, got {dtype!r}") from exc
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {dt}")
    return dt


# DLPack device types (dlpack.h, DLDeviceType) named in messages about arrays not in host memory
_DLPACK_DEVICES = {1: "cpu", 2: "cuda", 3: "cuda_host", 4: "opencl", 7: "vulkan", 8: "metal", 9: "vpi",
                   10: "rocm", 11: "rocm_host", 13: "cuda_managed", 14: "oneapi"}


def _kind(x):
    """``module.Type`` of ``x`` for messages (``torch.Tensor``, ``jaxlib...ArrayImpl``)."""
    t = type(x)
    mod = t.__module__ or ""
    return t.__name__ if mod in ("builtins", "") else f"{mod.split('.')[0]}.{t.__name__}"


def to_numpy(x, name):
    """``x`` as a NumPy array, without a copy where its memory allows.

    The one conversion of user arrays: NumPy arrays pass through; objects that
    export DLPack (``__dlpack__``: PyTorch CPU tensors, JAX and CuPy arrays, NumPy
    >= 1.22) are viewed with ``np.from_dlpack``; anything else goes through
    ``np.asarray`` (the NumPy array interface, ``__array__``: pandas Series and
    DataFrames, lists, scalars). Arrays in device memory (DLPack device other than
    the CPU, ``__cuda_array_interface__``) and objects that neither protocol
    converts are a TypeError naming ``name`` and what it got; no dtype or layout
    is imposed here (``as_array`` does that).
    """
    if isinstance(x, np.ndarray):
        return x
    if x is None:
        raise TypeError(f"{name} must be an array, got None")
    if hasattr(x, "__dlpack__") and hasattr(x, "__dlpack_device__"):
        try:
            dev = int(x.__dlpack_device__()[0])
        except Exception:  # noqa: BLE001 - a broken exporter: let the array interface try
            dev = None
        if dev is not None and dev != 1:
            where = _DLPACK_DEVICES.get(dev, f"DLPack device type {dev}")
            raise TypeError(f"{name} is a {_kind(x)} in {where} memory; the active backend takes host "
                            "(CPU) arrays: copy it to the host first (e.g. .cpu() in PyTorch, "
                            "jax.device_get, cupy.asnumpy)")
        try:
            return np.from_dlpack(x)
        except Exception as exc:  # noqa: BLE001 - e.g. a tensor that requires grad, an unsupported dtype
            if not (hasattr(x, "__array__") or hasattr(x, "__array_interface__")):
                raise TypeError(f"{name}: NumPy cannot import this {_kind(x)} through DLPack ({exc})") from exc
            dlpack_error = exc
    else:
        dlpack_error = None
    if hasattr(x, "__cuda_array_interface__"):
        raise TypeError(f"{name} is a GPU array ({_kind(x)}); the active backend takes host (CPU) arrays")
    try:
        return np.asarray(x)
    except Exception as exc:  # noqa: BLE001 - any conversion failure is the user's input
        why = exc if dlpack_error is None else f"{dlpack_error}; {exc}"
        raise TypeError(f"{name} must be array-like (a NumPy array, or an object with the DLPack or NumPy "
                        f"array interface), got {_kind(x)} ({why})") from exc


def result_dtype(*arrays):
    """float32 when every floating input is float32, else float64."""
    dts = [to_numpy(a, "array").dtype for a in arrays if a is not None]
    if dts and all(d == np.float32 for d in dts):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def as_array(x, name, dtype=None, *, finite=True, ndim=None, min_ndim=None, allow_empty=False):
    """Return ``x`` as a C-contiguous float array (float32/float64)."""
    a = to_numpy(x, name)
    if a.dtype == object or a.dtype.kind not in "biuf":
        came = "" if isinstance(x, np.ndarray) else f" (converted from {_kind(x)})"
        raise TypeError(f"{name} must be a real numeric array, got dtype {a.dtype}{came}")
    if dtype is None:
        dtype = np.float32 if a.dtype == np.float32 else np.float64
    a = np.asarray(a, dtype=dtype, order="C")  # (ascontiguousarray would make 0-d inputs 1-d)
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {a.shape}")
    if min_ndim is not None and a.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s), got shape {a.shape}")
    if not allow_empty and a.size == 0 and a.ndim > 0:
        raise ValueError(f"{name} must not be empty, got shape {a.shape}")
    if finite and a.size and not all(map(math.isfinite, value_range(a))):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return a


def value_range(a):
    """(min, max) of the values of a non-empty C-contiguous float32 / float64 array as floats, both NaN
    when it holds a NaN: one pass of the backend's ``runtime.value_range`` kernel, where
    ``np.all(np.isfinite(a))`` and range checks took a pass each and a temporary."""
    return _runtime().value_range(a.reshape(-1))


def integer_range(a):
    """value_range's (min, max) and whether every value of ``a`` is an integer (rint(a) == a), in one pass
    of ``runtime.integer_range`` (the rounding and comparison took two more passes of their own)."""
    return _runtime().integer_range(a.reshape(-1))


def _runtime():
    from . import _backend

    return (_backend._numpy if _backend.get_backend() == "numpy" or not _backend.native_available()
            else _backend._core).runtime


def positive(a, name):
    if np.any(a <= 0):
        raise ValueError(f"{name} must be positive")
    return a


def non_negative(a, name):
    if np.any(a < 0):
        raise ValueError(f"{name} must be non-negative")
    return a


def probability(a, name):
    if np.any((a < 0) | (a > 1)):
        raise ValueError(f"{name} must be a probability in [0, 1]")
    return a


def integer(n, name, minimum=None):
    """An exact integer (bool rejected), optionally >= minimum."""
    if isinstance(n, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got bool")
    if not isinstance(n, (numbers.Integral, np.integer)):
        try:
            n = operator.index(n)
        except TypeError as exc:
            raise TypeError(f"{name} must be an integer, got {type(n).__name__}") from exc
    n = int(n)
    if minimum is not None and n < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {n}")
    return n


def flag(value, name):
    """``value`` as a bool; TypeError naming ``name`` unless it is True or False (NumPy's bool too)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def option(value, name, choices, aliases=None):
    """A string option from ``choices`` (aliases mapped to their canonical name)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, one of {sorted(choices)}; got {type(value).__name__}")
    v = (aliases or {}).get(value, value)
    if v not in choices:
        allowed = sorted(set(choices) | set(aliases or {}))
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return v


def shape_tuple(shape, name="shape"):
    if isinstance(shape, (numbers.Integral, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        dims = tuple(integer(s, name, 0) for s in shape)
    except TypeError as exc:
        raise TypeError(f"{name} must be an int or a tuple of ints, got {shape!r}") from exc
    return dims


def broadcast_shapes(named):
    """Common batch shape of several named arrays, with a clear error (NumPy's broadcasting takes at most 32
    dimensions: more raised its RuntimeError)."""
    for k, v in named.items():
        if np.ndim(v) > 32:
            raise ValueError(f"{k} has {np.ndim(v)} dimensions; at most 32 are supported")
    try:
        return np.broadcast_shapes(*(np.shape(a) for a in named.values()))
    except ValueError as exc:
        desc = ", ".join(f"{k} {np.shape(v)}" for k, v in named.items())
        raise ValueError(f"parameter shapes do not broadcast: {desc}") from exc


def real(x, name):
    """``float(x)`` for a real number (or a 0-d / size-1 real array), with errors that
    name the argument: TypeError for strings, None, complex, bools and larger arrays.
    NaN and inf pass (the caller's range check names them)."""
    if isinstance(x, (bool, np.bool_, str, bytes)) or x is None:
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}")
    if isinstance(x, (numbers.Real, np.floating, np.integer)):
        return float(x)
    try:
        a = to_numpy(x, name)
    except TypeError as exc:
        raise TypeError(f"{name} must be a real number, got {_kind(x)}") from exc
    if a.size != 1 or a.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}"
                        + (f" of shape {a.shape}" if a.size != 1 else f" of dtype {a.dtype}"))
    return float(a.reshape(()))


def returned_real(y, name):
    """What a user's callable ``name`` returned, as a float64 array; TypeError naming it unless it holds
    real numbers (NumPy's conversion dropped the imaginary part of complex values with only a warning)."""
    if type(y) is np.ndarray and y.dtype == np.float64:  # the usual case, once per chunk of f's calls
        return y
    if np.iscomplexobj(y):
        raise TypeError(f"{name} must return a real array, got complex values")
    try:
        return np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must return a real array") from exc


def scalar(x, name):
    """A finite real number (Python float); arrays of size 1 are not accepted."""
    if isinstance(x, bool) or not isinstance(x, (numbers.Real, np.floating, np.integer)):
        if not (isinstance(x, np.ndarray) and x.ndim == 0 and x.dtype.kind in "iuf"):
            raise TypeError(f"{name} must be a real number, got {type(x).__name__}")
    v = float(x)
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    return v


class LabelError(TypeError, ValueError):
    """Labels that are not integers: a wrong kind of value, so callers that
    catch either TypeError (metrics) or ValueError (model fits) see it."""


def class_labels(y, n, n_classes, name="y"):
    """Integer class labels (n,) int64 in [0, n_classes). Integer-valued floats
    (labels read from a CSV or stored as float targets) are accepted; other
    values are a LabelError, wrong shapes and out-of-range labels a ValueError."""
    if y is None:
        raise LabelError(f"{name} must be integer class labels (shape ({n},)), got None")
    a = to_numpy(y, name)
    if a.ndim == 2 and a.shape[1] == 1 and n != 1:
        a = a[:, 0]
    if a.dtype.kind == "b" or a.dtype.kind not in "iuf":
        raise LabelError(f"{name} must be integer class labels, got dtype {a.dtype}")
    if a.dtype.kind == "f":
        if a.size and not (np.all(np.isfinite(a)) and np.all(a == np.round(a))):
            raise LabelError(f"{name} must hold integer class labels, got non-integer values")
    if a.shape != (n,):
        raise ValueError(f"{name} must hold {n} class labels (shape ({n},)), got shape {a.shape}")
    if a.size and (a.min() < 0 or a.max() >= n_classes):
        raise ValueError(f"{name} must be class labels in [0, {n_classes}) (the number of classes)")
    return a.astype(np.int64)

