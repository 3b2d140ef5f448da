"""Planner rules with hand-computed expectations (nnU-Net v2 defaults)."""

import numpy as np
import pytest

from medseg_bench.planning.calibration import StepTimeModel
from medseg_bench.planning.planner import normalization_for, target_spacing, transpose_for
from medseg_bench.planning.presets import PRESETS, augmentation_params, derive_configuration

FREE = StepTimeModel({"2": {"t0": 0.0, "per_gmac": 0.0, "per_mact": 0.0}, "3": {"t0": 0.0, "per_gmac": 0.0, "per_mact": 0.0}}, "test")


def test_target_spacing_isotropic_is_the_median():
    assert target_spacing([[1, 1, 1], [1.2, 1.2, 1.2], [0.8, 0.8, 0.8]], [[50, 50, 50]] * 3) == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("axis", [0, 2])
def test_target_spacing_anisotropic_takes_10th_percentile(axis):
    z = [4.0, 5.0, 5.0, 6.0, 6.0]
    spacings = np.ones((5, 3))
    spacings[:, axis] = z
    shapes = np.full((5, 3), 200)
    shapes[:, axis] = 20  # 20 * 3 < 200: anisotropic in voxels too
    expected = [1.0, 1.0, 1.0]
    expected[axis] = 4.4  # np.percentile([4, 5, 5, 6, 6], 10) = 4 + 0.4 * (5 - 4)
    assert target_spacing(spacings, shapes) == pytest.approx(expected)


def test_target_spacing_keeps_median_when_voxels_are_not_few():
    spacings = [[4, 1, 1], [5, 1, 1], [5, 1, 1], [6, 1, 1], [6, 1, 1]]
    assert target_spacing(spacings, [[100, 200, 200]] * 5) == [5.0, 1.0, 1.0]  # 100 * 3 > 200


def test_target_spacing_never_finer_than_the_other_axes():
    spacings = [[0.5, 1, 1], [0.5, 1, 1], [5, 1, 1], [5, 1, 1], [5, 1, 1]]
    assert target_spacing(spacings, [[20, 200, 200]] * 5)[0] == pytest.approx(1.0, abs=1e-4)


def test_transpose_puts_the_coarsest_axis_first():
    assert transpose_for([0.8, 0.8, 4.0]) == ([2, 0, 1], [1, 2, 0])
    assert transpose_for([0.8, 4.0, 0.8]) == ([1, 0, 2], [1, 0, 2])
    assert transpose_for([1.0, 1.0, 1.0]) == ([0, 1, 2], [0, 1, 2])
    assert transpose_for([0.5, 2.0]) == ([0, 1], [0, 1])  # 2D: never transposed


def _view(schemes, relative_size=1.0, mx=255.0):
    stats = {"mean": 40.0, "std": 300.0, "percentile_00_5": -150.0, "percentile_99_5": 1200.0, "max": mx}
    return {"channel_schemes": schemes, "median_relative_size_after_cropping": relative_size,
            "intensity_statistics_per_channel": {str(i): stats for i in range(len(schemes))}}


def test_normalization_by_modality():
    ct = normalization_for(_view(["ct"]))
    assert ct["scheme"] == "ct" and ct["channels"][0]["clip"] == [-150.0, 1200.0]
    assert ct["channels"][0]["mean"] == 40.0 and ct["channels"][0]["std"] == 300.0
    assert normalization_for(_view(["zscore"]))["channels"][0] == {"scheme": "zscore", "use_mask": False}
    assert normalization_for(_view(["zscore"], relative_size=0.5))["channels"][0]["use_mask"] is True  # < 3/4
    rgb = normalization_for(_view(["rgb01"] * 3))
    assert rgb["scheme"] == "rgb01" and [c["scale"] for c in rgb["channels"]] == [255.0] * 3
    assert normalization_for(_view(["rgb01"] * 3, mx=4000))["channels"][0]["scale"] == 65535.0
    assert normalization_for(_view(["spect"]))["channels"][0] == {"scheme": "spect", "percentile": 99.5}
    assert normalization_for(_view(["ct", "zscore"]))["scheme"] == "mixed"


def test_batch_floor_wins_over_the_coverage_cap():
    quick = PRESETS["quick"]
    # 10 images of 128^2: 5 % of 163840 voxels is half a 128^2 patch -> cap 0, floor 2 wins
    c = derive_configuration(quick, (1.0, 1.0), (128, 128), 1, 2, 128 * 128 * 10, FREE)
    assert c["patch_size"] == [128, 128] and c["batch_size"] == 2


def test_batch_coverage_cap():
    quick = PRESETS["quick"]
    # 100 images: 5 % = 5 patches -> the preferred 8 is capped to 5
    assert derive_configuration(quick, (1.0, 1.0), (128, 128), 1, 2, 128 * 128 * 100, FREE)["batch_size"] == 5
    # plenty of data: the preset's preferred 2D batch
    assert derive_configuration(quick, (1.0, 1.0), (128, 128), 1, 2, 128 * 128 * 10_000, FREE)["batch_size"] == 8


def test_cpu_preset_shrinks_until_the_step_fits():
    model = StepTimeModel({"2": {"t0": 0.01, "per_gmac": 0.05, "per_mact": 0.005},
                           "3": {"t0": 0.01, "per_gmac": 0.01, "per_mact": 0.016}}, "test")
    c = derive_configuration(PRESETS["quick"], (1.0, 1.0), (512, 384), 1, 2, 1e12, model)
    assert c["step_time_estimate_s"] <= 0.5 and c["batch_size"] == 8
    assert c["patch_size"][0] < 512 and c["patch_size"][1] < 384
    # the axis with the larger patch / median ratio shrinks first: the aspect ratio is kept roughly
    assert abs(c["patch_size"][0] / c["patch_size"][1] - 512 / 384) < 0.5
    p = c["patch_size"]
    strides = np.prod(np.array(c["network"]["strides"]), axis=0)
    assert all(s % d == 0 for s, d in zip(p, strides))  # divisible by the total stride


def test_paper_preset_fits_the_memory_target():
    c = derive_configuration(PRESETS["paper"], (1.0, 1.0, 1.0), (300, 300, 300), 1, 2, 1e12, FREE, memory_gb=4.0)
    assert c["memory_estimate_gb"] <= 4.0 and c["batch_size"] >= 2
    big = derive_configuration(PRESETS["paper"], (1.0, 1.0, 1.0), (300, 300, 300), 1, 2, 1e12, FREE, memory_gb=16.0)
    assert np.prod(big["patch_size"]) * big["batch_size"] > np.prod(c["patch_size"]) * c["batch_size"]
    assert c["network"]["filters"][0] == 32 and max(c["network"]["filters"]) <= 320


def test_augmentation_2d_3d_and_anisotropy():
    a2 = augmentation_params((128, 128), (1.0, 1.0))
    assert a2["spatial"]["rotation"]["x"] == pytest.approx([-np.pi, np.pi]) and a2["mirror_axes"] == [0, 1]
    assert not a2["do_dummy_2d"]
    assert augmentation_params((64, 160), (1.0, 1.0))["spatial"]["rotation"]["x"] == pytest.approx([-np.pi / 12, np.pi / 12])
    iso = augmentation_params((64, 64, 64), (1.0, 1.0, 1.0))
    assert not iso["do_dummy_2d"] and iso["spatial"]["rotation"]["y"] == pytest.approx([-np.pi / 6, np.pi / 6])
    assert min(iso["initial_patch_size"]) > 64  # room to rotate and scale
    aniso = augmentation_params((16, 128, 128), (4.0, 0.8, 0.8))
    assert aniso["do_dummy_2d"] and aniso["spatial"]["rotation"]["y"] == [0.0, 0.0]  # in-plane rotation only
    assert aniso["initial_patch_size"][0] == 16 and aniso["low_resolution"]["ignore_axes"] == [0]


def test_unreachable_target_stops_at_the_patch_floor_and_says_so():
    c = derive_configuration(PRESETS["paper"], (1.0, 1.0, 1.0), (300, 300, 300), 1, 2, 1e12, FREE, memory_gb=0.5)
    assert min(c["patch_size"]) >= 8 and c["batch_size"] == 2
    assert "does not meet" in c["rationale"]


def test_cpu_iterations_fill_the_time_budget_for_the_threads_it_is_meant_for():
    """quick: 150 s of a 2-thread ``train`` (1.4x the 1-thread step speed); demo: 12 s of 1 thread."""
    step = StepTimeModel({"2": {"t0": 0.3, "per_gmac": 0.0, "per_mact": 0.0},
                          "3": {"t0": 0.6, "per_gmac": 0.0, "per_mact": 0.0}}, "test")
    q2 = derive_configuration(PRESETS["quick"], (1.0, 1.0), (128, 128), 1, 2, 1e12, step)
    assert q2["num_iterations"] == 700 and q2["num_epochs"] == 14  # round(150 * 1.4 / 0.3), 700 / 50
    assert q2["time_budget_s"] == 150.0 and q2["time_budget_threads"] == 2
    q3 = derive_configuration(PRESETS["quick"], (1.0, 1.0, 1.0), (64, 64, 64), 1, 2, 1e12, step)
    assert q3["num_iterations"] == 700 and q3["time_budget_s"] == 300.0  # round(300 * 1.4 / 0.6)
    fast = StepTimeModel({"2": {"t0": 0.02, "per_gmac": 0.0, "per_mact": 0.0},
                          "3": {"t0": 0.02, "per_gmac": 0.0, "per_mact": 0.0}}, "test")
    d = derive_configuration(PRESETS["demo"], (1.0, 1.0), (128, 128), 1, 2, 1e12, fast)
    assert d["num_iterations"] == 400 and d["time_budget_threads"] == 1  # round(12 / 0.02) = 600, capped
