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

import types

from numba import njit

__all__ = ["PARALLEL_MIN_WORK", "pick", "variants"]

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
