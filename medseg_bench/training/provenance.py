"""Provenance of a result: code version, git commit, environment, memory (ARCHITECTURE.md)."""

from __future__ import annotations

import functools
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

__all__ = ["environment", "git_commit", "peak_memory_mb", "speed_probe_ms"]


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit the package runs from (``+dirty`` when tracked package files differ), or None.

    Read once per process and then remembered: a benchmark worker runs the code it imported at its
    start, so a commit (or an edit) made in the checkout while a long grid runs must not relabel the
    records it writes afterwards. Workers call this when they start (``bench.cells.prepare_worker``)."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "diff", "--quiet", "HEAD", "--", "medseg_bench"],
                               capture_output=True, timeout=5).returncode != 0
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def speed_probe_ms(repeats: int = 10) -> float:
    """Milliseconds of a fixed CPU workload with this process's thread settings: forward and backward of
    one 3x3 convolution, 32 -> 32 channels, batch 2, 128 x 128 (about 1.8 GFLOP), best of ``repeats``
    after one warm-up; about 0.3 s in all. Stored with every CPU record so that training times measured
    on different machines (a reference benchmark run over several sessions) can be told apart: a
    machine with twice the probe time trains about twice as slowly. Uses its own generator, so the
    global random state (and with it the cell's result) is untouched."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 32, 128, 128, generator=gen)
    w = torch.randn(32, 32, 3, 3, generator=gen, requires_grad=True)
    best = float("inf")
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        torch.nn.functional.conv2d(x, w, padding=1).square().mean().backward()
        if i:
            best = min(best, time.perf_counter() - t0)
        w.grad = None
    return round(best * 1000, 2)


def environment(device: torch.device, num_threads: int) -> dict:
    """Software and machine facts for a record; on CPU with the CPU model and :func:`speed_probe_ms`."""
    import monai
    import numpy

    from ..planning.calibration import cpu_model

    env = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "monai": monai.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "device": str(device),
        "num_threads": num_threads,
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    else:
        env["cpu_model"] = cpu_model()
        env["speed_probe_ms"] = speed_probe_ms()
    return env


def peak_memory_mb(device: torch.device) -> float:
    """Peak resident memory of this process (CPU), or peak allocated GPU memory (CUDA), in MiB."""
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
