"""Crop to non-zero and its inverse; normalisation schemes with hand-computed values."""

import numpy as np
import pytest

from medseg_bench.preprocessing.crop import bbox_of_mask, crop_to_nonzero, nonzero_mask, uncrop
from medseg_bench.preprocessing.normalise import normalise, normalise_channel


def test_crop_and_uncrop_round_trip():
    img = np.zeros((2, 10, 12), np.float32)
    img[0, 3:7, 2:9] = 5
    img[1, 8, 10] = 1  # the second channel widens the box
    cropped, bbox, mask = crop_to_nonzero(img)
    assert bbox == [[3, 9], [2, 11]] and cropped.shape == (2, 6, 9) and mask.shape == (6, 9)
    assert np.array_equal(uncrop(cropped, bbox, (10, 12), channel_first=True), img)


def test_nonzero_mask_fills_holes_and_empty_image_keeps_everything():
    img = np.ones((1, 7, 7), np.float32)
    img[0, 0, :] = img[0, -1, :] = img[0, :, 0] = img[0, :, -1] = 0
    img[0, 3, 3] = 0  # a dark hole inside the object is not "outside"
    assert nonzero_mask(img)[3, 3]
    assert bbox_of_mask(np.zeros((4, 5), bool)) == [[0, 4], [0, 5]]


def test_uncrop_probabilities_fill_background_one():
    probs = np.full((2, 2, 2), 0.5, np.float32)
    out = uncrop(probs, [[1, 3], [0, 2]], (4, 2), fill=[1.0, 0.0], channel_first=True)
    assert out[0, 0, 0] == 1.0 and out[1, 0, 0] == 0.0 and out[1, 1, 1] == 0.5
    with pytest.raises(ValueError, match="does not fit"):
        uncrop(probs, [[0, 3], [0, 2]], (4, 2), channel_first=True)


def test_ct_clip_and_global_zscore():
    x = np.array([-1000.0, 0.0, 100.0, 3000.0])
    out = normalise_channel(x, {"scheme": "ct", "clip": [-100.0, 1000.0], "mean": 50.0, "std": 25.0})
    np.testing.assert_allclose(out, [(-100 - 50) / 25, -2.0, 2.0, (1000 - 50) / 25])


def test_zscore_masked_sets_outside_to_zero():
    x = np.array([[0.0, 0.0], [2.0, 4.0]])
    mask = x > 0
    out = normalise_channel(x, {"scheme": "zscore", "use_mask": True}, mask)
    np.testing.assert_allclose(out, [[0, 0], [-1, 1]])
    plain = normalise_channel(x, {"scheme": "zscore", "use_mask": False}, mask)
    assert abs(plain.mean()) < 1e-6 and abs(plain.std() - 1) < 1e-6


def test_rgb_and_spect_and_unknown():
    rgb = np.array([[[0, 255]], [[51, 102]], [[255, 255]]], np.uint8)
    out = normalise(rgb, {"channels": [{"scheme": "rgb01", "scale": 255.0}] * 3})
    np.testing.assert_allclose(out[1, 0], [0.2, 0.4], atol=1e-6)
    counts = np.arange(1, 201, dtype=np.float32)
    spect = normalise_channel(counts, {"scheme": "spect", "percentile": 99.5})
    assert spect.dtype == np.float32 and spect[0] > 0 and abs(np.percentile(spect, 99.5) - 1) < 1e-6
    assert spect.max() > 1  # hot voxels keep their contrast: no clipping
    with pytest.raises(ValueError, match="unknown normalisation"):
        normalise_channel(counts, {"scheme": "histogram"})
    with pytest.raises(ValueError, match="channels"):
        normalise(rgb, {"channels": [{"scheme": "none"}]})
