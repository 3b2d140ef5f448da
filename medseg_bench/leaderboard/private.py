"""A private test split: re-run a bundle's models on test cases only the leaderboard host has.

Scoring a bundle's predictions on the workdir's test split trusts that the submitter's process never
saw that split's labels; the sandbox (:mod:`.sandbox`) makes that hard, not impossible (same OS user).
A built-in dataset is a simulator run with a seed (``dataset.json`` ``generator``: name, version,
size, seed), so the host can hold a **secret seed** and generate the same dataset again with it:
same generator, version and size, other cases. ``leaderboard --add BUNDLE --private-seed-file FILE``
then re-runs every model of the bundle (``models/<cell>/``: settings, plan, final checkpoint) on that
private split's test *images* in the submission sandbox, and scores the predictions against the
private labels, as code competitions re-run the submitted code on hidden data. No file the submitter
could read holds these labels, so reading files cannot game a board scored this way. Every row of
such a board must be scored the same way (submit the built-in methods too, e.g. ``submit supervised``).

The private dataset is written once to ``<workdir>/private/<dataset>__<tag>/`` (``tag`` = first 12
hex digits of the seed's sha256; the seed itself is stored nowhere); keep that folder host-only.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

from ..io import RawDataset
from .submit import BundleError, SubmissionError, check_predictions, load_submission

__all__ = ["predict_private", "private_dataset", "read_secret_seed", "score_private"]


def read_secret_seed(path: Path) -> int:
    """The integer seed in ``path`` (the file's only content).

    Raises:
        BundleError: missing file or not an integer.
    """
    path = Path(path)
    try:
        return int(path.read_text().strip())
    except FileNotFoundError as exc:
        raise BundleError(f"{path}: private seed file not found") from exc
    except ValueError as exc:
        raise BundleError(f"{path}: a private seed file holds one integer, found {path.read_text()[:40]!r}") from exc


def seed_tag(seed: int) -> str:
    return hashlib.sha256(str(int(seed)).encode()).hexdigest()[:12]


def private_dataset(wd, raw: RawDataset, seed: int) -> RawDataset:
    """The private copy of the built-in dataset ``raw`` generated with ``seed`` (made once, then reused).

    Raises:
        BundleError: ``raw`` was not made by a built-in generator, by another version of it, or with
            this very seed.
    """
    from ..datasets import generate, get_generator

    gen = raw.meta.get("generator")
    if not isinstance(gen, dict) or not {"name", "size", "seed"} <= set(gen):
        raise BundleError(f"{raw.path / 'dataset.json'}: no generator block (name, size, seed): a private split "
                          "can only be generated for a built-in dataset")
    if int(gen["seed"]) == int(seed):
        raise BundleError(f"{raw.name}: the private seed equals the public dataset's seed; choose another secret")
    try:
        spec = get_generator(gen["name"])
    except KeyError as exc:
        raise BundleError(f"{raw.path / 'dataset.json'}: {exc.args[0]}") from exc
    if gen.get("version") is not None and str(gen["version"]) != spec.version:
        raise BundleError(f"{raw.name}: made by {gen['name']} {gen['version']}, this suite has {spec.version}; "
                          "the private split would not be the same kind of data")
    dest = Path(wd.root) / "private" / f"{raw.name}__{seed_tag(seed)}"
    if not (dest / "dataset.json").is_file():
        generate(gen["name"], dest, size=gen["size"], seed=int(seed), overwrite=True)
    return RawDataset(dest)


def score_private(bundle: Path, manifest: dict, cells: list, wd, seed: int, timeout_s: float | None = None) -> dict:
    """``{cell key: (metrics, test_split)}``: each ``(cell, entry, raw)`` of ``cells`` re-run on its
    dataset's private test images in one sandboxed process and scored against the private labels."""
    from ..planning import dataset_hash
    from .merge import rescore
    from .submit import _run_worker

    sources = manifest["method"].get("source_files") or []
    if len(sources) != 1:
        raise BundleError(f"{bundle}: a re-run needs a single-file submission (the bundle has {sources})")
    privates = {cell.dataset: private_dataset(wd, raw, seed) for cell, _, raw in cells}
    stage = Path(tempfile.mkdtemp(prefix="medseg_private_"))
    try:
        (stage / "submission").mkdir()
        method = shutil.copy2(bundle / "source" / sources[0], stage / "submission" / sources[0])
        for ds, priv in privates.items():  # test images only: the private labels stay on the host
            for case in priv.test_cases():
                for f in case.image_files:
                    (stage / "images" / ds / "imagesTs").mkdir(parents=True, exist_ok=True)
                    shutil.copy2(f, stage / "images" / ds / "imagesTs" / f.name)
        runs = []
        for cell, _, _ in cells:
            model = bundle / "models" / cell.key
            if not (model / "config.json").is_file():
                raise BundleError(f"{model}: the bundle holds no model for {cell.key}; re-create it with `submit`")
            shutil.copytree(model, stage / "models" / cell.key)
            runs.append({"key": cell.key, "model": str(stage / "models" / cell.key),
                         "images": str(stage / "images" / cell.dataset / "imagesTs"),
                         "out": str(stage / "out" / cell.key)})
        try:
            _run_worker({"mode": "predict", "method": str(method), "runs": runs}, stage, timeout_s)
        except SubmissionError as exc:
            raise BundleError(f"{bundle}: re-running its models on the private split failed: {exc}") from exc
        scores = {}
        for cell, _, _ in cells:
            priv, out = privates[cell.dataset], stage / "out" / cell.key
            ids = [c.case_id for c in priv.test_cases()]
            try:
                check_predictions(out, priv, ids)
            except SubmissionError as exc:
                raise BundleError(f"{cell.key} (private re-run): {exc}") from exc
            inst = out / "instances"
            metrics = rescore(out, inst if inst.is_dir() else None, priv, ids)
            scores[cell.key] = (metrics, {"kind": "private", "seed_tag": seed_tag(seed), "cases": ids,
                                          "generator": priv.meta["generator"]["name"],
                                          "dataset_hash": dataset_hash(priv)})
        return scores
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def predict_private(job: dict, stage: Path, guard) -> dict:
    """In the sandboxed child: import the submission, predict every run's images with its model; no
    label file may be opened at all."""
    from ..training.predict import predict_images_folder

    guard.arm()
    load_submission(job["method"])
    for run in job["runs"]:
        predict_images_folder(run["model"], run["images"], run["out"], progress=False)
    guard.disarm()
    if guard.violations:
        raise SubmissionError(f"the method opened a file it may not (private re-run):\n  {guard.summary()}")
    return {"predicted": [r["key"] for r in job["runs"]]}
