"""Test helpers importable from any test file (``from medseg_testdata import ...``): where the real
data lives, and small hand-made raw datasets. Kept out of conftest.py because several conftest modules
exist and ``from conftest import`` would pick whichever one was imported first."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from medseg_bench.io import Geometry, RawDatasetWriter

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MEDSEG_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def _blob(shape, rng, center=None, radius=None):
    grid = np.indices(shape).astype(float)
    center = center if center is not None else [s / 2 + rng.uniform(-2, 2) for s in shape]
    radius = radius if radius is not None else min(shape) / 4
    dist = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, center)))
    return dist < radius


def make_tiny_3d(path: Path, n_train=4, n_test=2, n_unlabelled=2, seed=0) -> Path:
    """A valid tiny 3D CT-like dataset with anisotropic spacing and a non-identity direction."""
    rng = np.random.default_rng(seed)
    w = RawDatasetWriter(path, {"0": "CT"}, {"background": 0, "bone": 1}, ".nii.gz")
    direction = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    geo = Geometry(spacing=(3.0, 0.8, 0.8), origin=(-10.0, 5.0, 2.5), direction=direction)
    for i in range(n_train + n_test + n_unlabelled):
        lab = _blob((10, 24, 24), rng).astype(np.uint8)
        img = (lab.astype(np.float32) * 400 + rng.normal(0, 30, lab.shape) - 50).astype(np.float32)[None]
        subset = "train" if i < n_train else "test" if i < n_train + n_test else "unlabelled"
        w.add_case(f"case_{i:03d}", img, geo, label=None if subset == "unlabelled" else lab, subset=subset)
    return w.finalize().path


def make_tiny_rgb_instances(path: Path, n_train=3, n_test=2, n_unlabelled=1, seed=0) -> Path:
    """A valid tiny 2D RGB dataset with instance maps and unlabelled images."""
    rng = np.random.default_rng(seed)
    w = RawDatasetWriter(path, {"0": "R", "1": "G", "2": "B"}, {"background": 0, "nucleus": 1}, ".png",
                         instance_labels=True, spacing=(0.25, 0.25))
    for i in range(n_train + n_test + n_unlabelled):
        inst = np.zeros((32, 32), np.uint16)
        for k in range(1, 4):
            inst[_blob((32, 32), rng, center=rng.uniform(6, 26, 2), radius=4) & (inst == 0)] = k * 7
        lab = (inst > 0).astype(np.uint8)
        l16 = lab.astype(np.int16)
        img = np.stack([220 - 120 * l16, 180 - 120 * l16, 220 - 40 * l16]).astype(np.uint8)
        subset = "train" if i < n_train else "test" if i < n_train + n_test else "unlabelled"
        kw = {} if subset == "unlabelled" else {"label": lab, "instances": inst}
        w.add_case(f"tile_{i:02d}", img, Geometry((0.25, 0.25)), subset=subset, **kw)
    return w.finalize().path
