"""A complete custom method in one file: semi-supervised entropy minimisation.

Grandvalet & Bengio, "Semi-supervised Learning by Entropy Minimization", NeurIPS 2004: besides the
supervised loss on the budget's labelled patches, minimise the mean per-voxel entropy of the
network's softmax on unlabelled patches, pushing decision boundaries into low-density regions.

Submit it (validation, training on staged data without test labels, a bundle of predictions)::

    medseg-bench submit examples/entropy_min_method.py --datasets retina_ga_small --budgets 2 --seeds 0
    medseg-bench leaderboard --add medseg_work/submissions/entropy_min

Everything else (network from the plan, optimiser, schedule, checkpoints, resume, sliding-window
inference, export to raw geometry) is the engine's; a method only says what one training step is.
"""

from __future__ import annotations

import torch

from medseg_bench.methods import Method, register_method


@register_method
class EntropyMinimisation(Method):
    """U-Net from the plan; Dice + CE on labelled patches + ``weight`` x entropy on unlabelled ones."""

    name = "entropy_min"
    family = "semi-supervised"
    citation = ("Grandvalet & Bengio, Semi-supervised Learning by Entropy Minimization, "
                "NeurIPS 2004")
    dims = (2, 3)
    needs_labels = True
    uses_unlabelled = True
    budgets = "labelled"
    hparams = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.99, "nesterov": True, "schedule": "poly",
               "entropy_weight": 0.1, "entropy_rampup": 0.25}

    def training_step(self, labelled, unlabelled, ctx):
        net = self.networks["network"]
        losses = {}
        loss = torch.zeros((), device=ctx.device)
        if labelled is not None:
            sup = ctx.segmentation_loss(net(labelled["data"]), labelled["seg"])
            losses["supervised"] = sup
            loss = loss + sup
        if unlabelled is not None:
            probs = torch.softmax(net(unlabelled["data"]), dim=1)
            entropy = -(probs * torch.log(probs.clamp_min(1e-8))).sum(dim=1).mean()
            # linear ramp-up over the first quarter of training: early predictions are noise
            ramp = min(1.0, (ctx.iteration + 1) / max(1.0, self.hparams["entropy_rampup"] * ctx.iterations))
            losses["entropy"] = entropy
            loss = loss + self.hparams["entropy_weight"] * ramp * entropy
        losses["loss"] = loss
        return losses
