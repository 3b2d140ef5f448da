"""Planning fixtures: an isolated calibration cache and small constructed datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medseg_bench.io import Geometry, RawDatasetWriter


@pytest.fixture(autouse=True)
def _isolated_calibration_cache(tmp_path, monkeypatch):
    """Plans in tests use the shipped step-time model, never this machine's cached calibration."""
    monkeypatch.setenv("MEDSEG_CACHE_DIR", str(tmp_path / "cache"))


def make_volume_dataset(path: Path, spacings, shapes, modality="MR", seed=0, label_shift=0, zero_border=0) -> Path:
    """3D dataset, one case per (spacing, shape): a bright box (label 1) in noise.

    ``label_shift`` moves the labels only (images identical), ``zero_border`` pads every image with
    that many zero voxels per side (so cropping removes a lot).
    """
    rng = np.random.default_rng(seed)
    w = RawDatasetWriter(path, {"0": modality}, {"background": 0, "target": 1}, ".nii.gz")
    for i, (sp, shape) in enumerate(zip(spacings, shapes)):
        img = rng.normal(100, 20, shape).astype(np.float32)
        if modality.upper() == "CT":
            img -= 1000  # mostly air-like with a body box
            img[tuple(slice(s // 4, 3 * s // 4) for s in shape)] += 1050
        img[tuple(slice(s // 3, s // 3 + max(1, s // 4)) for s in shape)] += 300
        lab = np.zeros(shape, np.uint8)
        lab[tuple(slice(s // 3 + label_shift, s // 3 + label_shift + max(1, s // 4)) for s in shape)] = 1
        if zero_border:
            img = np.pad(img, zero_border)
            lab = np.pad(lab, zero_border)
        w.add_case(f"v{i:02d}", img[None], Geometry(tuple(sp)), label=lab)
    return w.finalize().path


def make_2d_dataset(path: Path, n=6, shape=(96, 80), rgb=False, spacing=(0.5, 0.5), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    channels = {"0": "R", "1": "G", "2": "B"} if rgb else {"0": "FAF"}
    w = RawDatasetWriter(path, channels, {"background": 0, "lesion": 1}, ".png", spacing=spacing)
    for i in range(n):
        lab = np.zeros(shape, np.uint8)
        lab[20:40, 30:50] = 1
        if rgb:
            img = np.stack([200 - 100 * lab, 150 - 90 * lab, 210 - 30 * lab]).astype(np.int16)
            img = np.clip(img + rng.integers(-10, 10, img.shape), 0, 255).astype(np.uint8)
        else:
            img = np.clip(120 - 80 * lab + rng.normal(0, 10, shape), 0, 255).astype(np.uint8)[None]
        w.add_case(f"im{i:02d}", img, Geometry(spacing), label=lab)
    return w.finalize().path


@pytest.fixture
def volume_dataset(tmp_path):
    """``volume_dataset(name, spacings, shapes, **kw)`` -> path (see :func:`make_volume_dataset`)."""
    return lambda name, *a, **kw: make_volume_dataset(tmp_path / name, *a, **kw)


@pytest.fixture
def image_dataset(tmp_path):
    """``image_dataset(name, **kw)`` -> path of a 2D PNG dataset (see :func:`make_2d_dataset`)."""
    return lambda name, **kw: make_2d_dataset(tmp_path / name, **kw)
