"""``dae_anomaly``: the DAE's reconstruction error as an unsupervised segmentation (budget 0).

A. Kascenas, N. Pugeault, A. Q. O'Neil, "Denoising Autoencoders for Unsupervised Anomaly Detection
in Brain MRI", MIDL 2022 (PMLR 172:653-664); the pre-training of J. Holzschuh et al., MIDL 2023.

Training: the DAE of :mod:`._stage` (:class:`~._stage.DaePretrain`: the same recipe, settings and
iterations as ``dae_finetune``'s stage), run as this cell's own engine loop in its run folder —
budget 0 is one cell per (dataset, preset, seed), and a loop of its own keeps the engine's
checkpoint/resume contract (a cell that only loaded a shared stage would have nothing to resume).
The price: the DAE is trained twice per (dataset, preset, seed), here and in ``dae_finetune``'s
stage. Inference on one
preprocessed image ``x``: the reconstruction ``DAE(x)`` over overlapping windows (no noise), the
anomaly map ``a = median5(mean_c |x - DAE(x)|)`` (:func:`~._noise.anomaly_map`, per slice for a 2D
network on a volume), and the label-free threshold rule **per-image Otsu in the body**: ``t`` is
Otsu's threshold of ``a`` over the image's label-free foreground (:func:`~._noise.foreground_mask`);
voxels with ``a > t`` inside the body are the foreground class. The DAE paper picks its threshold
on labelled validation data; no label is read here. Probabilities are ``p = a / (a + t)`` inside the
body (0.5 at the threshold, monotone in ``a``) and 0 outside, so ``argmax`` gives the rule.
"""

from __future__ import annotations

import numpy as np
import torch

from ..registry import register_method
from ._noise import anomaly_map, foreground_mask, otsu_threshold
from ._stage import DAE_HPARAMS, DaePretrain, dae_optimiser_settings

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
    hparams = {**DAE_HPARAMS, **dae_optimiser_settings(DAE_HPARAMS), "median_kernel": 5}

    def setup(self, ctx) -> None:
        if ctx.num_classes != 2:
            raise ValueError(f"{self.name} gives one anomaly class; dataset {ctx.dataset!r} has "
                             f"{ctx.num_classes - 1} foreground classes")
        super().setup(ctx)

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
