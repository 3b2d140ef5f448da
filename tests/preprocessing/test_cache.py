"""The preprocessed cache: the engine's contract (files, dtypes, properties), subsets, skipping
up-to-date cases, corrupt cases, instances, orphans."""

import json
import os

import numpy as np
import pytest

from medseg_bench.planning import plan_dataset
from medseg_bench.preprocessing import load_plans, preprocess_command, preprocess_dataset

PROPERTY_KEYS = {"case_id", "subset", "original_shape", "original_geometry", "crop_bbox", "shape_after_crop",
                 "shape_after_resample", "spacing_after_resample", "transpose", "has_label", "has_instances",
                 "out_of_plane_axis", "configuration", "preprocessing_key", "source_files"}


def _prepare(raw, workdir):
    out = workdir / "preprocessed" / raw.name
    plan_dataset(raw, out, num_workers=1)
    return out


def test_contract_files_and_subsets(tiny_3d, tmp_path):
    out = _prepare(tiny_3d, tmp_path)
    summary = preprocess_dataset(tiny_3d, out, num_workers=2, progress=False)
    plans = load_plans(out)
    data_id = plans["configurations"]["3d_fullres"]["data_identifier"]
    assert list(summary) == [data_id] and summary[data_id]["processed"] == 8 and not summary[data_id]["failed"]
    folder = out / data_id
    subsets = {}
    for props_file in sorted(folder.glob("case_*.json")):
        props = json.loads(props_file.read_text())
        assert set(props) == PROPERTY_KEYS  # nothing label-derived (no class locations)
        cid = props["case_id"]
        subsets[cid] = props["subset"]
        image = np.load(folder / f"{cid}.npy")
        assert image.dtype == np.float32 and image.shape == (1, *props["shape_after_resample"])
        seg_file = folder / f"{cid}_seg.npy"
        assert seg_file.exists() == props["has_label"]
        if props["has_label"]:
            seg = np.load(seg_file)
            assert seg.dtype == np.int16 and seg.shape == image.shape[1:]
    assert subsets == {"case_000": "train", "case_001": "train", "case_002": "train", "case_003": "train",
                       "case_004": "test", "case_005": "test", "case_006": "unlabelled", "case_007": "unlabelled"}
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["cases"]["case_006"] == {"subset": "unlabelled", "has_label": False}
    assert set(manifest["configurations"]) == {"2d", "3d_fullres"}


def test_up_to_date_cases_are_skipped_and_changes_redone(tiny_3d, tmp_path):
    out = _prepare(tiny_3d, tmp_path)
    preprocess_dataset(tiny_3d, out, num_workers=1, progress=False)
    again = preprocess_dataset(tiny_3d, out, num_workers=1, progress=False)["3d_fullres"]
    assert again["processed"] == 0 and again["skipped"] == 8
    touched = tiny_3d / "imagesTr" / "case_001_0000.nii.gz"
    st = touched.stat()
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    redo = preprocess_dataset(tiny_3d, out, num_workers=1, progress=False)["3d_fullres"]
    assert redo["processed"] == 1 and redo["skipped"] == 7


def test_corrupt_case_is_refused_before_preprocessing(tiny_3d, tmp_path):
    from medseg_bench.errors import InvalidDatasetError

    out = _prepare(tiny_3d, tmp_path)
    bad = tiny_3d / "imagesTr" / "case_002_0000.nii.gz"
    bad.write_bytes(bad.read_bytes()[:300])
    with pytest.raises(InvalidDatasetError, match="case_002_0000.nii.gz: unreadable or truncated"):
        preprocess_command(str(tiny_3d), tmp_path)
    assert not list((out / "3d_fullres").glob("case_002*"))


def test_corrupt_case_fails_by_name_and_leaves_the_cache_clean(tiny_3d, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MEDSEG_NO_VERIFY", "1")  # the per-case fallback behind the up-front check
    out = _prepare(tiny_3d, tmp_path)
    bad = tiny_3d / "imagesTr" / "case_002_0000.nii.gz"
    bad.write_bytes(bad.read_bytes()[:300])
    rc = preprocess_command(str(tiny_3d), tmp_path)
    err = capsys.readouterr().err
    assert rc == 1 and "case_002" in err and "case_002_0000.nii.gz" in err
    folder = out / "3d_fullres"
    assert not list(folder.glob("case_002*")) and not list(folder.glob(".*tmp*"))
    assert (folder / "case_003.json").is_file()  # the others finished
    assert "case_002" not in json.loads((folder / "manifest.json").read_text())["cases"]


def test_instances_and_orphans(tiny_rgb, tmp_path):
    out = _prepare(tiny_rgb, tmp_path)
    preprocess_dataset(tiny_rgb, out, num_workers=1, progress=False)
    folder = out / "2d"
    inst = np.load(folder / "tile_00_inst.npy")
    assert inst.dtype == np.int32 and inst.shape == (32, 32) and inst.max() > 0
    assert not (folder / "tile_05_inst.npy").exists()  # unlabelled
    np.save(folder / "ghost.npy", np.zeros(1))
    (folder / "ghost.json").write_text("{}")
    preprocess_dataset(tiny_rgb, out, num_workers=1, progress=False)
    assert not (folder / "ghost.npy").exists() and not (folder / "ghost.json").exists()


def test_missing_plans_is_a_clear_error(tiny_3d, tmp_path, capsys):
    assert preprocess_command(str(tiny_3d), tmp_path) == 1
    assert "medseg-bench plan" in capsys.readouterr().err
