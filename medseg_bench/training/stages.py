"""Helpers for budget-independent stages a method caches under ``ctx.stage_dir(...)``.

A stage folder is shared by every cell of one (dataset, preset, seed): two workers that reach it at
once must not both compute it, and a worker killed half-way must not leave a file that looks done.
:func:`stage_lock` serialises the workers (an exclusive ``flock`` on ``<folder>/.lock``);
:func:`save_array` and :func:`write_json` write through a temporary file and a rename, so a stage's
done-marker (written last) is only ever complete.

The engine-run stages (a label-free :class:`~medseg_bench.methods.base.Method` trained by the
engine loop in the stage folder) go through :func:`train_stage`: folder (:func:`stage_folder`),
lock, a context restricted to the stage's images, setup, loop. The loop's own checkpoint/resume
contract makes a later call, from any cell, load the finished stage instead of training it again.
:func:`stage_key` names a stage folder by a hash of what determines it; :func:`base_iterations`
and :func:`set_iterations` keep the cell's U-Net iteration count when a method runs another one.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np

__all__ = ["base_iterations", "save_array", "set_iterations", "stage_folder", "stage_key", "stage_lock", "train_stage",
           "write_json"]


def base_iterations(ctx) -> int:
    """The U-Net iteration count of the cell (the preset's, or ``--iterations``): a method that runs
    another count keeps it as ``settings["plan_iterations"]`` (:func:`set_iterations`) before it sets
    ``settings["iterations"]`` to its own (so the result record states the iterations that ran)."""
    return int(ctx.settings.get("plan_iterations", ctx.iterations))


def set_iterations(ctx, n: int) -> None:
    """Run ``n`` iterations in this cell, keeping the cell's own count for :func:`base_iterations`."""
    ctx.settings.setdefault("plan_iterations", ctx.iterations)
    ctx.settings["iterations"] = int(n)


def stage_key(blob: dict) -> str:
    """10 hex digits of the SHA-256 of ``blob`` as sorted JSON (``default=str``): a stage folder's key."""
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:10]


def stage_folder(ctx, stage: str) -> Path:
    """``ctx.stage_dir(stage)``; for a context without a workdir (a hand-made one, tests) the folder
    ``stage`` inside the run folder."""
    try:
        return Path(ctx.stage_dir(stage))
    except RuntimeError:
        return Path(ctx.run_dir) / stage


def train_stage(ctx, method, stage: str, ids, settings: dict | None = None, desc: str | None = None,
                seed: int | None = None):
    """Train the label-free ``method`` (not yet set up) on the images ``ids`` in the stage folder
    ``stage`` (:func:`stage_folder`), under :func:`stage_lock`, once: a later call, from any cell,
    finds the loop's final checkpoint there and loads it instead of training again.

    The stage context is ``ctx`` with ``settings`` (default: a copy of the cell's), no labelled ids,
    ``ids`` as the unlabelled stream and the stage folder as its run folder; a method with a
    ``train_context(ctx)`` (e.g. the ACWE methods: min–max scaled images) runs its loop on that.
    ``seed``: the stage starts from ``seed_everything(seed)`` and the caller's random state is
    restored afterwards, so the stage is the same whichever cell (or method: a stage shared by
    several rows) computes it, and the calling cell's own training draws the same random numbers
    whether the stage was trained now or loaded. ``None`` (default): the stage continues the
    caller's random stream.

    Returns ``(loop summary, folder)``; the trained weights are in ``method.networks``. The
    summary's ``train_time_s`` is the stage's own training time, the same whether trained now or loaded.
    """
    from .checkpoint import capture_rng, restore_rng, seed_everything

    folder = stage_folder(ctx, stage)
    ids = list(ids)
    with stage_lock(folder):
        saved = capture_rng() if seed is not None else None
        try:
            if seed is not None:
                seed_everything(int(seed))
            sctx = dataclasses.replace(ctx, settings=dict(ctx.settings if settings is None else settings),
                                       labelled_ids=[], unlabelled_ids=ids, run_dir=folder)
            method.setup(sctx)
            run = method.train_context(sctx) if hasattr(method, "train_context") else sctx
            summary = run.run_loop(method, out_dir=folder, labelled_ids=[], unlabelled_ids=ids,
                                   desc=desc or f"{method.name} stage")
        finally:
            if saved is not None:
                restore_rng(saved)
    return summary, folder


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
