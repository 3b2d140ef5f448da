"""Submission end to end on a tiny dataset: contract errors, a cheating method that finds no test
labels, bundle re-scoring (edited metrics ignored, edited predictions count), hash checks, the
worked example in examples/."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from cheating_method import find_test_labels

from medseg_bench.bench import load_records
from medseg_bench.io import Geometry, RawDatasetWriter, read_image, write_image
from medseg_bench.leaderboard.submit import BundleError, SubmissionError, merge_bundle, submit
from medseg_bench.methods import unregister_method

unregister_method("cheater")  # imported above for its search function; `submit` loads the file itself

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def _tiny(root: Path, name="tiny_discs"):
    rng = np.random.default_rng(0)
    w = RawDatasetWriter(root / "raw" / name, {"0": "gray"}, {"background": 0, "disc": 1}, ".nii.gz")
    yy, xx = np.mgrid[:48, :48]
    for i in range(12):
        cy, cx, r = rng.uniform(16, 32), rng.uniform(16, 32), rng.uniform(6, 11)
        lab = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r).astype(np.uint8)
        img = (lab * 2.0 + rng.normal(0, 0.5, lab.shape)).astype(np.float32)[None]
        g = Geometry(spacing=(1.0, 1.0), origin=(0.0, 0.0), direction=(1.0, 0.0, 0.0, 1.0))
        w.add_case(f"disc_{i:03d}", img, g, label=lab, subset="train" if i < 8 else "test")
    w.finalize()
    return name


@pytest.fixture(scope="module")
def cheated(tmp_path_factory):
    """One real submission of the cheating method (trains 2 iterations), shared by the tests below."""
    wd = tmp_path_factory.mktemp("wd")
    ds = _tiny(wd)
    report = wd / "cheat_report.jsonl"
    mp = pytest.MonkeyPatch()
    mp.setenv("CHEAT_REPORT", str(report))
    mp.setenv("MEDSEG_WORKDIR", str(wd))  # the submission's process must not inherit it
    try:
        bundle = submit(str(HERE / "cheating_method.py"), wd, datasets=[ds], budgets=["2"], seeds=[0],
                        preset="demo", iterations=2, num_threads=1)
    finally:
        mp.undo()
    return wd, ds, bundle, report


def test_cheating_method_finds_no_test_labels(cheated):
    wd, ds, bundle, report = cheated
    runs = [json.loads(line) for line in report.read_text().splitlines()]
    staged = [r for r in runs if any("medseg_submission_" in root for root in r["roots"])]
    assert staged, runs  # it did search where the suite keeps the staged data
    assert all(len(r["test_ids"]) == 4 for r in staged)  # it knew the test images ...
    assert all(r["found"] == [] for r in runs)  # ... but found no label of them anywhere
    assert not any(str(wd) in root for r in staged for root in r["roots"])  # never pointed at the real workdir
    # the search itself works: pointed at the real workdir it finds the test labels
    assert len(find_test_labels([wd])["found"]) >= 4


def test_bundle_holds_predictions_not_labels(cheated):
    wd, ds, bundle, _ = cheated
    meta = json.loads((bundle / "bundle.json").read_text())
    (entry,) = meta["cells"]
    assert len(meta["method"]["source_hash"]) == 64 and meta["environment"]["python"]
    assert len(entry["dataset_hash"]) == 64 and entry["split_hash"] and len(entry["test_cases"]) == 4
    preds = sorted(p.name for p in (bundle / "predictions" / entry["key"]).iterdir())
    assert preds == [f"{c}.nii.gz" for c in entry["test_cases"]]
    assert not list(bundle.rglob("labelsTs")) and not list(bundle.rglob("*_seg.npy"))


def test_merge_rescores_and_ignores_edited_metrics(cheated, tmp_path):
    wd, ds, bundle, _ = cheated
    edited = tmp_path / "bundle"
    shutil.copytree(bundle, edited)
    (entry,) = json.loads((edited / "bundle.json").read_text())["cells"]
    rec_path = edited / "records" / f"{entry['key']}.json"
    rec = json.loads(rec_path.read_text())
    rec["metrics"] = {"per_case": [{"case": c, "classes": {"disc": {"dice": 1.0, "hd95": 0.0, "assd": 0.0}}}
                                   for c in entry["test_cases"]]}
    rec_path.write_text(json.dumps(rec))
    (merged,) = merge_bundle(edited, wd)
    dice = [c["classes"]["disc"]["dice"] for c in merged["metrics"]["per_case"]]
    assert merged["submission"]["rescored"] and dice != [1.0] * 4  # the edited numbers were ignored

    # predictions are what counts: replace them by the references' complement -> Dice 0
    pred_dir = edited / "predictions" / entry["key"]
    for f in pred_dir.iterdir():
        ref, g = read_image(wd / "raw" / ds / "labelsTs" / f.name)
        write_image(f, (1 - ref).astype(np.uint8), g)
    (again,) = merge_bundle(edited, wd)
    assert all(c["classes"]["disc"]["dice"] == 0.0 for c in again["metrics"]["per_case"])
    stored = [r for r in load_records(wd / "results") if r["cell"]["method"] == "cheater"]
    assert len(stored) == 1 and stored[0]["metrics"]["per_case"][0]["classes"]["disc"]["dice"] == 0.0


def test_merge_rejects_hash_mismatch(cheated, tmp_path):
    wd, ds, bundle, _ = cheated
    bad = tmp_path / "bad"
    shutil.copytree(bundle, bad)
    meta = json.loads((bad / "bundle.json").read_text())
    meta["cells"][0]["dataset_hash"] = "0" * 64
    (bad / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="dataset hash"):
        merge_bundle(bad, wd)
    meta["cells"][0]["dataset_hash"] = json.loads((bundle / "bundle.json").read_text())["cells"][0]["dataset_hash"]
    meta["cells"][0]["split_hash"] = "deadbeef"
    (bad / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="split hash"):
        merge_bundle(bad, wd)
    with pytest.raises(BundleError, match="not a submission bundle"):
        merge_bundle(tmp_path, wd)


def test_contract_errors_are_clear(tmp_path):
    from medseg_bench.leaderboard.submit import load_submission, validate_method

    missing_hook = tmp_path / "no_step.py"
    missing_hook.write_text(
        "from medseg_bench.methods import Method, register_method\n"
        "@register_method\nclass NoStep(Method):\n"
        "    name = 'no_step'\n    family = 'supervised'\n    citation = 'test'\n    dims = (2,)\n")
    with pytest.raises(SubmissionError, match="training_step"):
        validate_method(load_submission(str(missing_hook)), tmp_path / "c1")
    wrong_labels = tmp_path / "wrong_labels.py"
    wrong_labels.write_text(
        "import numpy as np\nfrom medseg_bench.methods import register_method\n"
        "from medseg_bench.methods.supervised import Supervised\n"
        "@register_method\nclass WrongLabels(Supervised):\n"
        "    name = 'wrong_labels'\n    dims = (2,)\n"
        "    def to_segmentation(self, probabilities, image=None):\n"
        "        return np.full(probabilities.shape[1:], 7, np.uint8)\n")
    with pytest.raises(SubmissionError, match="to_segmentation"):
        validate_method(load_submission(str(wrong_labels)), tmp_path / "c2")
    with pytest.raises(FileNotFoundError):
        submit(str(tmp_path / "nope.py"), tmp_path / "wd")


def test_wrong_prediction_shape_is_reported(cheated, tmp_path):
    from medseg_bench.io import RawDataset
    from medseg_bench.leaderboard.submit import check_predictions

    wd, ds, bundle, _ = cheated
    (entry,) = json.loads((bundle / "bundle.json").read_text())["cells"]
    pred = tmp_path / "pred"
    shutil.copytree(bundle / "predictions" / entry["key"], pred)
    raw = RawDataset(wd / "raw" / ds)
    check_predictions(pred, raw, entry["test_cases"])  # the real ones pass
    f = pred / f"{entry['test_cases'][0]}.nii.gz"
    arr, g = read_image(f)
    write_image(f, np.zeros((arr.shape[0] - 1, arr.shape[1]), np.uint8), g)
    with pytest.raises(SubmissionError, match="shape"):
        check_predictions(pred, raw, entry["test_cases"])
    write_image(f, np.full(arr.shape, 5, np.uint8), g)
    with pytest.raises(SubmissionError, match="label values"):
        check_predictions(pred, raw, entry["test_cases"])
    f.unlink()
    with pytest.raises(SubmissionError, match="no prediction"):
        check_predictions(pred, raw, entry["test_cases"])


def test_worked_example_is_a_valid_method():
    from medseg_bench.leaderboard.submit import load_submission

    cls = load_submission(str(REPO / "examples" / "entropy_min_method.py"))
    assert cls.name == "entropy_min" and cls.family == "semi-supervised" and "Grandvalet" in cls.citation
    assert len((REPO / "examples" / "entropy_min_method.py").read_text().splitlines()) <= 100
