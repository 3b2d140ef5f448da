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

The secret is a string of at least 16 characters in a file; the generator seed is derived from it
(:func:`read_secret_seed`). The private dataset is written once to ``<workdir>/private/<dataset>__<tag>/``
(:func:`seed_tag`; records carry the tag and the private data's hash, never the seed, which only that
folder's ``dataset.json`` holds); keep that folder host-only.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

from ..io import RawDataset
from .submit import BundleError, SubmissionError, check_predictions, load_submission

__all__ = ["predict_private", "private_dataset", "read_secret_seed", "score_private"]


MIN_SECRET_CHARS = 16


def read_secret_seed(path: Path) -> int:
    """The generator seed derived from the secret in ``path`` (at least 16 characters, e.g.
    ``python -c "import secrets; print(secrets.token_hex(16))"``): the first 60 bits of its sha256, so
    that neither the seed nor the tag of :func:`seed_tag` can be guessed by trying seeds.

    Raises:
        BundleError: missing file or a secret shorter than 16 characters.
    """
    path = Path(path)
    try:
        secret = path.read_text().strip()
    except FileNotFoundError as exc:
        raise BundleError(f"{path}: private seed file not found") from exc
    if len(secret) < MIN_SECRET_CHARS:
        raise BundleError(f"{path}: the secret must be at least {MIN_SECRET_CHARS} characters (it has "
                          f"{len(secret)}); a short one can be found by generating datasets until one matches")
    return int(hashlib.sha256(b"medseg_bench private split\0" + secret.encode()).hexdigest()[:15], 16)


def seed_tag(seed: int) -> str:
    """A name for the private split of ``seed`` (12 hex digits of a hash; says nothing of the seed)."""
    return hashlib.sha256(f"medseg_bench private tag {int(seed)}".encode()).hexdigest()[:12]


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

    about = manifest["method"]
    sources, loaded = about.get("source_files") or [], about.get("loaded_from") or {"kind": "file"}
    if loaded["kind"] == "file" and len(sources) != 1:
        raise BundleError(f"{bundle}: a re-run of a file submission needs its single source file (has {sources})")
    privates = {cell.dataset: private_dataset(wd, raw, seed) for cell, _, raw in cells}
    stage = Path(tempfile.mkdtemp(prefix="medseg_private_"))
    try:
        if loaded["kind"] == "file":
            (stage / "submission").mkdir()
            method = str(shutil.copy2(bundle / "source" / sources[0], stage / "submission" / sources[0]))
        else:  # an installed method (entry point or built-in): the host's copy, checked against the source hash
            method = loaded["spec"]
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
            _run_worker({"mode": "predict", "method": method, "source_hash": about.get("source_hash"), "runs": runs},
                        stage, timeout_s)
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
    from .submit import source_hash

    guard.arm()
    method_cls = load_submission(job["method"])
    if source_hash(method_cls)[0] != job["source_hash"]:
        raise SubmissionError(f"the source of {method_cls.name!r} here differs from the bundle's (source_hash); "
                              "install the submitted version to re-run it")
    for run in job["runs"]:
        predict_images_folder(run["model"], run["images"], run["out"], progress=False)
    guard.disarm()
    if guard.violations:
        raise SubmissionError(f"the method opened a file it may not (private re-run):\n  {guard.summary()}")
    return {"predicted": [r["key"] for r in job["runs"]]}
