"""PSM stage 1–2: the self-supervised objective and the Grad-CAM self-activation map.

* :func:`rotation_consistency_loss` — the follow-up's default self-supervised task (code
  ``trainer_selfsupervised``): a network with one output should give the same value for an image and
  its 180° rotation; loss = ``sum_b |f(x_b) - f(rot180 x_b)| / B`` (L1 summed over the output,
  averaged over the batch).
* :func:`grad_cam` — Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
  Gradient-based Localization", ICCV 2017) of a chosen layer, as the ``grad-cam`` package computes it
  for a regression target ``f(x)[:, 0]``: channel weights = spatial mean of d f / d A, map =
  ReLU(sum_k w_k A_k), min–max scaled to [0, 1] per image, bilinearly resized to the input size.

Why our own Grad-CAM: the ``grad-cam`` package imports ``torchvision``, which cannot be installed
beside the CPU build of torch 2.13.0 this suite pins; the computation is a forward hook and a
gradient, a few lines.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["grad_cam", "rotate180", "rotation_consistency_loss"]


def rotate180(x: torch.Tensor) -> torch.Tensor:
    """``x`` ``(B, C, H, W)`` rotated by 180° in the image plane (both spatial axes flipped)."""
    return torch.flip(x, dims=(-2, -1))


def rotation_consistency_loss(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``sum |net(x) - net(rot180 x)| / B`` for a batch ``x`` ``(B, C, H, W)``.

    Both views go through the network in one batch (so batch-norm statistics are those of both).
    """
    b = x.shape[0]
    out = net(torch.cat([x, rotate180(x)], dim=0)).float()
    return (out[:b] - out[b:]).abs().sum() / b


def grad_cam(net: nn.Module, layer: nn.Module, x: torch.Tensor, target: int = 0) -> torch.Tensor:
    """Grad-CAM maps ``(B, H, W)`` float32 in [0, 1] of ``layer`` for the output ``net(x)[:, target]``.

    The network is run as it is (call ``net.eval()`` first for inference-mode batch norm); its
    parameters' gradients are left untouched. An image whose map is constant (e.g. all-zero after the
    ReLU) gets an all-zero map.

    Args:
        net: the network; ``layer`` must be one of its sub-modules producing ``(B, K, h, w)``.
        x: input batch ``(B, C, H, W)``.
        target: output index whose gradient weights the channels.
    """
    saved: dict[str, torch.Tensor] = {}

    def keep(_module, _inputs, output):
        saved["act"] = output

    handle = layer.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)  # so that even a layer right at the input is in the graph
            out = net(x)
            if "act" not in saved:
                raise ValueError("grad_cam: the layer was not run by the network's forward")
            act = saved["act"]
            score = out[:, target].float().sum()
            (grads,) = torch.autograd.grad(score, act)
    finally:
        handle.remove()
    weights = grads.float().mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * act.detach().float()).sum(dim=1))  # (B, h, w)
    lo = cam.amin(dim=(1, 2), keepdim=True)
    hi = cam.amax(dim=(1, 2), keepdim=True)
    cam = torch.where(hi - lo > 0, (cam - lo) / (hi - lo + 1e-7), torch.zeros_like(cam))
    cam = F.interpolate(cam[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return cam.clamp_(0.0, 1.0)
