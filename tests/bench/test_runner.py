"""The local runner end to end with a fake engine: skip, resume, failure capture, crash isolation."""

import json
import time

import pytest
from bench_fakes import METHODS, Broken, Crash, Staged, fake_cell_fn, fake_prepare, toy_dataset

from medseg_bench.bench import load_manifest, load_records, run_benchmark
from medseg_bench.bench.cli import run_command
from medseg_bench.bench.results import read_manifest


@pytest.fixture()
def wd(tmp_path):
    toy_dataset(tmp_path, "toy_a")
    toy_dataset(tmp_path, "toy_b")
    return tmp_path


def _calls(wd):
    p = wd / "calls.log"
    return p.read_text().splitlines() if p.exists() else []


def _run(wd, methods=METHODS, datasets=("toy_a", "toy_b"), **kw):
    kw.setdefault("budgets", [0, 2, "all"])
    kw.setdefault("progress", False)
    only = kw.pop("methods_only", None)  # the grid's methods (``--methods``) among ``methods``
    return run_benchmark(wd, datasets=list(datasets), preset="demo", cell_fn=fake_cell_fn, methods=only,
                         prepare_fn=fake_prepare, method_classes=methods, leaderboard=False, **kw)


def test_run_skip_and_resume(wd):
    summary, cells = _run(wd, workers=2)
    assert summary.ok and summary.done == len(cells) == 2 * 5  # unsup 0, semi 2+all, supervised 2, full all
    assert len(_calls(wd)) == len(cells)
    assert all("threads=1" in line for line in _calls(wd))  # one torch thread per worker
    assert len({line.split("pid=")[1].split()[0] for line in _calls(wd)}) <= 2  # pool of <= 2 processes
    records = load_records(wd / "results")
    assert len(records) == len(cells) and all(r["status"] == "done" for r in records)
    assert len(load_manifest(wd)) == len(cells)
    info = read_manifest(wd)["methods"]  # rows without a record yet can still be labelled
    assert info["unsup"]["family"] == "unsupervised" and info["supervised_full"]["citation"] == "test"
    assert read_manifest(wd)["datasets"] == {"toy_a": {"instance_labels": False}, "toy_b": {"instance_labels": False}}
    assert (wd / "prepare.log").read_text().split() == ["toy_a", "toy_b"]  # each dataset prepared once

    # re-running a finished grid does no work and is fast
    t0 = time.monotonic()
    again, _ = _run(wd, workers=2)
    assert again.skipped == len(cells) and again.done == 0
    assert len(_calls(wd)) == len(cells) and time.monotonic() - t0 < 10

    # a killed grid: two cells lost their DONE marker and record -> only they run again
    lost = [c for c in cells if c.method == "semi"][:2]
    for c in lost:
        (c.run_dir(wd) / "DONE").unlink()
        (wd / "results" / f"{c.key}.json").unlink()
    resumed, _ = _run(wd, workers=1)
    assert resumed.done == 2 and resumed.skipped == len(cells) - 2
    assert len(_calls(wd)) == len(cells) + 2


def test_failures_are_recorded_and_do_not_stop_the_grid(wd):
    methods = {**METHODS, "broken": Broken, "crash": Crash}
    summary, cells = _run(wd, methods=methods, workers=2, budgets=[2], datasets=["toy_a"])
    failed = {c.method for c, _ in summary.failed}
    assert failed == {"broken", "crash"}
    assert summary.done == len(cells) - 2
    records = {(r["cell"]["dataset"], r["cell"]["method"]): r for r in load_records(wd / "results")}
    assert "deliberately broken method" in records[("toy_a", "broken")]["error"]
    assert "worker" in records[("toy_a", "crash")]["error"]
    assert records[("toy_a", "semi")]["status"] == "done"
    assert "FAILED" in summary.format()
    # failed cells are retried on the next run (they have no DONE marker); finished ones are not
    n = len(_calls(wd))
    again, _ = _run(wd, methods={"broken": Broken, "semi": METHODS["semi"]}, workers=0, budgets=[2],
                    datasets=["toy_a"])
    assert again.skipped == 1 and len(again.failed) == 1
    assert len(_calls(wd)) == n + 1


def test_run_command_usage_errors(wd, capsys):
    assert run_command(wd, datasets=["no_such_dataset"], preset="demo") == 2
    assert "no_such_dataset" in capsys.readouterr().err
    assert run_command(wd, datasets=["toy_a"], budgets=["lots"], preset="demo") == 2


def test_record_files_are_valid_json(wd):
    _run(wd, workers=0, budgets=[0])
    for p in (wd / "results").glob("*.json"):
        json.loads(p.read_text())


def test_workers_pinned_to_devices(wd):
    """On a GPU machine each worker owns one device (here: fake device names, the cells only log them)."""
    summary, cells = _run(wd, workers=2, datasets=["toy_a"], executor_options={"devices": ["cuda:0", "cuda:1"]})
    assert summary.ok
    by_pid = {}
    for line in _calls(wd):
        pid = line.split("pid=")[1].split()[0]
        by_pid.setdefault(pid, set()).add(line.split("device=")[1])
    assert set().union(*by_pid.values()) <= {"cuda:0", "cuda:1"}
    assert all(len(devs) == 1 for devs in by_pid.values())  # a worker keeps its device


def test_rerun_runs_finished_cells_again_and_keeps_the_old_records_until_replaced(wd, capsys):
    summary, cells = _run(wd, workers=0, datasets=["toy_a"], budgets=[2])
    assert summary.ok and summary.done == len(cells)
    n = len(_calls(wd))
    before = {p.name: p.read_text() for p in (wd / "results").glob("*.json") if not p.name.startswith("_")}
    # a stage cached by a method that declares it (the runner's --rerun clears it too)
    stage = wd / "stages" / "toy_a" / "demo" / "pretrain-2d-abc" / "seed_0"
    stage.mkdir(parents=True)
    (stage / "weights.pt").write_text("old")

    class Staged(METHODS["semi"]):
        shared_stages = ("pretrain",)

    methods = {**METHODS, "semi": Staged}
    again, _ = _run(wd, methods=methods, workers=0, datasets=["toy_a"], budgets=[2], rerun=True, progress=True)
    assert again.done == len(cells) and again.skipped == 0
    assert len(_calls(wd)) == 2 * n
    # every finished cell made from the stage was rerun: it is set aside like the run folders
    assert not stage.exists() and (stage.with_name("seed_0.previous") / "weights.pt").read_text() == "old"
    assert "set aside as seed_0.previous" in capsys.readouterr().err
    for c in cells:  # the old run folders are kept beside the new ones
        assert (c.run_dir(wd).with_name(c.run_dir(wd).name + ".previous") / "DONE").is_file()
        assert (c.run_dir(wd) / "DONE").is_file()
    after = {p.name for p in (wd / "results").glob("*.json") if not p.name.startswith("_")}
    assert after == set(before)
    # without --rerun nothing runs again
    third, _ = _run(wd, workers=0, datasets=["toy_a"], budgets=[2])
    assert third.skipped == len(cells) and len(_calls(wd)) == 2 * n


def test_rerun_keeps_a_shared_stage_that_finished_cells_outside_the_rerun_were_made_from(wd, capsys):
    """--rerun of one budget must not retrain the stage the other budgets' (and another method's)
    finished records came from; it is retrained once every cell made from it is rerun."""

    class Staged(METHODS["semi"]):
        shared_stages = ("pretrain",)

    class Other(METHODS["unsup"]):  # another row sharing the stage (as dae_anomaly and dae_finetune)
        shared_stages = ("pretrain",)

    methods = {"semi": Staged, "unsup": Other, "supervised": METHODS["supervised"]}
    summary, cells = _run(wd, methods=methods, workers=0, datasets=["toy_a"], budgets=[0, 2, "all"])
    assert summary.ok and {(c.method, c.budget) for c in cells} >= {("semi", 2), ("semi", "all"), ("unsup", 0)}
    stage = wd / "stages" / "toy_a" / "demo" / "pretrain-2d-abc" / "seed_0"
    stage.mkdir(parents=True)
    (stage / "weights.pt").write_text("old")
    other_seed = wd / "stages" / "toy_a" / "demo" / "pretrain-2d-abc" / "seed_1"
    other_seed.mkdir(parents=True)
    capsys.readouterr()

    # one budget of one row: the stage stays, and the log says which finished cells keep it
    again, _ = _run(wd, methods=methods, workers=0, datasets=["toy_a"], budgets=[2], rerun=True, progress=True,
                    methods_only=["semi"])
    assert again.done == 1
    err = capsys.readouterr().err
    assert (stage / "weights.pt").read_text() == "old" and not stage.with_name("seed_0.previous").exists()
    assert "kept shared stage stages/toy_a/demo/pretrain-2d-abc/seed_0: 2 finished cell(s)" in err
    assert "semi b2 s0" not in err.split("kept shared stage")[1].split("\n")[0]
    assert "semi ball s0" in err and "unsup b0 s0" in err
    assert other_seed.is_dir()  # another seed's stage is not this rerun's business

    # both budgets of the row, but the other row is not rerun: still kept
    _run(wd, methods=methods, workers=0, datasets=["toy_a"], budgets=[2, "all"], rerun=True, progress=True,
         methods_only=["semi"])
    err = capsys.readouterr().err
    assert stage.is_dir() and "1 finished cell(s)" in err and "unsup b0 s0" in err

    # every cell made from it: set aside as .previous, retrained by the rerun
    _run(wd, methods=methods, workers=0, datasets=["toy_a"], budgets=[0, 2, "all"], rerun=True, progress=True)
    err = capsys.readouterr().err
    assert not stage.exists() and (stage.with_name("seed_0.previous") / "weights.pt").is_file()
    assert "set aside as seed_0.previous" in err and other_seed.is_dir()


def test_rerun_flag_reaches_the_runner():
    from medseg_bench.cli import build_parser

    args = build_parser().parse_args(["run", "--rerun", "--preset", "demo"])
    assert args.rerun is True
    assert build_parser().parse_args(["run"]).rerun is False


def test_records_from_another_workdir_count_as_done(tmp_path):
    """``run --records DIR``: a grid resumes on a new machine from committed records (the reference
    benchmark); failed records and records of other data are not imported; --rerun ignores them."""
    first = tmp_path / "first"
    toy_dataset(first, "toy_a")
    summary, cells = _run(first, workers=0, datasets=["toy_a"], budgets=[2, "all"])
    assert summary.ok and len(cells) >= 3
    source = tmp_path / "committed"
    source.mkdir()
    for c in cells:
        (source / f"{c.key}.json").write_text((first / "results" / f"{c.key}.json").read_text())
    failed, other, kept = cells[0], cells[1], cells[2:]
    rec = json.loads((source / f"{failed.key}.json").read_text())
    rec["status"], rec["error"] = "failed", "boom"
    (source / f"{failed.key}.json").write_text(json.dumps(rec))
    rec = json.loads((source / f"{other.key}.json").read_text())
    rec.setdefault("provenance", {})["dataset_hash"] = "0" * 64  # made from other data
    (source / f"{other.key}.json").write_text(json.dumps(rec))
    rec = json.loads((source / f"{kept[0].key}.json").read_text())
    rec["provenance"]["plan_hash"] = "feedfacefeedface"  # made with another plan: imported, with a warning
    (source / f"{kept[0].key}.json").write_text(json.dumps(rec))

    def prepare_with_hash(workdir, dataset):
        fake_prepare(workdir, dataset)
        path = workdir / "preprocessed" / dataset / "plans.json"
        plans = json.loads(path.read_text())
        plans["dataset_hash"] = "h"  # what the fake engine records
        path.write_text(json.dumps(plans))

    fresh = tmp_path / "fresh"
    toy_dataset(fresh, "toy_a")
    out = []

    class Log:
        def write(self, s):
            out.append(s)

        def flush(self):
            pass

    dry, _ = run_benchmark(fresh, datasets=["toy_a"], budgets=[2, "all"], preset="demo", cell_fn=fake_cell_fn,
                           prepare_fn=prepare_with_hash, method_classes=METHODS, progress=True, leaderboard=False,
                           workers=0, records=source, stream=Log(), dry_run=True)
    text = "".join(out)
    assert f"--records: {len(kept)} finished cell(s) would be imported" in text
    assert f"{len(kept)} already done ({len(kept)} of them by --records), 2 to run" in text
    assert not any(c.run_dir(fresh).exists() for c in cells) and not _calls(fresh)  # the dry run wrote nothing
    out.clear()
    again, _ = run_benchmark(fresh, datasets=["toy_a"], budgets=[2, "all"], preset="demo", cell_fn=fake_cell_fn,
                             prepare_fn=prepare_with_hash, method_classes=METHODS, progress=True, leaderboard=False,
                             workers=0, records=source, stream=Log())
    text = "".join(out)
    assert f"--records: {len(kept)} finished cell(s) imported" in text
    assert "recorded on other data" in text and other.key in text
    assert "1 imported record(s) of toy_a were made with another plan (plan hash feedfacefeedface; here " in text
    assert again.skipped == len(kept) and again.done == 2  # the failed and the other-data cells ran here
    assert len(_calls(fresh)) == 2
    for c in kept:
        assert (c.run_dir(fresh) / "IMPORTED.json").is_file()
        assert json.loads((fresh / "results" / f"{c.key}.json").read_text()) == \
            json.loads((source / f"{c.key}.json").read_text())
    # imported cells are finished cells from now on, also without --records; --rerun runs them again
    third, _ = _run(fresh, workers=0, datasets=["toy_a"], budgets=[2, "all"])
    assert third.skipped == len(cells) and len(_calls(fresh)) == 2
    fourth, _ = _run(fresh, workers=0, datasets=["toy_a"], budgets=[2, "all"], rerun=True, records=source)
    assert fourth.done == len(cells) and len(_calls(fresh)) == 2 + len(cells)


def test_records_folder_must_exist(wd, capsys):
    assert run_command(wd, datasets=["toy_a"], preset="demo", records=str(wd / "nope")) == 2
    assert "nope is not a folder of result records" in capsys.readouterr().err


def test_dry_run_lists_the_cells_to_run_and_trains_nothing(wd, capsys):
    _, cells = _run(wd, workers=0, datasets=["toy_a"], budgets=[2])
    lost = cells[0]
    (lost.run_dir(wd) / "DONE").unlink()
    calls = len(_calls(wd))
    capsys.readouterr()
    summary, grid = _run(wd, workers=0, datasets=["toy_a", "toy_b"], budgets=[2], dry_run=True)
    err = capsys.readouterr().err
    assert len(grid) == 2 * len(cells) and summary.done == 0 and summary.skipped == len(cells) - 1
    assert f"dry run: {len(grid)} cells, {len(cells) - 1} already done, {len(cells) + 1} to run" in err
    assert "toy_b" in err and lost.method in err and "cell-hours" in err
    # the pace of the cells already run here (fake records: 12 s of wall time each) scales the estimate
    assert f"at the pace of the {len(cells) - 1} cell(s) run in this workdir" in err
    assert len(_calls(wd)) == calls  # nothing trained
    assert not any(c.run_dir(wd).exists() for c in grid if c.dataset == "toy_b")


def test_dry_run_counts_a_shared_stage_once_per_seed(wd, capsys):
    """Budgets 2, 4 and all of a row with a 3600 s stage and 360 s cells, seeds 0 and 1: 6 x 360 s
    + 2 x 3600 s = 2.6 cell-hours (each cell counting the stage would be 6.6), and the total says
    how much of it is the stage."""
    _run(wd, methods={"staged": Staged}, datasets=["toy_a"], budgets=[2, 4, "all"], seeds=[0, 1], workers=1,
         dry_run=True)
    err = capsys.readouterr().err
    assert "dry run: 6 cells, 0 already done, 6 to run" in err
    assert "estimated 2.6 cell-hours" in err
    assert "of which shared stages 2.0 cell-hours, counted once per (dataset, preset, configuration, seed)" in err


def test_dry_run_flag_reaches_the_runner():
    from medseg_bench.cli import build_parser

    args = build_parser().parse_args(["run", "--dry-run", "--records", "leaderboards/results"])
    assert args.dry_run is True and args.records == "leaderboards/results"


class _SerialExecutor:
    """One task at a time, run inline; remembers the start order."""

    name, capacity, num_threads, device = "serial", 1, 1, None

    def __init__(self):
        self.order, self._done = [], []

    def start(self):
        pass

    def submit(self, tasks):
        for t in tasks:
            self.order.append(t.cell)
            self._done.append((t, fake_cell_fn(t.workdir, t.cell.dataset, t.cell.method, t.cell.budget,
                                               t.cell.seed, preset=t.cell.preset, config=t.cell.configuration)))

    def poll(self, timeout):
        done, self._done = self._done, []
        return done

    def running(self):
        return len(self._done)

    def shutdown(self, cancel=False):
        pass


def test_cells_run_seed_by_seed_longest_first_within_a_seed(tmp_path):
    from medseg_bench.bench.grid import Cell
    from medseg_bench.bench.runner import run_cells

    cells = [Cell("toy_a", "demo", "2d", m, b, s) for s in (2, 0, 1) for m in ("long", "short") for b in (2, 4)]
    estimates = {c: (100.0 if c.method == "long" else 1.0) + c.budget for c in cells}
    ex = _SerialExecutor()
    summary = run_cells(tmp_path, cells, ex, estimates=estimates, progress=False, poll_s=0.0)
    assert summary.ok and summary.done == len(cells)
    assert [c.seed for c in ex.order] == [0] * 4 + [1] * 4 + [2] * 4
    assert [(c.method, c.budget) for c in ex.order[:4]] == [("long", 4), ("long", 2), ("short", 4), ("short", 2)]


class _PairExecutor(_SerialExecutor):
    """Two tasks at a time, run inline."""

    capacity = 2


def test_progress_bar_shows_how_many_cells_are_running(tmp_path):
    import io

    from medseg_bench.bench.grid import Cell
    from medseg_bench.bench.runner import run_cells

    cells = [Cell("toy_a", "demo", "2d", "unsup", 0, s) for s in range(4)]
    stream = io.StringIO()
    summary = run_cells(tmp_path, cells, _PairExecutor(), progress=True, stream=stream, poll_s=0.0)
    out = stream.getvalue()
    assert summary.ok and "cells: 4/4" in out
    assert "running 2" in out  # the count once a wave of two is submitted, not the gap between two cells
    assert out.count("  done   ") == 4


def test_finished_cells_under_another_plan_are_reported(wd):
    """A re-planned dataset (new planner rules, new plan hash): its finished cells are skipped as usual,
    but the runner says they were made under another plan instead of mixing them in silently."""
    from medseg_bench.planning.plans_file import record_plan_hash

    summary, cells = _run(wd, workers=0, datasets=["toy_a"], budgets=[2])
    assert summary.ok
    plans = json.loads((wd / "preprocessed" / "toy_a" / "plans.json").read_text())
    for c in cells:  # the fake engine records no plan hash: stamp the current one, and an old one on one cell
        rec = json.loads((c.run_dir(wd) / "record.json").read_text())
        rec["provenance"]["plan_hash"] = record_plan_hash(plans) if c is not cells[0] else "0123456789abcdef"
        (c.run_dir(wd) / "record.json").write_text(json.dumps(rec))
    out = []

    class Log:
        def write(self, s):
            out.append(s)

        def flush(self):
            pass

    for dry in (True, False):
        out.clear()
        again, _ = run_benchmark(wd, datasets=["toy_a"], budgets=[2], preset="demo", cell_fn=fake_cell_fn,
                                 prepare_fn=fake_prepare, method_classes=METHODS, progress=True, leaderboard=False,
                                 workers=0, stream=Log(), dry_run=dry)
        text = "".join(out)
        assert "1 finished cell(s) of toy_a were made under another plan (plan hash 0123456789abcdef; here " in text
        assert "--rerun" in text
    assert again.skipped == len(cells)
