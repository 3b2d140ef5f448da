"""Plans of small constructed datasets: isotropic, anisotropic (coarse axis first / last), 2D RGB, 2D
grey, CT vs non-CT; plans ignore labels; hand edits survive re-planning; `plan` imports no torch."""

import json
import subprocess
import sys

import pytest

from medseg_bench.planning import is_hand_edited, plan_dataset
from medseg_bench.planning.plans_file import PROPOSED_FILE

ANISO = [(4.0, 0.8, 0.8)] * 3
ANISO_SHAPES = [(12, 64, 64), (14, 64, 60), (12, 60, 64)]


def _plan(raw, tmp_path, **kw):
    return plan_dataset(raw, tmp_path / "pp" / raw.name, num_workers=1, **kw)


def test_isotropic_3d(volume_dataset, tmp_path):
    raw = volume_dataset("iso", [(1.0, 1.0, 1.0)] * 3, [(32, 40, 48)] * 3)
    p = _plan(raw, tmp_path)
    assert p["dims"] == 3 and p["transpose_forward"] == [0, 1, 2]
    assert set(p["configurations"]) == {"2d", "3d_fullres"}
    fr, c2 = p["configurations"]["3d_fullres"], p["configurations"]["2d"]
    assert fr["spacing"] == [1.0, 1.0, 1.0] and fr["median_shape"] == [32, 40, 48]
    assert fr["data_identifier"] == c2["data_identifier"]  # 2d slices the same arrays
    assert fr["normalization"]["channels"][0] == {"scheme": "zscore", "use_mask": False}
    q3 = p["presets"]["quick"]["configurations"]["3d_fullres"]
    assert q3["network"]["spatial_dims"] == 3 and not q3["augmentation"]["do_dummy_2d"]
    assert p["presets"]["quick"]["configurations"]["2d"]["network"]["spatial_dims"] == 2
    assert p["presets"]["paper"]["recommended_configuration"] == "3d_fullres"
    assert p["presets"]["demo"]["recommended_configuration"] == "2d"
    assert p["labels"] == {"background": 0, "target": 1}
    json.dumps(p)  # everything is plain data


def test_anisotropic_ct_coarse_axis_first(volume_dataset, tmp_path):
    raw = volume_dataset("aniso_first", ANISO, ANISO_SHAPES, modality="CT")
    p = _plan(raw, tmp_path)
    fr = p["configurations"]["3d_fullres"]
    assert p["transpose_forward"] == [0, 1, 2] and fr["spacing"] == pytest.approx([4.0, 0.8, 0.8])
    assert fr["median_shape"] == [12, 64, 64]
    assert fr["normalization"]["scheme"] == "ct"
    lo, hi = fr["normalization"]["channels"][0]["clip"]
    assert -500 < lo < hi  # body statistics: the air (about -900) is excluded
    paper = p["presets"]["paper"]["configurations"]["3d_fullres"]
    assert paper["network"]["kernel_size"][0] == [1, 3, 3] and paper["augmentation"]["do_dummy_2d"]


def test_anisotropic_coarse_axis_last_is_transposed(volume_dataset, tmp_path):
    spacings = [tuple(reversed(s)) for s in ANISO]
    shapes = [tuple(reversed(s)) for s in ANISO_SHAPES]
    p = _plan(volume_dataset("aniso_last", spacings, shapes), tmp_path)
    assert p["transpose_forward"] == [2, 0, 1] and p["transpose_backward"] == [1, 2, 0]
    fr = p["configurations"]["3d_fullres"]
    assert fr["spacing"] == pytest.approx([4.0, 0.8, 0.8]) and fr["median_shape"] == [12, 64, 64]
    assert p["presets"]["paper"]["configurations"]["2d"]["patch_size"] == [64, 64]


def test_2d_rgb_and_grey(image_dataset, tmp_path):
    rgb = _plan(image_dataset("rgb", rgb=True), tmp_path)
    assert rgb["dims"] == 2 and rgb["rgb"] and rgb["num_channels"] == 3
    assert set(rgb["configurations"]) == {"2d"}
    assert rgb["configurations"]["2d"]["normalization"]["scheme"] == "rgb01"
    assert rgb["configurations"]["2d"]["spacing"] == [0.5, 0.5] and rgb["configurations"]["2d"]["median_shape"] == [96, 80]
    assert all(pr["recommended_configuration"] == "2d" for pr in rgb["presets"].values())
    assert rgb["presets"]["quick"]["configurations"]["2d"]["network"]["in_channels"] == 3
    grey = _plan(image_dataset("grey"), tmp_path)
    assert not grey["rgb"] and grey["configurations"]["2d"]["normalization"]["channels"][0]["scheme"] == "zscore"


def test_ct_vs_non_ct_same_images(volume_dataset, tmp_path):
    ct = _plan(volume_dataset("ct", ANISO, ANISO_SHAPES, modality="CT"), tmp_path)
    mr = _plan(volume_dataset("mr", ANISO, ANISO_SHAPES, modality="MR"), tmp_path)
    assert ct["configurations"]["3d_fullres"]["normalization"]["scheme"] == "ct"
    assert mr["configurations"]["3d_fullres"]["normalization"]["scheme"] == "zscore"


def test_masked_zscore_when_cropping_removes_a_lot(volume_dataset, tmp_path):
    p = _plan(volume_dataset("padded", [(1.0, 1.0, 1.0)] * 2, [(16, 16, 16)] * 2, zero_border=8), tmp_path)
    assert p["configurations"]["3d_fullres"]["normalization"]["channels"][0]["use_mask"] is True
    assert p["configurations"]["3d_fullres"]["median_shape"] == [16, 16, 16]  # after cropping


def _without_provenance(plans):
    return {k: v for k, v in plans.items() if k not in ("dataset_hash", "content_hash", "dataset")}


def test_plans_do_not_change_when_labels_change(volume_dataset, tmp_path):
    a = _plan(volume_dataset("labels_a", ANISO, ANISO_SHAPES, modality="CT"), tmp_path)
    b = _plan(volume_dataset("labels_b", ANISO, ANISO_SHAPES, modality="CT", label_shift=3), tmp_path)
    assert a["dataset_hash"] != b["dataset_hash"]  # the datasets do differ (their labels)
    assert _without_provenance(a) == _without_provenance(b)
    fa = json.loads((tmp_path / "pp" / "labels_a" / "fingerprint.json").read_text())
    # reported (from the 2 benchmark training cases; the hash-chosen test case is never read), not used
    assert fa["label_statistics"]["num_labelled_cases"] == 2
    assert fa["label_statistics"]["classes"]["target"]["cases_present"] == 2


def test_hand_edits_survive_replanning(volume_dataset, tmp_path):
    raw = volume_dataset("edit", ANISO, ANISO_SHAPES)
    out = tmp_path / "pp" / "edit"
    plans = _plan(raw, tmp_path)
    path = out / "plans.json"
    assert not is_hand_edited(plans)
    # reformatting is not an edit: re-planning leaves the file alone
    path.write_text(json.dumps(json.loads(path.read_text()), indent=4, sort_keys=True))
    assert _plan(raw, tmp_path) == plans and not (out / PROPOSED_FILE).exists()
    edited = json.loads(path.read_text())
    edited["presets"]["quick"]["configurations"]["2d"]["batch_size"] = 3
    path.write_text(json.dumps(edited, indent=2))
    kept = _plan(raw, tmp_path)
    assert kept["presets"]["quick"]["configurations"]["2d"]["batch_size"] == 3 and is_hand_edited(kept)
    assert json.loads(path.read_text()) == edited and (out / PROPOSED_FILE).is_file()
    forced = _plan(raw, tmp_path, force=True)
    assert forced == plans and not (out / PROPOSED_FILE).exists()


def test_memory_target_changes_only_the_paper_preset(volume_dataset, tmp_path):
    raw = volume_dataset("mem", [(1.0, 1.0, 1.0)] * 2, [(96, 96, 96)] * 2)
    small = _plan(raw, tmp_path, memory_gb=2.0)
    assert small["presets"]["paper"]["configurations"]["3d_fullres"]["memory_estimate_gb"] <= 2.0
    assert small["planner"]["paper_memory_target_gb"] == 2.0


def test_plan_command_imports_no_torch(volume_dataset, tmp_path):
    raw = volume_dataset("cli", ANISO, ANISO_SHAPES)
    code = ("import sys; from medseg_bench.cli import main; rc = main(['plan', sys.argv[1], '--workdir', sys.argv[2]]); "
            "assert rc == 0, rc; assert 'torch' not in sys.modules, 'torch imported'; print('ok')")
    env_cache = str(tmp_path / "cache")
    proc = subprocess.run([sys.executable, "-c", code, str(raw), str(tmp_path / "wd")], capture_output=True, text=True,
                          env={**__import__("os").environ, "MEDSEG_CACHE_DIR": env_cache}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "ok" in proc.stdout and "--calibrate" in proc.stdout  # says the shipped model was used
    assert (tmp_path / "wd" / "preprocessed" / "cli" / "plans.json").is_file()
