import json

import numpy as np
import pytest

from medseg_bench.io import DatasetError, Geometry, RawDataset, RawDatasetWriter, hash_test_case_ids


def test_tiny_3d_lists_lazily_and_loads(tiny_3d):
    ds = RawDataset(tiny_3d)
    meta = json.loads((tiny_3d / "dataset.json").read_text())
    # nnU-Net v2 required keys, numTraining = number of imagesTr cases
    assert {"channel_names", "labels", "numTraining", "file_ending"} <= set(meta)
    assert meta["numTraining"] == 4 and ds.num_training == 4
    assert [c.case_id for c in ds.train_cases()] == [f"case_{i:03d}" for i in range(4)]
    assert [c.case_id for c in ds.test_cases()] == ["case_004", "case_005"]
    assert [c.case_id for c in ds.unlabelled_cases()] == ["case_006", "case_007"]
    case = ds.train_cases()[0]
    image, geo = case.load_image()
    label, lgeo = case.load_label()
    assert image.shape == (1, 10, 24, 24) and label.shape == (10, 24, 24)
    assert geo.spacing == pytest.approx((3.0, 0.8, 0.8)) and geo.differences(lgeo) == []
    assert ds.modality == "CT" and not ds.rgb and not ds.instance_labels


def test_rgb_dataset_one_file_per_case_channel_first(tiny_rgb):
    ds = RawDataset(tiny_rgb)
    assert ds.rgb and ds.instance_labels and ds.num_channel_files == 1
    assert sorted(p.name for p in (tiny_rgb / "imagesTr").glob("*.png")) == [f"tile_{i:02d}_0000.png" for i in range(3)]
    case = ds.train_cases()[0]
    image, geo = case.load_image()
    assert image.shape == (3, 32, 32) and image.dtype == np.uint8
    assert geo.spacing == (0.25, 0.25)  # from dataset.json "spacing"
    inst, _ = case.load_instances()
    assert set(np.unique(inst)) <= {0, 7, 14, 21}


def test_test_set_by_hash_when_no_labelsTs(tmp_path):
    w = RawDatasetWriter(tmp_path / "d", {"0": "MR"}, {"background": 0, "x": 1}, ".nii.gz")
    for i in range(10):
        w.add_case(f"c{i}", np.zeros((1, 4, 4, 4), np.float32), Geometry((1, 1, 1)), label=np.zeros((4, 4, 4), np.uint8))
    ds = w.finalize()
    test = [c.case_id for c in ds.test_cases()]
    assert len(test) == 2 and test == hash_test_case_ids([f"c{i}" for i in range(10)])
    assert set(test).isdisjoint(c.case_id for c in ds.train_cases()) and len(ds.train_cases()) == 8
    assert hash_test_case_ids(["a"]) == ["a"] and len(hash_test_case_ids(["a", "b"])) == 1


def test_writer_is_atomic_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "d"
    w = RawDatasetWriter(out, {"0": "MR"}, {"background": 0, "x": 1}, ".nii.gz")
    w.add_case("c0", np.zeros((1, 4, 4, 4), np.float32), Geometry((1, 1, 1)), label=np.zeros((4, 4, 4), np.uint8))
    assert not out.exists()  # nothing visible until finalize
    w.finalize()
    with pytest.raises(FileExistsError):
        RawDatasetWriter(out, {"0": "MR"}, {"background": 0}, ".nii.gz")
    with pytest.raises(ValueError, match="training cases need a label"):
        w2 = RawDatasetWriter(out, {"0": "MR"}, {"background": 0}, ".nii.gz", overwrite=True)
        w2.add_case("c1", np.zeros((1, 4, 4, 4), np.float32), Geometry((1, 1, 1)))
    w2.abort()
    assert (out / "dataset.json").exists()


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "dataset.json is missing"),
        ("{not json", "malformed JSON"),
        (json.dumps({"channel_names": {"0": "CT"}, "labels": {"background": 0}}), "missing required key(s) numTraining, file_ending"),
        (json.dumps({"channel_names": {"0": "CT"}, "labels": {"bone": 1}, "numTraining": 0, "file_ending": ".nii.gz"}), '"background": 0'),
    ],
)
def test_dataset_json_errors_name_the_file(tmp_path, content, message):
    (tmp_path / "d").mkdir()
    if content is not None:
        (tmp_path / "d" / "dataset.json").write_text(content)
    with pytest.raises(DatasetError) as info:
        RawDataset(tmp_path / "d")
    assert "dataset.json" in str(info.value) and message in str(info.value)
