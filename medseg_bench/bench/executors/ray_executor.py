"""Ray executor: one Ray task per cell on a Ray cluster (by address) or a local Ray instance.

Each task reserves ``num_cpus`` CPUs (its torch threads) and ``num_gpus`` GPUs (Ray sets
``CUDA_VISIBLE_DEVICES``; the cell then runs on ``cuda``). Workers write into the workdir, so on a
multi-node cluster the workdir must be on a shared file system.

Configuration (constructor arguments, else environment): ``address`` / ``$MEDSEG_RAY_ADDRESS`` /
``$RAY_ADDRESS`` (default: start a local instance), ``$MEDSEG_RAY_CPUS_PER_TASK`` (1),
``$MEDSEG_RAY_GPUS_PER_TASK`` (1 when the cluster has GPUs, else 0).
"""

from __future__ import annotations

import os

from ..cells import CellTask, execute_cell
from .base import Executor, infrastructure_failure

__all__ = ["RayExecutor"]


def _import_ray():
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - ray is an optional dependency
        raise RuntimeError("the ray executor needs Ray: pip install 'medseg_bench[ray]'") from exc
    return ray


class RayExecutor(Executor):
    """Cells as Ray tasks. ``init_kwargs`` go to ``ray.init`` when this executor starts Ray itself."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: float | None = None, num_gpus: float | None = None,
                 init_kwargs: dict | None = None):
        self.address = address or os.environ.get("MEDSEG_RAY_ADDRESS") or os.environ.get("RAY_ADDRESS")
        self.num_cpus = float(num_cpus if num_cpus is not None else os.environ.get("MEDSEG_RAY_CPUS_PER_TASK", 1))
        env_gpus = os.environ.get("MEDSEG_RAY_GPUS_PER_TASK")
        self.num_gpus = float(num_gpus) if num_gpus is not None else (float(env_gpus) if env_gpus else None)
        self.init_kwargs = dict(init_kwargs or {})
        self.num_threads = max(1, int(self.num_cpus))
        self._refs: dict = {}
        self._started_ray = False
        self._remote = None

    def start(self) -> None:
        if self._remote is not None:
            return
        ray = _import_ray()
        if not ray.is_initialized():
            kwargs = {"include_dashboard": False, "log_to_driver": False, **self.init_kwargs}
            if self.address:
                kwargs["address"] = self.address
            ray.init(**kwargs)
            self._started_ray = True
        resources = ray.cluster_resources()
        if self.num_gpus is None:
            self.num_gpus = 1.0 if resources.get("GPU", 0) >= 1 else 0.0
        self.device = "cuda" if self.num_gpus > 0 else "cpu"
        per_cpu = resources.get("CPU", 1) // max(self.num_cpus, 1e-9)
        per_gpu = resources.get("GPU", 0) // self.num_gpus if self.num_gpus > 0 else per_cpu
        self.capacity = max(1, int(min(per_cpu, per_gpu)))
        self._remote = ray.remote(execute_cell).options(num_cpus=self.num_cpus, num_gpus=self.num_gpus,
                                                        max_retries=0)

    def submit(self, tasks: list[CellTask]) -> None:
        self.start()
        for task in tasks:
            self._refs[self._remote.remote(task)] = task

    def running(self) -> int:
        return len(self._refs)

    def poll(self, timeout: float) -> list[tuple[CellTask, dict]]:
        if not self._refs:
            return []
        ray = _import_ray()
        ready, rest = ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        if ready and rest:  # collect everything else already finished, without waiting
            more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
            ready += more
        out = []
        for ref in ready:
            task = self._refs.pop(ref)
            try:
                out.append((task, ray.get(ref)))
            except Exception as exc:  # RayTaskError, WorkerCrashedError, node loss ...
                out.append((task, infrastructure_failure(task, exc)))
        return out

    def shutdown(self, cancel: bool = False) -> None:
        if self._refs and cancel:
            ray = _import_ray()
            for ref in list(self._refs):
                ray.cancel(ref, force=True)
        self._refs.clear()
        if self._started_ray:
            _import_ray().shutdown()
            self._started_ray = False
        self._remote = None
