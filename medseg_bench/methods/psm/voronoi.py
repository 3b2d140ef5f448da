"""PSM stage 4: detection peaks -> nucleus points -> Voronoi partition labels.

As the follow-up's code (``utils/generate_point_label.py::peak_point`` and
``utils/generate_voronoi.py::create_Voronoi_label``, after Qu et al., "Weakly Supervised Deep Nuclei
Segmentation using Points Annotation in Histopathology Images", MIDL 2019):

* :func:`detect_points` — the detection network's nucleus probability is smoothed with a Gaussian
  (the code: 13 × 13 OpenCV kernel, sigma 2.3 px), values below ``threshold`` set to 0, local maxima
  at least ``min_distance`` px apart found (``skimage.feature.peak_local_max``, border margin
  ``min_distance // 2``), and maxima closer than ``merge_distance`` px (city-block) to a maximum
  already grouped join that group; each group's mean position is one nucleus point. The code calls it
  with ``merge_distance`` 20 and a second threshold 0.6 that only shapes a background map it does not
  use for the points, so the points' threshold is the 0.5 of its first step.
* :func:`voronoi_labels` — every pixel belongs to its nearest point's cell (the exact Euclidean
  Voronoi partition of the pixel grid); the cell edges are labelled **background** (0): ``edge_width``
  px wide, the code's 2 px (its per-cell erosion marks both sides of a boundary) at its 0.25 µm
  pixels, scaled to the plan's pixel size like every other pixel constant — at 0.5 µm pixels one
  side of the boundary (1 px). Not scaling it doubled the edges' physical width and, with points
  shrunk to scale, made edges 19× more pixels than points on ``nuclei_he_small`` (the stage-5
  collapse noted in ``README.md``). The points dilated by a disk of ``point_radius`` px are
  **nucleus** (1) and win over edges; every other pixel is **ignored** (2).

All sizes are pixels; :func:`~.pseudo_masks.scale_factor` converts the code's MoNuSeg values.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["IGNORE", "detect_points", "voronoi_labels", "voronoi_regions"]

#: label value of pixels a Voronoi label says nothing about
IGNORE = 2


def detect_points(probability: np.ndarray, threshold: float = 0.5, min_distance: int = 6, merge_distance: float = 20.0,
                  sigma: float = 2.3) -> np.ndarray:
    """Nucleus points ``(N, 2)`` int (row, col) from a probability map ``(H, W)`` in [0, 1].

    Args:
        probability: the detection network's nucleus probability.
        threshold: smoothed values below it cannot be peaks.
        min_distance: ``peak_local_max``'s minimum distance between peaks (px).
        merge_distance: peaks closer than this (city-block, px) to a member of a group join it.
        sigma: Gaussian smoothing (px); 0 = none.
    """
    from skimage.feature import peak_local_max

    p = np.asarray(probability, dtype=np.float32)
    if sigma > 0:
        p = ndimage.gaussian_filter(p, float(sigma), truncate=2.6)  # radius 2.6 sigma: the code's 13 x 13 at 2.3
    p = np.where(p < threshold, 0.0, p)
    if not (p > 0).any():
        return np.zeros((0, 2), np.int64)
    md = max(1, int(round(min_distance)))
    peaks = peak_local_max(p, min_distance=md, exclude_border=md // 2 if md >= 2 else False)
    groups: list[list[np.ndarray]] = []
    for q in peaks:  # strongest first (peak_local_max sorts by value)
        for g in groups:
            if any(np.abs(q - m).sum() < merge_distance for m in g):
                g.append(q)
                break
        else:
            groups.append([q])
    return np.array([np.mean(g, axis=0) for g in groups]).astype(np.int64).reshape(-1, 2)


def voronoi_regions(points: np.ndarray, shape) -> np.ndarray:
    """Cell index ``(H, W)`` int (0..N-1) of the nearest point of every pixel (ties: the point that
    the Euclidean distance transform finds first). Raises ValueError without points."""
    pts = np.asarray(points, dtype=np.int64).reshape(-1, 2)
    if len(pts) == 0:
        raise ValueError("voronoi_regions needs at least one point")
    h, w = int(shape[0]), int(shape[1])
    pts = np.clip(pts, 0, [h - 1, w - 1])
    seeds = np.full((h, w), -1, np.int64)
    seeds[pts[:, 0], pts[:, 1]] = np.arange(len(pts))
    _, (iy, ix) = ndimage.distance_transform_edt(seeds < 0, return_indices=True)
    return seeds[iy, ix]


def voronoi_labels(points: np.ndarray, shape, point_radius: float = 2.0, edge_width: float = 2.0) -> np.ndarray:
    """Voronoi label ``(H, W)`` uint8: 0 = cell edge (background), 1 = dilated point (nucleus),
    2 = :data:`IGNORE`. No points: everything ignored; one point: no edges.

    ``edge_width`` (px, rounded, at least 1): 1 = the pixel before each boundary along rows and
    columns (one side), 2 = both sides (the code at its pixel size), ``w > 2`` = the 2-px band
    dilated by ``(w - 2) // 2`` px."""
    h, w = int(shape[0]), int(shape[1])
    out = np.full((h, w), IGNORE, np.uint8)
    pts = np.asarray(points, dtype=np.int64).reshape(-1, 2)
    if len(pts) == 0:
        return out
    regions = voronoi_regions(pts, (h, w))
    width = max(1, int(round(float(edge_width))))
    edge = np.zeros((h, w), bool)
    dv = regions[1:, :] != regions[:-1, :]
    dh = regions[:, 1:] != regions[:, :-1]
    edge[:-1, :] |= dv
    edge[:, :-1] |= dh
    if width >= 2:
        edge[1:, :] |= dv
        edge[:, 1:] |= dh
    if width > 2:
        edge = ndimage.binary_dilation(edge, iterations=(width - 2) // 2)
    out[edge] = 0
    point_mask = np.zeros((h, w), bool)
    pts = np.clip(pts, 0, [h - 1, w - 1])
    point_mask[pts[:, 0], pts[:, 1]] = True
    r = max(0.0, float(point_radius))
    if r >= 1:
        ri = int(np.floor(r))
        yy, xx = np.mgrid[-ri:ri + 1, -ri:ri + 1]
        point_mask = ndimage.binary_dilation(point_mask, structure=(yy ** 2 + xx ** 2) <= r * r)
    out[point_mask] = 1
    return out
