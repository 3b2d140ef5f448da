"""Helpers shared by the teacher–student methods (``mean_teacher``, ``embedding_matching``).

* an exponential-moving-average (EMA) teacher: :func:`make_teacher`, :func:`ema_update`,
  :func:`ema_decay` (Tarvainen & Valpola, "Mean teachers are better role models", NeurIPS 2017,
  arXiv:1703.01780; the decay warm-up ``min(1 - 1/(step + 1), decay)`` is from their code);
* the sigmoid ramp-up ``exp(-5 (1 - t)^2)`` of unsupervised loss weights (Laine & Aila, "Temporal
  ensembling for semi-supervised learning", ICLR 2017), :func:`sigmoid_rampup`;
* input noise for the consistency branch, :func:`input_noise` (the clamped Gaussian of the widely
  used medical mean-teacher code, Yu et al., UA-MT, MICCAI 2019 / SSL4MIS);
* :func:`unsup_weight`: the unsupervised weight ramped up over a fraction of the run's own length.

Fair comparison (ARCHITECTURE.md, as SSL4MIS and the papers compare): a teacher–student method runs
exactly the iterations of the cell (``ctx.iterations``, the ones ``supervised`` runs), each with a full
labelled batch of the plan's batch size; the unlabelled batch and the teacher forward are extra work,
reported as cost (the method's ``cost_factor`` feeds the runner's estimate; the record holds the
measured training time), never taken out of training. Ramp-ups are fractions of the run length, so they
scale with the schedule as in SSL4MIS (Luo, https://github.com/HiLab-git/SSL4MIS,
``train_mean_teacher_2D.py``: ``sigmoid_rampup(iter // 150, 200)`` over 30,000 iterations, i.e. the
whole run).

All functions are pure apart from the documented in-place EMA update; randomness comes from torch's
global generator, which the engine's checkpoints capture (exact resume).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import nn

__all__ = ["ema_decay", "ema_update", "input_noise", "make_teacher", "resolve_hparams", "sigmoid_rampup",
           "softmax_mse", "unsup_weight"]


def sigmoid_rampup(step: float, length: float) -> float:
    """``exp(-5 (1 - t)^2)`` with ``t = clip(step / length, 0, 1)`` (Laine & Aila 2017).

    Returns 1.0 when ``length <= 0`` (no ramp-up). ``step`` is 0-based; the value is in (0, 1].
    """
    if length <= 0:
        return 1.0
    t = min(max(float(step) / float(length), 0.0), 1.0)
    return float(math.exp(-5.0 * (1.0 - t) ** 2))


def unsup_weight(step: int, total: int, weight: float, rampup_fraction: float) -> float:
    """``weight * sigmoid_rampup(step, rampup_fraction * total)``: the unsupervised loss weight at
    0-based iteration ``step`` of a ``total``-iteration run."""
    return float(weight) * sigmoid_rampup(step, float(rampup_fraction) * max(int(total), 1))


def ema_decay(step: int, decay: float) -> float:
    """EMA decay at 1-based update ``step``: ``min(1 - 1/(step + 1), decay)`` — early teachers follow
    the student closely (step 1: 0.5), later ones average over ~``1/(1-decay)`` steps."""
    if step < 1:
        raise ValueError(f"ema step must be >= 1, got {step}")
    return min(1.0 - 1.0 / (step + 1.0), float(decay))


def make_teacher(student: nn.Module, build: Callable[[], nn.Module] | None = None) -> nn.Module:
    """A teacher with the student's weights, gradients off, in eval mode.

    ``build`` makes a fresh module of the same architecture (needed when the student holds hooks
    bound to itself, which ``copy.deepcopy`` would keep pointing at the student); default deepcopy.
    """
    if build is None:
        teacher = copy.deepcopy(student)
    else:
        teacher = build()
        teacher.load_state_dict(student.state_dict())
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.eval()


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, decay: float) -> None:
    """In place: ``teacher = decay * teacher + (1 - decay) * student`` for parameters; buffers
    (e.g. norm statistics) are copied from the student.

    Raises:
        ValueError: the two modules have different parameter/buffer names or shapes.
    """
    tp, sp = dict(teacher.named_parameters()), dict(student.named_parameters())
    if tp.keys() != sp.keys():
        raise ValueError(f"teacher/student parameters differ: {sorted(set(tp) ^ set(sp))[:5]}")
    for k, t in tp.items():
        s = sp[k].detach()
        if t.shape != s.shape:
            raise ValueError(f"teacher/student parameter {k!r}: shape {tuple(t.shape)} vs {tuple(s.shape)}")
        t.mul_(decay).add_(s.to(t.dtype), alpha=1.0 - decay)
    sb = dict(student.named_buffers())
    for k, b in teacher.named_buffers():
        if k in sb:
            b.copy_(sb[k])


def input_noise(x: torch.Tensor, std: float, clip: float | None) -> torch.Tensor:
    """``x + clamp(N(0, std^2), -clip, clip)`` (same shape and dtype); ``std <= 0`` returns ``x``.
    Intensities are the preprocessed (normalised) ones, so ``std`` is in units of the image std."""
    if std <= 0:
        return x
    n = torch.randn_like(x) * float(std)
    if clip is not None and clip > 0:
        n = n.clamp(-float(clip), float(clip))
    return x + n


def softmax_mse(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean over batch, classes and voxels of ``(softmax(student) - softmax(teacher))^2``; the
    teacher side carries no gradient. Shapes ``(B, K, *spatial)``."""
    ps = torch.softmax(student_logits.float(), dim=1)
    pt = torch.softmax(teacher_logits.detach().float(), dim=1)
    return ((ps - pt) ** 2).mean()


def resolve_hparams(method, ctx) -> dict:
    """A method's effective hyper-parameters: class defaults < the run's settings (which carry the
    user's overrides, see :func:`~medseg_bench.training.settings.resolve_settings`) < keyword
    arguments given to the method's constructor (kept by the method as ``_init_overrides``)."""
    cls_h = type(method).hparams
    out = dict(cls_h)
    out.update({k: ctx.settings[k] for k in cls_h if k in ctx.settings})
    out.update(getattr(method, "_init_overrides", {}))
    return out
