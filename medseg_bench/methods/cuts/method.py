"""The three CUTS rows: ``cuts`` (label-free), ``cuts_oracle`` (the paper's protocol), ``cuts_assign``.

C. Liu, M. Amodio, L. L. Shen, F. Gao, A. Avesta, S. Aneja, J. C. Wang, L. V. Del Priore and
S. Krishnaswamy, "CUTS: A Deep Learning and Topological Framework for Multigranular Unsupervised
Medical Image Segmentation", MICCAI 2024 (arXiv:2209.11359; code github.com/KrishnaswamyLab/CUTS).

All three share one budget-independent stage (:mod:`.stage`: the encoder trained without labels on
every training image, cached under ``ctx.stage_dir``) and the per-case clustering of the embeddings
(:mod:`.clustering`, cached next to it, keyed by the image's content). They differ only in how a
cluster becomes a class (:mod:`.rules`):

* ``cuts`` (unsupervised, budget 0): the plan modality's polarity rule on cluster mean intensity;
* ``cuts_oracle`` (unsupervised, budget 0, ``oracle = True``): the cluster overlapping each class
  of the test case's ground truth most, as the paper evaluates — ranked apart on the leaderboard;
* ``cuts_assign`` (semi-supervised, budgets ≥ 1): a cluster→class assignment learned from the
  clusters of the budget's labelled cases only.

Each row's ``fit`` loads (or, first, trains) the stage, does its own cheap part and writes the
run's final checkpoint (encoder weights and, for ``cuts_assign``, the labelled-cluster references),
so ``medseg-bench predict`` works on a finished run. The encoder is 2D (``dims = (2,)``): volumes go
through the ``2d`` configuration slice by slice and are clustered as one case.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from ...training.stages import stage_lock
from .._polarity import RULE_TEXT, polarity_rule
from .._teacher import resolve_hparams
from ..base import Method
from ..registry import register_method
from .clustering import CLUSTERINGS, assign_labels, cluster_means, cluster_sample, sample_points
from .rules import ClusterAssignment, class_fractions, label_free_labels, oracle_labels
from .stage import (
    EncoderStage,
    build_networks,
    is_rgb01,
    n_training_images,
    scale_image,
    stage_context,
    stage_key,
    stage_schedule,
    training_mode,
)

__all__ = ["Cuts", "CutsAssign", "CutsOracle"]

_CITATION = ("C. Liu, M. Amodio, L. L. Shen, F. Gao, A. Avesta, S. Aneja, J. C. Wang, L. V. Del Priore, S. Krishnaswamy, "
             "CUTS: A Deep Learning and Topological Framework for Multigranular Unsupervised Medical Image Segmentation, "
             "MICCAI 2024, arXiv:2209.11359")

#: defaults; per-preset values are dicts ``{preset: value}``
HPARAMS = {
    # encoder, reconstruction, sampling and loss: the code's values
    "base_width": 16, "layers": 4, "kernel": 5, "patch": 5,
    "n_anchors": 8, "radius": 5, "tries": 20, "ssim_threshold": 0.5,
    "contrastive_weight": 0.001, "temperature": 0.1,
    # schedule: AdamW 1e-3, wd 1e-4, 10 warm-up epochs then cosine, 200 epochs, batch 16 (paper); the CPU presets
    # keep the epochs but cap the iterations (demo: 150 sparse steps ~ 20 s of CPU, quick: 800)
    "optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "momentum": 0.0, "nesterov": False, "schedule": "cosine",
    "grad_clip": None, "epochs": {"paper": 200, "quick": 200, "demo": 50}, "warmup_epochs": 10,
    "max_iterations": {"demo": 150, "quick": 800}, "stage_batch_size": 16, "training": "auto",
    "stage_augmentation": False,
    # clustering (per case): the paper's PHATE + k-means, on a subsample of pixels
    "clustering": "phate_kmeans", "n_clusters": 10, "n_sample": {"demo": 1024, "quick": 2048, "paper": 4096},
    "knn": 100, "phate_t": 2, "n_landmark": 500, "pca_components": 8, "assign": "knn", "assign_k": 5,
    # rows
    "polarity": "auto", "assign_neighbours": 3, "slice_chunk": 8,
}


def preset_configuration(ctx) -> dict | None:
    """The plan's preset configuration block of this cell (``num_iterations``, ...), or None when the
    context's plan has none (e.g. the contract check's synthetic plan). (Was in ``_teacher``; main
    dropped it there, CUTS is its only user now.)"""
    try:
        return ctx.plans["presets"][ctx.preset]["configurations"][ctx.configuration]
    except (KeyError, TypeError):
        return None


def _by_preset(value, preset: str):
    return value.get(preset, next(iter(value.values()))) if isinstance(value, dict) else value


class _CutsBase(Method):
    """Shared stage, clustering and inference of the CUTS rows (module docstring)."""

    citation = _CITATION
    dims = (2,)
    uses_unlabelled = True  # the stage trains on every training image, labels unread
    shared_stages = ("cuts_encoder",)
    hparams = HPARAMS

    def __init__(self, **overrides):
        super().__init__(**overrides)
        self._init_overrides = dict(overrides)
        self.hp = dict(self.hparams)
        self.stage_folder: Path | None = None
        self.num_classes = 2

    # -- description ---------------------------------------------------------------------------------
    @classmethod
    def recommended_configuration(cls, plans: dict, preset: str) -> str | None:
        configs = ((plans.get("presets") or {}).get(preset) or {}).get("configurations") or {}
        return "2d" if "2d" in configs else None

    @classmethod
    def estimate_cost_s(cls, plans: dict, preset: str, config: str, budget) -> float:
        """One cell's own work with the stage and the test cases' clusters cached: about 1 s
        (``cuts_oracle`` measured 0.7 s in the demo run of the method README); the stage is
        :meth:`estimate_stage_cost_s`."""
        return 1.0

    @classmethod
    def estimate_stage_cost_s(cls, plans: dict, preset: str, config: str) -> dict[str, float]:
        """The shared stage of the three rows: the encoder's capped steps (~0.15 s each, sparse, CPU)
        plus clustering the test cases (cached next to it), charged once per (dataset, preset,
        configuration, seed) by the grid, to the cell that computes it."""
        iters = _by_preset(cls.hparams["max_iterations"], preset) or 1000
        return {"cuts_encoder": 0.15 * float(iters) + 40.0}

    # -- setup ---------------------------------------------------------------------------------------
    def _resolve(self, ctx) -> dict:
        hp = resolve_hparams(self, ctx)
        if hp["clustering"] not in CLUSTERINGS:
            raise ValueError(f"{self.name}: clustering must be one of {CLUSTERINGS}, got {hp['clustering']!r}")
        if hp["assign"] not in ("knn", "centroid"):
            raise ValueError(f"{self.name}: assign must be 'knn' or 'centroid', got {hp['assign']!r}")
        training_mode(hp, ctx.preset)  # validates
        self.hp = hp
        return hp

    def schedule(self, ctx) -> tuple[int, int]:
        """Stage ``(iterations, warm-up)`` (:func:`~.stage.stage_schedule`); an ``--iterations``
        different from the preset's count is kept."""
        cfg = preset_configuration(ctx)
        asked = int(ctx.settings.get("plan_iterations", ctx.iterations))
        requested = asked if cfg is None or asked != int(cfg.get("num_iterations", -1)) else None
        if requested is None and ctx.folder is None:
            requested = ctx.iterations
        n_images = 1 if requested else n_training_images(ctx.folder, self._stage_ids(ctx), ctx.spatial_dims)
        return stage_schedule(self.hp, ctx.preset, n_images, requested)

    def setup(self, ctx) -> None:
        hp = self._resolve(ctx)
        self.networks.update(build_networks(hp, ctx.in_channels, ctx.device))
        self.num_classes = ctx.num_classes
        iters, warm = self.schedule(ctx)
        self._schedule = (iters, warm)
        ctx.settings.setdefault("plan_iterations", ctx.iterations)
        ctx.settings["iterations"] = iters  # the record states the stage's iterations
        self.setup_row(ctx)

    def setup_row(self, ctx) -> None:
        """Row-specific setup (networks, rules)."""

    @staticmethod
    def _stage_ids(ctx) -> list[str]:
        return sorted(set(ctx.labelled_ids) | set(ctx.unlabelled_ids))

    # -- the shared stage ----------------------------------------------------------------------------
    def encoder_stage(self, ctx) -> dict:
        """Train (first call) or load (later calls) the stage; loads its weights into this row's
        networks and returns the loop summary."""
        from ...training.checkpoint import seed_everything

        ids = self._stage_ids(ctx)
        iters, warm = self._schedule
        name = f"cuts_encoder-{ctx.configuration}-{stage_key(self.hp, ctx, ids, iters)}"
        try:
            folder = ctx.stage_dir(name)
        except RuntimeError:  # a hand-made context without a workdir: keep the stage inside the run
            folder = Path(ctx.run_dir) / name
        stage = EncoderStage(self.hp, training_mode(self.hp, ctx.preset))
        with stage_lock(folder):
            seed_everything(int(ctx.seed))  # the stage does not depend on which row computes it
            sctx = stage_context(ctx, self.hp, folder, ids, iters, warm)
            stage.setup(sctx)
            summary = sctx.run_loop(stage, out_dir=folder, labelled_ids=[], unlabelled_ids=ids, desc="cuts encoder")
        for k, net in stage.networks.items():
            self.networks[k].load_state_dict(net.state_dict())
        self.stage_folder = folder
        return summary

    def fit(self, ctx) -> dict:
        from ...training.checkpoint import save_checkpoint
        from ...training.loop import CHECKPOINT_FINAL

        t0 = time.perf_counter()
        summary = self.encoder_stage(ctx)
        self.train(False)
        self.fit_row(ctx)
        elapsed = time.perf_counter() - t0
        save_checkpoint(Path(ctx.run_dir) / CHECKPOINT_FINAL,
                        {"iteration": int(summary["iterations"]), "method": self.state_dict(), "train_time_s": elapsed,
                         "settings": ctx.settings, "stage": str(self.stage_folder),
                         "stage_train_time_s": float(summary.get("train_time_s", 0.0))})
        return {"iterations": int(summary["iterations"]), "train_time_s": elapsed, "resumed_from": 0,
                "stage": str(self.stage_folder)}

    def fit_row(self, ctx) -> None:
        """Row-specific training after the stage (nothing for the label-free and oracle rows)."""

    # -- clustering ----------------------------------------------------------------------------------
    def _cluster_params(self, ctx) -> dict:
        h = self.hp
        return {"clustering": h["clustering"], "n_clusters": int(h["n_clusters"]),
                "n_sample": int(_by_preset(h["n_sample"], ctx.preset)), "knn": int(h["knn"]), "t": int(h["phate_t"]),
                "n_landmark": int(h["n_landmark"]), "pca_components": int(h["pca_components"]), "assign": h["assign"],
                "assign_k": int(h["assign_k"]), "seed": int(ctx.seed)}

    def _cache_dir(self, ctx) -> Path:
        return (self.stage_folder if self.stage_folder is not None else Path(ctx.run_dir)) / "clusters"

    def _stack(self, x: np.ndarray, ctx) -> torch.Tensor:
        """``(B, C, H, W)`` tensor of 2D images: the image, or a volume's slices along axis 0."""
        t = torch.from_numpy(np.ascontiguousarray(x))
        if t.ndim - 1 == ctx.spatial_dims:
            return t[None]
        if t.ndim - 1 == ctx.spatial_dims + 1:
            return t.transpose(0, 1).contiguous()
        raise ValueError(f"{self.name}: image of shape {tuple(x.shape)} does not fit {ctx.spatial_dims}D patches")

    @torch.inference_mode()
    def case_clusters(self, x: np.ndarray, ctx, dense: bool) -> dict:
        """Clusters of one scaled case ``(C, *spatial)``: ``sample_index`` (flat voxel indices),
        ``sample_labels``, ``centroids`` ``(K, L)`` and, with ``dense``, ``labels`` (every voxel,
        ``*spatial``). Cached under the stage folder by content hash."""
        p = self._cluster_params(ctx)
        digest = hashlib.sha1(np.ascontiguousarray(x).tobytes())
        digest.update(json.dumps({"shape": list(x.shape), **p}, sort_keys=True).encode())
        path = self._cache_dir(ctx) / f"{digest.hexdigest()[:20]}.npz"
        if path.is_file():
            with np.load(path) as z:
                cached = {k: z[k] for k in z.files}
            if not dense or "labels" in cached:
                return cached
        enc = self.networks["encoder"].eval()
        stack = self._stack(x, ctx).to(ctx.device)
        spatial = tuple(x.shape[1:])
        idx = sample_points(spatial, p["n_sample"], p["seed"])
        coords = np.stack(np.unravel_index(idx, spatial), axis=1)
        if len(spatial) == 2:
            coords = np.concatenate([np.zeros((len(idx), 1), np.int64), coords], axis=1)
        emb = enc.embed_at(stack, torch.from_numpy(coords).to(ctx.device)).float().cpu().numpy()
        labels_s, model = cluster_sample(emb, p["clustering"], p["n_clusters"], p["seed"], p["knn"], p["t"],
                                         p["n_landmark"], p["pca_components"])
        out = {"sample_index": idx, "sample_labels": labels_s, "centroids": cluster_means(emb, labels_s)}
        if dense:
            ref, ref_lab = torch.from_numpy(emb).to(ctx.device), torch.from_numpy(labels_s).to(ctx.device)
            cent = torch.from_numpy(out["centroids"]).to(ctx.device)
            chunks, step = [], max(1, int(self.hp["slice_chunk"]))
            for i in range(0, stack.shape[0], step):
                z = enc(stack[i:i + step]).float()  # (n, L, H, W)
                flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
                chunks.append(assign_labels(flat, ref, ref_lab, cent, p["assign"], p["assign_k"], model).cpu())
            labels = torch.cat(chunks).numpy().astype(np.int16)
            labels[idx] = labels_s  # the subsample keeps its own clusters
            out["labels"] = labels.reshape(spatial)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.npz")
        np.savez(tmp, **out)
        os.replace(tmp, path)
        return out

    # -- inference -----------------------------------------------------------------------------------
    def _scaled(self, image: np.ndarray, ctx) -> np.ndarray:
        return scale_image(image, ctx.spatial_dims, is_rgb01(ctx.plans))

    def row_labels(self, clusters: dict, x: np.ndarray, ctx) -> np.ndarray:
        """Label map (uint8, spatial) of a clustered case."""
        raise NotImplementedError

    def predict_probabilities(self, image: np.ndarray, ctx) -> np.ndarray:
        """One-hot ``(K, *spatial)`` float32 of the row's cluster→class decision for one preprocessed case."""
        x = self._scaled(image, ctx)
        labels = np.asarray(self.row_labels(self.case_clusters(x, ctx, dense=True), x, ctx)).astype(np.int64)
        return np.moveaxis(np.eye(self.num_classes, dtype=np.float32)[labels], -1, 0)


@register_method
class Cuts(_CutsBase):
    """CUTS with a label-free cluster→foreground rule (budget 0): the modality's polarity rule."""

    name = "cuts"
    demo_datasets = ("retina_ga",)  # the paper's home data; demo grid only (see Method.demo_datasets)
    family = "unsupervised"
    needs_labels = False
    budgets = "zero_only"
    class_rule = ("label-free: per case, the one cluster the modality's polarity rule names by cluster mean intensity ("
                  + RULE_TEXT + ")")

    def setup_row(self, ctx) -> None:
        if ctx.num_classes != 2:
            raise ValueError(f"{self.name} names one foreground cluster; dataset {ctx.dataset!r} has "
                             f"{ctx.num_classes - 1} foreground classes (use cuts_assign or cuts_oracle)")
        self.rule = polarity_rule(ctx.plans, self.hp.get("polarity", "auto"), default="smaller")

    def row_labels(self, clusters, x, ctx):
        return label_free_labels(clusters["labels"], x, self.rule)


@register_method
class CutsOracle(_CutsBase):
    """CUTS evaluated as the paper does: the cluster overlapping the test case's ground truth most."""

    name = "cuts_oracle"
    demo_datasets = ("retina_ga",)
    family = "unsupervised"
    needs_labels = False
    budgets = "zero_only"
    oracle = True
    class_rule = ("oracle (the paper's protocol): per test case, for each class the cluster holding the most of the "
                  "class's ground-truth pixels")

    def row_labels(self, clusters, x, ctx):
        case_id = getattr(ctx, "case_id", None)
        if case_id is None or ctx.folder is None:
            raise ValueError(f"{self.name} picks clusters with the reference label of the case it predicts: it predicts "
                             "the benchmark's own test cases only (no reference for a folder of new images)")
        reference = np.asarray(ctx.folder.seg(case_id))
        return oracle_labels(clusters["labels"], reference, self.num_classes)


@register_method
class CutsAssign(_CutsBase):
    """CUTS with a cluster→class assignment learned from the budget's labelled cases (budgets ≥ 1)."""

    name = "cuts_assign"
    demo_datasets = ("retina_ga",)
    family = "semi-supervised"
    needs_labels = True
    budgets = "labelled"
    class_rule = ("learned from the budget's labelled cases: each labelled case's clusters get the class the paper's "
                  "oracle protocol gives them on that case (the cluster holding most of a class's pixels); a test "
                  "cluster takes the majority class of its most similar (cosine, mean embedding) labelled clusters")

    @classmethod
    def estimate_cost_s(cls, plans: dict, preset: str, config: str, budget) -> float:
        """One cell's own work: clustering the budget's labelled cases (subsample only) on top of the
        cached stage — 3 to 26 s per cell in the demo run of the method README, so ~10 s."""
        return 10.0

    def setup_row(self, ctx) -> None:
        enc = self.networks["encoder"]
        self.networks["assign"] = ClusterAssignment(enc.latent_dim, ctx.num_classes,
                                                    int(self.hp["assign_neighbours"])).to(ctx.device)

    def fit_row(self, ctx) -> None:
        """Cluster each labelled case (subsample only) and store its clusters' mean embeddings and
        their class under the oracle protocol on that case (one-hot), read from the case's label at the
        subsampled voxels. Raw class fractions are not used as targets: a small structure (a GA lesion
        covers ~2 % of the image) rarely fills half of its cluster, so a majority-of-pixels rule
        predicts background everywhere (measured: Dice 0.000 on retina_ga_small at budget 2)."""
        if not ctx.labelled_ids:
            raise ValueError(f"{self.name} needs labelled cases (budget >= 1)")
        descriptors, fractions = [], []
        for cid in ctx.labelled_ids:
            cl = self.case_clusters(self._scaled(ctx.folder.image(cid), ctx), ctx, dense=False)
            seg = np.asarray(ctx.folder.seg(cid)).reshape(-1)[cl["sample_index"]]
            k = cl["centroids"].shape[0]
            descriptors.append(cl["centroids"])
            oracle = oracle_labels(cl["sample_labels"], seg, self.num_classes)
            fractions.append(class_fractions(cl["sample_labels"], oracle, k, self.num_classes))
        self.networks["assign"].fit(np.concatenate(descriptors), np.concatenate(fractions))

    def row_labels(self, clusters, x, ctx):
        classes = self.networks["assign"].predict(clusters["centroids"])
        return classes[clusters["labels"].astype(np.int64)].astype(np.uint8)
