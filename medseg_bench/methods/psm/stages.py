"""PSM's budget-independent stages, each an engine run cached under ``ctx.stage_dir``.

``psm_ssl``    the self-supervised activation network (:class:`RotationSSL`, engine loop);
``psm_masks``  Grad-CAM self-activation maps -> pseudo-masks (``<id>_psm_mask.npy``, done-marker
               ``masks.json``);
``psm_detect`` the detection network trained on the pseudo-masks (:class:`PseudoMaskNet`, engine
               loop), its peaks and Voronoi labels (``<id>_psm_vor.npy``, ``<id>_psm_points.npy``,
               done-marker ``points.json``).

Each stage folder is named by a hash of everything that determines it (its inputs' hashes, the
hyper-parameters and settings it uses, the case ids, the dataset hash), so a changed setting makes a
new folder instead of reusing a stale one. Every stage reads training **images** only: the networks
trained on pseudo-labels see them through :class:`PseudoLabelFolder`, which never opens a label file.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ...networks import build_resnet_classifier
from ...training.stages import save_array, stage_folder, stage_key, stage_lock, train_stage, write_json
from ..base import Method
from .activation import grad_cam, rotation_consistency_loss
from .pseudo_masks import pseudo_mask
from .voronoi import IGNORE, detect_points, voronoi_labels

__all__ = [
    "PseudoLabelFolder",
    "PseudoMaskNet",
    "RotationSSL",
    "decode_targets",
    "detection_stage",
    "encode_targets",
    "mask_stage",
    "ssl_stage",
    "stage_key",
]

#: CE ignore value of the decoded targets
IGNORE_INDEX = -100


def _stage_name(ctx, name: str, key: str) -> str:
    return f"{name}-{ctx.configuration}-{key}"


def encode_targets(mask: np.ndarray, vor: np.ndarray) -> np.ndarray:
    """One int16 map holding a pseudo-mask (0/1) and a Voronoi label (0/1/2): ``1 + mask + 2 vor``
    (1..6), so one label channel carries both through the engine's patch sampling and augmentation
    (nearest-label interpolation keeps codes); 0 is what augmentation pads with (both ignored)."""
    m = np.asarray(mask).astype(np.int16)
    v = np.asarray(vor).astype(np.int16)
    if m.shape != v.shape:
        raise ValueError(f"pseudo-mask {m.shape} and Voronoi label {v.shape} differ in shape")
    return (1 + m + 2 * v).astype(np.int16)


def decode_targets(code: torch.Tensor, mask_foreground: str = "ignore") -> tuple[torch.Tensor, torch.Tensor]:
    """``(mask_target, voronoi_target)`` long tensors from :func:`encode_targets` codes, with
    :data:`IGNORE_INDEX` where a target says nothing.

    ``mask_foreground="ignore"`` (the code's ``label[label == 255] = 2`` with ``ignore_index=2``):
    the pseudo-mask only supervises background; ``"nucleus"``: its foreground is class 1.
    """
    if mask_foreground not in ("ignore", "nucleus"):
        raise ValueError(f"mask_foreground must be 'ignore' or 'nucleus', got {mask_foreground!r}")
    code = code.long()
    valid = code > 0
    c = (code - 1).clamp_min(0)
    m, v = c % 2, c // 2
    ign = torch.full_like(code, IGNORE_INDEX)
    mask_t = torch.where(valid & ((m == 0) | (mask_foreground == "nucleus")), m, ign)
    vor_t = torch.where(valid & (v != IGNORE), v, ign)
    return mask_t, vor_t


def masked_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy averaged over the pixels that are not :data:`IGNORE_INDEX` (0 when none is)."""
    total = F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (target != IGNORE_INDEX).sum().clamp_min(1)


class PseudoLabelFolder:
    """A preprocessed folder whose labels are PSM pseudo-labels: ``seg(id)`` reads
    ``<mask_dir>/<id>_psm_mask.npy`` (and, with ``vor_dir``, combines it with ``<id>_psm_vor.npy``
    by :func:`encode_targets`). Images and properties come from the wrapped folder; its label and
    instance files are never opened."""

    def __init__(self, folder, mask_dir, vor_dir=None):
        self._folder, self.mask_dir = folder, Path(mask_dir)
        self.vor_dir = Path(vor_dir) if vor_dir is not None else None

    def image(self, case_id: str) -> np.ndarray:
        return self._folder.image(case_id)

    def properties(self, case_id: str) -> dict:
        return self._folder.properties(case_id)

    def case_ids(self) -> list[str]:
        return self._folder.case_ids()

    def seg(self, case_id: str) -> np.ndarray:
        path = self.mask_dir / f"{case_id}_psm_mask.npy"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no PSM pseudo-mask for case {case_id!r}")
        mask = np.load(path)
        if self.vor_dir is None:
            return mask.astype(np.int16)
        vpath = self.vor_dir / f"{case_id}_psm_vor.npy"
        if not vpath.is_file():
            raise FileNotFoundError(f"{vpath}: no PSM Voronoi label for case {case_id!r}")
        return encode_targets(mask, np.load(vpath))

    def instances(self, case_id: str):
        raise RuntimeError("PSM trains on pseudo-labels: instance labels are not readable here")


class RotationSSL(Method):
    """Stage 1: a ResNet with one output trained so that ``f(x) = f(rot180 x)`` (L1), on image
    patches without labels (engine loop on the unlabelled stream). Not registered: PSM runs it."""

    name = "psm_ssl"
    family = "unsupervised"
    citation = "PSM stage 1 (see medseg_bench.methods.psm)"
    needs_labels = False
    uses_unlabelled = True
    budgets = "zero_only"

    def setup(self, ctx) -> None:
        hp = self.hparams
        self.networks["network"] = build_resnet_classifier(ctx.in_channels, 1, hp["widths"], hp["blocks"], hp["block"],
                                                           ctx.spatial_dims).to(ctx.device)
        self.optimizer, self.scheduler = ctx.make_optimizer(self.parameters())

    def training_step(self, labelled, unlabelled, ctx):
        return {"loss": rotation_consistency_loss(self.networks["network"], unlabelled["data"])}


class PseudoMaskNet(Method):
    """Stage 4: the plan's U-Net trained with cross-entropy on pseudo-masks (served as labels by
    :class:`PseudoLabelFolder`). Not registered: PSM runs it."""

    name = "psm_detect"
    family = "unsupervised"
    citation = "PSM stage 4 (see medseg_bench.methods.psm)"
    needs_labels = True

    def setup(self, ctx) -> None:
        self.networks["network"] = ctx.build_network(out_channels=2)
        self.optimizer, self.scheduler = ctx.make_optimizer(self.parameters())

    def training_step(self, labelled, unlabelled, ctx):
        return {"loss": F.cross_entropy(self.networks["network"](labelled["data"]).float(), labelled["seg"][:, 0].long())}


def ssl_stage(ctx, settings: dict, iterations: int, net_hp: dict, ids: list[str]):
    """Train (or load) the activation network; returns ``(network, stage key, folder)``."""
    key = stage_key({"stage": "ssl", "net": net_hp, "iterations": iterations, "ids": ids,
                     "settings": {k: settings.get(k) for k in ("patch_size", "batch_size", "augmentation", "optimizer", "lr",
                                                               "weight_decay", "schedule")},
                     "dataset_hash": ctx.plans.get("dataset_hash"), "in_channels": ctx.in_channels})
    ssl = RotationSSL(**net_hp)
    _, folder = train_stage(ctx, ssl, _stage_name(ctx, "psm_ssl", key), ids, {**settings, "iterations": iterations},
                            desc="psm self-supervised")
    net = ssl.networks["network"]
    net.eval()
    return net, key, folder


def mask_stage(ctx, net, ssl_key: str, hp: dict, scale: float, ids: list[str]) -> tuple[str, Path]:
    """Pseudo-masks of every case in ``ids`` (cached); returns ``(stage key, folder)``."""
    mask_hp = {k: hp[k] for k in ("activation_layer", "beta", "heat_order", "min_object_px", "max_hole_px",
                                  "kmeans_fit_pixels")}
    key = stage_key({"stage": "masks", "ssl": ssl_key, "hp": mask_hp, "scale": round(scale, 6), "ids": ids})
    folder = stage_folder(ctx, _stage_name(ctx, "psm_masks", key))
    with stage_lock(folder):
        if (folder / "masks.json").is_file():
            return key, folder
        layer = getattr(net, hp["activation_layer"])
        min_px = max(1, int(round(hp["min_object_px"] * scale ** 2)))
        hole_px = max(1, int(round(hp["max_hole_px"] * scale ** 2)))
        cases = {}
        for i, cid in enumerate(ids):
            image = np.asarray(ctx.folder.image(cid), dtype=np.float32)
            cam = grad_cam(net, layer, torch.from_numpy(image)[None].to(ctx.device))[0].cpu().numpy()
            mask = pseudo_mask(cam, image, beta=hp["beta"], heat_order=hp["heat_order"], min_object_px=min_px,
                               max_hole_px=hole_px, seed=int(ctx.seed) * 100003 + i, max_fit_pixels=hp["kmeans_fit_pixels"])
            save_array(folder / f"{cid}_psm_mask.npy", mask.astype(np.uint8))
            save_array(folder / f"{cid}_psm_cam.npy", np.round(cam * 255).astype(np.uint8))
            cases[cid] = {"foreground_fraction": round(float(mask.mean()), 5), "cam_mean": round(float(cam.mean()), 5)}
        write_json(folder / "masks.json", {"min_object_px": min_px, "max_hole_px": hole_px, "scale": scale,
                                           "hparams": mask_hp, "cases": cases})
    return key, folder


def detection_stage(ctx, settings: dict, iterations: int, mask_key: str, mask_dir: Path, hp: dict, scale: float,
                    ids: list[str]) -> Path:
    """Train (or load) the detection network on the pseudo-masks, then write every case's points and
    Voronoi label (cached); returns the folder."""
    point_hp = {k: hp[k] for k in ("peak_threshold", "peak_min_distance_px", "merge_distance_px", "peak_sigma_px",
                                   "point_radius_px", "edge_width_px")}
    key = stage_key({"stage": "detect", "masks": mask_key, "iterations": iterations, "points": point_hp,
                     "scale": round(scale, 6), "ids": ids, "network": settings.get("network"),
                     "settings": {k: settings.get(k) for k in ("patch_size", "batch_size", "augmentation", "optimizer",
                                                               "lr", "momentum", "weight_decay", "schedule",
                                                               "oversample_foreground", "sw_overlap")}})
    folder = stage_folder(ctx, _stage_name(ctx, "psm_detect", key))
    det = PseudoMaskNet()
    with stage_lock(folder):
        dctx = dataclasses.replace(ctx, settings={**settings, "iterations": iterations}, run_dir=folder,
                                   folder=PseudoLabelFolder(ctx.folder, mask_dir), labelled_ids=list(ids), unlabelled_ids=[])
        det.setup(dctx)
        dctx.run_loop(det, out_dir=folder, labelled_ids=ids, unlabelled_ids=[], desc="psm detection")
        if (folder / "points.json").is_file():
            return folder
        net = det.networks["network"]
        net.eval()
        cases = {}
        for cid in ids:
            image = np.asarray(ctx.folder.image(cid), dtype=np.float32)
            prob = dctx.sliding_window(net, image, tta=False)[1]
            pts = detect_points(prob, threshold=hp["peak_threshold"], min_distance=hp["peak_min_distance_px"] * scale,
                                merge_distance=hp["merge_distance_px"] * scale, sigma=hp["peak_sigma_px"] * scale)
            vor = voronoi_labels(pts, prob.shape, point_radius=hp["point_radius_px"] * scale,
                                 edge_width=hp["edge_width_px"] * scale)
            save_array(folder / f"{cid}_psm_points.npy", pts.astype(np.int32))
            save_array(folder / f"{cid}_psm_vor.npy", vor)
            cases[cid] = {"points": int(len(pts)), "edge_fraction": round(float((vor == 0).mean()), 5),
                          "point_fraction": round(float((vor == 1).mean()), 5)}
        write_json(folder / "points.json", {"scale": scale, "hparams": point_hp, "cases": cases})
    return folder
