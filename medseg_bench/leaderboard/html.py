"""The static ``index.html``: every board as sortable tables with family/budget filters and the
label-budget plots inlined (base64 PNG), in one self-contained file that works offline.

Vanilla JavaScript renders the tables from a JSON blob embedded in the page (no network, no
libraries). Filters can also be set from the URL hash: ``index.html#family=classical,supervised&budget=0``.
"""

from __future__ import annotations

import base64
import json
import math
from importlib import resources
from pathlib import Path

from .aggregate import HIGHER_IS_BETTER, Board
from .tables import (
    DEMO_BANNER,
    MACHINES_INTRO,
    METRIC_TITLES,
    _best,
    _machines_text,
    _ordered,
    _runs_done,
    _seeds_note,
    _units,
    fmt,
    incomplete_text,
    metric_digits,
    mixed_plans_text,
    overall_ranking,
)

__all__ = ["render_html"]

LEGEND = ("Cells: mean ± std over seeds of the mean over test cases; bold = best per budget; ▲ / ▼ = significantly "
          "better / worse than the reference row (paired Wilcoxon over test cases, Holm-corrected, p < 0.05); "
          "ref = reference row; [k inf] = surface distances with one empty mask counted at the image diagonal; "
          "failed / missing = no finished seed; · = not run at that budget. Hover a cell for its 95 % bootstrap "
          "CI, a method for its citation. Click a column header to sort.")


def _cell_json(cell, metric: str, best: bool, d: int) -> dict:
    status = cell.status
    if status in ("failed", "missing"):
        return {"text": status, "value": None, "status": status}
    if metric == "nsd" and cell.nsd_other_tau:  # legacy global tau (issue 23): not shown
        return {"text": "old τ", "value": None, "status": status}
    mean = cell.mean.get(metric, math.nan)
    std = cell.std.get(metric, math.nan)
    text = fmt(mean, d) + ("" if math.isnan(std) else f" ± {fmt(std, d)}")
    note = _seeds_note(cell).strip()
    if cell.n_inf.get(metric, 0) and metric in ("hd95", "assd"):
        note = f"[{cell.n_inf[metric]} inf] " + note
    lo, hi = cell.ci.get(metric, (math.nan, math.nan))
    return {"text": text, "value": None if math.isnan(mean) else round(mean, 6), "status": status, "best": best,
            "marker": cell.marker.get(metric, ""), "note": note.strip(),
            "ci": None if math.isnan(lo) else f"[{fmt(lo, d)}, {fmt(hi, d)}]"}


def _board_json(board: Board, plot_png: Path | None) -> dict:
    rows = _ordered([r for r in board.rows if not r.oracle]) + _ordered([r for r in board.rows if r.oracle])
    metrics = []
    bests = {}
    for m in board.metrics:
        arrow = "↑" if HIGHER_IS_BETTER.get(m, True) else "↓"
        metrics.append({"key": m, "title": f"{METRIC_TITLES.get(m, m)} {arrow}{_units(board, m)}"})
        bests[m] = _best(board, [r for r in rows if not r.oracle], m)  # oracle rows are never "best"
    digits = {m: metric_digits(board, m) for m in board.metrics}
    out_rows = []
    for r in rows:
        cells = {}
        for b, c in r.cells.items():
            cells[str(b)] = {m: _cell_json(c, m, r.label in bests[m].get(b, ()), digits[m]) for m in board.metrics}
        out_rows.append({"label": r.label, "method": r.method, "family": r.family, "oracle": r.oracle,
                         "submitted": r.submitted, "citation": r.citation, "cells": cells,
                         "mean_rank": None if r.mean_rank is None else round(r.mean_rank, 4)})
    plot = None
    if plot_png is not None and Path(plot_png).is_file():
        plot = "data:image/png;base64," + base64.b64encode(Path(plot_png).read_bytes()).decode("ascii")
    seeds = ", ".join(map(str, board.seeds))
    cost = []
    for r in sorted(board.rows, key=lambda r: r.label):
        c = r.cost
        cost.append({"label": r.label, "family": r.family, "oracle": r.oracle, "configuration": r.configuration,
                     **{k: None if math.isnan(c[k]) else round(float(c[k]), 1) for k in
                        ("train_time_s", "iterations", "labelled_iterations", "parameters", "peak_memory_mb")}})
    machines = board.machines()
    return {"id": f"{board.dataset}__{board.preset}", "dataset": board.dataset, "preset": board.preset,
            "demo": board.demo, "budgets": [str(b) for b in board.budgets], "metrics": metrics, "rows": out_rows,
            "cost": cost, "cost_note": (MACHINES_INTRO + _machines_text(machines)) if machines else "",
            "plot": plot, "meta": f"seeds {seeds} · {board.n_cases} test cases · runs done {_runs_done([board])} · "
                    "budgets = labelled training cases"}


def render_html(boards: list[Board], plots: dict[tuple, Path] | None = None) -> str:
    """The page as a string. ``plots``: ``(dataset, preset) -> PNG path`` to inline."""
    plots = plots or {}
    budgets = []
    for b in boards:
        for x in b.budgets:
            if str(x) not in budgets:
                budgets.append(str(x))
    data = {
        "demo": any(b.demo for b in boards),
        "demo_text": DEMO_BANNER.lstrip("> ").replace("**", "").replace("`", ""),
        "incomplete_text": incomplete_text(boards).replace("**", "").replace("`", ""),
        "mixed_plans_text": mixed_plans_text(boards).replace("**", "").replace("`", ""),
        "families": sorted({r.family for b in boards for r in b.rows}),
        "budgets": budgets,
        "boards": [_board_json(b, plots.get((b.dataset, b.preset))) for b in boards],
        "overall": {p: [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items() if k != "per_budget"}
                        for r in rows] for p, rows in overall_ranking(boards).items()},
        "legend": LEGEND,
    }
    blob = json.dumps(data, ensure_ascii=False, sort_keys=True).replace("</", "<\\/")
    template = resources.files("medseg_bench.leaderboard").joinpath("templates/index.html").read_text("utf-8")
    return template.replace("__DATA__", blob)
