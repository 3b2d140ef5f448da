"""nuclei_he simulator: valid RGB instance dataset, deterministic per case, H&E colours, touching
nuclei, not threshold-solvable."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medseg_bench.cli import main
from medseg_bench.datasets import generate
from medseg_bench.datasets import nuclei_he as he
from medseg_bench.datasets._oracle import best_threshold_dice
from medseg_bench.io import RawDataset, check_dataset


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return generate("nuclei_he", tmp_path_factory.mktemp("he") / "nuclei_he_tiny", size="tiny", seed=0)


def test_tiny_dataset_is_valid(tiny):
    assert check_dataset(tiny) == []  # includes: instance foreground == semantic foreground
    ds = RawDataset(tiny)
    n, px_um, n_train, n_test, n_unl = he.SIZES["tiny"]
    assert (len(ds.train_cases()), len(ds.test_cases()), len(ds.unlabelled_cases())) == (n_train, n_test, n_unl)
    assert ds.rgb and ds.instance_labels and ds.has_test_labels
    assert ds.labels == {"background": 0, "nucleus": 1}
    assert ds.spacing == pytest.approx((px_um / 1000.0,) * 2)
    meta = json.loads((tiny / "dataset.json").read_text())
    assert meta["generator"]["name"] == "nuclei_he" and meta["generator"]["version"] == he.VERSION
    assert "later" in meta["overlap_rule"]
    for case in ds.train_cases() + ds.test_cases():
        image, _ = case.load_image()
        label, _ = case.load_label()
        inst, _ = case.load_instances()
        assert image.shape == (3, n, n) and image.dtype == np.uint8
        np.testing.assert_array_equal(inst > 0, label > 0)
        ids = np.unique(inst[inst > 0])
        np.testing.assert_array_equal(ids, np.arange(1, ids.size + 1))  # numbered 1..N
        assert case.instance_file.parent.name in ("instancesTr", "instancesTs")


def test_files_hold_the_simulated_case(tiny):
    case = next(c for c in RawDataset(tiny).train_cases() if c.case_id == "he_002")
    n, px_um = he.SIZES["tiny"][:2]
    ref_img, ref_inst, _ = he.simulate_he_tile(np.random.default_rng([0, 0, 2]), n, px_um)
    np.testing.assert_array_equal(case.load_image()[0], ref_img)
    np.testing.assert_array_equal(case.load_instances()[0], ref_inst)


def test_deterministic_and_independent_of_case_count(tmp_path, monkeypatch):
    a = generate("nuclei_he", tmp_path / "a", size="tiny", seed=5)
    monkeypatch.setitem(he.SIZES, "tiny", (96, 0.5, 5, 1, 0))
    b = generate("nuclei_he", tmp_path / "b", size="tiny", seed=5)
    for name in ("imagesTr/he_003_0000.png", "instancesTr/he_003.png", "imagesTs/hets_000_0000.png"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def _touching_pairs(inst: np.ndarray) -> int:
    """Number of 4-neighbour pixel pairs that belong to two different nuclei."""
    pairs = 0
    for a, b in ((inst[1:], inst[:-1]), (inst[:, 1:], inst[:, :-1])):
        pairs += int(np.count_nonzero((a > 0) & (b > 0) & (a != b)))
    return pairs


def test_he_colours_and_touching_nuclei():
    tiles = [he.simulate_he_tile(np.random.default_rng([1, 0, i]), 128, 0.5) for i in range(4)]
    touching = 0
    for image, inst, params in tiles:
        img = image.astype(float)
        nuc, bg = inst > 0, inst == 0
        assert 5 < params["nuclei"] == inst.max()
        # haematoxylin absorbs red much more than eosin does: nuclei are bluer than their surroundings
        assert img[0][nuc].mean() < img[0][bg].mean() - 20
        assert (img[2] - img[0])[nuc].mean() > (img[2] - img[0])[bg].mean()
        touching += _touching_pairs(inst)
    assert touching > 0
    hs = {tuple(p["h_vector"]) for _, _, p in tiles}
    assert len(hs) == len(tiles)  # stain vectors vary between images


@pytest.mark.slow
def test_best_global_threshold_fails_at_small_size():
    n, px_um, n_train, n_test, _ = he.SIZES["small"]
    assert n_train >= 20 and n_test >= 10 and n >= 256
    scores = []
    for code, count in ((0, n_train), (1, n_test)):
        for i in range(count):
            image, inst, _ = he.simulate_he_tile(np.random.default_rng([0, code, i]), n, px_um)
            scores.append(best_threshold_dice(image, inst > 0))  # RGB -> grey as the channel mean
    mean = float(np.mean(scores))
    print(f"nuclei_he small: best global threshold Dice = {mean:.3f} over {len(scores)} cases")
    assert mean < 0.85
    assert mean > 0.55  # near MoNuSeg's 0.75, not hopeless


def test_cli_generate_with_preview(tmp_path):
    rc = main(["datasets", "generate", "nuclei_he", "--size", "tiny", "--workdir", str(tmp_path), "--preview"])
    assert rc == 0
    assert check_dataset(tmp_path / "raw" / "nuclei_he_tiny") == []
    assert (tmp_path / "raw" / "nuclei_he_tiny_preview.png").stat().st_size > 1000
