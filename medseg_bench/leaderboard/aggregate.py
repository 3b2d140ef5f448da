"""From result records to leaderboard boards: per-case values, seed means, mean ± std, status, rank.

Only result records (and the runner's grid manifest, to show missing cells) are read. One **board**
per (dataset, preset); a **row** per (method, configuration); a **cell** per budget.

Per-case values: a class metric of a case is the mean over its foreground classes; an ``inf``
distance (exactly one mask empty) is replaced by the case's image diagonal (spacing units) and
counted as a failure; a ``nan`` (both empty) is left out and counted (``METRICS.md``, the rule of
:func:`medseg_bench.metrics.aggregate_with_failures`). A seed's value is the mean over test cases;
a cell shows mean ± std (ddof=1) over its finished seeds. Failed and missing seeds are counted, never
dropped: a cell with no finished seed says ``failed`` or ``missing``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..bench.grid import ALL, budget_sort_key
from ..metrics import decode_value, image_diagonal

__all__ = [
    "CLASS_METRICS_SHOWN",
    "HIGHER_IS_BETTER",
    "INSTANCE_METRICS_SHOWN",
    "Board",
    "BoardCell",
    "BoardRow",
    "build_boards",
    "case_values",
    "machines_of",
]

CLASS_METRICS_SHOWN = ("dice", "hd95", "assd", "nsd")
INSTANCE_METRICS_SHOWN = ("aji", "pq")
HIGHER_IS_BETTER = {"dice": True, "iou": True, "nsd": True, "hd95": False, "assd": False, "hd": False,
                    "aji": True, "pq": True}
_DISTANCES = ("hd95", "hd95_pooled", "hd", "assd")


@dataclass
class BoardCell:
    """One (row, budget): seeds by status, per-seed means, per-case seed-averaged values, stats."""

    expected: set = field(default_factory=set)
    done: dict = field(default_factory=dict)  # seed -> record
    failed: dict = field(default_factory=dict)  # seed -> error text
    seed_means: dict = field(default_factory=dict)  # metric -> {seed: mean over cases}
    per_case: dict = field(default_factory=dict)  # metric -> {case: mean over seeds}
    n_inf: dict = field(default_factory=dict)  # metric -> count of inf (case, class, seed) values
    n_nan: dict = field(default_factory=dict)
    mean: dict = field(default_factory=dict)
    std: dict = field(default_factory=dict)
    ci: dict = field(default_factory=dict)  # metric -> (low, high), 95 % bootstrap over cases
    p_value: dict = field(default_factory=dict)  # metric -> Holm-adjusted p vs the reference row
    marker: dict = field(default_factory=dict)  # metric -> "▲" / "▼" / "ref" / ""
    reference: str | None = None
    rank: int | None = None
    nsd_other_tau: int = 0  # finished seeds scored with another NSD tau (legacy): NSD not shown here

    @property
    def missing(self) -> set:
        return self.expected - set(self.done) - set(self.failed)

    @property
    def status(self) -> str:
        """``done``, ``partial`` (some seeds failed/missing), ``failed``, ``missing`` or ``n/a``."""
        if self.done:
            return "done" if not (self.failed or self.missing) else "partial"
        if self.failed:
            return "failed"
        return "missing" if self.expected else "n/a"


@dataclass
class BoardRow:
    method: str
    configuration: str
    label: str
    family: str
    citation: str
    oracle: bool
    class_rule: str | None
    submitted: bool = False
    cells: dict = field(default_factory=dict)  # budget -> BoardCell
    cost: dict = field(default_factory=dict)  # train_time_s, iterations, labelled_iterations, parameters, peak_memory_mb
    mean_rank: float | None = None


@dataclass
class Board:
    dataset: str
    preset: str
    budgets: list
    metrics: list
    rows: list
    seeds: list
    n_cases: int
    instance: bool
    distance_unit: str = "spacing units"  # unit of the hd95 / assd values held here (µm, mm)
    distance_factor: float = 1.0  # record value (spacing units) x factor = value shown
    nsd_tau: float | None = None  # tau (spacing units) of the NSD values shown; None: none shown
    nsd_tau_text: str = ""  # tau in the display unit, e.g. "1 µm"
    nsd_legacy: int = 0  # finished runs whose NSD is not shown (old global tau, or another tau)

    @property
    def demo(self) -> bool:
        return self.preset == "demo"

    def progress(self) -> dict:
        """Seed-level run counts over every row and budget: ``expected``, ``done``, ``failed``, ``missing``."""
        cells = [c for r in self.rows for c in r.cells.values()]
        return {"expected": sum(len(c.expected) for c in cells), "done": sum(len(c.done) for c in cells),
                "failed": sum(len(c.failed) for c in cells), "missing": sum(len(c.missing) for c in cells)}

    @property
    def complete(self) -> bool:
        p = self.progress()
        return p["done"] == p["expected"]

    def done_records(self) -> list[dict]:
        """Every finished run's record on this board."""
        return [rec for row in self.rows for cell in row.cells.values() for rec in cell.done.values()]

    def machines(self) -> list[dict]:
        """:func:`machines_of` this board's finished runs (for reading its cost columns)."""
        return machines_of(self.done_records())

    def plan_hashes(self) -> dict[str, int]:
        """``{plan hash: finished runs}`` over this board's records (``"unknown"`` when a record has
        none), most runs first. More than one entry = runs made under different plans (schedules,
        patch sizes, networks) are mixed on this board."""
        counts: dict[str, int] = {}
        for rec in self.done_records():
            h = str((rec.get("provenance") or {}).get("plan_hash") or "unknown")
            counts[h] = counts.get(h, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def plan_rows(self) -> dict[str, list[str]]:
        """``{plan hash: ["method b=budget", ...]}``: which cells ran under which plan (seeds pooled)."""
        out: dict[str, set] = {}
        for row in self.rows:
            for budget, cell in row.cells.items():
                for rec in cell.done.values():
                    h = str((rec.get("provenance") or {}).get("plan_hash") or "unknown")
                    out.setdefault(h, set()).add(f"{row.label} b={budget}")
        return {h: sorted(v) for h, v in out.items()}


def machines_of(records: list[dict]) -> list[dict]:
    """Where runs trained: one entry per machine kind (``label``: GPU name or CPU model with threads),
    with ``runs``, ``unprobed`` (records made before the CPU speed probe existed) and the probe range
    ``probe_min_ms`` / ``probe_max_ms`` (``None`` without probes), most runs first."""
    groups: dict[str, dict] = {}
    for rec in records:
        env = (rec.get("provenance") or {}).get("environment") or {}
        if env.get("gpu"):
            label = str(env["gpu"])
        else:
            threads = env.get("num_threads")
            label = str(env.get("cpu_model") or "CPU (model not recorded)") + \
                (f", {threads} thread{'s' if threads != 1 else ''}" if threads else "")
        g = groups.setdefault(label, {"label": label, "runs": 0, "probes": [], "unprobed": 0})
        g["runs"] += 1
        probe = _num(env.get("speed_probe_ms"))
        if math.isnan(probe):
            g["unprobed"] += 1
        else:
            g["probes"].append(probe)
    out = []
    for g in sorted(groups.values(), key=lambda g: (-g["runs"], g["label"])):
        probes = g.pop("probes")
        g["probe_min_ms"] = min(probes) if probes else None
        g["probe_max_ms"] = max(probes) if probes else None
        out.append(g)
    return out

def _num(v) -> float:
    try:
        return decode_value(v)
    except (TypeError, ValueError):
        return math.nan


def case_values(case: dict, metrics: tuple) -> tuple[dict, dict, dict]:
    """Values of one per-case entry: ``(value, n_inf, n_nan)`` per metric (see module docstring).

    The diagonal comes from the entry's ``diagonal`` (or its ``shape`` and ``spacing``); an inf with no
    way to bound it stays inf (and still counts as a failure).
    """
    diag = case.get("diagonal")
    if diag is None and case.get("shape") is not None:
        diag = image_diagonal(case["shape"], case.get("spacing"))
    diag = _num(diag) if diag is not None else math.inf
    out, n_inf, n_nan = {}, {}, {}
    classes = case.get("classes") or {}
    inst = case.get("instance") or {}
    for m in metrics:
        vals = [_num(c.get(m)) for c in classes.values() if isinstance(c, dict) and m in c] if m not in inst \
            else [_num(inst[m])]
        inf = sum(math.isinf(v) for v in vals)
        nan = sum(math.isnan(v) for v in vals)
        vals = [diag if math.isinf(v) else v for v in vals if not math.isnan(v)]
        out[m] = float(np.mean(vals)) if vals else math.nan
        n_inf[m], n_nan[m] = inf, nan
    return out, n_inf, n_nan


def _method_info(records: list[dict]) -> dict[str, dict]:
    info: dict[str, dict] = {}
    for r in records:
        mi = r.get("method_info") or {}
        cur = info.setdefault(r["cell"]["method"], {})
        for k, v in mi.items():
            if v is not None and cur.get(k) is None:
                cur[k] = v
        if r.get("submission"):
            cur["submitted"] = True
    return info


def _nanmean(xs) -> float:
    xs = [x for x in xs if not math.isnan(x)]
    return float(np.mean(xs)) if xs else math.nan


def _finish_cell(cell: BoardCell, metrics: list) -> None:
    if cell.nsd_other_tau:  # one tau per cell too: a cell with any old-tau seed shows no NSD
        cell.seed_means.pop("nsd", None)
        cell.per_case.pop("nsd", None)
    for m in metrics:
        seeds = cell.seed_means.get(m, {})
        vals = [v for _, v in sorted(seeds.items()) if not math.isnan(v)]
        cell.mean[m] = float(np.mean(vals)) if vals else math.nan
        cell.std[m] = float(np.std(vals, ddof=1)) if len(vals) > 1 else math.nan  # one seed: no spread


def _cost(row: BoardRow) -> dict:
    """Mean train time, iterations and labelled iterations (steps on a labelled batch; records made
    before it was recorded have none) over the row's finished runs; largest parameter count and peak memory."""
    times, its, lab, params, mem = [], [], [], [], []
    for cell in row.cells.values():
        for rec in cell.done.values():
            p = rec.get("provenance") or {}
            times.append(_num(p.get("train_time_s", p.get("wall_time_s"))))
            its.append(_num(p.get("iterations")))
            lab.append(_num(p.get("labelled_iterations")))
            params.append(_num(p.get("parameters")))
            mem.append(_num(p.get("peak_memory_mb")))
    finite = lambda xs: [x for x in xs if not math.isnan(x)]  # noqa: E731
    mean = lambda xs: float(np.mean(finite(xs))) if finite(xs) else math.nan  # noqa: E731
    return {"train_time_s": mean(times), "iterations": mean(its), "labelled_iterations": mean(lab),
            "parameters": max(finite(params)) if finite(params) else math.nan,
            "peak_memory_mb": max(finite(mem)) if finite(mem) else math.nan}


def record_tau(record: dict) -> float | None:
    """The per-dataset NSD tau (spacing units) a record was scored with, or None for a legacy record
    (scored before issue 23 with the global tau = 2 spacing units: no ``tau_source`` in its definitions)."""
    nd = (((record.get("metrics") or {}).get("metric_definitions")) or {}).get("nsd") or {}
    if not isinstance(nd, dict) or "tau_source" not in nd:
        return None
    return _num(nd.get("tau"))


def _board_units(records: list[dict]) -> tuple[str, float, float | None, str]:
    """``(distance unit, factor, tau shown, tau text)`` of one board from its finished records: the unit
    from the median finest-axis spacing of their cases (:func:`~medseg_bench.metrics.tolerance.display_unit`);
    the tau shown is the most common per-dataset tau (ties: the smaller), so one NSD column has one tau."""
    from ..metrics.tolerance import display_unit, tolerance_text

    finest = [min(float(x) for x in pc["spacing"]) for r in records
              for pc in ((r.get("metrics") or {}).get("per_case") or []) if pc.get("spacing")]
    fin = float(np.median(finest)) if finest else None
    unit, factor = display_unit(fin)
    taus = [t for t in (record_tau(r) for r in records) if t is not None and not math.isnan(t)]
    tau = min(set(taus), key=lambda t: (-taus.count(t), t)) if taus else None
    return unit, factor, tau, (tolerance_text(tau, fin) if tau is not None else "")


def build_boards(records: list[dict], manifest: list[dict] | None = None,
                 manifest_methods: dict[str, dict] | None = None,
                 manifest_datasets: dict[str, dict] | None = None) -> list[Board]:
    """Group records (and expected cells from the manifest) into boards, sorted by dataset, preset.

    ``manifest_methods`` (method -> ``method_info``, from the grid manifest) labels rows that have no
    record yet; a record's own ``method_info`` wins. ``manifest_datasets`` (dataset -> facts) marks
    instance datasets, so their boards show AJI / PQ columns before the first record arrives."""
    info = _method_info(records)
    for name, mi in (manifest_methods or {}).items():
        cur = info.setdefault(name, {})
        for k, v in (mi or {}).items():
            if v is not None and cur.get(k) is None:
                cur[k] = v
    groups: dict[tuple, dict] = {}

    def slot(d: dict) -> BoardCell:
        key = (d["dataset"], d["preset"])
        row_key = (d["method"], d["configuration"])
        rows = groups.setdefault(key, {})
        cells = rows.setdefault(row_key, {})
        return cells.setdefault(d["budget"], BoardCell())

    for d in manifest or []:
        slot(d).expected.add(int(d["seed"]))
    by_board: dict[tuple, list] = {}
    for r in records:
        if r["status"] == "done":
            by_board.setdefault((r["cell"]["dataset"], r["cell"]["preset"]), []).append(r)
    units = {k: _board_units(v) for k, v in by_board.items()}
    legacy: dict[tuple, int] = {}
    cases_seen: dict[tuple, set] = {}
    instance_datasets = {ds for ds, facts in (manifest_datasets or {}).items()
                         if isinstance(facts, dict) and facts.get("instance_labels")}
    instance_boards = set()
    for r in records:
        c = r["cell"]
        cell = slot(c)
        seed = int(c["seed"])
        cell.expected.add(seed)
        if r["status"] != "done":
            cell.failed[seed] = (r.get("error") or "failed").strip()
            continue
        cell.done[seed] = r
        per_case = ((r.get("metrics") or {}).get("per_case")) or []
        if any("instance" in pc for pc in per_case):
            instance_boards.add((c["dataset"], c["preset"]))
        _, factor, tau, _ = units[(c["dataset"], c["preset"])]
        metrics = CLASS_METRICS_SHOWN + INSTANCE_METRICS_SHOWN
        if record_tau(r) is None or record_tau(r) != tau:  # no mixed tau in one column
            metrics = tuple(m for m in metrics if m != "nsd")
            legacy[(c["dataset"], c["preset"])] = legacy.get((c["dataset"], c["preset"]), 0) + 1
            cell.nsd_other_tau += 1
        case_vals: dict[str, dict] = {m: {} for m in metrics}
        for pc in per_case:
            vals, n_inf, n_nan = case_values(pc, metrics)
            for m in _DISTANCES:
                if m in vals:
                    vals[m] *= factor
            for m in metrics:
                case_vals[m][pc["case"]] = vals[m]
                cell.n_inf[m] = cell.n_inf.get(m, 0) + n_inf[m]
                cell.n_nan[m] = cell.n_nan.get(m, 0) + n_nan[m]
        cases_seen.setdefault((c["dataset"], c["preset"]), set()).update(pc["case"] for pc in per_case)
        for m in metrics:
            cell.seed_means.setdefault(m, {})[seed] = _nanmean(case_vals[m].values())
            for case, v in case_vals[m].items():
                cell.per_case.setdefault(m, {}).setdefault(case, []).append(v)

    boards = []
    for (ds, preset), rows in sorted(groups.items()):
        inst = (ds, preset) in instance_boards or ds in instance_datasets
        metrics = list(CLASS_METRICS_SHOWN) + (list(INSTANCE_METRICS_SHOWN) if inst else [])
        configs_per_method: dict[str, set] = {}
        for method, config in rows:
            configs_per_method.setdefault(method, set()).add(config)
        board_rows = []
        budgets: set = set()
        seeds: set = set()
        for (method, config), cells in sorted(rows.items()):
            mi = info.get(method, {})
            label = method if len(configs_per_method[method]) == 1 else f"{method} [{config}]"
            row = BoardRow(method, config, label, mi.get("family") or "?", mi.get("citation") or "",
                           bool(mi.get("oracle", False)), mi.get("class_rule"), bool(mi.get("submitted")))
            for budget, cell in cells.items():
                cell.per_case = {m: {k: _nanmean(v) for k, v in sorted(cs.items())} for m, cs in cell.per_case.items()}
                _finish_cell(cell, metrics)
                budgets.add(budget)
                seeds.update(cell.expected)
            row.cells = dict(sorted(cells.items(), key=lambda kv: budget_sort_key(kv[0])))
            row.cost = _cost(row)
            board_rows.append(row)
        unit, factor, tau, tau_text = units.get((ds, preset), ("spacing units", 1.0, None, ""))
        boards.append(Board(ds, preset, sorted(budgets, key=budget_sort_key), metrics, board_rows,
                            sorted(seeds), len(cases_seen.get((ds, preset), ())), inst, unit, factor, tau,
                            tau_text, legacy.get((ds, preset), 0)))
    return boards


def is_all(budget) -> bool:
    return budget == ALL
