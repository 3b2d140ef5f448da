"""NSD tolerance per dataset (issue 23): resolution, exact NSD values at the new tau, records, CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from medseg_bench.datasets import generate
from medseg_bench.datasets.monuseg import find_layout, parse_aperio_xml, rasterise_regions
from medseg_bench.io import Geometry, RawDataset, write_image
from medseg_bench.metrics import EvaluationError, evaluate_folder, nsd
from medseg_bench.metrics.evaluate import main_evaluate
from medseg_bench.metrics.tolerance import (
    dataset_tolerance,
    display_unit,
    median_object_thickness,
    object_thickness,
    resolve_tolerance,
    tolerance_from_spacings,
    tolerance_text,
    validate_tolerance,
)

HE = 0.0005  # mm per pixel, like nuclei_he


def _squares(shift: int = 3):
    """Two 4x4 squares, the prediction shifted ``shift`` columns right of the reference."""
    ref = np.zeros((10, 14), bool)
    ref[2:6, 2:6] = True
    return np.roll(ref, shift, axis=1), ref


def test_tolerance_from_spacings_and_dataset_json():
    assert tolerance_from_spacings([(3.0, 1.0, 1.0), (2.5, 0.8, 0.8), (5.0, 0.9, 0.9)]) == pytest.approx(1.8)
    assert tolerance_from_spacings([(HE, HE)] * 3) == pytest.approx(0.001)
    assert resolve_tolerance(None, [(HE, HE)]) == (pytest.approx(0.001), "2 x median finest-axis spacing")
    assert resolve_tolerance(0.004, [(HE, HE)]) == (0.004, "dataset.json nsd_tolerance")
    for bad in (0, -1.0, float("nan"), float("inf"), "2", True):
        assert validate_tolerance(bad) is not None
        with pytest.raises(ValueError, match="nsd_tolerance"):
            resolve_tolerance(bad, [(1.0, 1.0)])
    assert display_unit(HE) == ("µm", 1000.0) and display_unit(0.8) == ("mm", 1.0)
    assert tolerance_text(0.001, HE) == "1 µm" and tolerance_text(1.6, 0.8) == "1.6 mm"


def test_nsd_exact_at_two_pixels_on_histology_spacing():
    """Hand count: each square has 12 surface pixels. Shift 3: of the prediction's, column 5 (4 px,
    distance 0), the top/bottom pixels of columns 4 (2 px, 1 px away) and 3 (2 px, 2 px away) lie
    within tau = 2 px; column 2 (4 px, 3 px away) does not: 8/12, and 8/12 by symmetry -> 16/24."""
    p, r = _squares(3)
    sp = (HE, HE)
    assert nsd(p, r, sp, tolerance=2 * HE) == pytest.approx(16 / 24)
    assert nsd(p, r, sp, tolerance=1 * HE) == pytest.approx(12 / 24)  # columns 5 and 4 only: 6 + 6
    assert nsd(p, r, sp, tolerance=2.0) == 1.0  # the old global tau = 2 mm: every point counts
    assert nsd(p, r, sp) == pytest.approx(16 / 24)  # default: two voxels of the finest axis
    assert nsd(p, r, (3 * HE, HE)) == pytest.approx(16 / 24) and nsd(p, r) == pytest.approx(16 / 24)


def _write_case(folder, name, arr, spacing):
    write_image(folder / f"{name}.nii.gz", arr.astype(np.uint8), Geometry(spacing=spacing))  # 2D NIfTI


def test_evaluate_folder_derives_tau_and_records_it(tmp_path):
    p, r = _squares(3)
    pdir, rdir = tmp_path / "pred", tmp_path / "labelsTs"
    _write_case(pdir, "c0", p, (0.5, 0.5))  # finest spacing 0.5 -> tau 1.0 = 2 px
    _write_case(rdir, "c0", r, (0.5, 0.5))
    s = evaluate_folder(pdir, rdir, {"background": 0, "fg": 1}, ".nii.gz", out_dir=tmp_path / "out")
    assert s["nsd_tolerance"] == pytest.approx(1.0)
    assert s["per_case"][0]["classes"]["fg"]["nsd"] == pytest.approx(16 / 24)
    nd = s["metric_definitions"]["nsd"]
    assert nd["tau_unit"] == "spacing units" and nd["tau_display"] == "1 mm"
    rows = list(csv.DictReader((tmp_path / "out" / "per_case.csv").open()))
    assert float(rows[0]["nsd_tau"]) == pytest.approx(1.0)
    srow = [x for x in csv.DictReader((tmp_path / "out" / "summary.csv").open()) if x["metric"] == "nsd"]
    assert float(srow[0]["nsd_tau"]) == pytest.approx(1.0)
    s1 = evaluate_folder(pdir, rdir, {"background": 0, "fg": 1}, ".nii.gz", tolerance=0.5)  # explicit: 1 px
    assert s1["per_case"][0]["classes"]["fg"]["nsd"] == pytest.approx(12 / 24)
    assert s1["metric_definitions"]["nsd"]["tau_source"] == "dataset.json nsd_tolerance"
    with pytest.raises(EvaluationError, match="nsd_tolerance"):
        evaluate_folder(pdir, rdir, {"background": 0, "fg": 1}, ".nii.gz", tolerance=-1.0)


def test_cli_reads_nsd_tolerance_from_dataset_json(tmp_path, capsys):
    p, r = _squares(3)
    pdir, rdir = tmp_path / "pred", tmp_path / "labelsTs"
    _write_case(pdir, "c0", p, (0.5, 0.5))
    _write_case(rdir, "c0", r, (0.5, 0.5))
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "fg": 1},
                                                       "file_ending": ".nii.gz", "nsd_tolerance": 0.5}))
    assert main_evaluate(pdir, rdir) == 0
    out = capsys.readouterr().out
    assert "evaluated with 1 process(es) x" in out  # one case: one process, whatever the cores
    assert "NSD at tau = 0.5 spacing units = 0.5 mm (dataset.json nsd_tolerance)" in out
    summary = json.loads((pdir / "summary.json").read_text())
    assert summary["per_case"][0]["classes"]["fg"]["nsd"] == pytest.approx(0.5)


def test_object_thickness_exact():
    """A 5x5 square: its centre pixel is 3 px from the nearest outside pixel -> thickness 6 px; a
    1-px speck: 1 px -> 2 px (x spacing); an instance map keeps touching instances apart."""
    lab = np.zeros((12, 12), np.uint8)
    lab[1:6, 1:6] = 1
    lab[9, 9] = 1
    t, n = object_thickness(lab, (0.5, 0.5))
    assert sorted(zip(t.tolist(), n.tolist())) == [(1.0, 1), (3.0, 25)]
    inst = np.zeros((6, 9), np.uint16)
    inst[1:4, 1:4], inst[1:4, 4:7] = 1, 2  # two touching 3x3 instances: 2 x 2 px each
    t, n = object_thickness(inst, (1.0, 1.0), instances=True)
    assert t.tolist() == [4.0, 4.0] and n.tolist() == [9, 9]


@pytest.mark.parametrize("name", ["ct_hip", "nuclei_he", "retina_ga", "spect_bone"])
def test_builtin_tau_below_median_object_thickness(name, tmp_path):
    """Issue 23: a tau at least as large as the objects makes NSD 1.0 for every method. Tiny size: the
    coarsest spacing of each generator, hence the largest tau relative to its objects."""
    raw = RawDataset(generate(name, tmp_path / name, size="tiny", seed=0))
    tau, source = dataset_tolerance(raw)
    assert source == "2 x median finest-axis spacing"
    thick = median_object_thickness(raw)
    assert 0 < tau < thick, f"{name}: tau {tau:.4g} >= median object thickness {thick:.4g} (spacing units)"


def test_monuseg_tau_below_median_nucleus_thickness(shared_data):
    """The real MoNuSeg tiles (converted spacing = the XML's microns per pixel): tau = 2 px is far below
    the median nucleus thickness (about 26 px = 6.5 um)."""
    layout = find_layout(shared_data / "monuseg2018")
    thick, size, mpp = [], [], None
    for _tif, xml in list(layout["test"].values())[:2]:
        regions, mpp = parse_aperio_xml(xml)
        inst, _ = rasterise_regions(regions, (1000, 1000))
        t, n = object_thickness(inst, (mpp / 1000, mpp / 1000), instances=True)
        thick.append(t)
        size.append(n)
    t, n = np.concatenate(thick), np.concatenate(size)
    median = t[np.argsort(t)][np.searchsorted(np.cumsum(n[np.argsort(t)]), n.sum() / 2)]
    tau = 2 * mpp / 1000
    assert len(t) > 100 and tau < median / 5, (tau, median)
