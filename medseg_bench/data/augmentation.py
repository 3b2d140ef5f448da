"""The batchgenerators augmentation pipeline built from a plan's ``augmentation`` block.

nnU-Net's training pipeline (Isensee et al., Nature Methods 2021, supplement) with the parameters
taken from the plan, so a CPU preset can switch off the expensive parts. Recognised keys (all
optional; a missing key disables that transform)::

    rotation_deg: float | [lo, hi]       rotation angle range, degrees (3D: about every axis)
    p_rotation: float                    per-sample probability (default 0.2)
    scale: [lo, hi]                      zoom range (batchgenerators convention: < 1 zooms in)
    p_scale: float                       (default 0.2)
    elastic: bool, p_elastic             elastic deformation (off by default: slow on CPU)
    mirror_axes: [axes]                  spatial axes of the patch that may be flipped (p 0.5 each)
    noise: [lo, hi], p_noise             Gaussian noise variance range (default p 0.1)
    blur: [lo, hi], p_blur               Gaussian blur sigma range, voxels (default p 0.2)
    brightness: [lo, hi], p_brightness   multiplicative brightness (default p 0.15)
    contrast: [lo, hi], p_contrast       contrast (default p 0.15)
    low_resolution: [lo, hi], p_low_resolution   simulated low resolution zoom (default p 0.25)
    gamma: [lo, hi], p_gamma             gamma (default p 0.3; inverted-image gamma at p/3)
    order_data: int                      spline order of the spatial transform (default 3)

``rotation`` / ``rotation_range`` are accepted as aliases of ``rotation_deg``. The transforms use the
global numpy random state; :class:`medseg_bench.data.loader.BatchStream` swaps in its own state
around every batch so that each stream is deterministic and checkpointable.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["build_transforms", "sample_size_for"]


def _range(v, symmetric: bool = False) -> tuple[float, float] | None:
    if v is None or v is False:
        return None
    if isinstance(v, (int, float)):
        return (-float(v), float(v)) if symmetric else (float(v), float(v))
    lo, hi = (float(x) for x in v)
    return (lo, hi)


def _rotation(aug: dict) -> tuple[float, float] | None:
    for key in ("rotation_deg", "rotation", "rotation_range"):
        if key in aug:
            r = _range(aug[key], symmetric=True)
            if r is None or (r[0] == 0 and r[1] == 0):
                return None
            return (math.radians(r[0]), math.radians(r[1]))
    return None


def sample_size_for(patch_size, aug: dict) -> list[int]:
    """Size of the region cut from the case before the spatial transform, so that rotation and
    zoom-out do not pull in padding at the patch centre (a simplified nnU-Net ``get_patch_size``)."""
    patch = [int(p) for p in patch_size]
    rot = _rotation(aug or {})
    scale = _range((aug or {}).get("scale"))
    if rot is None and scale is None and not (aug or {}).get("elastic"):
        return patch
    factor = 1.0
    if rot is not None:
        theta = min(max(abs(rot[0]), abs(rot[1])), math.pi / 4)
        factor *= math.cos(theta) + math.sin(theta)
    if scale is not None:
        factor *= max(1.0, scale[1])
    return [int(math.ceil(p * factor)) for p in patch]


def build_transforms(aug: dict | None, patch_size):
    """A batchgenerators ``Compose`` for patches of ``patch_size`` (spatial, 2 or 3 axes), or None
    when the block asks for no augmentation. Input batches hold ``data`` ``(B, C, *sample_size)`` and,
    for labelled streams, ``seg`` ``(B, 1, *sample_size)`` (every transform here tolerates its
    absence); outputs are ``patch_size``."""
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
    rot, scale = _rotation(aug), _range(aug.get("scale"))
    elastic = bool(aug.get("elastic", False))
    if rot is not None or scale is not None or elastic:
        angle = rot or (0.0, 0.0)
        transforms.append(
            SpatialTransform(
                list(patch_size),
                patch_center_dist_from_border=None,
                do_elastic_deform=elastic,
                alpha=(0.0, 200.0),
                sigma=(9.0, 13.0),
                do_rotation=rot is not None,
                angle_x=angle,
                angle_y=angle if dims == 3 else (0.0, 0.0),
                angle_z=angle if dims == 3 else (0.0, 0.0),
                do_scale=scale is not None,
                scale=scale or (1.0, 1.0),
                border_mode_data="constant",
                border_cval_data=0,
                order_data=int(aug.get("order_data", 3)),
                border_mode_seg="constant",
                border_cval_seg=0,
                order_seg=0,
                random_crop=False,
                p_el_per_sample=float(aug.get("p_elastic", 0.2)),
                p_scale_per_sample=float(aug.get("p_scale", 0.2)),
                p_rot_per_sample=float(aug.get("p_rotation", 0.2)),
            )
        )
    if aug.get("noise"):
        transforms.append(GaussianNoiseTransform(_range(aug["noise"]), p_per_sample=float(aug.get("p_noise", 0.1))))
    if aug.get("blur"):
        transforms.append(GaussianBlurTransform(_range(aug["blur"]), different_sigma_per_channel=True,
                                                p_per_sample=float(aug.get("p_blur", 0.2)), p_per_channel=0.5))
    if aug.get("brightness"):
        transforms.append(BrightnessMultiplicativeTransform(_range(aug["brightness"]), p_per_sample=float(aug.get("p_brightness", 0.15))))
    if aug.get("contrast"):
        transforms.append(ContrastAugmentationTransform(_range(aug["contrast"]), p_per_sample=float(aug.get("p_contrast", 0.15))))
    if aug.get("low_resolution"):
        transforms.append(SimulateLowResolutionTransform(_range(aug["low_resolution"]), per_channel=True, p_per_channel=0.5,
                                                         order_downsample=0, order_upsample=3,
                                                         p_per_sample=float(aug.get("p_low_resolution", 0.25))))
    if aug.get("gamma"):
        g, p = _range(aug["gamma"]), float(aug.get("p_gamma", 0.3))
        transforms.append(GammaTransform(g, True, True, retain_stats=True, p_per_sample=p / 3))
        transforms.append(GammaTransform(g, False, True, retain_stats=True, p_per_sample=p))
    mirror = aug.get("mirror_axes")
    if mirror:
        axes = tuple(int(a) for a in mirror if int(a) < dims)
        if axes:
            transforms.append(MirrorTransform(axes))
    return Compose(transforms) if transforms else None


def _identity_check() -> None:  # pragma: no cover - manual check
    t = build_transforms({"rotation_deg": 30, "scale": [0.8, 1.2], "mirror_axes": [0, 1]}, (32, 32))
    b = t(data=np.zeros((2, 1, 46, 46), np.float32), seg=np.zeros((2, 1, 46, 46), np.float32))
    print(b["data"].shape)
