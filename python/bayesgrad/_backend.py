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

import numpy as _np


def _preload_openblas():
    """Load libscipy_openblas.so (RTLD_GLOBAL) before the core, which links it
    through an rpath relative to site-packages; this also serves in-tree and
    editable builds. Done here rather than by ``import scipy_openblas32``, whose
    version lookup (importlib.metadata) costs ~20 ms of every import."""
    import ctypes
    import importlib.util

    spec = importlib.util.find_spec("scipy_openblas32")
    if spec is None or not spec.submodule_search_locations:
        return None  # a runtime dependency: without it the core fails to import and says so
    lib_dir = os.path.join(list(spec.submodule_search_locations)[0], "lib")
    try:
        names = sorted(n for n in os.listdir(lib_dir) if n.startswith("libscipy_openblas") and ".so" in n)
    except OSError:
        return None
    return ctypes.CDLL(os.path.join(lib_dir, names[0]), mode=ctypes.RTLD_GLOBAL) if names else None


_openblas = _preload_openblas()

from . import _numpy, _threads

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


def _cuda_concepts():
    """The concept submodules the compiled CUDA module implements (docs/design.md, "CUDA backend")."""
    return [c for c in _numpy.CONCEPTS if _cuda is not None and hasattr(_cuda, c)]


def _cuda_has_kernels():
    """True once the CUDA module ships every concept submodule of the core."""
    return _cuda is not None and len(_cuda_concepts()) == len(_numpy.CONCEPTS)


# The record of the last passing GPU verification (tools/verify_cuda.sh writes
# it on the GPU machine; it is committed with the code it verified). Without
# it the backend is "compiled, not verified on a GPU" and cannot be selected.
CUDA_VERIFIED_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_cuda_verified.json")


def cuda_verified():
    """The verification record (dict with at least ``date`` and ``device``), or None."""
    import json

    try:
        with open(CUDA_VERIFIED_FILE, encoding="utf-8") as fh:
            rec = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or not rec.get("date") or not rec.get("device") or rec.get("passed") is not True:
        return None
    return rec


def _cuda_unavailable_reason():
    """Why backend "cuda" cannot be selected, or None when it can."""
    if _cuda is None:
        return f"the CUDA module is not built or failed to import ({_cuda_error})"
    missing = [c for c in _numpy.CONCEPTS if c not in _cuda_concepts()]
    if missing:
        return (f"the CUDA module has kernels for {', '.join(_cuda_concepts()) or 'no concept'} only, "
                f"not yet for {', '.join(missing)}")
    # tools/verify_cuda.sh sets BAYESGRAD_CUDA_VERIFYING=1 to run the suite on
    # the backend it is verifying; nothing else should.
    rec = cuda_verified()
    if (rec is None or rec.get("scope") != "full") and os.environ.get("BAYESGRAD_CUDA_VERIFYING") != "1":
        return "the CUDA module is compiled, not verified on a GPU (tools/verify_cuda.sh)"
    if _cuda_devices() == 0:
        return "no CUDA device is visible"
    return None


def _check_name(name):
    if not isinstance(name, str):
        raise TypeError(f"backend must be a string, one of {BACKENDS}; got {type(name).__name__}")
    name = name.strip().lower()
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    if name == "cpu" and _core is None:
        raise ValueError(f"backend 'cpu' needs the native core, which failed to import ({_core_error})")
    if name == "cuda":
        reason = _cuda_unavailable_reason()
        if reason is not None:
            raise ValueError(f"backend 'cuda' is not available: {reason} (devices: {_cuda_devices()})")
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
    if _threads_state["source"] is None:
        _init_threads()
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


def empty(shape, dtype):
    """An uninitialised C-contiguous output array (shape: tuple of int).

    On the cpu backend outputs of 256 KiB and more come from the core's output
    cache (docs/design.md, "Output cache"): blocks of freed outputs, already
    faulted in, so a repeated large draw skips the kernel's page faults. The
    array is the caller's, like ``np.empty``'s; its block is reused only once
    no array or view refers to it.
    """
    if get_backend() == "cpu":
        return _core.runtime.empty(tuple(shape), _np.dtype(dtype))
    return _numpy.runtime.empty(shape, dtype)


def set_output_cache_limit(n_bytes: int) -> int:
    """Bytes of freed large outputs the native core keeps for reuse (default
    256 MiB; 0 keeps none and unmaps what is kept); returns the previous limit.
    Without the core there is no cache (the value is only recorded)."""
    from ._checks import integer

    n_bytes = integer(n_bytes, "n_bytes", 0)
    if n_bytes >= 1 << 62:
        raise ValueError(f"n_bytes must be < 2**62, got {n_bytes}")
    runtime = _core.runtime if _core is not None else _numpy.runtime
    return int(runtime.set_output_cache_limit(n_bytes))


# "source" is None until the default budget is chosen: lazily, at the first
# kernel call, because a spawned worker process imports bayesgrad (unpickling
# its target) before multiprocessing says it is a worker.
_threads_state = {"n": 1, "numpy_blas_limited": False, "source": None}


def _apply_threads(n, limit_numpy):
    if _core is not None:
        _core.runtime.set_num_threads(n)
    if limit_numpy:
        _threads_state["numpy_blas_limited"] = _threads.limit_numpy_blas(n)
    _threads_state["n"] = n


def set_num_threads(n: int) -> None:
    """The thread budget (n >= 1) of the native kernels' pool, scipy-openblas32
    and, when threadpoolctl is installed, NumPy's BLAS (docs/design.md, "Threads")."""
    from ._checks import integer

    n = integer(n, "n", 1)
    _apply_threads(n, limit_numpy=True)
    _threads_state["source"] = "set_num_threads"


def _init_threads():
    # NumPy's BLAS already honours OMP_NUM_THREADS and sees the affinity; only a
    # smaller budget than that (a cgroup quota, a worker, BAYESGRAD_NUM_THREADS)
    # needs threadpoolctl, whose import is kept off the common path.
    n = _threads.default_threads()
    _apply_threads(n, limit_numpy=n < _threads._affinity_cpus())
    _threads_state["source"] = "default"


def get_num_threads() -> int:
    """The current thread budget (1 on the NumPy backend without the core)."""
    if _threads_state["source"] is None:
        _init_threads()
    return int(_core.runtime.get_num_threads()) if _core is not None else _threads_state["n"]


def _after_fork_in_child():
    # A forked child (multiprocessing's default on Linux) inherits the parent's
    # budget; as a worker it defaults to one thread unless the budget came from
    # the user (set_num_threads, or BAYESGRAD_NUM_THREADS / OMP_NUM_THREADS).
    if _threads_state["source"] in (None, "default"):
        _threads_state["source"] = "worker process"
        _apply_threads(_threads.default_threads() if _threads.env_budget() else 1, limit_numpy=False)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def backend_info() -> dict:
    """What is active and what was compiled.

    Returns a dict with ``name`` (active backend), ``native`` (the C++ core
    imported), ``cuda_compiled``, ``cuda_devices``, ``cuda_status`` ("compiled,
    not verified on a GPU" until tools/verify_cuda.sh has passed),
    ``cuda_kernels`` (the concepts the CUDA module implements),
    ``cuda_verified`` (the GPU verification record or None), ``threads`` (the
    thread budget; ``threads_source`` says whether it is the default or set, ``numpy_blas_limited`` whether NumPy's BLAS follows it),
    ``blas``, ``simd``, ``openmp`` and ``compiler``. ``openmp`` is
    always False: the core runs its own thread pool, whose idle workers sleep
    (see cpp/src/parallel.cpp); the key stays for callers that read it.
    """
    info = {
        "name": get_backend(),
        "native": _core is not None,
        "native_error": _core_error,
        "cuda_compiled": _cuda is not None,
        "cuda_devices": _cuda_devices(),
        "threads": get_num_threads(),  # chooses the default budget if not yet done
        "threads_source": _threads_state["source"],
        "numpy_blas_limited": _threads_state["numpy_blas_limited"],
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
        rec = cuda_verified()
        if rec is None:
            state = "compiled, not verified on a GPU"
        elif rec.get("scope") == "full":
            state = f"verified on {rec['device']} ({rec['date']})"
        else:  # tools/verify_cuda.sh tested the kernels of a partial module, not the backend
            state = (f"compiled, not verified on a GPU as a backend (kernels of "
                     f"{', '.join(rec.get('concepts') or [])} verified on {rec['device']}, {rec['date']})")
        info["cuda_status"] = f"{state}; {_cuda.build_status}"
    info["cuda_kernels"] = _cuda_concepts()
    info["cuda_verified"] = cuda_verified()
    return info
