"""The batchgenerators augmentation pipeline built from a plan's ``augmentation`` block.

nnU-Net v2's default training transforms (Isensee et al., Nature Methods 2021;
``get_training_transforms``) with their parameters read from the plan
(:func:`medseg_bench.planning.presets.augmentation_params` writes them), so a preset can switch parts
off. Recognised keys (every block optional; a missing block disables that transform)::

    initial_patch_size: [..]   region cut before the spatial transform (rotation/zoom margin)
    spatial: {p_rotation, rotation: {x: [lo, hi], y: [..], z: [..]} (radians), p_scale, scale: [lo, hi],
              independent_scale_for_each_axis, elastic, order_data, order_seg}
    gaussian_noise: {p, variance: [lo, hi]}
    gaussian_blur: {p, p_per_channel, sigma: [lo, hi]}
    brightness_multiplicative: {p, range}
    contrast: {p, range}
    low_resolution: {p, p_per_channel, zoom: [lo, hi], ignore_axes: [..]}
    gamma: [{p, range, invert_image, retain_stats}, ...]
    mirror_axes: [axes]        spatial axes of the patch flipped with p 0.5 each

Deviation from nnU-Net: outside the image the label is background (0), not an ignore value (-1),
because the Dice + CE loss here has no ignore label. The transforms use numpy's global random state;
:class:`medseg_bench.data.loader.BatchStream` swaps in its own state around every batch so that each
stream is deterministic and checkpointable.
"""

from __future__ import annotations

import math

__all__ = ["build_transforms", "sample_size_for"]


def _pair(v) -> tuple[float, float]:
    lo, hi = (float(x) for x in v)
    return lo, hi


def _rotation(spatial: dict) -> dict | None:
    rot = spatial.get("rotation")
    if not rot or not spatial.get("p_rotation", 0):
        return None
    out = {ax: _pair(rot.get(ax, (0.0, 0.0))) for ax in ("x", "y", "z")}
    return out if any(r != (0.0, 0.0) for r in out.values()) else None


def _scale(spatial: dict):
    s = spatial.get("scale")
    if not s or not spatial.get("p_scale", 0):
        return None
    s = _pair(s)
    return None if s == (1.0, 1.0) else s


def _does_spatial(aug: dict) -> bool:
    spatial = aug.get("spatial") or {}
    return bool(_rotation(spatial) or _scale(spatial) or spatial.get("elastic"))


def sample_size_for(patch_size, aug: dict | None) -> list[int]:
    """Size of the region cut from a case before the spatial transform: the plan's
    ``initial_patch_size`` when it fits the patch's dimensionality, else a rotation margin
    (nnU-Net's ``get_patch_size``), else the patch itself when no spatial transform runs."""
    patch = [int(p) for p in patch_size]
    aug = aug or {}
    if not _does_spatial(aug):
        return patch
    initial = aug.get("initial_patch_size")
    if initial and len(initial) == len(patch):
        return [max(int(i), p) for i, p in zip(initial, patch)]
    rot = _rotation(aug["spatial"]) or {"x": (0.0, 0.0)}
    theta = min(max(abs(v) for r in rot.values() for v in r), math.pi / 4)
    factor = (math.cos(theta) + math.sin(theta)) / min(1.0, (_scale(aug["spatial"]) or (1.0, 1.0))[0])
    return [int(math.ceil(p * factor)) for p in patch]


def build_transforms(aug: dict | None, patch_size):
    """A batchgenerators ``Compose`` producing ``patch_size`` patches (2 or 3 spatial axes), or None
    when the block asks for nothing. Inputs: ``data`` ``(B, C, *sample_size)`` and, for labelled
    streams, ``seg`` ``(B, 1, *sample_size)`` (every transform tolerates its absence)."""
    from batchgenerators.transforms.abstract_transforms import Compose
    from batchgenerators.transforms.color_transforms import (
        BrightnessMultiplicativeTransform,
        ContrastAugmentationTransform,
        GammaTransform,
    )
    from batchgenerators.transforms.noise_transforms import GaussianBlurTransform, GaussianNoiseTransform
    from batchgenerators.transforms.resample_transforms import SimulateLowResolutionTransform
    from batchgenerators.transforms.spatial_transforms import MirrorTransform, SpatialTransform

    aug = dict(aug or {})
    dims = len(patch_size)
    transforms = []
    if _does_spatial(aug):
        sp = aug["spatial"]
        rot, scale = _rotation(sp), _scale(sp)
        rot = rot or {"x": (0.0, 0.0), "y": (0.0, 0.0), "z": (0.0, 0.0)}
        transforms.append(SpatialTransform(
            list(patch_size), patch_center_dist_from_border=None,
            do_elastic_deform=bool(sp.get("elastic")), alpha=(0.0, 200.0), sigma=(9.0, 13.0),
            do_rotation=_rotation(sp) is not None, angle_x=rot["x"],
            angle_y=rot["y"] if dims == 3 else (0.0, 0.0), angle_z=rot["z"] if dims == 3 else (0.0, 0.0),
            do_scale=scale is not None, scale=scale or (1.0, 1.0),
            border_mode_data="constant", border_cval_data=0, order_data=int(sp.get("order_data", 3)),
            border_mode_seg="constant", border_cval_seg=0, order_seg=int(sp.get("order_seg", 0)),
            random_crop=False, p_el_per_sample=float(sp.get("p_elastic", 0.2)),
            p_scale_per_sample=float(sp.get("p_scale", 0.2)), p_rot_per_sample=float(sp.get("p_rotation", 0.2)),
            independent_scale_for_each_axis=bool(sp.get("independent_scale_for_each_axis", False)),
        ))
    if aug.get("gaussian_noise"):
        g = aug["gaussian_noise"]
        transforms.append(GaussianNoiseTransform(_pair(g["variance"]), p_per_sample=float(g.get("p", 0.1))))
    if aug.get("gaussian_blur"):
        g = aug["gaussian_blur"]
        transforms.append(GaussianBlurTransform(_pair(g["sigma"]), different_sigma_per_channel=True,
                                                p_per_sample=float(g.get("p", 0.2)), p_per_channel=float(g.get("p_per_channel", 0.5))))
    if aug.get("brightness_multiplicative"):
        g = aug["brightness_multiplicative"]
        transforms.append(BrightnessMultiplicativeTransform(_pair(g["range"]), p_per_sample=float(g.get("p", 0.15))))
    if aug.get("contrast"):
        g = aug["contrast"]
        transforms.append(ContrastAugmentationTransform(_pair(g["range"]), p_per_sample=float(g.get("p", 0.15))))
    if aug.get("low_resolution"):
        g = aug["low_resolution"]
        ignore = [int(a) for a in g.get("ignore_axes") or [] if int(a) < dims] or None
        transforms.append(SimulateLowResolutionTransform(_pair(g["zoom"]), per_channel=True,
                                                         p_per_channel=float(g.get("p_per_channel", 0.5)),
                                                         order_downsample=0, order_upsample=3,
                                                         p_per_sample=float(g.get("p", 0.25)), ignore_axes=ignore))
    for g in aug.get("gamma") or []:
        transforms.append(GammaTransform(_pair(g["range"]), bool(g.get("invert_image", False)), True,
                                         retain_stats=bool(g.get("retain_stats", True)), p_per_sample=float(g.get("p", 0.3))))
    mirror = [int(a) for a in aug.get("mirror_axes") or [] if int(a) < dims]
    if mirror:
        transforms.append(MirrorTransform(tuple(mirror)))
    return Compose(transforms) if transforms else None
