"""Exact, numba-accelerated segmentation metrics (definitions: ``METRICS.md``).

* overlap: :func:`dice`, :func:`iou` (both empty → NaN, one empty → 0);
* surface distances, 2D/3D, spacing-aware, float64: :func:`surface_distances`, :func:`hausdorff`,
  :func:`hd95` (``mode="max"`` = MONAI, ``"pooled"`` = medpy), :func:`assd`, :func:`nsd`, and
  :func:`surface_metrics` for all of them from one distance computation (both empty → NaN, one
  empty → inf);
* instance maps: :func:`instance_metrics` (AJI, AJI+, PQ, DQ, SQ, precision, recall, F1);
* aggregation with the leaderboard's failure rule: :func:`aggregate_with_failures`;
* folders: :func:`evaluate_folder` (``medseg-bench evaluate``).

Compiled kernels are cached on disk next to the modules (numba ``cache=True``); when that folder is
read-only numba falls back to its user cache dir, or set ``NUMBA_CACHE_DIR``.
"""

from ._aggregate import Aggregate, aggregate_with_failures, decode_value, encode_value, image_diagonal
from ._instance import INSTANCE_METRICS, instance_metrics, overlap_table
from ._overlap import dice, dice_iou_from_counts, iou, overlap_counts
from ._surface import (
    DEFAULT_NSD_TOLERANCE,
    HD95_MODES,
    SurfaceMetrics,
    assd,
    hausdorff,
    hd95,
    nsd,
    surface_distances,
    surface_metrics,
    surface_points,
)
from .evaluate import EvaluationError, evaluate_case, evaluate_folder, load_summary

__all__ = [
    "DEFAULT_NSD_TOLERANCE",
    "HD95_MODES",
    "INSTANCE_METRICS",
    "Aggregate",
    "EvaluationError",
    "SurfaceMetrics",
    "aggregate_with_failures",
    "assd",
    "decode_value",
    "dice",
    "dice_iou_from_counts",
    "encode_value",
    "evaluate_case",
    "evaluate_folder",
    "hausdorff",
    "hd95",
    "image_diagonal",
    "instance_metrics",
    "iou",
    "load_summary",
    "nsd",
    "overlap_counts",
    "overlap_table",
    "surface_distances",
    "surface_metrics",
    "surface_points",
]
