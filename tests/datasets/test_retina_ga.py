"""retina_ga simulator: valid raw dataset, deterministic per case, FAF appearance, not threshold-solvable."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medseg_bench.cli import main
from medseg_bench.datasets import generate
from medseg_bench.datasets import retina_ga as rg
from medseg_bench.datasets._oracle import best_threshold_dice
from medseg_bench.io import RawDataset, check_dataset


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return generate("retina_ga", tmp_path_factory.mktemp("ga") / "retina_ga_tiny", size="tiny", seed=0)


def test_tiny_dataset_is_valid(tiny):
    assert check_dataset(tiny) == []
    ds = RawDataset(tiny)
    n, n_train, n_test, n_unl = rg.SIZES["tiny"]
    assert (len(ds.train_cases()), len(ds.test_cases()), len(ds.unlabelled_cases())) == (n_train, n_test, n_unl)
    assert ds.has_test_labels and ds.channel_names == {"0": "FAF"} and ds.labels == {"background": 0, "GA": 1}
    assert ds.file_ending == ".png" and not ds.rgb
    assert ds.spacing == pytest.approx((rg.FIELD_WIDTH_MM / n,) * 2)
    meta = json.loads((tiny / "dataset.json").read_text())
    assert meta["generator"] == {"name": "retina_ga", "version": rg.VERSION, "size": "tiny", "seed": 0,
                                 "image_size_px": n, "field_width_mm": rg.FIELD_WIDTH_MM}
    assert set(meta["case_parameters"]) == {c.case_id for c in ds.train_cases() + ds.test_cases() + ds.unlabelled_cases()}
    assert not any(p.suffix == ".json" for p in (tiny / "imagesTr").iterdir())  # spacing from dataset.json only
    for case in ds.train_cases() + ds.test_cases():
        image, geo = case.load_image()
        label, _ = case.load_label()
        assert image.shape == (1, n, n) and image.dtype == np.uint8 and geo.spacing == ds.spacing
        assert set(np.unique(label)) == {0, 1}


def test_files_hold_the_simulated_case(tiny):
    case = next(c for c in RawDataset(tiny).test_cases() if c.case_id == "gats_001")
    ref_img, ref_lab, _ = rg.simulate_faf(np.random.default_rng([0, 1, 1]), rg.SIZES["tiny"][0])
    np.testing.assert_array_equal(case.load_image()[0][0], ref_img)
    np.testing.assert_array_equal(case.load_label()[0], ref_lab)


def test_deterministic_and_independent_of_case_count(tmp_path, monkeypatch):
    a = generate("retina_ga", tmp_path / "a", size="tiny", seed=3)
    monkeypatch.setitem(rg.SIZES, "tiny", (96, 5, 1, 0))
    b = generate("retina_ga", tmp_path / "b", size="tiny", seed=3)
    for name in ("imagesTr/ga_003_0000.png", "labelsTr/ga_003.png", "imagesTs/gats_000_0000.png"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    c = rg.simulate_faf(np.random.default_rng([4, 0, 3]), 96)[0]
    assert not np.array_equal(c, rg.simulate_faf(np.random.default_rng([3, 0, 3]), 96)[0])


def test_faf_appearance():
    """GA is dark, but the optic disc and vessels outside it are dark too (the confounders)."""
    n = 128
    for i in range(4):
        image, label, p = rg.simulate_faf(np.random.default_rng([0, 0, i]), n)
        img = image.astype(float)
        lesion, rest = img[label == 1], img[label == 0]
        assert lesion.mean() < 0.75 * np.median(rest)
        dy, dx = (int(round(v)) for v in p["disc_px"])
        if 0 <= dy < n and 0 <= dx < n and not label[dy, dx]:
            assert img[dy, dx] < np.median(rest)  # the disc is hypo-autofluorescent
        assert 0.003 < label.mean() < 0.4
        fy, fx = p["fovea_px"]
        ys, xs = np.nonzero(label)
        assert np.hypot(ys.mean() - fy, xs.mean() - fx) < 0.3 * n  # lesions cluster around the fovea


@pytest.mark.slow
def test_best_global_threshold_fails_at_small_size():
    n, n_train, n_test, _ = rg.SIZES["small"]
    assert n_train >= 20 and n_test >= 10 and n >= 256
    scores = [best_threshold_dice(*rg.simulate_faf(np.random.default_rng([0, code, i]), n)[:2])
              for code, count in ((0, n_train), (1, n_test)) for i in range(count)]
    mean = float(np.mean(scores))
    print(f"retina_ga small: best global threshold Dice = {mean:.3f} over {len(scores)} cases")
    assert mean < 0.85
    assert mean > 0.55  # near real difficulty, not hopeless


def test_cli_generate_with_preview(tmp_path):
    rc = main(["datasets", "generate", "retina_ga", "--size", "tiny", "--workdir", str(tmp_path), "--preview"])
    assert rc == 0
    assert check_dataset(tmp_path / "raw" / "retina_ga_tiny") == []
    png = tmp_path / "raw" / "retina_ga_tiny_preview.png"
    assert png.is_file() and png.stat().st_size > 1000
