"""The threshold oracle against a brute-force search over every threshold and both polarities."""

from __future__ import annotations

import numpy as np
import pytest

from medseg_bench.datasets._oracle import best_threshold, best_threshold_dice


def _brute(img: np.ndarray, lab: np.ndarray) -> float:
    fg = lab > 0
    p = int(fg.sum())
    best = 1.0 if p == 0 else 0.0
    for t in np.unique(img):
        for pred in (img >= t, img <= t):
            best = max(best, 2 * int((pred & fg).sum()) / (int(pred.sum()) + p))
    return best


@pytest.mark.parametrize("seed", range(8))
def test_matches_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    img = np.round(rng.normal(size=(9, 11, 7)) * 2)  # many ties
    lab = (rng.random(img.shape) < 0.2 + 0.5 * (img > 1)).astype(np.uint8)
    assert best_threshold_dice(img, lab) == pytest.approx(_brute(img, lab), abs=1e-12)


def test_polarity_and_threshold():
    img = np.arange(20.0).reshape(4, 5)
    bright = best_threshold(img, (img >= 12).astype(np.uint8))
    assert bright.dice == 1.0 and bright.polarity == "bright" and bright.threshold == 12.0
    dark = best_threshold(img, (img <= 3).astype(np.uint8))
    assert dark.dice == 1.0 and dark.polarity == "dark" and dark.threshold == 3.0
    mixed = np.where(np.abs(img - 10) <= 2, 1, 0)  # a middle band: no single threshold isolates it
    assert best_threshold_dice(img, mixed) < 0.8


def test_edge_cases_and_rgb():
    assert best_threshold_dice(np.zeros((4, 4)), np.zeros((4, 4))) == 1.0  # empty label, empty prediction
    assert best_threshold_dice(np.zeros((4, 4)), np.ones((4, 4))) == 1.0   # constant image: predict all
    lab = np.zeros((4, 4), np.uint8)
    lab[:2] = 1
    assert best_threshold_dice(np.zeros((4, 4)), lab) == pytest.approx(2 * 8 / (16 + 8))
    rgb = np.zeros((3, 4, 4))
    rgb[0, :2] = 90  # only the red channel differs: the grey mean still separates it
    assert best_threshold_dice(rgb, lab) == 1.0
    with pytest.raises(ValueError, match="shape"):
        best_threshold_dice(np.zeros((4, 5)), lab)
    with pytest.raises(ValueError, match="NaN"):
        best_threshold_dice(np.full((4, 4), np.nan), lab)
    three = np.zeros((4, 4), np.uint8)
    three[:2], three[3] = 1, 2
    assert best_threshold_dice(np.where(three == 2, 5.0, 0.0), three, foreground=2) == 1.0
