"""``medseg-bench run``: datasets -> (generate) -> plan + preprocess once -> grid -> cells -> leaderboard.

With no arguments it runs the default benchmark: the built-in datasets (generated when absent), every
built-in method that applies, the preset's budgets and seeds (``demo`` on a CPU, ``paper`` on a GPU).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from ..workdir import Workdir
from .grid import PRESET_DEFAULTS, Cell, default_preset, estimate_cost_s, expand_grid, parse_budgets
from .results import load_records, read_json, results_dir, update_manifest
from .runner import RunSummary, run_cells

__all__ = ["builtin_datasets", "load_methods", "prepare_datasets", "run_benchmark", "run_command"]


def builtin_datasets(size: str) -> list[str]:
    """Names of the built-in datasets at ``size`` (e.g. ``ct_hip_small``), one per generator."""
    from ..datasets import default_dataset_name, list_generators

    return [default_dataset_name(g.name, size) for g in list_generators()]


def _generator_for(name: str, default_size: str) -> tuple[str, str] | None:
    """(generator, size) when ``name`` is a generator name or ``<generator>_<size>``, else ``None``."""
    from ..datasets import SIZES, list_generators

    gens = {g.name for g in list_generators()}
    if name in gens:
        return name, default_size
    for size in SIZES:
        if name.endswith(f"_{size}") and name[: -len(size) - 1] in gens:
            return name[: -len(size) - 1], size
    return None


def resolve_datasets(workdir: Path, names: list[str], size: str, log: Callable[[str], None]) -> list[str]:
    """Dataset names under ``<workdir>/raw``: built-ins are generated when absent; a raw folder given by
    path outside the workdir is linked in as ``raw/<folder name>`` (the raw folder itself is never written)."""
    from ..datasets import default_dataset_name, generate

    wd = Workdir(Path(workdir))
    out = []
    for arg in names:
        gen = _generator_for(arg, size) if not (Path(arg) / "dataset.json").exists() else None
        if gen is not None:
            name = default_dataset_name(*gen)
            if not (wd.raw_dataset(name) / "dataset.json").exists():
                log(f"generating {name} ...")
                generate(gen[0], wd.raw_dataset(name), size=gen[1], seed=0, overwrite=wd.raw_dataset(name).exists())
            out.append(name)
            continue
        path = wd.resolve_dataset(arg)
        if path.parent != wd.raw:
            link = wd.raw_dataset(path.name)
            if link.exists() and link.resolve() != path.resolve():
                raise FileExistsError(f"{link} exists and is not {path}: rename one of the two datasets")
            if not link.exists():
                wd.raw.mkdir(parents=True, exist_ok=True)
                link.symlink_to(path.resolve(), target_is_directory=True)
        out.append(path.name)
    return list(dict.fromkeys(out))


def _default_prepare(workdir: Path, dataset: str) -> None:
    from ..training import ensure_prepared

    ensure_prepared(workdir, dataset)


def prepare_datasets(workdir: Path, datasets: list[str], prepare_fn: Callable | None,
                     log: Callable[[str], None]) -> dict[str, dict]:
    """Plan + preprocess each dataset exactly once (skipped when up to date); return its plans."""
    prepare_fn = prepare_fn or _default_prepare
    plans = {}
    for ds in datasets:
        log(f"preparing {ds} (plan + preprocess; cached) ...")
        prepare_fn(Path(workdir), ds)
        path = Workdir(Path(workdir)).preprocessed(ds) / "plans.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: preparing {ds} wrote no plans.json")
        plans[ds] = read_json(path)
    return plans


def load_methods(names: list[str] | None) -> dict[str, type]:
    """Method classes by name: the built-ins when ``names`` is ``None``; named ones (plugins included)."""
    from .. import methods as registry

    if names:
        if hasattr(registry, "load_plugins"):
            registry.load_plugins()
        return {n: registry.get_method(n) for n in dict.fromkeys(names)}
    # installed plugins and single-file methods join a grid only when named
    return {n: registry.get_method(n) for n in registry.list_methods(builtin_only=True)}


def _cuda_devices() -> list[str]:
    """``["cuda:0", ...]`` for the visible GPUs (empty on a CPU machine)."""
    try:
        import torch

        return [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    except ImportError:  # pragma: no cover
        return []


def _n_labelled(workdir: Path, dataset: str) -> int | None:
    from ..io import DatasetError, RawDataset

    try:
        return len(RawDataset(Workdir(Path(workdir)).raw_dataset(dataset)).train_cases())
    except DatasetError:
        return None


def _info(method_cls) -> dict:
    """A method's ``method_info`` (family, citation, ...) for the grid manifest."""
    if callable(getattr(method_cls, "info", None)):
        return method_cls.info()
    keys = ("family", "citation", "needs_labels", "uses_unlabelled", "oracle", "class_rule")
    return {k: getattr(method_cls, k, None) for k in keys}


def run_benchmark(workdir: Path, datasets: list[str] | None = None, methods: list[str] | None = None,
                  budgets: list | None = None, seeds: list[int] | None = None, preset: str | None = None,
                  executor: str = "local", *, cell_fn: Callable | None = None, prepare_fn: Callable | None = None,
                  method_classes: dict[str, type] | None = None, workers: int | None = None,
                  leaderboard: bool = True, progress: bool = True, extra: dict | None = None,
                  executor_options: dict | None = None, stream=None,
                  rerun: bool = False, records: str | Path | None = None,
                  dry_run: bool = False) -> tuple[RunSummary, list[Cell]]:
    """The API behind ``medseg-bench run`` (see module docstring). Returns the summary and the grid.

    Finished cells are skipped, whatever commit produced them; ``rerun=True`` runs every cell of the
    grid again from scratch (see :func:`medseg_bench.bench.results.reset_cell`). ``records`` is a
    folder of finished records (e.g. the committed ``leaderboards/results/``) whose cells count as done
    (see :func:`medseg_bench.bench.results.import_records`); ignored with ``rerun``. ``dry_run``
    prepares the datasets (generate, plan, preprocess), prints the cells still to run with their
    estimated cost, and trains nothing (``records``/``rerun`` are not applied).

    ``cell_fn``, ``prepare_fn`` and ``method_classes`` replace the engine, the preparation step and the
    method registry (dependency injection for tests and custom drivers).
    """
    stream = stream or sys.stderr

    def log(msg: str) -> None:
        if progress:
            print(msg, file=stream, flush=True)

    workdir = Path(workdir)
    preset = preset or default_preset()
    if preset not in PRESET_DEFAULTS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESET_DEFAULTS)}")
    defaults = PRESET_DEFAULTS[preset]
    grid_budgets = parse_budgets(budgets if budgets else defaults["budgets"])  # usage errors first
    grid_seeds = list(seeds) if seeds else list(defaults["seeds"])
    names = datasets or builtin_datasets(defaults["size"])
    ds_names = resolve_datasets(workdir, names, defaults["size"], log)
    plans = prepare_datasets(workdir, ds_names, prepare_fn, log)
    classes = method_classes if method_classes is not None else load_methods(methods)
    if methods and method_classes is not None:
        missing = [m for m in methods if m not in classes]
        if missing:
            raise KeyError(f"unknown method(s) {', '.join(missing)}; available: {', '.join(sorted(classes))}")
        classes = {m: classes[m] for m in methods}
    n_lab = {ds: _n_labelled(workdir, ds) for ds in ds_names}
    cells = expand_grid(plans, classes, grid_budgets, grid_seeds, preset, n_labelled=n_lab,
                        explicit_methods=bool(methods), warn=log)
    if not cells:
        raise ValueError("the grid is empty: no method applies to the requested datasets and budgets")
    estimates = {c: estimate_cost_s(classes[c.method], plans[c.dataset], preset, c.configuration, c.budget)
                 for c in cells}
    if dry_run:
        importable: set[Cell] = set()
        if records is not None and not rerun:
            from .results import importable_records

            chosen, warnings = importable_records(workdir, cells, Path(records), *_data_hashes(plans, ds_names))
            importable = set(chosen)
            for w in warnings:
                log(f"warning: {w}")
            log(f"--records: {len(importable)} finished cell(s) would be imported from {records}")
        return _dry_run(workdir, cells, estimates, workers, stream, rerun=rerun, importable=importable), cells
    update_manifest(workdir, cells, {m: _info(classes[m]) for m in sorted({c.method for c in cells})},
                    {ds: {"instance_labels": bool(plans[ds].get("instance_labels"))} for ds in ds_names})
    if rerun:
        from .results import reset_cell

        n_reset = 0
        for c in cells:
            prefixes = tuple(getattr(classes.get(c.method), "shared_stages", None) or ())
            n_reset += reset_cell(workdir, c, prefixes)
        log(f"--rerun: {n_reset} finished cell(s) will run again (old run folders kept as *.previous)")
    elif records is not None:
        from .results import import_records

        n_imported, warnings = import_records(workdir, cells, Path(records), *_data_hashes(plans, ds_names))
        for w in warnings:
            log(f"warning: {w}")
        log(f"--records: {n_imported} finished cell(s) imported from {records}")
    from .cells import prepare_worker
    from .executors import make_executor
    from .results import cell_is_done

    prepare_worker()  # in-process cells (workers=0) name the commit this run started from, too

    todo = sum(not cell_is_done(workdir, c) for c in cells)
    cores = os.cpu_count() or 1
    options = dict(executor_options or {})
    gpus = _cuda_devices() if executor == "local" and "devices" not in options else []
    if gpus:  # one worker per GPU, the cores shared among them
        n_workers = workers if workers is not None else max(1, min(len(gpus), todo))
        options.update(devices=gpus, num_threads=max(1, cores // n_workers))
    else:  # one single-threaded worker per core
        n_workers = workers if workers is not None else max(1, min(cores, todo))
    ex = make_executor(executor, workdir, workers=n_workers, **options)
    log(f"grid: {len(cells)} cells ({todo} to run) on {len(ds_names)} dataset(s), preset {preset}, "
        f"executor {executor}" + (f" with {n_workers} worker(s)" if executor == "local" else ""))

    def shared(name: str) -> tuple:
        return tuple(getattr(classes.get(name), "shared_stages", None) or ())

    kwargs = {"cell_fn": cell_fn} if cell_fn is not None else {}
    summary = run_cells(workdir, cells, ex, estimates=estimates, shared_stage=shared, extra=extra,
                        progress=progress, stream=stream, **kwargs)
    log(summary.format())
    if leaderboard:
        from ..leaderboard import build_leaderboard

        out = Workdir(workdir).leaderboards
        build_leaderboard(load_records(results_dir(workdir)), out, manifest_dir=results_dir(workdir))
        log(f"leaderboard: {out / 'README.md'} and {out / 'index.html'}")
    return summary, cells


def _data_hashes(plans: dict, ds_names: list[str]) -> tuple[dict, dict]:
    """``(dataset hashes, record plan hashes)`` of the datasets here, for checking imported records."""
    from ..planning.plans_file import record_plan_hash

    return ({ds: (plans.get(ds) or {}).get("dataset_hash") for ds in ds_names},
            {ds: record_plan_hash(plans[ds]) if plans.get(ds) else None for ds in ds_names})


def _measured_pace(workdir: Path, done: list[Cell], estimates: dict[Cell, float]) -> tuple[float, int] | None:
    """``(measured wall time / estimate, cells)`` over the done cells that ran here from start to end
    (not imported with --records, not resumed: their wall time covers only a part), or ``None``."""
    from .results import IMPORTED_MARKER

    wall = est = 0.0
    n = 0
    for c in done:
        run = c.run_dir(workdir)
        if (run / IMPORTED_MARKER).exists() or not estimates.get(c):
            continue
        try:
            prov = json.loads((run / "record.json").read_text()).get("provenance") or {}
        except (OSError, ValueError):
            continue
        if prov.get("resumed_from") or not isinstance(prov.get("wall_time_s"), (int, float)):
            continue
        wall += prov["wall_time_s"]
        est += estimates[c]
        n += 1
    return (wall / est, n) if n and est > 0 else None


def _dry_run(workdir: Path, cells: list[Cell], estimates: dict[Cell, float], workers: int | None,
             stream, rerun: bool = False, importable: set[Cell] | None = None) -> RunSummary:
    """Print what a run would do: cells to run per dataset and method, with estimated CPU time
    (``rerun``: every cell; ``importable``: cells --records would import count as done)."""
    from .results import cell_is_done

    importable = importable or set()
    todo = [c for c in cells if rerun or not (cell_is_done(workdir, c) or c in importable)]
    n_workers = workers or max(1, min(os.cpu_count() or 1, len(todo) or 1))
    rows: dict[tuple[str, str], list[Cell]] = {}
    for c in todo:
        rows.setdefault((c.dataset, c.method), []).append(c)
    n_imp = len(importable - set(todo))
    print(f"dry run: {len(cells)} cells, {len(cells) - len(todo)} already done"
          + (f" ({n_imp} of them by --records)" if n_imp else "") + f", {len(todo)} to run", file=stream)
    if todo:
        print(f"  {'dataset':<20} {'method':<22} {'cells':>5} {'est. cell-min':>13}  budgets", file=stream)
        for (ds, m), cs in sorted(rows.items()):
            budgets = " ".join(dict.fromkeys(str(c.budget) for c in cs))
            print(f"  {ds:<20} {m:<22} {len(cs):>5} {sum(estimates[c] for c in cs) / 60:>13.1f}  {budgets}", file=stream)
        total = sum(estimates[c] for c in todo)
        print(f"estimated {total / 3600:.1f} cell-hours: ~{total / 3600 / n_workers:.1f} h on {n_workers} worker(s) "
              "(the plans' step-time model, not a measurement of this machine)", file=stream)
        pace = _measured_pace(workdir, [c for c in cells if c not in set(todo)], estimates)
        if pace is not None:
            ratio, n = pace
            print(f"at the pace of the {n} cell(s) run in this workdir ({ratio:.2f} x the model): "
                  f"{total * ratio / 3600:.1f} cell-hours, ~{total * ratio / 3600 / n_workers:.1f} h on "
                  f"{n_workers} worker(s)", file=stream)
    return RunSummary(total=len(cells), skipped=len(cells) - len(todo))


def run_command(workdir: Path, datasets: list[str] | None = None, methods: list[str] | None = None,
                budgets: list[str] | None = None, seeds: list[int] | None = None, preset: str | None = None,
                executor: str = "local", rerun: bool = False, workers: int | None = None,
                records: str | None = None, dry_run: bool = False) -> int:
    """CLI handler: 0 when every cell is done, 1 when some failed (the leaderboard is written anyway),
    2 for a usage error (unknown dataset, method or budget)."""
    try:
        summary, _ = run_benchmark(workdir, datasets, methods, budgets, seeds, preset, executor, rerun=rerun,
                                   workers=workers, records=records, dry_run=dry_run)
    except (KeyError, ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    return 0 if summary.ok else 1
