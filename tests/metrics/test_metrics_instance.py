"""Instance metrics against a straightforward hover_net-style reference (explicit per-instance masks)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _metrics_reference import ref_instance_metrics
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from medseg_bench.metrics import instance_metrics, overlap_table
from medseg_bench.metrics._instance import _unique_pairs

KEYS = ("aji", "pq", "dq", "sq")


def _ellipses(shape, n, rng, rmin=2.0, rmax=6.0, id_max=10_000):
    m = np.zeros(shape, np.int64)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    ids = rng.choice(np.arange(1, id_max), n, replace=False)  # non-contiguous ids
    for k in range(n):
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        ry, rx = rng.uniform(rmin, rmax, 2)
        m[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = ids[k]  # later ones overwrite: overlaps
    return m


def _scenarios(seed):
    rng = np.random.default_rng(seed)
    shape = (48, 56)
    ref = _ellipses(shape, 14, rng)
    yield "random_vs_random", _ellipses(shape, 16, rng), ref
    yield "shifted", np.roll(ref, (1, -2), axis=(0, 1)), ref
    split = ref.copy()  # every instance cut in two along a column
    for i in np.unique(ref)[1:]:
        ys, xs = np.nonzero(ref == i)
        split[(ref == i) & (np.arange(shape[1])[None, :] > np.median(xs))] = i + 50_000
    yield "splits", split, ref
    merged = ref.copy()
    ids = np.unique(ref)[1:]
    for a, b in zip(ids[::2], ids[1::2]):
        merged[ref == b] = a
    yield "merges", merged, ref
    yield "relabelled", np.where(ref > 0, ref * 7 + 3, 0), ref  # same instances, other ids
    noisy = ref.copy()
    noisy[rng.random(shape) < 0.1] = 0
    noisy[rng.random(shape) < 0.02] = 999_999
    yield "noisy_with_fp", noisy, ref
    yield "large_ids", np.where(ref > 0, ref + 2**40, 0), ref  # ids beyond the lookup-table range


def _check(pred, ref, name):
    ours = instance_metrics(pred, ref)
    exp = ref_instance_metrics(pred, ref)
    for k in KEYS:
        assert ours[k] == pytest.approx(exp[k], rel=1e-12, abs=1e-15), f"{name}: {k}"
    for k in ("tp", "fp", "fn"):
        assert ours[k] == exp[k], f"{name}: {k}"
    assert ours["f1"] == ours["dq"]
    n_pred, n_ref = exp["tp"] + exp["fp"], exp["tp"] + exp["fn"]
    assert ours["precision"] == (pytest.approx(exp["tp"] / n_pred) if n_pred else 0.0)
    assert ours["recall"] == (pytest.approx(exp["tp"] / n_ref) if n_ref else 0.0)
    if ours["aji_plus"] != pytest.approx(exp["aji_plus"], rel=1e-12):
        # several optimal unique pairings may exist; ours must be one of them
        rid, pid, ar, ap, (ri, pi, inter) = overlap_table(pred, ref)
        iou = inter / (ar[ri] + ap[pi] - inter)
        e = _unique_pairs(rid.size, pid.size, ri, pi, iou)
        assert iou[e].sum() == pytest.approx(exp["aji_plus_total_iou"], rel=1e-12), name


@pytest.mark.parametrize("seed", range(4))
def test_matches_reference(seed):
    for name, pred, ref in _scenarios(seed):
        _check(pred, ref, name)


def test_identity_and_empty():
    ref = np.zeros((10, 10), np.uint16)
    ref[1:4, 1:4] = 5
    ref[6:9, 6:9] = 300
    m = instance_metrics(ref, ref)
    assert all(m[k] == 1.0 for k in ("aji", "aji_plus", "pq", "dq", "sq", "precision", "recall", "f1"))
    empty = np.zeros_like(ref)
    assert all(math.isnan(v) for k, v in instance_metrics(empty, empty).items() if k in KEYS)
    for a, b in ((empty, ref), (ref, empty)):
        m = instance_metrics(a, b)
        assert all(m[k] == 0.0 for k in ("aji", "aji_plus", "pq", "dq", "sq", "precision", "recall", "f1"))


def test_known_values():
    ref = np.zeros((1, 10), int)
    ref[0, 0:4] = 1
    ref[0, 6:10] = 2
    pred = np.zeros((1, 10), int)
    pred[0, 0:3] = 9  # IoU 3/4 with 1
    pred[0, 5:8] = 4  # IoU 2/5 with 2 (not a PQ match)
    m = instance_metrics(pred, ref)
    assert m["aji"] == pytest.approx((3 + 2) / (4 + 5))
    assert (m["tp"], m["fp"], m["fn"]) == (1, 1, 1)
    assert (
        m["sq"] == pytest.approx(0.75) and m["dq"] == pytest.approx(0.5) and m["pq"] == pytest.approx(0.375)
    )


def test_validation():
    with pytest.raises(ValueError, match="shapes differ"):
        instance_metrics(np.zeros((3, 3), int), np.zeros((3, 4), int))
    with pytest.raises(ValueError, match="non-negative"):
        instance_metrics(-np.ones((3, 3), int), np.zeros((3, 3), int))
    with pytest.raises(ValueError, match="integers"):
        instance_metrics(np.full((3, 3), 0.5), np.zeros((3, 3), int))
    with pytest.raises(ValueError, match="match_iou"):
        instance_metrics(np.zeros((3, 3), int), np.zeros((3, 3), int), match_iou=0.3)


def test_sparse_overlap_table_path(monkeypatch):
    """Many instances: the overlap table switches to the sparse path; results must not change."""
    from medseg_bench.metrics import _instance

    rng = np.random.default_rng(3)
    ref = _ellipses((64, 64), 40, rng)
    pred = _ellipses((64, 64), 45, rng)
    dense = instance_metrics(pred, ref)
    monkeypatch.setattr(_instance, "_DENSE_TABLE_MAX", 0)
    sparse = instance_metrics(pred, ref)
    assert dense == sparse


@settings(max_examples=80, deadline=None)
@given(
    pred=arrays(
        np.int64, st.tuples(st.integers(1, 8), st.integers(1, 8)), elements=st.sampled_from([0, 1, 2, 7, 40])
    ),
    ref=arrays(
        np.int64, st.tuples(st.integers(1, 8), st.integers(1, 8)), elements=st.sampled_from([0, 3, 5, 9])
    ),
)
def test_property_matches_reference(pred, ref):
    h, w = min(pred.shape[0], ref.shape[0]), min(pred.shape[1], ref.shape[1])
    pred, ref = pred[:h, :w], ref[:h, :w]
    ours = instance_metrics(pred, ref)
    if np.any(ref) or np.any(pred):
        _check(pred, ref, "hypothesis")
    else:
        assert math.isnan(ours["aji"])
    for k in ("aji", "aji_plus", "pq", "dq", "sq"):
        assert math.isnan(ours[k]) or 0.0 <= ours[k] <= 1.0
