"""Backend selection: the compiled core (``"cpu"``), the CUDA module
(``"cuda"``) or the pure-NumPy twin (``"numpy"``).

High-level modules call ``kernels()`` and use the concept submodules of the
returned module (``kernels().mlp.mlp_forward``): ``_core.<concept>`` and
``_numpy.<concept>`` expose the same names and signatures (docs/design.md,
"Backends" and "Kernel namespaces").
``BAYESGRAD_BACKEND=numpy|cpu|cuda`` or ``set_backend`` chooses; without
either, the native core is used when it imports, else NumPy (with one warning).
"""
from __future__ import annotations

import contextlib
import os
import threading
import warnings

# Preload libscipy_openblas.so (RTLD_GLOBAL) before the core, which links it
# through an rpath relative to site-packages; this also serves in-tree builds.
try:
    import scipy_openblas32  # noqa: F401
except ImportError:  # pragma: no cover - a runtime dependency; the core then fails to import
    scipy_openblas32 = None

from . import _numpy

BACKENDS = ("cpu", "cuda", "numpy")

_core = None
_core_error = None
try:
    from . import _core  # type: ignore[no-redef]
except ImportError as exc:  # pragma: no cover - exercised by test_without_core
    _core_error = f"{type(exc).__name__}: {exc}"
    warnings.warn(
        f"bayesgrad: the native core could not be imported ({_core_error}); "
        "running on the pure-NumPy backend, which is much slower.",
        RuntimeWarning,
        stacklevel=2,
    )

_cuda = None
_cuda_error = "not built"
try:
    from . import _cuda  # type: ignore[no-redef]
    _cuda_error = None
except ImportError as exc:
    _cuda_error = f"{type(exc).__name__}: {exc}"

_state = threading.local()
_default = None


def _cuda_devices():
    if _cuda is None:
        return 0
    try:
        return int(_cuda.device_count())
    except Exception:  # noqa: BLE001 - a broken driver means no usable device
        return 0


def _cuda_has_kernels():
    """True once the CUDA module ships the concept submodules; today it answers
    device queries only (the CUDA backend issue), so "cuda" is refused."""
    return _cuda is not None and all(hasattr(_cuda, c) for c in _numpy.CONCEPTS)


def _check_name(name):
    if not isinstance(name, str):
        raise TypeError(f"backend must be a string, one of {BACKENDS}; got {type(name).__name__}")
    name = name.strip().lower()
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    if name == "cpu" and _core is None:
        raise ValueError(f"backend 'cpu' needs the native core, which failed to import ({_core_error})")
    if name == "cuda" and not (_cuda_has_kernels() and _cuda_devices() > 0):
        raise ValueError(
            "backend 'cuda' is not available in this build: the CUDA kernels have not shipped yet "
            f"(CUDA module: {'built' if _cuda is not None else _cuda_error}; devices: {_cuda_devices()})"
        )
    return name


def _initial():
    global _default
    if _default is None:
        env = os.environ.get("BAYESGRAD_BACKEND")
        if env:
            try:
                _default = _check_name(env)
            except ValueError as exc:
                raise ValueError(f"BAYESGRAD_BACKEND: {exc}") from None
        else:
            _default = "cpu" if _core is not None else "numpy"
    return _default


def get_backend() -> str:
    """Name of the active backend: ``"cpu"``, ``"cuda"`` or ``"numpy"``."""
    return getattr(_state, "name", None) or _initial()


def set_backend(name: str) -> None:
    """Make ``name`` the active backend for all threads (``"cpu"`` or ``"numpy"``)."""
    global _default
    _default = _check_name(name)
    _state.name = None


@contextlib.contextmanager
def use_backend(name: str):
    """Context manager: run the enclosed code (this thread only) on ``name``."""
    name = _check_name(name)
    prev = getattr(_state, "name", None)
    _state.name = name
    try:
        yield
    finally:
        _state.name = prev


def kernels():
    """The kernel module of the active backend (its concept submodules hold the kernels)."""
    name = get_backend()
    if name == "cpu":
        return _core
    if name == "numpy":
        return _numpy
    if name == "cuda":
        return _cuda
    raise RuntimeError(f"backend {name!r} has no kernel module")  # unreachable: _check_name guards names


def native_available() -> bool:
    return _core is not None


def set_num_threads(n: int) -> None:
    """Threads used by native kernels and by scipy-openblas32 (n >= 1)."""
    from ._checks import integer

    n = integer(n, "n", 1)
    if _core is not None:
        _core.runtime.set_num_threads(n)


def get_num_threads() -> int:
    return int(_core.runtime.get_num_threads()) if _core is not None else 1


def backend_info() -> dict:
    """What is active and what was compiled.

    Returns a dict with ``name`` (active backend), ``native`` (the C++ core
    imported), ``cuda_compiled``, ``cuda_devices``, ``cuda_status``,
    ``threads``, ``blas``, ``simd``, ``openmp`` and ``compiler``. ``openmp`` is
    always False: the core runs its own thread pool, whose idle workers sleep
    (see cpp/src/parallel.cpp); the key stays for callers that read it.
    """
    info = {
        "name": get_backend(),
        "native": _core is not None,
        "native_error": _core_error,
        "cuda_compiled": _cuda is not None,
        "cuda_devices": _cuda_devices(),
        "threads": get_num_threads(),
    }
    if _core is not None:
        b = dict(_core.runtime.build_info())
        info.update(
            blas=b["blas"], blas_threads=int(_core.runtime.blas_num_threads()), simd=b["simd"],
            openmp=False, compiler=b["compiler"], cuda_status=b["cuda"],
        )
    else:
        info.update(blas="numpy", blas_threads=None, simd="numpy", openmp=False, compiler=None,
                    cuda_status=_cuda_error or "unknown")
    if _cuda is not None:
        info["cuda_status"] = str(_cuda.build_status)
    return info
