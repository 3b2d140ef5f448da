"""Dataset fingerprint: what the planner may know about a dataset, measured from its images alone.

Like nnU-Net v2's ``DatasetFingerprintExtractor`` (Isensee et al., Nature Methods 2021) the
fingerprint reads every training image (``imagesTr`` plus this suite's ``imagesUnlabelled``; never
``imagesTs``) and records per case the spacing, the shape before and after cropping to the non-zero
region, and per-channel intensity statistics. Unlike nnU-Net, **intensity statistics come from
images only**: inside the body for CT (voxels above :data:`CT_BODY_THRESHOLD_HU`) and inside the
non-zero region otherwise, never inside the label foreground, so that every label budget (including 0)
shares one plan. Label statistics (classes present, foreground fraction, connected components,
instances) are recorded under ``label_statistics`` for reporting only and come from the benchmark's
training cases only (never from the test set); the planner does not read them.

Voxels are sampled with a fixed seed per case (derived from the case id, so the result does not depend
on the number of worker processes) and at most ``max_voxels`` in total over the dataset.
"""

from __future__ import annotations

import hashlib
import os
import re
import zlib
from pathlib import Path

import numpy as np

from ..io import NATURAL_ENDINGS, RawDataset, sidecar_path
from ..io.raw_dataset import Case

__all__ = [
    "CT_BODY_THRESHOLD_HU",
    "FINGERPRINT_VERSION",
    "channel_scheme",
    "compute_fingerprint",
    "dataset_files",
    "dataset_hash",
    "fingerprint_cases",
    "source_stat_hash",
]

FINGERPRINT_VERSION = 1
#: CT voxels above this value (Hounsfield units) form the "body" over which intensity statistics are
#: taken: it excludes air and lung, keeps fat (about -100 HU), soft tissue and bone.
CT_BODY_THRESHOLD_HU = -500.0
DEFAULT_MAX_VOXELS = 2_000_000

_CT_RE = re.compile(r"^(ct|computed[ _-]?tomography)([^a-z]|$)")
_SPECT_RE = re.compile(r"(spect|scintigra|^nm([^a-z]|$)|gamma[ _-]?camera)")
_NNUNET_SCHEMES = {"zscore": "zscore", "nonorm": "none", "rescale_to_0_1": "rescale01", "rgb_to_0_1": "rgb01"}


def channel_scheme(channel_name: str, rgb: bool) -> str:
    """Normalisation scheme of one channel, from its ``channel_names`` entry.

    ``ct`` for CT, ``rgb01`` for RGB natural images, ``spect`` for SPECT / scintigraphy counts,
    nnU-Net's explicit names (``zscore``, ``noNorm`` -> ``none``, ``rescale_to_0_1``,
    ``rgb_to_0_1``), and ``zscore`` for everything else (MRI, FAF, ...), as in nnU-Net.
    """
    if rgb:
        return "rgb01"
    name = channel_name.strip().lower()
    if name in _NNUNET_SCHEMES:
        return _NNUNET_SCHEMES[name]
    if _CT_RE.match(name):
        return "ct"
    if _SPECT_RE.search(name):
        return "spect"
    return "zscore"


def dataset_files(raw: RawDataset) -> list[Path]:
    """Every file that defines the dataset's content: dataset.json, images, labels and instance maps
    of all subsets (spacing sidecars included), sorted."""
    files = [raw.json_path]
    for subset in ("train", "test", "unlabelled"):
        for case in raw.raw_cases(subset):
            files.extend(case.image_files)
            files.extend(f for f in (case.label_file, case.instance_file) if f is not None)
    for f in list(files):
        if f.name.lower().endswith(NATURAL_ENDINGS) and sidecar_path(f).is_file():
            files.append(sidecar_path(f))
    return sorted(set(files))


def source_stat_hash(raw: RawDataset) -> str:
    """Cheap change detector (paths, sizes, modification times); local to one copy of the data."""
    h = hashlib.sha256()
    for f in dataset_files(raw):
        st = f.stat()
        h.update(f"{f.relative_to(raw.path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def dataset_hash(raw: RawDataset, digests: dict[str, str] | None = None) -> str:
    """Content hash of the dataset (relative paths and bytes of :func:`dataset_files`): identical for
    identical copies anywhere. ``digests`` may hold already computed ``{relative path: sha256}``."""
    digests = dict(digests or {})
    h = hashlib.sha256()
    for f in dataset_files(raw):
        rel = str(f.relative_to(raw.path))
        h.update(f"{rel}\0{digests.get(rel) or _file_digest(f)}\n".encode())
    return h.hexdigest()


def _stats(values: np.ndarray) -> dict:
    if values.size == 0:
        return {k: None for k in ("mean", "median", "std", "min", "max", "percentile_00_5", "percentile_99_5")}
    v = values.astype(np.float64)
    p = np.percentile(v, [0.5, 50.0, 99.5])
    return {
        "mean": float(v.mean()),
        "median": float(p[1]),
        "std": float(v.std()),
        "min": float(v.min()),
        "max": float(v.max()),
        "percentile_00_5": float(p[0]),
        "percentile_99_5": float(p[2]),
    }


def _case_seed(case_id: str, seed: int) -> int:
    return (zlib.crc32(case_id.encode()) ^ (seed * 0x9E3779B1)) & 0xFFFFFFFF


def _label_stats(case: Case, labels: dict[str, int], instances: bool) -> dict:
    from scipy import ndimage

    label, _ = case.load_label()
    out = {"classes": {}}
    n = label.size
    for name, value in labels.items():
        if value == 0:
            continue
        mask = label == value
        count = int(mask.sum())
        comps = int(ndimage.label(mask)[1]) if count else 0
        out["classes"][name] = {"present": bool(count), "foreground_fraction": count / n, "components": comps}
    if instances and case.instance_file is not None:
        inst, _ = case.load_instances()
        out["instances"] = int(len(np.unique(inst[inst != 0])))
    return out


def _fingerprint_case(args) -> dict:
    """Worker: statistics of one case (images only, plus the reporting-only label statistics)."""
    from ..preprocessing.crop import crop_to_nonzero

    case, schemes, n_samples, seed, label_info, root = args
    digests = {str(f.relative_to(root)): _file_digest(f) for f in case.image_files}
    image, geometry = case.load_image()
    cropped, bbox, nonzero = crop_to_nonzero(image)
    rng = np.random.default_rng(_case_seed(case.case_id, seed))
    channels, samples = [], []
    for c, scheme in enumerate(schemes):
        data = cropped[c]
        if scheme == "ct":
            region = data > CT_BODY_THRESHOLD_HU
            region_name = "body"
        else:
            region = nonzero
            region_name = "nonzero"
        values = data[region] if region.any() else data.ravel()
        if values.size > n_samples:
            values = values[rng.choice(values.size, n_samples, replace=False)]
        values = values.astype(np.float32)
        st = _stats(values)
        st["region"] = region_name
        st["region_voxels"] = int(region.sum())
        channels.append(st)
        samples.append(values)
    record = {
        "case_id": case.case_id,
        "subset": case.subset,
        "spacing": [float(s) for s in geometry.spacing],
        "shape_before_crop": [int(s) for s in image.shape[1:]],
        "shape_after_crop": [int(s) for s in cropped.shape[1:]],
        "crop_bbox": [[int(lo), int(hi)] for lo, hi in bbox],
        "relative_size_after_crop": float(np.prod(cropped.shape[1:]) / np.prod(image.shape[1:])),
        "intensity": channels,
        "dtype": str(image.dtype),
    }
    if label_info is not None and case.label_file is not None:
        labels, instances = label_info
        record["label_statistics"] = _label_stats(case, labels, instances)
    for f in (case.label_file, case.instance_file):
        if f is not None:
            digests[str(f.relative_to(root))] = _file_digest(f)
    return {"record": record, "samples": samples, "digests": digests}


def _map(fn, tasks, num_workers: int | None):
    workers = min(num_workers or os.cpu_count() or 1, len(tasks))
    if workers <= 1 or len(tasks) <= 2:
        return [fn(t) for t in tasks]
    from .._procs import pool_map

    return pool_map(fn, tasks, workers, describe=_describe)


def _describe(task) -> str:
    """The image file(s) of a fingerprint task, for a dead worker's message."""
    for item in task if isinstance(task, tuple) else (task,):
        if hasattr(item, "image_files"):
            return ", ".join(str(f) for f in item.image_files)
    return str(task)


def fingerprint_cases(raw: RawDataset) -> list[Case]:
    """The cases the fingerprint reads: all of ``imagesTr`` and ``imagesUnlabelled``."""
    return raw.raw_cases("train") + raw.raw_cases("unlabelled")


def compute_fingerprint(raw_dir: str | os.PathLike, num_workers: int | None = None, seed: int = 0,
                        max_voxels: int = DEFAULT_MAX_VOXELS) -> dict:
    """Fingerprint of a raw dataset (see the module docstring). Reads every training image once.

    Args:
        raw_dir: raw dataset folder (nnU-Net v2 format + extensions).
        num_workers: processes (default: all cores).
        seed: base seed of the voxel sampling.
        max_voxels: bound on the voxels sampled per channel over the whole dataset.

    Returns:
        A JSON-serialisable dict (the content of ``fingerprint.json``).

    Raises:
        DatasetError: the dataset has no training images. ImageReadError: a case cannot be read (the
        message names the file).
    """
    raw = RawDataset(raw_dir)
    cases = fingerprint_cases(raw)
    if not cases:
        from ..io import DatasetError

        raise DatasetError(f"{raw.path}: no training images in imagesTr/ or imagesUnlabelled/ to fingerprint")
    schemes = [channel_scheme(raw.channel_names[k], raw.rgb) for k in sorted(raw.channel_names, key=int)]
    if raw.rgb:
        schemes = ["rgb01"] * 3
    n_samples = max(1000, max_voxels // len(cases))
    reporting_ids = {c.case_id for c in raw.train_cases()}
    label_info = (raw.labels, raw.instance_labels)
    tasks = [(c, schemes, n_samples, seed, label_info if c.case_id in reporting_ids and c.subset == "train" else None, raw.path)
             for c in cases]
    results = _map(_fingerprint_case, tasks, num_workers)
    records = [r["record"] for r in results]
    digests: dict[str, str] = {}
    for r in results:
        digests.update(r["digests"])
    intensity = {}
    for c, scheme in enumerate(schemes):
        pooled = np.concatenate([r["samples"][c] for r in results])
        st = _stats(pooled)
        st["min"] = min(rec["intensity"][c]["min"] for rec in records if rec["intensity"][c]["min"] is not None)
        st["max"] = max(rec["intensity"][c]["max"] for rec in records if rec["intensity"][c]["max"] is not None)
        st["region"] = "body" if scheme == "ct" else "nonzero"
        st["scheme"] = scheme
        st["sampled_voxels"] = int(pooled.size)
        intensity[str(c)] = st
    dims = len(records[0]["spacing"])
    if any(len(r["spacing"]) != dims for r in records):
        from ..io import DatasetError

        raise DatasetError(f"{raw.path}: cases mix 2D and 3D images")
    fingerprint = {
        "fingerprint_version": FINGERPRINT_VERSION,
        "dataset": raw.name,
        "dataset_hash": dataset_hash(raw, digests),
        "source_stat_hash": source_stat_hash(raw),
        "dims": dims,
        "rgb": raw.rgb,
        "instance_labels": raw.instance_labels,
        "channel_names": raw.channel_names,
        "modality": raw.modality,
        "channel_schemes": schemes,
        "num_channels": len(schemes),
        "labels": raw.labels,
        "num_cases": len(records),
        "num_cases_per_subset": {s: sum(r["subset"] == s for r in records) for s in ("train", "unlabelled")},
        "sampling": {"seed": seed, "max_voxels": max_voxels, "per_case": n_samples},
        "spacings": [r["spacing"] for r in records],
        "shapes_after_crop": [r["shape_after_crop"] for r in records],
        "median_relative_size_after_cropping": float(np.median([r["relative_size_after_crop"] for r in records])),
        "intensity_statistics_per_channel": intensity,
        "cases": [{k: v for k, v in r.items() if k != "label_statistics"} for r in records],
        "label_statistics": _summarise_labels(raw, records),
    }
    return fingerprint


def _summarise_labels(raw: RawDataset, records: list[dict]) -> dict:
    labelled = [r["label_statistics"] for r in records if "label_statistics" in r]
    out: dict = {"note": "reporting only: computed from the benchmark's training labels; the planner never reads it",
                 "num_labelled_cases": len(labelled), "classes": {}}
    for name, value in raw.labels.items():
        if value == 0:
            continue
        per = [s["classes"][name] for s in labelled]
        if not per:
            continue
        out["classes"][name] = {
            "value": value,
            "cases_present": int(sum(p["present"] for p in per)),
            "foreground_fraction_mean": float(np.mean([p["foreground_fraction"] for p in per])),
            "components_per_image_mean": float(np.mean([p["components"] for p in per])),
            "components_per_image_max": int(max(p["components"] for p in per)),
        }
    inst = [s["instances"] for s in labelled if "instances" in s]
    if inst:
        out["instances_per_image_mean"] = float(np.mean(inst))
        out["instances_per_image_max"] = int(max(inst))
    return out
