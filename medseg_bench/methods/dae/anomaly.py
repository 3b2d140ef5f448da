"""``dae_anomaly``: the DAE's reconstruction error as an unsupervised segmentation (budget 0).

A. Kascenas, N. Pugeault, A. Q. O'Neil, "Denoising Autoencoders for Unsupervised Anomaly Detection
in Brain MRI", MIDL 2022 (PMLR 172:653-664); the pre-training of J. Holzschuh et al., MIDL 2023.

Training: none of its own — the cell loads the shared DAE stage of :mod:`._stage`
(:func:`~._stage.pretrained_dae`, trained once per dataset, preset, configuration and seed on every
training image, labels unread), the very checkpoint every budget of ``dae_finetune`` starts from;
whichever of the two rows reaches it first trains it (the runner groups them by their common
``shared_stages``), the other loads it. A cell killed while training the stage resumes it from the
stage folder's checkpoint. The cell writes the loaded weights as its own final checkpoint (so
``medseg-bench predict`` loads the run like any other) and reports the stage's training time as
its ``train_time_s`` (``pretrain_time_s``), whether it trained the stage or loaded it. Inference on one
preprocessed image ``x``: the reconstruction ``DAE(x)`` over overlapping windows (no noise), the
anomaly map ``a = median5(mean_c |x - DAE(x)|)`` (:func:`~._noise.anomaly_map`, per slice for a 2D
network on a volume), and the label-free threshold rule **per-image Otsu in the body**: ``t`` is
Otsu's threshold of ``a`` over the image's label-free foreground (:func:`~._noise.foreground_mask`);
voxels with ``a > t`` inside the body are the foreground class. The DAE paper picks its threshold
on labelled validation data; no label is read here. Probabilities are ``p = a / (a + t)`` inside the
body (0.5 at the threshold, monotone in ``a``) and 0 outside, so ``argmax`` gives the rule.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..registry import register_method
from ._noise import anomaly_map, foreground_mask, otsu_threshold
from ._stage import (
    DAE_HPARAMS,
    STAGE_PREFIX,
    DaePretrain,
    dae_optimiser_settings,
    dae_stage_cost_s,
    pretrained_dae,
)

__all__ = ["DaeAnomaly", "threshold_anomaly_map"]

CITATION = ("A. Kascenas, N. Pugeault, A. Q. O'Neil, Denoising Autoencoders for Unsupervised Anomaly Detection in "
            "Brain MRI, MIDL 2022, PMLR 172:653-664; pre-training as in J. Holzschuh et al., MIDL 2023")


def threshold_anomaly_map(amap: np.ndarray, body: np.ndarray) -> tuple[np.ndarray, float]:
    """The rule of the module docstring: ``(p_foreground (*spatial) float32, t)`` for an anomaly map
    and a boolean body mask of the same shape. An empty body or a constant map gives no foreground."""
    amap = np.asarray(amap, np.float32)
    body = np.asarray(body, bool)
    if amap.shape != body.shape:
        raise ValueError(f"anomaly map {amap.shape} and body mask {body.shape} differ")
    vals = amap[body]
    if vals.size == 0 or float(vals.max()) <= float(vals.min()):
        return np.zeros_like(amap), float("inf")
    t = max(otsu_threshold(vals), 1e-12)
    p = np.where(body, amap / (amap + t), 0.0).astype(np.float32)
    p[body & (amap <= t)] = np.minimum(p[body & (amap <= t)], 0.5 - 1e-6)  # ties at t are background
    return p, t


@register_method
class DaeAnomaly(DaePretrain):
    """Denoising auto-encoder anomaly map, thresholded by per-image Otsu in the body (module docstring)."""

    name = "dae_anomaly"
    demo_datasets = ("spect_bone",)  # demo grid only, for cost (see Method.demo_datasets)
    family = "unsupervised"
    citation = CITATION
    dims = (2, 3)
    needs_labels = False
    uses_unlabelled = True
    budgets = "zero_only"
    class_rule = ("label-free: per-image Otsu threshold of the median-filtered DAE reconstruction error inside the "
                  "body mask; above it is foreground")
    shared_stages = (STAGE_PREFIX,)  # the same stage as dae_finetune (one DAE per dataset, preset, seed)
    hparams = {**DAE_HPARAMS, **dae_optimiser_settings(DAE_HPARAMS), "median_kernel": 5}

    @classmethod
    def estimate_cost_s(cls, plans: dict, preset: str, config: str, budget) -> float:
        """One cell's own work: none beyond loading the stage (inference is not modelled for any
        row), so the grid's 1 s floor; the DAE is :meth:`estimate_stage_cost_s`."""
        return 1.0

    @classmethod
    def estimate_stage_cost_s(cls, plans: dict, preset: str, config: str) -> dict[str, float]:
        """The DAE stage shared with ``dae_finetune`` (:func:`~._stage.dae_stage_cost_s`), charged
        once per (dataset, preset, configuration, seed) by the grid."""
        return dae_stage_cost_s(plans, preset, config)

    def setup(self, ctx) -> None:
        if ctx.num_classes != 2:
            raise ValueError(f"{self.name} gives one anomaly class; dataset {ctx.dataset!r} has "
                             f"{ctx.num_classes - 1} foreground classes")
        super().setup(ctx)

    def fit(self, ctx) -> dict:
        """Load (or, first, train) the shared DAE stage; write its weights as this run's final checkpoint."""
        from ...training.checkpoint import save_checkpoint
        from ...training.loop import CHECKPOINT_FINAL

        state, stage = pretrained_dae(ctx, self.hparams)
        self.networks["network"].load_state_dict(state)
        pre_s = float(stage.get("train_time_s", 0.0))
        save_checkpoint(Path(ctx.run_dir) / CHECKPOINT_FINAL,
                        {"iteration": int(stage["iterations"]), "method": self.state_dict(), "train_time_s": pre_s,
                         "settings": ctx.settings, "stage": str(Path(stage["final_checkpoint"]).parent)})
        return {"iterations": int(stage["iterations"]), "train_time_s": pre_s, "pretrain_time_s": pre_s,
                "resumed_from": int(stage.get("resumed_from") or 0), "stage": stage["stage"]}

    @torch.inference_mode()
    def predict_probabilities(self, image: np.ndarray, ctx) -> np.ndarray:
        """``(2, *spatial)`` probabilities of one preprocessed image (module docstring)."""
        from ...training.inference import sliding_window_outputs

        net = self.networks["network"]
        net.eval()
        image = np.asarray(image, np.float32)
        rec = sliding_window_outputs(net, image, ctx.patch_size, ctx.device,
                                     overlap=float(ctx.settings.get("sw_overlap", 0.5)),
                                     sw_batch_size=int(ctx.settings.get("sw_batch_size", 4)), autocast=ctx.autocast)
        amap = anomaly_map(image, rec, int(self.hparams["median_kernel"]), patch_dims=ctx.spatial_dims)
        body = foreground_mask(torch.from_numpy(image)[None])[0, 0].numpy()
        p, _ = threshold_anomaly_map(amap, body)
        return np.stack([1.0 - p, p]).astype(np.float32)
