"""One benchmark cell end to end: train (or resume) -> predict the test set -> evaluate -> record.

``train_cell`` is the API the runner and ``medseg-bench train`` call (notes/contracts.md). A cell's
folder is ``<workdir>/runs/<ds>/<preset>/<config>/<method>/budget_<b>/seed_<s>/`` and holds
``config.json`` (the exact settings, cell and provenance inputs), ``plans.json`` (the plan it ran
with), checkpoints, ``train_log.jsonl``, ``loss_curve.json``, ``pred/`` (+ ``pred_instances/``), ``evaluation/``,
``metrics.json``, ``record.json`` and, written last, the done-marker ``DONE``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from .. import __version__
from ..io import RawDataset
from ..io.image import sidecar_path
from ..planning.plans_file import record_plan_hash
from ..splits import (
    BudgetError,
    budget_cases,
    load_or_make_splits,
    normalise_budget,
    split_hash,
    unlabelled_pool,
)
from ..workdir import Workdir
from .checkpoint import load_checkpoint, seed_everything
from .context import RunContext
from .loop import CHECKPOINT_FINAL, CHECKPOINT_LATEST
from .provenance import environment, git_commit, peak_memory_mb
from .settings import choose_device, resolve_settings, set_threads

__all__ = ["RECORD_VERSION", "ensure_prepared", "load_trained", "train_cell", "training_summary"]

RECORD_VERSION = 1


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, allow_nan=False, default=str) + "\n")
    os.replace(tmp, path)


def _wd(workdir) -> Workdir:
    return workdir if isinstance(workdir, Workdir) else Workdir(Path(workdir).expanduser().resolve())


def ensure_prepared(workdir, dataset, configs=None, num_workers: int | None = None) -> dict:
    """Plan and preprocess ``dataset`` where its plan or preprocessed arrays are missing or out of
    date; returns the plan. Both stages are incremental (an unchanged dataset is only re-checked), so
    this is cheap to call repeatedly. Concurrent calls for one dataset (two runners on one workdir) are
    serialised by a lock in the preprocessed folder."""
    from .._locks import exclusive_lock
    from ..io.verify import verify_dataset
    from ..planning import plan_dataset
    from ..preprocessing import preprocess_dataset

    wd = _wd(workdir)
    raw_dir = wd.resolve_dataset(dataset)
    out = wd.preprocessed(raw_dir.name)
    verify_dataset(raw_dir, out)  # InvalidDatasetError before any work (skipped when cached / --no-verify)
    # two runners on one workdir: the second waits here (and says so), then finds everything up to date
    with exclusive_lock(out / ".prepare.lock", f"preparing {raw_dir.name}"):
        plans = plan_dataset(raw_dir, out, num_workers=num_workers)
        summary = preprocess_dataset(raw_dir, out, configs=configs, num_workers=num_workers, progress=False)
    failed = {case: err for s in summary.values() for case, err in s["failed"].items()}
    if failed:
        from ..errors import InputError

        raise InputError(f"{raw_dir}: {len(failed)} case(s) could not be preprocessed\n"
                         + "\n".join(f"  {case}: {err}" for case, err in failed.items()))
    return plans


def _source_version(meta: dict) -> str | None:
    """``generator.version`` or ``converter.version`` of dataset.json, if recorded."""
    for key in ("generator", "converter"):
        block = meta.get(key)
        if isinstance(block, dict) and block.get("version") is not None:
            return str(block["version"])
    return None


def _check_budget(method_cls, budget, n_train: int) -> None:
    kind = method_cls.budgets
    if kind == "zero_only" and budget != 0:
        raise BudgetError(f"method {method_cls.name!r} is label-free: it runs at budget 0 only, got {budget!r}")
    if kind == "all_only" and budget != "all":
        raise BudgetError(f"method {method_cls.name!r} is the all-labels upper bound: it runs at budget 'all' only, got {budget!r}")
    if kind == "labelled" and budget == 0:
        raise BudgetError(f"method {method_cls.name!r} needs labels: budget must be >= 1 or 'all'")


def _reference_folder(cases, dest: Path, attr: str) -> Path:
    """A folder of links to exactly the test cases' reference files (the raw label folder may also
    hold training labels when the test set comes from the hash rule)."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for c in cases:
        src = getattr(c, attr)
        for f in (src, sidecar_path(src)):
            if f.exists():
                try:
                    os.symlink(f.resolve(), dest / f.name)
                except OSError:
                    shutil.copy2(f, dest / f.name)
    return dest


def _build_context(wd, raw, plans, preset, config, method_cls, budget, seed, device, iterations, progress, overrides):
    presets = plans.get("presets", {})
    if preset not in presets:
        raise ValueError(f"plan of {raw.name!r} has no preset {preset!r} (has {sorted(presets)})")
    pcfgs = presets[preset]["configurations"]
    if config not in pcfgs:
        raise ValueError(f"preset {preset!r} of {raw.name!r} has no configuration {config!r} (has {sorted(pcfgs)})")
    settings = resolve_settings(pcfgs[config], method_cls.hparams, {"iterations": iterations, **(overrides or {})})
    if len(settings["patch_size"]) not in method_cls.dims:
        raise ValueError(f"method {method_cls.name!r} supports {method_cls.dims}D training, configuration {config!r} is "
                         f"{len(settings['patch_size'])}D")
    from ..data import PreprocessedFolder

    folder = PreprocessedFolder(wd.preprocessed(raw.name) / plans["configurations"][config]["data_identifier"])
    run_dir = wd.run_dir(raw.name, preset, config, method_cls.name, budget, seed)
    return RunContext(settings=settings, plans=plans, configuration=config, preset=preset, device=device,
                      dataset=raw.name, budget=budget, seed=seed, run_dir=run_dir, workdir=wd, folder=folder,
                      progress=progress)


def _check_same_settings(run_dir: Path, requested: dict) -> None:
    """Refuse to return or continue a run made with other explicitly requested settings."""
    requested = {k: v for k, v in requested.items() if v is not None}
    config = run_dir / "config.json"
    if not requested or not config.is_file():
        return
    saved_config = json.loads(config.read_text())
    # what was asked explicitly (a method's setup may change e.g. the iterations it was given)
    saved = {**(saved_config.get("settings") or {}), **(saved_config.get("requested") or {})}
    diff = {k: (saved.get(k), v) for k, v in requested.items()
            if json.dumps(saved.get(k), sort_keys=True) != json.dumps(v, sort_keys=True)}
    if diff:
        what = ", ".join(f"{k} {old!r} (asked: {new!r})" for k, (old, new) in sorted(diff.items()))
        state = "finished" if (run_dir / "DONE").is_file() else "was started"
        raise ValueError(f"{run_dir}: this run {state} with {what}; start it over with `train --rerun` "
                         "(the old run folder is kept as .previous)")


def train_cell(workdir, dataset, method, budget, seed: int = 0, preset: str | None = None, config: str | None = None,
               device=None, resume: bool = True, iterations: int | None = None, progress: bool = True,
               num_threads: int | None = None, overrides: dict | None = None, rerun: bool = False) -> dict:
    """Train one cell, predict its test set, evaluate, write ``record.json`` and ``DONE``.

    Args:
        workdir: workdir root or :class:`Workdir`. dataset: name under ``raw/`` or a raw folder.
        method: registered name or a Method subclass. budget: int >= 0 or ``"all"``. seed: int.
        preset: ``demo|quick|paper`` (default: paper on CUDA, quick otherwise).
        config: ``2d|3d_fullres`` (default: the method's preference, else the preset's recommendation).
        device: e.g. ``"cpu"``, ``"cuda:1"`` (default: CUDA when present).
        resume: continue from the last checkpoint (False: start over, deleting old checkpoints).
        iterations: override the preset's iteration count. overrides: any training setting.
        num_threads: torch threads (default: all cores of this process).
        rerun: start from scratch even if the cell finished; the old run folder is kept as
            ``<run folder>.previous``.

    Returns:
        The result record (also in ``record.json``). A cell with ``DONE`` is returned without work.

    Raises:
        BudgetError, ValueError, FileNotFoundError: bad cell or missing plan/preprocessing; ValueError
        also when ``iterations``/``overrides`` differ from the settings of the cell's finished (or
        resumed) run, which would otherwise be returned (or continued) under the wrong settings. Errors
        during training or evaluation are recorded (``status: "failed"``) and re-raised.
    """
    from ..methods import get_method
    from ..preprocessing import load_plans

    started, t_start, cpu_start = _now(), time.perf_counter(), time.process_time()
    wd = _wd(workdir)
    raw = RawDataset(wd.resolve_dataset(dataset))
    method_cls = get_method(method) if isinstance(method, str) else method
    budget = normalise_budget(budget)
    seed = int(seed)
    dev = choose_device(device)
    preset = preset or ("paper" if dev.type == "cuda" else "quick")
    pre_dir = wd.preprocessed(raw.name)
    if not (pre_dir / "plans.json").is_file():
        raise FileNotFoundError(f"{pre_dir / 'plans.json'}: dataset {raw.name!r} is not planned "
                                f"(run `medseg-bench plan {raw.name}` and `preprocess`, or ensure_prepared())")
    plans = load_plans(pre_dir)
    config = config or method_cls.recommended_configuration(plans, preset) or plans["presets"][preset]["recommended_configuration"]
    run_dir = wd.run_dir(raw.name, preset, config, method_cls.name, budget, seed)
    if rerun and run_dir.exists():
        previous = run_dir.with_name(run_dir.name + ".previous")
        if previous.exists():
            shutil.rmtree(previous)
        os.replace(run_dir, previous)
    done = (run_dir / "DONE").is_file() and (run_dir / "record.json").is_file()
    if done or resume:
        _check_same_settings(run_dir, {"iterations": iterations, **(overrides or {})})
    if done:
        return json.loads((run_dir / "record.json").read_text())
    splits = load_or_make_splits(wd, raw.path, budgets=[budget], seeds=[seed])
    _check_budget(method_cls, budget, len(splits["train"]))
    labelled = budget_cases(splits, budget, seed) if method_cls.needs_labels else []
    pool = unlabelled_pool(splits, budget, seed)
    ctx = _build_context(wd, raw, plans, preset, config, method_cls, budget, seed, dev, iterations, progress, overrides)
    ctx.labelled_ids, ctx.unlabelled_ids = labelled, pool
    if not resume:
        for name in (CHECKPOINT_LATEST, CHECKPOINT_FINAL, "train_log.jsonl", "record.json", "metrics.json"):
            (run_dir / name).unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    threads = set_threads(num_threads)
    cell = {"dataset": raw.name, "preset": preset, "configuration": config, "method": method_cls.name,
            "budget": budget, "seed": seed}
    provenance = {
        "dataset_hash": plans.get("dataset_hash"),
        "generator_version": _source_version(raw.meta),
        "plan_hash": record_plan_hash(plans), "split_hash": split_hash(splits, budget, seed),
        "code_version": __version__, "git_commit": git_commit(), "environment": environment(dev, threads),
        "started": started,
    }
    _write_json(run_dir / "plans.json", plans)
    requested = {k: v for k, v in {"iterations": iterations, **(overrides or {})}.items() if v is not None}
    config = {
        "cell": cell, "settings": ctx.settings, "requested": requested, "method_info": method_cls.info(),
        "budget_cases": labelled, "unlabelled_pool": pool, "test_cases": splits["test"],
        "dataset_meta": {k: raw.meta.get(k) for k in ("channel_names", "labels", "file_ending", "spacing", "instance_labels")},
        "provenance": provenance,
    }
    _write_json(run_dir / "config.json", config)
    record = {"record_version": RECORD_VERSION, "cell": cell, "status": "failed", "error": None,
              "method_info": method_cls.info(), "budget_cases": labelled, "n_labelled": len(labelled),
              "provenance": provenance, "metrics": None}
    try:
        seed_everything(seed)
        method = method_cls()
        method.setup(ctx)
        _write_json(run_dir / "config.json", config)  # again: setup may size the schedule (settings["iterations"])
        t0 = time.perf_counter()
        loop = method.fit(ctx) or {}
        train_time = float(loop.get("train_time_s", time.perf_counter() - t0)) if isinstance(loop, dict) else time.perf_counter() - t0
        t1 = time.perf_counter()
        metrics = _predict_and_evaluate(method, ctx, raw, splits["test"], run_dir)
        from ..networks import count_parameters

        # wall_time_s is this attempt's; train_time_s sums every attempt of a resumed run (resumed_from > 0)
        resumed_from = int(loop.get("resumed_from") or 0) if isinstance(loop, dict) else 0
        provenance.update(finished=_now(), wall_time_s=round(time.perf_counter() - t_start, 2),
                          cpu_time_s=round(time.process_time() - cpu_start, 2),  # all threads of this process
                          train_time_s=round(train_time, 2), inference_time_s=round(time.perf_counter() - t1, 2),
                          resumed_from=resumed_from,
                          parameters=count_parameters(*method.networks.values()), peak_memory_mb=peak_memory_mb(dev),
                          iterations=ctx.iterations if method_cls.trains else 0,
                          labelled_iterations=_labelled_iterations(ctx.loops))
        record.update(status="done", metrics=metrics, training=training_summary(ctx.loops))
        _write_json(run_dir / "record.json", record)
        (run_dir / ".DONE.tmp").write_text(_now() + "\n")
        os.replace(run_dir / ".DONE.tmp", run_dir / "DONE")
        return record
    except BaseException as exc:
        record["error"] = "".join(traceback.format_exception(exc))
        provenance.update(finished=_now(), wall_time_s=round(time.perf_counter() - t_start, 2))
        try:
            _write_json(run_dir / "record.json", record)
        finally:
            raise


def _labelled_iterations(loops: list) -> int:
    """Steps on a labelled batch over every engine loop of the cell (0 for methods without a loop)."""
    return int(sum(loop.get("labelled_iterations") or 0 for loop in loops))


def training_summary(loops: list) -> dict | None:
    """The record's ``training`` block: the loss curve and convergence check of the cell's last engine
    loop (the one that produced the predicting network), and a short entry per loop (stage name,
    iterations, labelled iterations, convergence); None for a method without a training loop."""
    if not loops:
        return None
    last = loops[-1]
    return {"stage": last["stage"], "iterations": last["iterations"], "window_iterations": last["window_iterations"],
            "loss_curve": last["loss_curve"], "convergence": last["convergence"],
            "loops": [{k: loop[k] for k in ("stage", "iterations", "labelled_iterations", "convergence")} for loop in loops]}


def _predict_and_evaluate(method, ctx, raw: RawDataset, test_ids: list[str], run_dir: Path) -> dict:
    """Predict the test cases from the preprocessed cache into ``pred/`` and score them."""
    from ..metrics.evaluate import evaluate_folder
    from .predict import predict_case, write_prediction

    pred, pred_inst = run_dir / "pred", run_dir / "pred_instances"
    for d in (pred, pred_inst):
        if d.exists():
            shutil.rmtree(d)
    for net in method.networks.values():
        net.eval()
    test_cases = {c.case_id: c for c in raw.test_cases()}
    cases = [test_cases[c] for c in test_ids]
    items = cases
    if ctx.progress:
        from tqdm.auto import tqdm

        items = tqdm(cases, desc="predict test", unit="case")
    for case in items:
        image = ctx.folder.image(case.case_id)
        props = ctx.folder.properties(case.case_id)
        raw_image = case.load_image()[0] if type(method).to_segmentation is not _default_to_segmentation() else None
        ctx.case_id = case.case_id  # an oracle method reads this case's reference through it
        try:
            seg, inst, geo = predict_case(method, ctx, image, props, raw_image=raw_image)
        finally:
            ctx.case_id = None
        write_prediction(pred, case.case_id, raw.file_ending, seg, geo, inst, pred_inst)
    ref = _reference_folder(cases, run_dir / "reference" / "labels", "label_file")
    kwargs = {}
    if raw.instance_labels and all(c.instance_file for c in cases):
        kwargs = {"instance_pred_dir": pred_inst,
                  "instance_ref_dir": _reference_folder(cases, run_dir / "reference" / "instances", "instance_file")}
    evaluate_folder(pred, ref, labels=raw.labels, file_ending=raw.file_ending, out_dir=run_dir / "evaluation",
                    tolerance=raw.meta.get("nsd_tolerance"),
                    default_spacing=raw.spacing, **kwargs)
    shutil.copyfile(run_dir / "evaluation" / "summary.json", run_dir / ".metrics.json.tmp")
    os.replace(run_dir / ".metrics.json.tmp", run_dir / "metrics.json")
    return json.loads((run_dir / "metrics.json").read_text())


def _default_to_segmentation():
    from ..methods.base import Method

    return Method.to_segmentation


def load_trained(run_dir, device=None):
    """``(method, ctx, dataset_meta)`` of a finished run, networks loaded from its final checkpoint,
    in eval mode (for ``medseg-bench predict``).

    Raises:
        FileNotFoundError: the run has no ``config.json`` or no final checkpoint.
    """
    from ..methods import get_method

    run_dir = Path(run_dir)
    cfg_path, ckpt = run_dir / "config.json", run_dir / CHECKPOINT_FINAL
    for p in (cfg_path, run_dir / "plans.json"):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: missing — is {run_dir} a training run folder?")
    cfg = json.loads(cfg_path.read_text())
    plans = json.loads((run_dir / "plans.json").read_text())
    method_cls = get_method(cfg["cell"]["method"])
    if method_cls.trains and not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt}: missing — the run in {run_dir} has not finished training")
    dev = choose_device(device)
    set_threads(None)
    c = cfg["cell"]
    ctx = RunContext(settings=cfg["settings"], plans=plans, configuration=c["configuration"], preset=c["preset"],
                     device=dev, dataset=c["dataset"], budget=c["budget"], seed=c["seed"], run_dir=run_dir)
    method = method_cls()
    method.setup(ctx)
    if ckpt.is_file():
        method.load_state_dict(load_checkpoint(ckpt, map_location=dev)["method"], weights_only=True)
    for net in method.networks.values():
        net.eval()
    return method, ctx, cfg["dataset_meta"]
