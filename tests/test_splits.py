import json
import shutil

import numpy as np
import pytest

from medseg_bench.io import Geometry, RawDatasetWriter
from medseg_bench.splits import (
    BudgetError,
    budget_cases,
    load_or_make_splits,
    make_splits,
    split_hash,
    unlabelled_pool,
)
from medseg_bench.workdir import Workdir


def _raw(path, n_train=12, n_test=3, n_unl=2, with_test_folder=True):
    w = RawDatasetWriter(path, {"0": "CT"}, {"background": 0, "fg": 1}, ".nii.gz")
    img = np.zeros((1, 4, 4), np.float32)
    lab = np.zeros((4, 4), np.uint8)
    geo = Geometry((1.0, 1.0))
    for i in range(n_train):
        w.add_case(f"tr_{i:03d}", img, geo, label=lab)
    if with_test_folder:
        for i in range(n_test):
            w.add_case(f"ts_{i:03d}", img, geo, label=lab, subset="test")
    for i in range(n_unl):
        w.add_case(f"un_{i:03d}", img, geo, subset="unlabelled")
    return w.finalize()


def test_nested_budgets_test_fixed_and_pool(tmp_path):
    raw = _raw(tmp_path / "ds")
    s = make_splits(raw, budgets=(0, 1, 2, 4, 8, "all"), seeds=(0, 1))
    assert s["test"] == ["ts_000", "ts_001", "ts_002"]
    for seed in (0, 1):
        prev = set()
        for b in (0, 1, 2, 4, 8):
            cur = set(budget_cases(s, b, seed))
            assert len(cur) == b and prev <= cur
            assert not cur & set(s["test"])
            prev = cur
        assert budget_cases(s, "all", seed) == s["train"]
        pool = unlabelled_pool(s, 4, seed)
        assert set(pool) == (set(s["train"]) - set(budget_cases(s, 4, seed))) | {"un_000", "un_001"}
    # different seeds draw different subsets (12 choose 4 makes a tie very unlikely)
    assert budget_cases(s, 4, 0) != budget_cases(s, 4, 1)
    assert split_hash(s, 4, 0) != split_hash(s, 4, 1)
    assert split_hash(s, 4, 0) == split_hash(make_splits(raw, (4,), (0,)), 4, 0)


def test_deterministic_from_content_not_folder_name(tmp_path):
    a = make_splits(_raw(tmp_path / "a"), seeds=(3,))
    b = make_splits(_raw(tmp_path / "b"), seeds=(3,))
    assert a["seeds"] == b["seeds"] and a["content_key"] == b["content_key"]


def test_too_small_dataset_clear_message(tmp_path):
    s = make_splits(_raw(tmp_path / "ds", n_train=3), budgets=(1, 2, 4, 8, "all"), seeds=(0,))
    assert set(s["skipped_budgets"]) == {"4", "8"}
    with pytest.raises(BudgetError, match="only 3 labelled training case"):
        budget_cases(s, 4, 0)
    with pytest.raises(BudgetError, match="non-negative"):
        budget_cases(s, -1, 0)


def test_hash_test_rule_without_labels_ts(tmp_path):
    raw = _raw(tmp_path / "ds", n_train=10, with_test_folder=False)
    s = make_splits(raw, seeds=(0,))
    assert len(s["test"]) == 2 and len(s["train"]) == 8
    assert not set(s["test"]) & set(budget_cases(s, "all", 0))


def test_load_or_make_writes_extends_and_rebuilds(tmp_path):
    wd = Workdir(tmp_path / "work")
    _raw(wd.raw_dataset("ds"))
    s = load_or_make_splits(wd, "ds", budgets=(1, 2), seeds=(0,))
    path = wd.preprocessed("ds") / "splits.json"
    assert json.loads(path.read_text()) == s
    s2 = load_or_make_splits(wd, "ds", budgets=(4,), seeds=(5,))
    assert s2["budgets"] == [1, 2, 4] and set(s2["seeds"]) == {"0", "5"}
    assert s2["seeds"]["0"]["order"] == s["seeds"]["0"]["order"]
    # the raw dataset changed: the file is rebuilt
    shutil.rmtree(wd.raw_dataset("ds"))
    _raw(wd.raw_dataset("ds"), n_train=5)
    s3 = load_or_make_splits(wd, "ds", budgets=(1,), seeds=(0,))
    assert len(s3["train"]) == 5
