"""``acwe_unet_finetune``: the plan's U-Net pre-trained with the ACWE energy, then fine-tuned as ``supervised``.

The fair row for the question ACWE-ConvNet's modes 2/3 ask (does label-free Chan–Vese pre-training
help the labelled training?). The paper's R2Net cannot answer it here: it has no down-sampling, a
receptive field of 25 pixels and 26 k parameters, so with every label it stays far below the plan's
U-Net (1.9 M parameters, a receptive field over the whole patch) — see the method README. This
variant keeps the network, the loss (Dice + CE), the optimiser (SGD, Nesterov 0.99, poly) and the
iteration count of ``supervised`` and changes one thing: the weights it starts from.

Stage A (budget-independent, cached under ``ctx.stage_dir``, shared by every budget): the U-Net on
every training image (labels unread) with the soft Chan–Vese energy of Chen & Frey
(:func:`~.losses.acwe_energy`, no length term, ``w_area = 5e-4``) on ``p = softmax(logits)[1]``; the
energy's image is each patch min–max scaled to [0, 1] (the paper's scaling, per patch), while the
network sees the plan's normalisation as in stage B; intensity augmentation off (it changes the
intensities the energy models); the U-Net's own optimiser and schedule, for ``supervised``'s
iteration count. Stage B: the budget's labelled cases, exactly ``supervised``. The pre-training is
paid once, by the first budget's cell (:meth:`AcweUNetFinetune.estimate_stage_cost_s` counts it).
Polarity needs no rule: stage B's labels decide which output channel is the foreground.
"""

from __future__ import annotations

import dataclasses

import torch

from ...training.stages import base_iterations, set_iterations, stage_key, train_stage
from ..base import Method, plan_training_s
from ..registry import register_method
from ..supervised import Supervised
from .losses import acwe_energy
from .method import _CITATION, _INTENSITY_AUG

__all__ = ["AcweUNetFinetune", "AcweUNetPretrain", "patch_minmax"]


def patch_minmax(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Each sample and channel of ``(B, C, *spatial)`` scaled to [0, 1] by its min and max (constant: 0)."""
    flat = x.flatten(2)
    lo = flat.min(dim=2).values
    hi = flat.max(dim=2).values
    shape = x.shape[:2] + (1,) * (x.ndim - 2)
    span = (hi - lo).view(shape)
    return torch.where(span > eps, (x - lo.view(shape)) / span.clamp_min(eps), torch.zeros_like(x))


class AcweUNetPretrain(Method):
    """Stage A: the plan's U-Net trained with the ACWE energy on unlabelled images (not registered:
    it is a stage of :class:`AcweUNetFinetune`)."""

    name = "acwe_unet_pretrain"
    family = "unsupervised"
    citation = _CITATION
    needs_labels = False
    uses_unlabelled = True
    budgets = "zero_only"
    hparams = {**Supervised.hparams, "w_area": 5e-4}

    def train_context(self, ctx):
        settings = dict(ctx.settings)
        settings["augmentation"] = {k: v for k, v in (settings.get("augmentation") or {}).items()
                                    if k not in _INTENSITY_AUG}
        return dataclasses.replace(ctx, settings=settings)

    def setup(self, ctx) -> None:
        set_iterations(ctx, base_iterations(ctx))
        super().setup(ctx)

    def training_step(self, labelled, unlabelled, ctx):
        x = unlabelled["data"]
        p = torch.softmax(self.networks["network"](x).float(), dim=1)[:, 1:2]
        energy, c1, c2, area = acwe_energy(p, patch_minmax(x.float()), float(self.hparams["w_area"]))
        return {"loss": energy, "c1": c1, "c2": c2, "area": area}


@register_method
class AcweUNetFinetune(Supervised):
    """The plan's U-Net, ACWE-pre-trained without labels (stage A), then trained exactly as
    ``supervised`` on the budget's labelled cases (stage B). See the module docstring."""

    name = "acwe_unet_finetune"
    demo_datasets = ("spect_bone",)  # the paper's setting; demo grid only (see Method)
    family = "semi-supervised"
    citation = _CITATION + "; variant: the plan's U-Net (nnU-Net, Isensee et al. 2021) pre-trained with the ACWE energy"
    needs_labels = True
    uses_unlabelled = True  # in the cached pre-training stage
    budgets = "labelled"
    shared_stages = ("acwe_unet_pretrain",)
    hparams = {**Supervised.hparams, "w_area": 5e-4}

    def __init__(self, **overrides):
        super().__init__(**overrides)
        self.uses_unlabelled = False  # the engine loop here is stage B: labelled batches only

    @classmethod
    def estimate_cost_s(cls, plans: dict, preset: str, config: str, budget) -> float:
        """One cell's own work: stage B, as ``supervised`` (the plan's U-Net time); stage A is
        :meth:`estimate_stage_cost_s`. (This used to return ``2 × super().estimate_cost_s``, but
        ``Supervised`` has no such hook, so the grid fell back to 1 × the U-Net time for every cell.)"""
        return max(1.0, plan_training_s(plans, preset, config))

    @classmethod
    def estimate_stage_cost_s(cls, plans: dict, preset: str, config: str) -> dict[str, float]:
        """Stage A: ``supervised``'s iterations of the same U-Net (the plan's U-Net time), trained by
        the first budget's cell and charged once per group by the grid."""
        return {"acwe_unet_pretrain": max(1.0, plan_training_s(plans, preset, config))}

    def pretrained_state(self, ctx) -> dict:
        ids = sorted(set(ctx.labelled_ids) | set(ctx.unlabelled_ids))
        blob = {"hparams": self.hparams, "patch": ctx.patch_size, "ids": ids, "iterations": base_iterations(ctx),
                "settings": {k: ctx.settings.get(k) for k in ("batch_size", "augmentation")},
                "dataset_hash": ctx.plans.get("dataset_hash"), "in_channels": ctx.in_channels}
        pre = AcweUNetPretrain(**{k: self.hparams[k] for k in AcweUNetPretrain.hparams})
        _, self.stage_folder = train_stage(ctx, pre, f"acwe_unet_pretrain-{ctx.configuration}-{stage_key(blob)}", ids,
                                           desc=f"{pre.name} pre-training")
        return pre.networks["network"].state_dict()

    def fit(self, ctx):
        self.networks["network"].load_state_dict(self.pretrained_state(ctx))
        return ctx.run_loop(self)
