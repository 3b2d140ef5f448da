"""Method submission: validate, train on staged data without test labels, bundle, re-score, merge.

``submit(PATH_OR_ENTRYPOINT)``:

1. loads the method (a ``.py`` file that registers one Method, or an installed plugin's entry point in
   the ``medseg_bench.methods`` group); validation = class attributes (registry), then the engine's
   contract check (:func:`medseg_bench.training.contract.check_method_contract`: trains a few
   steps, predicts the right shape and labels, resumes exactly, reads no label outside its budget);
2. stages each dataset into a fresh temporary workdir **outside** the user's workdir: training images
   and labels, unlabelled images, test *images only* (``"test_labels_withheld": true``); the staged
   ``dataset.json`` carries the original's dataset hash;
3. validates (step 1's contract check), trains and predicts in its own process (environment without
   ``MEDSEG_*`` variables, cwd = the staged workdir), one cell per (dataset, budget, seed), with the
   engine's ``train_cell`` (evaluation skipped: there is nothing to score against);
4. checks every prediction (one per test image, the test image's shape, only the dataset's label
   values) and writes a **bundle**: ``bundle.json`` (method, source hash, environment, per cell the
   dataset hash, split hash and test case ids), ``predictions/<cell>/``, ``records/<cell>.json``,
   ``source/``. A bundle never holds reference labels.

``merge_bundle(BUNDLE, workdir)`` (``medseg-bench leaderboard --add``) checks that every cell's dataset
and split hashes equal those of the workdir's data, recomputes every metric from the bundle's
predictions against the workdir's reference labels and stores the records in ``results/``. Metrics
found in the bundle are ignored: only predictions count.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..bench.grid import (
    PRESET_DEFAULTS,
    Cell,
    default_preset,
    method_budgets,
    parse_budgets,
    resolve_configuration,
)
from ..bench.results import environment_info, git_commit, read_json, write_json_atomic, write_record
from ..io import RawDataset, read_image
from ..workdir import Workdir

__all__ = ["BUNDLE_VERSION", "BundleError", "SubmissionError", "load_submission", "merge_bundle", "stage_dataset",
           "submit", "validate_method"]

BUNDLE_VERSION = 1


class SubmissionError(ValueError):
    """The submitted method breaks the contract or failed to train; the message says where."""


class BundleError(ValueError):
    """A bundle is malformed or does not match the workdir's data (hashes)."""


# -- loading and validating ------------------------------------------------------------------------------
def load_submission(spec: str) -> type:
    """The Method class of a ``.py`` file or of an installed entry point (``name`` in the
    ``medseg_bench.methods`` group, or a registered method name)."""
    from .. import methods as registry

    path = Path(spec)
    if spec.endswith(".py") or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"{path}: submission file not found")
        try:
            return registry.load_method_from_file(path.resolve())
        except (ValueError, TypeError) as exc:
            raise SubmissionError(f"{path}: {exc}") from exc
    from importlib.metadata import entry_points

    for ep in entry_points(group=registry.ENTRY_POINT_GROUP):
        if spec in (ep.name, ep.value):
            cls = ep.load()
            registry.load_plugins()
            return registry.get_method(cls.name) if getattr(cls, "name", None) else cls
    try:
        return registry.get_method(spec)
    except KeyError as exc:
        raise SubmissionError(f"{spec!r} is neither a Python file nor an installed method entry point "
                              f"(group {registry.ENTRY_POINT_GROUP!r})") from exc


def validate_method(method_cls: type, tmp_dir: Path) -> None:
    """Registry attributes + the engine's contract check for every dimensionality the method supports.

    Raises:
        SubmissionError: naming the broken part (missing hook, wrong output shape or labels, ...).
    """
    from ..methods.registry import _validate
    from ..training.contract import ContractError, check_method_contract

    try:
        _validate(method_cls)
    except (TypeError, ValueError) as exc:
        raise SubmissionError(str(exc)) from exc
    for dims in sorted(set(method_cls.dims)):
        try:
            check_method_contract(method_cls, Path(tmp_dir) / f"contract_{dims}d", dims=dims)
        except ContractError as exc:
            raise SubmissionError(f"method {method_cls.name!r} breaks the contract ({dims}D): {exc}") from exc
        except NotImplementedError as exc:
            raise SubmissionError(f"method {method_cls.name!r} lacks a hook: {exc}") from exc
        except Exception as exc:
            raise SubmissionError(f"method {method_cls.name!r} failed the {dims}D contract check: "
                                  f"{type(exc).__name__}: {exc}") from exc


def source_hash(method_cls: type) -> tuple[str, list[Path]]:
    """sha256 over the method's source files (its module file, or every ``.py`` of its package)."""
    module = sys.modules.get(method_cls.__module__)
    file = Path(getattr(module, "__file__", "") or "")
    if not file.is_file():
        raise SubmissionError(f"cannot locate the source of method {method_cls.name!r}")
    files = sorted(file.parent.rglob("*.py")) if file.name == "__init__.py" else [file]
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest(), files


# -- staging ---------------------------------------------------------------------------------------------
def _copy_case(case, dest: Path, images: str, labels: str | None, instances: str | None) -> None:
    from ..io import sidecar_path

    for f in case.image_files:
        (dest / images).mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dest / images / f.name)
        if sidecar_path(f).is_file():
            shutil.copy2(sidecar_path(f), dest / images / sidecar_path(f).name)
    for f, folder in ((case.label_file, labels), (case.instance_file, instances)):
        if f is not None and folder is not None:
            (dest / folder).mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dest / folder / f.name)


def stage_dataset(raw_dir: Path, dest: Path) -> dict:
    """Copy a raw dataset without any test label into ``dest``; returns ``{dataset_hash, test_cases}``.

    The staged copy holds the benchmark's training cases (images, labels, instances), the unlabelled
    images and the test images; its ``dataset.json`` says ``"test_labels_withheld": true`` and
    carries the original's hash under ``"staged_from"``.
    """
    from ..planning import dataset_hash

    raw = RawDataset(raw_dir)
    original_hash = dataset_hash(raw)
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    train, test = raw.train_cases(), raw.test_cases()
    for c in train:
        _copy_case(c, dest, "imagesTr", "labelsTr", "instancesTr")
    for c in raw.unlabelled_cases():
        _copy_case(c, dest, "imagesUnlabelled", None, None)
    for c in test:
        _copy_case(c, dest, "imagesTs", None, None)  # images only: the labels stay behind
    meta = dict(raw.meta)
    meta.update(numTraining=len(train), test_labels_withheld=True,
                staged_from={"dataset": raw.name, "dataset_hash": original_hash})
    (dest / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
    return {"dataset_hash": original_hash, "test_cases": sorted(c.case_id for c in test)}


# -- the training process ----------------------------------------------------------------------------------
def _predict_only(method, ctx, raw, test_ids, run_dir):
    """The engine's prediction step without evaluation (a staged copy has no test labels)."""
    from ..training.cell import _default_to_segmentation
    from ..training.predict import predict_case, write_prediction

    pred, pred_inst = Path(run_dir) / "pred", Path(run_dir) / "pred_instances"
    for d in (pred, pred_inst):
        if d.exists():
            shutil.rmtree(d)
    for net in method.networks.values():
        net.eval()
    cases = {c.case_id: c for c in raw.test_cases()}
    custom = type(method).to_segmentation is not _default_to_segmentation()
    for cid in test_ids:
        case = cases[cid]
        raw_image = case.load_image()[0] if custom else None
        seg, inst, geo = predict_case(method, ctx, ctx.folder.image(cid), ctx.folder.properties(cid), raw_image=raw_image)
        write_prediction(pred, cid, raw.file_ending, seg, geo, inst, pred_inst)
    return None


def _worker_main(job_path: str) -> int:
    """Entry of the submission's own process: prepare the staged datasets, train and predict each cell."""
    job = json.loads(Path(job_path).read_text())
    from ..training import cell as engine_cell
    from ..training import ensure_prepared, train_cell

    method_cls = load_submission(job["method"])
    wd = Path(job["workdir"])
    print(f"validating {method_cls.name} (contract check) ...", flush=True)
    try:
        validate_method(method_cls, wd / "contract_check")
    except SubmissionError as exc:
        print(f"{_ERROR_TAG}{exc}", file=sys.stderr)
        return 3
    engine_cell._predict_and_evaluate = _predict_only  # nothing to evaluate against: labels withheld
    for item in job["cells"]:
        print(f"training {method_cls.name} on {item['dataset']} (budget {item['budget']}, seed {item['seed']}, "
              f"test labels withheld) ...", flush=True)
        ensure_prepared(wd, item["dataset"])
        train_cell(wd, item["dataset"], method_cls, item["budget"], item["seed"], preset=item["preset"],
                   config=item["configuration"], iterations=job.get("iterations"), progress=False,
                   num_threads=job.get("num_threads"))
        print(f"trained {item['dataset']} budget {item['budget']} seed {item['seed']}", flush=True)
    return 0


_ERROR_TAG = "SUBMISSION ERROR: "


def _run_worker(job: dict, staged_wd: Path, timeout_s: float | None) -> None:
    job_path = staged_wd / "job.json"
    job_path.write_text(json.dumps(job, indent=2))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDSEG_")}  # no pointer to the real workdir
    # stdout (progress lines) goes straight to the user; stderr is kept for the error message
    proc = subprocess.run([sys.executable, "-m", "medseg_bench.leaderboard.submit", str(job_path)], cwd=staged_wd,
                          env=env, stdout=None, stderr=subprocess.PIPE, text=True, timeout=timeout_s)
    if proc.returncode == 3 and _ERROR_TAG in proc.stderr:
        raise SubmissionError(proc.stderr.split(_ERROR_TAG, 1)[1].strip())
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or "").strip().splitlines()[-25:])
        raise SubmissionError(f"training the submission failed (exit {proc.returncode}):\n{tail}")


# -- checking predictions and writing the bundle -------------------------------------------------------------
def check_predictions(pred_dir: Path, raw: RawDataset, test_cases: list[str]) -> None:
    """One prediction per test image, of the image's shape, holding only the dataset's label values.

    Raises:
        SubmissionError: naming the case and the problem.
    """
    import numpy as np

    allowed = {int(v) for v in raw.labels.values() if isinstance(v, int)}
    by_id = {c.case_id: c for c in raw.test_cases()}
    for cid in test_cases:
        f = Path(pred_dir) / f"{cid}{raw.file_ending}"
        if not f.is_file():
            raise SubmissionError(f"no prediction for test case {cid!r} (expected {f.name})")
        pred, _ = read_image(f, raw.spacing)
        image, _ = read_image(by_id[cid].image_files[0], raw.spacing)
        shape = image.shape[:-1] if raw.rgb else image.shape
        if pred.shape != shape:
            raise SubmissionError(f"prediction {f.name}: shape {pred.shape}, but the test image is {shape}")
        bad = sorted(set(np.unique(pred).tolist()) - allowed)
        if bad:
            raise SubmissionError(f"prediction {f.name}: label values {bad} are not in the dataset's labels "
                                  f"{sorted(allowed)}")


def submit(spec: str, workdir: Path, datasets: list[str] | None = None, budgets: list | None = None,
           seeds: list[int] | None = None, preset: str | None = None, iterations: int | None = None,
           out: Path | None = None, num_threads: int | None = None, timeout_s: float | None = None) -> Path:
    """Validate, stage, train, predict and bundle (module docstring). Returns the bundle folder
    (default ``<workdir>/submissions/<method>``).

    Datasets default to the built-in ones the method supports; budgets and seeds to the preset's.
    """
    from ..bench.cli import builtin_datasets, resolve_datasets
    from ..splits import load_or_make_splits, split_hash
    from ..training import ensure_prepared

    wd = Workdir(Path(workdir))
    preset = preset or default_preset()
    method_cls = load_submission(spec)  # imports the file here only to read its attributes
    src_hash, src_files = source_hash(method_cls)
    defaults = PRESET_DEFAULTS[preset]
    grid_budgets = parse_budgets(budgets or defaults["budgets"])
    grid_seeds = sorted({int(s) for s in (seeds or defaults["seeds"])})
    names = resolve_datasets(wd.root, datasets or builtin_datasets(defaults["size"]), defaults["size"],
                             lambda m: print(m, file=sys.stderr))
    bundle = Path(out) if out else wd.root / "submissions" / method_cls.name
    staged_root = Path(tempfile.mkdtemp(prefix="medseg_submission_"))  # outside the user's workdir
    try:
        cells, info = [], {}
        for ds in names:
            plans = ensure_prepared(wd.root, ds)
            raw = RawDataset(wd.raw_dataset(ds))
            config = resolve_configuration(method_cls, plans, preset)
            applicable = method_budgets(method_cls, grid_budgets, len(raw.train_cases())) if config else []
            if not applicable:
                print(f"{method_cls.name} does not apply to {ds} (dims or budgets); skipped", file=sys.stderr)
                continue
            info[ds] = stage_dataset(raw.path, staged_root / "raw" / ds)
            splits = load_or_make_splits(wd.root, raw.path, budgets=applicable, seeds=grid_seeds)
            for b in applicable:
                for s in grid_seeds:
                    cells.append({"dataset": ds, "preset": preset, "configuration": config, "budget": b, "seed": s,
                                  "split_hash": split_hash(splits, b, s)})
        if not cells:
            raise SubmissionError(f"method {method_cls.name!r} applies to none of the datasets {names}")
        job = {"method": str(Path(spec).resolve()) if Path(spec).is_file() else spec, "workdir": str(staged_root),
               "cells": cells, "iterations": iterations, "num_threads": num_threads}
        _run_worker(job, staged_root, timeout_s)
        return _write_bundle(bundle, method_cls, src_hash, src_files, cells, info, staged_root)
    finally:
        shutil.rmtree(staged_root, ignore_errors=True)


def _write_bundle(bundle: Path, method_cls, src_hash: str, src_files: list[Path], cells: list[dict], info: dict,
                  staged_root: Path) -> Path:
    staged = Workdir(staged_root)
    tmp = bundle.with_name(f".{bundle.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "source").mkdir(parents=True)
    for f in src_files:
        shutil.copy2(f, tmp / "source" / f.name)
    entries = []
    for item in cells:
        cell = Cell(item["dataset"], item["preset"], item["configuration"], method_cls.name, item["budget"], item["seed"])
        run = cell.run_dir(staged.root)
        record = read_json(run / "record.json")
        if record.get("status") != "done":
            raise SubmissionError(f"{cell.label()}: training did not finish:\n{record.get('error')}")
        if record["provenance"].get("split_hash") != item["split_hash"]:
            raise SubmissionError(f"{cell.label()}: the staged split differs from the benchmark's "
                                  f"({record['provenance'].get('split_hash')} != {item['split_hash']})")
        raw = RawDataset(staged.raw_dataset(cell.dataset))
        check_predictions(run / "pred", raw, info[cell.dataset]["test_cases"])
        shutil.copytree(run / "pred", tmp / "predictions" / cell.key)
        if (run / "pred_instances").is_dir():
            shutil.copytree(run / "pred_instances", tmp / "predictions" / f"{cell.key}__instances")
        write_json_atomic(tmp / "records" / f"{cell.key}.json", record)
        entries.append({"cell": cell.to_dict(), "key": cell.key, "dataset_hash": info[cell.dataset]["dataset_hash"],
                        "split_hash": item["split_hash"], "test_cases": info[cell.dataset]["test_cases"]})
    manifest = {"bundle_version": BUNDLE_VERSION, "method": {"name": method_cls.name, **method_cls.info(),
                                                             "source_hash": src_hash,
                                                             "source_files": [f.name for f in src_files]},
                "environment": environment_info(), "suite_commit": git_commit(), "cells": entries}
    write_json_atomic(tmp / "bundle.json", manifest)
    if bundle.exists():
        shutil.rmtree(bundle)
    bundle.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, bundle)
    return bundle


# -- merging -------------------------------------------------------------------------------------------------
def _reference_dir(cases, dest: Path, attr: str, ending: str) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for c in cases:
        os.symlink(getattr(c, attr), dest / f"{c.case_id}{ending}")
    return dest


def rescore(pred_dir: Path, inst_dir: Path | None, raw: RawDataset, test_cases: list[str]) -> dict:
    """Metrics of a prediction folder against the dataset's reference labels, as stored in records."""
    from ..metrics.evaluate import evaluate_folder, write_summary

    cases = [c for c in raw.test_cases() if c.case_id in set(test_cases)]
    with tempfile.TemporaryDirectory(prefix="medseg_rescore_") as tmp:
        ref = _reference_dir(cases, Path(tmp) / "labels", "label_file", raw.file_ending)
        kwargs = {}
        if raw.instance_labels and inst_dir is not None and all(c.instance_file for c in cases):
            kwargs = {"instance_pred_dir": inst_dir,
                      "instance_ref_dir": _reference_dir(cases, Path(tmp) / "instances", "instance_file", raw.file_ending)}
        summary = evaluate_folder(pred_dir, ref, labels=raw.labels, file_ending=raw.file_ending,
                                  default_spacing=raw.spacing, tolerance=raw.meta.get("nsd_tolerance"), **kwargs)
        write_summary(summary, Path(tmp) / "summary")
        return json.loads((Path(tmp) / "summary" / "summary.json").read_text())


def merge_bundle(bundle: Path, workdir: Path) -> list[dict]:
    """Re-score a bundle against the workdir's reference labels and store its records (module docstring).

    Raises:
        BundleError: malformed bundle, unknown dataset, or a dataset/split hash that does not match.
    """
    from ..planning import dataset_hash
    from ..splits import load_or_make_splits, split_hash

    bundle, wd = Path(bundle), Workdir(Path(workdir))
    if not (bundle / "bundle.json").is_file():
        raise BundleError(f"{bundle}: not a submission bundle (bundle.json missing)")
    manifest = read_json(bundle / "bundle.json")
    if manifest.get("bundle_version") != BUNDLE_VERSION or not isinstance(manifest.get("cells"), list):
        raise BundleError(f"{bundle / 'bundle.json'}: unsupported bundle version or no cells")
    method = manifest["method"]
    hashes: dict[str, str] = {}
    checked = []
    for entry in manifest["cells"]:  # check everything before merging anything
        cell = Cell.from_dict(entry["cell"])
        if cell.method != method["name"]:
            raise BundleError(f"{bundle}: cell {cell.key} is not of method {method['name']!r}")
        raw_dir = wd.raw_dataset(cell.dataset)
        if not (raw_dir / "dataset.json").is_file():
            raise BundleError(f"dataset {cell.dataset!r} of the bundle is not in {wd.raw}")
        raw = RawDataset(raw_dir)
        if cell.dataset not in hashes:
            hashes[cell.dataset] = dataset_hash(raw)
        if entry.get("dataset_hash") != hashes[cell.dataset]:
            raise BundleError(f"{cell.key}: dataset hash {entry.get('dataset_hash')} does not match "
                              f"{cell.dataset} in this workdir ({hashes[cell.dataset]}); not merged")
        splits = load_or_make_splits(wd.root, raw.path, budgets=[cell.budget], seeds=[cell.seed])
        if entry.get("split_hash") != split_hash(splits, cell.budget, cell.seed):
            raise BundleError(f"{cell.key}: split hash does not match this workdir's split; not merged")
        pred = bundle / "predictions" / cell.key
        if not pred.is_dir():
            raise BundleError(f"{bundle}: predictions for {cell.key} missing")
        checked.append((cell, entry, raw, pred))
    merged = []
    for cell, entry, raw, pred in checked:
        inst = bundle / "predictions" / f"{cell.key}__instances"
        metrics = rescore(pred, inst if inst.is_dir() else None, raw, [c.case_id for c in raw.test_cases()])
        rec_path = bundle / "records" / f"{cell.key}.json"
        stored = read_json(rec_path) if rec_path.is_file() else {}
        record = {"record_version": 1, "cell": cell.to_dict(), "status": "done", "error": None,
                  "method_info": {k: method.get(k) for k in ("family", "citation", "needs_labels", "uses_unlabelled",
                                                             "oracle", "class_rule")},
                  "budget_cases": stored.get("budget_cases", []), "n_labelled": stored.get("n_labelled"),
                  "provenance": {**(stored.get("provenance") or {}), "dataset_hash": entry["dataset_hash"],
                                 "split_hash": entry["split_hash"]},
                  "submission": {"bundle": bundle.name, "source_hash": method.get("source_hash"),
                                 "rescored": True},
                  "metrics": metrics}  # recomputed here; anything the bundle says about metrics is ignored
        write_record(wd.root, record)
        merged.append(record)
    return merged


if __name__ == "__main__":  # the submission's own training process (see _run_worker)
    sys.exit(_worker_main(sys.argv[1]))
