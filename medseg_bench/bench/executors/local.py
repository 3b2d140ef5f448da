"""Local executor: a pool of long-lived worker processes on this machine, one thread each.

Workers are started with ``spawn`` (never a fork of a parent that may hold torch/numba thread pools)
and live for the whole grid, so torch is imported once per worker, not once per cell. Each worker
runs one cell at a time and the pool knows which worker holds which cell: a worker that dies (killed,
out of memory, a segfault in a native library) fails only its own cell and is replaced, unlike
``concurrent.futures.ProcessPoolExecutor``, which would break and lose every running cell.

``workers=0`` runs cells in this process (debugging; no isolation).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import traceback
from dataclasses import replace
from multiprocessing.connection import wait

from ..cells import CellTask, execute_cell, limit_threads, prepare_worker
from .base import Executor, infrastructure_failure

__all__ = ["LocalExecutor"]


def _worker_loop(conn, num_threads: int | None) -> None:
    """Worker process: receive a task, run it, send back ``("ok", record)``; ``None`` ends the loop."""
    from ..._procs import die_with_parent

    die_with_parent()  # SIGKILL of the runner takes its workers with it
    limit_threads(num_threads)
    prepare_worker()
    while True:
        try:
            task = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if task is None:
            return
        try:
            conn.send(("ok", execute_cell(task)))
        except KeyboardInterrupt:
            return
        except BaseException as exc:  # execute_cell records cell errors itself; this is infrastructure
            conn.send(("error", "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))))


class _Worker:
    def __init__(self, ctx, num_threads: int | None, device: str | None = None):
        self.device = device
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_loop, args=(child, num_threads), name="medseg-bench-worker")
        self.proc.start()
        child.close()
        self.task: CellTask | None = None

    def stop(self, terminate: bool) -> None:
        if self.proc.is_alive() and not terminate:
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(timeout=5)
        if self.proc.is_alive():  # SIGTERM not honoured in time (busy C call, loaded machine): SIGKILL
            self.proc.kill()
            self.proc.join(timeout=5)
        self.conn.close()


class LocalExecutor(Executor):
    """Pool of ``workers`` processes (default: the number of cores) of ``num_threads`` threads each.

    ``devices`` (e.g. ``["cuda:0", "cuda:1"]``) pins worker *i* to ``devices[i % len(devices)]``: on a
    GPU machine the runner starts one worker per GPU.
    """

    name = "local"

    def __init__(self, workers: int | None = None, num_threads: int | None = 1, device: str | None = None,
                 devices: list[str] | None = None):
        self.workers = (os.cpu_count() or 1) if workers is None else int(workers)
        self.capacity = max(1, self.workers)
        self.num_threads = num_threads
        self.device = device
        self.devices = list(devices or [])
        self._ctx = mp.get_context("spawn")
        self._pool: list[_Worker] = []
        self._inline_done: list[tuple[CellTask, dict]] = []

    def start(self) -> None:
        pass  # workers start lazily, only as many as there are cells to run

    def _free_worker(self) -> _Worker:
        for w in self._pool:
            if w.task is None and w.proc.is_alive():
                return w
        self._pool = [w for w in self._pool if w.proc.is_alive() or w.task is not None]
        if len(self._pool) >= self.capacity:
            raise RuntimeError("no free worker: the runner submitted more tasks than the capacity")
        used = {w.device for w in self._pool}
        free = [d for d in self.devices if d not in used] or self.devices or [None]
        w = _Worker(self._ctx, self.num_threads, free[0])
        self._pool.append(w)
        return w

    def submit(self, tasks: list[CellTask]) -> None:
        for task in tasks:
            if self.workers <= 0:
                self._inline_done.append((task, execute_cell(task)))
                continue
            w = self._free_worker()
            w.task = task
            w.conn.send(replace(task, device=w.device) if w.device else task)

    def running(self) -> int:
        return sum(w.task is not None for w in self._pool) + len(self._inline_done)

    def poll(self, timeout: float) -> list[tuple[CellTask, dict]]:
        if self._inline_done:
            out, self._inline_done = self._inline_done, []
            return out
        busy = [w for w in self._pool if w.task is not None]
        if not busy:
            return []
        wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout=timeout)
        out = []
        for w in busy:
            task = w.task
            if w.conn.poll():
                try:
                    kind, payload = w.conn.recv()
                except (EOFError, OSError) as exc:
                    kind, payload = "error", f"lost connection to worker: {exc}"
                w.task = None
                out.append((task, payload if kind == "ok" else infrastructure_failure(task, payload)))
            elif not w.proc.is_alive():
                code = w.proc.exitcode
                w.task = None
                w.stop(terminate=True)
                self._pool.remove(w)
                why = f"worker process died with exit code {code}" + (" (killed: out of memory?)" if code in (-9, 137) else "")
                out.append((task, infrastructure_failure(task, why)))
        return out

    def shutdown(self, cancel: bool = False) -> None:
        for w in self._pool:
            w.stop(terminate=cancel)
        self._pool = []
