"""CUTS losses: intra-image NT-Xent and the anchor-patch reconstruction MSE (Liu et al., MICCAI 2024).

The total loss of the code is ``w · NT-Xent + (1 − w) · MSE`` with ``w = 0.001``
(:func:`cuts_loss`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["cuts_loss", "nt_xent"]


def nt_xent(anchors: torch.Tensor, positives: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """NT-Xent (Chen et al., SimCLR, ICML 2020) within each image, averaged over images.

    For image ``b`` the ``2S`` embeddings ``z = [anchors_b; positives_b]`` (``(B, S, L)`` each) are
    L2-normalised; row ``i`` has its pair ``i ± S`` as positive and every other row except itself
    as negative: ``−log(exp(s_ip/τ) / Σ_{k≠i} exp(s_ik/τ))`` with cosine similarities ``s``; the
    loss is the mean over the ``2S`` rows and the ``B`` images. Negatives never cross images (the
    code's "intra-image" contrast). Needs ``S ≥ 2``.
    """
    if anchors.shape != positives.shape or anchors.ndim != 3:
        raise ValueError(f"nt_xent: anchors and positives must both be (B, S, L), got {tuple(anchors.shape)}, "
                         f"{tuple(positives.shape)}")
    b, s, _ = anchors.shape
    if s < 2:
        raise ValueError(f"nt_xent needs at least 2 anchors per image (negatives), got {s}")
    z = F.normalize(torch.cat([anchors, positives], dim=1).float(), dim=-1)  # (B, 2S, L)
    logits = z @ z.transpose(1, 2) / float(temperature)
    eye = torch.eye(2 * s, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(eye, float("-inf"))
    target = torch.cat([torch.arange(s, 2 * s), torch.arange(0, s)]).to(z.device)
    return F.cross_entropy(logits.reshape(b * 2 * s, 2 * s), target.repeat(b))


def cuts_loss(z_anchor: torch.Tensor, z_positive: torch.Tensor, recon: torch.Tensor, target_patches: torch.Tensor,
              contrastive_weight: float = 0.001, temperature: float = 0.1) -> dict:
    """``{"loss", "contrastive", "reconstruction"}``: ``w · nt_xent + (1 − w) · MSE(recon, patches)``
    (MSE over every value of the ``(B, S, C, P, P)`` patches)."""
    con = nt_xent(z_anchor, z_positive, temperature)
    rec = F.mse_loss(recon.float(), target_patches.float())
    w = float(contrastive_weight)
    return {"loss": w * con + (1.0 - w) * rec, "contrastive": con, "reconstruction": rec}
