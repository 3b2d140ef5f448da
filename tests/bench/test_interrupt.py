"""A grid killed mid-run (whole process group, SIGKILL) resumes where it stopped: finished cells are not
run again, the rest are."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

from bench_fakes import toy_dataset

HERE = Path(__file__).resolve().parent

SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {here!r})
    from bench_fakes import METHODS, fake_cell_fn, fake_prepare
    from medseg_bench.bench import run_benchmark
    if __name__ == "__main__":  # spawned workers re-import this file
        run_benchmark({wd!r}, datasets=["toy_a", "toy_b"], budgets=[0, 2, "all"], preset="demo",
                      cell_fn=fake_cell_fn, prepare_fn=fake_prepare, method_classes=METHODS, workers=2,
                      progress=False, leaderboard=False, extra={{"sleep": 1.0}})
""")


def _cells_called(wd: Path) -> Counter:
    log = wd / "calls.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return Counter(" ".join(line.split()[:4]) for line in lines)


def test_killed_grid_resumes(tmp_path):
    toy_dataset(tmp_path, "toy_a")
    toy_dataset(tmp_path, "toy_b")
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(here=str(HERE), wd=str(tmp_path)))
    proc = subprocess.Popen([sys.executable, str(script)], start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list((tmp_path / "results").glob("toy*.json"))) < 3:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the runner and its workers, mid-grid
    proc.wait(timeout=30)
    done_before = {p.stem for p in (tmp_path / "results").glob("toy*.json")}
    assert 3 <= len(done_before) < 10

    subprocess.run([sys.executable, str(script)], check=True, timeout=120)
    results = {p.stem for p in (tmp_path / "results").glob("toy*.json")}
    assert len(results) == 10  # the whole grid is finished now
    calls = _cells_called(tmp_path)
    assert len(calls) == 10
    for key in done_before:  # cells finished before the kill ran exactly once
        ds, _, _, method, b, s = key.split("__")
        assert calls[f"{ds} {method} {b[1:]} {s[1:]}"] == 1, key
    assert sum(calls.values()) <= 10 + 2  # at most the two interrupted cells ran twice
