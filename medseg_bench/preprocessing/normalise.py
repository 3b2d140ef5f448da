"""Intensity normalisation, one scheme per channel, parameters taken from the plan.

Schemes (the plan's ``normalization.channels[c]``):

``ct``
    Clip to the dataset-wide 0.5 / 99.5 percentiles, subtract the dataset-wide mean and divide by the
    standard deviation (nnU-Net's ``CTNormalization``; Isensee et al., Nature Methods 2021). **Deviation
    from nnU-Net:** the statistics come from body voxels (above -500 HU) of the images, not from the
    label foreground, so plans never depend on labels.
``zscore``
    Per image ``(x - mean) / std``; with ``use_mask`` the statistics come from the non-zero mask and the
    voxels outside it are set to 0 (nnU-Net uses the mask when cropping shrank the median image below
    3/4 of its size).
``rgb01``
    RGB histology: divide by the value range (255 for 8-bit) into [0, 1], per channel.
``spect``
    SPECT / scintigraphy counts (our choice; nnU-Net has none): per image, divide by the 99.5th
    percentile of the non-zero voxels. Counts scale with injected activity and acquisition time, so a
    per-image scale is needed; a high percentile is robust to hot lesions (which stay above 1, keeping
    their contrast: no clipping), and zero counts stay zero (no shift, unlike z-score).
``rescale01``
    Per image min-max to [0, 1]. ``none``: unchanged (cast to float32).
"""

from __future__ import annotations

import numpy as np

__all__ = ["SCHEMES", "normalise", "normalise_channel"]

SCHEMES = ("ct", "zscore", "rgb01", "spect", "rescale01", "none")
_EPS = 1e-8


def normalise_channel(x: np.ndarray, params: dict, mask: np.ndarray | None = None) -> np.ndarray:
    """Normalise one channel ``x (*spatial)`` with ``params`` (``{"scheme": ..., ...}``).

    Args:
        x: intensities of one channel (any real dtype).
        params: one entry of the plan's ``normalization["channels"]``.
        mask: non-zero mask (``zscore`` with ``use_mask``, ``spect``); None means everywhere.

    Returns:
        float32 array of the same shape.
    """
    scheme = params.get("scheme")
    x = np.asarray(x, dtype=np.float32)
    if scheme == "ct":
        lo, hi = params["clip"]
        out = np.clip(x, lo, hi)
        out -= np.float32(params["mean"])
        out /= np.float32(max(params["std"], _EPS))
        return out
    if scheme == "zscore":
        if params.get("use_mask") and mask is not None and mask.any():
            values = x[mask]
            out = (x - values.mean()) / max(float(values.std()), _EPS)
            out[~mask] = 0
            return out.astype(np.float32, copy=False)
        return ((x - x.mean()) / max(float(x.std()), _EPS)).astype(np.float32, copy=False)
    if scheme == "rgb01":
        return np.clip(x / np.float32(params.get("scale", 255.0)), 0, 1)
    if scheme == "spect":
        region = x[mask] if mask is not None and mask.any() else x[x > 0]
        scale = float(np.percentile(region, params.get("percentile", 99.5))) if region.size else 0.0
        return x / np.float32(scale if scale > _EPS else 1.0)
    if scheme == "rescale01":
        lo, hi = float(x.min()), float(x.max())
        return (x - lo) / np.float32(max(hi - lo, _EPS))
    if scheme == "none":
        return x.copy()
    raise ValueError(f"unknown normalisation scheme {scheme!r} (known: {', '.join(SCHEMES)})")


def normalise(image: np.ndarray, normalization: dict, mask: np.ndarray | None = None) -> np.ndarray:
    """Normalise ``image (C, *spatial)`` channel by channel with the plan's ``normalization`` entry.

    Raises:
        ValueError: the plan lists a different number of channels than the image has.
    """
    channels = normalization["channels"]
    if len(channels) != image.shape[0]:
        raise ValueError(f"image has {image.shape[0]} channels, the plan's normalisation lists {len(channels)}")
    return np.stack([normalise_channel(image[c], channels[c], mask) for c in range(image.shape[0])]).astype(np.float32, copy=False)
