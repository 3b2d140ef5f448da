"""``medseg-bench plan``: fingerprint (cached) + plans (hand edits kept). Imports no torch unless
``--calibrate``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from . import calibration as _calibration
from .calibration import DEFAULT_MODEL, cache_path, load_step_time_model
from .fingerprint import FINGERPRINT_VERSION, compute_fingerprint, source_stat_hash
from .planner import make_plans
from .plans_file import (
    FINGERPRINT_FILE,
    PLANS_FILE,
    PROPOSED_FILE,
    is_hand_edited,
    read_json,
    stamp,
    write_json_atomic,
)

__all__ = ["get_fingerprint", "plan_dataset", "plan_command", "format_plans"]


def get_fingerprint(raw_dir: str | os.PathLike, out_dir: str | os.PathLike, force: bool = False,
                    num_workers: int | None = None) -> dict:
    """``<out_dir>/fingerprint.json``, recomputed only when the raw files changed (paths, sizes,
    modification times) or ``force``."""
    from ..io import RawDataset

    raw = RawDataset(raw_dir)
    path = Path(out_dir) / FINGERPRINT_FILE
    if path.is_file() and not force:
        try:
            cached = read_json(path)
        except ValueError:
            cached = {}
        if cached.get("fingerprint_version") == FINGERPRINT_VERSION and cached.get("source_stat_hash") == source_stat_hash(raw):
            return cached
    fingerprint = compute_fingerprint(raw.path, num_workers=num_workers)
    write_json_atomic(path, fingerprint)
    return fingerprint


def plan_dataset(raw_dir: str | os.PathLike, out_dir: str | os.PathLike, memory_gb: float | None = None,
                 force: bool = False, num_workers: int | None = None, step_model=None, log=None) -> dict:
    """Fingerprint ``raw_dir`` and write ``<out_dir>/plans.json``; returns the plans in effect.

    A ``plans.json`` edited by hand is kept (the new proposal goes to ``plans.proposed.json``) unless
    ``force``; an unedited one is replaced when the new plan differs (dataset or rules changed).
    """
    out_dir = Path(out_dir)
    fingerprint = get_fingerprint(raw_dir, out_dir, force=force, num_workers=num_workers)
    plans = make_plans(fingerprint, memory_gb=memory_gb, step_model=step_model)
    plans["dataset_hash"] = fingerprint["dataset_hash"]
    plans = stamp(plans)
    path = out_dir / PLANS_FILE
    if path.is_file() and not force:
        try:
            existing = read_json(path)
        except ValueError:
            existing = None
        if existing is not None and is_hand_edited(existing):
            write_json_atomic(out_dir / PROPOSED_FILE, plans)
            if log:
                log(f"{path} was edited by hand: kept as is; the planner's proposal is in {out_dir / PROPOSED_FILE} "
                    f"(use --force to replace the edited plans)")
            return existing
        if existing is not None and existing.get("content_hash") == plans["content_hash"]:
            return existing
    write_json_atomic(path, plans)
    proposed = out_dir / PROPOSED_FILE
    if proposed.exists():
        proposed.unlink()
    return plans


def format_plans(plans: dict) -> str:
    """A short human-readable summary of the presets."""
    lines = [f"{plans['dataset']}: {plans['dims']}D, {plans['num_channels']} channel(s) ({plans['modality']}), "
             f"{plans['num_images']} images; spacing {plans['configurations'][next(iter(plans['configurations']))]['spacing']} "
             f"(transpose {plans['transpose_forward']})"]
    for name, preset in plans["presets"].items():
        for cfg, p in preset["configurations"].items():
            mark = "*" if cfg == preset["recommended_configuration"] else " "
            lines.append(f" {mark} {name:6s} {cfg:11s} patch {'x'.join(map(str, p['patch_size'])):>12s}  batch {p['batch_size']:3d}  "
                         f"filters {p['network']['filters'][0]}-{p['network']['filters'][-1]}  step ~{p['step_time_estimate_s']:.3f} s ({p['memory_device']})  "
                         f"mem ~{p['memory_estimate_gb']:.2f} GB  {p['num_iterations']} it")
    lines.append("   (* = recommended configuration of the preset)")
    return "\n".join(lines)


def plan_command(dataset, workdir, memory_gb: float | None = None, force: bool = False, calibrate: bool = False) -> int:
    """CLI handler of ``medseg-bench plan``."""
    from ..io import DatasetError, ImageReadError
    from ..workdir import Workdir

    wd = Workdir(Path(workdir))
    try:
        raw_dir = wd.resolve_dataset(dataset)
    except FileNotFoundError as exc:
        print(f"medseg-bench plan: {exc}", file=sys.stderr)
        return 1
    if calibrate:
        print("calibrating this machine's CPU step time (1 thread, about a minute) ...")
        _calibration.calibrate()
        print(f"cached in {cache_path()}")
    model = load_step_time_model()
    if model.source == DEFAULT_MODEL["source"]:
        print(f"note: CPU step times use the shipped reference model ({model.source}); "
              "run `medseg-bench plan --calibrate` once to measure this machine")
    out_dir = wd.preprocessed(raw_dir.name)
    from ..io.verify import verify_dataset

    verify_dataset(raw_dir, out_dir)  # InvalidDatasetError -> the CLI prints every problem, exit 2
    try:
        plans = plan_dataset(raw_dir, out_dir, memory_gb=memory_gb, force=force, step_model=model,
                             log=lambda m: print(f"warning: {m}", file=sys.stderr))
    except (DatasetError, ImageReadError, ValueError) as exc:
        print(f"medseg-bench plan: {exc}", file=sys.stderr)
        return 1
    print(format_plans(plans))
    print(f"wrote {out_dir / FINGERPRINT_FILE} and {out_dir / PLANS_FILE}")
    return 0
