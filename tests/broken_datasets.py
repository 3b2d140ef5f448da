"""Broken copies of a valid raw dataset, one per case of issue 21 (``from broken_datasets import ...``).

Each breaker edits a copy in place and returns ``(file name the message must name, message part)``.
Works on NIfTI (``.nii.gz``) and PNG datasets; ``nifti_only`` cases need float voxels or a spacing in
the file. Used by tests/io/test_broken_datasets.py (check, train, run) and for the README's table.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from medseg_bench.io import Geometry, RawDataset, read_image, write_image


def _first(ds: Path, folder: str) -> Path:
    ending = RawDataset(ds).file_ending
    return sorted((ds / folder).glob(f"*{ending}"))[0]


def _rewrite(path: Path, fn, **geo_changes) -> None:
    spacing = tuple(RawDataset(path.parents[1]).spacing or ()) or None
    arr, geo = read_image(path, spacing)
    d = geo.to_dict()
    d.update(geo_changes)
    write_image(path, fn(arr), Geometry.from_dict(d))


def zero_byte_image(ds):
    f = _first(ds, "imagesTr")
    f.write_bytes(b"")
    return f.name, "empty file (0 bytes)"


def zero_byte_label(ds):
    f = _first(ds, "labelsTr")
    f.write_bytes(b"")
    return f.name, "empty file (0 bytes)"


def random_bytes_image(ds):
    f = _first(ds, "imagesTr")
    f.write_bytes(np.random.default_rng(0).bytes(4000))
    return f.name, "unreadable"


def unreadable_label(ds):
    f = _first(ds, "labelsTr")
    f.write_bytes(b"\x89PNG\r\n\x1a\n" + np.random.default_rng(1).bytes(500))
    return f.name, "unreadable"


def undeclared_labels(ds):
    f = _first(ds, "labelsTr")

    def put(a):
        a = a.copy()
        a.reshape(-1)[:2] = [3, 7]
        return a
    _rewrite(f, put)
    return f.name, "label values [3, 7] are not declared in dataset.json"


def nan_voxels(ds):
    f = _first(ds, "imagesTr")

    def put(a):
        a = a.astype(np.float32)
        a.reshape(-1)[:3] = np.nan
        return a
    _rewrite(f, put)
    return f.name, "image contains 3 NaN/inf value(s)"


def num_training(ds):
    meta = json.loads((ds / "dataset.json").read_text())
    meta["numTraining"] = 17
    (ds / "dataset.json").write_text(json.dumps(meta))
    return "dataset.json", "numTraining is 17 but imagesTr holds"


def all_background(ds):
    for f in sorted((ds / "labelsTr").iterdir()):
        if f.name.endswith(RawDataset(ds).file_ending):
            _rewrite(f, np.zeros_like)
    return "labelsTr", "is all background"


def cropped_label(ds):
    f = _first(ds, "labelsTr")
    _rewrite(f, lambda a: np.ascontiguousarray(a[..., :-3]))
    return f.name, "does not match image shape"


def spacing_mismatch(ds):
    f = _first(ds, "labelsTr")
    arr, geo = read_image(f)
    _rewrite(f, lambda a: a, spacing=[s * 1.5 for s in geo.spacing])
    return f.name, "label spacing mismatch"


def _rename_case(ds, new_id):
    img, lab = _first(ds, "imagesTr"), _first(ds, "labelsTr")
    ending = RawDataset(ds).file_ending
    img.rename(img.with_name(f"{new_id}_0000{ending}"))
    lab.rename(lab.with_name(f"{new_id}{ending}"))
    return f"{new_id}_0000{ending}"


def non_ascii_name(ds):
    return _rename_case(ds, "cäse_ü"), "non-ASCII"


def space_in_name(ds):
    return _rename_case(ds, "case one"), "whitespace"


def dotdot_in_name(ds):
    return _rename_case(ds, "case..a"), "'..'"


def missing_channel_suffix(ds):
    f = _first(ds, "imagesTr")
    ending = RawDataset(ds).file_ending
    new = f.with_name(f.name.replace(f"_0000{ending}", ending))
    f.rename(new)
    return new.name, "4-digit channel index"


BREAKERS = {f.__name__: f for f in (
    zero_byte_image, zero_byte_label, random_bytes_image, unreadable_label, undeclared_labels, nan_voxels,
    num_training, all_background, cropped_label, spacing_mismatch, non_ascii_name, space_in_name,
    dotdot_in_name, missing_channel_suffix)}
NIFTI_ONLY = {"nan_voxels", "spacing_mismatch"}
