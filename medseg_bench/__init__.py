"""medseg_bench: a self-configuring benchmark suite for unsupervised and semi-supervised medical image
segmentation (nnU-Net-style planning, controlled label budgets, exact metrics, leaderboards)."""

__version__ = "0.1.0"

import os as _os

# How torch's OpenMP worker threads wait between parallel regions. libgomp reads this once, when
# torch is first imported, so it is decided here (a user's own OMP_WAIT_POLICY / GOMP_SPINCOUNT wins).
# Measured on the 2-core reference machine, one 2-thread quick-preset DynUNet step (batch 7, 128^2):
#   idle:                      spin 10k 0.25 s | passive 0.30-0.32 s | libgomp default 0.25 s
#   one other busy process:    spin 10k 0.66 s | passive 0.49 s     | libgomp default 1.14 s
# So: a short bounded spin when the machine is idle at start-up, passive waiting when other processes
# are running. "Running" is the kernel's instantaneous count of runnable tasks (/proc/loadavg's 4th
# field, median of a few samples, this process excluded): the 1-minute load average would still count
# a training that just finished, and switch the next one to passive waiting.


def _others_running(samples: int = 5, pause_s: float = 0.004) -> float | None:
    import time

    counts = []
    for i in range(samples):
        try:
            with open("/proc/loadavg") as f:
                counts.append(int(f.read().split()[3].split("/")[0]) - 1)
        except (OSError, ValueError, IndexError):
            return None
        if i + 1 < samples:
            time.sleep(pause_s)
    return sorted(counts)[len(counts) // 2]


def _omp_wait_policy() -> None:
    if "OMP_WAIT_POLICY" in _os.environ or "GOMP_SPINCOUNT" in _os.environ:
        return
    others = _others_running()
    if others is None:  # no /proc: fall back to the load average, else assume busy
        try:
            others = _os.getloadavg()[0]
        except OSError:  # pragma: no cover
            others = float("inf")
    if others >= 0.5 * (_os.cpu_count() or 1):
        _os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    else:
        _os.environ["GOMP_SPINCOUNT"] = "10000"


_omp_wait_policy()
