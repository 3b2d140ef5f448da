"""One case through the plan's preprocessing, and back: the functions training and inference share.

Forward (nnU-Net's order; Isensee et al., Nature Methods 2021): crop to the non-zero box (original
axis order) -> transpose (coarsest axis first) -> normalise -> resample to the configuration's
spacing. The returned properties hold everything needed to invert it exactly (:func:`export_to_original`):
resample back to the cropped shape, transpose back, re-pad the crop box with background.

Axis conventions of the properties: ``original_shape``, ``crop_bbox`` and ``shape_after_crop`` are in
the original numpy order; ``shape_after_resample`` and ``spacing_after_resample`` are in the
transposed order (the arrays' order). No label-derived content is stored in the properties.
"""

from __future__ import annotations

import numpy as np

from ..io import Geometry
from .crop import apply_crop, crop_to_nonzero, uncrop
from .normalise import normalise
from .resample import axis_orders, resample_array, resample_label, separate_axis, shape_for_spacing

__all__ = [
    "PREPROCESSING_VERSION",
    "export_to_original",
    "preprocess_case",
    "preprocess_instances",
    "preprocess_label",
]

#: bump when the arrays this module writes change for the same plan (invalidates cached cases)
PREPROCESSING_VERSION = 1


def _config(plans: dict, config: str) -> dict:
    try:
        return plans["configurations"][config]
    except KeyError:
        known = ", ".join(plans.get("configurations", {}))
        raise KeyError(f"configuration {config!r} is not in the plans of {plans.get('dataset')!r} (planned: {known})") from None


def _orders(cfg: dict, kind: str, ndim: int, axis: int | None) -> tuple[int, ...]:
    r = cfg["resampling"][kind]
    return axis_orders(ndim, int(r["order"]), axis, int(r.get("order_out_of_plane", 0)))


def preprocess_case(image: np.ndarray, geometry: Geometry, plans: dict, config: str) -> tuple[np.ndarray, dict]:
    """Crop, transpose, normalise and resample one image.

    Args:
        image: ``(C, *spatial)`` in numpy order, as :meth:`medseg_bench.io.Case.load_image` returns it.
        geometry: its geometry (spacing in numpy order).
        plans: the dataset's plans (``plans.json``).
        config: a configuration name in ``plans["configurations"]``.

    Returns:
        ``(array float32 (C, *resampled), properties)``; ``properties`` lacks ``case_id`` and
        ``subset``, which the caller adds.

    Raises:
        ValueError: the image's dimensionality or channel count does not match the plan.
    """
    cfg = _config(plans, config)
    image = np.asarray(image)
    spatial_ndim = image.ndim - 1
    if spatial_ndim != plans["dims"] or geometry.ndim != spatial_ndim:
        raise ValueError(f"image of shape {image.shape} ({geometry.ndim}D geometry) does not fit a {plans['dims']}D plan")
    if image.shape[0] != plans["num_channels"]:
        raise ValueError(f"image has {image.shape[0]} channels, the plan expects {plans['num_channels']}")
    tf = list(plans["transpose_forward"])
    cropped, bbox, mask = crop_to_nonzero(image)
    data = cropped.transpose([0] + [a + 1 for a in tf])
    mask = mask.transpose(tf)
    spacing_t = [geometry.spacing[a] for a in tf]
    target = [float(s) for s in cfg["spacing"]]
    data = normalise(data, cfg["normalization"], mask)
    new_shape = shape_for_spacing(data.shape[1:], spacing_t, target)
    axis = separate_axis(spacing_t, target, cfg["resampling"].get("anisotropy_threshold", 3.0))
    data = resample_array(data, new_shape, _orders(cfg, "data", spatial_ndim, axis))
    properties = {
        "original_shape": [int(s) for s in image.shape[1:]],
        "original_geometry": geometry.to_dict(),
        "crop_bbox": [[int(lo), int(hi)] for lo, hi in bbox],
        "shape_after_crop": [int(s) for s in cropped.shape[1:]],
        "shape_after_resample": [int(s) for s in data.shape[1:]],
        "spacing_after_resample": target,
        "transpose": tf,
        "out_of_plane_axis": axis,
        "configuration": config,
    }
    return data, properties


def _to_preprocessed(array: np.ndarray, properties: dict, cfg: dict, kind: str, dtype) -> np.ndarray:
    array = np.asarray(array)
    if list(array.shape) != list(properties["original_shape"]):
        raise ValueError(f"{kind} map of shape {array.shape} does not match the image shape {tuple(properties['original_shape'])}")
    tf = properties["transpose"]
    cropped = apply_crop(array, properties["crop_bbox"], channel_first=False).transpose(tf)
    orders = _orders(cfg, kind, cropped.ndim, properties.get("out_of_plane_axis"))
    return resample_label(cropped, properties["shape_after_resample"], orders, dtype=dtype)


def preprocess_label(label: np.ndarray, geometry: Geometry, plans: dict, config: str, properties: dict) -> np.ndarray:
    """The semantic label map ``(*spatial)`` in the preprocessed grid of its image (int16).

    ``properties`` are those :func:`preprocess_case` returned for the image; ``geometry`` is accepted
    for symmetry and checked against the image's spacing.
    """
    _check_geometry(geometry, properties)
    return _to_preprocessed(label, properties, _config(plans, config), "label", np.int16)


def preprocess_instances(instances: np.ndarray, geometry: Geometry, plans: dict, config: str, properties: dict) -> np.ndarray:
    """An instance map ``(*spatial)`` in the preprocessed grid (int32, nearest neighbour)."""
    _check_geometry(geometry, properties)
    return _to_preprocessed(instances, properties, _config(plans, config), "instances", np.int32)


def _check_geometry(geometry: Geometry | None, properties: dict) -> None:
    if geometry is None:
        return
    original = Geometry.from_dict(properties["original_geometry"])
    diff = original.differences(geometry)
    bad = [(name, a, b) for name, a, b in diff if name in ("spacing", "dimensionality")]
    if bad:
        raise ValueError("label geometry differs from its image: "
                         + "; ".join(f"{name} {b} vs image {a}" for name, a, b in bad))


def export_to_original(prediction: np.ndarray, properties: dict, plans: dict, config: str, is_probabilities: bool = False) -> np.ndarray:
    """Bring a prediction in the preprocessed grid back to the original image grid (exact inverse).

    Args:
        prediction: a label map ``(*shape_after_resample)`` (integer), or with ``is_probabilities``
            class probabilities ``(K, *shape_after_resample)``.
        properties: the case's properties from :func:`preprocess_case`.
        plans, config: the plan and configuration the case was preprocessed with.

    Returns:
        Label map ``(*original_shape)`` (the input's integer dtype, int16 for non-integer input) or
        float32 probabilities ``(K, *original_shape)``, numpy order of the original image; voxels
        outside the crop box are background (probability 1 for class 0).
    """
    cfg = _config(plans, config)
    tf = list(properties["transpose"])
    backward = list(np.argsort(tf))
    crop_shape_t = [properties["shape_after_crop"][a] for a in tf]
    axis = properties.get("out_of_plane_axis")
    prediction = np.asarray(prediction)
    ndim = len(crop_shape_t)
    if is_probabilities:
        if prediction.ndim != ndim + 1:
            raise ValueError(f"probabilities must be (K, *spatial) with {ndim} spatial axes, got {prediction.shape}")
        back = resample_array(prediction, crop_shape_t, _orders(cfg, "probabilities", ndim, axis))
        back = back.transpose([0] + [a + 1 for a in backward])
        fill = np.zeros(back.shape[0], dtype=np.float32)
        fill[0] = 1.0
        return uncrop(back, properties["crop_bbox"], properties["original_shape"], fill=fill, channel_first=True)
    if prediction.ndim != ndim:
        raise ValueError(f"label map must have {ndim} spatial axes, got shape {prediction.shape}")
    dtype = prediction.dtype if np.issubdtype(prediction.dtype, np.integer) else np.int16
    back = resample_label(prediction.astype(dtype, copy=False), crop_shape_t, _orders(cfg, "label", ndim, axis)).transpose(backward)
    return uncrop(np.ascontiguousarray(back), properties["crop_bbox"], properties["original_shape"], fill=0)
