"""Supervised baselines: the plan's U-Net trained on labelled cases only, Dice + cross-entropy.

* ``supervised``: the budget's labelled cases only — the lower bound every semi-supervised method
  must beat.
* ``supervised_full``: every labelled training case (budget ``all``) — the upper bound.

Both are nnU-Net-style (Isensee et al., "nnU-Net: a self-configuring method for deep learning-based
biomedical image segmentation", Nature Methods 18, 2021): DynUNet, Dice + CE, SGD with Nesterov
momentum 0.99 and a poly learning-rate schedule.
"""

from __future__ import annotations

from .base import Method
from .registry import register_method

__all__ = ["Supervised", "SupervisedFull"]

_CITATION = ("baseline: supervised U-Net as in Isensee et al., nnU-Net, Nature Methods 18:203-211 (2021), "
             "doi:10.1038/s41592-020-01008-z")


@register_method
class Supervised(Method):
    """The plan's U-Net on the budget's labelled cases (Dice + CE, SGD + poly)."""

    name = "supervised"
    family = "supervised"
    citation = _CITATION
    dims = (2, 3)
    needs_labels = True
    uses_unlabelled = False
    budgets = "labelled"
    hparams = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.99, "nesterov": True, "schedule": "poly"}

    def training_step(self, labelled, unlabelled, ctx):
        logits = self.networks["network"](labelled["data"])
        return {"loss": ctx.segmentation_loss(logits, labelled["seg"])}


@register_method
class SupervisedFull(Supervised):
    """Upper bound: the same network and schedule on every labelled training case."""

    name = "supervised_full"
    budgets = "all_only"
