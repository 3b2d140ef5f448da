"""Two runners on one workdir at the same time never run a cell twice and leave every record readable
(per-cell lock, atomic writes); a record truncated on disk is detected and its cell redone (issue 21)."""

import json
import subprocess
import sys

from bench_fakes import toy_dataset
from test_interrupt import HERE, SCRIPT, _cells_called


def _start(script, tmp_path, name):
    log = open(tmp_path / f"{name}.log", "w")
    return subprocess.Popen([sys.executable, str(script)], stdout=log, stderr=subprocess.STDOUT), tmp_path / f"{name}.log"


def test_two_runners_on_one_workdir_run_each_cell_once(tmp_path):
    toy_dataset(tmp_path, "toy_a")
    toy_dataset(tmp_path, "toy_b")
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(here=str(HERE), wd=str(tmp_path)))
    (a, log_a), (b, log_b) = _start(script, tmp_path, "a"), _start(script, tmp_path, "b")
    assert a.wait(timeout=180) == 0 and b.wait(timeout=180) == 0
    calls = _cells_called(tmp_path)
    assert len(calls) == 10 and set(calls.values()) == {1}, calls  # no cell ran twice
    records = sorted((tmp_path / "results").glob("toy*.json"))
    assert len(records) == 10
    for p in records:
        assert json.loads(p.read_text())["status"] == "done"  # none corrupted
    said = log_a.read_text() + log_b.read_text()
    assert "held by another runner" in said  # the second runner said it waits for a cell or dataset


def test_truncated_record_is_redone_not_read(tmp_path):
    toy_dataset(tmp_path, "toy_a")
    toy_dataset(tmp_path, "toy_b")
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(here=str(HERE), wd=str(tmp_path)))
    subprocess.run([sys.executable, str(script)], check=True, timeout=180, capture_output=True)
    victim = sorted((tmp_path / "results").glob("toy*.json"))[0]
    # truncate both copies of one cell's record: the results copy and the run folder's own
    ds, preset, config, method, b, s = victim.stem.split("__")
    run = tmp_path / "runs" / ds / preset / config / method / f"budget_{b[1:]}" / f"seed_{s[1:]}" / "record.json"
    assert run.is_file(), run
    for p in (victim, run):
        p.write_text(p.read_text()[:40])
    out = subprocess.run([sys.executable, str(script)], check=True, timeout=180, capture_output=True, text=True)
    assert "the cell is run again" in out.stderr, out.stderr
    calls = _cells_called(tmp_path)
    assert calls[f"{ds} {method} {b[1:]} {s[1:]}"] == 2  # redone
    assert sum(calls.values()) == 11                     # and nothing else
    assert json.loads(victim.read_text())["status"] == "done"
