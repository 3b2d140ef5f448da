"""Issue 21: two runners on one workdir never run a cell twice (per-cell lock; the second waits and says
so) and leave every record valid; a SIGKILLed runner takes its workers with it; a truncated record is
detected and its cell redone, never read as a result."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

from bench_fakes import fake_cell_fn, toy_dataset

from medseg_bench.bench.cells import CellTask, execute_cell
from medseg_bench.bench.grid import Cell
from medseg_bench.bench.results import record_path

HERE = Path(__file__).resolve().parent

SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {here!r})
    from bench_fakes import Semi, Sup, fake_cell_fn, fake_prepare
    from medseg_bench.bench import run_benchmark
    if __name__ == "__main__":  # spawned workers re-import this file
        run_benchmark({wd!r}, datasets=["toy_a"], budgets=[2, "all"], preset="demo", cell_fn=fake_cell_fn,
                      prepare_fn=fake_prepare, method_classes={{"semi": Semi, "supervised": Sup}}, workers=1,
                      progress=False, leaderboard=False, extra={{"sleep": {sleep}}})
""")


def _start(script):
    return subprocess.Popen([sys.executable, str(script)], stderr=subprocess.PIPE, text=True, start_new_session=True)


def test_two_runners_on_one_workdir_run_each_cell_once(tmp_path):
    toy_dataset(tmp_path, "toy_a")
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(here=str(HERE), wd=str(tmp_path), sleep=1.5))
    a, b = _start(script), _start(script)
    try:
        errs = [p.communicate(timeout=120)[1] for p in (a, b)]
    finally:
        for p in (a, b):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    assert a.returncode == 0 and b.returncode == 0, errs
    calls = Counter(" ".join(line.split()[:4]) for line in (tmp_path / "calls.log").read_text().splitlines())
    assert len(calls) == 4 and set(calls.values()) == {1}, calls  # 2 methods x 2 budgets, each run once
    assert any("waiting for cell" in e and "held by another runner (pid" in e for e in errs), errs
    for p in (tmp_path / "results").glob("toy_a*.json"):
        assert json.loads(p.read_text())["status"] == "done"


def _alive(pid):
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def test_sigkill_of_the_runner_alone_kills_its_workers(tmp_path):
    toy_dataset(tmp_path, "toy_a")
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(here=str(HERE), wd=str(tmp_path), sleep=60.0))
    proc = _start(script)
    try:
        log = tmp_path / "calls.log"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not (log.exists() and log.read_text().strip()):
            time.sleep(0.2)
        worker = int(log.read_text().split("pid=")[1].split()[0])
        assert _alive(worker)
        proc.send_signal(signal.SIGKILL)  # the runner only, not its process group
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(worker):
            time.sleep(0.1)
        assert not _alive(worker), "worker outlived the SIGKILLed runner"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)


def test_truncated_record_is_detected_and_the_cell_redone(tmp_path, capsys):
    toy_dataset(tmp_path, "toy_a")
    cell = Cell("toy_a", "demo", "2d", "supervised", 2, 0)
    task = CellTask(cell=cell, workdir=str(tmp_path), cell_fn=fake_cell_fn)
    assert execute_cell(task)["status"] == "done"
    for path in (record_path(tmp_path, cell), cell.run_dir(tmp_path) / "record.json"):
        text = path.read_text()
        path.write_text(text[: len(text) // 2])  # cut short on disk
    record = execute_cell(task)
    assert record["status"] == "done"
    assert "the cell is run again" in capsys.readouterr().err
    assert len((tmp_path / "calls.log").read_text().splitlines()) == 2  # it ran again
    assert json.loads(record_path(tmp_path, cell).read_text())["status"] == "done"  # whole again
