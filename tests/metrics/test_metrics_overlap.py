"""Dice/IoU and the aggregation rule for inf/NaN."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medseg_bench.metrics import (
    aggregate_with_failures,
    decode_value,
    dice,
    encode_value,
    image_diagonal,
    iou,
    overlap_counts,
)


@pytest.mark.parametrize("shape", [(7, 9), (5, 6, 7), (300, 1000)])
def test_dice_iou_match_numpy(shape):
    rng = np.random.default_rng(0)
    a = rng.random(shape) < 0.3
    b = rng.random(shape) < 0.4
    inter, sa, sb = np.sum(a & b), a.sum(), b.sum()
    assert overlap_counts(a, b) == (sa, sb, inter)
    assert dice(a, b) == pytest.approx(2 * inter / (sa + sb), rel=1e-15)
    assert iou(a, b) == pytest.approx(inter / np.sum(a | b), rel=1e-15)
    assert dice(a.astype(np.uint8) * 4, b) == dice(a, b)  # nonzero = foreground


def test_empty_conventions():
    z = np.zeros((4, 4), bool)
    o = z.copy()
    o[1, 1] = True
    assert math.isnan(dice(z, z)) and math.isnan(iou(z, z))
    assert dice(z, o) == 0.0 and iou(o, z) == 0.0
    assert dice(o, o) == 1.0
    with pytest.raises(ValueError, match="shapes differ"):
        dice(z, np.zeros((4, 5)))


def test_aggregate_with_failures():
    agg = aggregate_with_failures([1.0, math.inf, math.nan, 3.0], diagonal=[10.0, 20.0, 30.0, 40.0])
    assert (agg.mean, agg.n, agg.n_inf, agg.n_nan) == (pytest.approx(8.0), 3, 1, 1)
    assert aggregate_with_failures(["inf", 2.0], diagonal=6.0).mean == 4.0  # JSON strings accepted
    assert math.isnan(aggregate_with_failures([math.nan]).mean)
    with pytest.raises(ValueError, match="diagonal"):
        aggregate_with_failures([math.inf])
    assert image_diagonal((3, 4)) == 5.0
    assert image_diagonal((3, 4), (2.0, 0.5)) == pytest.approx(math.sqrt(36 + 4))


def test_json_encoding_roundtrip():
    for v in (1.5, 0, math.inf, -math.inf):
        assert decode_value(encode_value(v)) == v
    assert encode_value(math.nan) == "nan" and math.isnan(decode_value("nan"))
    assert encode_value(np.float32(2.5)) == 2.5 and encode_value(np.int64(3)) == 3
