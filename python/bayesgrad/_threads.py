"""The thread budget: how many threads the core's pool and the BLAS libraries
it shares the process with may use (docs/design.md, "Threads").

One number covers the core's own pool, scipy-openblas32 (which the core calls)
and, when threadpoolctl is installed, NumPy's BLAS: three pools sized
independently oversubscribe the cores, and on a shared machine two threads
were then several times slower than one.

The default is chosen once, at import, in this order:

1. ``BAYESGRAD_NUM_THREADS``;
2. ``OMP_NUM_THREADS`` (the variable Dask's nanny, joblib's loky and most
   schedulers set in their workers);
3. 1 inside a worker process (``multiprocessing`` children, which include
   ``concurrent.futures`` process pools, spawned or forked): the parent
   already spreads work over the cores;
4. the CPUs this process may run on: its CPU affinity, capped by the cgroup
   CPU quota (containers, Kubernetes, Slurm), never the machine's core count.
"""
from __future__ import annotations

import math
import os
import sys

__all__ = ["default_threads", "cgroup_cpu_limit", "limit_numpy_blas"]


def _env_threads(name, strict):
    """A positive int from the environment, or None. Our own variable (strict)
    must be valid; another library's (OMP_NUM_THREADS) is ignored when it is not."""
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    # OMP_NUM_THREADS may list nesting levels ("4,2"): the first is ours.
    first = value.split(",")[0].strip()
    try:
        n = int(first)
    except ValueError:
        n = 0
    if n < 1:
        if strict:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
        return None
    return n


def cgroup_cpu_limit(root="/sys/fs/cgroup"):
    """CPUs allowed by the cgroup quota (a float, e.g. 1.5), or None when unlimited or unknown.

    cgroup v2: ``cpu.max`` holds "quota period" or "max period"; v1:
    ``cpu/cpu.cfs_quota_us`` and ``cpu/cpu.cfs_period_us`` (quota -1 = none).
    """
    try:
        with open(os.path.join(root, "cpu.max")) as fh:
            quota, period = fh.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(root, "cpu", "cpu.cfs_quota_us")) as fh:
            quota = int(fh.read())
        with open(os.path.join(root, "cpu", "cpu.cfs_period_us")) as fh:
            period = int(fh.read())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def _affinity_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _in_worker_process():
    # parent_process() is set only once a child's target starts; a spawned or
    # forkserver child imports bayesgrad earlier, while unpickling the target,
    # and is recognised by its command line. Forked children are handled by
    # the at-fork hook in _backend (they inherit the parent's import).
    # A process that never imported multiprocessing is not one of its workers,
    # and not importing it here keeps it off every other program's import time.
    mp = sys.modules.get("multiprocessing")
    return (mp is not None and mp.parent_process() is not None) or "--multiprocessing-fork" in sys.argv


def env_budget():
    """True when the environment sets the budget (BAYESGRAD_NUM_THREADS or OMP_NUM_THREADS)."""
    return any(_env_threads(name, False) is not None for name in ("BAYESGRAD_NUM_THREADS", "OMP_NUM_THREADS"))


def default_threads(cgroup_root="/sys/fs/cgroup"):
    """The default thread budget (see the module docstring for the order of the rules)."""
    for name, strict in (("BAYESGRAD_NUM_THREADS", True), ("OMP_NUM_THREADS", False)):
        n = _env_threads(name, strict)
        if n is not None:
            return n
    if _in_worker_process():
        return 1
    n = _affinity_cpus()
    quota = cgroup_cpu_limit(cgroup_root)
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


def limit_numpy_blas(n):
    """Limit NumPy's BLAS (and any other BLAS threadpoolctl finds) to ``n`` threads.

    Returns True when threadpoolctl is installed and applied the limit, False
    otherwise (NumPy's BLAS then keeps its own setting; ``backend_info`` says so).
    """
    try:
        import threadpoolctl
    except ImportError:
        return False
    threadpoolctl.threadpool_limits(limits=n, user_api="blas")
    return True
