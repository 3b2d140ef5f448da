"""The executor interface every backend implements (local process pool, Ray, Slurm via submitit).

The runner owns scheduling (which cell next: seed by seed, longest first; stage dependencies) and progress; an
executor only starts tasks and reports finished ones. A task that dies without a record (a killed
worker, a lost node, a cancelled job) is turned into a ``failed`` record here, so the grid goes on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from ..cells import CellTask, method_info_of
from ..results import failure_record, write_record

__all__ = ["Executor", "infrastructure_failure"]


def infrastructure_failure(task: CellTask, error: BaseException | str) -> dict:
    """Store and return a ``failed`` record for a task whose worker never returned one."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    record = failure_record(task.cell, f"worker failed without a record ({text}); re-run to retry",
                            method_info=method_info_of(task.cell.method))
    write_record(task.workdir, record)
    return record


class Executor(ABC):
    """Starts :class:`~medseg_bench.bench.cells.CellTask` s and reports them when finished.

    Attributes:
        name: ``local``, ``ray`` or ``slurm``.
        capacity: how many tasks may run at once (``None``: no limit, the backend queues).
        num_threads: threads each task may use (passed to the cell function).
        device: device string for the cell function (``None``: the engine decides).
    """

    name = "base"
    capacity: int | None = None
    num_threads: int | None = 1
    device: str | None = None

    def start(self) -> None:  # noqa: B027 - optional hook
        """Acquire resources (pool, cluster connection)."""

    @abstractmethod
    def submit(self, tasks: list[CellTask]) -> None:
        """Start ``tasks`` (all at once: a Slurm executor submits them as one job array)."""

    @abstractmethod
    def poll(self, timeout: float) -> list[tuple[CellTask, dict]]:
        """Wait up to ``timeout`` seconds; return the tasks finished since the last call with records."""

    @abstractmethod
    def running(self) -> int:
        """Number of submitted tasks not yet reported by :meth:`poll`."""

    def shutdown(self, cancel: bool = False) -> None:  # noqa: B027 - optional hook
        """Release resources; ``cancel`` stops tasks still running (after an interrupt)."""
