"""``dae_finetune``: the DAE's weights with a new segmentation head, fine-tuned on the budget's labels.

J. Holzschuh et al., MIDL 2023 (pre-training with the DAE of Kascenas et al., MIDL 2022): stage A
is the cached DAE (:mod:`._stage`, trained once per dataset, preset, configuration and seed on every
training image without labels, shared by every budget and by ``dae_anomaly``); stage B copies every
weight of it into the plan's U-Net except the output layer (``output_block``: the reconstruction
head has ``C`` outputs, the segmentation head ``K`` classes, freshly initialised) and trains it on
the budget's labelled cases exactly as ``supervised``: Dice + CE, SGD (Nesterov, momentum 0.99),
lr 0.01, poly, the same iterations, patches, batch size and augmentation — so the comparison the
paper makes (fine-tuned vs from scratch at the same budget) is the one the leaderboard shows.

Model selection: none — the last iterate is used, as ``supervised``; no validation or test label is
read. Cost: the record's ``train_time_s`` is the fine-tuning plus the DAE stage's training time
(paid once, counted in every budget's row so the cost table shows the pre-training). The runner's
estimate counts the stage once per group instead (:meth:`DaeFinetune.estimate_stage_cost_s`).
"""

from __future__ import annotations

from ..base import Method, plan_training_s
from ..registry import register_method
from ..supervised import Supervised
from ._stage import DAE_HPARAMS, STAGE_PREFIX, dae_stage_cost_s, pretrained_dae

__all__ = ["DaeFinetune", "HEAD_PREFIX", "transfer_weights"]

HEAD_PREFIX = "output_block."  # DynUNet's output layer (and its deep-supervision heads: none here)


def transfer_weights(target, source_state: dict) -> list[str]:
    """Load ``source_state`` into ``target`` except the output head (:data:`HEAD_PREFIX`); returns the
    keys copied. Raises ``ValueError`` when a body weight is missing or has another shape."""
    own = target.state_dict()
    body = {k: v for k, v in source_state.items() if not k.startswith(HEAD_PREFIX)}
    missing = [k for k in own if not k.startswith(HEAD_PREFIX) and k not in body]
    bad = [k for k, v in body.items() if k not in own or own[k].shape != v.shape]
    if missing or bad:
        raise ValueError(f"DAE weights do not fit the segmentation network: missing {missing[:5]}, mismatched {bad[:5]}")
    target.load_state_dict(body, strict=False)
    return sorted(body)


@register_method
class DaeFinetune(Method):
    """DAE pre-training, then ``supervised``'s training on the budget's labels (module docstring)."""

    name = "dae_finetune"
    demo_datasets = ("spect_bone",)  # demo grid only, for cost (see Method.demo_datasets)
    family = "semi-supervised"
    citation = ("J. Holzschuh et al., MIDL 2023 (DAE pre-training and fine-tuning); DAE: A. Kascenas, N. Pugeault, "
                "A. Q. O'Neil, Denoising Autoencoders for Unsupervised Anomaly Detection in Brain MRI, MIDL 2022")
    dims = (2, 3)
    needs_labels = True
    uses_unlabelled = False  # the engine loop is the fine-tuning; the unlabelled images feed the stage
    budgets = "labelled"
    shared_stages = (STAGE_PREFIX,)  # the same stage as dae_anomaly (one DAE per dataset, preset, seed)
    hparams = {**Supervised.hparams, **DAE_HPARAMS}

    def fit(self, ctx):
        state, stage = pretrained_dae(ctx, self.hparams)
        self.transferred = transfer_weights(self.networks["network"], state)
        summary = dict(ctx.run_loop(self))
        summary["finetune_time_s"] = float(summary.get("train_time_s", 0.0))
        summary["pretrain_time_s"] = float(stage.get("train_time_s", 0.0))
        summary["train_time_s"] = summary["finetune_time_s"] + summary["pretrain_time_s"]
        return summary

    def training_step(self, labelled, unlabelled, ctx):
        logits = self.networks["network"](labelled["data"])
        return {"loss": ctx.segmentation_loss(logits, labelled["seg"])}

    @classmethod
    def estimate_cost_s(cls, plans: dict, preset: str, config: str, budget) -> float:
        """One cell's own work: the fine-tuning, as ``supervised`` (the plan's U-Net time); the DAE
        stage is :meth:`estimate_stage_cost_s`, charged once per group by the grid."""
        return max(1.0, plan_training_s(plans, preset, config))

    @classmethod
    def estimate_stage_cost_s(cls, plans: dict, preset: str, config: str) -> dict[str, float]:
        """The DAE stage: as many iterations as ``supervised`` at a similar step (the same U-Net with
        a reconstruction head); one stage for this row's budgets and ``dae_anomaly``."""
        return dae_stage_cost_s(plans, preset, config)
