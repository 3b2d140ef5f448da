"""The results store: one JSON record per cell under ``<workdir>/results/`` (contracts.md).

``<workdir>/results/<cell key>.json`` holds the cell's record (``status`` ``done`` or ``failed``);
``<workdir>/results/_grid.json`` lists every cell a ``run`` asked for, so a leaderboard can show a cell
that never produced a record as *missing* instead of dropping it. Leaderboards read only this folder.

A cell is **done** when its run folder holds the engine's ``DONE`` marker; its record is then copied
here (again, if a crash came between the two). Writes are atomic (temp file + ``os.replace``).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import traceback
from datetime import datetime, timezone
from pathlib import Path

from .grid import Cell, budget_sort_key

__all__ = [
    "DONE_MARKER",
    "GRID_MANIFEST",
    "RECORD_VERSION",
    "RecordError",
    "cell_is_done",
    "empty_manifest",
    "environment_info",
    "failure_record",
    "git_commit",
    "import_records",
    "importable_records",
    "load_manifest",
    "load_records",
    "read_json",
    "read_manifest",
    "record_path",
    "reset_cell",
    "results_dir",
    "stale_done_cells",
    "sync_done_record",
    "update_manifest",
    "write_json_atomic",
    "write_record",
]

RECORD_VERSION = 1
DONE_MARKER = "DONE"
GRID_MANIFEST = "_grid.json"


class RecordError(ValueError):
    """A results record is malformed; the message names the file."""


def results_dir(workdir: Path) -> Path:
    return Path(workdir) / "results"


def record_path(workdir: Path, cell: Cell) -> Path:
    return results_dir(workdir) / f"{cell.key}.json"


def write_json_atomic(path: Path, obj) -> Path:
    """Write ``obj`` as indented JSON through a temp file in the same folder and ``os.replace``.

    Non-finite floats are written as JSON's de-facto ``Infinity``/``NaN`` tokens (Python's reader,
    and :func:`read_json`, accept them).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_json(path: Path):
    """Read a JSON file; a malformed file raises :class:`RecordError` naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RecordError(f"{path}: cannot read JSON ({exc})") from exc


def _validate(record, path: Path) -> dict:
    if not isinstance(record, dict):
        raise RecordError(f"{path}: a record must be a JSON object")
    if "cell" not in record or "status" not in record:
        raise RecordError(f"{path}: a record needs 'cell' and 'status' (see contracts.md)")
    try:
        Cell.from_dict(record["cell"])
    except (KeyError, ValueError, TypeError) as exc:
        raise RecordError(f"{path}: malformed 'cell' block ({exc})") from exc
    if record["status"] not in ("done", "failed"):
        raise RecordError(f"{path}: status must be 'done' or 'failed', not {record['status']!r}")
    return record


def write_record(workdir: Path, record: dict) -> Path:
    """Store a cell's record under ``results/`` (atomic). Returns its path."""
    cell = Cell.from_dict(record["cell"])
    return write_json_atomic(record_path(workdir, cell), record)


def load_records(folder: Path, errors: list[str] | None = None) -> list[dict]:
    """All records in a results folder, sorted by cell key (deterministic).

    Files starting with ``_`` or ``.`` are not records. A malformed record raises
    :class:`RecordError`, unless ``errors`` is a list: then its message is appended and it is skipped.
    """
    folder = Path(folder)
    out = []
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.json")):
        if path.name.startswith(("_", ".")):
            continue
        try:
            out.append(_validate(read_json(path), path))
        except RecordError as exc:
            if errors is None:
                raise
            errors.append(str(exc))
    return out


def cell_is_done(workdir: Path, cell: Cell) -> bool:
    """The engine wrote the cell's ``DONE`` marker (written last, atomically)."""
    return (cell.run_dir(workdir) / DONE_MARKER).is_file()


def sync_done_record(workdir: Path, cell: Cell) -> dict | None:
    """For a done cell, make sure ``results/`` holds its record; return it (``None`` if not done).

    The copy is refreshed when the run folder's ``record.json`` is newer (e.g. a crash between the
    engine's ``DONE`` and the runner's copy).
    """
    if not cell_is_done(workdir, cell):
        return None
    src = cell.run_dir(workdir) / "record.json"
    dst = record_path(workdir, cell)
    if dst.is_file() and (not src.is_file() or dst.stat().st_mtime >= src.stat().st_mtime):
        try:
            record = _validate(read_json(dst), dst)
            if record.get("status") == "done":
                return record
        except RecordError:
            pass  # truncated/corrupt copy: rebuilt from the run folder below, never read as a result
    try:
        if not src.is_file():
            raise RecordError(f"{src}: cell is marked DONE but its record.json is missing")
        record = _validate(read_json(src), src)
    except RecordError as exc:
        # the run's own record is unreadable (truncated on disk): the cell is not done; redo it
        print(f"warning: {exc}; the cell is run again", file=sys.stderr)
        (cell.run_dir(workdir) / DONE_MARKER).unlink(missing_ok=True)
        return None
    write_record(workdir, record)
    return record


IMPORTED_MARKER = "IMPORTED.json"


def _set_aside(run_dir: Path) -> None:
    """Move an existing run folder to ``<run folder>.previous`` (replacing an older one)."""
    import shutil

    if run_dir.exists():
        previous = run_dir.with_name(run_dir.name + ".previous")
        if previous.exists():
            shutil.rmtree(previous)
        os.replace(run_dir, previous)


def importable_records(workdir: Path, cells: list[Cell], source: Path,
                       dataset_hashes: dict[str, str | None] | None = None,
                       plan_hashes: dict[str, str | None] | None = None) -> tuple[dict[Cell, dict], list[str]]:
    """What :func:`import_records` would import, without writing anything: ``({cell: record}, warnings)``.

    A cell qualifies when ``source`` holds a *done* record for it, it is not done here yet, and the
    record's ``provenance.dataset_hash`` matches ``dataset_hashes`` (dataset name -> hash of the
    dataset in this workdir; a mismatch is a warning and the cell runs). ``plan_hashes`` (dataset name
    -> :func:`~medseg_bench.planning.plans_file.record_plan_hash` of its plans.json here): records made
    with another plan (another planner version, or a plan sized by ``plan --calibrate`` on another
    machine) still qualify — finished cells stay valid across commits — but are counted in one warning
    per dataset, so a mixed grid does not go unnoticed.
    """
    source = Path(source)
    if not source.is_dir():
        raise FileNotFoundError(f"--records: {source} is not a folder of result records")
    by_key = {Cell.from_dict(record["cell"]).key: record for record in load_records(source)}
    out: dict[Cell, dict] = {}
    warnings: list[str] = []
    other_plan: dict[str, set] = {}
    other_plan_count: dict[str, int] = {}
    for cell in cells:
        record = by_key.get(cell.key)
        if record is None or record.get("status") != "done" or cell_is_done(workdir, cell):
            continue
        prov = record.get("provenance") or {}
        want, have = (dataset_hashes or {}).get(cell.dataset), prov.get("dataset_hash")
        if want and have and want != have:
            warnings.append(f"{source / (cell.key + '.json')}: recorded on other data "
                            f"(dataset hash {have[:12]} != {want[:12]} here); not imported, the cell runs")
            continue
        out[cell] = record
        plan_here, plan_then = (plan_hashes or {}).get(cell.dataset), prov.get("plan_hash")
        if plan_here and plan_then and plan_here != plan_then:
            other_plan.setdefault(cell.dataset, set()).add(plan_then)
            other_plan_count[cell.dataset] = other_plan_count.get(cell.dataset, 0) + 1
    for ds in sorted(other_plan):
        warnings.append(f"{other_plan_count[ds]} imported record(s) of {ds} were made with another plan "
                        f"(plan hash {', '.join(sorted(other_plan[ds]))}; here {plan_hashes[ds]}): kept, but the "
                        "grid mixes schedules; --rerun recomputes them")
    return out, warnings


def import_records(workdir: Path, cells: list[Cell], source: Path,
                   dataset_hashes: dict[str, str | None] | None = None,
                   plan_hashes: dict[str, str | None] | None = None) -> tuple[int, list[str]]:
    """Count the grid's cells that ``source`` holds a *done* record for as finished (``run --records``).

    This is how a long grid (the CPU reference benchmark) accumulates across machines: the committed
    ``leaderboards/results/`` is imported into a fresh workdir, and only the cells it lacks are run.
    For each cell :func:`importable_records` accepts (its checks and warnings), the run folder receives
    the record (``record.json``), an ``IMPORTED.json`` note naming the source, and the ``DONE`` marker
    (last), so every later step (skipping, ``--rerun``, the leaderboard) treats it like a cell finished
    here. The folder has no checkpoint or predictions. Failed records are not imported (the cell runs
    again). Returns ``(number imported, warnings)``.
    """
    source = Path(source)
    chosen, warnings = importable_records(workdir, cells, source, dataset_hashes, plan_hashes)
    for cell, record in chosen.items():
        run_dir = cell.run_dir(workdir)
        _set_aside(run_dir)  # a partial run here is kept aside; the imported result wins
        write_json_atomic(run_dir / "record.json", record)
        write_json_atomic(run_dir / IMPORTED_MARKER, {"source": str(source.resolve()), "imported": _now()})
        write_json_atomic(run_dir / DONE_MARKER, {"imported": True})
        write_record(workdir, record)
    return len(chosen), warnings


def stale_done_cells(workdir: Path, cells: list[Cell], dataset_hashes: dict[str, str | None] | None = None,
                     plan_hashes: dict[str, str | None] | None = None) -> list[str]:
    """Warnings, one per dataset, for the grid's finished cells in ``workdir`` whose record was made on
    other data (``provenance.dataset_hash``) or under another plan (``provenance.plan_hash``; e.g.
    the planner's rules changed and the dataset was re-planned) than the ones here now.

    Such cells are skipped like every finished cell (a new commit does not invalidate results), so
    without this a re-planned grid would silently mix old and new schedules; the leaderboard says so
    too (:func:`medseg_bench.leaderboard.tables.mixed_plans_text`). ``run --rerun`` recomputes them.
    """
    other: dict[tuple[str, str], dict[str, int]] = {}
    for cell in cells:
        if not cell_is_done(workdir, cell):
            continue
        try:
            prov = read_json(cell.run_dir(workdir) / "record.json").get("provenance") or {}
        except (OSError, ValueError, AttributeError):
            continue
        for kind, want in (("data", (dataset_hashes or {}).get(cell.dataset)),
                           ("plan", (plan_hashes or {}).get(cell.dataset))):
            have = prov.get("dataset_hash" if kind == "data" else "plan_hash")
            if want and have and want != have:
                by = other.setdefault((cell.dataset, kind), {})
                by[have[:16]] = by.get(have[:16], 0) + 1
    out = []
    for (ds, kind), by in sorted(other.items()):
        n = sum(by.values())
        here = ((dataset_hashes if kind == "data" else plan_hashes) or {})[ds][:16]
        what = "on other data (dataset hash" if kind == "data" else "under another plan (plan hash"
        out.append(f"{n} finished cell(s) of {ds} were made {what} {', '.join(sorted(by))}; here {here}): "
                   "they are kept and skipped, so the grid mixes them with new cells (the leaderboard flags "
                   "mixed plans); `run --rerun` recomputes them")
    return out


def reset_cell(workdir: Path, cell: Cell) -> bool:
    """Make a finished cell run again (``run --rerun``). Returns whether it was done.

    The run folder moves to ``<run folder>.previous`` (replacing an older one), so training starts from
    scratch; the cell's record under ``results/`` stays until the new run replaces it, so a rerun that
    is killed loses nothing. Shared stages are handled by :func:`reset_shared_stages` (call it first).
    """
    run_dir = cell.run_dir(workdir)
    done = cell_is_done(workdir, cell)
    _set_aside(run_dir)
    return done


def finished_cells(workdir: Path, dataset: str, preset: str, seed: int) -> list[Cell]:
    """Every cell of ``(dataset, preset, seed)`` with a ``DONE`` run folder in ``workdir``, whatever grid made it
    (``*.previous`` folders are not cells)."""
    runs = Path(workdir) / "runs" / dataset / preset
    out = []
    for done in sorted(runs.glob(f"*/*/budget_*/seed_{int(seed)}/{DONE_MARKER}")) if runs.is_dir() else []:
        budget_dir = done.parent.parent
        try:
            cell = Cell(dataset, preset, budget_dir.parent.parent.name, budget_dir.parent.name,
                        budget_dir.name[len("budget_"):], seed)
        except ValueError:
            continue
        if cell.run_dir(workdir) == done.parent:
            out.append(cell)
    return out


def reset_shared_stages(workdir: Path, cells: list[Cell], shared_stages) -> list[str]:
    """The shared stages of a ``run --rerun`` of ``cells``; returns one log line per stage folder.

    A cached stage folder ``stages/<dataset>/<preset>/<name>/seed_<s>`` (``Method.shared_stages``:
    prefixes of ``name``) is the start of every finished cell that used it: every budget of a method,
    and every method declaring the same stage (``dae_anomaly`` and ``dae_finetune``). It is retrained
    only when **every** finished cell in the workdir that uses it is in the rerun: it then moves to
    ``seed_<s>.previous`` (replacing an older one, like run folders) and the first rerun cell that
    needs it computes it again. Otherwise it is kept, so that the rerun cells load the same stage as
    the finished cells outside the rerun and the leaderboard never mixes rows made from two different
    stages; the log line names those cells (rerun them too to retrain the stage).

    ``shared_stages``: ``method name -> tuple of stage-name prefixes``. A cell is counted as a user
    of a folder when its dataset, preset and seed match and its method declares a prefix of the
    folder's name, in any configuration (conservative: a stage is never retrained under a finished
    cell that may have used it). Call before :func:`reset_cell` (that removes the ``DONE`` markers
    the users are found by).
    """
    from ..workdir import Workdir

    root = Workdir(Path(workdir)).root
    rerun = set(cells)

    def uses(cell: Cell, name: str) -> bool:
        return any(name.startswith(p) for p in shared_stages(cell.method) or ())

    folders: dict[Path, tuple[str, str, int]] = {}
    for c in cells:
        stages = root / "stages" / c.dataset / c.preset
        for prefix in shared_stages(c.method) or ():
            for folder in sorted(stages.glob(f"{prefix}*/seed_{c.seed}")) if stages.is_dir() else []:
                folders[folder] = (c.dataset, c.preset, c.seed)
    lines = []
    finished: dict[tuple[str, str, int], list[Cell]] = {}
    for folder, (ds, preset, seed) in sorted(folders.items()):
        if (ds, preset, seed) not in finished:
            finished[(ds, preset, seed)] = finished_cells(workdir, ds, preset, seed)
        name = folder.parent.name
        rel = folder.relative_to(root)
        outside = [c for c in finished[(ds, preset, seed)] if c not in rerun and uses(c, name)]
        if outside:
            shown = ", ".join(c.label() for c in outside[:4]) + (f" and {len(outside) - 4} more" if len(outside) > 4 else "")
            lines.append(f"--rerun: kept shared stage {rel}: {len(outside)} finished cell(s) outside this rerun were "
                         f"made from it ({shown}); the rerun cells load it, so all stay made from one stage "
                         "(rerun those cells too to retrain it)")
        else:
            _set_aside(folder)
            lines.append(f"--rerun: shared stage {rel} set aside as {folder.name}.previous (every finished cell "
                         "made from it runs again; the first one retrains it)")
    return lines


def git_commit(repo_dir: Path | None = None) -> str | None:
    """The commit of the source tree this package runs from, or ``None`` outside a git checkout."""
    repo_dir = Path(repo_dir or Path(__file__).resolve().parents[2])
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_dir, capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def environment_info() -> dict:
    """Software and machine facts stored with every record (no secrets, no paths)."""
    import numpy

    info = {"python": platform.python_version(), "numpy": numpy.__version__, "platform": platform.platform(),
            "cpu_count": os.cpu_count()}
    for mod in ("torch", "monai"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            info[mod] = None
    return info


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def failure_record(cell: Cell, error: BaseException | str, started: str | None = None,
                   wall_time_s: float | None = None, method_info: dict | None = None) -> dict:
    """A ``failed`` record for a cell (contracts.md schema; ``error`` holds the traceback text)."""
    from .. import __version__

    if isinstance(error, BaseException):
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    else:
        text = str(error)
    return {
        "record_version": RECORD_VERSION,
        "cell": cell.to_dict(),
        "status": "failed",
        "error": text,
        "method_info": method_info or {},
        "budget_cases": [],
        "n_labelled": None,
        "provenance": {"code_version": __version__, "git_commit": git_commit(),
                       "environment": environment_info(), "started": started, "finished": _now(),
                       "wall_time_s": wall_time_s},
        "metrics": None,
    }


def _cell_sort_key(d: dict):
    return (d["dataset"], d["preset"], d["configuration"], d["method"], budget_sort_key(d["budget"]), d["seed"])


def update_manifest(workdir: Path, cells: list[Cell], methods: dict | None = None,
                    datasets: dict | None = None) -> Path:
    """Add ``cells`` to ``results/_grid.json`` (the union of every grid run in this workdir), the
    ``method_info`` of their methods (``methods``: name -> info) and facts about their datasets
    (``datasets``: name -> e.g. ``{"instance_labels": True}``), so that a leaderboard can label a row,
    and choose a board's metrics, before any of its cells has a record."""
    path = results_dir(workdir) / GRID_MANIFEST
    old = read_manifest(workdir)
    known = {Cell.from_dict(d) for d in old["cells"]}
    known.update(cells)
    data: dict = {"cells": sorted((c.to_dict() for c in known), key=_cell_sort_key)}
    for section, new in (("datasets", datasets), ("methods", methods)):
        merged = {**old[section], **(new or {})}
        if merged:
            data[section] = {k: merged[k] for k in sorted(merged)}
    return write_json_atomic(path, data)


def _manifest_path(workdir_or_results: Path) -> Path:
    p = Path(workdir_or_results)
    return p / GRID_MANIFEST if p.name == "results" else results_dir(p) / GRID_MANIFEST


def empty_manifest() -> dict:
    """The manifest of a grid that lists nothing yet."""
    return {"cells": [], "methods": {}, "datasets": {}}


def read_manifest(workdir_or_results: Path) -> dict:
    """``_grid.json`` read and checked once (accepts the workdir or its ``results/`` folder):
    ``{"cells": [...], "methods": {name: info}, "datasets": {name: facts}}``, empty when absent
    (older manifests have no ``methods`` / ``datasets``)."""
    path = _manifest_path(workdir_or_results)
    if not path.is_file():
        return empty_manifest()
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise RecordError(f"{path}: expected {{'cells': [...]}}")
    out = {"cells": data["cells"]}
    for section in ("methods", "datasets"):
        value = data.get(section)
        if value is not None and not isinstance(value, dict):
            raise RecordError(f"{path}: {section!r} must map {section} names to their info")
        out[section] = dict(value or {})
    return out


def load_manifest(workdir_or_results: Path) -> list[dict]:
    """Cells listed in ``_grid.json`` (accepts the workdir or its ``results/`` folder)."""
    return read_manifest(workdir_or_results)["cells"]
