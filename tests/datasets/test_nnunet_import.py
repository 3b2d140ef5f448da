"""nnunet importer: validation, hard links or copies, the hashed test set, the default name."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from medseg_testdata import make_tiny_3d, make_tiny_rgb_instances

from medseg_bench.cli import main
from medseg_bench.datasets import convert, get_converter
from medseg_bench.io import DatasetError, Geometry, RawDataset, check_dataset, hash_test_case_ids, write_image


def _nnunet_2d(path: Path, n=6, with_test_images=True) -> Path:
    """A plain nnU-Net v2 raw dataset: two channels, imagesTs without labels."""
    rng = np.random.default_rng(0)
    for i in range(n):
        lab = (rng.random((16, 16)) > 0.7).astype(np.uint8)
        for c in range(2):
            write_image(path / "imagesTr" / f"case_{i:03d}_{c:04d}.nii.gz", rng.random((16, 16)).astype(np.float32),
                        Geometry((0.5, 0.5)))
        write_image(path / "labelsTr" / f"case_{i:03d}.nii.gz", lab, Geometry((0.5, 0.5)))
    if with_test_images:
        write_image(path / "imagesTs" / "other_000_0000.nii.gz", np.zeros((16, 16), np.float32), Geometry((0.5, 0.5)))
        write_image(path / "imagesTs" / "other_000_0001.nii.gz", np.zeros((16, 16), np.float32), Geometry((0.5, 0.5)))
    meta = {"channel_names": {"0": "T1", "1": "T2"}, "labels": {"background": 0, "lesion": 1},
            "numTraining": n, "file_ending": ".nii.gz", "name": "Dataset123_Toy"}
    (path / "dataset.json").write_text(json.dumps(meta))
    return path


def test_import_without_labels_ts_uses_the_hash_rule(tmp_path):
    src = _nnunet_2d(tmp_path / "Dataset123_Toy")
    out = convert("nnunet", src, tmp_path / "wd" / "raw" / "Dataset123_Toy")
    assert check_dataset(out) == []
    ds = RawDataset(out)
    ids = [f"case_{i:03d}" for i in range(6)]
    expected_test = hash_test_case_ids(ids)
    assert [c.case_id for c in ds.test_cases()] == expected_test
    assert sorted(c.case_id for c in ds.train_cases()) == sorted(set(ids) - set(expected_test))
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "T1", "1": "T2"} and meta["name"] == "Dataset123_Toy"
    assert meta["converter"]["name"] == "nnunet" and meta["converter"]["source"] == str(src.resolve())
    assert meta["converter"]["files"] == 6 * 3 + 2
    src_meta = json.loads((src / "dataset.json").read_text())
    assert "converter" not in src_meta  # the source is left untouched


def test_hard_links_when_possible_else_copies(tmp_path, monkeypatch):
    src = _nnunet_2d(tmp_path / "src", with_test_images=False)
    linked = convert("nnunet", src, tmp_path / "linked")
    f = "imagesTr/case_000_0000.nii.gz"
    assert os.stat(linked / f).st_ino == os.stat(src / f).st_ino
    assert json.loads((linked / "dataset.json").read_text())["converter"]["hard_linked"] == 18

    def no_link(*_):
        raise OSError("cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    copied = convert("nnunet", src, tmp_path / "copied")
    assert os.stat(copied / f).st_ino != os.stat(src / f).st_ino
    assert (copied / f).read_bytes() == (src / f).read_bytes()
    assert json.loads((copied / "dataset.json").read_text())["converter"]["hard_linked"] == 0


def test_extension_folders_and_sidecars_come_along(tmp_path):
    src = make_tiny_rgb_instances(tmp_path / "tiles")
    out = convert("nnunet", src, tmp_path / "out")
    assert check_dataset(out) == []
    a, b = RawDataset(src), RawDataset(out)
    assert [c.case_id for c in b.test_cases()] == [c.case_id for c in a.test_cases()]
    assert len(b.unlabelled_cases()) == len(a.unlabelled_cases()) == 1
    case = b.test_cases()[0]
    assert case.load_image()[1].spacing == (0.25, 0.25)  # per-image spacing sidecars were copied
    np.testing.assert_array_equal(case.load_instances()[0], a.test_cases()[0].load_instances()[0])


def test_3d_dataset_round_trip(tmp_path):
    src = make_tiny_3d(tmp_path / "ct")
    out = convert("nnunet", src, tmp_path / "out")
    img_a, geo_a = RawDataset(src).train_cases()[0].load_image()
    img_b, geo_b = RawDataset(out).train_cases()[0].load_image()
    np.testing.assert_array_equal(img_a, img_b)
    assert geo_a.differences(geo_b) == []


def test_invalid_source_fails_naming_the_file(tmp_path):
    src = _nnunet_2d(tmp_path / "src")
    (src / "labelsTr" / "case_002.nii.gz").unlink()
    with pytest.raises(DatasetError, match=r"case_002_0000\.nii\.gz: training image without label") as err:
        convert("nnunet", src, tmp_path / "out")
    assert "not a valid nnU-Net v2 raw dataset" in str(err.value)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_missing_dataset_json(tmp_path):
    (tmp_path / "src" / "imagesTr").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"src/dataset\.json: dataset\.json is missing"):
        convert("nnunet", tmp_path / "src", tmp_path / "out")


def test_target_inside_source_is_refused(tmp_path):
    src = _nnunet_2d(tmp_path / "src", with_test_images=False)
    with pytest.raises(DatasetError, match="outside the source"):
        convert("nnunet", src, src / "copy")


def test_cli_default_name_is_the_source_folder(tmp_path, capsys):
    src = _nnunet_2d(tmp_path / "downloads" / "Dataset123_Toy")
    assert get_converter("nnunet").dataset_name(src) == "Dataset123_Toy"
    rc = main(["datasets", "convert", "nnunet", "--src", str(src), "--workdir", str(tmp_path / "wd")])
    assert rc == 0
    assert check_dataset(tmp_path / "wd" / "raw" / "Dataset123_Toy") == []
    (src / "dataset.json").write_text("{not json")
    rc = main(["datasets", "convert", "nnunet", "--src", str(src), "--workdir", str(tmp_path / "wd"), "--overwrite"])
    assert rc == 2 and "dataset.json" in capsys.readouterr().err
