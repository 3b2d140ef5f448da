"""The losses and input scaling of ACWE-ConvNet (Chen & Frey, MIDL 2020).

* :func:`acwe_energy` — the soft Chan–Vese energy without length term (the paper's unsupervised loss).
* :func:`active_contour_loss` — the supervised active-contour loss of Xu Chen et al., "Learning
  Active Contour Models for Medical Image Segmentation", CVPR 2019 (length + region terms with
  ``c1 = 1``, ``c2 = 0`` against the mask): the paper's fine-tuning loss.
* :func:`minmax_normalise` — the paper's per-slice min–max scaling to [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["acwe_energy", "active_contour_loss", "minmax_normalise"]


def acwe_energy(prob: torch.Tensor, image: torch.Tensor, w_area: float = 5e-4, eps: float = 1e-6):
    """Soft Chan–Vese energy without length term, per pixel (Chen & Frey 2020).

    ``c1 = Σ p·I / Σ p``, ``c2 = Σ (1-p)·I / Σ (1-p)`` over the whole batch (as the authors' code),
    ``E = [Σ p (I-c1)² + Σ (1-p)(I-c2)²] / C + w_area Σ p``, divided by ``B·N`` (pixels). Both terms
    grow with the pixel count, so ``w_area`` (intensity² per pixel, images in [0, 1]) means the same
    for any patch size and the division only sets the logging scale (Adam ignores it). Several
    channels: the squared distances are averaged over channels (vector-valued Chan–Vese).

    Args:
        prob: ``(B, 1, *spatial)`` in [0, 1]. image: ``(B, C, *spatial)``.

    Returns:
        ``(energy, c1, c2, area)``: scalar tensor, channel-mean phase means (detached) and the mean of p.
    """
    prob = prob.float()
    image = image.float()
    axes = [0] + list(range(2, image.ndim))
    s_in = prob.sum(dim=axes)
    s_out = (1 - prob).sum(dim=axes)
    c1 = (prob * image).sum(dim=axes) / (s_in + eps)
    c2 = ((1 - prob) * image).sum(dim=axes) / (s_out + eps)
    shape = (1, -1) + (1,) * (image.ndim - 2)
    region = (prob * (image - c1.view(shape)) ** 2 + (1 - prob) * (image - c2.view(shape)) ** 2).mean(dim=1)
    energy = (region.sum() + w_area * prob.sum()) / prob.numel()
    return energy, c1.detach().mean(), c2.detach().mean(), prob.detach().mean()


def active_contour_loss(prob: torch.Tensor, target: torch.Tensor, lambda_region: float = 1.0, eps: float = 1e-8) -> torch.Tensor:
    """Active-contour loss of Xu Chen et al. (CVPR 2019) with ``c1 = 1``, ``c2 = 0``, per pixel.

    ``length = Σ sqrt(Σ_axes (∂p)² + eps)`` (forward differences, on the region where all exist) and
    ``region = Σ p (y-1)² + Σ (1-p) y²``; the loss is ``(length + λ region) / (B·N)``.

    Args:
        prob: ``(B, 1, *spatial)`` in [0, 1]. target: same shape, binary (0/1).
    """
    prob, target = prob.float(), target.float()
    nd = prob.ndim - 2
    grads = []
    for a in range(nd):
        d = torch.diff(prob, dim=2 + a)
        index = [slice(None), slice(None)] + [slice(0, -1) if b != a else slice(None) for b in range(nd)]
        grads.append(d[tuple(index)] ** 2)
    length = torch.sqrt(sum(grads) + eps).sum()
    region = (prob * (target - 1) ** 2).sum() + ((1 - prob) * target ** 2).sum()
    return (length + lambda_region * region) / prob.numel()


def minmax_normalise(image: np.ndarray, patch_dims: int, eps: float = 1e-8) -> np.ndarray:
    """Scale each channel of ``(C, *spatial)`` to [0, 1] by its min and max (float32).

    When the image has one more spatial axis than the network (2D patches of a volume), every slice
    along the first spatial axis is scaled on its own, as in the paper; otherwise the whole image.
    Constant slices become 0.
    """
    x = np.asarray(image, dtype=np.float32)
    per_slice = x.ndim - 1 == patch_dims + 1
    axes = tuple(range(2 if per_slice else 1, x.ndim))
    lo = x.min(axis=axes, keepdims=True)
    hi = x.max(axis=axes, keepdims=True)
    span = hi - lo
    return np.where(span > eps, (x - lo) / np.maximum(span, eps), 0.0).astype(np.float32)
