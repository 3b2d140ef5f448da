"""Preprocessing fixtures: plans in tests use the shipped step-time model, never a cached calibration."""

import pytest


@pytest.fixture(autouse=True)
def _isolated_calibration_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSEG_CACHE_DIR", str(tmp_path / "cache"))
