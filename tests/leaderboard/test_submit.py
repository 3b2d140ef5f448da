"""Submission integrity end to end on the built-in ``retina_ga`` tiny dataset (issue 25):

* the worked example (an honest method) is submitted and merges, re-scored, with its budget from the split;
* the hostile method of ``cheating_method.py`` (parent command line, ``$PWD``, a shell, the real
  workdir's ``labelsTs`` and preprocessed test labels, a training label beyond its budget, all only
  outside the contract check) is never imported by ``submit``, sees only the stage, and fails with
  every refused file named;
* a bundle edited after ``submit`` (labels copied over predictions, edited budget cases / counts /
  iterations / source, added or removed files) is refused; re-sealed edits are caught or ignored;
* a private test split re-runs the bundle's model, so even re-sealed copied labels score only what the
  model predicts.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medseg_bench.bench import load_records
from medseg_bench.datasets import generate
from medseg_bench.io import read_image, write_image
from medseg_bench.leaderboard.merge import merge_bundle
from medseg_bench.leaderboard.submit import BundleError, SubmissionError, seal_files, submit

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DS = "retina_ga_tiny"
SECRET = 4242


@pytest.fixture(scope="module")
def honest(tmp_path_factory):
    """One real submission of the worked example (2 iterations), shared by the tests below."""
    wd = tmp_path_factory.mktemp("wd")
    generate("retina_ga", wd / "raw" / DS, size="tiny", seed=0)
    mp = pytest.MonkeyPatch()
    mp.setenv("MEDSEG_WORKDIR", str(wd))  # the submission's process must not inherit it
    try:
        bundle = submit(str(REPO / "examples" / "entropy_min_method.py"), wd, datasets=[DS], budgets=["2"],
                        seeds=[0], preset="demo", iterations=2, num_threads=1)
    finally:
        mp.undo()
    return wd, bundle


def _copy(bundle: Path, dest: Path) -> Path:
    shutil.copytree(bundle, dest)
    return dest


def _reseal(bundle: Path) -> None:
    """What a determined cheater does after editing: recompute the seal (it is not a signature)."""
    meta = json.loads((bundle / "bundle.json").read_text())
    meta["files"] = seal_files(bundle)
    (bundle / "bundle.json").write_text(json.dumps(meta))


def _entry(bundle: Path) -> dict:
    (entry,) = json.loads((bundle / "bundle.json").read_text())["cells"]
    return entry


def _dice(record) -> list[float]:
    return [c["classes"]["GA"]["dice"] for c in record["metrics"]["per_case"]]


def _copy_labels_over_predictions(bundle: Path, wd: Path) -> None:
    for f in (bundle / "predictions" / _entry(bundle)["key"]).glob("*.png"):
        shutil.copyfile(wd / "raw" / DS / "labelsTs" / f.name, f)


def test_honest_submission_merges(honest):
    from medseg_bench.splits import budget_cases, load_or_make_splits

    wd, bundle = honest
    meta = json.loads((bundle / "bundle.json").read_text())
    entry = _entry(bundle)
    assert len(meta["method"]["source_hash"]) == 64 and meta["environment"]["python"]
    assert len(entry["dataset_hash"]) == 64 and entry["split_hash"] and len(entry["test_cases"]) == 2
    preds = sorted(p.name for p in (bundle / "predictions" / entry["key"]).glob("*.png"))
    assert preds == [f"{c}.png" for c in entry["test_cases"]]
    sealed = set(meta["files"])  # the seal covers every prediction, record, model and source file
    assert {f"predictions/{entry['key']}/{p}" for p in preds} | {f"records/{entry['key']}.json",
                                                                 "source/entropy_min_method.py",
                                                                 f"models/{entry['key']}/checkpoint_final.pt"} <= sealed
    assert not list(bundle.rglob("labelsTs")) and not list(bundle.rglob("*_seg.npy"))
    (merged,) = merge_bundle(bundle, wd)
    splits = load_or_make_splits(wd, wd / "raw" / DS, budgets=[2], seeds=[0])
    assert merged["budget_cases"] == budget_cases(splits, 2, 0) and merged["n_labelled"] == 2
    assert merged["submission"]["sealed"] and merged["submission"]["test_split"] == {"kind": "public"}
    assert all(0.0 <= d <= 1.0 for d in _dice(merged)) and len(_dice(merged)) == 2


def test_hostile_method_is_caught(honest, tmp_path):
    wd, _ = honest
    src = tmp_path / "cheating_method.py"
    src.write_text((HERE / "cheating_method.py").read_text().replace("REAL_WORKDIR = None",
                                                                     f"REAL_WORKDIR = {str(wd)!r}"))
    assert list((wd / "preprocessed" / DS).rglob("gats_000_seg.npy"))  # the targets exist in the real workdir
    env = {**os.environ, "MEDSEG_WORKDIR": str(wd), "PWD": str(wd), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "medseg_bench", "submit", str(src), "--workdir", str(wd),
                             "--datasets", DS, "--budgets", "2", "--seeds", "0", "--preset", "demo",
                             "--iterations", "2"], cwd=wd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=600)
    seen = [json.loads(line[6:]) for line in out.splitlines() if line.startswith("CHEAT ")]
    imports = [s for s in seen if s.get("event") == "import"]
    assert len(imports) == 2, out  # imported by the two children only, never by `submit` itself
    assert all(s["pid"] != proc.pid for s in imports)
    assert all("medseg_submission_" in s["cwd"] and "medseg_submission_" in s["PWD"] for s in imports)
    assert all(s["medseg_env"] == [] for s in imports)
    tried = {s["what"]: s for s in seen if "what" in s}
    assert tried["search"]["test_ids"] == ["gats_000", "gats_001"] and tried["search"]["found"] == []
    assert not any(r.startswith(str(wd)) for r in tried["search"]["roots"])
    for what in ("parent cmdline", "shell", "labelsTs", "preprocessed test seg", "symlink",
                 "training label beyond the budget"):
        assert not tried[what]["ok"] and "refused by the submission guard" in tried[what]["error"], tried[what]
    assert proc.returncode == 2, err
    assert "(cell failed)" in err and f"/proc/{proc.pid}/cmdline" in err and "subprocess.Popen" in err
    assert "os.symlink" in err and "may not make links" in err
    assert f"{wd}/raw/{DS}/labelsTs/gats_000.png: label file of case 'gats_000'" in err
    assert "gats_000_seg.npy: label file of case 'gats_000'" in err
    assert "not in this cell's labelled budget" in err and not (wd / "submissions" / "cheater").exists()


def test_tampered_bundle_is_refused(honest, tmp_path):
    wd, bundle = honest
    key = _entry(bundle)["key"]
    b = _copy(bundle, tmp_path / "labels_copied")
    _copy_labels_over_predictions(b, wd)
    with pytest.raises(BundleError, match=rf"predictions/{key}/gats_00\d.png: sha256 .* differs from the seal"):
        merge_bundle(b, wd)
    edits = {"budget_cases": lambda r: r.update(budget_cases=r["budget_cases"][:1]),
             "n_labelled": lambda r: r.update(n_labelled=4),
             "iterations": lambda r: r["provenance"].update(iterations=25000)}
    for name, edit in edits.items():
        b = _copy(bundle, tmp_path / name)
        rec = json.loads((b / "records" / f"{key}.json").read_text())
        edit(rec)
        (b / "records" / f"{key}.json").write_text(json.dumps(rec))
        with pytest.raises(BundleError, match=rf"records/{key}.json: sha256 .* differs from the seal"):
            merge_bundle(b, wd)
        _reseal(b)  # re-sealed: the budget comes from the split, the provenance must equal bundle.json's
        if name == "n_labelled":
            (merged,) = merge_bundle(b, wd)
            assert merged["n_labelled"] == 2
            continue
        with pytest.raises(BundleError, match="not the split's|provenance differ"):
            merge_bundle(b, wd)
        meta = json.loads((b / "bundle.json").read_text())  # edited in bundle.json too: the model disagrees
        meta["cells"][0].update(provenance=rec["provenance"])
        (b / "bundle.json").write_text(json.dumps(meta))
        if name == "iterations":
            with pytest.raises(BundleError, match="25000 iterations, but the model was trained with 2"):
                merge_bundle(b, wd)
    b = _copy(bundle, tmp_path / "source")
    (b / "source" / "entropy_min_method.py").write_text("# another method\n")
    with pytest.raises(BundleError, match="entropy_min_method.py: sha256"):
        merge_bundle(b, wd)
    _reseal(b)
    with pytest.raises(BundleError, match="does not match the bundle's source_hash"):
        merge_bundle(b, wd)
    b = _copy(bundle, tmp_path / "added")
    (b / "predictions" / "extra.txt").write_text("x")
    with pytest.raises(BundleError, match="not in the seal"):
        merge_bundle(b, wd)
    (b / "predictions" / "extra.txt").unlink()
    (b / "predictions" / "extra.txt").symlink_to(wd / "raw" / DS / "labelsTs" / "gats_000.png")
    with pytest.raises(BundleError, match="a link; a bundle holds plain files only"):
        merge_bundle(b, wd)
    shutil.rmtree(b / "models")
    (b / "predictions" / "extra.txt").unlink()
    with pytest.raises(BundleError, match="listed in the seal but missing"):
        merge_bundle(b, wd)


def test_merge_rescores_and_ignores_edited_metrics(honest, tmp_path):
    wd, bundle = honest
    edited = _copy(bundle, tmp_path / "bundle")
    entry = _entry(edited)
    rec_path = edited / "records" / f"{entry['key']}.json"
    rec = json.loads(rec_path.read_text())
    rec["metrics"] = {"per_case": [{"case": c, "classes": {"GA": {"dice": 1.0, "hd95": 0.0, "assd": 0.0}}}
                                   for c in entry["test_cases"]]}
    rec_path.write_text(json.dumps(rec))
    _reseal(edited)
    (merged,) = merge_bundle(edited, wd)
    assert merged["submission"]["rescored"] and _dice(merged) != [1.0, 1.0]  # the edited numbers were ignored

    # predictions are what counts on the public split: the references' complement -> Dice 0
    for f in (edited / "predictions" / entry["key"]).glob("*.png"):
        ref, g = read_image(wd / "raw" / DS / "labelsTs" / f.name)
        write_image(f, (1 - ref).astype(np.uint8), g)
    _reseal(edited)
    (again,) = merge_bundle(edited, wd)
    assert _dice(again) == [0.0, 0.0]
    stored = [r for r in load_records(wd / "results") if r["cell"]["method"] == "entropy_min"]
    assert len(stored) == 1 and _dice(stored[0]) == [0.0, 0.0]


def test_private_split_scores_the_model_not_the_files(honest, tmp_path):
    wd, bundle = honest
    b = _copy(bundle, tmp_path / "cheat")
    _copy_labels_over_predictions(b, wd)
    _reseal(b)
    (public,) = merge_bundle(b, wd)
    assert _dice(public) == [1.0, 1.0]  # the public split can be gamed by a re-sealed bundle ...
    (private,) = merge_bundle(b, wd, private_seed=SECRET)  # ... a private re-run of its model cannot
    split = private["submission"]["test_split"]
    assert split["kind"] == "private" and split["cases"] == ["gats_000", "gats_001"] and "seed" not in split
    priv_dir = next((wd / "private").iterdir())
    assert split["dataset_hash"] != private["provenance"]["dataset_hash"]  # other cases than the public ones
    assert not np.array_equal(read_image(priv_dir / "labelsTs" / "gats_000.png")[0],
                              read_image(wd / "raw" / DS / "labelsTs" / "gats_000.png")[0])
    assert _dice(private) != [1.0, 1.0] and all(0.0 <= d <= 1.0 for d in _dice(private))
    with pytest.raises(BundleError, match="equals the public dataset's seed"):
        merge_bundle(bundle, wd, private_seed=0)


def test_wrong_prediction_shape_is_reported(honest, tmp_path):
    from medseg_bench.io import RawDataset
    from medseg_bench.leaderboard.submit import check_predictions

    wd, bundle = honest
    entry = _entry(bundle)
    pred = tmp_path / "pred"
    shutil.copytree(bundle / "predictions" / entry["key"], pred)
    raw = RawDataset(wd / "raw" / DS)
    check_predictions(pred, raw, entry["test_cases"])  # the real ones pass
    f = pred / f"{entry['test_cases'][0]}.png"
    arr, g = read_image(f, raw.spacing)
    write_image(f, np.zeros((arr.shape[0] - 1, arr.shape[1]), np.uint8), g)
    with pytest.raises(SubmissionError, match="shape"):
        check_predictions(pred, raw, entry["test_cases"])
    write_image(f, np.full(arr.shape, 5, np.uint8), g)
    with pytest.raises(SubmissionError, match="label values"):
        check_predictions(pred, raw, entry["test_cases"])
    f.unlink()
    with pytest.raises(SubmissionError, match="no prediction"):
        check_predictions(pred, raw, entry["test_cases"])


def test_merge_rejects_hash_mismatch(honest, tmp_path):
    wd, bundle = honest
    bad = _copy(bundle, tmp_path / "bad")
    meta = json.loads((bad / "bundle.json").read_text())
    meta["cells"][0]["dataset_hash"] = "0" * 64
    (bad / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="dataset hash"):
        merge_bundle(bad, wd)
    meta["cells"][0]["dataset_hash"] = _entry(bundle)["dataset_hash"]
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


def test_worked_example_is_a_valid_method():
    from medseg_bench.leaderboard.submit import load_submission

    cls = load_submission(str(REPO / "examples" / "entropy_min_method.py"))
    assert cls.name == "entropy_min" and cls.family == "semi-supervised" and "Grandvalet" in cls.citation
    assert len((REPO / "examples" / "entropy_min_method.py").read_text().splitlines()) <= 100


def test_staged_copy_holds_no_test_label_information(honest, tmp_path):
    from medseg_bench.io import RawDataset
    from medseg_bench.leaderboard.submit import stage_dataset

    wd, _ = honest
    info = stage_dataset(wd / "raw" / DS, tmp_path / DS)
    staged = RawDataset(tmp_path / DS)
    assert info["test_cases"] == ["gats_000", "gats_001"] and staged.test_labels_withheld
    assert not (tmp_path / DS / "labelsTs").exists() and all(c.label_file is None for c in staged.test_cases())
    params = json.loads((tmp_path / DS / "dataset.json").read_text())["case_parameters"]
    assert "ga_000" in params and not [k for k in params if k.startswith("gats_")]  # e.g. its lesion area
