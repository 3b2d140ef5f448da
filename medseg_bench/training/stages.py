"""Helpers for budget-independent stages a method caches under ``ctx.stage_dir(...)``.

A stage folder is shared by every cell of one (dataset, preset, seed): two workers that reach it at
once must not both compute it, and a worker killed half-way must not leave a file that looks done.
:func:`stage_lock` serialises the workers (an exclusive ``flock`` on ``<folder>/.lock``);
:func:`save_array` and :func:`write_json` write through a temporary file and a rename, so a stage's
done-marker (written last) is only ever complete.
"""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np

__all__ = ["save_array", "stage_lock", "write_json"]


@contextmanager
def stage_lock(folder):
    """Exclusive lock on ``folder/.lock`` (created with its parents) for the ``with`` block."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield folder
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def save_array(path, array: np.ndarray) -> None:
    """``np.save`` to ``path`` (which should end in ``.npy``) atomically."""
    path = Path(path)
    tmp = _tmp(path)
    with open(tmp, "wb") as fh:
        np.save(fh, np.asarray(array))
    os.replace(tmp, path)


def write_json(path, obj) -> None:
    """JSON to ``path`` atomically (NaN is refused)."""
    path = Path(path)
    tmp = _tmp(path)
    tmp.write_text(json.dumps(obj, indent=1, allow_nan=False, default=str) + "\n")
    os.replace(tmp, path)
