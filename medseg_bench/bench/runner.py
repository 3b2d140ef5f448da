"""Running a list of cells on an executor: skip finished cells, seed by seed, longest first, progress, summary.

Scheduling is list scheduling, seed by seed and within a seed longest estimated cell first (LPT), which
keeps every worker busy and finishes close to the lower bound when cells differ in length. Seeds go in
order so that a grid run in pieces (the hours-long CPU reference benchmark, stopped and resumed across
sessions) covers every (dataset, method, budget) with its first seed before any gets a second: a partial
leaderboard is then complete for seed 0 instead of complete for a few methods. The price is at most the
idle tail of one seed's block per seed, which the short cells at the end of each block mostly fill. Cells of a method that declares a
budget-independent stage (``Method.shared_stages``) form a group per (dataset, preset, configuration,
seed, stage names) — one method's budgets, and also every method declaring the same stage (e.g. the
three CUTS rows share one encoder): the group's longest cell runs first and computes the stage; the
others start once it is done, so the stage is never computed twice nor waited on by an idle worker.
The cost estimates (:func:`medseg_bench.bench.grid.estimate_grid_cost_s`) charge the stage to that
first cell only, so the ETA counts it once.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .cells import CellTask, default_cell_fn
from .executors import Executor
from .grid import Cell, stage_groups
from .results import sync_done_record

__all__ = ["RunSummary", "run_cells"]


@dataclass
class RunSummary:
    """What a grid run did. ``failed`` holds ``(cell, first line of the error)``."""

    total: int = 0
    skipped: int = 0
    done: int = 0
    failed: list[tuple[Cell, str]] = field(default_factory=list)
    wall_s: float = 0.0
    records: dict[Cell, dict] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed

    def format(self) -> str:
        lines = [f"{self.total} cells: {self.skipped} already done, {self.done} run now, "
                 f"{len(self.failed)} failed ({self.wall_s:.0f} s)"]
        for cell, err in self.failed:
            lines.append(f"  FAILED {cell.label()}: {err}")
        if self.failed:
            lines.append("  (full tracebacks in the records under <workdir>/results/; re-run to retry them)")
        return "\n".join(lines)


def _error_line(record: dict) -> str:
    text = (record.get("error") or "").strip().splitlines()
    return text[-1] if text else "unknown error"


def _fmt_s(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


class _Progress:
    """One overall bar (cells done / total, ETA) plus a status line per cell, on ``stream``."""

    def __init__(self, total: int, initial: int, workers: int, enabled: bool, stream):
        self.enabled, self.stream, self.workers = enabled, stream, max(1, workers)
        self.t0 = time.monotonic()
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc="cells", unit="cell", file=stream,
                            dynamic_ncols=True, bar_format="{desc}: {n_fmt}/{total_fmt} |{bar}| {elapsed} {postfix}")
        self.est_done = 0.0
        self.real_done = 0.0

    def write(self, line: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:  # pragma: no cover
            print(line, file=self.stream)

    def update(self, n: int, remaining_est_s: float, running: int, failed: int) -> None:
        """Advance the bar by ``n`` finished cells (0: only refresh the running / failed / ETA status)."""
        if self.bar is None:
            return
        # ETA from the cells' cost estimates, rescaled by how fast finished cells actually ran
        scale = self.real_done / self.est_done if self.est_done > 0 else 1.0
        eta = remaining_est_s * scale / self.workers
        self.bar.set_postfix_str(f"running {running}, failed {failed}, ETA ~{_fmt_s(eta)}", refresh=n == 0)
        if n:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _priority(task: CellTask) -> tuple:
    """Scheduling order: lower seed first, then longest estimate first, then the cell key (deterministic)."""
    return task.cell.seed, -task.estimate_s, task.cell.key


def _stage_groups(tasks: list[CellTask], shared_stage: Callable[[str], tuple | bool]) -> dict[Cell, list[CellTask]]:
    """leader cell -> follower tasks (same dataset/preset/config/seed and stage): the groups of
    :func:`medseg_bench.bench.grid.stage_groups`, whose first cell (the longest estimate) is the
    leader. ``shared_stage`` gives a method's stage names (methods naming the same stages group
    together) or True (the method's own budgets group)."""
    by_cell = {t.cell: t for t in tasks}
    out = {}
    for members in stage_groups(by_cell, {c: t.estimate_s for c, t in by_cell.items()}, shared_stage).values():
        if len(members) > 1:
            out[members[0]] = [by_cell[c] for c in members[1:]]
    return out


def run_cells(
    workdir: Path,
    cells: list[Cell],
    executor: Executor,
    cell_fn: Callable[..., dict] = default_cell_fn,
    estimates: dict[Cell, float] | None = None,
    shared_stage: Callable[[str], tuple | bool] | None = None,
    extra: dict | None = None,
    progress: bool = True,
    stream=None,
    poll_s: float = 1.0,
) -> RunSummary:
    """Run every cell not yet done; never raises for a failing cell.

    Args:
        workdir: the workdir (records go to ``<workdir>/results/``).
        cells: the grid (order irrelevant: scheduled by seed, then longest first by ``estimates``, in seconds).
        executor: where cells run; started here and shut down at the end (cancelled on Ctrl-C).
        cell_fn: the cell function (default: the engine's ``train_cell``); tests inject a fake.
        shared_stage: ``method name ->`` its shared stage names (or a bool: its own budgets share one);
            cells naming the same stages form one group (see module docstring).
        extra: extra keyword arguments for ``cell_fn`` (e.g. ``{"iterations": 2}``).
    """
    stream = stream or sys.stderr
    t0 = time.monotonic()
    workdir = Path(workdir)
    estimates = estimates or {}
    summary = RunSummary(total=len(cells))
    todo = []
    for cell in dict.fromkeys(cells):  # de-duplicated, order kept
        record = sync_done_record(workdir, cell)
        if record is not None:
            summary.skipped += 1
            summary.records[cell] = record
        else:
            todo.append(cell)
    summary.total = summary.skipped + len(todo)
    if not todo:
        summary.wall_s = time.monotonic() - t0
        return summary
    executor.start()
    tasks = [CellTask(cell=c, workdir=str(workdir), cell_fn=cell_fn, num_threads=executor.num_threads,
                      device=executor.device, extra=dict(extra or {}), estimate_s=float(estimates.get(c, 1.0)))
             for c in todo]
    followers = _stage_groups(tasks, shared_stage or (lambda name: False))
    blocked = {t.cell for group in followers.values() for t in group}
    ready = sorted((t for t in tasks if t.cell not in blocked), key=_priority)
    capacity = executor.capacity or len(tasks)
    prog = _Progress(summary.total, summary.skipped, min(capacity, len(tasks)), progress, stream)
    remaining_est = sum(t.estimate_s for t in tasks)
    started: dict[Cell, float] = {}
    try:
        while ready or executor.running():
            free = capacity - executor.running()
            if free > 0 and ready:
                wave, ready = ready[:free], ready[free:]
                for t in wave:
                    started[t.cell] = time.monotonic()
                    prog.write(f"  start  {t.cell.label()}")
                executor.submit(wave)
                prog.update(0, remaining_est, executor.running(), len(summary.failed))  # show the new count
            for task, record in executor.poll(poll_s):
                cell = task.cell
                took = time.monotonic() - started.pop(cell, time.monotonic())
                summary.records[cell] = record
                remaining_est -= task.estimate_s
                prog.est_done += task.estimate_s
                prog.real_done += took
                if record.get("status") == "done":
                    summary.done += 1
                    prog.write(f"  done   {cell.label()} ({took:.0f} s)")
                else:
                    summary.failed.append((cell, _error_line(record)))
                    prog.write(f"  FAILED {cell.label()} ({took:.0f} s): {_error_line(record)}")
                if cell in followers:
                    ready = sorted(ready + followers.pop(cell), key=_priority)
                prog.update(1, remaining_est, executor.running(), len(summary.failed))
            if not executor.running() and not ready and followers:  # pragma: no cover - defensive
                ready = [t for group in followers.values() for t in group]
                followers.clear()
    except KeyboardInterrupt:
        executor.shutdown(cancel=True)
        prog.close()
        raise
    executor.shutdown()
    prog.close()
    summary.wall_s = time.monotonic() - t0
    return summary
