"""Integrity check of a raw dataset (``medseg-bench datasets check PATH``).

Reports *every* problem found, each naming the file and what is wrong, in the spirit of nnU-Net's
``verify_dataset_integrity`` but covering medseg_bench's extensions too (test set, unlabelled images,
instance maps).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .image import ImageReadError, image_ending, read_image
from .raw_dataset import SUBSET_FOLDERS, Case, DatasetError, RawDataset

__all__ = ["Problem", "check_dataset", "format_problems"]

GEOMETRY_RTOL = 1e-4
GEOMETRY_ATOL = 1e-4


@dataclass(frozen=True)
class Problem:
    """One problem in a dataset: the file concerned and a sentence saying what is wrong."""

    file: Path
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.message}"


def format_problems(problems: list[Problem]) -> str:
    return "\n".join(str(p) for p in problems)


def _read(path: Path, spacing, problems: list[Problem]):
    try:
        return read_image(path, spacing)
    except ImageReadError as exc:
        problems.append(Problem(path, exc.reason))
        return None


def _count_non_finite(path: Path, array: np.ndarray) -> int:
    """NaN/inf voxels in an image. ITK's NIfTI reader silently turns non-finite values into 0, so
    NIfTI files are re-read raw with nibabel for this check."""
    if path.name.lower().endswith((".nii", ".nii.gz")):
        import nibabel

        try:
            array = np.asanyarray(nibabel.load(str(path)).dataobj)
        except Exception:  # noqa: BLE001 - unreadable files are reported by the main reader
            return 0
    if not np.issubdtype(array.dtype, np.floating):
        return 0
    return int(np.count_nonzero(~np.isfinite(array)))


def _check_geometry(ref_file: Path, ref: tuple, other_file: Path, other: tuple, what: str, problems: list[Problem]) -> None:
    (ref_arr, ref_geo), (arr, geo) = ref, other
    ref_shape = ref_arr.shape[:2] if ref_arr.ndim == 3 and ref_arr.shape[-1] == 3 and ref_geo.ndim == 2 else ref_arr.shape
    shape = arr.shape[:2] if arr.ndim == 3 and arr.shape[-1] == 3 and geo.ndim == 2 else arr.shape
    if tuple(ref_shape) != tuple(shape):
        problems.append(Problem(other_file, f"{what} shape {tuple(shape)} does not match image shape {tuple(ref_shape)} ({ref_file.name})"))
        return
    for name, mine, image in geo.differences(ref_geo, GEOMETRY_RTOL, GEOMETRY_ATOL):
        problems.append(Problem(other_file, f"{what} {name} mismatch with image {ref_file.name}: {mine} vs {image}"))


def _check_case(ds: RawDataset, case: Case, problems: list[Problem]) -> None:
    spacing = ds.spacing
    channels = []
    for f in case.image_files:
        if not f.exists():
            problems.append(Problem(f, f"missing channel file for case {case.case_id!r}"))
            continue
        loaded = _read(f, spacing, problems)
        if loaded is None:
            continue
        n_bad = _count_non_finite(f, loaded[0])
        if n_bad:
            problems.append(Problem(f, f"image contains {n_bad} NaN/inf value(s)"))
        arr = loaded[0]
        if ds.rgb and not (arr.ndim == 3 and arr.shape[-1] == 3):
            problems.append(Problem(f, f"dataset declares RGB channels but the image has shape {arr.shape}"))
        channels.append((f, loaded))
    if not channels:
        return
    ref_file, ref = channels[0]
    for f, loaded in channels[1:]:
        _check_geometry(ref_file, ref, f, loaded, "channel", problems)

    declared = set(ds.labels.values())
    label = None
    if case.label_file is not None:
        label = _read(case.label_file, spacing, problems)
        if label is not None:
            _check_geometry(ref_file, ref, case.label_file, label, "label", problems)
            arr = label[0]
            if not (np.issubdtype(arr.dtype, np.integer) or np.all(np.mod(arr, 1) == 0)):
                problems.append(Problem(case.label_file, "label map holds non-integer values"))
            else:
                values = set(np.unique(arr).astype(np.int64).tolist())
                unknown = sorted(values - declared)
                if unknown:
                    problems.append(Problem(case.label_file, f"label values {unknown} are not declared in dataset.json labels {sorted(declared)}"))
    if case.instance_file is not None:
        inst = _read(case.instance_file, spacing, problems)
        if inst is not None:
            _check_geometry(ref_file, ref, case.instance_file, inst, "instance map", problems)
            if label is not None and inst[0].shape == label[0].shape:
                fg_inst, fg_label = inst[0] > 0, label[0] > 0
                mismatch = int(np.count_nonzero(fg_inst != fg_label))
                if mismatch:
                    problems.append(Problem(case.instance_file, f"instance map foreground differs from the semantic label's foreground in {mismatch} pixel(s)"))


def _orphans(ds: RawDataset, problems: list[Problem]) -> None:
    ending = ds.file_ending
    for images, labels, instances in SUBSET_FOLDERS.values():
        image_ids = set(ds.channel_groups(images))
        img_dir = ds.path / images
        if img_dir.is_dir():
            for f in sorted(img_dir.iterdir()):
                if f.name.startswith(".") or f.suffix == ".json":
                    continue
                if not f.name.endswith(ending):
                    problems.append(Problem(f, f"unexpected file: ending is not the dataset's file_ending {ending!r}"))
                elif not re.match(r".+_\d{4}$", f.name[: -len(ending)]):
                    problems.append(Problem(f, "image file name must be CASE_XXXX" + ending + " (4-digit channel index)"))
        for folder, what in ((labels, "label"), (instances, "instance map")):
            if folder is None or not (ds.path / folder).is_dir():
                continue
            for f in sorted((ds.path / folder).iterdir()):
                if f.name.startswith(".") or f.suffix == ".json":
                    continue
                if not f.name.endswith(ending):
                    problems.append(Problem(f, f"unexpected file: ending is not the dataset's file_ending {ending!r}"))
                    continue
                case_id = f.name[: -len(ending)]
                if case_id not in image_ids:
                    problems.append(Problem(f, f"{what} without image: no {images}/{case_id}_0000{ending}"))


def _check_nsd_tolerance(ds: RawDataset, problems: list[Problem]) -> None:
    """``"nsd_tolerance"`` (optional): a finite number > 0 in spacing units (issue 23)."""
    from medseg_bench.metrics.tolerance import validate_tolerance

    if "nsd_tolerance" in ds.meta:
        problem = validate_tolerance(ds.meta["nsd_tolerance"])
        if problem:
            problems.append(Problem(ds.json_path, problem))


def check_dataset(path: str | os.PathLike) -> list[Problem]:
    """Check a raw dataset folder; returns all problems found (empty list = valid)."""
    path = Path(path)
    try:
        ds = RawDataset(path)
    except DatasetError as exc:
        text = str(exc)
        file, _, message = text.partition(": ")
        return [Problem(Path(file), message or text)]
    problems: list[Problem] = []
    try:
        image_ending("x" + ds.file_ending)
    except ValueError:
        problems.append(Problem(ds.json_path, f"file_ending {ds.file_ending!r} is not a supported image format"))
        return problems
    _check_nsd_tolerance(ds, problems)
    _orphans(ds, problems)
    train = ds.raw_cases("train")
    if not train:
        problems.append(Problem(ds.path / "imagesTr", "empty dataset: no training images found"))
    labelled = [c for c in train if c.label_file is not None]
    if train and len(train) != ds.num_training:
        problems.append(Problem(ds.json_path, f"numTraining is {ds.num_training} but imagesTr holds {len(train)} case(s)"))
    for c in train:
        if c.label_file is None:
            problems.append(Problem(c.image_files[0], f"training image without label: no labelsTr/{c.case_id}{ds.file_ending} (put images without labels in imagesUnlabelled/)"))
    test = ds.raw_cases("test")
    if (ds.path / "labelsTs").is_dir():
        for c in test:
            if c.label_file is None:
                problems.append(Problem(c.image_files[0], f"test image without label: no labelsTs/{c.case_id}{ds.file_ending}"))
    has_instances = (ds.path / "instancesTr").is_dir() or (ds.path / "instancesTs").is_dir()
    if ds.instance_labels:
        for c in labelled + [c for c in test if c.label_file is not None]:
            if c.instance_file is None:
                folder = SUBSET_FOLDERS[c.subset][2]
                problems.append(Problem(c.label_file, f"dataset declares instance_labels but {folder}/{c.case_id}{ds.file_ending} is missing"))
    elif has_instances:
        problems.append(Problem(ds.json_path, "instancesTr/instancesTs present but dataset.json lacks \"instance_labels\": true"))
    for c in train + test + ds.raw_cases("unlabelled"):
        _check_case(ds, c, problems)
    return problems
