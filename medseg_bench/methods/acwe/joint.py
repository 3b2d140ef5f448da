"""``acwe_joint``: ACWE-ConvNet's joint mode (Chen & Frey, MIDL 2020, mode 4).

The R2Net trained from scratch on ``E_ACWE`` (:func:`~.losses.acwe_energy`) over every image of
the batch, labelled and unlabelled, plus ``lambda_label`` × the labelled loss (the active-contour
loss of Xu Chen et al., CVPR 2019, or Dice + CE) on the labelled ones, for exactly the iterations
``supervised`` runs in the same cell (``paper``: at least the code's 8050). The labels fix which
output phase is the foreground, so no polarity rule is applied.

Weighting. The paper and the code's README name the mode ``L_ACWE + L_label`` (no weight: λ = 1);
the published code has no script for it, but both of its losses are **pixel sums over the batch**
(``losses.py``: ``ACWE.acwe`` and ``ACWE_label.Active_Contour_Loss`` use ``reduce_sum``/``K.sum``).
So one step's loss here is ``[Σ_batch e + λ Σ_labelled l] / N_batch``: the energy summed over the
pixels of every image of the batch, the label loss summed over the pixels of the labelled ones,
divided by one constant (the batch's pixel count; a scale Adam ignores). In per-pixel means that
is ``E + λ · (N_labelled / N_batch) · L`` — the label term weighs by its share of the batch's
pixels (one half with the engine's equal labelled and unlabelled batch sizes). Before this
the two per-pixel means were added (the label term weighed twice as much as the sums give).

Why the row stays below ``supervised`` at the CPU presets (``methods/acwe/README.md``, measured):
not chiefly the energy — the R2Net trained from scratch on the labels alone, same schedule, gets
little more — but the schedule: Adam at the paper's 5e-4 for ``supervised``'s 247 (``demo``) or
948 (``quick``) iterations, where the paper trains this network for 8050.
"""

from __future__ import annotations

import torch

from ...training.stages import base_iterations, set_iterations
from ..registry import register_method
from .losses import active_contour_loss, acwe_energy
from .method import AcweConvNet, AcweFinetune

__all__ = ["AcweJoint"]


@register_method
class AcweJoint(AcweConvNet):
    """ACWE-ConvNet's joint mode (the paper's mode 4): the unsupervised energy on every image of the
    batch (labelled and unlabelled) plus ``lambda_label`` × the labelled loss on the labelled ones,
    trained together from scratch for the iterations ``supervised`` runs in the same cell."""

    name = "acwe_joint"
    demo_datasets = ("spect_bone",)  # the paper's setting; demo grid only (see Method)
    family = "semi-supervised"
    citation = AcweFinetune.citation
    needs_labels = True
    uses_unlabelled = True
    budgets = "labelled"
    class_rule = None
    hparams = {
        **AcweConvNet.hparams,
        "polarity": "identity",  # the labels fix which output phase is the foreground
        "label_loss": "active_contour",  # or "dice_ce"
        "lambda_region": 1.0, "lambda_label": 1.0,
    }

    def __init__(self, **overrides):
        super().__init__(**overrides)
        if self.hparams["label_loss"] not in ("active_contour", "dice_ce"):
            raise ValueError(f"label_loss must be 'active_contour' or 'dice_ce', got {self.hparams['label_loss']!r}")

    def _rule(self, ctx) -> str:
        return "identity"

    def setup(self, ctx) -> None:
        self.networks["network"] = self._build(ctx)
        n = base_iterations(ctx)
        set_iterations(ctx, max(n, int(self.hparams["paper_iterations"])) if ctx.preset == "paper" else n)
        self.optimizer, self.scheduler = ctx.make_optimizer(self.parameters())

    @classmethod
    def estimate_cost_s(cls, plans: dict, preset: str, config: str, budget) -> float:
        cfg = ((plans.get("presets") or {}).get(preset) or {}).get("configurations", {}).get(config) or {}
        n = float(cfg.get("num_iterations") or 0)
        n = max(n, cls.hparams["paper_iterations"]) if preset == "paper" else n
        return max(1.0, 2.0 * n * float(cfg.get("step_time_estimate_s") or 0.0))  # two batches per step

    def training_step(self, labelled, unlabelled, ctx):
        net = self.networks["network"]
        xl, xu = labelled["data"], unlabelled["data"]
        z = net(torch.cat([xl, xu]))
        energy, c1, c2, area = acwe_energy(torch.sigmoid(z), torch.cat([xl, xu]), float(self.hparams["w_area"]))
        net.track_phases(c1, c2, area)
        zl = z[: xl.shape[0]]
        target = (labelled["seg"] > 0).float()
        if self.hparams["label_loss"] == "dice_ce":
            sup = ctx.segmentation_loss(torch.cat([torch.zeros_like(zl), zl], dim=1), target.long())
        else:
            sup = active_contour_loss(torch.sigmoid(zl), target, float(self.hparams["lambda_region"]))
        share = xl.shape[0] / (xl.shape[0] + xu.shape[0])  # the labelled images' share of the batch's pixels
        loss = energy + float(self.hparams["lambda_label"]) * share * sup
        return {"loss": loss, "energy": energy.detach(), "label_loss": sup.detach(), "label_share": share,
                "c1": c1, "c2": c2, "area": area}
