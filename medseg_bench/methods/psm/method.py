"""The ``psm`` method: label-free nuclei instance segmentation from prior self-activation maps.

P. Chen, C. Zhu, Z. Shui, J. Cai, S. Zheng, S. Zhang, L. Yang, "Unsupervised Dense Nuclei Detection and
Segmentation with Prior Self-activation Map For Histology Images", arXiv:2210.07862 (2022), and the
follow-up "Exploring Unsupervised Cell Recognition with Prior Self-activation Maps", MICCAI 2023,
arXiv:2308.11144 (code github.com/cpystan/PSM). The pipeline, in this suite's engine:

1. **activation network** (stage ``psm_ssl``): a ResNet with one output, trained from scratch on every
   training image without labels with the rotation-consistency loss ``|f(x) - f(rot180 x)|``
   (:mod:`.activation`); Adam, lr 1e-4 (the code);
2. **self-activation map**: Grad-CAM of its shallowest residual stage ``layer1``, whole image;
3. **pseudo-masks** (stage ``psm_masks``): jet(map) + RGB, k-means(3), the colour prior names the
   nuclei cluster, small objects removed and holes filled (:mod:`.pseudo_masks`);
4. **detection** (stage ``psm_detect``): the plan's U-Net trained with cross-entropy on the pseudo-masks;
   peaks of its nucleus probability -> points -> Voronoi labels (:mod:`.voronoi`);
5. **segmentation** (this cell's engine loop): the plan's U-Net trained with
   ``CE(pseudo-mask) + 1.5 * CE(Voronoi label)``, both with an ignore label; instances =
   8-connected components of its foreground (:meth:`Psm.to_instances`; the code scores AJI on
   ``skimage.measure.label`` of the prediction).

Stages 1–4 are budget-independent and cached under ``ctx.stage_dir`` per (dataset, preset, seed).
No label is read anywhere (the networks of stages 4–5 see pseudo-labels through
:class:`~.stages.PseudoLabelFolder`), and the checkpoint of every stage is its **last** one: the
official code keeps the epoch with the best AJI on the *test* set (``trainer_second_stage`` /
``trainer_final_stage``); this suite never selects on the test set nor on any label. After stage 5, :meth:`Psm.collapse_guard`
compares the network's foreground on a few training images with its pseudo-masks there (no label;
reported in ``psm_stages.json``, a warning below :data:`COLLAPSE_RATIO`, nothing selected on it).

Deviations from the code (all documented defaults, overridable through ``hparams``):

* networks: the code's activation network is timm's Res2Net-101 and its detection/segmentation
  networks a ResUNet-34 with an **ImageNet-pretrained** encoder. Here the activation network is a MONAI
  ResNet (``paper``: bottleneck blocks 3-4-23-3, the ResNet-101 layout; CPU presets: basic blocks
  1-1-1-1, widths 16-128), and both later networks are the plan's U-Net from scratch — the same
  network the ``supervised`` baseline trains, so the comparison isolates the labels. timm, torchvision
  and grad-cam cannot be installed beside the CPU torch 2.13.0 this suite pins (so no pretrained
  weights either);
* inputs: every stage sees the suite's ``rgb01`` images (the code trains its activation network on
  0–255 values but computes Grad-CAM on 0–1 tensors); the code works on the 512 × 512 centre crop of
  each MoNuSeg tile (training and test), here on whole images and random patches;
* losses: plain cross-entropy (the code applies ``NLLLoss`` to ``log_softmax(softmax(z))``, a double
  softmax);
* ``mask_foreground``: the code ignores the pseudo-mask's foreground (``label[label == 255] = 2`` with
  ``ignore_index=2``), so only its background and the Voronoi labels' dilated points (nucleus) and
  edges (background) supervise — kept under ``paper``. On the CPU presets that target collapses:
  on nuclei_he_tiny (``demo``) the network predicted no foreground pixel at all, a failure visible
  without labels (the pseudo-masks cover 26 % of the training pixels). ``demo``/``quick`` therefore
  use the pseudo-mask as a full target (``"nucleus"``: foreground = class 1), the reading of
  "CE(pseudo-mask)" in the paper's text;
* schedules: ``paper`` = the code's options (100 epochs, Adam lr 1e-4 without weight decay for every
  stage — ``options.py`` defaults to ADAM; its momentum 0.9 applies only to ``--optimizer SGD`` —
  batch 1 for the activation network (``train_base``), batch 4 and 512 × 512 patches for the others;
  the 288 of ``options.py`` is the ViT ``patch_size``, unused by these CNNs). ``demo``/``quick`` (CPU):
  the segmentation network runs the plan's iterations with the engine's optimiser (as
  ``supervised``), the detection network ``detect_fraction`` and the activation network
  ``ssl_fraction`` of them.

Cost choice (ours): the detection network predicts every training image with sliding windows that
overlap by ``stage_sw_overlap`` = 0.25 (the test set: the plan's 0.5), 2.3 times fewer windows (the
code predicts its 512 × 512 crops in one pass).

Pixel constants are the code's at MoNuSeg's 0.25 µm per pixel and are scaled to the plan's pixel
spacing (:func:`~.pseudo_masks.scale_factor`): 200 px minimum object area, 64 px holes, peaks 6 px
apart, merged within 20 px, smoothing sigma 2.3 px, points dilated by 2 px, Voronoi edges 2 px wide. PSM needs RGB (H&E)
images: :meth:`Psm.applies_to` keeps it off grey datasets in benchmark grids.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

from ...training.stages import write_json
from ..base import Method, plan_training_s
from ..registry import register_method
from .pseudo_masks import REFERENCE_SPACING_MM, scale_factor
from .stages import (
    PseudoLabelFolder,
    decode_targets,
    detection_stage,
    mask_stage,
    masked_cross_entropy,
    ssl_stage,
)

__all__ = ["COLLAPSE_RATIO", "Psm"]

#: predicted / pseudo-mask foreground on training images below which :meth:`Psm.collapse_guard` warns
COLLAPSE_RATIO = 0.25

_CITATION = ("P. Chen, C. Zhu, Z. Shui, J. Cai, S. Zheng, S. Zhang, L. Yang, Unsupervised Dense Nuclei Detection and "
             "Segmentation with Prior Self-activation Map For Histology Images, arXiv:2210.07862 (2022); follow-up: "
             "Exploring Unsupervised Cell Recognition with Prior Self-activation Maps, MICCAI 2023, arXiv:2308.11144")

_PAPER = {"epochs": 100, "batch_size": 4, "ssl_batch_size": 1, "patch_size": 512, "lr": 1e-4,
          "ssl_widths": [64, 128, 256, 512], "ssl_blocks": [3, 4, 23, 3], "ssl_block": "bottleneck"}


@register_method
class Psm(Method):
    """PSM (Chen et al.): see the module docstring."""

    name = "psm"
    family = "unsupervised"
    citation = _CITATION
    dims = (2,)
    needs_labels = False
    uses_unlabelled = True
    budgets = "zero_only"
    predicts_instances = True
    class_rule = ("label-free colour prior: of 3 k-means clusters of jet(self-activation) + RGB, the one with the "
                  "lowest mean blue+green activation colour + red+green image colour is nuclei (the code's rule)")
    shared_stages = ("psm_ssl", "psm_masks", "psm_detect")
    hparams = {
        # 1-2: activation network and map (Adam 1e-4 as the code; CPU-sized ResNet)
        "ssl_widths": [16, 32, 64, 128], "ssl_blocks": [1, 1, 1, 1], "ssl_block": "basic", "ssl_lr": 1e-4,
        "ssl_fraction": 0.5, "activation_layer": "layer1",
        # 3: pseudo-masks (pixel sizes at REFERENCE_SPACING_MM)
        "beta": 1.0, "heat_order": "bgr", "min_object_px": 200, "max_hole_px": 64, "kmeans_fit_pixels": 65536,
        "reference_spacing_mm": REFERENCE_SPACING_MM,
        # 4: detection and points
        "detect_fraction": 0.5, "peak_threshold": 0.5, "peak_min_distance_px": 6, "merge_distance_px": 20,
        "peak_sigma_px": 2.3, "point_radius_px": 2, "edge_width_px": 2, "stage_sw_overlap": 0.25,
        # 5: segmentation, and the label-free collapse check on `guard_images` training images
        "voronoi_weight": 1.5, "instance_min_px": 0, "guard_images": 8,
        "mask_foreground": {"paper": "ignore", "quick": "nucleus", "demo": "nucleus"},  # a value or {preset: value}
        "paper": _PAPER,
    }

    def __init__(self, **overrides):
        super().__init__(**overrides)
        mf = self.hparams["mask_foreground"]
        if not all(v in ("ignore", "nucleus") for v in (mf.values() if isinstance(mf, dict) else [mf])):
            raise ValueError(f"mask_foreground must be 'ignore' or 'nucleus' (or a dict preset -> one), got {mf!r}")
        # this cell's engine loop trains on pseudo-labels (read as labels from the stage folders)
        self.needs_labels, self.uses_unlabelled = True, False

    # -- applicability -----------------------------------------------------------------------------
    @classmethod
    def applies_to(cls, plans: dict) -> bool:
        """PSM's colour prior needs RGB images: 3 channels and ``plans["rgb"]``."""
        return bool(plans.get("rgb")) and int(plans.get("num_channels", 0)) == 3

    @classmethod
    def recommended_configuration(cls, plans: dict, preset: str) -> str | None:
        configs = ((plans.get("presets") or {}).get(preset) or {}).get("configurations") or {}
        return "2d" if "2d" in configs else None

    def _check(self, ctx) -> None:
        if not self.applies_to(ctx.plans) or ctx.in_channels != 3:
            raise ValueError(f"{self.name} needs RGB (H&E) images: dataset {ctx.dataset!r} has "
                             f"{ctx.plans.get('num_channels', ctx.in_channels)} channel(s), rgb={bool(ctx.plans.get('rgb'))}")
        if ctx.num_classes != 2:
            raise ValueError(f"{self.name} segments one class (nuclei); dataset {ctx.dataset!r} has {ctx.num_classes - 1}")
        if ctx.spatial_dims != 2:
            raise ValueError(f"{self.name} is 2D; configuration {ctx.configuration!r} has {ctx.spatial_dims}D patches")

    # -- schedules ---------------------------------------------------------------------------------
    def _train_ids(self, ctx) -> list[str]:
        return sorted(set(ctx.labelled_ids) | set(ctx.unlabelled_ids))

    def _paper_iterations(self, n_images: int, batch: int) -> int:
        return int(self.hparams["paper"]["epochs"]) * max(1, math.ceil(max(1, n_images) / batch))

    def stage_settings(self, ctx, stage: str) -> tuple[dict, int]:
        """``(settings, iterations)`` of ``stage`` in ``("ssl", "detect", "segment")``."""
        hp, pp = self.hparams, self.hparams["paper"]
        plan = getattr(self, "_plan_settings", None) or ctx.settings  # as resolved, before setup changed them
        base = int(plan.get("plan_iterations", plan["iterations"]))
        s = dict(plan)
        if ctx.preset == "paper":
            s.update(patch_size=[int(pp["patch_size"])] * 2, optimizer="adamw", lr=float(pp["lr"]), weight_decay=0.0,
                     schedule="constant", batch_size=int(pp["ssl_batch_size" if stage == "ssl" else "batch_size"]))
        if stage == "ssl":
            s.update(optimizer="adamw", lr=float(hp["ssl_lr"]), weight_decay=0.0, schedule="constant")
        if stage == "segment":
            s["oversample_foreground"] = 0.0  # the label channel holds target codes, not classes
        if stage == "detect":
            s["sw_overlap"] = float(hp["stage_sw_overlap"])  # its sliding windows over every training image
        if ctx.preset == "paper":
            n = self._paper_iterations(len(self._train_ids(ctx)), s["batch_size"])
        else:
            frac = {"ssl": hp["ssl_fraction"], "detect": hp["detect_fraction"], "segment": 1.0}[stage]
            n = max(1, int(round(base * float(frac))))
        return s, n

    def _net_hparams(self, ctx) -> dict:
        src = self.hparams["paper"] if ctx.preset == "paper" else self.hparams
        return {"widths": list(src["ssl_widths"]), "blocks": list(src["ssl_blocks"]), "block": src["ssl_block"]}

    def scale(self, ctx) -> float:
        """Pixel-size factor of this dataset's plan relative to the code's MoNuSeg pixels."""
        cfg = (ctx.plans.get("configurations") or {}).get(ctx.configuration) or {}
        return scale_factor(cfg.get("spacing"), float(self.hparams["reference_spacing_mm"]))

    @classmethod
    def estimate_cost_s(cls, plans: dict, preset: str, config: str, budget) -> float:
        """One cell's own work: the segmentation network, the plan's U-Net time; the cached stages
        are :meth:`estimate_stage_cost_s` (together the old ``1.3 + detect_fraction`` × U-Net time)."""
        return max(1.0, plan_training_s(plans, preset, config))

    @classmethod
    def estimate_stage_cost_s(cls, plans: dict, preset: str, config: str) -> dict[str, float]:
        """The cached stages, in the plan's U-Net time: the cheap activation network with the
        pseudo-mask inference (``psm_ssl`` + ``psm_masks``, ~0.3, booked under ``psm_ssl``) and the
        detection network (``psm_detect``, ``detect_fraction``). Charged once per (dataset, preset,
        configuration, seed); ``psm`` runs at budget 0 only, so that is once per cell, as before."""
        base = plan_training_s(plans, preset, config)
        return {"psm_ssl": 0.3 * base, "psm_detect": float(cls.hparams["detect_fraction"]) * base}

    # -- training ----------------------------------------------------------------------------------
    def setup(self, ctx) -> None:
        self._check(ctx)
        ctx.settings.setdefault("plan_iterations", ctx.iterations)
        self._plan_settings = dict(ctx.settings)
        settings, n = self.stage_settings(ctx, "segment")
        settings["iterations"] = n
        ctx.settings.clear()
        ctx.settings.update(settings)  # the record states what the segmentation network ran
        self.networks["network"] = ctx.build_network(out_channels=2)
        self.optimizer, self.scheduler = ctx.make_optimizer(self.parameters())

    def fit(self, ctx):
        ids = self._train_ids(ctx)
        if not ids:
            raise ValueError(f"{self.name}: no training images (budget {ctx.budget!r}, empty pool)")
        scale = self.scale(ctx)
        s1, n1 = self.stage_settings(ctx, "ssl")
        net, ssl_key, ssl_dir = ssl_stage(ctx, s1, n1, self._net_hparams(ctx), ids)
        mask_key, mask_dir = mask_stage(ctx, net, ssl_key, self.hparams, scale, ids)
        del net
        s4, n4 = self.stage_settings(ctx, "detect")
        det_dir = detection_stage(ctx, s4, n4, mask_key, mask_dir, self.hparams, scale, ids)
        stages = {"scale": scale, "iterations": {"ssl": n1, "detect": n4, "segment": ctx.iterations},
                  "folders": {"ssl": str(ssl_dir), "masks": str(mask_dir), "detect": str(det_dir)}}
        if ctx.run_dir is not None:
            ctx.run_dir.mkdir(parents=True, exist_ok=True)
            write_json(ctx.run_dir / "psm_stages.json", stages)
        sctx = dataclasses.replace(ctx, folder=PseudoLabelFolder(ctx.folder, mask_dir, det_dir), labelled_ids=ids,
                                   unlabelled_ids=[])
        out = sctx.run_loop(self, labelled_ids=ids, unlabelled_ids=[], desc="psm segmentation")
        guard = self.collapse_guard(ctx, ids, mask_dir)
        if ctx.run_dir is not None:
            write_json(ctx.run_dir / "psm_stages.json", {**stages, "collapse_guard": guard})
        return out

    # -- label-free collapse check -----------------------------------------------------------------
    def guard_ids(self, ids: list[str]) -> list[str]:
        """``guard_images`` training images, evenly spaced over the sorted ids (deterministic)."""
        ids = sorted(ids)
        k = max(0, min(int(self.hparams["guard_images"]), len(ids)))
        return [ids[int(i)] for i in np.linspace(0, len(ids) - 1, k).round().astype(int)] if k else []

    def collapse_guard(self, ctx, ids: list[str], mask_dir) -> dict:
        """Compare the segmentation network's foreground on some training images with its own
        pseudo-masks there (no label read): the stage-5 failure seen on ``nuclei_he_small`` (the
        network predicting almost no nucleus while its targets cover a third of each tile) shows as a
        ratio far below 1. Below :data:`COLLAPSE_RATIO` a warning is printed; the numbers go to
        ``psm_stages.json``. Reporting only: nothing is selected or changed on it."""
        chosen = self.guard_ids(ids)
        if not chosen:
            return {"images": 0}
        net = self.networks["network"]
        was_training = net.training
        net.eval()
        pred, pseudo = [], []
        for cid in chosen:
            prob = ctx.sliding_window(net, np.asarray(ctx.folder.image(cid), dtype=np.float32), tta=False)
            pred.append(float((prob.argmax(0) > 0).mean()))
            pseudo.append(float((np.load(Path(mask_dir) / f"{cid}_psm_mask.npy") > 0).mean()))
        net.train(was_training)
        ratio = float(np.mean(pred)) / max(float(np.mean(pseudo)), 1e-12)
        guard = {"images": chosen, "predicted_foreground": round(float(np.mean(pred)), 5),
                 "pseudo_mask_foreground": round(float(np.mean(pseudo)), 5), "ratio": round(ratio, 4),
                 "threshold": COLLAPSE_RATIO, "collapsed": bool(ratio < COLLAPSE_RATIO)}
        if guard["collapsed"]:
            print(f"warning: {self.name} on {ctx.dataset}: the segmentation network predicts "
                  f"{guard['predicted_foreground']:.1%} foreground on {len(chosen)} training images where its "
                  f"pseudo-masks cover {guard['pseudo_mask_foreground']:.1%} (ratio {ratio:.2f} < {COLLAPSE_RATIO}): "
                  "the label-free stage-5 collapse (methods/psm/README.md)", file=sys.stderr, flush=True)
        return guard

    def mask_foreground(self, preset: str) -> str:
        """How the pseudo-mask's foreground enters the segmentation loss under ``preset``."""
        mf = self.hparams["mask_foreground"]
        return mf.get(preset, "nucleus") if isinstance(mf, dict) else mf

    def training_step(self, labelled, unlabelled, ctx):
        logits = self.networks["network"](labelled["data"])
        mask_t, vor_t = decode_targets(labelled["seg"][:, 0], self.mask_foreground(ctx.preset))
        l_mask = masked_cross_entropy(logits, mask_t)
        l_vor = masked_cross_entropy(logits, vor_t)
        return {"loss": l_mask + float(self.hparams["voronoi_weight"]) * l_vor, "ce_mask": l_mask, "ce_voronoi": l_vor}

    # -- inference ---------------------------------------------------------------------------------
    def to_instances(self, segmentation: np.ndarray, probabilities, spacing) -> np.ndarray:
        """8-connected components of the predicted foreground, numbered 1..N in raster order;
        components smaller than ``instance_min_px`` pixels (default 0: none, as the code) dropped."""
        fg = np.asarray(segmentation) > 0
        lab, n = ndimage.label(fg, structure=np.ones((3,) * fg.ndim, bool))
        min_px = int(self.hparams.get("instance_min_px") or 0)
        if min_px > 1 and n:
            sizes = np.bincount(lab.ravel())
            keep = sizes >= min_px
            keep[0] = False
            lut = np.zeros(len(sizes), np.int32)
            lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
            lab = lut[lab]
        return lab.astype(np.int32)
