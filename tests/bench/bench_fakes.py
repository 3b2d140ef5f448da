"""Fakes for runner tests: a cell function that behaves like the engine's ``train_cell`` contract
(run folder, record.json, DONE marker written last) without training anything, and method classes."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from medseg_bench.io import Geometry, RawDatasetWriter
from medseg_bench.workdir import Workdir


def make_record(dataset, preset, config, method, budget, seed, dice_per_case, family="semi-supervised",
                oracle=False, hd95=None, citation="Doe et al. 2024", instance=None, diagonal=100.0):
    per_case = []
    for i, d in enumerate(dice_per_case):
        h = (hd95[i] if hd95 is not None else (1.0 - d) * 20.0)
        entry = {"case": f"case_{i:03d}", "classes": {"1": {"dice": d, "iou": d / (2 - d), "hd95": h,
                                                            "assd": h / 3.0, "nsd": d}},
                 "diagonal": diagonal}
        if instance is not None:
            entry["instance"] = {"aji": instance[i], "pq": instance[i] * 0.9}
        per_case.append(entry)
    return {
        "record_version": 1,
        "cell": {"dataset": dataset, "preset": preset, "configuration": config, "method": method,
                 "budget": budget, "seed": seed},
        "status": "done", "error": None,
        "method_info": {"family": family, "citation": citation, "needs_labels": family != "unsupervised",
                        "oracle": oracle, "class_rule": None},
        "budget_cases": [], "n_labelled": 0 if budget == 0 else budget,
        "provenance": {"dataset_hash": "h", "train_time_s": 10.0 + seed, "parameters": 1000,
                       "peak_memory_mb": 123.0, "wall_time_s": 12.0},
        "metrics": {"per_case": per_case},
    }


def fake_cell_fn(workdir, dataset, method, budget, seed, preset=None, config=None, device=None, resume=True,
                 progress=True, num_threads=None, **kwargs):
    """Engine stand-in. Method names steer it: 'broken' raises, 'crash' kills its process."""
    wd = Workdir(Path(workdir))
    with open(Path(workdir) / "calls.log", "a") as f:
        f.write(f"{dataset} {method} {budget} {seed} pid={os.getpid()} threads={num_threads} device={device}\n")
    if method == "broken":
        raise RuntimeError("deliberately broken method")
    if method == "crash":
        os._exit(3)
    time.sleep(float(kwargs.get("sleep", 0.0)))
    run = wd.run_dir(dataset, preset, config, method, budget, seed)
    run.mkdir(parents=True, exist_ok=True)
    base = 0.5 if budget == 0 else 0.8
    rec = make_record(dataset, preset, config, method, budget, seed, [base + 0.01 * i + 0.001 * seed for i in range(5)])
    (run / "record.json").write_text(json.dumps(rec))
    (run / "DONE").write_text("")
    return rec


def fake_prepare(workdir, dataset):
    out = Workdir(Path(workdir)).preprocessed(dataset)
    out.mkdir(parents=True, exist_ok=True)
    plans = {"dims": 2, "configurations": {"2d": {}},
             "presets": {p: {"recommended_configuration": "2d",
                             "configurations": {"2d": {"num_iterations": 10, "step_time_estimate_s": 0.1}}}
                         for p in ("demo", "quick", "paper")}}
    (out / "plans.json").write_text(json.dumps(plans))
    with open(Path(workdir) / "prepare.log", "a") as f:
        f.write(dataset + "\n")


class _M:
    dims = (2, 3)
    citation = "test"
    oracle = False


class Unsup(_M):
    name, family, budgets = "unsup", "unsupervised", "zero_only"


class Semi(_M):
    name, family, budgets = "semi", "semi-supervised", "labelled"


class Sup(_M):
    name, family, budgets = "supervised", "supervised", "labelled"


class SupFull(Sup):
    name, family, budgets = "supervised_full", "supervised", "all_only"


class Broken(_M):
    name, family, budgets = "broken", "semi-supervised", "labelled"


class Crash(_M):
    name, family, budgets = "crash", "semi-supervised", "labelled"


class Only3D(_M):
    name, family, budgets, dims = "only3d", "semi-supervised", "labelled", (3,)


METHODS = {c.name: c for c in (Unsup, Semi, Sup, SupFull)}


def toy_dataset(root, name, n_train=4):
    w = RawDatasetWriter(root / "raw" / name, {"0": "gray"}, {"background": 0, "fg": 1}, ".nii.gz")
    g = Geometry(spacing=(1.0, 1.0), origin=(0.0, 0.0), direction=(1.0, 0.0, 0.0, 1.0))
    for i in range(n_train + 2):
        img = np.zeros((1, 8, 8), np.float32)
        img[0, 2:5, 2:5] = 1
        w.add_case(f"c{i}", img, g, label=(img[0] > 0).astype(np.uint8), subset="train" if i < n_train else "test")
    w.finalize()


class Staged(_M):
    """A row with a budget-independent stage (``shared_stages``) and both cost hooks: 360 s per cell,
    3600 s for the stage."""

    name, family, budgets = "staged", "semi-supervised", "labelled"
    shared_stages = ("fake_stage",)

    @classmethod
    def estimate_cost_s(cls, plans, preset, config, budget):
        return 360.0

    @classmethod
    def estimate_stage_cost_s(cls, plans, preset, config):
        return {"fake_stage": 3600.0}
