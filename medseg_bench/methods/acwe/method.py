"""ACWE-ConvNet: a ConvNet trained with the Chan–Vese energy, without labels (+ fine-tuned and joint variants).

J. Chen and E. C. Frey, "Medical Image Segmentation via Unsupervised Convolutional Neural Network",
MIDL 2020 short paper (arXiv:2001.10155; code github.com/junyuchen245/Unsuprevised_Seg_via_CNN).

* ``acwe`` (unsupervised, budget 0): the recurrent-residual network of :class:`~medseg_bench.networks.r2net.R2Net`
  trained on every training image with the soft Chan–Vese energy without length term
  (:func:`~.losses.acwe_energy`, ``w_area = 5e-4``); inputs min–max scaled to [0, 1] per slice (2D)
  or per volume (3D); Adam, lr 5e-4, constant. ``w_area`` needs no rescaling with the patch size:
  the region terms and the area term are both sums over pixels (the weight is intensity² per pixel
  on [0, 1] images), so their ratio is the same on the paper's 192×192 slices and on any patch; the
  energy is reported per pixel. A network output is two phases; the foreground is
  named by a label-free rule from the plan's modality (:mod:`._polarity`): the phase with the higher
  mean intensity (the paper's rule; CT, SPECT and modalities the table does not know), the lower one
  for fundus autofluorescence and H&E. The phase means are running means of the energy's ``c1, c2``
  over the training batches, kept in the network's buffers (so a reloaded run applies the same rule).
* ``acwe_finetune`` (semi-supervised, budgets >= 1): the paper's mode 2/3 — the same unsupervised
  pre-training, computed once per (dataset, preset, configuration, seed) on every training image
  without labels and cached under ``ctx.stage_dir`` (shared by all budgets), then fine-tuning on the
  budget's labelled cases with the first block frozen and the active-contour loss of Xu Chen et al.
  (CVPR 2019; :func:`~.losses.active_contour_loss`), or Dice + CE (``finetune_loss="dice_ce"``).

* ``acwe_joint`` (:mod:`.joint`; semi-supervised, budgets >= 1): the paper's mode 4 — energy on every image of
  the batch plus the labelled active-contour loss, trained together from scratch.
* ``acwe_unet_finetune`` (:mod:`.unet`): the plan's U-Net pre-trained with the energy, then trained
  exactly as ``supervised`` — the fair row (the R2Net is too small to match the U-Net with labels).

Schedules. ``paper`` preset: the code's 161 epochs × 50 batches of 20 (8050 iterations); fine-tuning
and joint training at least the code's 801 and at least ``supervised``'s count. ``demo``/``quick``:
the unsupervised pre-training gets the iterations that fit the time the plan gives the preset's
U-Net (``num_iterations × step_time_estimate_s``) at this network's predicted step time (the plan's
CPU step-time model on :func:`~medseg_bench.networks.r2net.r2net_cost`); fine-tuning and joint
training run exactly ``supervised``'s iteration count in the same cell (labels are seen as often as
by the baseline), and the pre-training is paid on top, once per (dataset, preset, configuration,
seed) (:meth:`AcweFinetune.estimate_stage_cost_s`). Training uses the plan's patches and batch size (the paper: whole
192×192 slices, batch 20) with the plan's spatial augmentation and mirroring only: intensity
augmentation (gamma, inversion, ...) changes the very intensities the energy models.
Configuration: ``2d`` (the paper's slices) when the preset has one; ``3d_fullres`` works too.

Against the authors' code (Keras; ``losses.py``, ``nets.py``, ``train_v2.py``, ``fine_tune.py``),
point by point — same unless marked *differs*:

* Energy: region terms ``Σ p (I-c1)² + Σ (1-p)(I-c2)²`` plus ``areaWt · Σ p``, no length term,
  phase means pooled over the whole batch, ``areaWt = 5e-4`` (``train_v2.py``; the class default
  0.004 is not used). *Differs*: the code divides ``Σ p·I`` by ``count_nonzero(p)`` (the number of
  non-zero pixels, not ``Σ p``); that is the phase mean only for binary ``p`` and biases ``c1`` low
  for a soft map; we use the weighted mean ``Σ p·I / Σ p``, the exact minimiser of the region term
  for fixed ``p``. We also divide by the pixel count (a logging scale; Adam is scale-invariant) and
  drop the code's ``abs`` (the energy is non-negative).
* Output and threshold: code 1×1 convolution (unit-norm kernel) → PReLU → clipped to [0, 1] in the
  loss, prediction ``output > 0``; ours 1×1 convolution → sigmoid, prediction ``logit > 0``. Both
  decide by the sign of the pre-activation (PReLU(z) > 0 ⇔ z > 0), so the threshold is the same;
  *differs*: the soft map (sigmoid: no zero gradient outside [0, 1]; no unit-norm constraint).
* Network: 3 blocks × (conv → BN → PReLU, then 3 recurrences conv(h) + x1 → BN → PReLU), 16 filters,
  3×3, recurrent convolutions initialised from one he-normal kernel: same. *Differs*: PReLU slope
  per channel (Keras: per pixel and channel, which fixes the input size to 192×192).
* Normalisation: min–max to [0, 1] per 2D slice: same (per volume for a 3D configuration).
* Patch vs whole slice: code whole 192×192 slices, batch 20; ours the plan's patches and batch
  (batch 20 under ``paper``), whole slices at inference. *Differs* only in which pixels pool into
  ``c1, c2`` (the network has no down-sampling: receptive field 25 pixels).
* Schedule: Adam, lr 5e-4, constant, 161 epochs: same under ``paper``; time-matched otherwise.
* Polarity: the code has none (its output phase is taken as bone); ours the label-free rule above.
* Fine-tuning (mode 2/3): code freezes the first block's convolutions (its BN stays trainable),
  loss = length + region against the mask (``λP = 1``), Adam 5e-4, 801 full-batch steps on 10 or 80
  slices of one volume, evaluated on other slices of the same volume. Ours: first block frozen
  including its BN statistics (*differs*), same loss, the budget's cases, ``supervised``'s
  iterations, evaluated on the held-out test cases.
* Joint mode (mode 4): not in the published code (its README: "L_ACWE + L_label"); ours
  ``[Σ_batch e + λ Σ_labelled l] / N_batch`` with λ = 1 — both losses pixel sums as in the code's
  ``losses.py``, the energy over every image of the batch, the label loss over the labelled ones
  (:mod:`.joint`).

None of the differences changes which partition the energy prefers; why ``acwe`` fails on
``spect_bone`` (the energy's minimum there is the body, not the bone) is shown with figures in
``methods/acwe/README.md``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ...networks.r2net import R2Net, r2net_cost
from ...training.stages import base_iterations, set_iterations, stage_key, train_stage
from .._polarity import polarity_rule
from ..base import Method
from ..registry import register_method
from .losses import active_contour_loss, acwe_energy, minmax_normalise

__all__ = ["AcweConvNet", "AcweFinetune", "MinMaxFolder", "matched_iterations"]

_CITATION = ("J. Chen and E. C. Frey, Medical Image Segmentation via Unsupervised Convolutional Neural Network, "
             "MIDL 2020 (short paper), arXiv:2001.10155")
_INTENSITY_AUG = ("gaussian_noise", "gaussian_blur", "brightness_multiplicative", "contrast", "low_resolution", "gamma")


class MinMaxFolder:
    """A preprocessed folder whose images come min–max scaled (:func:`~.losses.minmax_normalise`);
    labels and everything else pass through."""

    def __init__(self, folder, patch_dims: int):
        self._folder, self._dims = folder, int(patch_dims)

    def image(self, case_id: str) -> np.ndarray:
        return minmax_normalise(self._folder.image(case_id), self._dims)

    def __getattr__(self, name):
        return getattr(self._folder, name)


def _cpu_step_estimate(ctx) -> float | None:
    """The plan's CPU step-time estimate (s) of its U-Net for this cell's preset and configuration."""
    presets = ctx.plans.get("presets") or {}
    cfg = ((presets.get(ctx.preset) or {}).get("configurations") or {}).get(ctx.configuration) or {}
    est = cfg.get("step_time_estimate_s")
    return float(est) if est and "cpu" in str(cfg.get("step_time_device", "")) else None


def matched_iterations(ctx, in_channels: int, hp: dict, batch_size: int) -> int | None:
    """Iterations of :class:`R2Net` that take the time the plan gives its U-Net for this preset.

    ``base × step_time_estimate_s`` of the plan's configuration (``base``:
    :func:`~medseg_bench.training.stages.base_iterations`)
    divided by the R2Net step time the plan's CPU step-time model predicts; None when the plan has
    no CPU step estimate (GPU plans, hand-made contexts) or ``match_time_budget`` is off.
    """
    est = _cpu_step_estimate(ctx)
    if not hp.get("match_time_budget", True) or est is None:
        return None
    from ...planning.calibration import LARGE_MAP_BYTES, load_step_time_model

    patch = ctx.patch_size
    macs, acts = r2net_cost(patch, in_channels, hp["filters"], hp["blocks"], hp["recurrences"])
    map_bytes = 4 * hp["filters"] * float(np.prod(patch)) * batch_size
    large = acts * batch_size if map_bytes > LARGE_MAP_BYTES else 0.0
    step = load_step_time_model(threads=1).predict_totals(len(patch), macs * batch_size, acts * batch_size, large)
    return max(1, int(base_iterations(ctx) * est / step))


@register_method
class AcweConvNet(Method):
    """ACWE-ConvNet, unsupervised (Chen & Frey, MIDL 2020): see the module docstring."""

    name = "acwe"
    family = "unsupervised"
    citation = _CITATION
    dims = (2, 3)
    needs_labels = False
    uses_unlabelled = True
    budgets = "zero_only"
    class_rule = ("label-free: the network's output phase with the higher mean intensity in training (the paper's "
                  "rule: bone is hot in SPECT; also CT and modalities without an entry), the lower one for fundus "
                  "autofluorescence (geographic atrophy) and H&E (nuclei); fixed from the plan's modality")
    hparams = {
        "optimizer": "adamw", "lr": 5e-4, "weight_decay": 0.0, "momentum": 0.0, "nesterov": False,
        "schedule": "constant",  # the paper: Adam, lr 5e-4, no schedule
        "filters": 16, "blocks": 3, "recurrences": 3, "w_area": 5e-4,
        "polarity": "auto",  # "auto" | "bright" | "dark" | "smaller"
        "intensity_augmentation": False, "match_time_budget": True,
        "paper_iterations": 8050, "paper_batch_size": 20,  # 161 epochs x 50 batches of 20
        "slice_chunk": 16,  # slices per forward pass at inference (2D network on a volume)
    }

    @classmethod
    def recommended_configuration(cls, plans: dict, preset: str) -> str | None:
        configs = ((plans.get("presets") or {}).get(preset) or {}).get("configurations") or {}
        return "2d" if "2d" in configs else None

    # -- building --------------------------------------------------------------------------------
    def _rule(self, ctx) -> str:
        return polarity_rule(ctx.plans, self.hparams.get("polarity", "auto"), default="bright")

    def _build(self, ctx) -> R2Net:
        if ctx.num_classes != 2:
            raise ValueError(f"{self.name} segments one foreground phase; dataset {ctx.dataset!r} has "
                             f"{ctx.num_classes - 1} foreground classes")
        hp = self.hparams
        return R2Net(ctx.in_channels, ctx.spatial_dims, hp["filters"], hp["blocks"], hp["recurrences"],
                     rule=self._rule(ctx)).to(ctx.device)

    def train_context(self, ctx):
        """The context the engine loop runs on: min–max scaled images, the augmentation without
        intensity transforms, and the paper's batch size under the ``paper`` preset."""
        settings = dict(ctx.settings)
        if not self.hparams.get("intensity_augmentation"):
            settings["augmentation"] = {k: v for k, v in (settings.get("augmentation") or {}).items()
                                        if k not in _INTENSITY_AUG}
        if ctx.preset == "paper":
            settings["batch_size"] = int(self.hparams["paper_batch_size"])
        folder = MinMaxFolder(ctx.folder, ctx.spatial_dims) if ctx.folder is not None else None
        return dataclasses.replace(ctx, settings=settings, folder=folder)

    def pretrain_iterations(self, ctx) -> int:
        """``paper``: the paper's; else time-matched (:func:`matched_iterations`), else ``ctx.iterations``."""
        if ctx.preset == "paper":
            return int(self.hparams["paper_iterations"])
        n = matched_iterations(ctx, ctx.in_channels, self.hparams, self.train_context(ctx).batch_size)
        return base_iterations(ctx) if n is None else n

    def setup(self, ctx) -> None:
        self.networks["network"] = self._build(ctx)
        set_iterations(ctx, self.pretrain_iterations(ctx))
        self.optimizer, self.scheduler = ctx.make_optimizer(self.parameters())

    @classmethod
    def estimate_cost_s(cls, plans: dict, preset: str, config: str, budget) -> float:
        """Rough cell time for the benchmark runner: the plan's U-Net time (training is time-matched
        to it), or the paper's schedule at the plan's GPU step estimate."""
        cfg = ((plans.get("presets") or {}).get(preset) or {}).get("configurations", {}).get(config) or {}
        step = float(cfg.get("step_time_estimate_s") or 0.0)
        n = cls.hparams["paper_iterations"] if preset == "paper" else float(cfg.get("num_iterations") or 0)
        return max(1.0, n * step)

    # -- training --------------------------------------------------------------------------------
    def fit(self, ctx):
        return self.train_context(ctx).run_loop(self)

    def training_step(self, labelled, unlabelled, ctx):
        net = self.networks["network"]
        x = unlabelled["data"]
        energy, c1, c2, area = acwe_energy(torch.sigmoid(net(x)), x, float(self.hparams["w_area"]))
        net.track_phases(c1, c2, area)
        return {"loss": energy, "c1": c1, "c2": c2, "area": area}

    # -- inference -------------------------------------------------------------------------------
    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Two-class logits ``(B, 2, *patch)``: ``[0, ±z]`` (softmax gives ``1-σ(z), σ(z)``), the sign
        naming the foreground phase by the rule."""
        net = self.networks["network"]
        z = net(x).float() * net.output_sign()
        return torch.cat([torch.zeros_like(z), z], dim=1)

    @torch.inference_mode()
    def predict_probabilities(self, image: np.ndarray, ctx) -> np.ndarray:
        """``(2, *spatial)`` probabilities of one preprocessed image, min–max scaled as in training.

        The network has no down-sampling (receptive field 25 voxels), so it runs on whole images —
        whole slices (in chunks of ``slice_chunk``) for 2D patches of a volume — instead of
        overlapping windows: the same output without window seams, at a quarter of the cost in 2D.
        ``tta`` in the settings averages the logits over the mirrorings of the spatial axes.
        """
        from ...training.inference import mirror_combinations

        x = torch.from_numpy(minmax_normalise(image, ctx.spatial_dims))
        nd = ctx.spatial_dims
        if x.ndim - 1 == nd:
            batches = [x[None]]
        elif x.ndim - 1 == nd + 1:
            slices = x.transpose(0, 1)  # (Z, C, Y, X)
            chunk = int(self.hparams.get("slice_chunk", 16))
            batches = [slices[i:i + chunk] for i in range(0, slices.shape[0], chunk)]
        else:
            raise ValueError(f"{self.name}: image of shape {tuple(image.shape)} does not fit {nd}D patches")
        combos = mirror_combinations(range(nd)) if ctx.settings.get("tta") else [()]
        out = []
        for b in batches:
            b = b.to(ctx.device)
            total = 0
            for combo in combos:
                axes = [2 + a for a in combo]
                with ctx.autocast():
                    z = self.predict_logits(torch.flip(b, axes) if axes else b)[:, 1:].float()
                total = total + (torch.flip(z, axes) if axes else z)
            out.append((total / len(combos)).cpu())
        z = torch.cat(out)  # (B, 1, *patch dims)
        z = z[0] if x.ndim - 1 == nd else z.transpose(0, 1)[0][None]
        p = torch.sigmoid(z)
        return torch.cat([1 - p, p]).numpy().astype(np.float32)


@register_method
class AcweFinetune(AcweConvNet):
    """ACWE-ConvNet pre-trained without labels, fine-tuned on the budget's labelled cases (paper's
    modes 2/3): first block frozen, active-contour loss (Xu Chen et al., CVPR 2019)."""

    name = "acwe_finetune"
    demo_datasets = ("spect_bone",)  # the paper's setting; demo grid only (see Method)
    family = "semi-supervised"
    citation = (_CITATION + "; fine-tuning loss: X. Chen, B. M. Williams, S. R. Vallabhaneni, G. Czanner, R. Williams, "
                "Learning Active Contour Models for Medical Image Segmentation, CVPR 2019")
    needs_labels = True
    uses_unlabelled = True  # in the cached pre-training stage
    budgets = "labelled"
    shared_stages = ("acwe_pretrain",)  # the runner runs one budget first; the others reuse its stage
    class_rule = None
    hparams = {
        **AcweConvNet.hparams,
        "finetune_loss": "active_contour",  # or "dice_ce"
        "lambda_region": 1.0, "freeze_blocks": 1,
        "paper_finetune_iterations": 801,
    }

    def __init__(self, **overrides):
        super().__init__(**overrides)
        # this method's engine loop is the fine-tuning: labelled batches only (the unlabelled images
        # are used by the cached pre-training stage)
        self.uses_unlabelled = False
        if self.hparams["finetune_loss"] not in ("active_contour", "dice_ce"):
            raise ValueError(f"finetune_loss must be 'active_contour' or 'dice_ce', got {self.hparams['finetune_loss']!r}")

    def finetune_iterations(self, ctx) -> int:
        """At least the iterations ``supervised`` runs in the same cell (:func:`base_iterations`), so
        the fine-tuned row never sees its labels less often than the baseline it is compared with;
        ``paper``: the larger of that and the code's 801. The pre-training is paid on top (the cost
        table shows it; the runner's estimate: :meth:`estimate_stage_cost_s`)."""
        n = base_iterations(ctx)
        return max(n, int(self.hparams["paper_finetune_iterations"])) if ctx.preset == "paper" else n

    def setup(self, ctx) -> None:
        net = self._build(ctx)
        for block in net.blocks[: int(self.hparams["freeze_blocks"])]:
            for p in block.parameters():
                p.requires_grad_(False)
        self.networks["network"] = net
        set_iterations(ctx, self.finetune_iterations(ctx))
        self.optimizer, self.scheduler = ctx.make_optimizer(self.parameters())

    @classmethod
    def estimate_cost_s(cls, plans: dict, preset: str, config: str, budget) -> float:
        """One cell's own work: the fine-tuning (:meth:`finetune_iterations` at the plan's step
        estimate); the pre-training is :meth:`estimate_stage_cost_s`, charged once per group."""
        cfg = ((plans.get("presets") or {}).get(preset) or {}).get("configurations", {}).get(config) or {}
        n = float(cfg.get("num_iterations") or 0)
        fine = max(n, cls.hparams["paper_finetune_iterations"]) if preset == "paper" else n
        return max(1.0, fine * float(cfg.get("step_time_estimate_s") or 0.0))

    @classmethod
    def estimate_stage_cost_s(cls, plans: dict, preset: str, config: str) -> dict[str, float]:
        """The unsupervised pre-training stage (``acwe``'s training: :meth:`AcweConvNet.estimate_cost_s`),
        trained by the first budget's cell of a (dataset, preset, configuration, seed) and reused by
        the others; the grid charges it once (:func:`medseg_bench.bench.grid.estimate_grid_cost_s`)."""
        return {"acwe_pretrain": super().estimate_cost_s(plans, preset, config, 0)}

    def train(self, mode: bool = True) -> None:
        super().train(mode)
        for block in self.networks["network"].blocks[: int(self.hparams["freeze_blocks"])]:
            block.train(False)  # frozen block: its batch-norm statistics stay those of pre-training

    # -- the budget-independent pre-training stage ------------------------------------------------
    def stage_key(self, ctx, ids: list[str]) -> str:
        keys = [k for k in AcweConvNet.hparams]
        blob = {"hparams": {k: self.hparams[k] for k in keys}, "patch": ctx.patch_size, "ids": ids,
                "settings": {k: ctx.settings.get(k) for k in ("batch_size", "augmentation")},
                "iterations": self.pretrain_iterations(ctx),
                "dataset_hash": ctx.plans.get("dataset_hash"), "in_channels": ctx.in_channels}
        return stage_key(blob)

    def pretrained_state(self, ctx) -> dict:
        """The pre-trained network's state: trained once on every training image (the budget's cases
        and the unlabelled pool together, labels unread) and cached; later calls load it."""
        ids = sorted(set(ctx.labelled_ids) | set(ctx.unlabelled_ids))
        pre = AcweConvNet(**{k: self.hparams[k] for k in AcweConvNet.hparams})
        _, self.stage_folder = train_stage(ctx, pre, f"acwe_pretrain-{ctx.configuration}-{self.stage_key(ctx, ids)}", ids,
                                           desc=f"{pre.name} pre-training")
        return pre.networks["network"].state_dict()

    def fit(self, ctx):
        net = self.networks["network"]
        net.load_state_dict(self.pretrained_state(ctx))
        net.bake_polarity()  # start from "output = foreground" by the label-free rule; labels decide from here
        return self.train_context(ctx).run_loop(self)

    def training_step(self, labelled, unlabelled, ctx):
        z = self.networks["network"](labelled["data"])
        target = (labelled["seg"] > 0).float()
        if self.hparams["finetune_loss"] == "dice_ce":
            return {"loss": ctx.segmentation_loss(torch.cat([torch.zeros_like(z), z], dim=1), (target > 0).long())}
        return {"loss": active_contour_loss(torch.sigmoid(z), target, float(self.hparams["lambda_region"]))}

