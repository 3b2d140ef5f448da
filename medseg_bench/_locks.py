"""Exclusive inter-process locks on one workdir (``flock`` on a lock file).

Used per benchmark cell (two ``medseg-bench run`` on one workdir never run a cell twice) and per
dataset preparation (plan + preprocess). The kernel drops a ``flock`` when its holder dies, SIGKILL
included, so a stale lock file never blocks anyone. The holder's pid is written into the file so that a
waiting process can say whom it waits for.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from pathlib import Path

__all__ = ["exclusive_lock"]


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, what: str):
    """Hold an exclusive lock on ``path`` (created if absent) for the ``with`` block.

    When another process holds it, one line ``waiting for <what> held by another runner (pid N) ...``
    goes to stderr and the call blocks until the holder releases it (or dies).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            print(f"waiting for {what} held by another runner (pid {holder}) ...", file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
