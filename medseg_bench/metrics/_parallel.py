"""Parallel and serial twins of numba kernels, chosen by the size of the work.

A parallel launch costs more than a small kernel's work, and on an oversubscribed machine (more
busy threads than cores) OpenMP's spin-waiting workers make it far worse: a test suite of small
inputs ran 8x slower with 2 threads than with 1 while two other processes were busy. So each
kernel is compiled twice and small inputs take the single-threaded one.

Threads: the parallel twins use ``numba.get_num_threads()`` (default: all cores; set
``NUMBA_NUM_THREADS`` or call ``numba.set_num_threads``). On a shared machine,
``OMP_WAIT_POLICY=passive`` (set before the first parallel call) stops idle workers from spinning.
"""

from __future__ import annotations

import os
import types

import numba
from numba import njit

__all__ = ["PARALLEL_MIN_WORK", "available_cores", "pick", "plan_processes", "set_worker_threads", "variants"]

# below this much work (voxels scanned, or queries x offsets tried) a kernel runs single-threaded
PARALLEL_MIN_WORK = 1 << 18


def variants(fn, **options):
    """``(parallel, serial)`` numba compilations of ``fn`` (which uses ``prange``), cached on disk.

    ``options`` go to ``numba.njit`` (e.g. ``fastmath``).

    They get distinct qualified names because numba's on-disk cache is keyed by the function's name,
    not by its compile flags.
    """
    out = []
    for suffix, parallel in (("_par", True), ("_ser", False)):
        g = types.FunctionType(
            fn.__code__, fn.__globals__, fn.__name__ + suffix, fn.__defaults__, fn.__closure__
        )
        g.__qualname__ = fn.__qualname__ + suffix
        g.__module__ = fn.__module__
        g.__doc__ = fn.__doc__
        out.append(njit(cache=True, parallel=parallel, nogil=True, **options)(g))
    return tuple(out)


def pick(twins, work: int):
    """The parallel twin for ``work >= PARALLEL_MIN_WORK``, else the serial one."""
    return twins[0] if work >= PARALLEL_MIN_WORK else twins[1]


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def plan_processes(num_workers: int, n_jobs: int) -> tuple[int, int, int]:
    """``(processes, numba threads per process, cores)`` with processes x threads <= cores.

    ``num_workers``: 0 = auto: this process with one numba thread per core (the kernels are parallel;
    a spawned worker costs seconds of imports and kernel loading: 10 cases of 256³ took 3.3 s in
    process with 2 threads and 8.1 s in 2 processes x 1 thread on 2 cores); 1 = this process with its
    current numba thread count (capped at the cores: a benchmark cell sets 1); N > 1 = N processes
    (capped at the cores and the jobs) with ``cores // N`` threads each.
    """
    cores = available_cores()
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    if num_workers == 0:
        return 1, min(cores, numba.config.NUMBA_NUM_THREADS), cores
    procs = max(1, min(num_workers, n_jobs, cores))
    if procs == 1:
        return 1, max(1, min(numba.get_num_threads(), cores)), cores
    return procs, max(1, cores // procs), cores


def set_worker_threads(threads: int) -> None:
    """Process-pool initializer: numba kernels of this worker use ``threads`` threads."""
    numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))
