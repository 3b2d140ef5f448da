"""TotalSegmentator converter: real shared CT (skipped without ../shared/data), layouts, split, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medseg_bench.cli import main
from medseg_bench.datasets import convert
from medseg_bench.datasets._oracle import best_threshold_dice
from medseg_bench.datasets.totalsegmentator import load_case
from medseg_bench.io import DatasetError, Geometry, RawDataset, check_dataset, read_image, write_image

GEO = Geometry((2.5, 0.8, 0.8), origin=(10.0, -20.0, 30.0), direction=(-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0))


def _case(folder: Path, hip: bool = True, rng=None, mask_dir="segmentations", ct_name="ct.nii.gz") -> Path:
    rng = rng or np.random.default_rng(0)
    ct = rng.integers(-1000, 1500, (6, 10, 12)).astype(np.int16)
    write_image(folder / ct_name, ct, GEO)
    masks = {"hip_left": np.zeros(ct.shape, np.uint8), "hip_right": np.zeros(ct.shape, np.uint8),
             "femur_left": np.zeros(ct.shape, np.uint8)}
    if hip:
        masks["hip_left"][1:3, 2:5, 2:5] = 1
        masks["hip_right"][2:4, 5:8, 7:10] = 1
    masks["femur_left"][4:, :3, :3] = 1
    for name, m in masks.items():
        write_image(folder / mask_dir / f"{name}.nii.gz", m, GEO)
    return folder


def test_real_shared_ct_gives_hip_label_in_ct_geometry(shared_data, tmp_path):
    src = shared_data / "totalseg_pelvis_ct"
    out = convert("totalsegmentator", src, tmp_path / "ts")
    assert check_dataset(out) == []
    ds = RawDataset(out)
    (case,) = ds.raw_cases("train")
    image, geo = case.load_image()
    label, lgeo = case.load_label()
    ct, ct_geo = read_image(src / "example_ct.nii.gz")
    assert geo.differences(ct_geo) == [] and lgeo.differences(ct_geo) == []
    np.testing.assert_array_equal(image[0], ct)
    hip = (read_image(src / "masks" / "hip_left.nii.gz")[0] > 0) | (read_image(src / "masks" / "hip_right.nii.gz")[0] > 0)
    np.testing.assert_array_equal(label, hip.astype(np.uint8))
    for other in ("femur_left", "femur_right", "sacrum"):
        assert not (label.astype(bool) & (read_image(src / "masks" / f"{other}.nii.gz")[0] > 0)).any()
    meta = json.loads((out / "dataset.json").read_text())
    assert "single case" in meta["note"] and len(ds.test_cases()) == 1 and ds.train_cases() == []
    z = np.flatnonzero(label.any(axis=(1, 2)))
    dice = best_threshold_dice(image[0][z.min():z.max() + 1], label[z.min():z.max() + 1])
    print(f"real TotalSegmentator CT: best global threshold Dice (pelvis slices) = {dice:.3f}")
    assert 0.5 < dice < 0.75


def test_folder_of_cases_official_split_and_skipped(tmp_path):
    src = tmp_path / "Totalsegmentator_dataset"
    rng = np.random.default_rng(1)
    for name in ("s0001", "s0002", "s0003"):
        _case(src / name, rng=rng)
    _case(src / "s0004", hip=False, rng=rng)  # a chest CT: no hip bone
    (src / "meta.csv").write_text("image_id;age;split\ns0001;60;train\ns0002;55;test\ns0003;70;val\ns0004;40;train\n")
    out = convert("totalsegmentator", src, tmp_path / "out")
    assert check_dataset(out) == []
    ds = RawDataset(out)
    assert [c.case_id for c in ds.raw_cases("train")] == ["s0001", "s0003"]
    assert [c.case_id for c in ds.test_cases()] == ["s0002"]
    meta = json.loads((out / "dataset.json").read_text())
    assert "s0004" in meta["converter"]["skipped"] and meta["converter"]["official_test_split"]
    ct, label, geo = load_case(src / "s0002")
    image, g = ds.test_cases()[0].load_image()
    np.testing.assert_array_equal(image[0], ct)
    assert g.differences(GEO) == [] and int(label.sum()) == 2 * 9 + 2 * 9


def test_single_case_with_masks_folder_and_any_ct_name(tmp_path):
    src = _case(tmp_path / "one", mask_dir="masks", ct_name="example_ct.nii.gz")
    out = convert("totalsegmentator", src, tmp_path / "out")
    assert check_dataset(out) == [] and [c.case_id for c in RawDataset(out).raw_cases("train")] == ["one"]


@pytest.mark.parametrize("damage, expected", [
    (lambda d: (d / "segmentations" / "hip_right.nii.gz").unlink(), "hip_right.nii.gz: mask file is missing"),
    (lambda d: (d / "ct.nii.gz").unlink(), "ct.nii.gz: CT file is missing"),
    (lambda d: write_image(d / "segmentations" / "hip_left.nii.gz", np.zeros((6, 10, 11), np.uint8), GEO),
     "hip_left.nii.gz: mask shape"),
    (lambda d: write_image(d / "segmentations" / "hip_left.nii.gz", np.zeros((6, 10, 12), np.uint8),
                           Geometry((3.0, 0.8, 0.8), GEO.origin, GEO.direction)), "hip_left.nii.gz: mask geometry differs"),
    (lambda d: write_image(d / "segmentations" / "hip_left.nii.gz", np.full((6, 10, 12), 7, np.uint8), GEO),
     "hip_left.nii.gz: mask is not binary"),
    (lambda d: (d / "ct.nii.gz").write_bytes(b"not a nifti"), "ct.nii.gz: unreadable"),
])
def test_invalid_input_names_the_file(tmp_path, damage, expected):
    case = _case(tmp_path / "src" / "s0001")
    damage(case)
    with pytest.raises(DatasetError, match=expected.replace(".", r"\.")):
        convert("totalsegmentator", tmp_path / "src", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_reports_errors(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    rc = main(["datasets", "convert", "totalsegmentator", "--src", str(tmp_path / "empty"), "--workdir", str(tmp_path)])
    assert rc == 2 and "no TotalSegmentator case found" in capsys.readouterr().err
    ambiguous = tmp_path / "amb"
    _case(ambiguous, ct_name="a.nii.gz")
    write_image(ambiguous / "b.nii.gz", np.zeros((2, 2, 2), np.int16), GEO)
    rc = main(["datasets", "convert", "totalsegmentator", "--src", str(ambiguous), "--workdir", str(tmp_path)])
    assert rc == 2 and "none is named ct.nii.gz" in capsys.readouterr().err
