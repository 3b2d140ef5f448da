"""Fingerprint: image-only intensity statistics, bounded deterministic sampling, content hash."""

import shutil

import numpy as np
import pytest

from medseg_bench.io import Geometry, ImageReadError, RawDatasetWriter
from medseg_bench.planning.fingerprint import CT_BODY_THRESHOLD_HU, channel_scheme, compute_fingerprint


@pytest.mark.parametrize("name,rgb,scheme", [
    ("CT", False, "ct"), ("ct_hu", False, "ct"), ("Computed Tomography", False, "ct"), ("CTA", False, "zscore"),
    ("SPECT", False, "spect"), ("bone scintigraphy", False, "spect"), ("NM", False, "spect"),
    ("MRI", False, "zscore"), ("FAF", False, "zscore"), ("noNorm", False, "none"), ("R", True, "rgb01"),
])
def test_channel_scheme(name, rgb, scheme):
    assert channel_scheme(name, rgb) == scheme


def _ct_dataset(path, n=3, seed=0):
    rng = np.random.default_rng(seed)
    w = RawDatasetWriter(path, {"0": "CT"}, {"background": 0, "bone": 1}, ".nii.gz")
    for i in range(n):
        img = np.full((10, 30, 30), -1000, np.int16)  # air
        img[2:8, 5:25, 5:25] = rng.normal(40, 10, (6, 20, 20)).astype(np.int16)  # soft tissue
        lab = np.zeros(img.shape, np.uint8)
        lab[4:6, 10:14, 10:14] = 1
        lab[4:6, 18:20, 18:20] = 1  # two components
        img[lab == 1] = 1000
        w.add_case(f"ct{i}", img[None], Geometry((2.0, 1.0, 1.0)), label=lab)
    return w.finalize().path


def test_ct_statistics_come_from_body_voxels(tmp_path):
    fp = compute_fingerprint(_ct_dataset(tmp_path / "ct"), num_workers=1)
    st = fp["intensity_statistics_per_channel"]["0"]
    assert st["region"] == "body" and st["min"] > CT_BODY_THRESHOLD_HU
    assert 0 < st["median"] < 100 and st["max"] == 1000  # tissue median, bone max; air never counted
    assert fp["cases"][0]["shape_after_crop"] == [10, 30, 30]  # CT air is not zero: no cropping
    comps = fp["label_statistics"]["classes"]["bone"]
    assert comps["components_per_image_mean"] == 2 and comps["foreground_fraction_mean"] == pytest.approx(40 / 9000)


def test_sampling_is_bounded_and_independent_of_workers(tmp_path):
    raw = _ct_dataset(tmp_path / "ct", n=4)
    a = compute_fingerprint(raw, num_workers=1, max_voxels=4000)
    b = compute_fingerprint(raw, num_workers=2, max_voxels=4000)
    assert a["intensity_statistics_per_channel"] == b["intensity_statistics_per_channel"]
    assert a["intensity_statistics_per_channel"]["0"]["sampled_voxels"] <= 4000
    assert a["cases"] == b["cases"]


def test_nonzero_crop_and_relative_size(tmp_path):
    w = RawDatasetWriter(tmp_path / "mr", {"0": "MR"}, {"background": 0, "x": 1}, ".nii.gz")
    img = np.zeros((20, 20, 20), np.float32)
    img[5:15, 2:12, 0:20] = 7.0
    w.add_case("m0", img[None], Geometry((1.0, 1.0, 1.0)), label=(img > 0).astype(np.uint8))
    fp = compute_fingerprint(w.finalize().path, num_workers=1)
    case = fp["cases"][0]
    assert case["crop_bbox"] == [[5, 15], [2, 12], [0, 20]] and case["shape_after_crop"] == [10, 10, 20]
    assert case["relative_size_after_crop"] == pytest.approx(0.25)
    assert fp["intensity_statistics_per_channel"]["0"]["mean"] == 7.0  # only the non-zero region


def test_dataset_hash_follows_content_not_location(tmp_path):
    raw = _ct_dataset(tmp_path / "a")
    copy = tmp_path / "b"
    shutil.copytree(raw, copy)
    h = compute_fingerprint(raw, num_workers=1)["dataset_hash"]
    assert compute_fingerprint(copy, num_workers=1)["dataset_hash"] == h
    other = _ct_dataset(tmp_path / "c", seed=1)
    assert compute_fingerprint(other, num_workers=1)["dataset_hash"] != h


def test_corrupt_image_is_named(tmp_path):
    raw = _ct_dataset(tmp_path / "bad")
    target = raw / "imagesTr" / "ct1_0000.nii.gz"
    target.write_bytes(target.read_bytes()[:200])
    with pytest.raises(ImageReadError, match="ct1_0000.nii.gz"):
        compute_fingerprint(raw, num_workers=1)
