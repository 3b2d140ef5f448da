"""Merging a submission bundle (``medseg-bench leaderboard --add BUNDLE``): verify the seal, check the
bundle against this workdir's data, re-score, store the records.

``merge_bundle(BUNDLE, workdir)``:

1. the **seal**: every file of the bundle (predictions, records, models, source) must have the sha256
   ``bundle.json`` lists, and no file may be missing or added; the source must match ``source_hash``.
   A copy of the reference labels over ``predictions/``, an edited record or a swapped source is
   refused, naming the file. (The seal is an integrity check, not a signature: someone who rewrites
   ``bundle.json`` too can re-seal; the host-side re-run of :mod:`.private` is what cannot be gamed.)
2. every cell's dataset and split hashes must equal this workdir's; the budget cases and their count
   are **recomputed from this workdir's split** (a record naming other cases is refused) and the
   provenance is the sealed record's, which must equal the one in ``bundle.json``;
3. every metric is recomputed from the predictions against this workdir's reference labels (metrics in
   the bundle are ignored), or, with ``private_seed``, from a re-run of the bundle's models on a
   private test split only the host has (:mod:`.private`).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ..bench.grid import Cell
from ..bench.results import read_json, write_record
from ..io import RawDataset
from ..workdir import Workdir
from .submit import (
    BUNDLE_VERSION,
    METHOD_NAME,
    BundleError,
    SubmissionError,
    check_predictions,
    hash_sources,
    seal_files,
)

__all__ = ["merge_bundle", "read_manifest", "rescore", "verify_seal"]


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


def verify_seal(bundle: Path, manifest: dict) -> None:
    """Every file of the bundle is listed in the seal with its sha256, and nothing else is there.

    Raises:
        BundleError: naming the first file that was changed, added or removed after ``submit``.
    """
    sealed = manifest.get("files")
    if not isinstance(sealed, dict) or not sealed:
        raise BundleError(f"{bundle / 'bundle.json'}: no seal (files + sha256); re-create the bundle with `submit`")
    links = [p for p in Path(bundle).rglob("*") if p.is_symlink()]
    if links:
        raise BundleError(f"{links[0]}: a link; a bundle holds plain files only; not merged")
    actual = seal_files(bundle)
    for rel in sorted(set(sealed) | set(actual)):
        if rel not in actual:
            raise BundleError(f"{bundle / rel}: listed in the seal but missing; not merged")
        if rel not in sealed:
            raise BundleError(f"{bundle / rel}: not in the seal (added after submit); not merged")
        if sealed[rel] != actual[rel]:
            raise BundleError(f"{bundle / rel}: sha256 {actual[rel][:12]}... differs from the seal "
                              f"({str(sealed[rel])[:12]}...): changed after submit; not merged")
    method = manifest["method"]
    files = [bundle / "source" / n for n in method.get("source_files", [])]
    if not files or any(not f.is_file() for f in files) or hash_sources(files) != method.get("source_hash"):
        raise BundleError(f"{bundle / 'source'}: the method source does not match the bundle's source_hash; not merged")


def _check_model(model: Path, stored: dict, rec_path: Path) -> None:
    """The record's iterations, plan hash and budget cases agree with the cell's model folder (its
    ``config.json`` and ``plans.json``, written by the engine in the submission's process)."""
    from ..planning.plans_file import record_plan_hash

    if not (model / "config.json").is_file() or not (model / "plans.json").is_file():
        raise BundleError(f"{model}: the cell's model (config.json, plans.json) is missing; not merged")
    config, prov = read_json(model / "config.json"), stored.get("provenance") or {}
    iterations = (config.get("settings") or {}).get("iterations")
    trained = (model / "checkpoint_final.pt").is_file()  # a method that does not train records 0 iterations
    if prov.get("iterations") != (iterations if trained else 0):
        raise BundleError(f"{rec_path}: {prov.get('iterations')} iterations, but the model was trained with "
                          f"{iterations} ({model / 'config.json'}); not merged")
    if prov.get("plan_hash") != record_plan_hash(read_json(model / "plans.json")):
        raise BundleError(f"{rec_path}: plan hash differs from the model's plans.json; not merged")
    if sorted(config.get("budget_cases") or []) != sorted(stored.get("budget_cases") or []):
        raise BundleError(f"{rec_path}: budget cases differ from the model's config.json; not merged")


def read_manifest(bundle: Path) -> dict:
    """``bundle.json`` of a bundle whose seal holds (:func:`verify_seal`)."""
    bundle = Path(bundle)
    if not (bundle / "bundle.json").is_file():
        raise BundleError(f"{bundle}: not a submission bundle (bundle.json missing)")
    try:
        manifest = read_json(bundle / "bundle.json")
    except ValueError as exc:
        raise BundleError(f"{bundle / 'bundle.json'}: not valid JSON ({exc})") from exc
    if (not isinstance(manifest, dict) or manifest.get("bundle_version") != BUNDLE_VERSION
            or not isinstance(manifest.get("cells"), list) or not isinstance(manifest.get("method"), dict)):
        raise BundleError(f"{bundle / 'bundle.json'}: unsupported bundle version (want {BUNDLE_VERSION}), no method "
                          f"or no cells; re-create the bundle with `submit`")
    if not isinstance(manifest["method"].get("name"), str) or not METHOD_NAME.match(manifest["method"]["name"]):
        raise BundleError(f"{bundle / 'bundle.json'}: method name {manifest['method'].get('name')!r} is not a plain name")
    verify_seal(bundle, manifest)
    return manifest


def merge_bundle(bundle: Path, workdir: Path, private_seed: int | None = None, timeout_s: float | None = None) -> list[dict]:
    """Check and re-score a bundle and store its records (module docstring); returns the records.

    Args:
        private_seed: the host's secret seed: score a re-run of the bundle's models on the private test
            split of each (built-in) dataset instead of the bundle's predictions (:mod:`.private`).
        timeout_s: limit for that re-run's process.

    Raises:
        BundleError: malformed or tampered bundle, unknown dataset, a dataset/split hash or budget that
            does not match, or (private) a dataset without a generator or a model that fails to re-run.
    """
    from ..planning import dataset_hash
    from ..splits import budget_cases, load_or_make_splits, split_hash

    bundle, wd = Path(bundle), Workdir(Path(workdir))
    manifest = read_manifest(bundle)
    method = manifest["method"]
    hashes: dict[str, str] = {}
    checked = []
    for entry in manifest["cells"]:  # check everything before merging anything
        cell = Cell.from_dict(entry["cell"])
        if cell.method != method["name"] or entry.get("key") != cell.key:
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
        rec_path = bundle / "records" / f"{cell.key}.json"
        if not pred.is_dir() or not rec_path.is_file():
            raise BundleError(f"{bundle}: predictions or record for {cell.key} missing")
        stored = read_json(rec_path)  # sealed: written by the submission's process, unchanged since
        if Cell.from_dict(stored.get("cell", {})).key != cell.key or stored.get("provenance") != entry.get("provenance"):
            raise BundleError(f"{rec_path}: cell or provenance differ from bundle.json; not merged")
        labelled = budget_cases(splits, cell.budget, cell.seed) if (stored.get("method_info") or {}).get(
            "needs_labels", True) else []
        if sorted(stored.get("budget_cases") or []) != sorted(labelled):
            raise BundleError(f"{rec_path}: budget cases {stored.get('budget_cases')} are not the split's "
                              f"{labelled}; not merged")
        _check_model(bundle / "models" / cell.key, stored, rec_path)
        try:
            check_predictions(pred, raw, [c.case_id for c in raw.test_cases()])
        except SubmissionError as exc:
            raise BundleError(f"{pred}: {exc}; not merged") from exc
        checked.append((cell, entry, raw, pred, stored, labelled))
    private = {}
    if private_seed is not None:
        from .private import score_private

        private = score_private(bundle, manifest, [(c, e, r) for c, e, r, *_ in checked], wd, private_seed, timeout_s)
    merged = []
    for cell, entry, raw, pred, stored, labelled in checked:
        inst = bundle / "predictions" / f"{cell.key}__instances"
        if cell.key in private:
            metrics, test_split = private[cell.key]
        else:
            metrics = rescore(pred, inst if inst.is_dir() else None, raw, [c.case_id for c in raw.test_cases()])
            test_split = {"kind": "public"}
        record = {"record_version": 1, "cell": cell.to_dict(), "status": "done", "error": None,
                  "method_info": {k: (stored.get("method_info") or {}).get(k)
                                  for k in ("family", "citation", "needs_labels", "uses_unlabelled", "oracle",
                                            "class_rule")},
                  "budget_cases": labelled, "n_labelled": len(labelled),  # from this workdir's split
                  "provenance": {**stored["provenance"], "dataset_hash": entry["dataset_hash"],
                                 "split_hash": entry["split_hash"]},
                  "submission": {"bundle": bundle.name, "source_hash": method.get("source_hash"),
                                 "sealed": True, "rescored": True, "test_split": test_split},
                  "metrics": metrics}  # recomputed here; anything the bundle says about metrics is ignored
        write_record(wd.root, record)
        merged.append(record)
    return merged
