"""Cropping to the non-zero region and its exact inverse.

nnU-Net (Isensee et al., Nature Methods 2021) crops every case to the bounding box of its non-zero
voxels before anything else: it removes the zero padding of skull-stripped MRI or of scanner fields of
view without touching content. The non-zero mask is the union over channels of ``image != 0`` with
holes filled (so dark structures inside the object are never treated as outside). CT is rarely cropped
(air is about -1000 HU, not 0).
"""

from __future__ import annotations

import numpy as np

__all__ = ["nonzero_mask", "bbox_of_mask", "crop_to_nonzero", "apply_crop", "uncrop"]


def nonzero_mask(image: np.ndarray) -> np.ndarray:
    """Boolean ``(*spatial)`` mask of voxels where any channel of ``image (C, *spatial)`` is non-zero,
    holes filled."""
    from scipy import ndimage

    mask = np.any(image != 0, axis=0)
    if mask.all() or not mask.any():
        return mask
    return ndimage.binary_fill_holes(mask)


def bbox_of_mask(mask: np.ndarray) -> list[list[int]]:
    """``[[lo, hi), ...]`` per axis of the True voxels (half-open, voxels); the whole array when empty."""
    bbox = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other)) if other else np.flatnonzero(mask)
        if hit.size == 0:
            return [[0, s] for s in mask.shape]
        bbox.append([int(hit[0]), int(hit[-1]) + 1])
    return bbox


def apply_crop(array: np.ndarray, bbox, channel_first: bool = True) -> np.ndarray:
    """Crop ``array`` (``(C, *spatial)`` when ``channel_first`` else ``(*spatial)``) to ``bbox``."""
    sl = tuple(slice(lo, hi) for lo, hi in bbox)
    return array[(slice(None),) + sl] if channel_first else array[sl]


def crop_to_nonzero(image: np.ndarray) -> tuple[np.ndarray, list[list[int]], np.ndarray]:
    """Crop ``image (C, *spatial)`` to its non-zero bounding box.

    Returns:
        ``(cropped (C, *cropped_spatial), bbox [[lo, hi), ...], mask)`` where ``mask`` is the
        non-zero mask restricted to the box (used by masked z-score normalisation).
    """
    mask = nonzero_mask(image)
    bbox = bbox_of_mask(mask)
    return apply_crop(image, bbox), bbox, apply_crop(mask, bbox, channel_first=False)


def uncrop(array: np.ndarray, bbox, original_shape, fill=0, channel_first: bool = False) -> np.ndarray:
    """Place ``array`` back into a ``original_shape`` array filled with ``fill`` at ``bbox``.

    Args:
        array: ``(*cropped)`` or ``(C, *cropped)`` when ``channel_first``.
        bbox: the box used by :func:`crop_to_nonzero`.
        original_shape: spatial shape before cropping.
        fill: background value; for ``channel_first`` a per-channel sequence is allowed (e.g. 1 for the
            background probability, 0 for the others).
    """
    spatial = tuple(int(s) for s in original_shape)
    expected = tuple(hi - lo for lo, hi in bbox)
    got = array.shape[1:] if channel_first else array.shape
    if tuple(got) != expected:
        raise ValueError(f"array of spatial shape {tuple(got)} does not fit crop box {bbox} (needs {expected})")
    sl = tuple(slice(lo, hi) for lo, hi in bbox)
    if channel_first:
        out = np.empty((array.shape[0],) + spatial, dtype=array.dtype)
        fills = np.broadcast_to(np.asarray(fill, dtype=array.dtype), (array.shape[0],))
        for c in range(array.shape[0]):
            out[c] = fills[c]
        out[(slice(None),) + sl] = array
    else:
        out = np.full(spatial, fill, dtype=array.dtype)
        out[sl] = array
    return out
