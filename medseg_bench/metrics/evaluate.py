"""Evaluate a folder of predictions against a folder of references (``medseg-bench evaluate``).

Per case and class: Dice, IoU, HD95 (both modes), HD, ASSD and NSD at tau, with surfaces computed
once per class; per case, instance metrics when instance maps are given. Writes, in the spirit of
nnU-Net's ``summary.json``:

* ``summary.json``: ``metric_definitions``, ``labels``, ``per_case`` (``case``, files, ``shape``,
  ``spacing``, ``diagonal``, ``classes: {name: {dice, iou, hd95, hd95_pooled, hd, assd, nsd, n_pred,
  n_ref}}``, optional ``instance``), ``mean`` (per class, and ``instance``), ``foreground_mean``
  (mean of the class means) and ``n_failures`` (per class and metric: ``{"inf": k, "nan": m}``).
  inf/NaN are stored as the strings ``"inf"``/``"nan"`` (see ``_aggregate``); read a record back
  with :func:`load_summary`.
* ``per_case.csv``: one row per (case, class) (+ one ``instances`` row per case with instance maps).
* ``summary.csv``: one row per (class, metric): ``mean, n`` (cases in the mean), ``n_inf, n_nan``.

Means follow ``METRICS.md``: an inf (exactly one mask empty) counts as the case's image diagonal
(spacing units) and as a failure; a NaN (both empty) is left out and counted. Files are written
atomically (temporary file + ``os.replace``).
"""

from __future__ import annotations

import csv
import io as _io
import json
import math
import os
import sys
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from ._aggregate import aggregate_with_failures, decode_value, encode_value, image_diagonal
from ._instance import INSTANCE_METRICS, instance_metrics
from ._overlap import dice_iou_from_counts, overlap_counts
from ._parallel import plan_processes, set_worker_threads
from ._surface import DEFAULT_NSD_TOLERANCE, surface_metrics
from .tolerance import display_unit, resolve_tolerance, tolerance_text

__all__ = [
    "CLASS_METRICS",
    "EvaluationError",
    "evaluate_case",
    "evaluate_folder",
    "load_summary",
    "main_evaluate",
    "metric_definitions",
]

CLASS_METRICS = ("dice", "iou", "hd95", "hd95_pooled", "hd", "assd", "nsd")
_COUNT_KEYS = ("n_pred", "n_ref")
_IMAGE_ENDINGS = (".nii.gz", ".nii", ".mha", ".nrrd", ".png", ".tif", ".tiff")
_SPACING_RTOL = 1e-4


class EvaluationError(ValueError):
    """Inputs that cannot be evaluated; the message names the case(s) and the problem."""


def metric_definitions(tolerance: float = DEFAULT_NSD_TOLERANCE, tau_source: str = "caller",
                       finest_spacing: float | None = None) -> dict:
    """What every number in an evaluation record means (stored in ``summary.json``)."""
    return {
        "units": "distances in the images' spacing units (mm for medical volumes, px for 2D images without spacing)",
        "surface": "foreground voxels with a face-neighbour outside the mask or the image; voxel centres; exact Euclidean",
        "dice": "2|A∩B|/(|A|+|B|); both empty: nan; one empty: 0",
        "iou": "|A∩B|/|A∪B|; both empty: nan; one empty: 0",
        "hd95": "max of the two directed 95th percentiles (linear interpolation); = MONAI compute_hausdorff_distance(percentile=95)",
        "hd95_pooled": "95th percentile of both directed distance sets pooled; = medpy hd95",
        "hd": "max of both directed maxima",
        "assd": "mean of both directed distance sets pooled; = MONAI symmetric average surface distance",
        "nsd": {
            "definition": "share of both surfaces' points within tau of the other surface (distance <= tau)",
            "tau": tolerance,
            "tau_unit": "spacing units",
            "tau_source": tau_source,
            "tau_display": tolerance_text(tolerance, finest_spacing),
            "distance_display_unit": display_unit(finest_spacing)[0],
        },
        "empty_masks": "both empty: nan (left out of means, counted); exactly one empty: inf (nsd 0)",
        "non_finite_in_json": "stored as the strings 'inf' and 'nan'",
        "aggregation": "mean over cases; inf replaced by the case's image diagonal (sqrt(sum((shape*spacing)^2))) and counted in n_failures.inf; nan left out and counted in n_failures.nan",
        "instance": {
            "aji": "Kumar et al. 2017, hover_net get_fast_aji",
            "aji_plus": "unique (Hungarian) pairing, hover_net get_fast_aji_plus",
            "pq": "DQ x SQ at IoU > 0.5 (Kirillov et al. 2019, hover_net get_fast_pq)",
            "precision_recall_f1": "detection at IoU > 0.5",
            "empty": "both empty: nan; one empty: 0",
        },
    }


# -- one case ----------------------------------------------------------------------------------------
def _class_mask(seg: np.ndarray, value) -> np.ndarray:
    if isinstance(value, (list, tuple)):
        return np.isin(seg, np.asarray(value))
    return seg == value


def _label_values(labels: Mapping) -> set[int]:
    vals = {0}
    for v in labels.values():
        vals.update(int(x) for x in (v if isinstance(v, (list, tuple)) else [v]))
    return vals


def _scored_classes(labels: Mapping) -> dict:
    """Classes that get metrics: everything but background (value 0) and nnU-Net's ``ignore`` label."""
    return {
        k: v
        for k, v in labels.items()
        if k != "ignore" and not (not isinstance(v, (list, tuple)) and int(v) == 0)
    }


def evaluate_case(
    pred,
    ref,
    spacing,
    labels: Mapping,
    tolerance: float | None = None,
    pred_inst=None,
    ref_inst=None,
) -> dict:
    """Metrics of one case (arrays in numpy axis order, ``spacing`` in the same order).

    Args:
        pred, ref: integer label maps of the same shape.
        spacing: voxel size per axis (spacing units), or None for 1.
        labels: ``{class name: value or list of values (a region)}``; background (0) and ``ignore``
            are not scored.
        tolerance: NSD tau in spacing units (None: two voxels of the finest axis).
        pred_inst, ref_inst: optional instance maps (0 = background).

    Returns:
        ``{"shape", "spacing", "diagonal", "classes": {name: {dice, iou, hd95, hd95_pooled, hd, assd,
        nsd, n_pred, n_ref}}, ["instance": {...}]}`` with plain Python floats (inf/NaN as floats).
    """
    pred = np.asarray(pred)
    ref = np.asarray(ref)
    sp = tuple(float(s) for s in spacing) if spacing is not None else (1.0,) * ref.ndim
    classes = {}
    for name, value in _scored_classes(labels).items():
        mp = _class_mask(pred, value)
        mr = _class_mask(ref, value)
        n_p, n_r, n_i = overlap_counts(mp, mr)
        d, j = dice_iou_from_counts(n_p, n_r, n_i)
        s = surface_metrics(mp, mr, sp, tolerance)
        classes[name] = {
            "dice": d,
            "iou": j,
            "hd95": s.hd95,
            "hd95_pooled": s.hd95_pooled,
            "hd": s.hd,
            "assd": s.assd,
            "nsd": s.nsd,
            "n_pred": n_p,
            "n_ref": n_r,
        }
    out = {
        "shape": list(ref.shape),
        "spacing": list(sp),
        "diagonal": image_diagonal(ref.shape, sp),
        "classes": classes,
    }
    if pred_inst is not None and ref_inst is not None:
        out["instance"] = instance_metrics(pred_inst, ref_inst)
    return out


# -- folders -----------------------------------------------------------------------------------------
def _read(path: Path, default_spacing):
    from medseg_bench.io import read_image

    return read_image(path, spacing=default_spacing)


def _case_ids(folder: Path, ending: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise EvaluationError(f"{folder}: folder does not exist")
    return {
        f.name[: -len(ending)]: f
        for f in sorted(folder.iterdir())
        if f.name.endswith(ending) and not f.name.startswith(".") and f.is_file()
    }


def _check_labels(case: str, what: str, arr: np.ndarray, allowed: set[int]) -> None:
    if arr.dtype.kind == "f" and np.any(arr != np.round(arr)):
        raise EvaluationError(f"case {case!r}: {what} has non-integer values; expected a label map")
    flat = arr.reshape(-1)
    if flat.size and flat.min() >= 0 and flat.max() < (1 << 16):
        present = np.flatnonzero(np.bincount(flat.astype(np.int64, copy=False)))
    else:
        present = np.unique(flat)
    unknown = sorted(int(v) for v in present if int(v) not in allowed)
    if unknown:
        raise EvaluationError(
            f"case {case!r}: {what} contains label value(s) {unknown} not in the dataset's labels "
            f"{sorted(allowed)}"
        )


def _evaluate_one(job: dict) -> dict:
    case = job["case"]
    pred, gp = _read(job["pred_file"], job["default_spacing"])
    ref, gr = _read(job["ref_file"], job["default_spacing"])
    for what, arr in (("prediction", pred), ("reference", ref)):
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and gp.ndim == 2):
            raise EvaluationError(f"case {case!r}: {what} is not a 2D/3D label map (array shape {arr.shape})")
    if pred.shape != ref.shape:
        raise EvaluationError(f"case {case!r}: prediction shape {pred.shape} != reference shape {ref.shape}")
    if job["spacing_override"] is not None:
        spacing = tuple(float(s) for s in job["spacing_override"])
        if len(spacing) != ref.ndim:
            raise EvaluationError(
                f"case {case!r}: spacing_override {spacing} does not match the {ref.ndim}D image"
            )
    else:
        if not np.allclose(gp.spacing, gr.spacing, rtol=_SPACING_RTOL, atol=0):
            raise EvaluationError(
                f"case {case!r}: prediction spacing {gp.spacing} != reference spacing {gr.spacing}"
            )
        spacing = gr.spacing
    _check_labels(case, "prediction", pred, job["allowed"])
    _check_labels(case, "reference", ref, job["allowed"])
    pi = ri = None
    if job.get("pred_inst_file") is not None:
        pi, _ = _read(job["pred_inst_file"], job["default_spacing"])
        ri, _ = _read(job["ref_inst_file"], job["default_spacing"])
        if pi.shape != ri.shape or ri.shape != ref.shape:
            raise EvaluationError(
                f"case {case!r}: instance map shapes {pi.shape} (pred) / {ri.shape} (ref) "
                f"differ from the label shape {ref.shape}"
            )
    rec = evaluate_case(pred, ref, spacing, job["labels"], job["tolerance"], pi, ri)
    return {"case": case, "pred_file": str(job["pred_file"]), "ref_file": str(job["ref_file"]), **rec}


def _infer_ending(folder: Path) -> str:
    counts: dict[str, int] = {}
    for f in folder.iterdir() if folder.is_dir() else []:
        for e in _IMAGE_ENDINGS:
            if f.name.lower().endswith(e):
                counts[e] = counts.get(e, 0) + 1
                break
    if not counts:
        raise EvaluationError(f"{folder}: no image files found")
    return max(counts, key=counts.get)


def _infer_labels(ref_files: list[Path], default_spacing) -> dict[str, int]:
    values: set[int] = set()
    for f in ref_files:
        arr, _ = _read(f, default_spacing)
        values.update(int(v) for v in np.unique(arr))
    return {"background": 0, **{f"label_{v}": v for v in sorted(values - {0})}}


def evaluate_folder(
    pred_dir,
    ref_dir,
    labels: Mapping | None = None,
    file_ending: str | None = None,
    instance_pred_dir=None,
    instance_ref_dir=None,
    out_dir=None,
    spacing_override=None,
    num_workers: int = 1,
    tolerance: float | None = None,
    default_spacing=None,
    verbose: bool = False,
) -> dict:
    """Evaluate every reference case against the prediction of the same name.

    Args:
        pred_dir, ref_dir: folders of label maps named ``<case><file_ending>`` (extra predictions
            without a reference are ignored; a missing prediction is an error).
        labels: ``{class name: value or list of values}`` (dataset.json's ``labels``); None infers
            ``label_<v>`` classes from the values found in the references.
        file_ending: e.g. ``".nii.gz"``; None takes the most common image ending in ``ref_dir``.
        instance_pred_dir, instance_ref_dir: folders of instance maps with the same case names; when
            both are given, instance metrics are added per case.
        out_dir: where ``summary.json``, ``per_case.csv`` and ``summary.csv`` go (None: not written).
        spacing_override: spacing (numpy axis order) used for every case instead of the files'.
        num_workers: processes; 1 = in this process with its numba threads (what a benchmark cell,
            already one single-threaded worker per core, wants); 0 = auto: in this process with one
            numba thread per core; N > 1: N processes with ``cores // N`` threads each. Processes x
            threads never exceed the cores (:func:`~._parallel.plan_processes`); what was used is in
            the summary's ``"parallelism"``.
        tolerance: NSD tau in spacing units (dataset.json's ``nsd_tolerance``); None: 2 x the median
            finest-axis spacing of the reference cases (:mod:`medseg_bench.metrics.tolerance`).
        default_spacing: spacing for PNG/TIFF files without a sidecar (dataset.json's ``spacing``).

    Returns:
        The summary dict (floats, inf/NaN as floats; the written JSON encodes them as strings).

    Raises:
        EvaluationError: missing predictions, mismatched shapes/spacing, unknown label values,
            unreadable files; the message names the case.
    """
    pred_dir, ref_dir = Path(pred_dir), Path(ref_dir)
    ending = file_ending or _infer_ending(ref_dir)
    refs = _case_ids(ref_dir, ending)
    if not refs:
        raise EvaluationError(f"{ref_dir}: no reference files ending in {ending!r}")
    preds = _case_ids(pred_dir, ending)
    missing = [c for c in refs if c not in preds]
    if missing:
        shown = ", ".join(missing[:10]) + (f" … (+{len(missing) - 10} more)" if len(missing) > 10 else "")
        raise EvaluationError(
            f"{pred_dir}: missing prediction(s) for case(s) {shown} (expected <case>{ending})"
        )
    if labels is None:
        labels = _infer_labels(list(refs.values()), default_spacing)
    labels = dict(labels)
    inst = None
    if instance_pred_dir is not None and instance_ref_dir is not None:
        ipred = _case_ids(Path(instance_pred_dir), ending)
        iref = _case_ids(Path(instance_ref_dir), ending)
        lacking = [c for c in refs if c not in ipred or c not in iref]
        if lacking:
            raise EvaluationError(
                f"instance maps missing for case(s) {', '.join(lacking[:10])} "
                f"in {instance_pred_dir} or {instance_ref_dir}"
            )
        inst = (ipred, iref)
    allowed = _label_values(labels)
    spacings = _reference_spacings(list(refs.values()), spacing_override, default_spacing)
    try:
        tolerance, tau_source = resolve_tolerance(tolerance, spacings)
    except ValueError as exc:
        raise EvaluationError(f"{ref_dir}: {exc}") from exc
    finest = float(np.median([min(s) for s in spacings]))
    jobs = [
        {
            "case": c,
            "pred_file": preds[c],
            "ref_file": f,
            "labels": labels,
            "allowed": allowed,
            "tolerance": float(tolerance),
            "spacing_override": spacing_override,
            "default_spacing": default_spacing,
            "pred_inst_file": inst[0][c] if inst else None,
            "ref_inst_file": inst[1][c] if inst else None,
        }
        for c, f in refs.items()
    ]
    procs, threads, cores = plan_processes(num_workers, len(jobs))
    if procs > 1:
        with ProcessPoolExecutor(procs, mp_context=get_context("spawn"), initializer=set_worker_threads,
                                 initargs=(threads,)) as ex:
            per_case = list(ex.map(_evaluate_one, jobs))
    else:
        import numba

        before = numba.get_num_threads()
        numba.set_num_threads(threads)
        try:
            per_case = []
            for j in jobs:
                per_case.append(_evaluate_one(j))
                if verbose:
                    print(f"  evaluated {j['case']}", file=sys.stderr)
        finally:
            numba.set_num_threads(before)
    summary = _summarise(per_case, labels, float(tolerance), tau_source, finest)
    summary["parallelism"] = {"processes": procs, "numba_threads_per_process": threads, "cores": cores}
    if out_dir is not None:
        write_summary(summary, out_dir)
    return summary


def _reference_spacings(ref_files: list[Path], spacing_override, default_spacing) -> list[tuple]:
    """Spacing (numpy axis order) of every reference case, from the file headers (for tau)."""
    from medseg_bench.io import ImageReadError
    from medseg_bench.io.image import read_image_header

    if spacing_override is not None:
        return [tuple(float(x) for x in spacing_override)] * len(ref_files)
    out = []
    for f in ref_files:
        try:
            out.append(tuple(float(x) for x in read_image_header(f, default_spacing)[1].spacing))
        except ImageReadError as exc:
            raise EvaluationError(f"{f}: cannot read the header ({exc})") from exc
    return out


def _summarise(per_case: list[dict], labels: Mapping, tolerance: float, tau_source: str = "caller",
               finest: float | None = None) -> dict:
    diag = [c["diagonal"] for c in per_case]
    mean, fails = {}, {}
    for name in _scored_classes(labels):
        mean[name], fails[name] = {}, {}
        for m in CLASS_METRICS:
            agg = aggregate_with_failures([c["classes"][name][m] for c in per_case], diag)
            mean[name][m] = agg.mean
            fails[name][m] = {"inf": agg.n_inf, "nan": agg.n_nan}
    fg = {m: _nanmean([mean[n][m] for n in mean]) for m in CLASS_METRICS}
    summary = {
        "metric_definitions": metric_definitions(tolerance, tau_source, finest),
        "nsd_tolerance": tolerance,
        "labels": dict(labels),
        "n_cases": len(per_case),
        "per_case": per_case,
        "mean": mean,
        "foreground_mean": fg,
        "n_failures": fails,
    }
    with_inst = [c["instance"] for c in per_case if "instance" in c]
    if with_inst:
        mean["instance"], fails["instance"] = {}, {}
        for m in INSTANCE_METRICS:
            agg = aggregate_with_failures([r[m] for r in with_inst])
            mean["instance"][m] = agg.mean
            fails["instance"][m] = {"inf": agg.n_inf, "nan": agg.n_nan}
    return summary


def _nanmean(values) -> float:
    v = [x for x in values if not math.isnan(x)]
    return float(np.mean(v)) if v else math.nan


# -- writing and reading records ----------------------------------------------------------------------
def _encode(obj):
    if isinstance(obj, dict):
        return {str(k): _encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_encode(v) for v in obj]
    if isinstance(obj, (float, int, np.floating, np.integer, np.bool_)):
        return encode_value(obj)
    return obj


def _decode(obj):
    if isinstance(obj, dict):
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    if isinstance(obj, str) and obj in ("inf", "-inf", "nan"):
        return decode_value(obj)
    return obj


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _csv_text(rows: list[dict], columns: list[str]) -> str:
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: encode_value(v) if isinstance(v, float) else v for k, v in r.items()})
    return buf.getvalue()


def write_summary(summary: dict, out_dir) -> None:
    """Write ``summary.json``, ``per_case.csv`` and ``summary.csv`` into ``out_dir`` (atomically)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write(out / "summary.json", json.dumps(_encode(summary), indent=2, allow_nan=False))
    rows, has_inst = [], False
    for c in summary["per_case"]:
        for name, vals in c["classes"].items():
            rows.append({"case": c["case"], "class": name, **vals, "nsd_tau": summary["nsd_tolerance"]})
        if "instance" in c:
            has_inst = True
            rows.append({"case": c["case"], "class": "instances", **c["instance"]})
    cols = ["case", "class", *CLASS_METRICS, "nsd_tau", *_COUNT_KEYS]
    if has_inst:
        cols += [*INSTANCE_METRICS, "tp", "fp", "fn"]
    _atomic_write(out / "per_case.csv", _csv_text(rows, cols))
    n_cases = summary["n_cases"]
    srows = [
        {
            "class": name,
            "metric": m,
            "mean": v,
            "n": n_cases - summary["n_failures"][name][m]["nan"],
            "n_inf": summary["n_failures"][name][m]["inf"],
            "n_nan": summary["n_failures"][name][m]["nan"],
            "nsd_tau": summary["nsd_tolerance"] if m == "nsd" else "",
        }
        for name, ms in summary["mean"].items()
        for m, v in ms.items()
    ]
    _atomic_write(out / "summary.csv", _csv_text(srows, ["class", "metric", "mean", "n", "n_inf", "n_nan", "nsd_tau"]))


def load_summary(path) -> dict:
    """Read a ``summary.json`` back with ``"inf"``/``"nan"`` strings turned into floats."""
    return _decode(json.loads(Path(path).read_text()))


def format_summary(summary: dict) -> str:
    """A short plain-text table of the per-class means (and instance means) with failure counts."""
    nd = summary["metric_definitions"]["nsd"]
    tau = nd["tau"]
    shown = f" = {nd['tau_display']}" if "tau_display" in nd else ""
    head = f"{'class':<20} {'Dice':>7} {'IoU':>7} {'HD95':>9} {'ASSD':>9} {'NSD':>8}  failures(inf/nan)"
    lines = [f"{summary['n_cases']} case(s); distances in spacing units; HD95 = max of directed P95; "
             f"NSD at tau = {tau:g} spacing units{shown} ({nd.get('tau_source', 'caller')})"]
    par = summary.get("parallelism")
    if par:
        lines.append(f"evaluated with {par['processes']} process(es) x {par['numba_threads_per_process']} numba "
                     f"thread(s) on {par['cores']} core(s)")
    lines.append(head)
    for name, ms in summary["mean"].items():
        if name == "instance":
            continue
        f = summary["n_failures"][name]["hd95"]
        lines.append(
            f"{name:<20} {ms['dice']:>7.4f} {ms['iou']:>7.4f} {ms['hd95']:>9.3f} {ms['assd']:>9.3f} "
            f"{ms['nsd']:>8.4f}  {f['inf']}/{f['nan']}"
        )
    if "instance" in summary["mean"]:
        ms = summary["mean"]["instance"]
        lines.append(
            "instances: "
            + "  ".join(f"{m.upper()} {ms[m]:.4f}" for m in ("aji", "aji_plus", "pq", "dq", "sq", "f1"))
        )
    return "\n".join(lines)


def _read_dataset_json(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EvaluationError(f"{path}: cannot read dataset.json ({exc})") from exc
    if not isinstance(meta, dict) or "labels" not in meta or not isinstance(meta["labels"], dict):
        raise EvaluationError(f"{path}: dataset.json needs a 'labels' object")
    return meta


def main_evaluate(pred_dir, ref_dir, dataset_json=None, out_dir=None, workdir=None, workers: int = 0) -> int:
    """Entry point of ``medseg-bench evaluate PRED_DIR REF_DIR [--dataset-json F] [--out DIR] [--workers N]``.

    Labels, file ending, default 2D spacing and ``instance_labels`` come from ``dataset_json``
    (default: ``REF_DIR/../dataset.json`` when it exists; otherwise labels are inferred). Instance
    metrics are added when the dataset has ``instance_labels`` and both ``PRED_DIR/instances/`` and
    the reference's sibling instance folder (``labelsTs`` -> ``instancesTs``) exist. Writes the
    record into ``out_dir`` (default ``pred_dir``) and prints a short table. ``workdir`` is accepted
    because the CLI passes it to every subcommand; evaluation writes nothing else.

    Returns:
        Exit code: 0 on success, 1 when the inputs cannot be evaluated (the message names the case).
    """
    from medseg_bench.io import ImageReadError

    pred_dir, ref_dir = Path(pred_dir), Path(ref_dir)
    try:
        js = Path(dataset_json) if dataset_json is not None else ref_dir.parent / "dataset.json"
        meta = _read_dataset_json(js) if (dataset_json is not None or js.is_file()) else {}
        spacing = meta.get("spacing")
        ipred = iref = None
        if meta.get("instance_labels"):
            cand_ref = ref_dir.parent / ref_dir.name.replace("labels", "instances")
            cand_pred = pred_dir / "instances"
            if cand_ref.is_dir() and cand_ref != ref_dir and cand_pred.is_dir():
                ipred, iref = cand_pred, cand_ref
            else:
                print(f"note: no instance metrics (need {cand_pred}/ and {cand_ref}/)", file=sys.stderr)
        summary = evaluate_folder(
            pred_dir,
            ref_dir,
            labels=meta.get("labels"),
            file_ending=meta.get("file_ending"),
            instance_pred_dir=ipred,
            instance_ref_dir=iref,
            out_dir=out_dir if out_dir is not None else pred_dir,
            default_spacing=tuple(spacing) if spacing else None,
            tolerance=meta.get("nsd_tolerance"),
            num_workers=workers,
        )
    except (EvaluationError, ImageReadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_summary(summary))
    print(f"wrote summary.json, per_case.csv, summary.csv to {out_dir if out_dir is not None else pred_dir}")
    return 0
