"""Planning and preprocessing speed: medseg_bench vs nnU-Net v2, side by side on the same raw data.

Both tools run as command-line subprocesses (process start and imports included) with the same
number of worker processes:

* medseg_bench: ``medseg-bench plan`` (fingerprint + plans) and ``medseg-bench preprocess``;
* nnU-Net v2: ``nnUNetv2_extract_fingerprint`` + ``nnUNetv2_plan_experiment`` and
  ``nnUNetv2_preprocess -c 3d_fullres`` (``2d`` for 2D data), from ``--nnunet-bin`` (a folder with
  the console scripts, e.g. a separate virtual environment) or the PATH; skipped with a note when
  nnU-Net is not installed.

The raw datasets are the built-in generators at ``--size`` (generated into the workdir first, not
timed) or raw folders given as paths. With ``--roundtrip`` every labelled case's label map is also
preprocessed to the planned spacing and exported back, and the Dice per class is reported.

Example::

    python benchmarks/plan_bench.py --size small --workers 2 --nnunet-bin /tmp/nnunet_venv/bin --roundtrip

Plans written by ``plan`` here use this machine's CPU calibration when one is cached; set
``MEDSEG_CACHE_DIR`` to an empty folder to get the shipped reference model (as the committed
examples in ``datasets/plans/`` do).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

BUILTIN = ("spect_bone", "ct_hip", "retina_ga", "nuclei_he")


def run(cmd, env=None) -> float:
    """Run a command, fail loudly, return wall seconds."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return elapsed


def ensure_raw(name: str, size: str, workdir: Path) -> Path:
    path = Path(name)
    if (path / "dataset.json").is_file():
        return path.resolve()
    raw = workdir / "raw" / f"{name}_{size}"
    if not (raw / "dataset.json").is_file():
        print(f"generating {name} ({size}) ...", flush=True)
        run([sys.executable, "-m", "medseg_bench", "datasets", "generate", name, "--size", size, "--out", str(raw),
             "--workdir", str(workdir)])
    return raw


def time_ours(raw: Path, workdir: Path, workers: int) -> dict:
    pp = workdir / "preprocessed" / raw.name
    shutil.rmtree(pp, ignore_errors=True)
    base = [sys.executable, "-m", "medseg_bench"]
    env = dict(os.environ)
    plan_s = run(base + ["plan", str(raw), "--workdir", str(workdir)], env)
    prep_s = run(base + ["preprocess", str(raw), "--workdir", str(workdir), "-j", str(workers)], env)
    return {"plan_s": plan_s, "preprocess_s": prep_s}


def nnunet_bin(arg: str | None) -> Path | None:
    if arg:
        p = Path(arg)
        return p if (p / "nnUNetv2_plan_experiment").exists() else None
    found = shutil.which("nnUNetv2_plan_experiment")
    return Path(found).parent if found else None


def time_nnunet(raw: Path, dataset_id: int, workdir: Path, workers: int, bindir: Path) -> dict:
    root = workdir / "nnunet"
    env = dict(os.environ, nnUNet_raw=str(root / "raw"), nnUNet_preprocessed=str(root / "preprocessed"),
               nnUNet_results=str(root / "results"), nnUNet_n_proc_DA="1")
    name = f"Dataset{dataset_id:03d}_{raw.name}"
    target = root / "raw" / name
    for sub in ("raw", "preprocessed", "results"):  # nnU-Net refuses two names for one id
        for old in (root / sub).glob(f"Dataset{dataset_id:03d}_*"):
            shutil.rmtree(old)
    target.mkdir(parents=True)
    meta = json.loads((raw / "dataset.json").read_text())
    # nnU-Net v2 reads imagesTr + labelsTr only; our extensions stay out of its way
    for folder in ("imagesTr", "labelsTr"):
        shutil.copytree(raw / folder, target / folder)
    keep = {k: meta[k] for k in ("channel_names", "labels", "numTraining", "file_ending")}
    (target / "dataset.json").write_text(json.dumps(keep, indent=2))
    dims = json.loads((workdir / "preprocessed" / raw.name / "plans.json").read_text())["dims"]
    config = "3d_fullres" if dims == 3 else "2d"
    fp = run([str(bindir / "nnUNetv2_extract_fingerprint"), "-d", str(dataset_id), "-np", str(workers)], env)
    plan = run([str(bindir / "nnUNetv2_plan_experiment"), "-d", str(dataset_id)], env)
    prep = run([str(bindir / "nnUNetv2_preprocess"), "-d", str(dataset_id), "-c", config, "-np", str(workers)], env)
    return {"fingerprint_s": fp, "plan_s": plan, "fingerprint_plan_s": fp + plan, "preprocess_s": prep, "config": config}


def roundtrip(raw: Path, workdir: Path) -> dict:
    """Min Dice per class over the labelled cases: label -> planned grid -> original grid."""

    from medseg_bench.io import RawDataset
    from medseg_bench.preprocessing import export_to_original, load_plans, preprocess_case, preprocess_label

    ds = RawDataset(raw)
    plans = load_plans(workdir / "preprocessed" / raw.name)
    config = "3d_fullres" if "3d_fullres" in plans["configurations"] else "2d"
    worst: dict[str, float] = {}
    resampled = 0
    for case in ds.train_cases() + ds.test_cases():
        image, geo = case.load_image()
        label, lgeo = case.load_label()
        _, props = preprocess_case(image, geo, plans, config)
        resampled += props["shape_after_resample"] != [props["shape_after_crop"][a] for a in props["transpose"]]
        back = export_to_original(preprocess_label(label, lgeo, plans, config, props), props, plans, config)
        for name, v in plans["labels"].items():
            if v == 0 or not (label == v).any():
                continue
            a, b = back == v, label == v
            worst[name] = min(worst.get(name, 1.0), float(2 * (a & b).sum() / (a.sum() + b.sum())))
    return {"config": config, "cases_resampled": int(resampled), "min_dice": worst}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("datasets", nargs="*", default=list(BUILTIN), help="generator names or raw folders")
    ap.add_argument("--size", default="small")
    ap.add_argument("--workdir", default="/tmp/medseg_plan_bench")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--nnunet-bin", default=None, help="folder holding nnUNetv2_* scripts (default: PATH)")
    ap.add_argument("--roundtrip", action="store_true")
    ap.add_argument("--out", default=None, help="write the results as JSON")
    ap.add_argument("--export-plans", default=None, metavar="DIR",
                    help="copy every dataset's plans.json to DIR/<dataset>.json (datasets/plans/ holds the examples)")
    args = ap.parse_args(argv)
    workdir = Path(args.workdir).resolve()
    bindir = nnunet_bin(args.nnunet_bin)
    if bindir is None:
        print("nnU-Net v2 not found (--nnunet-bin or PATH): timing medseg_bench only")
    results = []
    for i, name in enumerate(args.datasets):
        raw = ensure_raw(name, args.size, workdir)
        row = {"dataset": raw.name, "ours": time_ours(raw, workdir, args.workers)}
        if bindir is not None:
            row["nnunet"] = time_nnunet(raw, 900 + i, workdir, args.workers, bindir)
        if args.roundtrip:
            row["roundtrip"] = roundtrip(raw, workdir)
        if args.export_plans:
            Path(args.export_plans).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(workdir / "preprocessed" / raw.name / "plans.json", Path(args.export_plans) / f"{raw.name}.json")
        results.append(row)
        print(json.dumps(row), flush=True)
    print()
    print("| dataset | ours plan (s) | nnU-Net fingerprint+plan (s) | speed-up | ours preprocess (s) | nnU-Net preprocess (s) | speed-up | ours total (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        o, n = r["ours"], r.get("nnunet")
        total = o["plan_s"] + o["preprocess_s"]
        if n:
            print(f"| {r['dataset']} | {o['plan_s']:.1f} | {n['fingerprint_plan_s']:.1f} | {n['fingerprint_plan_s'] / o['plan_s']:.1f}x | "
                  f"{o['preprocess_s']:.1f} | {n['preprocess_s']:.1f} ({n['config']}) | {n['preprocess_s'] / o['preprocess_s']:.1f}x | {total:.1f} |")
        else:
            print(f"| {r['dataset']} | {o['plan_s']:.1f} | - | - | {o['preprocess_s']:.1f} | - | - | {total:.1f} |")
    if args.roundtrip:
        print()
        for r in results:
            rt = r["roundtrip"]
            print(f"{r['dataset']}: round trip ({rt['config']}, {rt['cases_resampled']} cases resampled) min Dice {rt['min_dice']}")
    if args.out:
        Path(args.out).write_text(json.dumps({"workers": args.workers, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
