"""Converter: TotalSegmentator CT cases -> a hip-bone CT dataset (label = ``hip_left`` ∪ ``hip_right``).

TotalSegmentator (Wasserthal et al., "TotalSegmentator: robust segmentation of 104 anatomic structures
in CT images", Radiology: Artificial Intelligence 5 (2023) e230024; data CC BY 4.0 on Zenodo) ships
one folder per case: ``<case>/ct.nii.gz`` and ``<case>/segmentations/<structure>.nii.gz`` (binary
masks in the CT's geometry), with ``meta.csv`` at the top (``image_id;...;split;...``).

Accepted ``--src`` layouts:

* **one case**: a folder holding the CT (``ct.nii.gz``, else the only ``*.nii.gz``/``*.nii`` there,
  e.g. ``example_ct.nii.gz``) and a mask folder ``segmentations/`` or ``masks/`` with
  ``hip_left.nii.gz`` and ``hip_right.nii.gz``;
* **many cases**: a folder of such case subfolders (TotalSegmentator's own layout). When ``meta.csv``
  with ``image_id`` and ``split`` columns is present, cases with split ``test`` go to
  ``imagesTs``/``labelsTs`` (the official test split); all others go to ``imagesTr``/``labelsTr``.

The label follows the ``ct_hip`` scheme: hip bone = left ∪ right os coxae; femurs, sacrum and spine are
background. Images and labels keep the CT's exact geometry (spacing, origin, direction) and HU values
(int16 when they fit). Cases whose hip masks are empty (CTs that do not reach the pelvis) are
skipped and listed in dataset.json. With a single case, the benchmark's hash test-set rule takes that
case as the test case, leaving no training case: a single case is for pipeline checks only.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from ..io import DatasetError, Geometry, RawDatasetWriter, read_image
from ..io.image import ImageReadError
from . import register_converter

__all__ = ["HIP_MASKS", "VERSION", "convert_totalsegmentator", "find_cases", "load_case"]

VERSION = "1.0.0"
HIP_MASKS = ("hip_left", "hip_right")
MASK_DIRS = ("segmentations", "masks")
_GEOMETRY_TOL = 1e-3


def _nifti(folder: Path, stem: str) -> Path | None:
    for ending in (".nii.gz", ".nii"):
        if (folder / f"{stem}{ending}").is_file():
            return folder / f"{stem}{ending}"
    return None


def _ct_file(case_dir: Path) -> Path | None:
    """``ct.nii.gz`` (or ``.nii``), else the only NIfTI in the folder; None when there is none.

    Raises:
        DatasetError: several NIfTI files and none named ``ct``.
    """
    found = _nifti(case_dir, "ct")
    if found:
        return found
    candidates = sorted(p for p in case_dir.iterdir() if p.is_file() and p.name.lower().endswith((".nii.gz", ".nii")))
    if len(candidates) > 1:
        raise DatasetError(f"{case_dir}: several NIfTI files ({', '.join(p.name for p in candidates)}) and none is "
                           "named ct.nii.gz: cannot tell which is the CT")
    return candidates[0] if candidates else None


def _mask_dir(case_dir: Path) -> Path | None:
    return next((case_dir / d for d in MASK_DIRS if (case_dir / d).is_dir()), None)


def _is_case(folder: Path) -> bool:
    return _mask_dir(folder) is not None or _nifti(folder, "ct") is not None


def find_cases(src: Path) -> list[Path]:
    """The case folders under ``src`` (``src`` itself when it is one case), sorted by name.

    Raises:
        DatasetError: no case found; the message says what was expected.
    """
    src = Path(src)
    if not src.is_dir():
        raise DatasetError(f"{src}: source folder does not exist")
    if _is_case(src):
        return [src]
    cases = sorted(d for d in src.iterdir() if d.is_dir() and _is_case(d))
    if not cases:
        raise DatasetError(f"{src}: no TotalSegmentator case found: expected ct.nii.gz (or one CT NIfTI) with a "
                           f"segmentations/ or masks/ folder, here or in subfolders <case>/")
    return cases


def _read(path: Path) -> tuple[np.ndarray, Geometry]:
    try:
        return read_image(path)
    except ImageReadError as exc:
        raise DatasetError(str(exc)) from exc


def load_case(case_dir: Path) -> tuple[np.ndarray, np.ndarray, Geometry]:
    """Read one case: ``(ct (z, y, x) HU, hip label uint8, CT geometry)``.

    Raises:
        DatasetError: missing CT or mask file, unreadable file, a mask whose shape or geometry differs
            from the CT's, or a mask that is not binary; the message names the file.
    """
    case_dir = Path(case_dir)
    ct_path = _ct_file(case_dir)
    if ct_path is None:
        raise DatasetError(f"{case_dir / 'ct.nii.gz'}: CT file is missing")
    ct, geo = _read(ct_path)
    if ct.ndim != 3:
        raise DatasetError(f"{ct_path}: expected a 3D CT volume, got shape {ct.shape}")
    mask_dir = _mask_dir(case_dir)
    if mask_dir is None:
        raise DatasetError(f"{case_dir / MASK_DIRS[0]}: mask folder is missing (expected segmentations/ or masks/)")
    label = np.zeros(ct.shape, np.uint8)
    for name in HIP_MASKS:
        path = _nifti(mask_dir, name)
        if path is None:
            raise DatasetError(f"{mask_dir / (name + '.nii.gz')}: mask file is missing")
        mask, mgeo = _read(path)
        if mask.shape != ct.shape:
            raise DatasetError(f"{path}: mask shape {mask.shape} differs from the CT's {ct.shape} ({ct_path.name})")
        diffs = geo.differences(mgeo, rtol=_GEOMETRY_TOL, atol=_GEOMETRY_TOL)
        if diffs:
            text = "; ".join(f"{name} {mine} vs CT {theirs}" for name, theirs, mine in diffs)
            raise DatasetError(f"{path}: mask geometry differs from the CT's ({text})")
        values = np.unique(mask)
        if not set(values.tolist()) <= {0, 1, 255}:
            raise DatasetError(f"{path}: mask is not binary (values {values[:8].tolist()}...)")
        label[mask > 0] = 1
    return ct, label, geo


def _ct_array(ct: np.ndarray) -> np.ndarray:
    """HU as int16 when the values are integers in int16 range, else float32."""
    if np.issubdtype(ct.dtype, np.integer) or np.all(np.mod(ct, 1) == 0):
        if ct.min() >= np.iinfo(np.int16).min and ct.max() <= np.iinfo(np.int16).max:
            return ct.astype(np.int16)
    return ct.astype(np.float32)


def _official_test_split(src: Path) -> set[str]:
    """Case ids with split ``test`` in ``meta.csv`` (semicolon or comma separated); empty if absent."""
    meta = src / "meta.csv"
    if not meta.is_file():
        return set()
    text = meta.read_text(errors="replace")
    try:
        dialect = csv.Sniffer().sniff(text.splitlines()[0], delimiters=";,\t")
    except (csv.Error, IndexError):
        return set()
    rows = list(csv.DictReader(text.splitlines(), dialect=dialect))
    if not rows or "image_id" not in rows[0] or "split" not in rows[0]:
        return set()
    return {r["image_id"].strip() for r in rows if (r.get("split") or "").strip().lower() == "test"}


def _case_id(folder: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", folder.name)


@register_converter("totalsegmentator", description="TotalSegmentator CT cases -> hip bone (hip_left+hip_right) CT dataset",
                    version=VERSION, default_name="totalsegmentator_hip")
def convert_totalsegmentator(src: Path, out_dir: Path) -> None:
    """Convert one case or a folder of TotalSegmentator cases into a raw dataset at ``out_dir``."""
    src = Path(src)
    cases = find_cases(src)
    test_ids = _official_test_split(src) if len(cases) > 1 else set()
    writer = RawDatasetWriter(out_dir, {"0": "CT"}, {"background": 0, "hip_bone": 1}, ".nii.gz", overwrite=True)
    written, skipped = {}, {}
    try:
        for case_dir in cases:
            cid = _case_id(case_dir)
            if cid in written:
                raise DatasetError(f"{case_dir}: case id {cid!r} occurs twice after sanitising folder names")
            ct, label, geo = load_case(case_dir)
            if not label.any():
                skipped[cid] = "hip_left and hip_right masks are empty (CT does not reach the pelvis)"
                continue
            subset = "test" if case_dir.name in test_ids else "train"
            writer.add_case(cid, _ct_array(ct)[None], geo, label=label, subset=subset)
            written[cid] = {"source": str(case_dir), "subset": subset, "shape": list(ct.shape),
                            "spacing": list(geo.spacing), "hip_voxels": int(label.sum())}
        if not written:
            raise DatasetError(f"{src}: no case with a non-empty hip_left/hip_right mask")
        extra = {
            "name": Path(out_dir).name,
            "description": "TotalSegmentator CT converted to one binary class: hip bone = hip_left ∪ hip_right "
                           "(femurs, sacrum, spine are background). See datasets/totalsegmentator.md.",
            "reference": "Wasserthal et al., TotalSegmentator: robust segmentation of 104 anatomic structures in CT "
                         "images, Radiology: Artificial Intelligence 5(5):e230024, 2023. doi:10.1148/ryai.230024",
            "licence": "CC BY 4.0 (TotalSegmentator dataset); cite the paper",
            "converter": {"name": "totalsegmentator", "version": VERSION, "source": str(src),
                          "official_test_split": bool(test_ids), "cases": written, "skipped": skipped},
        }
        if len(written) == 1:
            extra["note"] = ("single case: the hash test-set rule makes it the test case and leaves no training "
                             "case; use it for pipeline checks only")
        writer.finalize(extra=extra)
    except BaseException:
        writer.abort()
        raise
