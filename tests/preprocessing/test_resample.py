"""Separable resampling: identity, exact nearest, agreement with scipy, per-class labels."""

import numpy as np
import pytest
from scipy import ndimage

from medseg_bench.preprocessing.resample import (
    axis_orders,
    resample_array,
    resample_label,
    separate_axis,
    shape_for_spacing,
)


def test_same_shape_is_exactly_the_identity():
    x = np.random.default_rng(0).normal(size=(2, 5, 6, 7)).astype(np.float32)
    assert np.array_equal(resample_array(x, (5, 6, 7), (3, 3, 3)), x)
    lab = np.random.default_rng(1).integers(0, 4, (5, 6, 7)).astype(np.int16)
    assert np.array_equal(resample_label(lab, (5, 6, 7), (1, 1, 1)), lab)


def test_nearest_doubling_repeats_voxels():
    x = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    assert np.array_equal(resample_array(x, (6, 8), (0, 0))[0], np.repeat(np.repeat(x[0], 2, 0), 2, 1))


def test_linear_matches_scipy_zoom_grid_mode():
    x = np.random.default_rng(2).normal(size=(9, 13, 11)).astype(np.float32)
    new = (14, 7, 20)
    ours = resample_array(x[None], new, (1, 1, 1))[0]
    ref = ndimage.zoom(x, [n / s for n, s in zip(new, x.shape)], order=1, mode="nearest", grid_mode=True)
    assert ref.shape == new
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_cubic_reproduces_linear_ramps_and_constants():
    ramp = np.broadcast_to(np.arange(20, dtype=np.float32)[:, None], (20, 10)).copy()
    out = resample_array(ramp[None], (35, 10), (3, 3))[0]
    x_in = (np.arange(35) + 0.5) * 20 / 35 - 0.5
    interior = (x_in > 1) & (x_in < 18)
    np.testing.assert_allclose(out[interior, 0], x_in[interior], atol=1e-4)
    const = np.full((1, 7, 9), 3.25, np.float32)
    np.testing.assert_allclose(resample_array(const, (15, 4), (3, 3)), 3.25, atol=1e-5)


def test_label_per_class_resampling_keeps_every_class_and_shape():
    lab = np.zeros((20, 20), np.int16)
    lab[2:10, 2:10] = 1
    lab[12:18, 5:15] = 3
    up = resample_label(lab, (40, 40), (1, 1))
    assert up.dtype == np.int16 and set(np.unique(up)) == {0, 1, 3}
    back = resample_label(up, (20, 20), (1, 1))
    assert np.array_equal(back, lab)


def test_separate_axis_and_orders():
    assert separate_axis((5.0, 1.0, 1.0)) == 0 and separate_axis((1.0, 1.0, 4.0)) == 2
    assert separate_axis((2.0, 1.0, 1.0)) is None  # not anisotropic enough
    assert separate_axis((2.0, 1.0, 1.0), (4.0, 1.0, 1.0)) == 0  # the target is
    assert separate_axis((5.0, 5.0, 1.0)) is None  # two coarse axes: no single out-of-plane axis
    assert separate_axis((5.0, 1.0)) is None  # 2D
    assert axis_orders(3, 3, 0) == (0, 3, 3) and axis_orders(2, 1, None) == (1, 1)
    assert shape_for_spacing((10, 100, 100), (5.0, 0.8, 0.8), (2.5, 1.6, 1.6)) == (20, 50, 50)


def test_bad_order_is_rejected():
    with pytest.raises(ValueError, match="order"):
        resample_array(np.zeros((1, 4, 4), np.float32), (8, 8), (2, 2))


def test_label_resampling_equals_naive_per_class_argmax():
    rng = np.random.default_rng(3)
    lab = ndimage.zoom(rng.integers(0, 4, (6, 7, 5)), 3, order=0).astype(np.int16)  # blocky 4-class map
    new = (11, 30, 17)
    scores = np.stack([resample_array((lab == v)[None].astype(np.float32), new, (1, 1, 0))[0] for v in range(4)])
    assert np.array_equal(resample_label(lab, new, (1, 1, 0)), scores.argmax(0))
