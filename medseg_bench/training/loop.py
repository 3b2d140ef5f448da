"""The engine's training loop: streams, iterations, logging, checkpoint and exact resume.

``run_loop(method, ctx)`` trains ``method`` for ``ctx.iterations`` iterations, drawing one labelled
batch (if the method needs labels) and one unlabelled batch (if it uses unlabelled data) per step.
Every ``checkpoint_every`` iterations and at the end it writes a checkpoint with the method's,
streams' and RNGs' states; with ``resume=True`` a run killed at any point continues from its last
checkpoint and produces exactly what the uninterrupted run would have (in-process data loading is
deterministic; see :mod:`medseg_bench.data.loader`).

Every loop also keeps its training-loss curve (:class:`~medseg_bench.training.curve.LossCurve`, in
the checkpoints too), writes it to ``loss_curve.json`` beside ``train_log.jsonl``, and appends its
summary (iterations, labelled iterations, curve, convergence check) to ``ctx.loops``, which the cell's
record carries.
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path

import torch

from ..data import BatchStream, load_training_cases
from ..planning.plans_file import write_json_atomic
from .checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from .curve import LossCurve
from .runlog import RunLogger

__all__ = ["CHECKPOINT_FINAL", "CHECKPOINT_LATEST", "build_streams", "run_loop"]

CHECKPOINT_LATEST = "checkpoint_latest.pt"
CHECKPOINT_FINAL = "checkpoint_final.pt"


def _stream_seed(seed: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:4], "little")


def build_streams(method, ctx, labelled_ids=None, unlabelled_ids=None) -> tuple[BatchStream | None, BatchStream | None]:
    """The labelled and unlabelled batch streams ``method`` needs (None for a stream it does not use).

    Only the label files of ``labelled_ids`` (default: the budget's cases) are opened.

    Raises:
        ValueError: the method needs labels but the budget has none, or needs unlabelled data and
            the pool is empty.
    """
    labelled_ids = list(ctx.labelled_ids if labelled_ids is None else labelled_ids)
    unlabelled_ids = list(ctx.unlabelled_ids if unlabelled_ids is None else unlabelled_ids)
    want_l = method.needs_labels
    want_u = method.uses_unlabelled
    if want_l and not labelled_ids:
        raise ValueError(f"method {method.name!r} needs labelled cases but budget {ctx.budget!r} has none")
    if want_u and not unlabelled_ids:
        raise ValueError(f"method {method.name!r} needs unlabelled cases but the pool of budget {ctx.budget!r} is empty")
    lab, unl = load_training_cases(ctx.folder, labelled_ids if want_l else [], unlabelled_ids if want_u else [])
    s = ctx.settings
    ls = us = None
    if want_l:
        ls = BatchStream(lab, s["patch_size"], s["batch_size"], s["augmentation"], s["oversample_foreground"],
                         seed=_stream_seed(ctx.seed, "labelled"))
    if want_u:
        ub = s.get("unlabelled_batch_size") or s["batch_size"]
        us = BatchStream(unl, s["patch_size"], ub, s["augmentation"], 0.0, seed=_stream_seed(ctx.seed, "unlabelled"))
    return ls, us


def _maybe_compile(method, ctx, iterations: int) -> None:
    c = ctx.settings.get("compile", "auto")
    if c is False or ctx.device.type != "cuda" or (c == "auto" and iterations < 1000):
        return
    for net in method.networks.values():
        net.compile()  # in place: state_dict keys are unchanged


def run_loop(method, ctx, out_dir: Path | None = None, iterations: int | None = None, resume: bool = True,
             labelled_ids=None, unlabelled_ids=None, desc: str | None = None) -> dict:
    """Train ``method`` (already ``setup``) and leave its final state in ``out_dir``.

    Args:
        method: a :class:`~medseg_bench.methods.Method` after ``setup(ctx)``.
        ctx: the :class:`~medseg_bench.training.context.RunContext`.
        out_dir: where checkpoints and ``train_log.jsonl`` go (default ``ctx.run_dir``).
        iterations: default ``ctx.iterations``.
        resume: continue from ``checkpoint_latest.pt``; a finished loop (``checkpoint_final.pt``)
            is loaded and not re-run.
        labelled_ids, unlabelled_ids: override the cases of the streams (e.g. a pre-training stage
            on every image without labels).

    Returns:
        ``{"iterations", "labelled_iterations", "train_time_s", "resumed_from", "final_checkpoint",
        "stage", "window_iterations", "loss_curve", "convergence"}`` (``labelled_iterations``: the
        steps that trained on a labelled batch; ``stage``: ``out_dir``'s name), also appended to
        ``ctx.loops``.
    """
    out_dir = Path(out_dir or ctx.run_dir)
    total = ctx.iterations if iterations is None else int(iterations)
    final_path, latest_path = out_dir / CHECKPOINT_FINAL, out_dir / CHECKPOINT_LATEST
    curve = LossCurve(total)
    if resume and final_path.is_file():
        state = load_checkpoint(final_path, map_location=ctx.device)
        method.load_state_dict(state["method"])
        if state.get("loss_curve"):
            curve.load_state_dict(state["loss_curve"])
        return _summary(ctx, out_dir, curve, state["iteration"], state.get("labelled_iterations"),
                        state.get("train_time_s", 0.0), state["iteration"], final_path)
    ls, us = build_streams(method, ctx, labelled_ids, unlabelled_ids)
    start, elapsed = 0, 0.0
    if resume and latest_path.is_file():
        state = load_checkpoint(latest_path, map_location=ctx.device)
        method.load_state_dict(state["method"])
        if ls is not None:
            ls.load_state_dict(state["streams"]["labelled"])
        if us is not None:
            us.load_state_dict(state["streams"]["unlabelled"])
        restore_rng(state["rng"])
        start, elapsed = int(state["iteration"]), float(state.get("train_time_s", 0.0))
        if state.get("loss_curve"):
            curve.load_state_dict(state["loss_curve"])
    s = ctx.settings
    every, log_every = int(s.get("checkpoint_every") or 0), max(1, int(s.get("log_every") or 1))
    tb = out_dir / "tensorboard" if s.get("tensorboard") else None
    logger = RunLogger(out_dir / "train_log.jsonl", total, start, progress=ctx.progress, tensorboard_dir=tb,
                       desc=desc or method.name)

    def checkpoint(path: Path, iteration: int) -> None:
        save_checkpoint(path, {
            "iteration": iteration,
            "method": method.state_dict(),
            "streams": {"labelled": ls.state_dict() if ls else None, "unlabelled": us.state_dict() if us else None},
            "rng": capture_rng(),
            "train_time_s": elapsed,
            "settings": s,
            "loss_curve": curve.state_dict(),
            "labelled_iterations": iteration if ls is not None else 0,
        })

    _maybe_compile(method, ctx, total - start)
    method.train(True)
    t_last = time.perf_counter()
    try:
        for it in range(start, total):
            ctx.iteration = it
            bl = ctx.to_device(next(ls)) if ls is not None else None
            bu = ctx.to_device(next(us)) if us is not None else None
            losses = method.train_iteration(bl, bu, ctx)
            if not math.isfinite(losses.get("loss", 0.0)):
                logger.event(iteration=it + 1, warning="non-finite loss", **{k: str(v) for k, v in losses.items()})
            opt = method.optimizer
            if opt is not None:
                losses.setdefault("lr", opt.param_groups[0]["lr"])
            done = it + 1
            curve.add(done, losses.get("loss", math.nan))
            logger.step(done, losses, write=done % log_every == 0 or done == total)
            now = time.perf_counter()
            elapsed += now - t_last
            t_last = now
            if every and done % every == 0 and done < total:
                checkpoint(latest_path, done)
                t_last = time.perf_counter()  # checkpoint time is not training time
        checkpoint(final_path, total)
        if latest_path.exists():
            latest_path.unlink()
    finally:
        logger.close()
        method.train(False)
    if ctx.device.type == "cuda":
        torch.cuda.synchronize()
    return _summary(ctx, out_dir, curve, total, total if ls is not None else 0, elapsed, start, final_path)


def _summary(ctx, out_dir: Path, curve: LossCurve, iterations: int, labelled: int | None, train_time: float,
             resumed_from: int, final_path: Path) -> dict:
    """The loop's summary (see :func:`run_loop`); written to ``loss_curve.json`` and added to ``ctx.loops``."""
    out = {"stage": out_dir.name, "iterations": int(iterations),
           "labelled_iterations": None if labelled is None else int(labelled), "train_time_s": float(train_time),
           "resumed_from": int(resumed_from), "final_checkpoint": str(final_path), **curve.summary()}
    write_json_atomic(out_dir / "loss_curve.json", {k: v for k, v in out.items() if k != "final_checkpoint"})
    ctx.loops.append(out)
    return out
