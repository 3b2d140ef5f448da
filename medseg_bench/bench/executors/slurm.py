"""Slurm executor through submitit: each wave of ready cells is submitted as one job array.

``cluster="slurm"`` submits to Slurm (``sbatch`` must be on the PATH); ``"local"`` runs the same jobs
as local subprocesses (submitit's ``LocalExecutor``, used by the tests); ``"debug"`` runs them in this
process when polled. Job logs and pickles go to ``<workdir>/slurm/``; the workdir must be on a file
system the compute nodes share.

Configuration (constructor arguments, else environment): ``$MEDSEG_SLURM_CLUSTER`` (default: auto,
i.e. slurm when ``sbatch`` exists, else local), ``$MEDSEG_SLURM_PARTITION``,
``$MEDSEG_SLURM_TIMEOUT_MIN`` (default 240), ``$MEDSEG_SLURM_CPUS_PER_TASK`` (1),
``$MEDSEG_SLURM_GPUS`` (0), ``$MEDSEG_SLURM_MEM_GB``, ``$MEDSEG_SLURM_ARRAY_PARALLELISM`` (64).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..cells import CellTask, execute_cell
from .base import Executor, infrastructure_failure

__all__ = ["SlurmExecutor"]


def _env(name: str, default=None, cast=str):
    value = os.environ.get(name)
    return cast(value) if value not in (None, "") else default


class SlurmExecutor(Executor):
    """Cells as submitit jobs (Slurm job arrays)."""

    name = "slurm"

    def __init__(self, folder: str | Path, cluster: str | None = None, partition: str | None = None,
                 timeout_min: int | None = None, cpus_per_task: int | None = None, gpus: int | None = None,
                 mem_gb: float | None = None, array_parallelism: int | None = None, poll_interval_s: float = 2.0):
        try:
            import submitit
        except ImportError as exc:  # pragma: no cover - optional dependency
            raise RuntimeError("the slurm executor needs submitit: pip install 'medseg_bench[slurm]'") from exc
        self.folder = Path(folder)
        self.cluster = cluster or _env("MEDSEG_SLURM_CLUSTER")
        self._executor = submitit.AutoExecutor(folder=self.folder / "%j", cluster=self.cluster)
        self.cluster = self._executor.cluster
        cpus = cpus_per_task or _env("MEDSEG_SLURM_CPUS_PER_TASK", 1, int)
        gpus = gpus if gpus is not None else _env("MEDSEG_SLURM_GPUS", 0, int)
        params = {"timeout_min": timeout_min or _env("MEDSEG_SLURM_TIMEOUT_MIN", 240, int),
                  "cpus_per_task": cpus, "name": "medseg-bench"}
        if gpus:
            params["gpus_per_node"] = gpus
        mem = mem_gb or _env("MEDSEG_SLURM_MEM_GB", None, float)
        if mem:
            params["mem_gb"] = mem
        if self.cluster == "slurm":
            params["slurm_array_parallelism"] = array_parallelism or _env("MEDSEG_SLURM_ARRAY_PARALLELISM", 64, int)
            partition = partition or _env("MEDSEG_SLURM_PARTITION")
            if partition:
                params["slurm_partition"] = partition
        self._executor.update_parameters(**params)
        self.num_threads = cpus
        self.device = "cuda" if gpus else None
        # Slurm queues by itself; a local run is bounded by the cores; debug runs one at a time
        self.capacity = {"slurm": None, "debug": 1}.get(self.cluster, os.cpu_count() or 1)
        self.poll_interval_s = poll_interval_s
        self._jobs: dict = {}

    def submit(self, tasks: list[CellTask]) -> None:
        if not tasks:
            return
        with self._executor.batch():  # one job array per wave
            pending = [(self._executor.submit(execute_cell, t), t) for t in tasks]
        for job, task in pending:
            self._jobs[job] = task

    def running(self) -> int:
        return len(self._jobs)

    def _collect(self, job, task) -> tuple[CellTask, dict]:
        try:
            return task, job.result()
        except Exception as exc:  # FailedJobError, UncompletedJobError (timeout, preemption, cancel)
            return task, infrastructure_failure(task, f"job {job.job_id}: {exc}")

    def poll(self, timeout: float) -> list[tuple[CellTask, dict]]:
        if not self._jobs:
            return []
        if self.cluster == "debug":  # runs in this process on result()
            job, task = next(iter(self._jobs.items()))
            del self._jobs[job]
            return [self._collect(job, task)]
        deadline = time.monotonic() + timeout
        while True:
            finished = [j for j in self._jobs if j.done()]
            if finished or time.monotonic() >= deadline:
                break
            time.sleep(min(self.poll_interval_s, max(0.0, deadline - time.monotonic())))
        return [self._collect(j, self._jobs.pop(j)) for j in finished]

    def shutdown(self, cancel: bool = False) -> None:
        if cancel:
            for job in list(self._jobs):
                try:
                    job.cancel(check=False)
                except Exception:  # best effort: the job may already be gone
                    pass
        self._jobs.clear()
