"""A grid killed mid-run (whole process group, SIGKILL) resumes where it stopped: finished cells are not
run again, the rest are. Ctrl-C or SIGTERM to the runner stops it cleanly."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest
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


def _sigint_default():
    """A shell starts background jobs (e.g. CI launched with `&`) with SIGINT ignored and children inherit
    that; these tests are about a foreground Ctrl-C, so the child gets SIGINT's default disposition back."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _cells_called(wd: Path) -> Counter:
    log = wd / "calls.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return Counter(" ".join(line.split()[:4]) for line in lines)


def test_killed_grid_resumes(tmp_path):
    toy_dataset(tmp_path, "toy_a")
    toy_dataset(tmp_path, "toy_b")
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(here=str(HERE), wd=str(tmp_path)))
    proc = subprocess.Popen([sys.executable, str(script)], start_new_session=True, preexec_fn=_sigint_default)
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


CLI_SCRIPT = textwrap.dedent("""
    import functools
    import sys
    sys.path.insert(0, {here!r})
    from bench_fakes import METHODS, fake_cell_fn, fake_prepare
    import medseg_bench.bench.cli as bench_cli
    from medseg_bench.cli import main
    if __name__ == "__main__":  # spawned workers re-import this file
        bench_cli.run_benchmark = functools.partial(
            bench_cli.run_benchmark, cell_fn=fake_cell_fn, prepare_fn=fake_prepare, method_classes=METHODS,
            progress=False, leaderboard=False, extra={{"sleep": {sleep}}})
        sys.exit(main(["run", "--workdir", {wd!r}, "--datasets", "toy_a", "toy_b", "--budgets", "0", "2", "all",
                       "--preset", "demo", "--workers", "2"]))
""")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\\nState:\\tZ" not in state  # a zombie has exited


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_to_the_runner_stops_it_and_its_workers_and_a_rerun_resumes(tmp_path, sig):
    """Ctrl-C (SIGINT) and ``kill PID`` (SIGTERM, the Ctrl-C of a background job) sent to the `run`
    process alone: it cancels its workers, exits 130 within seconds, and a re-run finishes the grid."""
    toy_dataset(tmp_path, "toy_a")
    toy_dataset(tmp_path, "toy_b")
    script = tmp_path / "run_cli.py"
    script.write_text(CLI_SCRIPT.format(here=str(HERE), wd=str(tmp_path), sleep=60.0))
    proc = subprocess.Popen([sys.executable, str(script)], start_new_session=True, preexec_fn=_sigint_default)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len((tmp_path / "calls.log").read_text().splitlines()
                                                   if (tmp_path / "calls.log").exists() else []) < 2:
            time.sleep(0.2)
        workers = [int(line.split("pid=")[1].split()[0]) for line in (tmp_path / "calls.log").read_text().splitlines()]
        assert len(workers) == 2 and all(_alive(p) for p in workers)  # two cells sleeping in two workers
        t0 = time.monotonic()
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 130
        assert time.monotonic() - t0 < 20
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in workers):
            time.sleep(0.1)
        assert not any(_alive(p) for p in workers)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert not list((tmp_path / "results").glob("toy*.json"))  # the two cancelled cells left no record

    script.write_text(CLI_SCRIPT.format(here=str(HERE), wd=str(tmp_path), sleep=0.0))
    done = subprocess.run([sys.executable, str(script)], timeout=120)
    assert done.returncode == 0
    assert len(list((tmp_path / "results").glob("toy*.json"))) == 10
