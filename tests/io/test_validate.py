"""Every validation case of `datasets check`, each asserting its specific message and file."""

import json
import shutil

import numpy as np
import pytest

from medseg_bench.cli import main
from medseg_bench.io import Geometry, check_dataset, read_image, write_image


def messages(path):
    return [(p.file.name, p.message) for p in check_dataset(path)]


def only(path):
    found = messages(path)
    assert len(found) == 1, found
    return found[0]


def test_valid_datasets_have_no_problems(tiny_3d, tiny_rgb):
    assert messages(tiny_3d) == []
    assert messages(tiny_rgb) == []


def test_missing_dataset_json(tiny_3d):
    (tiny_3d / "dataset.json").unlink()
    assert only(tiny_3d) == ("dataset.json", "dataset.json is missing")


def test_malformed_dataset_json(tiny_3d):
    (tiny_3d / "dataset.json").write_text('{"channel_names": ')
    name, msg = only(tiny_3d)
    assert name == "dataset.json" and msg.startswith("malformed JSON")


@pytest.mark.parametrize("value", [-1.0, 0, "1 mm", None, True])
def test_invalid_nsd_tolerance(tiny_3d, value):
    meta = json.loads((tiny_3d / "dataset.json").read_text())
    (tiny_3d / "dataset.json").write_text(json.dumps({**meta, "nsd_tolerance": value}))
    name, msg = only(tiny_3d)
    assert name == "dataset.json" and msg.startswith("nsd_tolerance must be") and repr(value) in msg


def test_valid_nsd_tolerance(tiny_3d):
    meta = json.loads((tiny_3d / "dataset.json").read_text())
    (tiny_3d / "dataset.json").write_text(json.dumps({**meta, "nsd_tolerance": 1.5}))
    assert messages(tiny_3d) == []


def test_training_image_without_label(tiny_3d):
    (tiny_3d / "labelsTr" / "case_001.nii.gz").unlink()
    assert only(tiny_3d) == ("case_001_0000.nii.gz", "training image without label: no labelsTr/case_001.nii.gz (put images without labels in imagesUnlabelled/)")


def test_label_without_image(tiny_3d):
    shutil.copy(tiny_3d / "labelsTr" / "case_000.nii.gz", tiny_3d / "labelsTr" / "case_999.nii.gz")
    assert only(tiny_3d) == ("case_999.nii.gz", "label without image: no imagesTr/case_999_0000.nii.gz")


def test_unlabelled_images_need_no_label(tiny_3d):
    assert not (tiny_3d / "labelsTr" / "case_006.nii.gz").exists()
    assert (tiny_3d / "imagesUnlabelled" / "case_006_0000.nii.gz").exists()
    assert messages(tiny_3d) == []


def test_missing_channel_file(tiny_3d):
    meta = json.loads((tiny_3d / "dataset.json").read_text())
    meta["channel_names"] = {"0": "CT", "1": "PET"}
    (tiny_3d / "dataset.json").write_text(json.dumps(meta))
    for sub in ("imagesTr", "imagesTs", "imagesUnlabelled"):
        for f in (tiny_3d / sub).glob("*_0000.nii.gz"):
            if f.name != "case_002_0000.nii.gz":
                shutil.copy(f, f.with_name(f.name.replace("_0000", "_0001")))
    assert only(tiny_3d) == ("case_002_0001.nii.gz", "missing channel file for case 'case_002'")


def _rewrite_label(path, array=None, **geo_changes):
    arr, geo = read_image(path)
    d = geo.to_dict()
    d.update(geo_changes)
    write_image(path, arr if array is None else array, Geometry.from_dict(d))


def test_shape_mismatch(tiny_3d):
    label = tiny_3d / "labelsTr" / "case_000.nii.gz"
    _rewrite_label(label, np.zeros((10, 24, 20), np.uint8))
    assert only(tiny_3d) == ("case_000.nii.gz", "label shape (10, 24, 20) does not match image shape (10, 24, 24) (case_000_0000.nii.gz)")


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("spacing", [3.0, 0.8, 0.9], "label spacing mismatch with image case_000_0000.nii.gz: (3.0, 0.8, 0.9) vs (3.0, 0.8, 0.8)"),
        ("origin", [-10.0, 5.0, 7.5], "label origin mismatch with image case_000_0000.nii.gz"),
        ("direction", [1, 0, 0, 0, 1, 0, 0, 0, 1], "label direction mismatch with image case_000_0000.nii.gz"),
    ],
)
def test_geometry_mismatch(tiny_3d, field, value, expected):
    _rewrite_label(tiny_3d / "labelsTr" / "case_000.nii.gz", **{field: value})
    name, msg = only(tiny_3d)
    assert name == "case_000.nii.gz"
    assert msg.startswith(expected) if field == "spacing" else expected in msg


def test_geometry_within_tolerance_is_accepted(tiny_3d):
    _rewrite_label(tiny_3d / "labelsTr" / "case_000.nii.gz", spacing=[3.0, 0.80001, 0.8])
    assert messages(tiny_3d) == []


def test_undeclared_label_values(tiny_3d):
    path = tiny_3d / "labelsTs" / "case_004.nii.gz"
    arr, _ = read_image(path)
    arr[0, 0, :3] = [2, 5, 5]
    _rewrite_label(path, arr)
    assert only(tiny_3d) == ("case_004.nii.gz", "label values [2, 5] are not declared in dataset.json labels [0, 1]")


def test_instance_map_must_match_semantic_foreground(tiny_rgb):
    path = tiny_rgb / "instancesTr" / "tile_01.png"
    inst, geo = read_image(path, spacing=(0.25, 0.25))
    inst[0, :5] = 3  # background pixels marked as an instance
    inst[inst == 14] = 0  # a whole nucleus lost
    write_image(path, inst, geo)
    name, msg = only(tiny_rgb)
    assert name == "tile_01.png" and msg.startswith("instance map foreground differs from the semantic label's foreground in ")


def test_missing_instance_map(tiny_rgb):
    (tiny_rgb / "instancesTs" / "tile_03.png").unlink()
    assert only(tiny_rgb) == ("tile_03.png", "dataset declares instance_labels but instancesTs/tile_03.png is missing")


def test_nan_inf_in_image(tiny_3d):
    path = tiny_3d / "imagesTr" / "case_003_0000.nii.gz"
    arr, geo = read_image(path)
    arr[0, 0, 0], arr[1, 1, 1] = np.nan, np.inf
    write_image(path, arr, geo)
    assert only(tiny_3d) == ("case_003_0000.nii.gz", "image contains 2 NaN/inf value(s)")


def test_unreadable_truncated_file(tiny_3d):
    path = tiny_3d / "imagesTr" / "case_001_0000.nii.gz"
    path.write_bytes(path.read_bytes()[:100])
    name, msg = only(tiny_3d)
    assert name == "case_001_0000.nii.gz" and msg.startswith("unreadable or truncated image")


def test_empty_dataset(tiny_3d):
    shutil.rmtree(tiny_3d / "imagesTr")
    shutil.rmtree(tiny_3d / "labelsTr")
    problems = messages(tiny_3d)
    assert ("imagesTr", "empty dataset: no training images found") in problems


def test_num_training_mismatch(tiny_3d):
    meta = json.loads((tiny_3d / "dataset.json").read_text())
    meta["numTraining"] = 7
    (tiny_3d / "dataset.json").write_text(json.dumps(meta))
    assert only(tiny_3d) == ("dataset.json", "numTraining is 7 but imagesTr holds 4 case(s)")


def test_reports_all_problems_not_only_the_first(tiny_3d):
    (tiny_3d / "labelsTr" / "case_001.nii.gz").unlink()
    path = tiny_3d / "imagesTr" / "case_003_0000.nii.gz"
    arr, geo = read_image(path)
    arr[0, 0, 0] = np.nan
    write_image(path, arr, geo)
    _rewrite_label(tiny_3d / "labelsTr" / "case_000.nii.gz", spacing=[1.0, 1.0, 1.0])
    assert len(messages(tiny_3d)) == 3


def test_cli_check_exit_codes_and_names_the_file(tiny_3d, tiny_rgb, capsys):
    assert main(["datasets", "check", str(tiny_3d)]) == 0
    assert main(["datasets", "check", str(tiny_rgb)]) == 0
    assert "OK" in capsys.readouterr().out
    (tiny_3d / "labelsTr" / "case_001.nii.gz").unlink()
    assert main(["datasets", "check", str(tiny_3d)]) == 1
    err = capsys.readouterr().err
    assert "1 problem(s) found" in err and "case_001_0000.nii.gz: training image without label" in err
