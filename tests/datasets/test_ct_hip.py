"""ct_hip simulator: valid raw dataset, deterministic, geometry round trip, not solvable by a threshold."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medseg_bench.cli import main
from medseg_bench.datasets import generate
from medseg_bench.datasets._oracle import best_threshold_dice
from medseg_bench.datasets.ct_hip import SIZE_SPECS, VERSION, simulate_case
from medseg_bench.io import RawDataset, check_dataset


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return generate("ct_hip", tmp_path_factory.mktemp("ct") / "ct_hip_tiny", size="tiny", seed=0)


def test_tiny_dataset_is_valid(tiny):
    assert check_dataset(tiny) == []
    ds = RawDataset(tiny)
    spec = SIZE_SPECS["tiny"]
    assert len(ds.raw_cases("train")) == spec["n_train"]
    assert len(ds.test_cases()) == spec["n_test"] and ds.has_test_labels
    assert len(ds.unlabelled_cases()) == spec["n_unlabelled"]
    assert ds.channel_names == {"0": "CT"} and ds.labels == {"background": 0, "hip_bone": 1}
    meta = json.loads((tiny / "dataset.json").read_text())
    gen = meta["generator"]
    assert (gen["name"], gen["version"], gen["size"], gen["seed"]) == ("ct_hip", VERSION, "tiny", 0)
    assert "tissue_hu" in gen["parameters"] and meta["licence"] and meta["reference"]
    for case in ds.train_cases() + ds.test_cases():
        image, _ = case.load_image()
        label, _ = case.load_label()
        assert image.dtype == np.int16 and label.dtype == np.uint8
        assert label.any() and set(np.unique(label)) <= {0, 1}
        assert -1024 <= image.min() and image.max() <= 3071


def test_files_hold_the_simulated_case_and_geometry(tiny):
    ds = RawDataset(tiny)
    case = next(c for c in ds.test_cases() if c.case_id == "ct_hip_ts001")
    image, geo = case.load_image()
    label, lgeo = case.load_label()
    ref_img, ref_lab, ref_geo, _ = simulate_case("tiny", 0, "test", 1)
    np.testing.assert_array_equal(image[0], ref_img)
    np.testing.assert_array_equal(label, ref_lab)
    assert geo.differences(ref_geo) == [] and lgeo.differences(ref_geo) == []
    assert geo.spacing[1] == geo.spacing[2]


def test_deterministic_and_seed_dependent():
    a = simulate_case("tiny", 3, "train", 2)
    b = simulate_case("tiny", 3, "train", 2)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2] == b[2]
    c = simulate_case("tiny", 4, "train", 2)
    assert a[0].shape != c[0].shape or not np.array_equal(a[0], c[0])


def test_spacing_varies_with_thick_slices():
    ratios = [g.spacing[0] / g.spacing[1] for g in (simulate_case("tiny", 0, "train", i)[2] for i in range(6))]
    assert max(ratios) > 3.0 and min(ratios) < 2.0
    assert len({round(r, 3) for r in ratios}) == len(ratios)


@pytest.mark.slow
def test_best_global_threshold_fails_at_small_size():
    spec = SIZE_SPECS["small"]
    scores = [best_threshold_dice(*simulate_case("small", 0, subset, i)[:2])
              for subset, n in (("train", spec["n_train"]), ("test", spec["n_test"])) for i in range(n)]
    mean = float(np.mean(scores))
    print(f"ct_hip small: best global threshold Dice = {mean:.3f} over {len(scores)} cases")
    assert len(scores) >= 30
    assert mean < 0.85
    assert mean > 0.3  # the hip bone is still bone: far from random


def test_cli_generate_with_preview(tmp_path):
    rc = main(["datasets", "generate", "ct_hip", "--size", "tiny", "--seed", "1", "--workdir", str(tmp_path), "--preview"])
    assert rc == 0
    out = tmp_path / "raw" / "ct_hip_tiny"
    assert check_dataset(out) == []
    png = tmp_path / "raw" / "ct_hip_tiny_preview.png"
    assert png.is_file() and png.stat().st_size > 1000


def test_cohort_profiles_spread_as_documented():
    """Generator 2.0.0 draws a patient and scan per case (datasets/ct_hip.md): the shares of the card."""
    from medseg_bench.datasets._ct_cohort import sample_profile

    profs = [sample_profile(np.random.default_rng([0, 0, i, 3])) for i in range(2000)]
    share = lambda f: float(np.mean([bool(f(p)) for p in profs]))  # noqa: E731
    assert 0.2 < share(lambda p: p["hard"]) < 0.4
    assert 0.1 < share(lambda p: p["trabecular_hu"] < 110) < 0.3
    assert 0.02 < share(lambda p: p["tha"]) < 0.09 and 0.04 < share(lambda p: p["metastases"]) < 0.13
    assert {p["protocol"] for p in profs} == {"pelvis", "abdomen_pelvis", "hip_limited"}
    assert 3.5 < float(np.std([p["pose_deg"]["pitch"] for p in profs])) < 6.0
    # deterministic per stream
    assert sample_profile(np.random.default_rng([0, 0, 5, 3])) == sample_profile(np.random.default_rng([0, 0, 5, 3]))


def test_arthroplasty_metal_is_bright_and_not_hip_bone():
    # train case 16 of seed 0 has a left hip arthroplasty (its profile does not depend on the size)
    image, label, _, info = simulate_case("small", 0, "train", 16)
    assert info["cohort"]["hip_arthroplasty"] == ["left"]
    from scipy.ndimage import binary_erosion

    metal = image >= 3000
    assert metal.sum() > 50
    core = binary_erosion(metal)  # away from partial-volume voxels at the bone-metal border
    assert core.any() and label[core].mean() < 0.1  # the cup, head and stem are not hip bone
    # streaks: the slices with metal hold much darker soft-tissue voxels than those without
    rows = metal.reshape(len(metal), -1).any(axis=1)
    body = (image > -500) & ~metal
    assert np.percentile(image[rows][body[rows]], 1) < np.percentile(image[~rows][body[~rows]], 1) - 100
