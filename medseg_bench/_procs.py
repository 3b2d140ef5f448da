"""Worker processes never outlive the command that started them.

:func:`die_with_parent` (called first thing in every pool worker) asks Linux to SIGKILL the worker
when its parent dies (``prctl(PR_SET_PDEATHSIG)``, via ctypes), so a SIGKILLed ``medseg-bench`` leaves
no orphans; elsewhere a daemon thread polls the parent's pid once a second and exits the worker.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

__all__ = ["die_with_parent"]

PR_SET_PDEATHSIG = 1


def _watch(parent: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)


def die_with_parent() -> None:
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0:
                if os.getppid() != parent:  # the parent died before prctl took effect
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass
    threading.Thread(target=_watch, args=(parent,), daemon=True, name="parent-watch").start()
