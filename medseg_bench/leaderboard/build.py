"""Writing a leaderboard folder from result records: ``README.md``, ``<dataset>.md``/``.csv``, plots,
``index.html``.

Markdown and CSV depend only on the records (and the grid manifest, for missing cells) and on
``reported.yaml``: rebuilding from the same inputs gives the same bytes.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..bench.grid import budget_sort_key
from ..bench.results import empty_manifest, read_manifest
from .aggregate import Board, build_boards
from .stats import annotate_board
from .tables import board_csv, board_markdown, readme_markdown

__all__ = ["REPO_REPORTED", "build_leaderboard", "copy_records", "load_reported", "reported_for"]

#: the repository's paper-reported numbers (present in a source checkout)
REPO_REPORTED = Path(__file__).resolve().parents[2] / "leaderboards" / "reported.yaml"


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


def load_reported(path: Path | None) -> list[dict]:
    """Entries of ``reported.yaml`` (see that file for the schema); ``[]`` when absent.

    Raises:
        ValueError: malformed YAML or an entry without ``datasets``, ``citation`` or ``metrics``.
    """
    if path is None or not Path(path).is_file():
        return []
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: malformed YAML ({exc})") from exc
    entries = data.get("reported", []) if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a top-level 'reported:' list")
    for i, e in enumerate(entries):
        missing = [k for k in ("datasets", "citation", "metrics") if not isinstance(e, dict) or k not in e]
        if missing:
            raise ValueError(f"{path}: entry {i} lacks {', '.join(missing)}")
    return entries


def reported_for(dataset: str, entries: list[dict]) -> list[dict]:
    """Entries whose ``datasets`` prefixes match ``dataset`` (e.g. ``ct_hip`` matches ``ct_hip_small``)."""
    return [e for e in entries if any(dataset == p or dataset.startswith(p + "_") for p in e["datasets"])]


def copy_records(records: list[dict], manifest_dir: Path | None, dest: Path) -> list[Path]:
    """Copy the records (and the grid manifest) into ``dest`` so a leaderboard folder can be rebuilt
    from itself (the committed ``leaderboards/results/``); records no longer present are removed."""
    from ..bench.results import GRID_MANIFEST, write_json_atomic

    dest = Path(dest)
    keep = set()
    for r in records:
        p = write_json_atomic(dest / f"{_cell(r).key}.json", r)
        keep.add(p.name)
    if manifest_dir is not None and (Path(manifest_dir) / GRID_MANIFEST).is_file():
        (dest / GRID_MANIFEST).write_bytes((Path(manifest_dir) / GRID_MANIFEST).read_bytes())
    for old in dest.glob("*.json"):
        if not old.name.startswith("_") and old.name not in keep:
            old.unlink()
    return sorted(dest / k for k in keep)


def _cell(record: dict):
    from ..bench.grid import Cell

    return Cell.from_dict(record["cell"])


def build_leaderboard(records: list[dict], out: Path, manifest_dir: Path | None = None,
                      reported_path: Path | None = None, plots: bool = True, html: bool = True) -> list[Path]:
    """Write the leaderboard for ``records`` into ``out``; returns the files written.

    Args:
        records: result records (``medseg_bench.bench.load_records``).
        out: output folder (created).
        manifest_dir: the results folder holding ``_grid.json`` (expected cells, shown as missing when
            they have no record); ``None``: only cells with a record are shown.
        reported_path: ``reported.yaml``; default ``<out>/reported.yaml`` if present, else the
            repository's ``leaderboards/reported.yaml``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    grid = read_manifest(manifest_dir) if manifest_dir is not None else empty_manifest()
    boards: list[Board] = [annotate_board(b)
                           for b in build_boards(records, grid["cells"], grid["methods"], grid["datasets"])]
    if reported_path is None:
        reported_path = out / "reported.yaml" if (out / "reported.yaml").is_file() else REPO_REPORTED
    reported = load_reported(reported_path)
    written: list[Path] = []
    plot_files: dict[tuple, Path] = {}
    if plots:
        from .plots import plot_board

        for b in boards:
            paths = plot_board(b, out / "plots", "dice")
            plot_files[(b.dataset, b.preset)] = paths["png"]
            written += list(paths.values())
    by_dataset: dict[str, list[Board]] = {}
    for b in boards:
        by_dataset.setdefault(b.dataset, []).append(b)
    order = {"paper": 0, "quick": 1, "demo": 2}
    for ds, bs in sorted(by_dataset.items()):
        bs.sort(key=lambda b: (order.get(b.preset, 9), b.preset))
        parts = [f"# Leaderboard: {ds}", "",
                 "Generated by `medseg-bench leaderboard` from result records only; do not edit by hand.", ""]
        for b in bs:
            rel = {}
            if (b.dataset, b.preset) in plot_files:
                stem = plot_files[(b.dataset, b.preset)].stem
                rel = {f"{ds} {b.preset} Dice vs budget": f"plots/{stem}.svg"}
            parts.append(board_markdown(b, reported_for(ds, reported) if b is bs[0] else None, rel))
        md = out / f"{ds}.md"
        _write_text(md, "\n".join(parts).rstrip("\n") + "\n")
        csv_path = out / f"{ds}.csv"
        _write_text(csv_path, board_csv(bs))
        written += [md, csv_path]
    budgets = sorted({x for b in boards for x in b.budgets}, key=budget_sort_key)
    readme = out / "README.md"
    _write_text(readme, readme_markdown(boards, {ds: f"{ds}.md" for ds in by_dataset}, budgets).rstrip("\n") + "\n")
    written.append(readme)
    if html:
        from .html import render_html

        page = out / "index.html"
        _write_text(page, render_html(boards, plot_files))
        written.append(page)
    return written
