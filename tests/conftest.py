"""Shared fixtures: where the real data lives, and small hand-made raw datasets."""

from __future__ import annotations

from pathlib import Path

import pytest
from medseg_testdata import SHARED_DATA, make_tiny_3d, make_tiny_rgb_instances


@pytest.fixture
def shared_data() -> Path:
    """../shared/data next to the repository (real MoNuSeg tiles and a TotalSegmentator CT)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (a fresh clone has no ../shared; CI always has it)")
    return SHARED_DATA


@pytest.fixture
def tiny_3d(tmp_path) -> Path:
    return make_tiny_3d(tmp_path / "tiny3d")


@pytest.fixture
def tiny_rgb(tmp_path) -> Path:
    return make_tiny_rgb_instances(tmp_path / "tinyrgb")
