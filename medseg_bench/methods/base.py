"""The method plugin contract: a :class:`Method` plugs hooks into the training engine.

The engine (:mod:`medseg_bench.training`) owns the loop, checkpoints, resume, logging and inference
plumbing; a method declares what it is (class attributes) and supplies hooks:

* ``setup(ctx)`` builds its networks, optimiser and scheduler (default: the plan's U-Net, the
  optimiser/schedule named in ``hparams``);
* ``training_step(labelled, unlabelled, ctx) -> {"loss": tensor, ...}`` on one labelled and/or one
  unlabelled batch (``{"data": (B, C, *patch), "seg": (B, 1, *patch) long, "case_ids": [...]}``, on
  the device; ``None`` for a stream the method does not use);
* ``train_iteration`` (rarely overridden) wraps it: zero grad, autocast, backward, clip, step;
* ``after_step(ctx)`` e.g. an EMA teacher update;
* ``fit(ctx)`` runs the engine loop once (override to chain stages, e.g. pre-train -> fine-tune,
  caching budget-independent stages under ``ctx.stage_dir(...)``);
* ``predict_logits(x)``, ``predict_probabilities(image, ctx)``, ``to_segmentation(probs, image)``,
  ``to_instances(seg, probs, spacing)`` for inference (defaults: sliding-window softmax, argmax, and
  None = the engine's documented instance post-processing).

Methods that output clusters instead of classes set ``class_rule`` (how a cluster becomes a class)
and ``oracle`` (True when ground truth picks it). A simple method is ~50 lines; see
:mod:`medseg_bench.methods.supervised`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch

if TYPE_CHECKING:  # pragma: no cover
    from ..training.context import RunContext

__all__ = ["Method", "plan_training_s"]


def plan_training_s(plans: dict, preset: str, config: str) -> float:
    """``num_iterations × step_time_estimate_s`` of the plan's ``preset``/``config`` block: the
    planner's estimate of the seconds ``supervised`` trains in a cell (0 when the plan has none).
    The cost hooks (``estimate_cost_s``, ``estimate_stage_cost_s``) scale it."""
    cfg = ((plans.get("presets") or {}).get(preset) or {}).get("configurations", {}).get(config) or {}
    return float(cfg.get("num_iterations") or 0) * float(cfg.get("step_time_estimate_s") or 0.0)


class Method:
    """Base class of every segmentation method (see module docstring).

    Class attributes:
        name: registry key (``--method``).
        family: ``"unsupervised" | "semi-supervised" | "supervised" | "classical"``.
        citation: the paper (authors, venue, year, arXiv/DOI) or ``"baseline: ..."``.
        dims: supported dataset dimensionalities, e.g. ``(2, 3)``.
        needs_labels: reads labelled cases in training.
        uses_unlabelled: needs the unlabelled stream (semi-supervised and unsupervised methods).
        oracle: picks classes with ground truth (leaderboards never rank it beside label-free rows).
        class_rule: how clusters become classes (None for methods that predict classes).
        budgets: which budgets the runner gives it: ``"zero_only"`` (label-free methods),
            ``"labelled"`` (budgets >= 1 and "all"), ``"all_only"`` (the upper bound).
        predicts_instances: ``to_instances`` returns the method's own instance maps.
        trains: False for methods without a gradient loop (classical); the engine then skips it.
        shared_stages: names of budget-independent stages the method caches under ``ctx.stage_dir``
            (e.g. an unsupervised pre-training; prefixes of the stage folders' names). The runner then
            runs one budget's cell first and the others after it, so no worker computes a stage twice
            or waits on another's lock; methods declaring the same names share one stage (and group).
            Cost hooks (optional classmethods, for the runner's estimates only):
            ``estimate_cost_s(plans, preset, config, budget) -> seconds`` of one cell's own work, and,
            for a method with shared stages, ``estimate_stage_cost_s(plans, preset, config) ->
            {stage name: seconds}``, which the grid charges once per (dataset, preset, configuration,
            seed) group (:func:`medseg_bench.bench.grid.estimate_grid_cost_s`); ``estimate_cost_s``
            then leaves the stage out.
        hparams: training defaults overriding the engine's (see
            :data:`medseg_bench.training.settings.ENGINE_DEFAULTS`): optimiser, lr, schedule, ...
        cost_factor: a training step's cost in steps of ``supervised`` (e.g. 2.3 for a teacher-student
            step on a labelled and an unlabelled batch), for the runner's cost estimate only. Fair
            comparison: a method that trains on labels runs at least the cell's iterations
            (``ctx.iterations``, what ``supervised`` runs) with the plan's labelled batch size; extra
            work is cost, never fewer labelled iterations.
        demo_datasets: under the ``demo`` preset's default grid, the row runs only on datasets whose
            name starts with one of these (its paper's home data), so the default ``run`` stays within
            its 15-minute budget; empty: every dataset. ``quick``/``paper`` grids and methods named
            with ``--methods`` run on every dataset they apply to.
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = "supervised"
    citation: ClassVar[str] = ""
    dims: ClassVar[tuple] = (2, 3)
    needs_labels: ClassVar[bool] = True
    uses_unlabelled: ClassVar[bool] = False
    oracle: ClassVar[bool] = False
    class_rule: ClassVar[str | None] = None
    budgets: ClassVar[str] = "labelled"
    predicts_instances: ClassVar[bool] = False
    trains: ClassVar[bool] = True
    shared_stages: ClassVar[tuple] = ()
    hparams: ClassVar[dict] = {}
    cost_factor: ClassVar[float] = 1.0
    demo_datasets: ClassVar[tuple] = ()

    def __init__(self, **overrides):
        self.hparams = {**type(self).hparams, **overrides}
        self.networks: dict[str, torch.nn.Module] = {}
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler = None

    # -- description ---------------------------------------------------------------------------------
    @classmethod
    def info(cls) -> dict:
        """The ``method_info`` block of a result record."""
        return {"family": cls.family, "citation": cls.citation, "needs_labels": cls.needs_labels,
                "uses_unlabelled": cls.uses_unlabelled, "oracle": cls.oracle, "class_rule": cls.class_rule}

    @classmethod
    def applies_to(cls, plans: dict) -> bool:
        """Whether the method can run on the dataset of ``plans`` (default True; e.g. a method
        that needs RGB images says False for grey ones). Benchmark grids skip the others."""
        return True

    @classmethod
    def recommended_configuration(cls, plans: dict, preset: str) -> str | None:
        """Configuration (``"2d"``/``"3d_fullres"``) this method prefers; None: the preset's choice."""
        return None

    # -- training hooks ------------------------------------------------------------------------------
    def setup(self, ctx: RunContext) -> None:
        """Build networks and optimiser. Default: the plan's U-Net as ``networks["network"]``."""
        self.networks["network"] = ctx.build_network()
        self.optimizer, self.scheduler = ctx.make_optimizer(self.parameters())

    def parameters(self):
        """Trainable parameters of all networks (each once)."""
        seen = set()
        for net in self.networks.values():
            for p in net.parameters():
                if p.requires_grad and id(p) not in seen:
                    seen.add(id(p))
                    yield p

    def training_step(self, labelled: dict | None, unlabelled: dict | None, ctx: RunContext) -> dict:
        """Losses on one step's batches; must contain ``"loss"`` (the tensor to minimise)."""
        raise NotImplementedError(f"{type(self).__name__} must implement training_step")

    def train_iteration(self, labelled: dict | None, unlabelled: dict | None, ctx: RunContext) -> dict:
        """One optimisation step; returns the step's losses as floats."""
        self.optimizer.zero_grad(set_to_none=True)
        with ctx.autocast():
            losses = self.training_step(labelled, unlabelled, ctx)
        ctx.backward_and_step(losses["loss"], self.optimizer, list(self.parameters()))
        if self.scheduler is not None:
            self.scheduler.step()
        self.after_step(ctx)
        return {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in losses.items()}

    def after_step(self, ctx: RunContext) -> None:
        """Called after every optimiser step (e.g. EMA teacher update)."""

    def fit(self, ctx: RunContext) -> dict | None:
        """Train. Default: one engine loop over ``ctx.iterations`` iterations; returns the loop's
        summary (``train_time_s``, ...) or None."""
        return ctx.run_loop(self)

    def train(self, mode: bool = True) -> None:
        for net in self.networks.values():
            net.train(mode)

    # -- checkpoint ----------------------------------------------------------------------------------
    def extra_state(self) -> dict:
        """Anything else a resumed run needs (tensors, numbers)."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    def state_dict(self) -> dict:
        return {
            "networks": {k: v.state_dict() for k, v in self.networks.items()},
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: dict, weights_only: bool = False) -> None:
        """Restore networks (and, unless ``weights_only``, optimiser, scheduler, extra state)."""
        missing = set(self.networks) - set(state["networks"])
        if missing:
            raise KeyError(f"checkpoint lacks network(s) {sorted(missing)}")
        for k, net in self.networks.items():
            net.load_state_dict(state["networks"][k])
        if weights_only:
            return
        if self.optimizer is not None and state.get("optimizer") is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.load_extra_state(state.get("extra") or {})

    # -- inference hooks -----------------------------------------------------------------------------
    def inference_network(self) -> torch.nn.Module:
        return self.networks["network"]

    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, K, *patch)`` class scores for a batch of patches ``(B, C, *patch)``."""
        return self.inference_network()(x)

    def predict_probabilities(self, image: np.ndarray, ctx: RunContext) -> np.ndarray:
        """Class probabilities ``(K, *spatial)`` float32 for one preprocessed image ``(C, *spatial)``."""
        return ctx.sliding_window(self.predict_logits, image)

    def to_segmentation(self, probabilities: np.ndarray, image: np.ndarray | None = None) -> np.ndarray:
        """Label map from probabilities (default argmax). Cluster methods apply ``class_rule`` here."""
        return np.argmax(probabilities, axis=0).astype(np.uint8)

    def to_instances(self, segmentation: np.ndarray, probabilities: np.ndarray | None, spacing) -> np.ndarray | None:
        """The method's own instance map, or None for the engine's documented post-processing."""
        return None
