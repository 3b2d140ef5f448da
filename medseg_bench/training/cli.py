"""Handlers of ``medseg-bench train`` and ``medseg-bench predict`` (argument names as in cli.py)."""

from __future__ import annotations

import json
import sys

__all__ = ["format_metrics", "predict_command", "train_command"]


def format_metrics(metrics: dict) -> str:
    """One line per class (Dice, HD95, NSD) and the instance means, from a metrics summary."""
    lines = []
    for cls, vals in (metrics.get("mean") or {}).items():
        if cls == "instance" or not isinstance(vals, dict):
            continue
        parts = [f"{k} {vals[k]:.4f}" if isinstance(vals.get(k), float) else f"{k} {vals.get(k)}"
                 for k in ("dice", "hd95", "nsd") if k in vals]
        lines.append(f"  {cls}: " + ", ".join(parts))
    inst = (metrics.get("mean") or {}).get("instance") or metrics.get("instance_mean")
    if isinstance(inst, dict):
        lines.append("  instances: " + ", ".join(f"{k} {v:.4f}" for k, v in inst.items() if isinstance(v, float)))
    return "\n".join(lines)


def train_command(dataset, method, budget, seed=0, workdir=None, preset=None, config=None, device=None,
                  resume=False, iterations=None, rerun=False, tta=False) -> int:
    """Plan/preprocess if needed, train one cell, predict and evaluate the test set."""
    from ..methods import MethodNotFound
    from ..splits import BudgetError
    from .cell import ensure_prepared, train_cell

    try:
        ensure_prepared(workdir, dataset)
        record = train_cell(workdir, dataset, method, budget, seed, preset=preset, config=config, device=device,
                            resume=resume, iterations=iterations, rerun=rerun,
                            overrides={"tta": True} if tta else None)
    except (BudgetError, MethodNotFound, FileNotFoundError, ValueError) as exc:
        print(f"medseg-bench train: {exc}", file=sys.stderr)
        return 2
    c, p = record["cell"], record["provenance"]
    print(f"{c['dataset']} {c['preset']}/{c['configuration']} {c['method']} budget {c['budget']} seed {c['seed']}: "
          f"{p.get('iterations')} iterations, train {p.get('train_time_s')} s, inference {p.get('inference_time_s')} s, "
          f"total {p.get('wall_time_s')} s")
    print(format_metrics(record["metrics"] or {}))
    return 0


def predict_command(run_dir, images_dir, out_dir, workdir=None, tta=False) -> int:
    """Predict a folder of raw images with a finished run into ``out_dir``."""
    from .predict import predict_images_folder

    try:
        cases = predict_images_folder(run_dir, images_dir, out_dir, tta=tta)
    except (FileNotFoundError, ValueError) as exc:
        print(f"medseg-bench predict: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"predicted": len(cases), "out_dir": str(out_dir)}))
    return 0
