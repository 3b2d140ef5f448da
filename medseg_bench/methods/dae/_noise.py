"""Coarse noise, label-free foreground, anomaly map and threshold of the DAE (Kascenas et al., MIDL 2022).

A. Kascenas, N. Pugeault, A. Q. O'Neil, "Denoising Autoencoders for Unsupervised Anomaly Detection
in Brain MRI", MIDL 2022 (PMLR 172:653-664). Units: images are the preprocessed (normalised)
intensities; ``sigma`` is in those units; sizes are voxels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["anomaly_map", "coarse_noise", "foreground_mask", "otsu_threshold"]


def foreground_mask(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Label-free body mask ``(B, 1, *spatial)`` bool of a batch ``(B, C, *spatial)``.

    A voxel is foreground when any channel is above that channel's minimum over the patch by more
    than ``eps`` × the channel's range: the air / zero-padding background of a normalised image
    takes the minimum (the DAE code's brain mask ``x > 0`` on skull-stripped MRI, made independent of
    the normalisation). Images without such a background (H&E, fundus) are foreground everywhere
    except their darkest voxels.
    """
    dims = tuple(range(2, x.ndim))
    lo, hi = x.amin(dim=dims, keepdim=True), x.amax(dim=dims, keepdim=True)
    return (x > lo + eps * (hi - lo)).any(dim=1, keepdim=True)


def coarse_noise(x: torch.Tensor, sigma: float = 0.2, resolution: int = 16, generator=None,
                 mask: torch.Tensor | None = None) -> torch.Tensor:
    """Coarse noise like ``x`` ``(B, C, *spatial)``: N(0, sigma²) on a ``resolution``^d grid per
    sample and channel, bilinearly (trilinearly in 3D) up-sampled to the spatial size, rolled by a
    random shift along every spatial axis, and zeroed outside ``mask`` (default
    :func:`foreground_mask` of ``x``)."""
    nd = x.ndim - 2
    if nd not in (2, 3):
        raise ValueError(f"coarse_noise needs 2D or 3D batches (B, C, *spatial), got shape {tuple(x.shape)}")
    grid = torch.randn((x.shape[0], x.shape[1]) + (resolution,) * nd, generator=generator,
                       device="cpu").to(x.device, x.dtype) * float(sigma)
    noise = F.interpolate(grid, size=tuple(x.shape[2:]), mode="bilinear" if nd == 2 else "trilinear",
                          align_corners=False)
    shifts = torch.randint(0, 1 << 30, (x.shape[0], nd), generator=generator)
    noise = torch.stack([torch.roll(n, [int(s % size) for s, size in zip(sh, x.shape[2:])], dims=list(range(1, nd + 1)))
                         for n, sh in zip(noise, shifts)])
    mask = foreground_mask(x) if mask is None else mask
    return noise * mask.to(noise.dtype)


def anomaly_map(image: np.ndarray, reconstruction: np.ndarray, kernel: int = 5, patch_dims: int | None = None) -> np.ndarray:
    """``|x - DAE(x)|`` averaged over channels and median-filtered -> ``(*spatial)`` float32.

    ``image`` and ``reconstruction`` are ``(C, *spatial)``. The filter spans ``kernel`` voxels along
    the last ``patch_dims`` axes (default: every spatial axis), so a volume seen by a 2D network
    (``patch_dims=2``) is filtered slice by slice, as the DAE code filters its 2D slices (5×5)."""
    from scipy.ndimage import median_filter

    image, reconstruction = np.asarray(image, np.float32), np.asarray(reconstruction, np.float32)
    if image.shape != reconstruction.shape:
        raise ValueError(f"anomaly_map: image {image.shape} and reconstruction {reconstruction.shape} differ")
    err = np.abs(image - reconstruction).mean(axis=0)
    nd = err.ndim if patch_dims is None else min(int(patch_dims), err.ndim)
    size = (1,) * (err.ndim - nd) + (int(kernel),) * nd
    return median_filter(err, size=size, mode="nearest").astype(np.float32)


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold (the between-class-variance maximiser) of ``values`` (any shape; finite)."""
    from skimage.filters import threshold_otsu

    v = np.asarray(values, np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise ValueError("otsu_threshold: no finite values")
    if v.min() == v.max():
        return float(v.max())
    return float(threshold_otsu(v, nbins=bins))
