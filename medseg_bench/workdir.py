"""The workdir: the one folder under which the suite writes everything (ARCHITECTURE.md).

Layout::

    <workdir>/raw/<dataset>/                 generated or converted raw datasets
    <workdir>/preprocessed/<dataset>/        fingerprint.json, plans.json, splits.json, arrays
    <workdir>/stages/<dataset>/<preset>/<method-stage>/seed_<s>/   budget-independent artefacts
    <workdir>/runs/<dataset>/<preset>/<config>/<method>/budget_<b>/seed_<s>/
    <workdir>/results/                       one record per cell
    <workdir>/leaderboards/                  what `medseg-bench run` writes

The workdir is ``--workdir``, else ``$MEDSEG_WORKDIR``, else ``./medseg_work``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Workdir", "resolve_workdir", "DEFAULT_WORKDIR"]

DEFAULT_WORKDIR = "medseg_work"


def resolve_workdir(arg: str | os.PathLike | None = None) -> Path:
    """``arg`` if given, else ``$MEDSEG_WORKDIR``, else ``./medseg_work`` (absolute path)."""
    chosen = arg if arg else os.environ.get("MEDSEG_WORKDIR") or DEFAULT_WORKDIR
    return Path(chosen).expanduser().resolve()


@dataclass(frozen=True)
class Workdir:
    root: Path

    @classmethod
    def from_arg(cls, arg: str | os.PathLike | None = None) -> Workdir:
        return cls(resolve_workdir(arg))

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def leaderboards(self) -> Path:
        return self.root / "leaderboards"

    def raw_dataset(self, name: str) -> Path:
        return self.raw / name

    def preprocessed(self, dataset: str) -> Path:
        return self.root / "preprocessed" / dataset

    def stage_dir(self, dataset: str, preset: str, stage: str, seed: int) -> Path:
        return self.root / "stages" / dataset / preset / stage / f"seed_{seed}"

    def run_dir(self, dataset: str, preset: str, config: str, method: str, budget: int | str, seed: int) -> Path:
        return self.root / "runs" / dataset / preset / config / method / f"budget_{budget}" / f"seed_{seed}"

    def resolve_dataset(self, arg: str | os.PathLike) -> Path:
        """A dataset argument is a path to a raw folder or a name under ``<workdir>/raw/``."""
        p = Path(arg).expanduser()
        if (p / "dataset.json").exists() or (p.is_dir() and (os.sep in str(arg) or str(arg).startswith("."))):
            return p.resolve()
        candidate = self.raw / str(arg)
        if candidate.is_dir():
            return candidate
        if p.is_dir():
            return p.resolve()
        known = sorted(d.name for d in self.raw.iterdir() if d.is_dir() and not d.name.startswith(".")) if self.raw.is_dir() else []
        hint = f"; datasets under {self.raw}: {', '.join(known)}" if known else f"; {self.raw} holds no datasets yet"
        raise FileNotFoundError(f"dataset {str(arg)!r} is neither a raw dataset folder nor a name under {self.raw}{hint}")
