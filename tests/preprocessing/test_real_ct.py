"""The real TotalSegmentator pelvis CT (../shared/data): fingerprint, plan and a resampling round trip
of the hip-bone label (left + right os coxae) to other spacings and back."""

import copy

import numpy as np
import pytest

from medseg_bench.io import RawDataset, RawDatasetWriter, read_image
from medseg_bench.planning import plan_dataset
from medseg_bench.preprocessing import export_to_original, preprocess_case, preprocess_label


@pytest.fixture
def pelvis_raw(shared_data, tmp_path):
    src = shared_data / "totalseg_pelvis_ct"
    image, geo = read_image(src / "example_ct.nii.gz")
    hip = np.zeros(image.shape, np.uint8)
    for name in ("hip_left", "hip_right"):
        mask, _ = read_image(src / "masks" / f"{name}.nii.gz")
        hip[mask > 0] = 1
    w = RawDatasetWriter(tmp_path / "pelvis", {"0": "CT"}, {"background": 0, "hip": 1}, ".nii.gz")
    w.add_case("pelvis_000", image[None], geo, label=hip)
    return w.finalize().path


def test_real_ct_plan_and_round_trip(pelvis_raw, tmp_path):
    plans = plan_dataset(pelvis_raw, tmp_path / "pp", num_workers=1)
    cfg = plans["configurations"]["3d_fullres"]
    assert cfg["normalization"]["scheme"] == "ct"
    lo, hi = cfg["normalization"]["channels"][0]["clip"]
    assert -500 < lo < -50 and 400 < hi  # body: fat to cortical bone, no air
    case = RawDataset(pelvis_raw).raw_cases("train")[0]
    image, geo = case.load_image()
    label, _ = case.load_label()
    for spacing in ([1.5, 1.5, 1.5], [4.5, 2.0, 2.0]):
        p = copy.deepcopy(plans)
        p["configurations"]["3d_fullres"]["spacing"] = spacing
        data, props = preprocess_case(image, geo, p, "3d_fullres")
        assert np.isfinite(data).all()
        back = export_to_original(preprocess_label(label, geo, p, "3d_fullres", props), props, p, "3d_fullres")
        dice = 2 * ((back == 1) & (label == 1)).sum() / ((back == 1).sum() + (label == 1).sum())
        assert back.shape == label.shape and dice >= 0.95, (spacing, dice)
