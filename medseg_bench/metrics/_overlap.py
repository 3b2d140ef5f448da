"""Overlap metrics: Dice and IoU of binary masks (per class), from one counting pass (numba).

Dice = 2|A∩B| / (|A|+|B|), IoU = |A∩B| / |A∪B| (see ``METRICS.md``). Both masks empty → NaN
(excluded from means, counted); exactly one empty → 0.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ._parallel import pick, variants

__all__ = ["dice", "dice_iou_from_counts", "iou", "overlap_counts"]


def _counts_kernel(a, b):
    n = a.shape[0]
    chunk = 1 << 16
    nchunks = (n + chunk - 1) // chunk
    ca = np.zeros(nchunks, np.int64)
    cb = np.zeros(nchunks, np.int64)
    cab = np.zeros(nchunks, np.int64)
    for c in prange(nchunks):
        s0 = 0
        s1 = 0
        s2 = 0
        for i in range(c * chunk, min(n, (c + 1) * chunk)):
            x = a[i]
            y = b[i]
            s0 += x
            s1 += y
            s2 += x & y
        ca[c] = s0
        cb[c] = s1
        cab[c] = s2
    return ca.sum(), cb.sum(), cab.sum()


_COUNTS = variants(_counts_kernel)


def _flat_mask(x) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype != np.bool_:
        a = a != 0
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8)


def overlap_counts(pred, ref) -> tuple[int, int, int]:
    """Voxel counts ``(|pred|, |ref|, |pred ∩ ref|)`` of two same-shape masks (nonzero = foreground)."""
    if np.shape(pred) != np.shape(ref):
        raise ValueError(f"pred and ref shapes differ: {np.shape(pred)} vs {np.shape(ref)}")
    a = _flat_mask(pred)
    b = _flat_mask(ref)
    n_a, n_b, n_ab = pick(_COUNTS, a.size)(a, b)
    return int(n_a), int(n_b), int(n_ab)


def dice_iou_from_counts(n_pred: int, n_ref: int, n_inter: int) -> tuple[float, float]:
    """Dice and IoU from voxel counts; ``(nan, nan)`` when both masks are empty."""
    if n_pred + n_ref == 0:
        return math.nan, math.nan
    return 2.0 * n_inter / (n_pred + n_ref), n_inter / (n_pred + n_ref - n_inter)


def dice(pred, ref) -> float:
    """Dice coefficient of two masks of the same shape (nonzero = foreground).

    Returns:
        float in [0, 1]; NaN when both masks are empty, 0 when exactly one is.
    """
    return dice_iou_from_counts(*overlap_counts(pred, ref))[0]


def iou(pred, ref) -> float:
    """Intersection over union (Jaccard) of two masks; NaN when both are empty, 0 when one is."""
    return dice_iou_from_counts(*overlap_counts(pred, ref))[1]
