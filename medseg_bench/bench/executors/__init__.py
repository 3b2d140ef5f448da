"""Executors behind one interface: ``local`` (process pool), ``ray`` and ``slurm`` (submitit).

Extending is adding: a new backend is a module with an :class:`Executor` subclass registered in
:data:`EXECUTORS`.
"""

from __future__ import annotations

from pathlib import Path

from .base import Executor, infrastructure_failure

__all__ = ["EXECUTORS", "Executor", "infrastructure_failure", "make_executor"]

EXECUTORS = ("local", "ray", "slurm")


def make_executor(name: str, workdir: Path, workers: int | None = None, device: str | None = None,
                  **options) -> Executor:
    """Build an executor by name. ``workers`` sizes the local pool; ``options`` go to the backend."""
    if name == "local":
        from .local import LocalExecutor

        return LocalExecutor(workers=workers, device=device, **options)
    if name == "ray":
        from .ray_executor import RayExecutor

        return RayExecutor(**options)
    if name == "slurm":
        from .slurm import SlurmExecutor

        return SlurmExecutor(Path(workdir) / "slurm", **options)
    raise ValueError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
