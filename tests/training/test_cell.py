"""End to end on a tiny raw dataset: plan -> preprocess -> train_cell -> predict -> evaluate."""

import json

import numpy as np
import pytest

from medseg_bench.io import Geometry, RawDatasetWriter, read_image
from medseg_bench.splits import BudgetError
from medseg_bench.training import ensure_prepared, train_cell
from medseg_bench.training.cli import predict_command, train_command
from medseg_bench.workdir import Workdir


def _blob_raw(path, n_train=8, n_test=3, shape=(48, 56), rgb=False):
    """Discs on noise; RGB PNG + instance maps when ``rgb`` (nuclei-like), else grey NIfTI."""
    rng = np.random.default_rng(0)
    ending = ".png" if rgb else ".nii.gz"
    channels = {"0": "R", "1": "G", "2": "B"} if rgb else {"0": "MR"}
    w = RawDatasetWriter(path, channels, {"background": 0, "blob": 1}, ending, instance_labels=rgb)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for i in range(n_train + n_test + 1):
        inst = np.zeros(shape, np.uint16)
        for k in range(3):
            cy, cx, r = rng.uniform(8, shape[0] - 8), rng.uniform(8, shape[1] - 8), rng.uniform(4, 7)
            inst[((yy - cy) ** 2 + (xx - cx) ** 2 < r * r) & (inst == 0)] = k + 1
        seg = (inst > 0).astype(np.uint8)
        grey = seg * 120.0 + 60 + rng.normal(0, 25, shape)
        if rgb:
            img = np.clip(np.stack([grey, 255 - grey, grey * 0.5]), 0, 255).astype(np.uint8)
        else:
            img = grey[None].astype(np.float32)
        geo = Geometry((1.0, 1.0) if rgb else (0.8, 0.7))
        subset = "train" if i < n_train else ("test" if i < n_train + n_test else "unlabelled")
        kw = {} if subset == "unlabelled" else {"label": seg, "instances": inst if rgb else None}
        w.add_case(f"blob_{i:03d}", img, geo, subset=subset, **kw)
    return w.finalize()


@pytest.fixture(scope="module")
def grey_workdir(tmp_path_factory):
    wd = Workdir(tmp_path_factory.mktemp("work"))
    _blob_raw(wd.raw_dataset("blobs"))
    ensure_prepared(wd, "blobs", num_workers=1)
    return wd


def test_train_cell_end_to_end_and_predict(grey_workdir, tmp_path):
    wd = grey_workdir
    rec = train_cell(wd, "blobs", "supervised", 2, 0, preset="quick", iterations=3, progress=False, num_threads=1)
    run = wd.run_dir("blobs", "quick", rec["cell"]["configuration"], "supervised", 2, 0)
    assert rec["status"] == "done" and rec["n_labelled"] == 2 and len(rec["budget_cases"]) == 2
    for f in ("DONE", "record.json", "metrics.json", "config.json", "checkpoint_final.pt", "train_log.jsonl",
              "loss_curve.json"):
        assert (run / f).is_file(), f
    preds = sorted(p.name for p in (run / "pred").iterdir())
    assert preds == ["blob_008.nii.gz", "blob_009.nii.gz", "blob_010.nii.gz"]
    seg, geo = read_image(run / "pred" / "blob_008.nii.gz")
    ref, ref_geo = read_image(wd.raw_dataset("blobs") / "labelsTs" / "blob_008.nii.gz")
    assert seg.shape == ref.shape and geo.spacing == pytest.approx(ref_geo.spacing)
    assert set(np.unique(seg)) <= {0, 1}
    assert len(rec["metrics"]["per_case"]) == 3 and "blob" in rec["metrics"]["mean"]
    p = rec["provenance"]
    assert p["split_hash"] and p["plan_hash"] and p["parameters"] > 0 and p["iterations"] == 3
    assert p["labelled_iterations"] == 3 and len(rec["training"]["loss_curve"]) == 3
    assert rec["training"]["convergence"]["converged"] is None  # 3 iterations: too short to tell
    assert p["environment"]["device"] == "cpu"
    assert p["environment"]["cpu_model"] and p["environment"]["speed_probe_ms"] > 0
    # a finished cell is returned without work
    mtime = (run / "DONE").stat().st_mtime
    assert train_cell(wd, "blobs", "supervised", 2, 0, preset="quick", iterations=3, progress=False) == json.loads((run / "record.json").read_text())
    assert (run / "DONE").stat().st_mtime == mtime
    # ... but not under other explicitly asked settings: that would report the wrong schedule
    with pytest.raises(ValueError, match=r"finished with iterations 3 \(asked: 4\).*--rerun"):
        train_cell(wd, "blobs", "supervised", 2, 0, preset="quick", iterations=4, progress=False)
    # predict a raw folder with the finished run
    out = tmp_path / "out"
    assert predict_command(str(run), str(wd.raw_dataset("blobs") / "imagesTs"), str(out), workdir=wd.root) == 0
    again, _ = read_image(out / "blob_008.nii.gz")
    np.testing.assert_array_equal(again, seg)


def test_rerun_keeps_the_old_run_as_previous(grey_workdir, capsys):
    wd = grey_workdir
    train_cell(wd, "blobs", "supervised", 4, 0, preset="quick", iterations=2, progress=False, num_threads=1)
    assert train_command("blobs", "supervised", "4", 0, workdir=wd.root, preset="quick", iterations=3) == 2
    assert "iterations 2 (asked: 3)" in capsys.readouterr().err
    assert train_command("blobs", "supervised", "4", 0, workdir=wd.root, preset="quick", iterations=3, rerun=True) == 0
    run = wd.run_dir("blobs", "quick", "2d", "supervised", 4, 0)
    assert json.loads((run / "record.json").read_text())["provenance"]["iterations"] == 3
    previous = run.with_name(run.name + ".previous")
    assert json.loads((previous / "record.json").read_text())["provenance"]["iterations"] == 2


def test_config_json_records_the_schedule_a_method_sets_in_setup(grey_workdir):
    """config.json is the exact config: a method that sizes its own schedule in setup (as the
    teacher-student methods do) must not leave the preset's iteration count there."""
    from medseg_bench.methods.supervised import Supervised

    class SelfSized(Supervised):
        name = "self_sized_test"

        def setup(self, ctx):
            ctx.settings["iterations"] = 2
            super().setup(ctx)

    wd = grey_workdir
    rec = train_cell(wd, "blobs", SelfSized, 2, 0, preset="quick", iterations=5, progress=False, num_threads=1)
    config = json.loads((wd.run_dir("blobs", "quick", "2d", "self_sized_test", 2, 0) / "config.json").read_text())
    assert config["settings"]["iterations"] == 2 == rec["provenance"]["iterations"]
    assert config["requested"] == {"iterations": 5}
    # asking the same again returns the finished run (compared with what was asked, not what setup made of it)
    assert train_cell(wd, "blobs", SelfSized, 2, 0, preset="quick", iterations=5, progress=False) == rec


def test_train_tta_flag_reaches_the_test_evaluation(grey_workdir):
    wd = grey_workdir
    assert train_command("blobs", "supervised", "2", 1, workdir=wd.root, preset="quick", iterations=2, tta=True) == 0
    config = json.loads((wd.run_dir("blobs", "quick", "2d", "supervised", 2, 1) / "config.json").read_text())
    assert config["settings"]["tta"] is True and config["requested"] == {"iterations": 2, "tta": True}


def test_budget_rules(grey_workdir, capsys):
    with pytest.raises(BudgetError, match="budget 'all' only"):
        train_cell(grey_workdir, "blobs", "supervised_full", 2, 0, preset="quick", iterations=1, progress=False)
    with pytest.raises(BudgetError, match="only 8 labelled"):
        train_cell(grey_workdir, "blobs", "supervised", 16, 0, preset="quick", iterations=1, progress=False)
    assert train_command("blobs", "supervised", "16", 0, workdir=grey_workdir.root, preset="quick", iterations=1) == 2
    assert "only 8 labelled training case" in capsys.readouterr().err


def test_paper_preset_one_iteration_on_cpu(grey_workdir):
    """The GPU preset's code path (its network and patch) runs on CPU, so it cannot rot unseen."""
    rec = train_cell(grey_workdir, "blobs", "supervised_full", "all", 0, preset="paper", device="cpu",
                     iterations=1, progress=False, num_threads=1)
    assert rec["status"] == "done" and rec["cell"]["preset"] == "paper" and rec["n_labelled"] == 8


def test_instance_dataset_gets_instances_and_aji(tmp_path):
    wd = Workdir(tmp_path / "work")
    _blob_raw(wd.raw_dataset("nuclei"), n_train=5, n_test=2, rgb=True)
    ensure_prepared(wd, "nuclei", num_workers=1)
    rec = train_cell(wd, "nuclei", "supervised", 2, 0, preset="quick", iterations=2, progress=False, num_threads=1)
    run = wd.run_dir("nuclei", "quick", rec["cell"]["configuration"], "supervised", 2, 0)
    assert sorted(p.name for p in (run / "pred_instances").glob("*.png"))
    assert all("instance" in c for c in rec["metrics"]["per_case"])
