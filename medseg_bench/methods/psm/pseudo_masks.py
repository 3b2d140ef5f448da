"""PSM stage 3: the "semantic-guided generator" — activation map + RGB image -> binary nuclei pseudo-mask.

Follows the follow-up's code (``pytorch_grad_cam/utils/image.py::sgg`` and ``psm.py``):

1. the activation map ``a`` (H, W) in [0, 1] is quantised to 8 bits and colour-mapped with *jet*;
2. the colour-mapped map and the RGB image (in [0, 1]) are added: ``f = heat + beta * rgb``;
3. k-means with 3 clusters on the pixel colours ``f`` (scaled by 255, as the code);
4. **colour prior**: the cluster whose mean of channels 0 + 1 of ``f`` is lowest is the nuclei
   cluster. The code builds ``heat`` with OpenCV, i.e. in **BGR** order, and adds it to an **RGB**
   image, so channel 0 + 1 = (heat blue + heat green) + (image red + image green): high activation
   (jet's red end has no blue or green) on a dark, haematoxylin-stained pixel (low red and green).
   ``heat_order="bgr"`` (default) reproduces that pairing; ``"rgb"`` adds the map in RGB order
   (channel 0 + 1 = red + green of both), for comparison;
5. objects smaller than ``min_object_px`` pixels are removed and holes smaller than ``max_hole_px``
   filled (the code: ``skimage.morphology.remove_small_objects(mask, 200)`` and
   ``remove_small_holes(mask)`` with its default 64 px), both 4-connected.

Sizes in pixels are those of the code on MoNuSeg (40×, about 0.25 µm per pixel); for another pixel
spacing :func:`scale_factor` converts them (areas scale with the square of the factor).

Cost choices (ours): k-means is fitted on at most ``max_fit_pixels`` pixels drawn at random (the
code fits every pixel of a 512 × 512 crop; a 1000 × 1000 tile has 4 times as many) and then assigns
every pixel to its nearest centre; 10 initialisations and at most 20 iterations as the code's
``cv2.kmeans(..., criteria=(EPS + MAX_ITER, 20, 0.5), attempts=10)``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = [
    "REFERENCE_SPACING_MM",
    "cluster_colours",
    "colour_prior_cluster",
    "fill_small_holes",
    "jet",
    "pseudo_mask",
    "remove_small_objects",
    "scale_factor",
]

#: pixel size (mm) at which the code's pixel constants hold: MoNuSeg's 40× tiles, ~0.25 µm per pixel
REFERENCE_SPACING_MM = 0.00025

# matplotlib's "jet" segment data (x, value) per channel, which OpenCV's COLORMAP_JET approximates
_JET = {
    "r": ((0.0, 0.0), (0.35, 0.0), (0.66, 1.0), (0.89, 1.0), (1.0, 0.5)),
    "g": ((0.0, 0.0), (0.125, 0.0), (0.375, 1.0), (0.64, 1.0), (0.91, 0.0), (1.0, 0.0)),
    "b": ((0.0, 0.5), (0.11, 1.0), (0.34, 1.0), (0.65, 0.0), (1.0, 0.0)),
}


def jet(values: np.ndarray) -> np.ndarray:
    """RGB colours ``(*shape, 3)`` float32 in [0, 1] of ``values`` in [0, 1] (quantised to 256 levels
    as an 8-bit colour map): 0 = dark blue, 0.5 = green/cyan, 1 = dark red."""
    v = np.round(np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0) * 255.0) / 255.0
    out = [np.interp(v, [p[0] for p in _JET[c]], [p[1] for p in _JET[c]]) for c in "rgb"]
    return np.stack(out, axis=-1).astype(np.float32)


def scale_factor(spacing_mm, reference_mm: float = REFERENCE_SPACING_MM) -> float:
    """Lengths in pixels at ``reference_mm`` per pixel times this = lengths at ``spacing_mm``.

    ``spacing_mm``: the in-plane pixel size (a number or the per-axis spacing; the finest axis is
    used). A spacing that cannot be a microscope's (None, <= 0, or above 0.01 mm = 10 µm per pixel,
    e.g. the default spacing 1 of a dataset without one) is taken as the reference (factor 1).
    """
    if spacing_mm is None:
        return 1.0
    s = float(np.min(np.asarray(spacing_mm, dtype=float)))
    if not np.isfinite(s) or s <= 0 or s > 0.01:
        return 1.0
    return float(reference_mm / s)


def remove_small_objects(mask: np.ndarray, min_px: int) -> np.ndarray:
    """``mask`` without its 4-connected components of fewer than ``min_px`` pixels."""
    mask = np.asarray(mask, dtype=bool)
    if min_px <= 1 or not mask.any():
        return mask.copy()
    lab, n = ndimage.label(mask)
    sizes = np.bincount(lab.ravel())
    keep = sizes >= int(min_px)
    keep[0] = False
    return keep[lab]


def fill_small_holes(mask: np.ndarray, max_hole_px: int) -> np.ndarray:
    """``mask`` with every 4-connected background component of fewer than ``max_hole_px`` pixels
    filled (as ``skimage.morphology.remove_small_holes``: a component on the image border counts too)."""
    mask = np.asarray(mask, dtype=bool)
    return ~remove_small_objects(~mask, max_hole_px)


def cluster_colours(features: np.ndarray, k: int = 3, seed: int = 0, max_fit_pixels: int = 65536,
                    n_init: int = 10, max_iter: int = 20) -> np.ndarray:
    """k-means cluster index ``(H, W)`` int of pixel feature vectors ``features`` ``(H, W, F)``."""
    from sklearn.cluster import KMeans

    h, w, f = features.shape
    flat = features.reshape(-1, f).astype(np.float64)
    rng = np.random.default_rng(seed)
    fit = flat if len(flat) <= max_fit_pixels else flat[rng.choice(len(flat), max_fit_pixels, replace=False)]
    k_eff = max(1, min(k, len(np.unique(fit, axis=0))))  # fewer distinct colours than clusters
    km = KMeans(n_clusters=k_eff, n_init=n_init, max_iter=max_iter, random_state=seed).fit(fit)
    return km.predict(flat).reshape(h, w)


def colour_prior_cluster(features: np.ndarray, clusters: np.ndarray, channels=(0, 1)) -> int:
    """The cluster id whose pixels have the lowest mean of ``features[..., channels]`` summed (the
    nuclei cluster: see the module docstring). Ties go to the smaller id; empty clusters never win."""
    score = features[..., list(channels)].sum(axis=-1)
    ids = np.unique(clusters)
    means = [float(score[clusters == c].mean()) for c in ids]
    return int(ids[int(np.argmin(means))])


def pseudo_mask(activation: np.ndarray, rgb: np.ndarray, beta: float = 1.0, heat_order: str = "bgr",
                min_object_px: int = 200, max_hole_px: int = 64, seed: int = 0, max_fit_pixels: int = 65536) -> np.ndarray:
    """Binary nuclei pseudo-mask ``(H, W)`` bool from an activation map and its RGB image.

    Args:
        activation: ``(H, W)`` in [0, 1] (e.g. :func:`~.activation.grad_cam`).
        rgb: ``(3, H, W)`` or ``(H, W, 3)`` in [0, 1] (the suite's ``rgb01`` normalisation).
        beta: weight of the image in the sum (the code: 1).
        heat_order: ``"bgr"`` (the code's OpenCV channel order) or ``"rgb"``.
        min_object_px, max_hole_px: clean-up sizes in pixels (see :func:`scale_factor`).
        seed: k-means seed. max_fit_pixels: pixels k-means is fitted on.

    Raises:
        ValueError: shapes that do not match, or an unknown ``heat_order``.
    """
    rgb = np.asarray(rgb, dtype=np.float32)
    if rgb.ndim == 3 and rgb.shape[0] == 3 and rgb.shape[-1] != 3:
        rgb = np.moveaxis(rgb, 0, -1)
    act = np.asarray(activation, dtype=np.float32)
    if rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.shape[:2] != act.shape:
        raise ValueError(f"pseudo_mask: activation {act.shape} and RGB image {rgb.shape} do not match")
    if heat_order not in ("bgr", "rgb"):
        raise ValueError(f"heat_order must be 'bgr' or 'rgb', got {heat_order!r}")
    heat = jet(act)
    if heat_order == "bgr":
        heat = heat[..., ::-1]
    features = 255.0 * (heat + float(beta) * np.clip(rgb, 0.0, 1.0))
    clusters = cluster_colours(features, 3, seed=seed, max_fit_pixels=max_fit_pixels)
    mask = clusters == colour_prior_cluster(features, clusters)
    return fill_small_holes(remove_small_objects(mask, min_object_px), max_hole_px)
