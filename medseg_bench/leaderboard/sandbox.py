"""The submission's own process: a clean environment, a staged workdir and an audit hook on every open.

Threat model (also in the README): this keeps an honest-but-careless or a naive cheating method away
from test labels and beyond-budget labels. It is *not* an OS sandbox: the child runs as the same OS
user, so native code (ctypes, a C extension, a spawned shell) can still read any file that user can.
Only a private test split generated on the leaderboard host (``leaderboard --add BUNDLE
--private-seed-file FILE``, :mod:`medseg_bench.leaderboard.private`) cannot be gamed by reading files.

What the child enforces (:class:`OpenGuard`, a :func:`sys.addaudithook` on ``open`` events, which
``builtins.open``, ``io.open``, ``os.open`` and ``numpy.load`` raise):

* no file outside an allow-list of roots (the stage, the Python installation, ``sys.path`` entries,
  system folders) may be opened, and no ``/proc/<pid>`` other than the child's own (no sniffing of
  the parent's command line or environment);
* no label file (``labelsTr``/``labelsTs``/``instances*`` entries, ``*_seg.npy``/``*_inst.npy``) may be
  opened unless its case is in the current cell's budget, wherever it lies;
* no new process may be started (``subprocess``, ``os.system``, ``os.exec*``, ``os.posix_spawn``,
  ``os.spawn*``): a spawned program would not be watched;
* no symbolic or hard link may be made (a prediction file linked to a guessed path of the real
  workdir's labels would be read by the ``submit`` process when it writes the bundle);

a refused open raises :class:`PermissionError` naming the file *and* is recorded, so a method that
swallows the exception still fails its cell with the file named.

Known gaps besides native code: the allow-list holds every ``sys.path`` folder, so a workdir inside
one (e.g. ``./medseg_work`` in a checkout installed in editable mode) has its non-label files (images,
records) readable; label files are refused by name wherever they lie. The hook itself lives in the
method's process, so a method that searches the interpreter for it (``gc``) can switch it off.
"""

from __future__ import annotations

import os
import platform
import re
import sys
import tempfile
from pathlib import Path

__all__ = ["OpenGuard", "clean_environment", "default_roots", "label_case", "prewarm"]

LABEL_DIRS = ("labelsTr", "labelsTs", "instancesTr", "instancesTs", "labels", "instances")
LABEL_SUFFIXES = ("_seg.npy", "_inst.npy")
SYSTEM_ROOTS = ("/dev/", "/sys/", "/etc/", "/usr/", "/lib", "/opt/", "/bin/", "/sbin/", "/var/lib/")
ERROR_TAG = "SUBMISSION ERROR: "  # what the child prints before a refusal's message (exit status 3)
LINK_EVENTS = ("os.symlink", "os.link")
SPAWN_EVENTS = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "pty.spawn")
_PROC_PID = re.compile(r"^/proc/(\d+)(/|$)")
# environment variables passed to the child; everything else (MEDSEG_*, PWD, OLDPWD, HOME, ...) is dropped
KEEP_ENV = ("PATH", "PYTHONPATH", "VIRTUAL_ENV", "LANG", "LC_ALL", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
            "CUDA_VISIBLE_DEVICES", "PYTHONHASHSEED")


def clean_environment(stage: Path) -> dict:
    """The child's environment: a few neutral variables; ``HOME``, ``TMPDIR`` and ``PWD`` inside the stage."""
    env = {k: os.environ[k] for k in KEEP_ENV if k in os.environ}
    for name, sub in (("HOME", "home"), ("TMPDIR", "tmp")):
        (Path(stage) / sub).mkdir(parents=True, exist_ok=True)
        env[name] = str(Path(stage) / sub)
    env["PWD"] = str(stage)
    return env


def prewarm() -> None:
    """Before the guard is armed: the library set-up that starts programs (``git`` for the record's
    commit, ``uname``, matplotlib's ``fc-list`` when it builds its font cache in the stage's ``HOME``),
    so that the engine's own use of them later is not refused."""
    from ..training.provenance import git_commit

    git_commit()
    platform.platform()
    platform.processor()
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.font_manager  # noqa: F401
    except ImportError:
        pass


def label_case(path: str) -> str | None:
    """The case id when ``path`` names a label file (raw label folder entry or preprocessed seg), else None."""
    p = Path(path)
    for suffix in LABEL_SUFFIXES:
        if p.name.endswith(suffix):
            return p.name[: -len(suffix)]
    if p.parent.name in LABEL_DIRS:
        return p.name.split(".")[0]
    return None


class OpenGuard:
    """Audit hook refusing opens outside ``roots`` and of label files not in ``allowed_cases``.

    ``free_roots``: folders where any label may be opened (the contract check's synthetic data, which
    the contract check polices itself). Disarmed until :meth:`arm`; an audit hook cannot be removed,
    so :meth:`disarm` only switches it off.
    """

    def __init__(self, roots, free_roots=()):
        self.roots = [os.path.realpath(r) for r in roots if r]
        self.free_roots = [os.path.realpath(r) for r in free_roots]
        self.allowed_cases: set[str] = set()
        self.violations: list[str] = []
        self.armed = False
        sys.addaudithook(self._hook)

    def arm(self, allowed_cases=()) -> None:
        self.allowed_cases, self.armed = set(allowed_cases), True

    def disarm(self) -> None:
        self.armed = False

    @staticmethod
    def _under(path: str, roots) -> bool:
        return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)

    def check(self, path: str) -> str | None:
        """Why opening ``path`` is refused, or None."""
        real = os.path.realpath(path)
        m = _PROC_PID.match(real)
        if m and int(m.group(1)) != os.getpid():
            return f"{path}: another process's /proc entry (the submission may not inspect its parent)"
        if real.startswith("/proc/"):
            return None
        if self._under(real, self.free_roots):
            return None
        case = label_case(real)
        if case is not None and case not in self.allowed_cases:
            return f"{path}: label file of case {case!r}, which is not in this cell's labelled budget"
        if not self._under(real, self.roots) and not real.startswith(SYSTEM_ROOTS):
            return f"{path}: outside the submission's staged workdir"
        return None

    def summary(self, limit: int = 8) -> str:
        """The distinct violations so far, one per line (at most ``limit``, then a count)."""
        seen = list(dict.fromkeys(self.violations))
        more = f"\n  ... and {len(seen) - limit} more" if len(seen) > limit else ""
        return "\n  ".join(seen[:limit]) + more

    def _refuse(self, why: str):
        self.violations.append(why)
        raise PermissionError(f"refused by the submission guard: {why}")

    def _hook(self, event: str, args) -> None:
        if not self.armed:
            return
        if event in SPAWN_EVENTS:
            self._refuse(f"{event}({str(args[0] if args else '')[:80]!r}): a submission may not start programs")
        if event in LINK_EVENTS:
            self._refuse(f"{event}({str(args[0] if args else '')[:120]!r}): a submission may not make links")
        if event != "open" or not args or not isinstance(args[0], (str, bytes, os.PathLike)):
            return
        why = self.check(os.fsdecode(args[0]))
        if why:
            self._refuse(why)


def default_roots(stage: Path) -> list[str]:
    """The stage, the Python installation, the ``sys.path`` folders and this package's own folder
    (code the child may import; an editable install finds ``medseg_bench`` through an import hook,
    not through ``sys.path``, so its source folder must be named here)."""
    roots = [str(stage), sys.prefix, sys.base_prefix, sys.exec_prefix, tempfile.gettempdir()]
    roots += [p for p in sys.path if p and os.path.isdir(p)]
    roots.append(str(Path(__file__).resolve().parents[1]))  # .../medseg_bench (the package, not the repo)
    return roots
