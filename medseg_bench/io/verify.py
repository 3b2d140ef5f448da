"""Validation of a raw dataset before any command works on it (``plan``, ``preprocess``, ``train``,
``run``, ``submit``): the checks and messages of ``medseg-bench datasets check``
(:func:`~.validate.check_dataset`), cached so that a valid dataset is checked once.

Cache: ``<workdir>/preprocessed/<dataset>/validation.json`` holds the fingerprint of the dataset
that passed: SHA-256 of ``dataset.json``'s bytes and of every other file's relative path, size (bytes)
and modification time (ns). Any added, removed, resized or touched file, or an edited dataset.json,
changes it and the dataset is checked again. Only a pass is cached; a failing dataset is re-checked
on every call. ``--no-verify`` on the CLI (environment ``MEDSEG_NO_VERIFY=1``, inherited by worker
processes) skips the check explicitly.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..errors import InvalidDatasetError
from .validate import check_dataset

__all__ = ["VALIDATION_FILE", "dataset_fingerprint", "verification_disabled", "verify_dataset"]

VALIDATION_FILE = "validation.json"
#: bump when the checks change, so that cached passes are re-checked
CHECKS_VERSION = 3
NO_VERIFY_ENV = "MEDSEG_NO_VERIFY"


def verification_disabled() -> bool:
    return os.environ.get(NO_VERIFY_ENV, "") not in ("", "0")


def dataset_fingerprint(folder: Path) -> str:
    """SHA-256 over dataset.json's content and every file's (relative path, size, mtime_ns)."""
    folder = Path(folder)
    h = hashlib.sha256(f"checks-v{CHECKS_VERSION}".encode())
    json_path = folder / "dataset.json"
    if json_path.is_file():
        h.update(json_path.read_bytes())
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs.sort()
        for name in sorted(files):
            p = Path(root) / name
            try:
                st = p.stat()
            except OSError:
                continue
            rel = os.fsencode(os.path.relpath(p, folder))
            h.update(rel + b"\0" + f"{st.st_size}:{st.st_mtime_ns}".encode() + b"\n")
    return h.hexdigest()


def verify_dataset(raw_dir, cache_dir=None, log=None) -> bool:
    """Raise :class:`~medseg_bench.errors.InvalidDatasetError` listing every problem of ``raw_dir``.

    Args:
        raw_dir: the raw dataset folder.
        cache_dir: where ``validation.json`` is kept (``<workdir>/preprocessed/<dataset>``); ``None``:
            no cache.
        log: optional ``str -> None`` for a "checking ..." line.

    Returns:
        ``True`` when the dataset was checked now, ``False`` when skipped (cached pass, or disabled).
    """
    if verification_disabled():
        return False
    raw_dir = Path(raw_dir)
    fingerprint = dataset_fingerprint(raw_dir)
    cache = Path(cache_dir) / VALIDATION_FILE if cache_dir is not None else None
    if cache is not None and cache.is_file():
        try:
            if json.loads(cache.read_text()).get("fingerprint") == fingerprint:
                return False
        except (OSError, ValueError):
            pass  # unreadable cache: check again
    if log:
        log(f"checking {raw_dir} (as `datasets check`; cached after a pass) ...")
    problems = check_dataset(raw_dir)
    if problems:
        raise InvalidDatasetError(raw_dir, problems)
    if cache is not None:
        from ..planning.plans_file import write_json_atomic

        cache.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(cache, {"fingerprint": fingerprint, "checks_version": CHECKS_VERSION, "status": "ok"})
    return True
