"""Preprocess a label map and export it back: identical when the spacing is unchanged, close (Dice)
when it is resampled; probabilities come back in the original geometry."""

import copy

import numpy as np
import pytest

from medseg_bench.io import Geometry, RawDatasetWriter
from medseg_bench.planning import plan_dataset
from medseg_bench.preprocessing import (
    export_to_original,
    preprocess_case,
    preprocess_instances,
    preprocess_label,
)


def _ball(shape, center, radius, spacing):
    grid = np.indices(shape).astype(float)
    return sum(((g - c) * s) ** 2 for g, c, s in zip(grid, center, spacing)) < radius**2


def _dataset(path, shape, spacing, zero_border=0, n=2, radii=(6.0, 4.0)):
    rng = np.random.default_rng(0)
    w = RawDatasetWriter(path, {"0": "MR"}, {"background": 0, "a": 1, "b": 2}, ".nii.gz")
    for i in range(n):
        lab = np.zeros(shape, np.uint8)
        lab[_ball(shape, [s * 0.4 for s in shape], radii[0], spacing)] = 1
        lab[_ball(shape, [s * 0.65 for s in shape], radii[1], spacing)] = 2
        img = (50 + 40 * lab + rng.normal(0, 5, shape)).astype(np.float32)
        if zero_border:
            img, lab = np.pad(img, zero_border), np.pad(lab, zero_border)
        w.add_case(f"c{i}", img[None], Geometry(spacing, origin=(1.0, 2.0, 3.0)), label=lab)
    return w.finalize()


def _dice(a, b, v):
    a, b = a == v, b == v
    return 2 * (a & b).sum() / (a.sum() + b.sum())


@pytest.mark.parametrize("spacing,shape", [((0.8, 0.8, 4.0), (40, 36, 9)), ((4.0, 0.8, 0.8), (9, 40, 36)), ((1.0, 1.0, 1.0), (20, 22, 24))])
def test_identity_round_trip_when_spacing_is_unchanged(tmp_path, spacing, shape):
    raw = _dataset(tmp_path / "raw", shape, spacing, zero_border=3)
    plans = plan_dataset(raw.path, tmp_path / "pp", num_workers=1)
    for case in raw.raw_cases("train"):
        image, geo = case.load_image()
        label, lgeo = case.load_label()
        for config in plans["configurations"]:
            data, props = preprocess_case(image, geo, plans, config)
            assert data.dtype == np.float32 and data.shape[1:] == tuple(props["shape_after_resample"])
            seg = preprocess_label(label, lgeo, plans, config, props)
            assert seg.dtype == np.int16 and seg.shape == data.shape[1:]
            # the coarse axis comes first in the preprocessed arrays
            assert props["spacing_after_resample"][0] == max(spacing)
            back = export_to_original(seg, props, plans, config)
            assert back.shape == label.shape and np.array_equal(back, label)


def test_resampled_round_trip_and_probabilities(tmp_path):
    spacing, shape = (3.0, 0.7, 0.7), (14, 48, 44)
    raw = _dataset(tmp_path / "raw", shape, spacing, radii=(12.0, 7.0))
    plans = plan_dataset(raw.path, tmp_path / "pp", num_workers=1)
    plans = copy.deepcopy(plans)
    plans["configurations"]["3d_fullres"]["spacing"] = [2.0, 1.1, 1.1]  # finer slices, coarser in-plane
    case = raw.raw_cases("train")[0]
    image, geo = case.load_image()
    label, _ = case.load_label()
    data, props = preprocess_case(image, geo, plans, "3d_fullres")
    assert list(data.shape[1:]) == [21, 31, 28] and props["out_of_plane_axis"] == 0
    seg = preprocess_label(label, geo, plans, "3d_fullres", props)
    back = export_to_original(seg, props, plans, "3d_fullres")
    assert back.shape == label.shape
    assert _dice(back, label, 1) >= 0.95 and _dice(back, label, 2) >= 0.9
    probs = np.stack([(seg == k).astype(np.float32) for k in range(3)])
    p_back = export_to_original(probs, props, plans, "3d_fullres", is_probabilities=True)
    assert p_back.shape == (3,) + label.shape and p_back.dtype == np.float32
    np.testing.assert_allclose(p_back.sum(0), 1.0, atol=1e-5)
    assert _dice(p_back.argmax(0), label, 1) >= 0.95


def test_2d_rgb_instances_round_trip(tiny_rgb):
    from medseg_bench.io import RawDataset

    raw = RawDataset(tiny_rgb)
    plans = plan_dataset(tiny_rgb, tiny_rgb.parent / "pp", num_workers=1)
    case = raw.train_cases()[0]
    image, geo = case.load_image()
    data, props = preprocess_case(image, geo, plans, "2d")
    assert data.shape == (3, 32, 32) and 0.0 <= data.min() and data.max() <= 1.0
    inst, igeo = case.load_instances()
    pre = preprocess_instances(inst, igeo, plans, "2d", props)
    assert pre.dtype == np.int32 and np.array_equal(pre, inst)


def test_mismatched_inputs_are_rejected(tiny_3d):
    from medseg_bench.io import RawDataset

    raw = RawDataset(tiny_3d)
    plans = plan_dataset(tiny_3d, tiny_3d.parent / "pp", num_workers=1)
    image, geo = raw.train_cases()[0].load_image()
    _, props = preprocess_case(image, geo, plans, "3d_fullres")
    with pytest.raises(ValueError, match="does not match the image shape"):
        preprocess_label(np.zeros((3, 3, 3), np.uint8), None, plans, "3d_fullres", props)
    with pytest.raises(KeyError, match="not in the plans"):
        preprocess_case(image, geo, plans, "3d_lowres")
    with pytest.raises(ValueError, match="channels"):
        preprocess_case(np.concatenate([image, image]), geo, plans, "3d_fullres")
