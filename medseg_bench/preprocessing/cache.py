"""The preprocessed cache: every case of a dataset through :func:`preprocess_case`, stored as arrays.

Layout (``<workdir>/preprocessed/<dataset>/<data_identifier>/``)::

    <case_id>.npy         image, float32 (C, *spatial), target spacing, transposed (coarsest axis first)
    <case_id>_seg.npy     semantic label, int16 (*spatial): only for cases that have a label
    <case_id>_inst.npy    instance map, int32 (*spatial): instance datasets only
    <case_id>.json        properties (see :mod:`.case`) + case_id, subset, has_label, preprocessing_key
    manifest.json         the case list with subsets, written last

Subsets follow the benchmark (:class:`medseg_bench.io.RawDataset`): ``train`` (labelled training
cases), ``test`` (the fixed test set, labels included so evaluation can use them) and ``unlabelled``
(``imagesUnlabelled`` and training images without a label). ``imagesTs`` images without labels are
not part of the benchmark and are skipped.

A case is up to date when its ``.json`` exists with the same ``preprocessing_key`` (hash of the
plan's preprocessing fields, :data:`~.case.PREPROCESSING_VERSION`, and the source files' names, sizes
and modification times); it is then skipped. Each file is written to a temporary name and renamed;
the ``.json`` is removed first and written last, so a case is either complete or absent. A case that
fails (e.g. a truncated file) is reported with its name and leaves nothing behind; the others finish.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from .._procs import kill_pool
from ..io import Case, RawDataset
from ..planning.plans_file import content_hash, load_plans, write_json_atomic
from .case import PREPROCESSING_VERSION, preprocess_case, preprocess_instances, preprocess_label

__all__ = ["benchmark_cases", "preprocess_dataset", "preprocess_command", "case_key", "save_case"]

MANIFEST = "manifest.json"


def benchmark_cases(raw: RawDataset) -> list[tuple[Case, str]]:
    """``(case, subset)`` for every case the benchmark uses (see the module docstring)."""
    out = [(c, "train") for c in raw.train_cases()]
    out += [(c, "test") for c in raw.test_cases()]
    seen = {c.case_id for c, _ in out}
    out += [(c, "unlabelled") for c in raw.raw_cases("train") if c.case_id not in seen and c.label_file is None]
    out += [(c, "unlabelled") for c in raw.unlabelled_cases()]
    return out


def _source_files(case: Case) -> list[Path]:
    from ..io import sidecar_path

    files = list(case.image_files) + [f for f in (case.label_file, case.instance_file) if f is not None]
    return files + [sidecar_path(f) for f in files if f.name.lower().endswith((".png", ".tif", ".tiff")) and sidecar_path(f).is_file()]


def case_key(case: Case, subset: str, plans: dict, config: str) -> str:
    """Hash deciding whether a cached case is up to date (plan fields, code version, source stats)."""
    cfg = plans["configurations"][config]
    relevant = {
        "version": PREPROCESSING_VERSION,
        "subset": subset,
        "transpose": plans["transpose_forward"],
        "spacing": cfg["spacing"],
        "normalization": cfg["normalization"],
        "resampling": cfg["resampling"],
        "files": [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in _source_files(case)],
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


def _save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            np.save(fh, array)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_case(folder: Path, case_id: str, image: np.ndarray, properties: dict, seg=None, inst=None) -> None:
    """Write one case atomically (properties removed first, written last)."""
    folder.mkdir(parents=True, exist_ok=True)
    props_path = folder / f"{case_id}.json"
    if props_path.exists():
        props_path.unlink()
    _save_npy(folder / f"{case_id}.npy", image.astype(np.float32, copy=False))
    for suffix, array in (("_seg", seg), ("_inst", inst)):
        path = folder / f"{case_id}{suffix}.npy"
        if array is not None:
            _save_npy(path, array)
        elif path.exists():
            path.unlink()
    write_json_atomic(props_path, properties)


def _process(args) -> tuple[str, str | None]:
    case, subset, plans, config, folder, key = args
    current = case.image_files[0]  # the file being worked on, named in the error
    try:
        image, geometry = case.load_image()
        data, props = preprocess_case(image, geometry, plans, config)
        seg = inst = None
        if case.label_file is not None:
            current = case.label_file
            label, lgeo = case.load_label()
            seg = preprocess_label(label, lgeo, plans, config, props)
        if plans.get("instance_labels") and case.instance_file is not None:
            current = case.instance_file
            instances, igeo = case.load_instances()
            inst = preprocess_instances(instances, igeo, plans, config, props)
        props = {"case_id": case.case_id, "subset": subset, **props, "has_label": seg is not None,
                 "has_instances": inst is not None, "preprocessing_key": key,
                 "source_files": [str(f.name) for f in _source_files(case)]}
        save_case(folder, case.case_id, data, props, seg, inst)
        return case.case_id, None
    except Exception as exc:  # noqa: BLE001 - reported per case, the others go on
        text = str(exc)
        return case.case_id, text if str(current) in text else f"{current}: {type(exc).__name__}: {text}"


def _is_current(folder: Path, case_id: str, key: str, needs_label: bool) -> bool:
    props = folder / f"{case_id}.json"
    if not props.is_file() or not (folder / f"{case_id}.npy").is_file():
        return False
    try:
        stored = json.loads(props.read_text())
    except ValueError:
        return False
    return stored.get("preprocessing_key") == key and (not needs_label or (folder / f"{case_id}_seg.npy").is_file())


def _init_worker():
    from .._procs import die_with_parent

    die_with_parent()
    try:
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    except Exception:  # noqa: BLE001 - a tuning knob only
        pass


def preprocess_dataset(raw_dir, out_dir, configs=None, num_workers: int | None = None, progress: bool | None = None) -> dict:
    """Preprocess every benchmark case for the given configurations (default: all planned).

    Configurations sharing a ``data_identifier`` are preprocessed once.

    Returns:
        ``{data_identifier: {"processed": n, "skipped": n, "failed": {case_id: message}}}``.

    Raises:
        FileNotFoundError: no plans in ``out_dir``. KeyError: an unknown configuration.
    """
    raw = RawDataset(raw_dir)
    out_dir = Path(out_dir)
    plans = load_plans(out_dir)
    configs = list(configs or plans["configurations"])
    by_id: dict[str, str] = {}
    for c in configs:
        if c not in plans["configurations"]:
            raise KeyError(f"configuration {c!r} is not planned for {plans['dataset']} (planned: {', '.join(plans['configurations'])})")
        data_id = plans["configurations"][c]["data_identifier"]
        if data_id not in by_id or c == data_id:  # prefer the configuration named like its data
            by_id[data_id] = c
    cases = benchmark_cases(raw)
    summary = {}
    for data_id, config in by_id.items():
        folder = out_dir / data_id
        folder.mkdir(parents=True, exist_ok=True)
        tasks, skipped = [], 0
        for case, subset in cases:
            key = case_key(case, subset, plans, config)
            if _is_current(folder, case.case_id, key, case.label_file is not None):
                skipped += 1
            else:
                tasks.append((case, subset, plans, config, folder, key))
        failed = _run(tasks, num_workers, progress, f"preprocess {plans['dataset']} {data_id}")
        _remove_orphans(folder, {c.case_id for c, _ in cases})
        manifest = {
            "dataset": plans["dataset"], "data_identifier": data_id,
            "configurations": [c for c in plans["configurations"] if plans["configurations"][c]["data_identifier"] == data_id],
            "plans_content_hash": content_hash(plans),  # of the plans as they are (hand edits included)
            "cases": {c.case_id: {"subset": s, "has_label": c.label_file is not None} for c, s in cases if c.case_id not in failed},
            "failed": failed,
        }
        write_json_atomic(folder / MANIFEST, manifest)
        summary[data_id] = {"processed": len(tasks) - len(failed), "skipped": skipped, "failed": failed}
    return summary


def _run(tasks, num_workers, progress, desc) -> dict[str, str]:
    from tqdm import tqdm

    failed = {}
    workers = min(num_workers or os.cpu_count() or 1, len(tasks))
    bar = tqdm(total=len(tasks), desc=desc, unit="case", disable=(not tasks) or (progress is False) or (progress is None and not sys.stderr.isatty()))
    if workers <= 1:
        results = (_process(t) for t in tasks)
        for case_id, err in results:
            if err:
                failed[case_id] = err
            bar.update()
    else:
        import multiprocessing as mp
        from concurrent.futures.process import BrokenProcessPool

        # spawn, not fork: a fork of a parent holding threads (tqdm, ITK) can deadlock in the child
        pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker)
        futures = {pool.submit(_process, t): t[0] for t in tasks}
        try:
            for fut in as_completed(futures):
                try:
                    case_id, err = fut.result()
                except BrokenProcessPool:
                    # a reader crashed its worker (native abort, OOM kill): stop now, name the cases
                    pending = {c.case_id for f, c in futures.items() if not f.done() or f.exception(timeout=0) is not None}
                    for c in futures.values():
                        if c.case_id in pending:
                            failed[c.case_id] = (f"{c.image_files[0]}: a preprocessing worker died (native reader crash "
                                                 "or killed) while this case or another unfinished one was read")
                    break
                if err:
                    failed[case_id] = err
                bar.update()
        finally:
            kill_pool(pool)  # never leave a worker behind
    bar.close()
    return dict(sorted(failed.items()))


def _remove_orphans(folder: Path, keep: set[str]) -> None:
    for props in folder.glob("*.json"):
        if props.name == MANIFEST or props.stem in keep:
            continue
        for suffix in (".npy", "_seg.npy", "_inst.npy", ".json"):
            f = folder / f"{props.stem}{suffix}"
            if f.exists():
                f.unlink()


def preprocess_command(dataset, workdir, configs=None, num_workers: int | None = None) -> int:
    """CLI handler of ``medseg-bench preprocess``."""
    from ..io import DatasetError
    from ..workdir import Workdir

    wd = Workdir(Path(workdir))
    try:
        raw_dir = wd.resolve_dataset(dataset)
        from ..io.verify import verify_dataset

        verify_dataset(raw_dir, wd.preprocessed(raw_dir.name))
        summary = preprocess_dataset(raw_dir, wd.preprocessed(raw_dir.name), configs, num_workers)
    except (FileNotFoundError, KeyError, DatasetError, ValueError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"medseg-bench preprocess: {msg}", file=sys.stderr)
        return 1
    status = 0
    for data_id, s in summary.items():
        print(f"{raw_dir.name} {data_id}: {s['processed']} preprocessed, {s['skipped']} up to date, {len(s['failed'])} failed")
        for case_id, err in s["failed"].items():
            print(f"  FAILED {case_id}: {err}", file=sys.stderr)
            status = 1
    return status
