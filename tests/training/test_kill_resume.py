"""SIGKILL mid-run + resume gives the same test metrics as an uninterrupted run (on a run that learns)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from medseg_bench.training import ensure_prepared, train_cell
from medseg_bench.workdir import Workdir

ITERATIONS = 60
KW = dict(preset="quick", iterations=ITERATIONS, num_threads=1, overrides={"checkpoint_every": 10, "log_every": 1})


def _dice(rec):
    return rec["metrics"]["mean"]["blob"]["dice"]


@pytest.mark.slow
def test_sigkill_and_resume_reproduces_metrics(tmp_path):
    from test_cell import _blob_raw

    wd = Workdir(tmp_path / "work")
    _blob_raw(wd.raw_dataset("blobs"), n_train=8, n_test=3)
    ensure_prepared(wd, "blobs", num_workers=1)
    ref = train_cell(wd, "blobs", "supervised", 4, 0, progress=False, **KW)
    assert _dice(ref) > 0.5, "the reference run must actually learn"

    # same cell under another seed folder name is not possible: use a second workdir sharing the data
    wd2 = Workdir(tmp_path / "work2")
    wd2.root.mkdir()
    os.symlink(wd.raw, wd2.raw)
    ensure_prepared(wd2, "blobs", num_workers=1)
    code = (
        "import sys; from medseg_bench.training import train_cell; "
        f"train_cell({str(wd2.root)!r}, 'blobs', 'supervised', 4, 0, progress=False, **{KW!r})"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = wd2.run_dir("blobs", "quick", ref["cell"]["configuration"], "supervised", 4, 0)
    log = run / "train_log.jsonl"
    deadline = time.time() + 300
    killed_at = None
    while time.time() < deadline and proc.poll() is None:
        if log.is_file():
            its = [json.loads(x).get("iteration", 0) for x in log.read_text().splitlines() if x.strip()]
            if its and its[-1] >= 35:  # past the checkpoints at 10, 20, 30: kill mid-way to 40
                proc.send_signal(signal.SIGKILL)
                killed_at = its[-1]
                break
        time.sleep(0.05)
    proc.wait(timeout=60)
    assert killed_at is not None and killed_at < ITERATIONS, "the run finished before it could be killed"
    assert (run / "checkpoint_latest.pt").is_file() and not (run / "DONE").exists()
    resumed = train_cell(wd2, "blobs", "supervised", 4, 0, progress=False, resume=True, **KW)
    print(f"killed at iteration {killed_at}; Dice uninterrupted {_dice(ref):.4f}, resumed {_dice(resumed):.4f}")
    assert round(_dice(resumed), 3) == round(_dice(ref), 3)
    assert ref["provenance"]["resumed_from"] == 0
    assert 0 < resumed["provenance"]["resumed_from"] <= killed_at  # the last checkpoint before the kill
    for a, b in zip(ref["metrics"]["per_case"], resumed["metrics"]["per_case"]):
        assert a["classes"]["blob"]["dice"] == pytest.approx(b["classes"]["blob"]["dice"], abs=5e-4)
    logged = [json.loads(x) for x in log.read_text().splitlines()]
    assert [e["iteration"] for e in logged if "iteration" in e and "loss" in e] == list(range(1, ITERATIONS + 1))
