"""Worker processes never outlive the command that started them.

:func:`die_with_parent` (called first thing in every pool worker) asks Linux to SIGKILL the worker
when its parent dies (``prctl(PR_SET_PDEATHSIG)``, via ctypes), so a SIGKILLed ``medseg-bench`` leaves
no orphans; elsewhere a daemon thread polls the parent's pid once a second and exits the worker.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

__all__ = ["die_with_parent", "kill_pool", "pool_map"]

PR_SET_PDEATHSIG = 1


def _watch(parent: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)


def die_with_parent() -> None:
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0:
                if os.getppid() != parent:  # the parent died before prctl took effect
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass
    threading.Thread(target=_watch, args=(parent,), daemon=True, name="parent-watch").start()


def _pool_init(initializer) -> None:
    die_with_parent()
    if initializer is not None:
        initializer()


def pool_map(fn, tasks: list, workers: int, describe=str, initializer=None) -> list:
    """``[fn(t) for t in tasks]`` in ``workers`` spawned processes that die with this one.

    ``spawn``, not ``fork``: a fork of a parent holding threads (tqdm, ITK, torch) can deadlock in the
    child. A worker that dies (native reader crash, OOM kill) stops the map at once with an
    :class:`~medseg_bench.errors.InputError` naming the unfinished tasks (``describe(task)``); an
    exception raised by ``fn`` propagates as is. No worker survives the call.
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from .errors import InputError

    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_pool_init,
                               initargs=(initializer,))
    futures = [pool.submit(fn, t) for t in tasks]
    try:
        try:
            return [f.result() for f in futures]
        except BrokenProcessPool:
            unfinished = [describe(t) for t, f in zip(tasks, futures)
                          if not f.done() or f.cancelled() or isinstance(f.exception(timeout=0), BrokenProcessPool)]
            raise InputError("a worker process died (native reader crash, or killed) while reading one of:\n"
                             + "\n".join(f"  {u}" for u in unfinished)) from None
    finally:
        kill_pool(pool)


def kill_pool(pool) -> None:
    """Shut ``pool`` down without waiting and SIGKILL any worker still alive."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        if proc.is_alive():
            proc.kill()
