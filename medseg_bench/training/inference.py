"""Sliding-window inference with Gaussian weighting and optional mirroring TTA.

MONAI ``sliding_window_inference`` (mode ``"gaussian"``, as nnU-Net: Isensee et al. 2021) over one
preprocessed image; logits of all windows (and mirrored copies) are averaged, then a softmax gives
probabilities. For a 2D patch on a 3D volume (the ``2d`` configuration of a 3D dataset) the slices
along axis 0 are predicted as a batch.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import torch

__all__ = ["mirror_combinations", "sliding_window_outputs", "sliding_window_probabilities"]

#: slices per sliding-window call for the 2d configuration of a volume (bounds memory)
SLICE_CHUNK = 32


def mirror_combinations(axes) -> list[tuple[int, ...]]:
    """Every subset of ``axes`` (the empty one first): nnU-Net's mirroring TTA set."""
    axes = tuple(axes or ())
    return [c for r in range(len(axes) + 1) for c in itertools.combinations(axes, r)]


@torch.inference_mode()
def _window_logits(predictor, x: torch.Tensor, patch_size, overlap, sw_batch_size, mirror_axes, autocast) -> torch.Tensor:
    from monai.inferers import sliding_window_inference

    total = None
    combos = mirror_combinations(mirror_axes)
    for combo in combos:
        dims = [2 + a for a in combo]
        xi = torch.flip(x, dims) if dims else x
        with autocast():
            out = sliding_window_inference(xi, list(patch_size), sw_batch_size, predictor, overlap=overlap,
                                           mode="gaussian", padding_mode="constant", cval=0.0)
        out = out.float()
        if dims:
            out = torch.flip(out, dims)
        total = out if total is None else total + out
    return total / len(combos)


def sliding_window_probabilities(
    predictor: Callable[[torch.Tensor], torch.Tensor],
    image: np.ndarray,
    patch_size,
    device: torch.device | str = "cpu",
    overlap: float = 0.5,
    mirror_axes=None,
    sw_batch_size: int = 4,
    autocast=None,
) -> np.ndarray:
    """Class probabilities ``(K, *spatial)`` float32 for one image ``(C, *spatial)``: the softmax of
    :func:`sliding_window_outputs` (same arguments)."""
    logits = sliding_window_outputs(predictor, image, patch_size, device, overlap, mirror_axes, sw_batch_size, autocast)
    return torch.softmax(torch.from_numpy(logits), dim=0).numpy().astype(np.float32)


def sliding_window_outputs(
    predictor: Callable[[torch.Tensor], torch.Tensor],
    image: np.ndarray,
    patch_size,
    device: torch.device | str = "cpu",
    overlap: float = 0.5,
    mirror_axes=None,
    sw_batch_size: int = 4,
    autocast=None,
) -> np.ndarray:
    """The predictor's raw outputs ``(K, *spatial)`` float32 for one image ``(C, *spatial)``,
    Gaussian-weighted over overlapping windows (and averaged over mirrorings): logits, or e.g. the
    reconstruction of an auto-encoder.

    Args:
        predictor: maps a batch ``(B, C, *patch)`` to logits ``(B, K, *patch)`` (eval mode).
        image: preprocessed image; its spatial axes may be one more than ``patch_size`` (2D patches on
            a volume: slices along axis 0).
        patch_size: window size; images smaller than it are padded (zeros) and cropped back.
        overlap: fraction of window overlap (0.5 as nnU-Net).
        mirror_axes: spatial axes of the patch to mirror for TTA (None: no TTA).
        autocast: a context-manager factory for mixed precision (None: full precision).
    """
    import contextlib

    autocast = autocast or contextlib.nullcontext
    image = np.asarray(image, dtype=np.float32)
    nd = len(patch_size)
    if image.ndim - 1 == nd:
        x = torch.from_numpy(image)[None].to(device)
        logits = _window_logits(predictor, x, patch_size, overlap, sw_batch_size, mirror_axes, autocast)[0]
    elif image.ndim - 1 == nd + 1:
        chunks = []
        slices = torch.from_numpy(image).permute(1, 0, *range(2, image.ndim))  # (Z, C, Y, X)
        for start in range(0, slices.shape[0], SLICE_CHUNK):
            x = slices[start : start + SLICE_CHUNK].to(device)
            chunks.append(_window_logits(predictor, x, patch_size, overlap, sw_batch_size, mirror_axes, autocast).cpu())
        logits = torch.cat(chunks).permute(1, 0, *range(2, image.ndim))  # (K, Z, Y, X)
    else:
        raise ValueError(f"patch size {list(patch_size)} does not fit an image of shape {image.shape}")
    return logits.float().cpu().numpy().astype(np.float32)
