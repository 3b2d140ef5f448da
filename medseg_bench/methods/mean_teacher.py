"""Mean Teacher — Tarvainen & Valpola, "Mean teachers are better role models: weight-averaged
consistency targets improve semi-supervised deep learning results", NeurIPS 2017 (arXiv:1703.01780).

The classic semi-supervised baseline every leaderboard needs (design/METHODS.md, "Baselines"):

* student: the plan's U-Net, Dice + CE on the labelled batch (exactly as ``supervised``);
* teacher: an exponential moving average (EMA) of the student's weights, decay ``ema_decay`` (0.99)
  with the warm-up ``min(1 - 1/(step+1), decay)`` of the authors' code;
* consistency: mean squared error between the student's and the teacher's softmax on the
  unlabelled batch, each network seeing its own clamped Gaussian input noise (std 0.1, clip 0.2, as in
  the medical mean-teacher code of Yu et al., UA-MT, MICCAI 2019 / SSL4MIS); the unlabelled batch has
  already been through the plan's augmentation, so both networks see the same geometry;
* consistency weight ``consistency * exp(-5 (1 - t)^2)`` ramped up over the first
  ``rampup_fraction`` of the iterations (Laine & Aila 2017); ``consistency = 0.1`` and a ramp-up over
  the whole run (``rampup_fraction = 1``) as in SSL4MIS's ``train_mean_teacher_2D.py`` (ramp-up length
  200 x 150 iterations of its 30,000) and UA-MT (40 x 150 of 6,000); their MSE is a mean over voxels
  and classes, like ours. (SSL4MIS also zeroes the term for the first 1,000 iterations, where its ramp
  is already below 1 %: not copied.)
* prediction with the teacher (``predict_with="teacher"``; Tarvainen & Valpola report the EMA model
  as the better one), or the student.

The teacher lives in ``networks["teacher"]`` (gradients off), so it is in every checkpoint and a
resumed run is exact; ``predict`` loads it with the other weights.

Fair comparison: the method runs the cell's iterations (``ctx.iterations``, the number ``supervised``
runs), each with a full labelled batch of the plan's batch size plus an unlabelled batch of the same
size. A step costs about :attr:`MeanTeacher.cost_factor` supervised steps (student forward/backward on
both batches plus a teacher forward; measured ~2.3 on 1 CPU thread): the runner's estimate and the cost
table show it; it never shortens training.

Every default in :attr:`MeanTeacher.hparams` is overridable (``train_cell(..., overrides=...)``).
"""

from __future__ import annotations

import torch

from ._teacher import (
    ema_decay,
    ema_update,
    input_noise,
    make_teacher,
    resolve_hparams,
    softmax_mse,
    unsup_weight,
)
from .base import Method
from .registry import register_method

__all__ = ["MeanTeacher"]

_CITATION = ("Tarvainen & Valpola, Mean teachers are better role models: weight-averaged consistency targets "
             "improve semi-supervised deep learning results, NeurIPS 2017, arXiv:1703.01780")


@register_method
class MeanTeacher(Method):
    """Mean Teacher (Tarvainen & Valpola 2017) on the plan's U-Net; see the module docstring.

    hparams (beyond the optimiser's, which are the supervised baseline's):
        ema_decay: teacher EMA decay (paper/code: 0.99 for the later phase; 0.99 here throughout).
        consistency: maximum consistency weight (UA-MT/SSL4MIS code: 0.1).
        rampup_fraction: fraction of the run's iterations over which the weight ramps up (SSL4MIS /
            UA-MT code: the whole run, 1.0).
        noise_std, noise_clip: the clamped Gaussian input noise of each branch (code: 0.1, 0.2).
        predict_with: ``"teacher"`` or ``"student"``.

    ``cost_factor`` (class attribute): a step's cost in supervised steps (measured ~2.3 on 1 CPU
    thread), for the runner's cost estimate only.
    """

    name = "mean_teacher"
    family = "semi-supervised"
    citation = _CITATION
    dims = (2, 3)
    needs_labels = True
    uses_unlabelled = True
    budgets = "labelled"
    hparams = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.99, "nesterov": True, "schedule": "poly",
               "ema_decay": 0.99, "consistency": 0.1, "rampup_fraction": 1.0, "noise_std": 0.1, "noise_clip": 0.2,
               "predict_with": "teacher"}
    cost_factor = 2.3

    def __init__(self, **overrides):
        super().__init__(**overrides)
        self._init_overrides = dict(overrides)
        self.hp = dict(self.hparams)

    def setup(self, ctx) -> None:
        self.hp = resolve_hparams(self, ctx)
        if self.hp["predict_with"] not in ("teacher", "student"):
            raise ValueError(f"{self.name}: predict_with must be 'teacher' or 'student', got {self.hp['predict_with']!r}")
        if not 0.0 <= float(self.hp["ema_decay"]) < 1.0:
            raise ValueError(f"{self.name}: ema_decay must be in [0, 1), got {self.hp['ema_decay']}")
        student = ctx.build_network()
        self.networks["network"] = student
        self.networks["teacher"] = make_teacher(student)
        self.optimizer, self.scheduler = ctx.make_optimizer(self.parameters())

    def train(self, mode: bool = True) -> None:
        self.networks["network"].train(mode)
        self.networks["teacher"].eval()  # the teacher never trains; its noise is the input noise

    def training_step(self, labelled, unlabelled, ctx) -> dict:
        h = self.hp
        student, teacher = self.networks["network"], self.networks["teacher"]
        xl, xu = labelled["data"], unlabelled["data"]
        b = xl.shape[0]
        logits = student(torch.cat([xl, input_noise(xu, h["noise_std"], h["noise_clip"])]))
        sup = ctx.segmentation_loss(logits[:b], labelled["seg"])
        with torch.no_grad():
            t_logits = teacher(input_noise(xu, h["noise_std"], h["noise_clip"]))
        cons = softmax_mse(logits[b:], t_logits)
        w = unsup_weight(ctx.iteration, ctx.iterations, h["consistency"], h["rampup_fraction"])
        return {"loss": sup + w * cons, "supervised": sup.detach(), "consistency": cons.detach(), "consistency_weight": w}

    def after_step(self, ctx) -> None:
        ema_update(self.networks["teacher"], self.networks["network"], ema_decay(ctx.iteration + 1, self.hp["ema_decay"]))

    def inference_network(self) -> torch.nn.Module:
        return self.networks["teacher" if self.hp["predict_with"] == "teacher" else "network"]
