"""Folder evaluation: records, CSVs, aggregation, and clear errors naming the case."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from medseg_bench.io import Geometry, write_image
from medseg_bench.metrics import (
    EvaluationError,
    evaluate_folder,
    image_diagonal,
    instance_metrics,
    load_summary,
    surface_metrics,
)
from medseg_bench.metrics.evaluate import main_evaluate

LABELS = {"background": 0, "liver": 1, "tumour": 2}
GEO = Geometry(spacing=(2.5, 0.8, 0.8))


def _cases(rng, n=3, shape=(8, 20, 22)):
    out = {}
    for i in range(n):
        ref = np.zeros(shape, np.uint8)
        ref[2:6, 4:15, 5:16] = 1
        ref[3:5, 7:10, 8:11] = 2
        pred = np.roll(ref, i, axis=2)
        if i == 2:
            pred[pred == 2] = 1  # tumour missed: hd95 inf for this case
        out[f"case_{i:03d}"] = (pred, ref)
    return out


@pytest.fixture
def folders(tmp_path):
    rng = np.random.default_rng(0)
    cases = _cases(rng)
    pdir, rdir = tmp_path / "pred", tmp_path / "labelsTs"
    for c, (p, r) in cases.items():
        write_image(pdir / f"{c}.nii.gz", p, GEO)
        write_image(rdir / f"{c}.nii.gz", r, GEO)
    (tmp_path / "dataset.json").write_text(
        json.dumps(
            {"labels": LABELS, "file_ending": ".nii.gz", "channel_names": {"0": "CT"}, "numTraining": 0}
        )
    )
    return pdir, rdir, cases


def test_evaluate_folder_record(folders, tmp_path):
    pdir, rdir, cases = folders
    out = tmp_path / "out"
    s = evaluate_folder(pdir, rdir, LABELS, ".nii.gz", out_dir=out)
    assert s["n_cases"] == 3 and [c["case"] for c in s["per_case"]] == sorted(cases)
    for rec in s["per_case"]:
        p, r = cases[rec["case"]]
        for name, v in (("liver", 1), ("tumour", 2)):
            tau = s["nsd_tolerance"]  # 2 x finest spacing 0.8 (float32 in NIfTI)
            m = surface_metrics(p == v, r == v, rec["spacing"], tau)  # NIfTI stores float32 spacing
            got = rec["classes"][name]
            assert got["hd95"] == m.hd95 and got["assd"] == m.assd and got["nsd"] == m.nsd
            assert got["n_pred"] == int(np.sum(p == v)) and got["n_ref"] == int(np.sum(r == v))
        assert rec["diagonal"] == pytest.approx(image_diagonal(r.shape, GEO.spacing), rel=1e-6)
    # case 2 has no tumour prediction: hd95 inf -> replaced by its diagonal and counted
    t = [c["classes"]["tumour"]["hd95"] for c in s["per_case"]]
    assert t[2] == math.inf
    diag = s["per_case"][2]["diagonal"]
    assert s["mean"]["tumour"]["hd95"] == pytest.approx((t[0] + t[1] + diag) / 3)
    assert s["n_failures"]["tumour"]["hd95"] == {"inf": 1, "nan": 0}
    assert s["metric_definitions"]["nsd"]["tau"] == pytest.approx(1.6) == s["nsd_tolerance"]
    assert s["metric_definitions"]["nsd"]["tau_source"] == "2 x median finest-axis spacing"

    raw = json.loads((out / "summary.json").read_text())  # strict JSON: no Infinity/NaN tokens
    assert raw["per_case"][2]["classes"]["tumour"]["hd95"] == "inf"
    back = load_summary(out / "summary.json")
    assert back["per_case"][2]["classes"]["tumour"]["hd95"] == math.inf
    rows = list(csv.DictReader((out / "per_case.csv").open()))
    assert len(rows) == 6 and rows[0]["case"] == "case_000" and rows[0]["class"] == "liver"
    assert [r["hd95"] for r in rows if r["class"] == "tumour"][2] == "inf"
    srows = list(csv.DictReader((out / "summary.csv").open()))
    assert {(r["class"], r["metric"]) for r in srows} >= {("liver", "dice"), ("tumour", "hd95")}
    assert not list(out.glob(".*tmp*"))  # atomic writes leave no temp files


@pytest.mark.slow  # spawns two worker processes (imports numba, scipy, SimpleITK in each)
def test_workers_give_same_result(folders):
    pdir, rdir, _ = folders
    a = evaluate_folder(pdir, rdir, LABELS, ".nii.gz")
    b = evaluate_folder(pdir, rdir, LABELS, ".nii.gz", num_workers=2)
    assert json.dumps(a["mean"], sort_keys=True) == json.dumps(b["mean"], sort_keys=True)
    par = b["parallelism"]  # issue 22: processes x numba threads never exceed the cores
    assert par["processes"] == min(2, par["cores"])
    assert par["processes"] * par["numba_threads_per_process"] <= par["cores"]


def test_plan_processes_never_oversubscribes(monkeypatch):
    from medseg_bench.metrics import _parallel

    monkeypatch.setattr(_parallel, "available_cores", lambda: 2)
    maxt = _parallel.numba.config.NUMBA_NUM_THREADS
    assert _parallel.plan_processes(0, 10) == (1, min(2, maxt), 2)  # auto: in process, a thread per core
    assert _parallel.plan_processes(1, 10) == (1, min(_parallel.numba.get_num_threads(), 2), 2)
    assert _parallel.plan_processes(2, 10) == (2, 1, 2) == _parallel.plan_processes(4, 10)  # capped at cores
    assert _parallel.plan_processes(2, 1) == (1, min(_parallel.numba.get_num_threads(), 2), 2)  # one job
    monkeypatch.setattr(_parallel, "available_cores", lambda: 16)
    assert _parallel.plan_processes(4, 10) == (4, 4, 16) and _parallel.plan_processes(32, 10) == (10, 1, 16)
    with pytest.raises(ValueError, match="num_workers"):
        _parallel.plan_processes(-1, 3)


def test_errors_name_the_case(folders, tmp_path):
    pdir, rdir, cases = folders
    (pdir / "case_001.nii.gz").unlink()
    with pytest.raises(EvaluationError, match="case_001"):
        evaluate_folder(pdir, rdir, LABELS, ".nii.gz")
    write_image(pdir / "case_001.nii.gz", np.zeros((8, 20, 21), np.uint8), GEO)
    with pytest.raises(EvaluationError, match="case_001.*shape"):
        evaluate_folder(pdir, rdir, LABELS, ".nii.gz")
    write_image(pdir / "case_001.nii.gz", cases["case_001"][0], Geometry(spacing=(2.0, 0.8, 0.8)))
    with pytest.raises(EvaluationError, match="case_001.*spacing"):
        evaluate_folder(pdir, rdir, LABELS, ".nii.gz")
    # spacing_override ignores the files' spacing
    evaluate_folder(pdir, rdir, LABELS, ".nii.gz", spacing_override=(1.0, 1.0, 1.0))
    bad = cases["case_001"][0].copy()
    bad[0, 0, 0] = 7
    write_image(pdir / "case_001.nii.gz", bad, GEO)
    with pytest.raises(EvaluationError, match=r"case_001.*\[7\]"):
        evaluate_folder(pdir, rdir, LABELS, ".nii.gz")


def test_main_evaluate_cli_entry(folders, tmp_path, capsys):
    pdir, rdir, _ = folders
    assert main_evaluate(pdir, rdir) == 0  # dataset.json found next to labelsTs
    out = capsys.readouterr().out
    assert "liver" in out and "HD95" in out
    assert (pdir / "summary.json").is_file() and (pdir / "per_case.csv").is_file()
    assert main_evaluate(pdir, tmp_path / "nowhere", out_dir=tmp_path / "o") == 1
    assert "error" in capsys.readouterr().err


def test_inferred_labels_and_ending(folders):
    pdir, rdir, _ = folders
    s = evaluate_folder(pdir, rdir)
    assert set(s["mean"]) == {"label_1", "label_2"}


def test_instances_png(tmp_path):
    rng = np.random.default_rng(2)
    root = tmp_path / "ds"
    pdir = tmp_path / "pred"
    geo = Geometry(spacing=(0.25, 0.25))
    refs = {}
    for i in range(2):
        inst = np.zeros((40, 40), np.uint16)
        for k in range(1, 6):
            cy, cx = rng.integers(5, 35, 2)
            inst[cy - 3 : cy + 3, cx - 3 : cx + 3] = k * 11
        pinst = np.roll(inst, 1, axis=0)
        write_image(root / "labelsTs" / f"t{i}.png", (inst > 0).astype(np.uint8), geo)
        write_image(root / "instancesTs" / f"t{i}.png", inst, geo)
        write_image(pdir / f"t{i}.png", (pinst > 0).astype(np.uint8), geo)
        write_image(pdir / "instances" / f"t{i}.png", pinst, geo)
        refs[f"t{i}"] = (pinst, inst)
    (root / "dataset.json").write_text(
        json.dumps(
            {"labels": {"background": 0, "nucleus": 1}, "file_ending": ".png", "instance_labels": True}
        )
    )
    assert main_evaluate(pdir, root / "labelsTs", out_dir=tmp_path / "o") == 0
    s = load_summary(tmp_path / "o" / "summary.json")
    for rec in s["per_case"]:
        exp = instance_metrics(*refs[rec["case"]])
        assert rec["instance"]["pq"] == pytest.approx(exp["pq"])
        assert rec["spacing"] == [0.25, 0.25]
    assert "instance" in s["mean"] and 0 < s["mean"]["instance"]["aji"] <= 1
    rows = list(csv.DictReader((tmp_path / "o" / "per_case.csv").open()))
    assert any(r["class"] == "instances" and r["aji"] for r in rows)


def test_cli_evaluate(folders, tmp_path, capsys):
    from medseg_bench.cli import main

    pdir, rdir, _ = folders
    out = tmp_path / "cli_out"
    assert main(["evaluate", str(pdir), str(rdir), "--out", str(out), "--workdir", str(tmp_path / "w")]) == 0
    assert (out / "summary.json").is_file() and "tumour" in capsys.readouterr().out
    assert main(["evaluate", str(pdir), str(tmp_path / "missing")]) == 1
