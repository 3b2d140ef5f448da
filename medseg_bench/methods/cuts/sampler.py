"""CUTS pair sampling: anchors, SSIM-verified nearby positives, intra-image negatives — vectorised.

Liu et al., CUTS, MICCAI 2024 (arXiv:2209.11359). Per image, the code draws ``n_anchors`` (8) anchor
pixels; for each it tries up to ``tries`` (20) random pixels within ``radius`` (5) px and keeps the
first whose ``patch`` × ``patch`` (5 × 5) patch has an SSIM above ``threshold`` (0.5) with the
anchor's patch; when none does, a neighbouring pixel is the positive. The other anchors (and their
positives) of the same image are the negatives of the NT-Xent loss (:func:`~.losses.nt_xent`).

The paper's code does this with Python loops over images, anchors and tries and one scikit-image
``structural_similarity`` call per try — its known bottleneck. Here every image, anchor and try is
computed at once in torch (:func:`sample_pairs`): all candidates are drawn up front, all their SSIMs
computed in one batched expression (:func:`patch_ssim`, the same value as scikit-image's), and the
first success per anchor taken with an ``argmax`` over the tries. :func:`choose_positives_loop` is
the loop version (scikit-image SSIM, one try after another, as the code does) used by the tests and
``benchmarks/cuts_sampler_bench.py`` to check and time ours on the same draws.

Details (pixel units, ``(y, x)`` order, ``m = patch // 2``):

* anchors are uniform over ``[m, H - m) × [m, W - m)`` (their patch lies inside the image);
* candidates are uniform over ``[y - radius, y + radius] × [x - radius, x + radius]`` clipped to the
  same range (the code's ``randrange`` stops one short of ``+radius``; we use the symmetric window);
  a candidate equal to its anchor counts as a failed try (the code may accept the anchor itself);
* SSIM as scikit-image's ``structural_similarity`` with ``win_size = patch`` on the two patches
  (``K1 = 0.01, K2 = 0.03``, sample covariance, mean over channels) and ``data_range`` = the anchor
  patch's max − min (1 when constant), as the code's ``range_aware_ssim``;
* fallback: the diagonal neighbour one pixel toward the image centre (the code intends this, but
  edits the anchor through a NumPy view, so its fallback positive equals the shifted anchor).

Randomness comes from torch's global generator (the engine checkpoints it: exact resume).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

__all__ = ["PairSample", "choose_positives", "choose_positives_loop", "draw_anchors", "draw_candidates",
           "extract_patches", "fallback_neighbour", "patch_ssim", "sample_pairs", "skimage_patch_ssim"]

K1, K2 = 0.01, 0.03


class PairSample(NamedTuple):
    """``anchors``, ``positives``: ``(B, S, 2)`` long pixel indices; ``found``: ``(B, S)`` bool,
    whether an SSIM-verified positive was found (else the fallback neighbour)."""

    anchors: torch.Tensor
    positives: torch.Tensor
    found: torch.Tensor


def extract_patches(images: torch.Tensor, points: torch.Tensor, patch: int) -> torch.Tensor:
    """Patches ``(*points.shape[:-1], C, patch, patch)`` of ``images`` ``(B, C, H, W)`` centred on
    ``points`` ``(B, ..., 2)`` (long; every patch must lie inside the image)."""
    b = images.shape[0]
    lead = points.shape[1:-1]
    pts = points.reshape(b, -1, 2)
    m = int(patch) // 2
    ar = torch.arange(int(patch), device=images.device) - m
    rows = (pts[..., 0, None] + ar)[:, :, :, None]
    cols = (pts[..., 1, None] + ar)[:, :, None, :]
    bi = torch.arange(b, device=images.device)[:, None, None, None]
    out = images.permute(0, 2, 3, 1)[bi, rows, cols]  # (B, N, P, P, C)
    return out.permute(0, 1, 4, 2, 3).reshape(b, *lead, images.shape[1], int(patch), int(patch))


def patch_ssim(a: torch.Tensor, b: torch.Tensor, data_range: torch.Tensor | float | None = None) -> torch.Tensor:
    """SSIM ``(...)`` of patch pairs ``a``, ``b`` ``(..., C, P, P)``, equal to scikit-image's
    ``structural_similarity(a, b, win_size=P, channel_axis=..., data_range=R)`` on each pair (one
    window covering the patch; sample (co)variances; mean over channels). ``data_range`` ``(...)``
    or a number; None: the range of ``a`` per pair, 1 where ``a`` is constant."""
    a, b = a.double(), b.double()
    n = a.shape[-1] * a.shape[-2]
    if data_range is None:
        flat = a.flatten(-3)
        r = flat.amax(-1) - flat.amin(-1)
        data_range = torch.where(r > 0, r, torch.ones_like(r))
    r = torch.as_tensor(data_range, dtype=torch.float64, device=a.device)
    r = r[..., None] if r.ndim else r  # broadcast over channels
    c1, c2 = (K1 * r) ** 2, (K2 * r) ** 2
    ux, uy = a.mean((-1, -2)), b.mean((-1, -2))
    norm = n / (n - 1.0)
    vx = norm * ((a * a).mean((-1, -2)) - ux * ux)
    vy = norm * ((b * b).mean((-1, -2)) - uy * uy)
    vxy = norm * ((a * b).mean((-1, -2)) - ux * uy)
    s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean(-1).float()


def draw_anchors(batch: int, height: int, width: int, n: int, patch: int, device=None) -> torch.Tensor:
    """``(batch, n, 2)`` anchor pixels uniform over ``[m, H - m) × [m, W - m)``, ``m = patch // 2``.

    Raises:
        ValueError: the image is smaller than one patch.
    """
    m = int(patch) // 2
    if height - 2 * m < 1 or width - 2 * m < 1:
        raise ValueError(f"CUTS sampling needs images of at least {patch}x{patch} px, got {height}x{width}")
    y = torch.randint(m, height - m, (batch, n), device=device)
    x = torch.randint(m, width - m, (batch, n), device=device)
    return torch.stack([y, x], dim=-1)


def draw_candidates(anchors: torch.Tensor, height: int, width: int, radius: int, tries: int, patch: int) -> torch.Tensor:
    """``(B, S, tries, 2)`` candidate positives uniform over each anchor's ``±radius`` window
    clipped to ``[m, H - m) × [m, W - m)``."""
    m = int(patch) // 2
    hi_bound = torch.tensor([height - m - 1, width - m - 1], device=anchors.device)
    lo = (anchors - int(radius)).clamp_min(m)
    hi = torch.minimum(anchors + int(radius), hi_bound)
    u = torch.rand((*anchors.shape[:2], int(tries), 2), device=anchors.device)
    span = (hi - lo + 1)[:, :, None, :]
    return lo[:, :, None, :] + (u * span).long().clamp_max(span - 1)


def fallback_neighbour(anchors: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The diagonal neighbour of each anchor one pixel toward the image centre ``(B, S, 2)``."""
    centre = torch.tensor([height // 2, width // 2], device=anchors.device)
    return torch.where(anchors > centre, anchors - 1, anchors + 1)


def choose_positives(images: torch.Tensor, anchors: torch.Tensor, candidates: torch.Tensor, threshold: float,
                     patch: int) -> PairSample:
    """Vectorised choice: per anchor the first candidate (in try order) whose patch SSIM with the
    anchor's exceeds ``threshold`` (candidates equal to the anchor never count), else the fallback
    neighbour. ``images`` ``(B, C, H, W)``, ``anchors`` ``(B, S, 2)``, ``candidates`` ``(B, S, T, 2)``."""
    h, w = images.shape[-2:]
    pa = extract_patches(images, anchors, patch)  # (B, S, C, P, P)
    pc = extract_patches(images, candidates, patch)  # (B, S, T, C, P, P)
    ssim = patch_ssim(pa[:, :, None].expand_as(pc), pc)  # (B, S, T); data range = the anchor patch's
    ok = (ssim > float(threshold)) & (candidates != anchors[:, :, None]).any(-1)
    found = ok.any(-1)
    first = ok.int().argmax(-1)  # index of the first True (0 when none; then unused)
    chosen = torch.gather(candidates, 2, first[:, :, None, None].expand(-1, -1, 1, 2))[:, :, 0]
    positives = torch.where(found[..., None], chosen, fallback_neighbour(anchors, h, w))
    return PairSample(anchors, positives, found)


def sample_pairs(images: torch.Tensor, n_anchors: int = 8, radius: int = 5, tries: int = 20, threshold: float = 0.5,
                 patch: int = 5) -> PairSample:
    """Anchors and positives for a batch ``(B, C, H, W)`` (scaled to [-1, 1]); see the module docstring."""
    b, _, h, w = images.shape
    anchors = draw_anchors(b, h, w, int(n_anchors), patch, device=images.device)
    candidates = draw_candidates(anchors, h, w, radius, tries, patch)
    with torch.no_grad():
        return choose_positives(images.detach(), anchors, candidates, threshold, patch)


def skimage_patch_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """scikit-image SSIM of two ``(C, P, P)`` patches as the paper's code computes it
    (``range_aware_ssim``: data range of ``a``, 1 when constant; window = the patch)."""
    from skimage.metrics import structural_similarity

    a, b = np.moveaxis(np.asarray(a, np.float64), 0, -1), np.moveaxis(np.asarray(b, np.float64), 0, -1)
    r = float(a.max() - a.min()) or 1.0
    win = min(a.shape[:2]) if min(a.shape[:2]) % 2 else min(a.shape[:2]) - 1
    return float(structural_similarity(a, b, win_size=win, channel_axis=-1, data_range=r))


def choose_positives_loop(images: np.ndarray, anchors: np.ndarray, candidates: np.ndarray, threshold: float,
                          patch: int) -> PairSample:
    """Reference loop version of :func:`choose_positives` (numpy inputs ``(B, C, H, W)``,
    ``(B, S, 2)``, ``(B, S, T, 2)``): image by image, anchor by anchor, try by try, one scikit-image
    SSIM per try, stopping at the first success — the paper code's structure."""
    images = np.asarray(images)
    b, _, h, w = images.shape
    m = patch // 2
    positives = np.zeros_like(anchors)
    found = np.zeros(anchors.shape[:2], dtype=bool)
    for i in range(b):
        for s in range(anchors.shape[1]):
            ay, ax = (int(v) for v in anchors[i, s])
            pa = images[i, :, ay - m:ay + m + 1, ax - m:ax + m + 1]
            for t in range(candidates.shape[2]):
                cy, cx = (int(v) for v in candidates[i, s, t])
                if (cy, cx) == (ay, ax):
                    continue
                if skimage_patch_ssim(pa, images[i, :, cy - m:cy + m + 1, cx - m:cx + m + 1]) > threshold:
                    positives[i, s] = (cy, cx)
                    found[i, s] = True
                    break
            if not found[i, s]:
                positives[i, s] = (ay - 1 if ay > h // 2 else ay + 1, ax - 1 if ax > w // 2 else ax + 1)
    return PairSample(anchors, positives, found)
