"""Markdown and CSV renderings of annotated boards (deterministic: same records, same bytes).

No timestamps, no absolute paths and fixed number formats, so ``medseg-bench leaderboard`` rebuilds
the committed files byte for byte from the committed records.
"""

from __future__ import annotations

import csv
import io
import math

from .aggregate import HIGHER_IS_BETTER, Board, BoardCell, BoardRow, machines_of
from .stats import ALPHA

__all__ = ["METRIC_TITLES", "board_csv", "board_markdown", "fmt", "mixed_plans_text", "overall_ranking",
           "readme_markdown"]

METRIC_TITLES = {"dice": "Dice", "hd95": "HD95", "assd": "ASSD", "nsd": "NSD", "aji": "AJI", "pq": "PQ"}
_DIGITS = {"dice": 3, "aji": 3, "pq": 3, "hd95": 2, "assd": 2, "nsd": 3}
DEMO_BANNER = ("> **Demo leaderboard.** Preset `demo`: smoke-level training schedules on small simulated data, "
               "one seed. It shows that the pipeline works end to end; its numbers are not benchmark results.")


def fmt(v, digits: int = 3) -> str:
    """Fixed-point text; ``nan`` -> ``—``; ``inf`` -> ``inf``."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.{digits}f}"


def _esc(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _units(board: Board, metric: str) -> str:
    """Header suffix: the distance unit (µm on histology, mm otherwise), or NSD's tau (issue 23)."""
    if metric in ("hd95", "assd"):
        return f" ({board.distance_unit})"
    if metric == "nsd":
        legacy = (f"; `old τ` = {board.nsd_legacy} run(s) scored with the legacy global τ = 2 spacing units, "
                  "not shown until re-run" if board.nsd_legacy else "")
        tau = f"τ = {board.nsd_tau_text}" if board.nsd_tau is not None else "no run with a per-dataset τ yet"
        return f" ({tau}{legacy})"
    return ""


def _seeds_note(cell: BoardCell) -> str:
    n = len(cell.expected)
    parts = []
    if cell.failed:
        parts.append(f"{len(cell.failed)} failed")
    if cell.missing:
        parts.append(f"{len(cell.missing)} missing")
    return f" ({len(cell.done)}/{n} seeds; {', '.join(parts)})" if parts else ""


def metric_digits(board: Board, metric: str) -> int:
    """Decimals shown for ``metric`` on ``board``: :data:`_DIGITS`, except that surface distances (in the
    board's unit, which still span orders of magnitude across datasets) get at least three
    significant figures of the board's median finite value, so small distances never print as ``0.00``."""
    base = _DIGITS.get(metric, 3)
    if metric not in ("hd95", "assd"):
        return base
    vals = [abs(v) for r in board.rows for c in r.cells.values()
            for v in [c.mean.get(metric, math.nan)] if math.isfinite(v) and v > 0]
    if not vals:
        return base
    median = sorted(vals)[len(vals) // 2]
    return int(min(8, max(base, 2 - math.floor(math.log10(median)))))


def cell_text(cell: BoardCell | None, metric: str, best: bool, digits: int | None = None) -> str:
    """One table cell: ``0.812 ± 0.013`` (+ marker, partial-seed note) or ``failed``/``missing``/``·``."""
    if cell is None:
        return "·"
    status = cell.status
    if status in ("failed", "missing"):
        return status
    if metric == "nsd" and cell.nsd_other_tau:
        return "old τ"  # scored with the legacy global tau (issue 23): not comparable, not shown
    d = _DIGITS.get(metric, 3) if digits is None else digits
    std = cell.std.get(metric, math.nan)
    text = fmt(cell.mean.get(metric), d) + ("" if math.isnan(std) else f" ± {fmt(std, d)}")
    if best:
        text = f"**{text}**"
    marker = cell.marker.get(metric, "")
    if marker:
        text += f" {marker}"
    n_inf = cell.n_inf.get(metric, 0)
    if n_inf and metric in ("hd95", "assd"):
        text += f" [{n_inf} inf]"
    return text + _seeds_note(cell)


def _best(board: Board, rows: list[BoardRow], metric: str) -> dict:
    """budget -> label of the best row (ties: all of them) among ``rows``."""
    out = {}
    hib = HIGHER_IS_BETTER.get(metric, True)
    for b in board.budgets:
        vals = {r.label: r.cells[b].mean.get(metric, math.nan) for r in rows if b in r.cells and r.cells[b].done}
        vals = {k: v for k, v in vals.items() if not math.isnan(v)}
        if vals:
            target = max(vals.values()) if hib else min(vals.values())
            out[b] = {k for k, v in vals.items() if v == target}
    return out


def _ordered(rows: list[BoardRow]) -> list[BoardRow]:
    """Rows grouped by the first budget they run at (left to right, like the columns), then by rank."""
    from ..bench.grid import budget_sort_key

    def first_budget(r: BoardRow):
        return min((budget_sort_key(b) for b in r.cells), default=(9, 0))

    return sorted(rows, key=lambda r: (first_budget(r), r.mean_rank is None, r.mean_rank or 0.0, r.label))


def _metric_table(board: Board, rows: list[BoardRow], metric: str, with_rank: bool) -> list[str]:
    best = _best(board, rows, metric)
    digits = metric_digits(board, metric)
    head = ["method", "family"] + [f"b={b}" for b in board.budgets] + (["mean rank"] if with_rank else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|"]
    for r in rows:
        label = r.label + (" (submitted)" if r.submitted else "")
        cells = [cell_text(r.cells.get(b), metric, r.label in best.get(b, ()), digits) for b in board.budgets]
        tail = [fmt(r.mean_rank, 2) if r.mean_rank is not None else "—"] if with_rank else []
        lines.append("| " + " | ".join([_esc(label), r.family] + cells + tail) + " |")
    return lines


MACHINES_INTRO = ("Train time = seconds of training per run (mean over finished runs), measured on the machine that "
                  "ran it; compare rows run on the same kind of machine. ")


def _machines_text(machines: list[dict]) -> str:
    parts = []
    for m in machines:
        probe = []
        if m["probe_min_ms"] is not None:
            lo, hi = m["probe_min_ms"], m["probe_max_ms"]
            probe.append(f"speed probe {lo:.1f} ms" if lo == hi else f"speed probe {lo:.1f}–{hi:.1f} ms")
        if m["unprobed"]:
            probe.append(f"{m['unprobed']} without a probe")
        extra = f"; {', '.join(probe)}" if probe else ""
        parts.append(f"{_esc(m['label'])} ({m['runs']} run{'s' if m['runs'] != 1 else ''}{extra})")
    return ("Machines: " + "; ".join(parts) + ". The speed probe (a fixed convolution, forward and backward, "
            "lower = faster) tells machines of the same model but different speed apart.")


def board_markdown(board: Board, reported: list[dict] | None = None, plots: dict | None = None) -> str:
    """The ``<dataset>.md`` section of one board (see module docstring for determinism)."""
    out = [f"## {board.dataset} — preset `{board.preset}`", ""]
    if board.demo:
        out += [DEMO_BANNER, ""]
    mixed = mixed_plans_text([board], detail=True)
    if mixed:
        out += [mixed, ""]
    seeds = ", ".join(str(s) for s in board.seeds) or "—"
    out += [f"Seeds {seeds} · {board.n_cases} test cases · runs done {_runs_done([board])} · budgets = labelled training cases. "
            "Values: mean over test cases, then mean ± std over seeds (no ± with one seed); class metrics are "
            "averaged over foreground classes.", ""]
    main = _ordered([r for r in board.rows if not r.oracle])
    oracle = _ordered([r for r in board.rows if r.oracle])
    for metric in board.metrics:
        arrow = "↑" if HIGHER_IS_BETTER.get(metric, True) else "↓"
        out += [f"### {METRIC_TITLES.get(metric, metric)} {arrow}{_units(board, metric)}", ""]
        out += _metric_table(board, main, metric, with_rank=metric == "dice")
        if oracle:
            out += ["", "Oracle rows (classes chosen with ground truth; ranked separately, never beside "
                        "label-free rows):", ""]
            out += _metric_table(board, oracle, metric, with_rank=metric == "dice")
        out.append("")
    out += ["Legend: **bold** = best per budget; ▲ / ▼ = significantly better / worse than the reference row "
            f"(two-sided paired Wilcoxon signed-rank test over test cases, Holm-corrected per metric, p < {ALPHA}); "
            "`ref` = the reference (`supervised` at budgets ≥ 1, `supervised_full` at `all`, the best classical "
            "baseline at 0); `[k inf]` = k case-class values with one empty mask, counted at the image diagonal "
            "(METRICS.md); `(d/n seeds; …)` = only d of n seeds finished; `failed` / `missing` = no finished seed; "
            "`·` = the method does not run at that budget. 95 % bootstrap CIs are in the CSV.", ""]
    out += ["### Cost", "", "| method | configuration | train time (s) | iterations | labelled iterations | parameters "
            "| peak memory (MB) |", "|---|---|---:|---:|---:|---:|---:|"]
    for r in sorted(board.rows, key=lambda r: r.label):
        c = r.cost
        params = "—" if math.isnan(c["parameters"]) else f"{int(c['parameters']):,}"
        out.append(f"| {_esc(r.label)} | {r.configuration} | {fmt(c['train_time_s'], 1)} | {fmt(c.get('iterations'), 0)} | "
                   f"{fmt(c.get('labelled_iterations'), 0)} | {params} | {fmt(c['peak_memory_mb'], 1)} |")
    out += ["", "Iterations are means over runs; labelled iterations = steps on a labelled batch (the fair-comparison "
                "rule: every method that trains on labels runs at least those of `supervised` in the same cell; "
                "extra unlabelled work shows as train time).", ""]
    machines = board.machines()
    if machines:
        out += [MACHINES_INTRO + _machines_text(machines), ""]
    problems = [(r, b, c) for r in board.rows for b, c in r.cells.items() if c.failed or c.missing]
    if problems:
        out += ["### Failed and missing cells", ""]
        for r, b, c in sorted(problems, key=lambda t: (t[0].label, str(t[1]))):
            for seed, err in sorted(c.failed.items()):
                last = (err.strip().splitlines() or ["failed"])[-1]
                out.append(f"- {_esc(r.label)}, budget {b}, seed {seed}: failed — `{_esc(last)[:200]}`")
            for seed in sorted(c.missing):
                out.append(f"- {_esc(r.label)}, budget {b}, seed {seed}: missing (no record)")
        out.append("")
    if reported:
        out += ["### Reported in the papers (on other data)", "",
                "Numbers as published, on the papers' own data and protocols — not comparable one to one "
                "with the rows above.", "", "| source | method | data | labelled | reported |",
                "|---|---|---|---:|---|"]
        for e in reported:
            values = " · ".join(f"{k} {v}" for k, v in e.get("metrics", {}).items())
            out.append(f"| {_esc(e.get('citation', ''))} | {_esc(e.get('method', ''))} | {_esc(e.get('data', ''))} "
                       f"| {e.get('labelled', '—')} | {_esc(values)} |")
        out.append("")
    out += ["### Methods", ""]
    for r in sorted(board.rows, key=lambda r: r.label):
        rule = f"; class rule: {r.class_rule}" if r.class_rule else ""
        oracle_note = " **Oracle** (uses ground truth to pick classes)." if r.oracle else ""
        out.append(f"- `{r.label}` ({r.family}): {_esc(r.citation) or '—'}{rule}.{oracle_note}")
    out.append("")
    if plots:
        out += ["### Label-budget curves", ""]
        for name, rel in plots.items():
            out.append(f"![{name}]({rel})")
        out.append("")
    return "\n".join(out)


CSV_COLUMNS_BASE = ["dataset", "preset", "method", "configuration", "family", "oracle", "submitted", "budget",
                    "status", "seeds_expected", "seeds_done", "seeds_failed", "seeds_missing", "rank", "reference",
                    "distance_unit", "nsd_tau", "nsd_tau_display"]


def board_csv_rows(board: Board) -> list[dict]:
    digits = {m: metric_digits(board, m) + 2 for m in board.metrics}  # once per board, not per cell
    rows = []
    for r in sorted(board.rows, key=lambda r: r.label):
        for b in board.budgets:
            c = r.cells.get(b)
            if c is None:
                continue
            row = {"dataset": board.dataset, "preset": board.preset, "method": r.method,
                   "configuration": r.configuration, "family": r.family, "oracle": int(r.oracle),
                   "submitted": int(r.submitted), "budget": b, "status": c.status,
                   "seeds_expected": len(c.expected), "seeds_done": len(c.done), "seeds_failed": len(c.failed),
                   "seeds_missing": len(c.missing), "rank": "" if c.rank is None else c.rank,
                   "reference": c.reference or "", "distance_unit": board.distance_unit,
                   "nsd_tau": "" if board.nsd_tau is None else f"{board.nsd_tau:.6g}",
                   "nsd_tau_display": board.nsd_tau_text}
            for m in board.metrics:
                d = digits[m]
                lo, hi = c.ci.get(m, (math.nan, math.nan))
                row.update({f"{m}_mean": fmt(c.mean.get(m), d), f"{m}_std": fmt(c.std.get(m), d),
                            f"{m}_ci_low": fmt(lo, d), f"{m}_ci_high": fmt(hi, d),
                            f"{m}_p_holm": fmt(c.p_value.get(m), 4), f"{m}_marker": c.marker.get(m, ""),
                            f"{m}_n_inf": c.n_inf.get(m, 0), f"{m}_n_nan": c.n_nan.get(m, 0)})
            row["plan_hashes"] = " ".join(sorted({str((rec.get("provenance") or {}).get("plan_hash") or "unknown")
                                                  for rec in c.done.values()}))
            row.update({"train_time_s": fmt(r.cost["train_time_s"], 1), "iterations": fmt(r.cost.get("iterations"), 0),
                        "labelled_iterations": fmt(r.cost.get("labelled_iterations"), 0),
                        "parameters": "" if math.isnan(r.cost["parameters"]) else int(r.cost["parameters"]),
                        "peak_memory_mb": fmt(r.cost["peak_memory_mb"], 1)})
            rows.append(row)
    return rows


def board_csv(boards: list[Board]) -> str:
    """CSV of one dataset's boards: a row per (preset, method, configuration, budget)."""
    rows = [row for b in boards for row in board_csv_rows(b)]
    metric_cols = []
    for b in boards:
        for m in b.metrics:
            for suffix in ("mean", "std", "ci_low", "ci_high", "p_holm", "marker", "n_inf", "n_nan"):
                col = f"{m}_{suffix}"
                if col not in metric_cols:
                    metric_cols.append(col)
    cols = CSV_COLUMNS_BASE + metric_cols + ["train_time_s", "iterations", "labelled_iterations", "parameters",
                                             "peak_memory_mb", "plan_hashes"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n", restval="")
    w.writeheader()
    for row in rows:
        w.writerow({k: ("" if v == "—" else v) for k, v in row.items()})  # CSV: empty = no value
    return buf.getvalue()


def overall_ranking(boards: list[Board]) -> dict[str, list[dict]]:
    """preset -> rows ``{method, family, oracle, n, mean_rank, per_budget: {budget: mean rank}}`` sorted
    by mean rank over every (dataset, budget) where the method has a Dice rank."""
    out: dict[str, list[dict]] = {}
    for preset in sorted({b.preset for b in boards}):
        acc: dict[tuple, dict] = {}
        for board in (b for b in boards if b.preset == preset):
            for r in board.rows:
                a = acc.setdefault((r.method, r.oracle), {"method": r.method, "family": r.family, "oracle": r.oracle,
                                                          "ranks": [], "per_budget": {}, "datasets": set()})
                for b, c in r.cells.items():
                    if c.rank is not None:
                        a["ranks"].append(c.rank)
                        a["per_budget"].setdefault(b, []).append(c.rank)
                        a["datasets"].add(board.dataset)
        rows = []
        for a in acc.values():
            if not a["ranks"]:
                continue
            rows.append({"method": a["method"], "family": a["family"], "oracle": a["oracle"],
                         "datasets": len(a["datasets"]), "n": len(a["ranks"]),
                         "mean_rank": sum(a["ranks"]) / len(a["ranks"]),
                         "per_budget": {b: sum(v) / len(v) for b, v in a["per_budget"].items()}})
        out[preset] = sorted(rows, key=lambda x: (x["oracle"], x["mean_rank"], x["method"]))
    return out


def _runs_done(boards: list[Board]) -> str:
    """``done/expected`` runs (one run = one seed of one cell), plus failures when there are any."""
    p = {k: sum(b.progress()[k] for b in boards) for k in ("expected", "done", "failed")}
    return f"{p['done']}/{p['expected']}" + (f" ({p['failed']} failed)" if p["failed"] else "")


def incomplete_text(boards: list[Board]) -> str:
    """The "Incomplete grid" banner (markdown) when some expected run has not finished, else ``""``."""
    if all(b.complete for b in boards):
        return ""
    tot = {k: sum(b.progress()[k] for b in boards) for k in ("expected", "done", "failed", "missing")}
    return (f"**Incomplete grid: {tot['done']} of {tot['expected']} runs finished** ({tot['failed']} failed, "
            f"{tot['missing']} not run yet); unfinished cells are shown as `failed` / `missing` and ranks cover "
            "only what finished.")


def mixed_plans_text(boards: list[Board], detail: bool = False) -> str:
    """A warning (markdown) when a board mixes runs made under different plans (plan hash differs:
    another planner version, re-planned data, a calibrated plan), else ``""``. ``detail`` lists, per
    plan hash, the cells that ran under it (for a dataset page)."""
    mixed = [b for b in boards if len(b.plan_hashes()) > 1]
    if not mixed:
        return ""
    parts = []
    for b in mixed:
        hashes = ", ".join(f"`{h}` ({n} runs)" for h, n in b.plan_hashes().items())
        parts.append(f"{b.dataset} ({b.preset}): {hashes}")
    text = ("**Mixed plans: runs made under different plans are on one board** — " + "; ".join(parts) +
            ". A plan fixes the schedule, patch and network, so such rows are not comparable; "
            "`medseg-bench run --rerun` recomputes the grid under the current plan.")
    if detail:
        for b in mixed:
            rows = b.plan_rows()
            text += "".join(f"\n- plan `{h}`: {', '.join(_esc(x) for x in rows.get(h, []))}" for h in b.plan_hashes())
    return text


def readme_markdown(boards: list[Board], dataset_files: dict[str, str], budgets: list) -> str:
    """``README.md``: index of datasets and the overall ranking across datasets (per preset)."""
    out = ["# Leaderboards", "",
           "Generated by `medseg-bench leaderboard` from the result records only; do not edit by hand. "
           "Interactive page: [index.html](index.html).", ""]
    if any(b.demo for b in boards):
        out += [DEMO_BANNER, ""]
    incomplete = incomplete_text(boards)
    if incomplete:
        out += [incomplete, ""]
    mixed = mixed_plans_text(boards)
    if mixed:
        out += [mixed, ""]
    out += ["## Datasets", "", "| dataset | presets | methods | runs done | test cases | table | CSV |",
            "|---|---|---:|---:|---:|---|---|"]
    for ds in sorted(dataset_files):
        bs = [b for b in boards if b.dataset == ds]
        methods = len({r.method for b in bs for r in b.rows})
        presets = ", ".join(sorted({b.preset for b in bs}))
        cases = max((b.n_cases for b in bs), default=0)
        runs = _runs_done(bs)
        out.append(f"| {ds} | {presets} | {methods} | {runs} | {cases} | [{ds}.md]({ds}.md) | [{ds}.csv]({ds}.csv) |")
    out.append("")
    for preset, rows in overall_ranking(boards).items():
        bud = [b for b in budgets if any(b in r["per_budget"] for r in rows)]
        out += [f"## Overall ranking — preset `{preset}`", "",
                "Mean Dice rank over every (dataset, budget) a method runs at (1 = best); oracle rows are ranked "
                "among themselves.", "",
                "| # | method | family | datasets | mean rank | " + " | ".join(f"b={b}" for b in bud) + " |",
                "|---:|---|---|---:|---:|" + "---:|" * len(bud)]
        pos = 0
        for r in rows:
            pos += 1
            name = r["method"] + (" (oracle)" if r["oracle"] else "")
            per = " | ".join(fmt(r["per_budget"].get(b), 2) for b in bud)
            out.append(f"| {pos} | {name} | {r['family']} | {r['datasets']} | {fmt(r['mean_rank'], 2)} | {per} |")
        out.append("")
    return "\n".join(out + _provenance_section(boards))


def _provenance_section(boards: list[Board]) -> list[str]:
    """``## How these results were made``: the command per preset, the code commits and the machines
    behind the records (all read from the records, so the section rebuilds byte for byte)."""
    records = [rec for b in boards for rec in b.done_records()]
    commits: dict[str, int] = {}
    for rec in records:
        commit = str((rec.get("provenance") or {}).get("git_commit") or "unknown")
        commits[commit] = commits.get(commit, 0) + 1
    if not commits:
        return []
    out = ["## How these results were made", ""]
    for preset in sorted({b.preset for b in boards}):
        seeds = sorted({s for b in boards if b.preset == preset for s in b.seeds})
        out.append(f"- preset `{preset}`: `medseg-bench run --preset {preset} --seeds {' '.join(map(str, seeds))}`, then "
                   "`medseg-bench leaderboard --out DIR`; `--records DIR/results` resumes the grid from these records "
                   "on another machine (only the missing cells run).")
    top = sorted(commits.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ", ".join(f"`{c[:12]}{'+dirty' if c.endswith('+dirty') else ''}` ({n})" for c, n in top[:6])
    more = f" and {len(top) - 6} more" if len(top) > 6 else ""
    out.append(f"- code: {len(top)} commit(s) of medseg_bench (runs per commit): {shown}{more}. A new commit does not "
               "invalidate finished cells; each record names its commit, plan hash, split hash and dataset hash.")
    machines = machines_of(records)
    if machines:
        out.append("- " + _machines_text(machines))
    return out + [""]
