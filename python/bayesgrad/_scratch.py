"""Per-thread scratch arrays for a call's intermediates.

A fresh NumPy array of a few hundred KiB or more comes from pages the process
does not hold yet (glibc maps it, or has trimmed the heap where it lies), and the
first write to each 4 KiB page faults. On the 2-vCPU VM of the benchmarks that
costs about 0.3 ms per MB, under load several times more: more than the native
kernels that fill those arrays (REBAR over 100 Bernoulli coordinates, 1000
samples, wrote about 8 MB of internal arrays per call; issue 16). Reusing one
buffer per purpose keeps its pages mapped.

A buffer is reused only while nothing outside the pool refers to it (CPython's
reference count of the buffer, which every view holds as its base): an array handed
to a user's callable that keeps it, or one a result refers to, is never written
again; the next request under its name gets a new buffer. ``session()`` hands out
the calling thread's pool, or, when that pool is already in use further up the
stack (an estimator called from inside a user's f), a pool of fresh arrays, so
nested calls never share a buffer. The pool keeps the latest buffer under each
name until the thread ends.
"""
from __future__ import annotations

import contextlib
import math
import sys
import threading

import numpy as np

_local = threading.local()


class _Pool:
    def __init__(self, reuse):
        self.reuse = reuse
        self.arrays = {}
        self.busy = False

    def array(self, name, shape, dtype=np.float64):
        """An uninitialised C-contiguous array of ``shape``; the same memory on every call with
        ``name`` in a reusing pool."""
        dtype = np.dtype(dtype)
        shape = tuple(int(s) for s in shape)
        if not self.reuse:
            return np.empty(shape, dtype=dtype)
        nbytes = math.prod(shape) * dtype.itemsize
        raw = self.arrays.get(name)
        # reused only while nothing else refers to it: every view keeps the buffer itself as its
        # base, so a count above ours (the dict, `raw`, getrefcount's argument) means an array
        # handed out earlier is still alive somewhere (a user's f kept its input): a new buffer
        if raw is None or raw.nbytes < nbytes or sys.getrefcount(raw) > 3:
            raw = self.arrays[name] = np.empty(max(nbytes, 1), dtype=np.uint8)
        return raw[:nbytes].view(dtype).reshape(shape)


def fresh():
    """A pool that hands out fresh arrays (the same interface, nothing reused)."""
    return _Pool(reuse=False)


@contextlib.contextmanager
def session():
    """The calling thread's pool for the duration of the block (fresh arrays when nested)."""
    pool = getattr(_local, "pool", None)
    if pool is None:
        pool = _local.pool = _Pool(reuse=True)
    if pool.busy:
        yield fresh()
        return
    pool.busy = True
    try:
        yield pool
    finally:
        pool.busy = False
