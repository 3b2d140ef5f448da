"""Method submission: validate, train on staged data without test labels, bundle (sealed).

``submit(PATH_OR_ENTRYPOINT)``; the submitted code runs only in child processes (:mod:`.worker`), never
in this one (:mod:`.sandbox`: clean environment, cwd and ``HOME`` inside the stage, an audit hook on
every open):

1. stages each dataset into a fresh temporary folder **outside** the user's workdir: training images
   and labels, unlabelled images, test *images only* (``"test_labels_withheld": true``; no
   ``labelsTs``, no preprocessed test labels, no per-case generator facts of test cases); the staged
   ``dataset.json`` carries the original's dataset hash;
2. child ``describe``: imports the file (a ``.py`` file that registers one Method, or an installed
   entry point of the ``medseg_bench.methods`` group) for the first time anywhere, checks its class
   attributes and runs the engine's contract check
   (:func:`medseg_bench.training.contract.check_method_contract`), and says where the method applies;
3. child ``train``: preprocesses the stage, then trains and predicts one cell per (dataset, budget,
   seed) with the engine's ``train_cell`` (evaluation skipped: nothing to score against) while the
   guard refuses every label file outside that cell's budget: such an open fails the cell, naming the
   file, even when the method swallows the error;
4. checks every prediction (one per test image, the test image's shape, only the dataset's label
   values) and writes a **bundle**: ``bundle.json`` (method, source hash, environment, per cell the
   dataset hash, split hash, test case ids and provenance, and ``files``: the seal, a sha256 of every
   other file), ``predictions/<cell>/``, ``records/<cell>.json``, ``models/<cell>/`` (settings, plan,
   final checkpoint), ``source/``. A bundle never holds reference labels.

Merging (``leaderboard --add``) is :mod:`.merge`; re-running a bundle's models on a host-only test
split is :mod:`.private`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..bench.grid import (
    PRESET_DEFAULTS,
    Cell,
    default_preset,
    parse_budgets,
)
from ..bench.results import environment_info, git_commit, read_json, write_json_atomic
from ..io import RawDataset, read_image
from ..workdir import Workdir

__all__ = ["BUNDLE_VERSION", "BundleError", "SubmissionError", "check_predictions", "hash_sources", "load_submission",
           "seal_files", "stage_dataset", "submit", "validate_method"]

BUNDLE_VERSION = 2  # 2: sealed (sha256 of every file in bundle.json), provenance from the seal


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
    return hash_sources(files), files


def hash_sources(files) -> str:
    """sha256 over (name, content) of ``files`` in order (the bundle's ``source_hash``)."""
    h = hashlib.sha256()
    for f in files:
        h.update(Path(f).name.encode() + b"\0" + Path(f).read_bytes())
    return h.hexdigest()


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
    test_ids = {c.case_id for c in test}
    if isinstance(meta.get("case_parameters"), dict):  # a generator's per-case facts (e.g. lesion area) of
        meta["case_parameters"] = {k: v for k, v in meta["case_parameters"].items() if k not in test_ids}  # tests: out
    meta.update(numTraining=len(train), test_labels_withheld=True,
                staged_from={"dataset": raw.name, "dataset_hash": original_hash})
    (dest / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
    return {"dataset_hash": original_hash, "test_cases": sorted(c.case_id for c in test)}


# -- the submission's own process (:mod:`.worker`) ----------------------------------------------------------
def _run_worker(job: dict, stage: Path, timeout_s: float | None) -> dict:
    """Run ``job`` in a fresh interpreter: clean environment, cwd = the stage; returns its result JSON."""
    from .sandbox import ERROR_TAG, clean_environment

    job = {**job, "workdir": str(stage), "result": str(stage / f"{job['mode']}_result.json")}
    job_path = stage / f"{job['mode']}_job.json"
    job_path.write_text(json.dumps(job, indent=2))
    # stdout (progress lines) goes straight to the user; stderr is kept for the error message
    proc = subprocess.run([sys.executable, "-m", "medseg_bench.leaderboard.worker", str(job_path)], cwd=stage,
                          env=clean_environment(stage), stdout=None, stderr=subprocess.PIPE, text=True,
                          timeout=timeout_s)
    if proc.returncode == 3 and ERROR_TAG in proc.stderr:
        raise SubmissionError(proc.stderr.split(ERROR_TAG, 1)[1].strip())
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or "").strip().splitlines()[-25:])
        raise SubmissionError(f"the submission's process ({job['mode']}) failed (exit {proc.returncode}):\n{tail}")
    return json.loads(Path(job["result"]).read_text())


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


METHOD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _check_about(about: dict, stage: Path, from_file: bool) -> None:
    """What the ``describe`` child reported is used for paths here: a plain method name, and ``.py``
    source files (inside the stage's copy for a file submission)."""
    if not isinstance(about.get("name"), str) or not METHOD_NAME.match(about["name"]):
        raise SubmissionError(f"method name {about.get('name')!r}: use letters, digits, '_', '.' or '-'")
    for f in about.get("source_files") or []:
        inside = Path(f).resolve().is_relative_to((stage / "submission").resolve())
        if not f.endswith(".py") or (from_file and not inside):
            raise SubmissionError(f"{f}: not a source file of the submission")


def submit(spec: str, workdir: Path, datasets: list[str] | None = None, budgets: list | None = None,
           seeds: list[int] | None = None, preset: str | None = None, iterations: int | None = None,
           out: Path | None = None, num_threads: int | None = None, timeout_s: float | None = None) -> Path:
    """Validate, stage, train, predict and bundle (module docstring). Returns the bundle folder
    (default ``<workdir>/submissions/<method>``).

    The submitted file is never imported in this process: a first child imports it, runs the contract
    check and says where the method applies; a second trains it on the stage. Datasets default to the
    built-in ones; budgets and seeds to the preset's.
    """
    from ..bench.cli import builtin_datasets, resolve_datasets
    from ..splits import load_or_make_splits, split_hash
    from ..training import ensure_prepared

    wd = Workdir(Path(workdir))
    preset = preset or default_preset()
    defaults = PRESET_DEFAULTS[preset]
    grid_budgets = parse_budgets(budgets or defaults["budgets"])
    grid_seeds = sorted({int(s) for s in (seeds or defaults["seeds"])})
    path = Path(spec)
    if (spec.endswith(".py") or path.is_file()) and not path.is_file():
        raise FileNotFoundError(f"{path}: submission file not found")
    names = resolve_datasets(wd.root, datasets or builtin_datasets(defaults["size"]), defaults["size"],
                             lambda m: print(m, file=sys.stderr))
    stage = Path(tempfile.mkdtemp(prefix="medseg_submission_"))  # outside the user's workdir
    try:
        method_spec = spec
        if path.is_file():  # the child imports its own copy: the user's folder stays out of reach
            (stage / "submission").mkdir()
            method_spec = str(shutil.copy2(path, stage / "submission" / path.name))
        plans = {ds: ensure_prepared(wd.root, ds) for ds in names}
        about = _run_worker({"mode": "describe", "method": method_spec, "preset": preset, "budgets": grid_budgets,
                             "datasets": {ds: {"plans": plans[ds],
                                               "n_train": len(RawDataset(wd.raw_dataset(ds)).train_cases())}
                                          for ds in names}}, stage, timeout_s)
        _check_about(about, stage, path.is_file())
        cells, info = [], {}
        for ds in names:
            config, applicable = about["datasets"][ds]["configuration"], about["datasets"][ds]["budgets"]
            if not applicable:
                print(f"{about['name']} does not apply to {ds} (dims or budgets); skipped", file=sys.stderr)
                continue
            raw = RawDataset(wd.raw_dataset(ds))
            info[ds] = stage_dataset(raw.path, stage / "raw" / ds)
            splits = load_or_make_splits(wd.root, raw.path, budgets=applicable, seeds=grid_seeds)
            for b in applicable:
                for s in grid_seeds:
                    cells.append({"dataset": ds, "preset": preset, "configuration": config, "budget": b, "seed": s,
                                  "split_hash": split_hash(splits, b, s)})
        if not cells:
            raise SubmissionError(f"method {about['name']!r} applies to none of the datasets {names}")
        _run_worker({"mode": "train", "method": method_spec, "cells": cells, "iterations": iterations,
                     "num_threads": num_threads}, stage, timeout_s)
        about["loaded_from"] = {"kind": "file"} if path.is_file() else {"kind": "installed", "spec": spec}
        bundle = Path(out) if out else wd.root / "submissions" / about["name"]
        return _write_bundle(bundle, about, cells, info, stage)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def seal_files(bundle: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file of a bundle except ``bundle.json`` (the seal itself)."""
    return {p.relative_to(bundle).as_posix(): file_sha256(p) for p in sorted(Path(bundle).rglob("*"))
            if p.is_file() and p.relative_to(bundle).as_posix() != "bundle.json"}


MODEL_FILES = ("config.json", "plans.json", "checkpoint_final.pt")  # what a re-run of the cell's model needs


def _copy_model(run: Path, dest: Path) -> None:
    """The trained model of a cell (settings, plan, final checkpoint) for :mod:`.private`'s re-run."""
    dest.mkdir(parents=True)
    for name in MODEL_FILES:
        if (run / name).is_file():
            shutil.copy2(run / name, dest / name)


def _write_bundle(bundle: Path, about: dict, cells: list[dict], info: dict, stage: Path) -> Path:
    staged = Workdir(stage)
    tmp = bundle.with_name(f".{bundle.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "source").mkdir(parents=True)
    src_files = [Path(f) for f in about["source_files"]]
    for f in src_files:
        shutil.copy2(f, tmp / "source" / f.name)
    entries = []
    for item in cells:
        cell = Cell(item["dataset"], item["preset"], item["configuration"], about["name"], item["budget"], item["seed"])
        run = cell.run_dir(staged.root)
        record = read_json(run / "record.json")
        if record.get("status") != "done":
            raise SubmissionError(f"{cell.label()}: training did not finish:\n{record.get('error')}")
        if record["provenance"].get("split_hash") != item["split_hash"]:
            raise SubmissionError(f"{cell.label()}: the staged split differs from the benchmark's "
                                  f"({record['provenance'].get('split_hash')} != {item['split_hash']})")
        links = [p for p in run.rglob("*") if p.is_symlink()]
        if links:  # the child may not make links; one here would let this process copy a file it points to
            raise SubmissionError(f"{cell.label()}: {links[0]} is a link; a submission's outputs must be plain files")
        raw = RawDataset(staged.raw_dataset(cell.dataset))
        check_predictions(run / "pred", raw, info[cell.dataset]["test_cases"])
        shutil.copytree(run / "pred", tmp / "predictions" / cell.key)
        if (run / "pred_instances").is_dir():
            shutil.copytree(run / "pred_instances", tmp / "predictions" / f"{cell.key}__instances")
        write_json_atomic(tmp / "records" / f"{cell.key}.json", record)
        _copy_model(run, tmp / "models" / cell.key)
        entries.append({"cell": cell.to_dict(), "key": cell.key, "dataset_hash": info[cell.dataset]["dataset_hash"],
                        "split_hash": item["split_hash"], "test_cases": info[cell.dataset]["test_cases"],
                        "provenance": record["provenance"]})
    manifest = {"bundle_version": BUNDLE_VERSION,
                "method": {"name": about["name"], **about["info"], "source_hash": about["source_hash"],
                           "source_files": [f.name for f in src_files], "loaded_from": about["loaded_from"]},
                "environment": environment_info(), "suite_commit": git_commit(), "cells": entries,
                "files": seal_files(tmp)}  # the seal: sha256 of every prediction, record, model and source file
    write_json_atomic(tmp / "bundle.json", manifest)
    if bundle.exists():
        shutil.rmtree(bundle)
    bundle.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, bundle)
    return bundle
