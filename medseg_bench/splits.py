"""Label-budget splits: the fixed test set, nested labelled subsets per budget and seed, the unlabelled pool.

``<workdir>/preprocessed/<dataset>/splits.json`` holds, for one raw dataset::

    {"splits_version": 1, "dataset": name, "content_key": sha256 of the case lists,
     "test": [...], "train": [...], "unlabelled_images": [...],
     "budgets": [0, 1, 2, 4, 8, "all"],
     "seeds": {"0": {"order": [... all training case ids, permuted ...],
                     "budgets": {"0": [], "1": [...], ..., "all": [...]}}},
     "skipped_budgets": {"16": "dataset has only 12 labelled training cases"}}

Rules (ARCHITECTURE.md, "Label budgets"):

* the test set is the raw dataset's fixed test set (``labelsTs`` or the hash rule of
  :func:`medseg_bench.io.hash_test_case_ids`); it is independent of the seed and never trained on;
* a budget counts labelled *training* cases (images for 2D datasets, volumes for 3D datasets);
* budgets are **nested**: for one seed, the budget-``b`` cases are the first ``b`` of one seeded
  permutation of the training cases, so budget 2 is inside budget 4, and so on;
* the permutation depends only on the training case ids and the seed (not on the order files are
  listed in, not on the dataset's folder name), so the same content gives the same split anywhere;
* the unlabelled pool of a budget is every other training case (its label is never read) plus
  ``imagesUnlabelled/`` and any ``imagesTr`` image without a label file.

A budget larger than the number of training cases is not an error when writing the file (it is
listed under ``skipped_budgets`` with the reason), but asking for it raises :class:`BudgetError`
with a clear message.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .io import RawDataset

__all__ = [
    "DEFAULT_BUDGETS",
    "DEFAULT_SEEDS",
    "SPLITS_VERSION",
    "BudgetError",
    "budget_cases",
    "load_or_make_splits",
    "make_splits",
    "normalise_budget",
    "split_hash",
    "splits_path",
    "unlabelled_pool",
]

SPLITS_VERSION = 1
DEFAULT_BUDGETS: tuple = (0, 1, 2, 4, 8, "all")
DEFAULT_SEEDS: tuple = (0, 1, 2)


class BudgetError(ValueError):
    """A label budget cannot be served by a dataset (too few labelled training cases, bad value)."""


def normalise_budget(budget) -> int | str:
    """``"all"`` or a non-negative int; accepts strings such as ``"4"`` (CLI)."""
    if isinstance(budget, str):
        if budget.strip().lower() == "all":
            return "all"
        try:
            budget = int(budget)
        except ValueError:
            raise BudgetError(f"label budget must be a non-negative integer or 'all', got {budget!r}") from None
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 0:
        raise BudgetError(f"label budget must be a non-negative integer or 'all', got {budget!r}")
    return int(budget)


def _content_key(train: list[str], test: list[str], unlabelled: list[str]) -> str:
    blob = json.dumps({"train": sorted(train), "test": sorted(test), "unlabelled": sorted(unlabelled)})
    return hashlib.sha256(blob.encode()).hexdigest()


def _seed_order(train: list[str], seed: int) -> list[str]:
    """One permutation of the training case ids, from (sorted ids, seed) only."""
    key = hashlib.sha256(json.dumps([sorted(train), int(seed)]).encode()).digest()
    rng = np.random.default_rng(int.from_bytes(key[:8], "little"))
    ordered = sorted(train)
    return [ordered[i] for i in rng.permutation(len(ordered))]


def _seed_entry(train: list[str], seed: int, budgets) -> tuple[dict, dict]:
    order = _seed_order(train, seed)
    chosen, skipped = {}, {}
    for b in budgets:
        b = normalise_budget(b)
        if b == "all":
            chosen["all"] = sorted(order)
        elif b > len(order):
            skipped[str(b)] = f"dataset has only {len(order)} labelled training case(s)"
        else:
            chosen[str(b)] = sorted(order[:b])
    return {"order": order, "budgets": chosen}, skipped


def make_splits(raw_dataset: RawDataset | str | os.PathLike, budgets=DEFAULT_BUDGETS, seeds=DEFAULT_SEEDS) -> dict:
    """Build the splits of a raw dataset (pure: writes nothing).

    Args:
        raw_dataset: a :class:`RawDataset` or the path of a raw dataset folder.
        budgets: label budgets (ints >= 0 and/or ``"all"``); budgets above the number of training
            cases are recorded in ``skipped_budgets``.
        seeds: integer seeds, each giving one nested family of labelled subsets.

    Returns:
        The ``splits.json`` content (see module docstring).

    Raises:
        BudgetError: the dataset has no labelled training case at all.
    """
    raw = raw_dataset if isinstance(raw_dataset, RawDataset) else RawDataset(raw_dataset)
    test = sorted(c.case_id for c in raw.test_cases())
    train = sorted(c.case_id for c in raw.train_cases())
    # imagesUnlabelled/ plus imagesTr images that have no label file
    unlabelled = sorted({c.case_id for c in raw.unlabelled_cases()}
                        | {c.case_id for c in raw.raw_cases("train") if c.label_file is None})
    if not train:
        raise BudgetError(f"{raw.path}: no labelled training cases (after setting aside {len(test)} test case(s))")
    budgets = [normalise_budget(b) for b in budgets]
    out = {
        "splits_version": SPLITS_VERSION,
        "dataset": raw.name,
        "content_key": _content_key(train, test, unlabelled),
        "test": test,
        "train": train,
        "unlabelled_images": unlabelled,
        "budgets": budgets,
        "seeds": {},
        "skipped_budgets": {},
    }
    for s in seeds:
        entry, skipped = _seed_entry(train, int(s), budgets)
        out["seeds"][str(int(s))] = entry
        out["skipped_budgets"].update(skipped)
    return out


def _seed_block(splits: dict, seed: int) -> dict:
    block = splits["seeds"].get(str(int(seed)))
    if block is None:
        # any seed can be derived; files written with other seeds stay valid
        block, _ = _seed_entry(splits["train"], int(seed), [])
    return block


def budget_cases(splits: dict, budget, seed: int) -> list[str]:
    """Sorted case ids whose labels the budget may read (nested across budgets for one seed).

    Raises:
        BudgetError: the budget exceeds the number of labelled training cases (message names the
            dataset, the budget and what is available).
    """
    b = normalise_budget(budget)
    order = _seed_block(splits, seed)["order"]
    if b == "all":
        return sorted(order)
    if b > len(order):
        raise BudgetError(
            f"dataset {splits.get('dataset')!r} has only {len(order)} labelled training case(s); "
            f"label budget {b} is not possible (use a budget <= {len(order)} or 'all')"
        )
    return sorted(order[:b])


def unlabelled_pool(splits: dict, budget, seed: int) -> list[str]:
    """Sorted case ids usable without labels: training cases outside the budget + ``imagesUnlabelled``."""
    labelled = set(budget_cases(splits, budget, seed))
    return sorted([c for c in splits["train"] if c not in labelled] + list(splits["unlabelled_images"]))


def split_hash(splits: dict, budget, seed: int) -> str:
    """Short sha256 of exactly what a cell sees: test ids, labelled ids, unlabelled pool."""
    blob = json.dumps(
        {
            "test": sorted(splits["test"]),
            "labelled": budget_cases(splits, budget, seed),
            "unlabelled": unlabelled_pool(splits, budget, seed),
        }
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def splits_path(workdir, dataset_name: str) -> Path:
    from .workdir import Workdir

    wd = workdir if isinstance(workdir, Workdir) else Workdir(Path(workdir))
    return wd.preprocessed(dataset_name) / "splits.json"


def _atomic_write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)


def load_or_make_splits(workdir, dataset, budgets=None, seeds=None) -> dict:
    """Read ``splits.json`` of a dataset, (re)writing it when missing, stale or lacking a seed/budget.

    Args:
        workdir: a :class:`medseg_bench.workdir.Workdir` or its root path.
        dataset: dataset name under ``<workdir>/raw`` or a raw folder path.
        budgets, seeds: what the file must cover (default: :data:`DEFAULT_BUDGETS`,
            :data:`DEFAULT_SEEDS`; existing entries are kept).

    The file is stale when the raw dataset's case lists changed (``content_key``); it is then rebuilt.
    """
    from .workdir import Workdir

    wd = workdir if isinstance(workdir, Workdir) else Workdir(Path(workdir))
    raw = RawDataset(wd.resolve_dataset(dataset))
    path = splits_path(wd, raw.name)
    want_budgets = [normalise_budget(b) for b in (budgets if budgets is not None else DEFAULT_BUDGETS)]
    want_seeds = [int(s) for s in (seeds if seeds is not None else DEFAULT_SEEDS)]
    fresh = make_splits(raw, [], [])
    existing = None
    if path.is_file():
        try:
            existing = json.loads(path.read_text())
        except ValueError:
            existing = None
    if existing is None or existing.get("splits_version") != SPLITS_VERSION or existing.get("content_key") != fresh["content_key"]:
        splits = make_splits(raw, want_budgets, want_seeds)
        _atomic_write_json(path, splits)
        return splits
    have_budgets = list(existing["budgets"])
    all_budgets = have_budgets + [b for b in want_budgets if b not in have_budgets]
    all_seeds = sorted({int(s) for s in existing["seeds"]} | set(want_seeds))
    if all_budgets == have_budgets and all(str(s) in existing["seeds"] for s in all_seeds):
        return existing
    splits = make_splits(raw, all_budgets, all_seeds)
    _atomic_write_json(path, splits)
    return splits
