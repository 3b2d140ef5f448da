"""Provenance of a result: code version, git commit, environment, memory (ARCHITECTURE.md)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path

import torch

__all__ = ["environment", "git_commit", "json_hash", "peak_memory_mb"]


def json_hash(obj) -> str:
    """Short sha256 of a JSON-serialisable object (sorted keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def git_commit() -> str | None:
    """The commit the package runs from (``+dirty`` when tracked package files differ), or None."""
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


def environment(device: torch.device, num_threads: int) -> dict:
    import monai
    import numpy

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
    return env


def peak_memory_mb(device: torch.device) -> float:
    """Peak resident memory of this process (CPU), or peak allocated GPU memory (CUDA), in MiB."""
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
