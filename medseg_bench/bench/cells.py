"""Running one cell in a worker: thread limits, error capture, the record copied to ``results/``.

:func:`execute_cell` is what every executor ships to its workers (a local process, a Ray task, a
Slurm array job). It never raises for a failing cell: the failure becomes a ``failed`` record with
the traceback, so one broken cell does not stop the others.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .._locks import exclusive_lock
from .grid import Cell
from .results import failure_record, sync_done_record, write_record

__all__ = ["CellTask", "default_cell_fn", "execute_cell", "limit_threads", "method_info_of", "prepare_worker"]

_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


def default_cell_fn(workdir, dataset, method, budget, seed, **kwargs) -> dict:
    """The real engine: :func:`medseg_bench.training.train_cell` (imported lazily in the worker)."""
    from ..training import train_cell

    return train_cell(workdir, dataset, method, budget, seed, **kwargs)


@dataclass(frozen=True)
class CellTask:
    """Everything a worker needs to run one cell (picklable when ``cell_fn`` is a module-level function).

    ``cell_fn(workdir, dataset, method, budget, seed, preset=, config=, device=, resume=True,
    progress=False, num_threads=, **extra)`` follows the engine's ``train_cell`` signature and returns
    the cell's record.
    """

    cell: Cell
    workdir: str
    cell_fn: Callable[..., dict] = default_cell_fn
    num_threads: int | None = 1
    device: str | None = None
    extra: dict = field(default_factory=dict)
    estimate_s: float = 1.0


def limit_threads(num_threads: int | None) -> None:
    """Pin BLAS/OpenMP/torch/numba thread pools of this process to ``num_threads`` (``None``: leave)."""
    if not num_threads:
        return
    numba_loaded = "numba" in sys.modules
    for var in _THREAD_ENV:
        # Once numba is imported its pool size is fixed by the value it read then: numba re-reads the
        # environment at every compile and, after the pool started (possibly later, by a cached
        # kernel that never compiles), refuses a changed NUMBA_NUM_THREADS — every later compile
        # fails ("Cannot set NUMBA_NUM_THREADS to a different value once the threads have been
        # launched"; CI, 2026-12-07). Then the limit goes through numba.set_num_threads only.
        if var == "NUMBA_NUM_THREADS" and numba_loaded:
            continue
        os.environ[var] = str(num_threads)
    if numba_loaded:
        import numba

        numba.set_num_threads(max(1, min(int(num_threads), numba.config.NUMBA_NUM_THREADS)))
    try:
        import torch

        torch.set_num_threads(num_threads)
        if torch.get_num_interop_threads() != num_threads:
            try:
                torch.set_num_interop_threads(num_threads)
            except RuntimeError:  # only settable before the first parallel op
                pass
    except ImportError:  # pragma: no cover
        pass


def prepare_worker() -> None:
    """Load the suite's code and note its git commit once, when a worker process starts.

    A reference grid runs for hours while its checkout may move on; every record a worker writes must
    name the code that worker actually runs. Importing the built-in methods now (instead of at the first
    cell that needs them) and remembering the commit now keeps the two together."""
    import medseg_bench.methods  # noqa: F401  (registers and loads every built-in method)

    from ..training.provenance import git_commit

    git_commit()


def method_info_of(name: str) -> dict:
    """``method_info`` block for a method name from the registry (empty if it cannot be loaded)."""
    try:
        from ..methods import get_method

        m = get_method(name)
    except Exception:
        return {}
    return {"family": getattr(m, "family", None), "citation": getattr(m, "citation", None),
            "needs_labels": getattr(m, "needs_labels", None), "oracle": bool(getattr(m, "oracle", False)),
            "class_rule": getattr(m, "class_rule", None)}


def _engine_failure(workdir: Path, cell: Cell, started: str) -> dict | None:
    """The engine's own ``failed`` record (it has the provenance) when it wrote one for this attempt."""
    from .results import RecordError, read_json

    path = cell.run_dir(workdir) / "record.json"
    try:
        rec = read_json(path) if path.is_file() else None
    except RecordError:
        return None
    if not isinstance(rec, dict) or rec.get("status") != "failed" or not rec.get("error"):
        return None
    try:
        same = Cell.from_dict(rec.get("cell") or {}) == cell
    except (KeyError, TypeError, ValueError):
        return None
    if not same or str((rec.get("provenance") or {}).get("started") or "") < started:
        return None  # a stale record from an earlier attempt, or another cell's
    return rec


def execute_cell(task: CellTask) -> dict:
    """Run one cell and store its record in ``<workdir>/results/``; return the record.

    A cell whose ``DONE`` marker exists is not run again (its stored record is returned). Any exception
    from the cell becomes a ``failed`` record (``error`` = traceback); ``KeyboardInterrupt`` propagates.
    """
    cell, workdir = task.cell, Path(task.workdir)
    done = sync_done_record(workdir, cell)
    if done is not None:
        return done
    with cell_lock(cell.run_dir(workdir)):
        done = sync_done_record(workdir, cell)  # another runner may have finished it while we waited
        if done is not None:
            return done
        return _execute_locked(task, cell, workdir)


def cell_lock(run_dir: Path):
    """Exclusive lock of one cell across processes and runners on one workdir (``<run_dir>.lock``, see
    :func:`medseg_bench._locks.exclusive_lock`): a second runner waits for the cell and says so, then
    finds it done and does not run it again."""
    run_dir = Path(run_dir)
    return exclusive_lock(run_dir.with_name(run_dir.name + ".lock"), f"cell {run_dir}")


def _execute_locked(task: CellTask, cell, workdir: Path) -> dict:
    limit_threads(task.num_threads)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    try:
        record = task.cell_fn(workdir, cell.dataset, cell.method, cell.budget, cell.seed, preset=cell.preset,
                              config=cell.configuration, device=task.device, resume=True, progress=False,
                              num_threads=task.num_threads, **task.extra)
        if not isinstance(record, dict):
            raise TypeError(f"cell function returned {type(record).__name__}, expected the record dict")
    except Exception as exc:  # a failing cell is recorded, never fatal to the grid
        record = _engine_failure(workdir, cell, started) or failure_record(
            cell, exc, started=started, wall_time_s=time.perf_counter() - t0, method_info=method_info_of(cell.method))
        write_record(workdir, record)
        return record
    synced = sync_done_record(workdir, cell)
    if synced is not None:
        return synced
    # the cell function returned without a DONE marker: keep what it reported, or flag it
    if record.get("status") == "failed" and "cell" in record:
        write_record(workdir, record)
        return record
    record = failure_record(cell, "cell function returned without writing the DONE marker",
                            started=started, wall_time_s=time.perf_counter() - t0,
                            method_info=method_info_of(cell.method))
    write_record(workdir, record)
    return record
