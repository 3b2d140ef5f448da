"""Issue 21: a pool worker that dies stops the map within seconds with a message naming the unfinished
tasks, and leaves no worker process behind."""

import os
import time

import pytest

from medseg_bench._procs import pool_map
from medseg_bench.errors import InputError


def test_a_dying_worker_stops_the_map_and_names_the_tasks():
    t0 = time.monotonic()
    with pytest.raises(InputError, match="a worker process died") as info:
        pool_map(os._exit, [3, 4], workers=2, describe=lambda t: f"file_{t}.nii.gz")  # a native crash, in effect
    assert time.monotonic() - t0 < 30
    assert "file_3.nii.gz" in str(info.value)
    children = [p for p in os.listdir("/proc") if p.isdigit()
                and _ppid(p) == os.getpid() and "multiprocessing" in _cmdline(p)
                and "resource_tracker" not in _cmdline(p)]  # the tracker lives as long as this process
    assert not children


def test_results_in_order_and_exceptions_propagate():
    assert pool_map(abs, [-3, 2, -1], workers=2) == [3, 2, 1]
    with pytest.raises(TypeError):
        pool_map(abs, ["x", 1, 2], workers=2)


def _ppid(pid):
    try:
        return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


def _cmdline(pid):
    try:
        return open(f"/proc/{pid}/cmdline").read()
    except OSError:
        return ""
