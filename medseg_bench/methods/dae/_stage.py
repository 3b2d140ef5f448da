"""The budget-independent DAE stage: the plan's U-Net trained as a denoising auto-encoder, cached.

Stage A of Holzschuh et al. (MIDL 2023), with the DAE of Kascenas et al. (MIDL 2022): the plan's
U-Net (:meth:`RunContext.build_network` with ``out_channels = in_channels``, a reconstruction
head) gets ``x + coarse noise`` (:func:`~._noise.coarse_noise`) and is trained to give back the clean
``x``; the loss is the mean squared error over the label-free foreground
(:func:`~._noise.foreground_mask`). It sees every training image (the budget's cases and the
unlabelled pool, labels never read) and is trained once per (dataset, preset, configuration, seed)
under ``ctx.stage_dir``: ``dae_anomaly`` (budget 0) and every budget of ``dae_finetune`` load the
same checkpoint (both declare the shared stage ``dae-``, so the runner computes it in one cell of
the group and starts the others after it). The stage is seeded with the cell's seed and leaves the
caller's random state as it found it (:func:`~medseg_bench.training.stages.train_stage`), so it is
the same whichever row computes it, and a row's own training is the same whether the stage was
trained in its cell or loaded.

Schedule: as many iterations as ``supervised`` runs in the cell
(:func:`~medseg_bench.training.stages.base_iterations`), the plan's
patches, batch size and augmentation. Optimiser: AdamW, lr 1e-3, weight decay 1e-5, poly decay. The
DAE code uses Adam (AMSGrad) at lr 1e-4 for thousands of epochs; our CPU presets run a few hundred
iterations, where lr 1e-4 leaves the reconstruction close to the identity of the noisy input, so the
rate is ten times higher (the ``paper`` preset keeps the same rule; override ``dae_lr`` to change it).
"""

from __future__ import annotations

from ...training.stages import base_iterations, stage_key, train_stage
from ..base import Method, plan_training_s
from ._noise import coarse_noise, foreground_mask

__all__ = ["DAE_HPARAMS", "DaePretrain", "STAGE_PREFIX", "dae_optimiser_settings", "dae_stage_cost_s", "pretrained_dae",
           "stage_settings"]

#: the stage folders' name prefix (``dae-<configuration>-<key>``): the ``shared_stages`` of both DAE rows
STAGE_PREFIX = "dae-"

#: the DAE stage's own settings (prefixed ``dae_`` in the methods' hparams, so that ``dae_finetune``
#: keeps ``supervised``'s optimiser for its fine-tuning)
DAE_HPARAMS: dict = {"dae_optimizer": "adamw", "dae_lr": 1e-3, "dae_weight_decay": 1e-5, "dae_schedule": "poly",
                     "dae_sigma": 0.2, "dae_resolution": 16}


class DaePretrain(Method):
    """The denoising auto-encoder stage (module docstring); not registered (used by the DAE methods)."""

    name = "dae_pretrain"
    family = "unsupervised"
    needs_labels = False
    uses_unlabelled = True
    budgets = "zero_only"

    def setup(self, ctx) -> None:
        self.networks["network"] = ctx.build_network(out_channels=ctx.in_channels)
        self.optimizer, self.scheduler = ctx.make_optimizer(self.parameters())

    def training_step(self, labelled, unlabelled, ctx):
        x = unlabelled["data"]
        mask = foreground_mask(x)
        noise = coarse_noise(x, float(self.hparams.get("dae_sigma", 0.2)), int(self.hparams.get("dae_resolution", 16)),
                             mask=mask)
        rec = self.networks["network"](x + noise).float()
        m = mask.to(rec.dtype).expand_as(rec)
        mse = ((rec - x) ** 2 * m).sum() / m.sum().clamp_min(1.0)
        return {"loss": mse}


def dae_stage_cost_s(plans: dict, preset: str, config: str) -> dict[str, float]:
    """``{STAGE_PREFIX: seconds}``: the stage's rough cost for the runner's estimate — :func:`base_iterations`
    steps of the plan's U-Net (its reconstruction head costs about a segmentation head), i.e. the
    plan's ``supervised`` time. Both DAE rows return it; the grid charges it once per (dataset,
    preset, configuration, seed) (:func:`medseg_bench.bench.grid.estimate_grid_cost_s`)."""
    return {STAGE_PREFIX: max(1.0, plan_training_s(plans, preset, config))}


def dae_optimiser_settings(hp: dict) -> dict:
    """The engine settings (``optimizer``, ``lr``, ``weight_decay``, ``schedule``) of the DAE's ``dae_*`` hparams."""
    return {"optimizer": hp["dae_optimizer"], "lr": float(hp["dae_lr"]), "weight_decay": float(hp["dae_weight_decay"]),
            "schedule": hp["dae_schedule"]}


def stage_settings(ctx, hp: dict) -> dict:
    """The stage's training settings: the cell's, with the DAE's optimiser and the cell's
    :func:`base_iterations`."""
    s = dict(ctx.settings)
    s.update(dae_optimiser_settings(hp), iterations=base_iterations(ctx))
    return s


def pretrained_dae(ctx, hp: dict) -> tuple[dict, dict]:
    """The DAE trained on every training image of the cell (labelled ∪ unlabelled ids, labels unread),
    cached under the stage ``dae-<configuration>-<key>``; ``key`` hashes what changes the result (DAE
    hparams, settings, ids, dataset hash). Returns ``(state dict, stage loop summary)``."""
    ids = sorted(set(ctx.labelled_ids) | set(ctx.unlabelled_ids))
    settings = stage_settings(ctx, hp)
    dae_hp = {k: hp[k] for k in DAE_HPARAMS}
    blob = {"hparams": dae_hp, "ids": ids, "dataset_hash": ctx.plans.get("dataset_hash"),
            "settings": {k: settings.get(k) for k in ("patch_size", "batch_size", "augmentation", "network",
                                                      "iterations", "optimizer", "lr", "weight_decay", "schedule")}}
    pre = DaePretrain(**dae_hp)
    summary, _ = train_stage(ctx, pre, f"{STAGE_PREFIX}{ctx.configuration}-{stage_key(blob)}", ids, settings,
                             seed=int(ctx.seed))
    return pre.networks["network"].state_dict(), summary
