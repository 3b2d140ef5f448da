"""The run context a method sees: plan, settings, device, budget, data ids and engine helpers."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..networks import build_network

__all__ = ["RunContext", "make_optimizer"]


def _lr_lambda(schedule: str, total: int, warmup: int, exponent: float):
    import math

    def f(it: int) -> float:
        if warmup and it < warmup:
            return (it + 1) / warmup
        t = min(1.0, (it - warmup) / max(1, total - warmup))
        if schedule == "poly":
            return (1.0 - t) ** exponent
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * t))
        return 1.0

    return f


def make_optimizer(params, settings: dict, total: int, **override):
    """Optimiser and per-iteration LR scheduler from ``settings`` (``optimizer``, ``lr``,
    ``momentum``, ``nesterov``, ``weight_decay``, ``schedule``, ``poly_exponent``,
    ``warmup_iterations``); keyword overrides win. ``total`` is the number of scheduler steps."""
    s = {**settings, **override}
    params = list(params)
    if s["optimizer"] == "sgd":
        opt = torch.optim.SGD(params, lr=s["lr"], momentum=s["momentum"], nesterov=bool(s["nesterov"]) and s["momentum"] > 0,
                              weight_decay=s["weight_decay"])
    elif s["optimizer"] == "adamw":
        opt = torch.optim.AdamW(params, lr=s["lr"], weight_decay=s["weight_decay"])
    else:
        raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {s['optimizer']!r}")
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, _lr_lambda(s["schedule"], int(total), int(s.get("warmup_iterations") or 0), float(s["poly_exponent"]))
    )
    return opt, sched


@dataclass
class RunContext:
    """Everything a method needs during training and inference.

    Attributes:
        settings: resolved training settings (:func:`medseg_bench.training.settings.resolve_settings`).
        plans: the dataset's plans.json content. configuration, preset: the cell's.
        device: torch device. dataset, budget, seed: the cell's.
        run_dir: the run folder (checkpoints, logs). workdir: a :class:`~medseg_bench.workdir.Workdir`.
        folder: the preprocessed folder (:class:`~medseg_bench.data.PreprocessedFolder`) or None.
        labelled_ids / unlabelled_ids: the budget's labelled cases / the unlabelled pool.
        iteration: the current iteration (0-based) while training.
        case_id: the case being predicted, set by the engine before each test case's
            ``predict_probabilities`` (None otherwise, e.g. for a folder of new images); an oracle
            method (``Method.oracle``) reads that case's reference label through it.
        loops: the summaries of the engine loops run so far (iterations, labelled iterations, loss
            curve and convergence check; see :func:`medseg_bench.training.loop.run_loop`).
    """

    settings: dict
    plans: dict
    configuration: str
    preset: str
    device: torch.device
    dataset: str = ""
    budget: int | str = 0
    seed: int = 0
    run_dir: Path | None = None
    workdir: object | None = None
    folder: object | None = None
    labelled_ids: list = field(default_factory=list)
    unlabelled_ids: list = field(default_factory=list)
    progress: bool = True
    deterministic: bool = True
    iteration: int = 0
    case_id: str | None = None
    loops: list = field(default_factory=list)
    _loss: object = field(default=None, repr=False)
    _scaler: object = field(default=None, repr=False)

    # -- shapes --------------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return int(max(self.plans["labels"].values())) + 1

    @property
    def in_channels(self) -> int:
        return int(self.settings["network"]["in_channels"])

    @property
    def patch_size(self) -> list[int]:
        return list(self.settings["patch_size"])

    @property
    def spatial_dims(self) -> int:
        return len(self.settings["patch_size"])

    @property
    def iterations(self) -> int:
        return int(self.settings["iterations"])

    @property
    def batch_size(self) -> int:
        return int(self.settings["batch_size"])

    # -- building blocks -----------------------------------------------------------------------------
    def build_network(self, out_channels: int | None = None, in_channels: int | None = None) -> torch.nn.Module:
        """The plan's U-Net on this context's device (``out_channels`` default: the classes)."""
        return build_network(self.settings["network"], out_channels, in_channels).to(self.device)

    def make_optimizer(self, params, iterations: int | None = None, **override):
        """Optimiser + scheduler from the settings (``override``: e.g. ``lr=1e-3``)."""
        return make_optimizer(params, self.settings, self.iterations if iterations is None else iterations, **override)

    def segmentation_loss(self, logits: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        """Dice (foreground classes, batch Dice) + cross-entropy, as nnU-Net."""
        if self._loss is None:
            from monai.losses import DiceCELoss

            self._loss = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True,
                                    smooth_nr=1e-5, smooth_dr=1e-5)
        return self._loss(logits.float(), seg)

    def stage_dir(self, stage: str) -> Path:
        """Folder for a budget-independent stage of this method (shared by every budget)."""
        if self.workdir is None:
            raise RuntimeError("stage_dir needs a workdir")
        return self.workdir.stage_dir(self.dataset, self.preset, stage, self.seed)

    # -- precision -----------------------------------------------------------------------------------
    @property
    def amp(self) -> bool:
        a = self.settings.get("amp", "auto")
        return self.device.type == "cuda" and (a is True or a == "auto")

    def autocast(self):
        if not self.amp:
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)

    def backward_and_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, params) -> None:
        """Backward (scaled under fp16 AMP), clip the gradient norm to ``grad_clip``, step."""
        clip = self.settings.get("grad_clip")
        fp16 = self.amp and not torch.cuda.is_bf16_supported()
        if fp16:
            if self._scaler is None:
                self._scaler = torch.amp.GradScaler("cuda")
            self._scaler.scale(loss).backward()
            self._scaler.unscale_(optimizer)
            if clip:
                torch.nn.utils.clip_grad_norm_(params, clip)
            self._scaler.step(optimizer)
            self._scaler.update()
            return
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()

    # -- data ----------------------------------------------------------------------------------------
    def to_device(self, batch: dict | None) -> dict | None:
        """numpy batch -> tensors on the device (``seg`` as long)."""
        if batch is None:
            return None
        out = dict(batch)
        nb = self.device.type == "cuda"
        out["data"] = torch.from_numpy(batch["data"]).to(self.device, non_blocking=nb)
        if "seg" in batch:
            out["seg"] = torch.from_numpy(batch["seg"]).long().to(self.device, non_blocking=nb)
        return out

    # -- engine --------------------------------------------------------------------------------------
    def run_loop(self, method, out_dir: Path | None = None, iterations: int | None = None, **kwargs) -> dict:
        """Run the engine's training loop for ``method`` (see :func:`medseg_bench.training.loop.run_loop`)."""
        from .loop import run_loop

        return run_loop(method, self, out_dir=out_dir, iterations=iterations, **kwargs)

    def sliding_window(self, predictor, image: np.ndarray, tta: bool | None = None) -> np.ndarray:
        """Probabilities ``(K, *spatial)`` of one preprocessed image with ``predictor`` (see
        :func:`medseg_bench.training.inference.sliding_window_probabilities`)."""
        from .inference import sliding_window_probabilities

        tta = self.settings.get("tta", False) if tta is None else tta
        mirror = (self.settings.get("augmentation") or {}).get("mirror_axes") or list(range(self.spatial_dims))
        return sliding_window_probabilities(
            predictor, image, self.patch_size, self.device, overlap=float(self.settings.get("sw_overlap", 0.5)),
            mirror_axes=mirror if tta else None, sw_batch_size=int(self.settings.get("sw_batch_size", 4)),
            autocast=self.autocast,
        )
