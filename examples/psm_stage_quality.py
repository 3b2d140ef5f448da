"""Report-only check of PSM's intermediate stages against the labels (never used by the method).

PSM (``medseg_bench.methods.psm``) reads no label. To *report* how good its pseudo-labels are, this
script compares the cached stages of one (dataset, preset, seed) with the preprocessed labels:

* pseudo-mask vs semantic label: Dice, precision, recall, foreground fractions (per case, mean);
* detection points vs instance labels: point precision (points inside a nucleus, counting one
  point per nucleus), nucleus recall (nuclei with at least one point), points per nucleus.

Usage::

    python examples/psm_stage_quality.py --workdir /tmp/wd --dataset nuclei_he_small --preset quick

It prints one Markdown table per stage folder found. Labels of training cases are read here, which
is why this is a script for the method's documentation and not part of the method.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    s = a.sum() + b.sum()
    return float(2 * (a & b).sum() / s) if s else float("nan")


def mask_quality(mask_dir: Path, pre: Path) -> list[dict]:
    rows = []
    for f in sorted(mask_dir.glob("*_psm_mask.npy")):
        cid = f.name[: -len("_psm_mask.npy")]
        seg_file = pre / f"{cid}_seg.npy"
        if not seg_file.is_file():
            continue  # an unlabelled image
        m, g = np.load(f) > 0, np.load(seg_file) > 0
        tp = (m & g).sum()
        rows.append({"case": cid, "dice": _dice(m, g), "precision": float(tp / max(1, m.sum())),
                     "recall": float(tp / max(1, g.sum())), "fg_pseudo": float(m.mean()), "fg_label": float(g.mean())})
    return rows


def point_quality(det_dir: Path, pre: Path) -> list[dict]:
    rows = []
    for f in sorted(det_dir.glob("*_psm_points.npy")):
        cid = f.name[: -len("_psm_points.npy")]
        inst_file = pre / f"{cid}_inst.npy"
        if not inst_file.is_file():
            continue
        pts, inst = np.load(f).reshape(-1, 2), np.load(inst_file)
        hit = inst[pts[:, 0], pts[:, 1]] if len(pts) else np.zeros(0, int)
        n_nuclei = int(len(np.unique(inst)) - (1 if (inst == 0).any() else 0))
        hit_ids = np.unique(hit[hit > 0])
        rows.append({"case": cid, "points": int(len(pts)), "nuclei": n_nuclei,
                     "point_precision": float(len(hit_ids) / max(1, len(pts))),
                     "nucleus_recall": float(len(hit_ids) / max(1, n_nuclei)),
                     "points_in_background": float((hit == 0).mean()) if len(pts) else float("nan")})
    return rows


def _table(rows: list[dict]) -> str:
    if not rows:
        return "(no labelled case)"
    keys = [k for k in rows[0] if k != "case"]
    means = {k: float(np.nanmean([r[k] for r in rows])) for k in keys}
    head = "| cases | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys)
    return head + f"\n| {len(rows)} (mean) | " + " | ".join(f"{means[k]:.3f}" for k in keys) + " |"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", default="2d")
    ap.add_argument("--json", help="also write the per-case rows here")
    a = ap.parse_args(argv)
    wd = Path(a.workdir)
    plans = json.loads((wd / "preprocessed" / a.dataset / "plans.json").read_text())
    pre = wd / "preprocessed" / a.dataset / plans["configurations"][a.config]["data_identifier"]
    stages = wd / "stages" / a.dataset / a.preset
    out = {}
    for folder in sorted(stages.glob(f"psm_masks-{a.config}-*/seed_{a.seed}")):
        rows = mask_quality(folder, pre)
        out[str(folder)] = rows
        print(f"pseudo-masks {folder}:\n{_table(rows)}\n")
    for folder in sorted(stages.glob(f"psm_detect-{a.config}-*/seed_{a.seed}")):
        rows = point_quality(folder, pre)
        out[str(folder)] = rows
        print(f"detection points {folder}:\n{_table(rows)}\n")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
