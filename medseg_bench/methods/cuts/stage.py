"""The budget-independent CUTS stage: the encoder trained without labels on every training image.

Computed once per (dataset, preset, configuration, seed, settings) under ``ctx.stage_dir`` and shared
by ``cuts``, ``cuts_oracle``, ``cuts_assign`` and every budget (the runner runs one cell of the group
first). The training is one engine loop (:meth:`RunContext.run_loop`) of :class:`EncoderStage` on
the unlabelled stream of every training case (labels never read), images scaled to [-1, 1].

Per step (Liu et al., MICCAI 2024, and their code): a batch of ``stage_batch_size`` (16) images
(the plan's patches); per image ``n_anchors`` anchors and their SSIM-verified positives
(:func:`~.sampler.sample_pairs`); the loss ``0.001 · NT-Xent(τ = 0.1) + 0.999 · MSE`` of the
reconstructed 5 × 5 anchor patches (:func:`~.losses.cuts_loss`).

``training = "sparse"`` (the CPU presets): the encoder runs only on the 17 × 17 receptive fields of
the batch's 2·8·16 = 256 sampled pixels (:meth:`~medseg_bench.networks.cuts_encoder.CutsEncoder.embed_at`)
— the loss only reads those embeddings, and this is ~40× cheaper than the full 96 × 96 maps; the
only difference from ``"dense"`` (the ``paper`` preset, the code's way: the full map, then read at
the samples) is which pixels feed BatchNorm's batch statistics in training mode.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math

import numpy as np
import torch

from ...networks.cuts_encoder import CutsEncoder, PatchReconstructor
from ..acwe.losses import minmax_normalise
from ..base import Method
from .losses import cuts_loss
from .sampler import extract_patches, sample_pairs

__all__ = ["EncoderStage", "ScaledFolder", "scale_image", "stage_schedule"]

#: hyper-parameters that define the stage (its cache key); the rest (clustering, rules) do not
STAGE_KEYS = ("base_width", "layers", "kernel", "patch", "n_anchors", "radius", "tries", "ssim_threshold",
              "contrastive_weight", "temperature", "optimizer", "lr", "weight_decay", "momentum", "nesterov",
              "schedule", "epochs", "warmup_epochs", "max_iterations", "stage_batch_size", "training",
              "augmentation", "grad_clip")


def scale_image(image: np.ndarray, patch_dims: int, rgb01: bool) -> np.ndarray:
    """The code's input range [-1, 1] (float32): ``2x − 1`` of images already in [0, 1] (the plan's
    ``rgb01`` normalisation, i.e. the code's ``/255``), else ``2·minmax − 1`` per image (per slice
    for 2D patches of a volume; :func:`~medseg_bench.methods._r2net.minmax_normalise`)."""
    x = np.asarray(image, dtype=np.float32)
    if rgb01:
        return np.clip(2.0 * x - 1.0, -1.0, 1.0).astype(np.float32)
    return (2.0 * minmax_normalise(x, patch_dims) - 1.0).astype(np.float32)


def is_rgb01(plans: dict) -> bool:
    """True when the plan normalises every channel with the ``rgb01`` scheme (RGB to [0, 1])."""
    schemes = {ch.get("scheme") for cfg in (plans.get("configurations") or {}).values()
               for ch in ((cfg.get("normalization") or {}).get("channels") or [])}
    return bool(schemes) and schemes == {"rgb01"}


class ScaledFolder:
    """A preprocessed folder whose images come scaled by :func:`scale_image`; the rest passes through."""

    def __init__(self, folder, patch_dims: int, rgb01: bool):
        self._folder, self._dims, self._rgb01 = folder, int(patch_dims), bool(rgb01)

    def image(self, case_id: str) -> np.ndarray:
        return scale_image(self._folder.image(case_id), self._dims, self._rgb01)

    def __getattr__(self, name):
        return getattr(self._folder, name)


def _by_preset(value, preset: str):
    return value.get(preset) if isinstance(value, dict) else value


def n_training_images(folder, ids: list[str], patch_dims: int) -> int:
    """2D images the stage trains on: one per 2D case, one per slice of a volume."""
    total = 0
    for cid in ids:
        shape = folder.image(cid).shape  # memory-mapped when large; the array is not read
        total += int(shape[1]) if len(shape) - 1 == patch_dims + 1 else 1
    return max(1, total)


def stage_schedule(hp: dict, preset: str, n_images: int, requested: int | None) -> tuple[int, int]:
    """``(iterations, warm-up iterations)`` of the stage.

    ``epochs[preset] × ceil(n_images / stage_batch_size)`` (an epoch = every training image once, as
    the code), at most ``max_iterations[preset]`` (the CPU presets' cap; none for ``paper``); an
    explicit ``--iterations`` (``requested``) wins. Warm-up: ``warmup_epochs / epochs`` of it.
    """
    epochs = int(_by_preset(hp["epochs"], preset) or 1)
    per_epoch = math.ceil(n_images / int(hp["stage_batch_size"]))
    n = epochs * per_epoch
    cap = _by_preset(hp.get("max_iterations"), preset)
    if cap:
        n = min(n, int(cap))
    if requested:
        n = int(requested)
    warm = int(round(n * float(hp["warmup_epochs"]) / max(1, epochs)))
    return max(1, n), min(warm, max(0, n - 1))


def stage_key(hp: dict, ctx, ids: list[str], iterations: int) -> str:
    """Short hash of everything the stage depends on."""
    blob = {"hparams": {k: hp.get(k) for k in STAGE_KEYS}, "patch": ctx.patch_size, "ids": sorted(ids),
            "iterations": iterations, "dataset_hash": ctx.plans.get("dataset_hash"), "in_channels": ctx.in_channels,
            "configuration": ctx.configuration, "rgb01": is_rgb01(ctx.plans), "mode": training_mode(hp, ctx.preset)}
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:10]


def training_mode(hp: dict, preset: str) -> str:
    mode = hp.get("training", "auto")
    if mode == "auto":
        return "dense" if preset == "paper" else "sparse"
    if mode not in ("dense", "sparse"):
        raise ValueError(f"cuts: training must be 'auto', 'dense' or 'sparse', got {mode!r}")
    return mode


def build_networks(hp: dict, in_channels: int, device) -> dict:
    enc = CutsEncoder(in_channels, int(hp["base_width"]), int(hp["layers"]), int(hp["kernel"])).to(device)
    rec = PatchReconstructor(enc.latent_dim, in_channels, int(hp["patch"])).to(device)
    return {"encoder": enc, "recon": rec}


class EncoderStage(Method):
    """The stage's engine method (not registered): trains the encoder and the reconstruction head."""

    name = "cuts_encoder"
    family = "unsupervised"
    citation = "Liu et al., CUTS, MICCAI 2024, arXiv:2209.11359"
    dims = (2,)
    needs_labels = False
    uses_unlabelled = True
    budgets = "zero_only"

    def __init__(self, hp: dict, mode: str):
        super().__init__()
        self.hp, self.mode = dict(hp), mode

    def setup(self, ctx) -> None:
        self.networks.update(build_networks(self.hp, ctx.in_channels, ctx.device))
        self.optimizer, self.scheduler = ctx.make_optimizer(self.parameters())

    def training_step(self, labelled, unlabelled, ctx) -> dict:
        hp, enc = self.hp, self.networks["encoder"]
        x = unlabelled["data"].float()
        if x.ndim != 4:
            raise ValueError(f"cuts trains on 2D patches (B, C, H, W), got {tuple(x.shape)}")
        b, s = x.shape[0], int(hp["n_anchors"])
        pairs = sample_pairs(x, s, int(hp["radius"]), int(hp["tries"]), float(hp["ssim_threshold"]), int(hp["patch"]))
        pts = torch.cat([pairs.anchors, pairs.positives], dim=1)  # (B, 2S, 2)
        if self.mode == "dense":
            z = enc(x).permute(0, 2, 3, 1)[torch.arange(b, device=x.device)[:, None], pts[..., 0], pts[..., 1]]
        else:
            bi = torch.arange(b, device=x.device)[:, None, None].expand(b, 2 * s, 1)
            z = enc.embed_at(x, torch.cat([bi, pts], dim=-1).reshape(-1, 3), chunk=b * 2 * s).reshape(b, 2 * s, -1)
        za, zp = z[:, :s], z[:, s:]
        target = extract_patches(x, pairs.anchors, int(hp["patch"]))
        out = cuts_loss(za, zp, self.networks["recon"](za), target, float(hp["contrastive_weight"]),
                        float(hp["temperature"]))
        out["positives_found"] = pairs.found.float().mean()
        return out


def stage_context(ctx, hp: dict, folder, ids: list[str], iterations: int, warmup: int):
    """The context of the stage's engine loop: every training case unlabelled, scaled images, the
    stage's batch size, schedule and augmentation (none unless ``augmentation`` is set)."""
    settings = dict(ctx.settings)
    settings.update(batch_size=int(hp["stage_batch_size"]), iterations=int(iterations), warmup_iterations=int(warmup),
                    unlabelled_batch_size=None, optimizer=hp["optimizer"], lr=float(hp["lr"]),
                    weight_decay=float(hp["weight_decay"]), schedule=hp["schedule"], grad_clip=hp.get("grad_clip"))
    if not hp.get("augmentation"):
        settings["augmentation"] = {}
    scaled = ScaledFolder(ctx.folder, ctx.spatial_dims, is_rgb01(ctx.plans)) if ctx.folder is not None else None
    return dataclasses.replace(ctx, settings=settings, folder=scaled, run_dir=folder, labelled_ids=[],
                               unlabelled_ids=list(ids))
