"""Synthetic result records for leaderboard tests (contracts.md schema)."""

from __future__ import annotations

import numpy as np


def record(dataset, method, budget, seed, dice, family="semi-supervised", oracle=False, preset="quick",
           config="2d", hd95=None, instance=None, diagonal=100.0, status="done", error=None, spacing=(1.0, 1.0),
           tau=None):
    """``tau``: the per-dataset NSD tau (spacing units) the record was scored with; None: a legacy record
    (before issue 23: no ``tau_source``)."""
    per_case = []
    for i, d in enumerate(dice):
        h = hd95[i] if hd95 is not None else round((1.0 - d) * 20.0, 6)
        entry = {"case": f"case_{i:03d}", "shape": [10, 10], "spacing": list(spacing), "diagonal": diagonal,
                 "classes": {"fg": {"dice": d, "iou": d / (2 - d) if not isinstance(d, str) else d, "hd95": h,
                                    "assd": h if isinstance(h, str) else h / 3.0, "nsd": d}}}
        if instance is not None:
            entry["instance"] = {"aji": instance[i], "pq": instance[i] * 0.9}
        per_case.append(entry)
    return {
        "record_version": 1,
        "cell": {"dataset": dataset, "preset": preset, "configuration": config, "method": method,
                 "budget": budget, "seed": seed},
        "status": status, "error": error,
        "method_info": {"family": family, "citation": f"{method} et al. 2024", "needs_labels": budget != 0,
                        "oracle": oracle, "class_rule": "brighter phase" if family == "unsupervised" else None},
        "budget_cases": [], "n_labelled": 0,
        "provenance": {"train_time_s": 10.0 + seed, "parameters": 1234, "peak_memory_mb": 99.5},
        "metrics": ({"per_case": per_case, **({} if tau is None else {"metric_definitions": {"nsd": {
            "tau": tau, "tau_unit": "spacing units", "tau_source": "2 x median finest-axis spacing"}}})}
                    if status == "done" else None),
    }


def grid(seed=0, n_cases=10, datasets=("ct_hip_small", "nuclei_he_small"), preset="quick"):
    """A realistic little grid with classical, unsupervised (+ oracle), supervised, semi-supervised rows."""
    rng = np.random.default_rng(seed)
    recs = []

    def add(ds, m, fam, b, base, oracle=False, inst=False):
        for s in (0, 1, 2):
            dice = [round(float(x), 6) for x in np.clip(base + rng.normal(0, 0.04, n_cases), 0, 1)]
            instance = [round(x * 0.8, 6) for x in dice] if inst else None
            recs.append(record(ds, m, b, s, dice, family=fam, oracle=oracle, instance=instance, preset=preset))

    for ds in datasets:
        inst = ds.startswith("nuclei")
        add(ds, "otsu", "classical", 0, 0.50, inst=inst)
        add(ds, "cuts", "unsupervised", 0, 0.56, inst=inst)
        add(ds, "cuts_oracle", "unsupervised", 0, 0.75, oracle=True, inst=inst)
        for b, base in ((2, 0.62), (4, 0.72)):
            add(ds, "supervised", "supervised", b, base, inst=inst)
            add(ds, "mean_teacher", "semi-supervised", b, base + 0.06, inst=inst)
        add(ds, "supervised_full", "supervised", "all", 0.86, inst=inst)
    return recs
