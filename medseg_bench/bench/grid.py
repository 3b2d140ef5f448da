"""Benchmark grids: presets' default budgets and seeds, cells, and grid expansion.

A **cell** is ``(dataset, preset, configuration, method, budget, seed)`` (ARCHITECTURE.md). Its key,
``<dataset>__<preset>__<config>__<method>__b<budget>__s<seed>``, names its results record; its run
folder is :meth:`medseg_bench.workdir.Workdir.run_dir`. Both are deterministic, so a re-run finds the
cells that are already done.

Expansion reads only the dataset's ``plans.json`` (configurations, the preset's recommended
configuration and cost estimates) and each method's class attributes; it never touches data.

Cost estimates (:func:`estimate_grid_cost_s`) order the runner's cells and give the ETA and the
``run --dry-run`` total. A method that caches a budget-independent stage (``Method.shared_stages``)
reports the stage's cost apart from the per-cell cost (``estimate_stage_cost_s``); the stage is
charged once per group of cells sharing it (:func:`stage_groups`, the runner's groups), to the cell
the runner runs first, which computes it.

Example::

    >>> parse_budget("all"), parse_budget("4")
    ('all', 4)
    >>> Cell("ct_hip_small", "demo", "3d_fullres", "supervised", 2, 0).key
    'ct_hip_small__demo__3d_fullres__supervised__b2__s0'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = [
    "ALL",
    "CONFIG_DIMS",
    "PRESETS",
    "PRESET_DEFAULTS",
    "Cell",
    "budget_sort_key",
    "default_preset",
    "estimate_cost_s",
    "estimate_grid_cost_s",
    "estimate_stage_cost_s",
    "expand_grid",
    "method_applies",
    "method_budgets",
    "parse_budget",
    "parse_budgets",
    "resolve_configuration",
    "shared_stages_of",
    "stage_group_key",
    "stage_groups",
]

ALL = "all"
PRESETS = ("demo", "quick", "paper")
#: default budgets / seeds / built-in dataset size of each preset (the grid `medseg-bench run` runs)
PRESET_DEFAULTS: dict[str, dict] = {
    # demo: the whole default grid in <= 15 min on 2 CPU cores (smoke-level leaderboard); without
    # --budgets, "all" is run by the upper bound only (expand_grid's all_for_upper_bound_only)
    "demo": {"budgets": (0, 2, ALL), "seeds": (0,), "size": "small"},
    # quick: the CPU reference benchmark (run with --seeds 0 1 2 for the committed leaderboard)
    "quick": {"budgets": (0, 2, 4, 8, ALL), "seeds": (0,), "size": "small"},
    # paper: the papers' schedules on a GPU
    "paper": {"budgets": (0, 1, 2, 4, 8, 16, ALL), "seeds": (0, 1, 2), "size": "full"},
}
#: spatial dimensionality a configuration trains in
CONFIG_DIMS = {"2d": 2, "3d_fullres": 3, "3d_lowres": 3}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def parse_budget(value: int | str) -> int | str:
    """A label budget: a non-negative integer (labelled training cases) or ``"all"``.

    Raises:
        ValueError: anything else, e.g. ``"-1"`` or ``"half"``.
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid budget {value!r}: use a non-negative integer or 'all'")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"invalid budget {value}: must be >= 0")
        return value
    text = str(value).strip().lower()
    if text == ALL:
        return ALL
    if text.isdigit():
        return int(text)
    raise ValueError(f"invalid budget {value!r}: use a non-negative integer or 'all'")


def parse_budgets(values: Iterable[int | str]) -> list[int | str]:
    """Parse, de-duplicate and sort budgets (integers ascending, ``all`` last)."""
    return sorted({parse_budget(v) for v in values}, key=budget_sort_key)


def budget_sort_key(budget: int | str) -> tuple[int, int]:
    """Sort key putting integer budgets in order and ``"all"`` after them."""
    return (1, 0) if budget == ALL else (0, int(budget))


def default_preset() -> str:
    """``paper`` when a CUDA GPU is visible, else ``demo`` (the default benchmark on a CPU)."""
    try:
        import torch

        return "paper" if torch.cuda.is_available() else "demo"
    except ImportError:  # pragma: no cover - torch is a dependency
        return "demo"


@dataclass(frozen=True, order=False)
class Cell:
    """One unit of work: a method trained at one label budget and seed on one dataset."""

    dataset: str
    preset: str
    configuration: str
    method: str
    budget: int | str
    seed: int

    def __post_init__(self):
        for field_name in ("dataset", "preset", "configuration", "method"):
            value = getattr(self, field_name)
            if not isinstance(value, str) or not _NAME_RE.match(value) or "__" in value:
                raise ValueError(f"cell {field_name} {value!r}: use letters, digits, '_', '-', '.' (no '__')")
        object.__setattr__(self, "budget", parse_budget(self.budget))
        object.__setattr__(self, "seed", int(self.seed))

    @property
    def key(self) -> str:
        """File-name key of the cell's results record (without ``.json``)."""
        return (f"{self.dataset}__{self.preset}__{self.configuration}__{self.method}"
                f"__b{self.budget}__s{self.seed}")

    @classmethod
    def from_key(cls, key: str) -> Cell:
        """Inverse of :attr:`key` (accepts a trailing ``.json``)."""
        parts = key.removesuffix(".json").split("__")
        if len(parts) != 6 or not parts[4].startswith("b") or not parts[5].startswith("s"):
            raise ValueError(f"{key!r} is not a cell key (dataset__preset__config__method__b<budget>__s<seed>)")
        return cls(parts[0], parts[1], parts[2], parts[3], parts[4][1:], int(parts[5][1:]))

    def to_dict(self) -> dict:
        """The ``cell`` block of a results record (``configuration`` spelled out)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Cell:
        config = d.get("configuration", d.get("config"))
        return cls(d["dataset"], d["preset"], config, d["method"], d["budget"], d["seed"])

    def run_dir(self, workdir: Path) -> Path:
        from ..workdir import Workdir

        return Workdir(Path(workdir)).run_dir(self.dataset, self.preset, self.configuration, self.method,
                                              self.budget, self.seed)

    def label(self) -> str:
        """Short human-readable name for progress lines."""
        return f"{self.dataset}/{self.configuration}/{self.method} b{self.budget} s{self.seed}"


def method_budgets(method, budgets: Sequence[int | str], n_labelled: int | None = None) -> list[int | str]:
    """The budgets among ``budgets`` at which ``method`` appears.

    ``method.budgets`` (the Method contract): ``"zero_only"`` (unsupervised, classical: budget 0),
    ``"labelled"`` (integer budgets >= 1 and ``all``), ``"all_only"`` (``supervised_full``: ``all``).
    :func:`expand_grid` drops ``all`` for a method whose dedicated ``all_only`` subclass is in the grid
    (``supervised`` at ``all`` *is* ``supervised_full``). A method may instead define
    ``applies_to_budget(budget) -> bool``. Integer budgets above ``n_labelled`` (the dataset's labelled
    training cases, when known) are dropped: they cannot be drawn.
    """
    hook = getattr(method, "applies_to_budget", None)
    rule = getattr(method, "budgets", "labelled")
    out = []
    for b in budgets:
        if b != ALL and n_labelled is not None and b > n_labelled:
            continue
        if callable(hook):
            ok = bool(hook(b))
        elif rule == "zero_only":
            ok = b == 0
        elif rule == "all_only":
            ok = b == ALL
        elif rule == "labelled":
            ok = b == ALL or b >= 1
        elif rule == "any":
            ok = True
        else:
            raise ValueError(f"method {getattr(method, 'name', method)!r}: unknown budgets rule {rule!r}")
        if ok:
            out.append(b)
    return out


def resolve_configuration(method, plans: dict, preset: str) -> str | None:
    """The configuration a method trains in for ``preset``, or ``None`` when none fits its dims.

    Order: the method's ``recommended_configuration(plans, preset)`` hook when it has one, else the
    plan's ``presets[preset].recommended_configuration``; if the method does not support that
    configuration's dimensionality (e.g. a 2D-only method on a 3D dataset), the planned configuration
    that matches one of ``method.dims`` (``2d`` first) is taken.
    """
    planned = list((plans.get("presets", {}).get(preset, {}) or {}).get("configurations", {}) or
                   plans.get("configurations", {}))
    hook = getattr(method, "recommended_configuration", None)
    chosen = None
    if callable(hook):
        try:
            chosen = hook(plans, preset)
        except TypeError:  # hook without arguments
            chosen = hook()
    if chosen is None:
        chosen = (plans.get("presets", {}).get(preset, {}) or {}).get("recommended_configuration")
    dims = tuple(getattr(method, "dims", (2, 3)))
    if chosen in planned and CONFIG_DIMS.get(chosen, 0) in dims:
        return chosen
    for config in sorted(planned, key=lambda c: (CONFIG_DIMS.get(c, 9), c)):
        if CONFIG_DIMS.get(config) in dims:
            return config
    return None


def method_applies(method, plans: dict) -> bool:
    """Whether ``method`` runs on the dataset of ``plans``: its ``applies_to(plans) -> bool`` hook
    when it has one (e.g. PSM needs RGB images), else True."""
    hook = getattr(method, "applies_to", None)
    return bool(hook(plans)) if callable(hook) else True


def in_demo_grid(method, dataset: str, preset: str, explicit_methods: bool) -> bool:
    """Whether the default ``demo`` grid keeps ``method`` on ``dataset``: its ``demo_datasets``
    (dataset-name prefixes, its paper's home data) when it declares them; any other preset, or a
    method the user named, runs everywhere."""
    homes = tuple(getattr(method, "demo_datasets", ()) or ())
    return preset != "demo" or explicit_methods or not homes or dataset.startswith(homes)


def estimate_cost_s(method, plans: dict, preset: str, config: str, budget: int | str) -> float:
    """Rough wall time in seconds of one cell's own work, used to order cells (longest first within a
    seed) and for the ETA; a shared stage's cost is not in it (:func:`estimate_grid_cost_s` adds it
    once per group).

    ``method.estimate_cost_s(plans, preset, config, budget)`` when defined, else the plan's
    ``num_iterations * step_time_estimate_s`` times ``method.cost_factor`` (default 1); 1 s when the
    plan has no estimate.
    """
    hook = getattr(method, "estimate_cost_s", None)
    if callable(hook):
        try:
            return float(hook(plans, preset, config, budget))
        except Exception:  # an estimate must never stop a run
            pass
    cfg = ((plans.get("presets", {}).get(preset, {}) or {}).get("configurations", {}) or {}).get(config, {})
    try:
        base = float(cfg.get("num_iterations", 0)) * float(cfg.get("step_time_estimate_s", 0))
    except (TypeError, ValueError):
        base = 0.0
    return max(base, 1.0) * float(getattr(method, "cost_factor", 1.0) or 1.0)


def shared_stages_of(method) -> tuple[str, ...]:
    """``method.shared_stages`` as a tuple (empty for a method without one, or ``None``)."""
    return tuple(getattr(method, "shared_stages", None) or ())


def estimate_stage_cost_s(method, plans: dict, preset: str, config: str) -> dict[str, float]:
    """Rough seconds of each budget-independent stage of ``method``: its
    ``estimate_stage_cost_s(plans, preset, config) -> {stage name: seconds}`` when defined (stage
    names from its ``shared_stages``), else ``{}`` (the whole cost is then in :func:`estimate_cost_s`).
    A hook that fails gives ``{}`` (an estimate must never stop a run).

    Raises:
        ValueError: the hook names a stage that is not in the method's ``shared_stages`` (the runner
            would not group its cells on it, so charging it once would undercount).
    """
    hook = getattr(method, "estimate_stage_cost_s", None)
    if not callable(hook):
        return {}
    try:
        costs = {str(k): max(0.0, float(v)) for k, v in (hook(plans, preset, config) or {}).items()}
    except Exception:  # an estimate must never stop a run
        return {}
    declared = shared_stages_of(method)
    unknown = sorted(set(costs) - set(declared))
    if unknown:
        raise ValueError(f"method {getattr(method, 'name', method)!r}: estimate_stage_cost_s names stage(s) "
                         f"{', '.join(map(repr, unknown))}, not in its shared_stages {declared!r}")
    return costs


def stage_group_key(cell: Cell, stages) -> tuple | None:
    """The group of cells that share one cached stage with ``cell``, or ``None`` (no stage).

    ``stages``: the cell's method's stage names (``Method.shared_stages``), or ``True`` for a stage of
    the method's own. The key is ``(dataset, preset, configuration, seed, sorted stage names)``: every
    budget of a method, and every method declaring the same names (``dae_anomaly`` and ``dae_finetune``
    both declare ``"dae-"``; the three CUTS rows ``"cuts_encoder"``), which is how their stage folders
    ``stages/<dataset>/<preset>/<name>-<configuration>-<key>/seed_<seed>`` coincide.
    """
    if not stages:
        return None
    names = tuple(sorted(stages)) if isinstance(stages, (tuple, list, set, frozenset)) else (cell.method,)
    return (cell.dataset, cell.preset, cell.configuration, cell.seed, names)


def stage_groups(cells: Iterable[Cell], estimates: Mapping[Cell, float],
                 shared_stage: Callable[[str], tuple | bool]) -> dict[tuple, list[Cell]]:
    """Cells sharing a stage, grouped by :func:`stage_group_key`: ``key -> cells``, in the order the
    runner runs them: first the longest estimate (ties: the order of ``cells``), which computes the
    stage, then the others (started once it is done). Cells without a stage are in no group.

    ``shared_stage``: ``method name ->`` its stage names (or a bool); ``estimates``: seconds per cell
    (a missing cell counts 1 s, as in :func:`medseg_bench.bench.runner.run_cells`).
    """
    groups: dict[tuple, list[Cell]] = {}
    for c in dict.fromkeys(cells):
        key = stage_group_key(c, shared_stage(c.method))
        if key is not None:
            groups.setdefault(key, []).append(c)
    for members in groups.values():
        members.sort(key=lambda c: -float(estimates.get(c, 1.0)))  # stable: ties keep the order of cells
    return groups


def estimate_grid_cost_s(cells: Iterable[Cell], methods: Mapping[str, object], plans: Mapping[str, dict],
                         done: Collection[Cell] = (), cached: Collection[Cell] = ()
                         ) -> tuple[dict[Cell, float], dict[Cell, float]]:
    """Cost estimates of a grid, each shared stage counted once: ``(estimates, stage_s)``.

    ``estimates[cell]`` is :func:`estimate_cost_s` (the cell's own work) plus ``stage_s[cell]``: the
    stage cost of its :func:`stage_groups` group — the sum over the group's stage names of
    :func:`estimate_stage_cost_s` (the largest value any member gives for a name) — for the one cell
    of the group that pays it, 0 for every other cell. The cell that pays it is the group's first
    cell (the one the runner starts first, which trains the stage) among those still to run (not in
    ``done``); when a member is in ``cached`` (a done cell that ran in this workdir: the stage folder
    it made or loaded is on disk) the first such member instead, so the cells left to run carry none
    of it while a measured pace over the done cells still compares like with like. A method without
    an ``estimate_stage_cost_s`` hook keeps its :func:`estimate_cost_s` unchanged.

    Args:
        cells: the whole grid (order: :func:`expand_grid`'s; duplicates counted once).
        methods: method name -> method class (every cell's method).
        plans: dataset name -> its ``plans.json`` content (every cell's dataset).
        done: cells that will not run (finished, or imported with ``--records``).
        cached: done cells whose run computed or loaded their stage here (not imported records:
            those come without stage folders, so their group's stage is still to be trained).

    Raises:
        KeyError: a cell's method or dataset is missing from ``methods`` / ``plans``.
    """
    cells = list(dict.fromkeys(cells))
    done, cached = set(done), set(cached)
    for c in cells:
        if c.method not in methods:
            raise KeyError(f"cost estimate of {c.label()}: method {c.method!r} is not among the grid's methods")
        if c.dataset not in plans:
            raise KeyError(f"cost estimate of {c.label()}: no plans for dataset {c.dataset!r}")
    own = {c: estimate_cost_s(methods[c.method], plans[c.dataset], c.preset, c.configuration, c.budget)
           for c in cells}
    stage_s = dict.fromkeys(cells, 0.0)
    for members in stage_groups(cells, own, lambda name: shared_stages_of(methods[name])).values():
        costs: dict[str, float] = {}
        for c in members:
            for name, s in estimate_stage_cost_s(methods[c.method], plans[c.dataset], c.preset,
                                                 c.configuration).items():
                costs[name] = max(costs.get(name, 0.0), s)
        have_it = [c for c in members if c in cached]
        to_run = [c for c in members if c not in done]
        stage_s[(have_it or to_run or members)[0]] = sum(costs.values())
    return {c: own[c] + stage_s[c] for c in cells}, stage_s


def expand_grid(
    datasets: dict[str, dict],
    methods: dict[str, object],
    budgets: Sequence[int | str],
    seeds: Sequence[int],
    preset: str,
    n_labelled: dict[str, int] | None = None,
    explicit_methods: bool = False,
    warn: Callable[[str], None] | None = None,
    all_for_upper_bound_only: bool = False,
) -> list[Cell]:
    """All cells of a grid, in a stable order (dataset, method, budget, seed).

    Args:
        datasets: dataset name -> its ``plans.json`` content.
        methods: method name -> method class (registry order is irrelevant: names are sorted).
        budgets, seeds: the grid's budgets and seeds.
        preset: ``demo``, ``quick`` or ``paper``.
        n_labelled: dataset -> number of labelled training cases (drops budgets that cannot be drawn).
        explicit_methods: the user named the methods; a named method that fits no cell of a dataset
            is reported through ``warn`` instead of vanishing silently.
        all_for_upper_bound_only: budget ``all`` only for the upper-bound rows (``budgets =
            "all_only"``, e.g. ``supervised_full``); every other method stops at its largest finite
            budget. ``medseg-bench run`` sets it for the default ``demo`` grid (no ``--budgets``): a
            semi-supervised or fine-tuned row with every label has no unlabelled data left to use, so
            in a smoke-level grid it costs a cell and answers no label-efficiency question.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    budgets = parse_budgets(budgets)
    # a method's "all" row is its all_only subclass when the grid has one (supervised -> supervised_full)
    has_all_variant = {n for n, m in methods.items()
                       if any(isinstance(o, type) and isinstance(m, type) and o is not m and issubclass(o, m)
                              and getattr(o, "budgets", None) == "all_only" for o in methods.values())}
    cells: list[Cell] = []
    for ds in sorted(datasets):
        plans = datasets[ds]
        for name in sorted(methods):
            method = methods[name]
            if not in_demo_grid(method, ds, preset, explicit_methods):
                continue
            config = resolve_configuration(method, plans, preset)
            fits = method_applies(method, plans)
            applicable = method_budgets(method, budgets, (n_labelled or {}).get(ds)) if config and fits else []
            if name in has_all_variant or (all_for_upper_bound_only and getattr(method, "budgets", None) != "all_only"):
                applicable = [b for b in applicable if b != ALL]
            if not applicable:
                if explicit_methods and warn:
                    why = ("no configuration fits its dims" if config is None else
                           "it does not apply to this dataset (its applies_to rule)" if not fits else
                           "no requested budget applies")
                    warn(f"method {name} skipped on {ds}: {why}")
                continue
            for b in applicable:
                for s in sorted(set(int(x) for x in seeds)):
                    cells.append(Cell(ds, preset, config, name, b, s))
    return cells
