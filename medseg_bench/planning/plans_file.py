"""Reading and writing ``plans.json`` / ``fingerprint.json``, and spotting hand edits.

``plans.json`` is meant to be read and edited by people. Every plan the planner writes carries
``content_hash``, the SHA-256 of its canonical JSON (sorted keys, compact separators, the hash field
itself left out). When the file's content no longer matches its hash, somebody edited it: re-planning
then keeps it and writes its own proposal next to it as ``plans.proposed.json`` (``--force``
overwrites). Reformatting the file (indentation, key order) is not an edit.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

__all__ = [
    "PLANS_FILE",
    "FINGERPRINT_FILE",
    "PROPOSED_FILE",
    "content_hash",
    "is_hand_edited",
    "load_plans",
    "read_json",
    "record_plan_hash",
    "stamp",
    "write_json_atomic",
]

PLANS_FILE = "plans.json"
FINGERPRINT_FILE = "fingerprint.json"
PROPOSED_FILE = "plans.proposed.json"
REQUIRED_PLAN_KEYS = ("plans_version", "dataset", "dims", "num_channels", "labels", "transpose_forward",
                      "transpose_backward", "configurations", "presets")


def write_json_atomic(path: str | os.PathLike, data: dict) -> None:
    """Write ``data`` as indented JSON through a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def read_json(path: str | os.PathLike) -> dict:
    """Read a JSON object; errors name the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: malformed JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def content_hash(plans: dict) -> str:
    """SHA-256 of the canonical JSON of ``plans`` without its ``content_hash`` field."""
    body = {k: v for k, v in plans.items() if k != "content_hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def record_plan_hash(plans: dict) -> str:
    """The ``provenance.plan_hash`` of a result record: 16 hex digits of the SHA-256 of the whole plan
    (``content_hash`` included) as sorted-key JSON. Cells run with the same plans.json share it."""
    return hashlib.sha256(json.dumps(plans, sort_keys=True, default=str).encode()).hexdigest()[:16]


def stamp(plans: dict) -> dict:
    """``plans`` with its ``content_hash`` set."""
    out = {k: v for k, v in plans.items() if k != "content_hash"}
    out["content_hash"] = content_hash(out)
    return out


def is_hand_edited(plans: dict) -> bool:
    """True when ``plans`` no longer matches the hash the planner stamped on it (or has none)."""
    return plans.get("content_hash") != content_hash(plans)


def load_plans(preprocessed_dir: str | os.PathLike) -> dict:
    """``<preprocessed_dir>/plans.json`` (``preprocessed_dir`` may also be the file itself).

    Raises:
        FileNotFoundError: no plans yet (the message says how to make them).
        ValueError: malformed JSON or a required key missing (the message names the file).
    """
    path = Path(preprocessed_dir)
    if path.is_dir() or not path.suffix:
        path = path / PLANS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no plans; run `medseg-bench plan <dataset>` first")
    plans = read_json(path)
    missing = [k for k in REQUIRED_PLAN_KEYS if k not in plans]
    if missing:
        raise ValueError(f"{path}: missing key(s) {', '.join(missing)}")
    return plans
