"""The submission's own process: ``python -m medseg_bench.leaderboard.worker JOB.json`` (started by
:func:`medseg_bench.leaderboard.submit._run_worker` with a clean environment, cwd = the stage).

Modes: ``describe`` (import the submitted file for the first time anywhere, contract check, where the
method applies), ``train`` (prepare the stage, then train and predict every cell with the guard
admitting only that cell's budget labels) and ``predict`` (:func:`.private.predict_private`). Exit 3
with ``SUBMISSION ERROR: <message>`` on stderr is a refusal the parent reports as it is.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from ..bench.grid import method_budgets, resolve_configuration
from .sandbox import ERROR_TAG
from .submit import SubmissionError, load_submission, source_hash, validate_method


def _predict_only(method, ctx, raw, test_ids, run_dir):
    """The engine's prediction step without evaluation (a staged copy has no test labels)."""
    from ..training.cell import _default_to_segmentation
    from ..training.predict import predict_case, write_prediction

    pred, pred_inst = Path(run_dir) / "pred", Path(run_dir) / "pred_instances"
    for d in (pred, pred_inst):
        if d.exists():
            shutil.rmtree(d)
    for net in method.networks.values():
        net.eval()
    cases = {c.case_id: c for c in raw.test_cases()}
    custom = type(method).to_segmentation is not _default_to_segmentation()
    for cid in test_ids:
        case = cases[cid]
        raw_image = case.load_image()[0] if custom else None
        seg, inst, geo = predict_case(method, ctx, ctx.folder.image(cid), ctx.folder.properties(cid), raw_image=raw_image)
        write_prediction(pred, cid, raw.file_ending, seg, geo, inst, pred_inst)
    return None


def _describe(job: dict, stage: Path, guard) -> dict:
    """Import the file (first time anywhere), run the contract check, and say where the method applies."""
    guard.arm()
    method_cls = load_submission(job["method"])
    print(f"validating {method_cls.name} (contract check) ...", flush=True)
    validate_method(method_cls, stage / "contract_check")
    src_hash, src_files = source_hash(method_cls)
    where = {}
    for ds, d in job["datasets"].items():
        config = resolve_configuration(method_cls, d["plans"], job["preset"])
        where[ds] = {"configuration": config,
                     "budgets": method_budgets(method_cls, job["budgets"], d["n_train"]) if config else []}
    guard.disarm()
    if guard.violations:  # also when the method swallowed the PermissionError
        raise SubmissionError(f"the method opened a file it may not (during the contract check):\n  {guard.summary()}")
    return {"name": method_cls.name, "info": method_cls.info(), "source_hash": src_hash,
            "source_files": [str(f) for f in src_files], "datasets": where}


def _train(job: dict, stage: Path, guard) -> dict:
    """Prepare the staged datasets (before any submitted code runs), then train and predict every cell
    with the guard admitting only that cell's budget labels."""
    from ..splits import budget_cases, load_or_make_splits
    from ..training import cell as engine_cell
    from ..training import ensure_prepared, train_cell

    allowed = {}
    for item in job["cells"]:
        ensure_prepared(stage, item["dataset"])
        splits = load_or_make_splits(stage, stage / "raw" / item["dataset"], budgets=[item["budget"]], seeds=[item["seed"]])
        allowed[(item["dataset"], str(item["budget"]), item["seed"])] = budget_cases(splits, item["budget"], item["seed"])
    guard.arm()
    method_cls = load_submission(job["method"])
    engine_cell._predict_and_evaluate = _predict_only  # nothing to evaluate against: labels withheld
    for item in job["cells"]:
        print(f"training {method_cls.name} on {item['dataset']} (budget {item['budget']}, seed {item['seed']}, "
              f"test labels withheld) ...", flush=True)
        # a method that declares itself label-free may open no label at all
        guard.arm(allowed[(item["dataset"], str(item["budget"]), item["seed"])] if method_cls.needs_labels else [])
        try:
            train_cell(stage, item["dataset"], method_cls, item["budget"], item["seed"], preset=item["preset"],
                       config=item["configuration"], iterations=job.get("iterations"), progress=False,
                       num_threads=job.get("num_threads"))
        except Exception as exc:
            if not guard.violations:
                raise
            print(f"(the method's own error: {type(exc).__name__}: {exc})", file=sys.stderr)
        if guard.violations:
            raise SubmissionError(f"{item['dataset']} budget {item['budget']} seed {item['seed']}: the method opened "
                                  f"a file it may not (cell failed):\n  {guard.summary()}")
        print(f"trained {item['dataset']} budget {item['budget']} seed {item['seed']}", flush=True)
    guard.disarm()
    return {}


def _worker_main(job_path: str) -> int:
    """Entry of the submission's own process (``describe``, ``train`` or ``predict``, see :func:`_run_worker`)."""
    from .private import predict_private
    from .sandbox import OpenGuard, default_roots, prewarm

    job = json.loads(Path(job_path).read_text())
    stage = Path(job["workdir"])
    prewarm()
    guard = OpenGuard(default_roots(stage), free_roots=[stage / "contract_check"])
    modes = {"describe": _describe, "train": _train, "predict": predict_private}
    try:
        out = modes[job["mode"]](job, stage, guard)
    except SubmissionError as exc:
        guard.disarm()
        print(f"{ERROR_TAG}{exc}", file=sys.stderr)
        return 3
    except Exception:
        guard.disarm()
        if guard.violations:
            print(f"{ERROR_TAG}the method opened a file it may not:\n  {guard.summary()}", file=sys.stderr)
            return 3
        raise
    guard.disarm()
    Path(job["result"]).write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1]))
