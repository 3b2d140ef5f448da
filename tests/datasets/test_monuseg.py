"""monuseg converter: XML parsing, the rasterisation rule, input validation, and the real MoNuSeg 2018
copy in ../shared/data (skipped when absent)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from medseg_bench.cli import main
from medseg_bench.datasets import convert
from medseg_bench.datasets.monuseg import find_layout, parse_aperio_xml, rasterise_regions
from medseg_bench.io import DatasetError, RawDataset, check_dataset


def _xml(regions, mpp="0.25"):
    body = "".join(
        f'<Region Id="{rid}"><Vertices>' + "".join(f'<Vertex X="{x}" Y="{y}"/>' for x, y in pts) + "</Vertices></Region>"
        for rid, pts in regions)
    return (f'<Annotations MicronsPerPixel="{mpp}"><Annotation Id="1"><Regions>'
            f'<RegionAttributeHeaders/>{body}</Regions></Annotation></Annotations>')


def _square(x0, y0, s):
    return [(x0, y0), (x0 + s, y0), (x0 + s, y0 + s), (x0, y0 + s)]


def _fake_monuseg(root: Path, n_train=2, n_unl=1, n_test=2, n_mask=0) -> Path:
    """A miniature MoNuSeg layout: 48x48 RGB tiles, two square nuclei per annotated tile; ``n_mask``
    further training tiles have only a binary mask (two touching squares and one apart)."""
    imgs = root / "MoNuSegTrainingData" / "Tissue_Images"
    ann = root / "MoNuSegTrainingData" / "Annotations"
    test = root / "MoNuSegTestData"
    for d in (imgs, ann, test):
        d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    regions = [("1", _square(5, 5, 10)), ("2", _square(25, 20, 12))]
    for i in range(n_train + n_unl + n_mask):
        tifffile.imwrite(imgs / f"TCGA-TR-{i}.tif", rng.integers(0, 255, (48, 48, 3), dtype=np.uint8))
        if i < n_train:
            (ann / f"TCGA-TR-{i}.xml").write_text(_xml(regions))
        elif i >= n_train + n_unl:
            mask = np.zeros((48, 48), np.uint8)
            mask[2:10, 2:10] = mask[2:10, 10:16] = mask[30:40, 30:40] = 1  # touching pair + one apart
            (root / "MoNuSegTrainingData" / "Binary_masks").mkdir(exist_ok=True)
            tifffile.imwrite(root / "MoNuSegTrainingData" / "Binary_masks" / f"TCGA-TR-{i}.tif", mask)
    for i in range(n_test):
        tifffile.imwrite(test / f"TCGA-TS-{i}.tif", rng.integers(0, 255, (48, 48, 3), dtype=np.uint8))
        (test / f"TCGA-TS-{i}.xml").write_text(_xml(regions))
    return root


# -- XML and rasterisation ----------------------------------------------------------------------------

def test_parse_aperio_xml(tmp_path):
    f = tmp_path / "a.xml"
    f.write_text(_xml([("7", [(1.5, 2), (10, 2), (10, 9)]), ("9", _square(0, 0, 3))], mpp="0.2527"))
    regions, mpp = parse_aperio_xml(f)
    assert mpp == pytest.approx(0.2527)
    assert [r for r, _ in regions] == ["7", "9"]
    np.testing.assert_allclose(regions[0][1], [[1.5, 2], [10, 2], [10, 9]])


@pytest.mark.parametrize("text, message", [
    ("<Annotations><Annotation>", "malformed XML"),
    (_xml([]), "no <Region>"),
    ('<Annotations><Region Id="1"><Vertex X="1"/><Vertex X="2" Y="3"/></Region></Annotations>', "without X or Y"),
    ('<Annotations><Region Id="1"><Vertex X="a" Y="1"/></Region></Annotations>', "numeric"),
])
def test_parse_errors_name_the_file(tmp_path, text, message):
    f = tmp_path / "bad.xml"
    f.write_text(text)
    with pytest.raises(DatasetError, match=message) as err:
        parse_aperio_xml(f)
    assert str(f) in str(err.value)


def test_later_region_wins_and_drops_are_documented():
    regions = [
        ("a", _square(2, 2, 10)),             # partly covered by "b"
        ("b", _square(8, 8, 10)),
        ("line", [(1, 1), (5, 5), (1, 1)]),  # < 3 distinct vertices
        ("tiny", [(30.1, 30.1), (30.3, 30.1), (30.2, 30.3)]),  # covers no pixel centre
        ("hidden", _square(21, 21, 3)),       # fully covered by the next one
        ("cover", _square(20, 20, 6)),
    ]
    inst, report = rasterise_regions(regions, (40, 40))
    assert inst.dtype == np.uint16
    assert report["xml_regions"] == 6 and report["instances"] == 3
    assert {d["region"]: d["reason"] for d in report["dropped"]} == {
        "line": "fewer than 3 distinct vertices",
        "tiny": "covers no pixel centre (degenerate or outside the tile)",
        "hidden": "fully covered by later regions"}
    assert set(np.unique(inst)) == {0, 1, 2, 3}  # renumbered 1..N in drawing order
    assert inst[9, 9] == 2 and inst[3, 3] == 1  # overlap goes to the later region
    assert inst[22, 22] == 3


def test_polygons_are_clipped_to_the_tile():
    inst, report = rasterise_regions([("edge", _square(-5, -5, 10)), ("out", _square(50, 50, 5))], (20, 20))
    assert report["instances"] == 1 and inst[0, 0] == 1 and inst[6, 6] == 0
    assert report["dropped"][0]["region"] == "out"


# -- layout validation and conversion ------------------------------------------------------------------

def test_convert_miniature_layout(tmp_path):
    src = _fake_monuseg(tmp_path / "src")
    out = convert("monuseg", src, tmp_path / "monuseg")
    assert check_dataset(out) == []
    ds = RawDataset(out)
    assert (len(ds.train_cases()), len(ds.test_cases()), len(ds.unlabelled_cases())) == (2, 2, 1)
    assert ds.rgb and ds.instance_labels and ds.spacing == pytest.approx((0.00025, 0.00025))
    case = ds.test_cases()[0]
    image, _ = case.load_image()
    np.testing.assert_array_equal(np.moveaxis(image, 0, -1), tifffile.imread(src / "MoNuSegTestData" / "TCGA-TS-0.tif"))
    inst, _ = case.load_instances()
    assert inst.max() == 2 and (inst == 1).sum() == 121  # centres inside or on a 10 px square's outline
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["licence"] == "CC BY-NC-SA 4.0" and "Kumar" in meta["reference"]
    assert meta["conversion"]["tiles"]["TCGA-TR-0"]["instances"] == 2


def test_binary_masks_label_tiles_without_xml(tmp_path):
    from medseg_bench.datasets.monuseg import convert_monuseg

    src = _fake_monuseg(tmp_path / "src", n_train=1, n_unl=1, n_test=1, n_mask=1)
    out = convert("monuseg", src, tmp_path / "monuseg")
    assert check_dataset(out) == []
    ds = RawDataset(out)
    assert sorted(c.case_id for c in ds.train_cases()) == ["TCGA-TR-0", "TCGA-TR-2"]
    assert [c.case_id for c in ds.unlabelled_cases()] == ["TCGA-TR-1"]  # neither XML nor mask
    case = next(c for c in ds.train_cases() if c.case_id == "TCGA-TR-2")
    label, _ = case.load_label()
    inst, _ = case.load_instances()
    assert label.sum() == 64 + 48 + 100 and inst.max() == 2  # the touching pair merges (documented)
    conv = json.loads((out / "dataset.json").read_text())["conversion"]
    assert conv["tiles"]["TCGA-TR-2"]["label_source"] == "binary_mask"
    assert (conv["xml_train_tiles"], conv["binary_mask_train_tiles"], conv["labelled_train_tiles"]) == (1, 1, 2)
    # XML only, on request
    convert_monuseg(src, tmp_path / "xml_only", use_binary_masks=False)
    assert len(RawDataset(tmp_path / "xml_only").unlabelled_cases()) == 2
    # a mask of the wrong size is named
    tifffile.imwrite(src / "MoNuSegTrainingData" / "Binary_masks" / "TCGA-TR-2.tif", np.zeros((40, 48), np.uint8))
    with pytest.raises(DatasetError, match=r"TCGA-TR-2.tif: binary mask of shape \(40, 48\)"):
        convert("monuseg", src, tmp_path / "bad")
    tifffile.imwrite(src / "MoNuSegTrainingData" / "Binary_masks" / "TCGA-TR-2.tif", np.full((48, 48), 7, np.uint8))
    with pytest.raises(DatasetError, match="TCGA-TR-2.tif: not a binary mask"):
        convert("monuseg", src, tmp_path / "bad")


def test_serial_and_parallel_conversion_agree(tmp_path):
    from medseg_bench.datasets.monuseg import convert_monuseg

    src = _fake_monuseg(tmp_path / "src", n_train=3, n_unl=0, n_test=1)
    convert_monuseg(src, tmp_path / "one", num_workers=1)
    convert_monuseg(src, tmp_path / "two", num_workers=2)
    for f in sorted((tmp_path / "one").rglob("*.png")):
        assert f.read_bytes() == (tmp_path / "two" / f.relative_to(tmp_path / "one")).read_bytes()


@pytest.mark.parametrize("breakage, message", [
    (lambda s: shutil.rmtree(s / "MoNuSegTestData"), "MoNuSegTestData: MoNuSeg test folder not found"),
    (lambda s: shutil.rmtree(s / "MoNuSegTrainingData" / "Annotations"), "Annotations: training annotation folder"),
    (lambda s: (s / "MoNuSegTestData" / "TCGA-TS-1.xml").unlink(), "TCGA-TS-1.xml: annotation of test tile"),
    (lambda s: (s / "MoNuSegTrainingData" / "Tissue_Images" / "TCGA-TR-0.tif").unlink(), "TCGA-TR-0.xml: annotation without a tile"),
    (lambda s: (s / "MoNuSegTestData" / "TCGA-TS-0.xml").write_text("<Annotations>"), "TCGA-TS-0.xml: malformed XML"),
    (lambda s: (s / "MoNuSegTestData" / "TCGA-TS-0.tif").write_bytes(b"not a tiff"), "TCGA-TS-0.tif: unreadable"),
])
def test_bad_input_fails_naming_the_file(tmp_path, breakage, message):
    src = _fake_monuseg(tmp_path / "src")
    breakage(src)
    with pytest.raises(DatasetError, match=message):
        convert("monuseg", src, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # staging cleaned up


def test_cli_reports_bad_input(tmp_path, capsys):
    src = _fake_monuseg(tmp_path / "src")
    (src / "MoNuSegTestData" / "TCGA-TS-1.xml").unlink()
    assert main(["datasets", "convert", "monuseg", "--src", str(src), "--workdir", str(tmp_path / "wd")]) == 2
    assert "TCGA-TS-1.xml" in capsys.readouterr().err


# -- the real MoNuSeg 2018 copy ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def monuseg_src():
    from medseg_testdata import SHARED_DATA

    src = SHARED_DATA / "monuseg2018"
    if not src.is_dir():
        pytest.skip(f"real MoNuSeg not found at {src} (a fresh clone has no ../shared; CI always has it)")
    return src


def test_real_layout_is_recognised(monuseg_src):
    layout = find_layout(monuseg_src)
    assert (len(layout["train"]), len(layout["train_masks"]), len(layout["test"]), len(layout["unlabelled"])) == (13, 17, 14, 0)
    xml_only = find_layout(monuseg_src, use_binary_masks=False)
    assert (len(xml_only["train"]), len(xml_only["train_masks"]), len(xml_only["unlabelled"])) == (13, 0, 17)


def test_real_binary_masks_agree_with_the_polygons(monuseg_src):
    """Where a tile has both, the official binary mask and our polygon rasterisation are the same
    annotation (so mask-labelled tiles are not a different labelling protocol)."""
    from medseg_bench.io import read_image

    layout = find_layout(monuseg_src)
    masks = monuseg_src / "MoNuSegTrainingData" / "Binary_masks"
    for case_id, (_, xml) in list(layout["train"].items())[:2]:
        mask = read_image(masks / f"{case_id}.png")[0] > 0
        inst, _ = rasterise_regions(parse_aperio_xml(xml)[0], mask.shape)
        dice = 2 * (mask & (inst > 0)).sum() / (mask.sum() + (inst > 0).sum())
        assert dice > 0.9, (case_id, dice)


def test_real_tile_counts_match_xml(monuseg_src, tmp_path):
    """One annotated training tile, one unlabelled and one test tile, via links: fast."""
    layout = find_layout(monuseg_src)
    sub = tmp_path / "src"
    (sub / "MoNuSegTrainingData" / "Tissue_Images").mkdir(parents=True)
    (sub / "MoNuSegTrainingData" / "Annotations").mkdir()
    (sub / "MoNuSegTestData").mkdir()
    tr_id, (tr_tif, tr_xml) = next(iter(layout["train"].items()))
    ts_id, (ts_tif, ts_xml) = next(iter(layout["test"].items()))
    un_id, (un_tif, _) = next(iter(layout["train_masks"].items()))  # no mask folder linked: unlabelled
    for f, d in ((tr_tif, "MoNuSegTrainingData/Tissue_Images"), (un_tif, "MoNuSegTrainingData/Tissue_Images"),
                 (tr_xml, "MoNuSegTrainingData/Annotations"), (ts_tif, "MoNuSegTestData"), (ts_xml, "MoNuSegTestData")):
        os.symlink(f, sub / d / f.name)
    out = convert("monuseg", sub, tmp_path / "monuseg")
    assert check_dataset(out) == []
    ds = RawDataset(out)
    assert [c.case_id for c in ds.unlabelled_cases()] == [un_id]
    for case, xml in ((ds.train_cases()[0], tr_xml), (ds.test_cases()[0], ts_xml)):
        inst, _ = case.load_instances()
        n_xml = len(parse_aperio_xml(xml)[0])
        assert inst.shape == (1000, 1000)
        assert abs(len(np.unique(inst[inst > 0])) - n_xml) <= 0.01 * n_xml


@pytest.mark.slow
def test_real_full_conversion(monuseg_src, tmp_path):
    t0 = time.perf_counter()
    out = convert("monuseg", monuseg_src, tmp_path / "monuseg")
    seconds = time.perf_counter() - t0
    ds = RawDataset(out)
    assert (len(ds.train_cases()), len(ds.test_cases()), len(ds.unlabelled_cases())) == (30, 14, 0)
    assert check_dataset(out) == []
    conv = json.loads((out / "dataset.json").read_text())["conversion"]
    documented = {"fewer than 3 distinct vertices", "covers no pixel centre (degenerate or outside the tile)",
                  "fully covered by later regions"}
    assert (conv["xml_train_tiles"], conv["binary_mask_train_tiles"]) == (13, 17)
    for case in ds.train_cases() + ds.test_cases():
        tile = conv["tiles"][case.case_id]
        if tile["label_source"] == "binary_mask":
            continue
        inst, _ = case.load_instances()
        assert len(np.unique(inst[inst > 0])) == tile["instances"]
        assert tile["xml_regions"] - tile["instances"] == len(tile["dropped"])
        assert abs(tile["instances"] - tile["xml_regions"]) <= 0.01 * tile["xml_regions"], case.case_id
        assert {d["reason"] for d in tile["dropped"]} <= documented
    print(f"monuseg: {conv['instances']} instances from {conv['xml_regions']} XML regions in {seconds:.1f} s")
    assert conv["instances"] >= 0.99 * conv["xml_regions"]


def test_cli_converter_options(tmp_path, capsys):
    """``datasets convert --option KEY=VALUE`` reaches the converter; an unknown option is named with the
    known ones; ``datasets list`` shows them."""
    src = _fake_monuseg(tmp_path / "src", n_train=1, n_unl=1, n_test=1, n_mask=1)
    wd = tmp_path / "wd"
    assert main(["datasets", "convert", "monuseg", "--src", str(src), "--workdir", str(wd), "--out",
                 str(tmp_path / "xml_only"), "--option", "use_binary_masks=false"]) == 0
    assert len(RawDataset(tmp_path / "xml_only").unlabelled_cases()) == 2  # the mask-only tile stays unlabelled
    assert main(["datasets", "convert", "monuseg", "--src", str(src), "--workdir", str(wd), "--out",
                 str(tmp_path / "bad"), "--option", "use_masks=false"]) == 2
    err = capsys.readouterr().err
    assert "no option use_masks" in err and "use_binary_masks (default True)" in err
    assert not (tmp_path / "bad").exists()
    assert main(["datasets", "convert", "monuseg", "--src", str(src), "--workdir", str(wd), "--option", "oops"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert main(["datasets", "list", "--workdir", str(wd)]) == 0
    assert "use_binary_masks=True" in capsys.readouterr().out
