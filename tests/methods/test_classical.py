"""Classical baselines: polarity rules, the three segmenters, and one cell through the real pipeline."""

import json

import numpy as np
import pytest

from medseg_bench.methods import get_method
from medseg_bench.methods._chan_vese import chan_vese_phases, convex_chan_vese
from medseg_bench.methods._polarity import choose_phase, polarity_rule
from medseg_bench.methods.classical import kmeans_labels, otsu_phases, phase_mask


def _plans(modality, scheme, rgb=False):
    return {"modality": modality, "channel_names": {"0": modality}, "rgb": rgb,
            "configurations": {"2d": {"normalization": {"channels": [{"scheme": scheme}]}}}}


@pytest.mark.parametrize("modality, scheme, rgb, rule", [
    ("CT", "ct", False, "bright"),
    ("SPECT", "spect", False, "bright"),
    ("FAF", "zscore", False, "dark"),
    ("R", "rgb01", True, "dark"),
    ("T2", "zscore", False, "smaller"),
])
def test_polarity_rule_from_modality(modality, scheme, rgb, rule):
    assert polarity_rule(_plans(modality, scheme, rgb)) == rule
    assert polarity_rule(_plans(modality, scheme, rgb), override="bright") == "bright"
    with pytest.raises(ValueError, match="polarity"):
        polarity_rule(_plans(modality, scheme), override="brightest")


def test_choose_phase():
    means, sizes = [0.0, 5.0, 2.0], [100, 10, 0]
    assert choose_phase(means, sizes, "bright") == 1
    assert choose_phase(means, sizes, "dark") == 0
    assert choose_phase(means, sizes, "smaller") == 1  # the empty phase is never chosen


def _disc(shape=(64, 64), r=12, contrast=2.0, noise=0.3, seed=0, dark=False):
    rng = np.random.default_rng(seed)
    grids = np.indices(shape)
    gt = sum((g - s / 2) ** 2 for g, s in zip(grids, shape)) < r * r
    img = (np.where(gt, -contrast if dark else contrast, 0.0) + rng.normal(0, noise, shape)).astype(np.float32)
    return img[None], gt


def _dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


@pytest.mark.parametrize("dark", [False, True])
def test_otsu_and_kmeans_follow_the_rule(dark):
    img, gt = _disc(dark=dark)
    rule = "dark" if dark else "bright"
    assert _dice(phase_mask(otsu_phases(img), img, rule), gt) > 0.9
    assert _dice(phase_mask(kmeans_labels(img, k=2), img, rule), gt) > 0.9
    wrong = "bright" if dark else "dark"
    assert _dice(phase_mask(otsu_phases(img), img, wrong), gt) < 0.1


def test_kmeans_three_levels_picks_the_extreme_and_rgb():
    rng = np.random.default_rng(1)
    img = np.zeros((1, 48, 48), np.float32)
    img[0, :, 16:32] = 1.0
    img[0, :, 32:] = 2.0
    img += rng.normal(0, 0.1, img.shape).astype(np.float32)
    assert (phase_mask(kmeans_labels(img, k=3), img, "bright") == (np.arange(48) >= 32)[None, :]).all()
    rgb = np.concatenate([img, img * 0.5, img * 0.2])  # colour vectors
    assert (phase_mask(kmeans_labels(rgb, k=3), rgb, "dark") == (np.arange(48) < 16)[None, :]).all()


def test_chan_vese_regularises_noise_better_than_a_threshold():
    img, gt = _disc(shape=(64, 64), r=14, contrast=1.0, noise=0.8, seed=3)
    otsu = phase_mask(otsu_phases(img), img, "bright")
    cv = phase_mask(convex_chan_vese(img, mu=2.0).astype(int), img, "bright")
    assert _dice(cv, gt) > 0.9 > _dice(otsu, gt)
    from scipy import ndimage

    assert ndimage.label(cv)[1] < ndimage.label(otsu)[1]


def test_chan_vese_3d_and_rgb_and_skimage_solvers():
    img, gt = _disc(shape=(16, 32, 32), r=8, contrast=2.0, noise=0.4)
    assert _dice(phase_mask(convex_chan_vese(img).astype(int), img, "bright"), gt) > 0.9
    rgb = np.concatenate([img, 0.5 * img, -img])
    assert _dice(phase_mask(convex_chan_vese(rgb).astype(int), rgb, "smaller"), gt) > 0.9
    img2, gt2 = _disc(shape=(48, 48), r=10, contrast=2.0, noise=0.3)
    for solver in ("morphological", "skimage"):
        inside = chan_vese_phases(img2, solver=solver, iterations=60).astype(int)
        assert _dice(phase_mask(inside, img2, "bright"), gt2) > 0.85, solver
    with pytest.raises(ValueError, match="solver"):
        chan_vese_phases(img2, solver="levelset")


def test_constant_image_gives_no_crash():
    flat = np.ones((1, 20, 20), np.float32)
    for fn in (otsu_phases, lambda x: kmeans_labels(x, 3), lambda x: convex_chan_vese(x).astype(int)):
        phases = fn(flat)
        assert phases.shape == (20, 20)


def test_classical_refuses_multiclass(tmp_path):
    from medseg_bench.training.contract import synthetic_context, synthetic_preprocessed

    cls = get_method("otsu")
    ids = synthetic_preprocessed(tmp_path / "pre", n_cases=5)
    ctx = synthetic_context(cls, tmp_path / "pre", ids, tmp_path / "run")
    ctx.plans["labels"] = {"background": 0, "a": 1, "b": 2}
    with pytest.raises(ValueError, match="2 foreground classes"):
        cls().setup(ctx)


@pytest.mark.parametrize("method", ["otsu", "kmeans", "chan_vese"])
def test_classical_cell_end_to_end(method, tmp_path):
    """A real cell: plan, preprocess, predict the test set via export, evaluate, record; the
    declared rule is recorded and the final checkpoint lets a finished run be reloaded."""
    from medseg_testdata import make_tiny_3d

    from medseg_bench.training import train_cell
    from medseg_bench.training.cell import ensure_prepared, load_trained

    raw = make_tiny_3d(tmp_path / "raw" / "tiny3d")
    ensure_prepared(tmp_path, raw, num_workers=1)
    rec = train_cell(tmp_path, raw, method, 0, seed=0, preset="demo", progress=False, num_threads=1)
    assert rec["status"] == "done"
    assert rec["method_info"]["class_rule"].startswith("label-free")
    dice = rec["metrics"]["foreground_mean"]["dice"]
    run = next((tmp_path / "runs").rglob(f"{method}/budget_0/seed_0"))
    summary = json.loads((run / "metrics.json").read_text())
    assert summary == rec["metrics"]
    assert (run / "pred").is_dir() and len(list((run / "pred").glob("*.nii.gz"))) == 2
    assert dice > 0.8  # a bright ball on CT noise: every baseline finds it
    method_obj, _, _ = load_trained(run)
    assert method_obj.rule == "bright"
    with pytest.raises(Exception, match="label-free|budget 0"):
        train_cell(tmp_path, raw, method, 2, seed=0, preset="demo", progress=False)


def test_robust_clip_keeps_outliers_from_claiming_a_cluster():
    from medseg_bench.methods.classical import robust_clip

    img, gt = _disc(shape=(64, 64), r=10, contrast=1.0, noise=0.05)
    img[0, 2:5, 2:5] = 40.0  # nine "hot lesion" voxels
    raw = phase_mask(kmeans_labels(img, k=3), img, "bright")
    assert raw.sum() == 9  # the outliers are a cluster of their own
    clipped = robust_clip(img)
    assert clipped.max() < 40
    assert _dice(phase_mask(kmeans_labels(clipped, k=3), clipped, "bright"), gt) > 0.9
