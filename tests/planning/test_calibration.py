"""CPU step-time model: the shipped default reproduces ARCHITECTURE.md's measurements; fitting;
the per-machine cache; a real (tiny) calibration through `plan --calibrate`."""

import json

import pytest

from medseg_bench.planning import calibration as cal
from medseg_bench.planning.topology import get_topology, network_cost, stage_filters


def _predict(model, spacing, patch, batch, base, cin):
    t = get_topology(spacing, patch)
    c = network_cost(t, stage_filters(t.num_stages, base, cal.FEATURE_CAP), cin, 2)
    return model.predict(len(patch), c, batch)


@pytest.mark.parametrize("row", cal.REFERENCE_TABLE, ids=lambda r: f"{r[1]}-b{r[2]}-f{r[3]}")
def test_default_model_reproduces_the_reference_table(row):
    spacing, patch, batch, base, cin, seconds = row
    predicted = _predict(cal.StepTimeModel.from_dict(cal.DEFAULT_MODEL), spacing, patch, batch, base, cin)
    assert 0.7 <= predicted / seconds <= 1.3, (predicted, seconds)


def test_fit_recovers_known_coefficients():
    truth = {"2": {"t0": 0.01, "per_gmac": 0.05, "per_mact": 0.004, "per_mact_large": 0.002},
             "3": {"t0": 0.02, "per_gmac": 0.01, "per_mact": 0.015, "per_mact_large": 0.01}}
    rows = []
    for dims in (2, 3):
        c = truth[str(dims)]
        for macs, acts, large in ((1e9, 2e7, 0), (5e9, 5e7, 0), (2e10, 3e8, 2e8), (8e9, 1e8, 0), (3e10, 4e8, 3.5e8)):
            rows.append({"dims": dims, "macs": macs, "activations": acts, "large_activations": large,
                         "seconds": c["t0"] + c["per_gmac"] * macs / 1e9 + c["per_mact"] * acts / 1e6
                         + c["per_mact_large"] * large / 1e6})
    fitted = cal.fit_step_time(rows)
    for dims in ("2", "3"):
        for k, v in truth[dims].items():
            assert fitted[dims][k] == pytest.approx(v, rel=1e-4, abs=1e-7)
    with pytest.raises(ValueError, match="at least 4"):
        cal.fit_step_time(rows[:3])


def test_cache_is_used_only_for_this_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSEG_CACHE_DIR", str(tmp_path))
    assert cal.load_step_time_model().source == cal.DEFAULT_MODEL["source"]
    mine = {"source": "calibrated here", "threads": 1, "coefficients": cal.DEFAULT_MODEL["coefficients"]}
    cal.cache_path().write_text(json.dumps({"key": cal.machine_key(), "model": mine}))
    assert cal.load_step_time_model().source == "calibrated here"
    other = dict(cal.machine_key(), cpu_model="another CPU")
    cal.cache_path().write_text(json.dumps({"key": other, "model": mine}))
    assert cal.load_step_time_model().source == cal.DEFAULT_MODEL["source"]
    cal.cache_path().write_text("{ broken")
    assert cal.load_step_time_model().source == cal.DEFAULT_MODEL["source"]


TINY_GRID = [((1.0, 1.0), (32, 32), 2, 8), ((1.0, 1.0), (48, 48), 2, 8), ((1.0, 1.0), (64, 64), 2, 8),
             ((1.0, 1.0), (64, 64), 4, 8), ((1.0, 1.0, 1.0), (16, 16, 16), 2, 8), ((1.0, 1.0, 1.0), (16, 32, 32), 2, 8),
             ((1.0, 1.0, 1.0), (24, 24, 24), 2, 8), ((1.0, 1.0, 1.0), (16, 16, 16), 4, 8)]


@pytest.mark.slow
def test_plan_calibrate_measures_and_caches(tiny_3d, tmp_path, monkeypatch, capsys):
    pytest.importorskip("monai")
    from medseg_bench.planning import plan_command

    monkeypatch.setattr(cal, "CALIBRATION_GRID", TINY_GRID)
    assert plan_command(str(tiny_3d), tmp_path / "wd", calibrate=True) == 0
    cached = json.loads(cal.cache_path().read_text())
    assert cached["key"] == cal.machine_key() and len(cached["measurements"]) == len(TINY_GRID)
    assert all(m["seconds"] > 0 for m in cached["measurements"])
    assert cal.load_step_time_model().source.startswith("calibrated on this machine")
    plans = json.loads((tmp_path / "wd" / "preprocessed" / tiny_3d.name / "plans.json").read_text())
    assert plans["planner"]["step_time_model"]["source"].startswith("calibrated")
    assert "--calibrate" not in capsys.readouterr().out  # no "uncalibrated" note any more
