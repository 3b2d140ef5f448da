"""The method contract check: a method trains a few iterations on tiny synthetic data, predicts the
right shape and labels, resumes from a checkpoint exactly, and opens no label file outside its budget.

``check_method_contract(method_cls, tmp_dir)`` is what the test suite runs for every registered
method (tests/methods/test_method_contract.py) and what a submission can be validated with. The
synthetic data follows the preprocessed-cache layout (notes/contracts.md): discs/balls on noise; a method
whose ``applies_to(plans)`` rule refuses grey images but takes RGB ones (PSM) gets H&E-like RGB discs.
"""

from __future__ import annotations

import builtins
import contextlib
import json
from pathlib import Path

import numpy as np
import torch

from .checkpoint import seed_everything
from .context import RunContext
from .loop import CHECKPOINT_FINAL, CHECKPOINT_LATEST
from .settings import resolve_settings

__all__ = ["ContractError", "check_method_contract", "needs_rgb", "synthetic_context", "synthetic_plans",
           "synthetic_preprocessed"]


class ContractError(AssertionError):
    """A method broke the plugin contract; the message says which part."""


def synthetic_preprocessed(folder: Path, n_cases: int = 6, shape=(40, 40), volume: bool = False, seed: int = 0,
                           rgb: bool = False) -> list[str]:
    """Write ``n_cases`` preprocessed cases (one bright disc, or ball with ``volume``, on noise;
    label = the disc) into ``folder``; returns the case ids. ``rgb``: 3 channels in [0, 1], a dark
    purple disc on pink (an H&E-like ``rgb01`` image) instead of one intensity channel."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    full = ((12,) + tuple(shape)) if volume else tuple(shape)
    grids = np.meshgrid(*[np.arange(s) for s in full], indexing="ij")
    ids = []
    for i in range(n_cases):
        centre = [rng.uniform(s * 0.3, s * 0.7) for s in full]
        r = rng.uniform(4, 8)
        seg = (sum((g - c) ** 2 for g, c in zip(grids, centre)) < r * r).astype(np.int16)
        if rgb:
            colour = np.where(seg[None] > 0, np.array([0.4, 0.2, 0.6]).reshape(3, *([1] * len(full))),
                              np.array([0.9, 0.6, 0.8]).reshape(3, *([1] * len(full))))
            img = np.clip(colour + rng.normal(0, 0.05, size=(3, *full)), 0, 1).astype(np.float32)
        else:
            img = (seg * 2.0 + rng.normal(0, 0.6, size=full)).astype(np.float32)[None]
        cid = f"case_{i:03d}"
        np.save(folder / f"{cid}.npy", img)
        np.save(folder / f"{cid}_seg.npy", seg)
        (folder / f"{cid}.json").write_text(json.dumps({"case_id": cid, "subset": "train", "has_label": True}))
        ids.append(cid)
    return ids


def _tiny_preset_config(patch, iterations: int, in_channels: int = 1) -> dict:
    dims = len(patch)
    return {
        "patch_size": list(patch),
        "batch_size": 2,
        "num_iterations": iterations,
        "network": {"spatial_dims": dims, "in_channels": in_channels, "out_channels": 2, "kernel_size": [[3] * dims] * 3,
                    "strides": [[1] * dims, [2] * dims, [2] * dims], "filters": [4, 8, 16]},
        "augmentation": {"mirror_axes": list(range(dims)),
                         "spatial": {"p_rotation": 0.2, "rotation": {"x": [-0.3, 0.3], "y": [-0.3, 0.3], "z": [-0.3, 0.3]},
                                     "p_scale": 0.2, "scale": [0.9, 1.1]}},
    }


def synthetic_plans(dims: int, rgb: bool = False) -> dict:
    """The plan fields a method may read on synthetic data (one grey channel, or RGB)."""
    return {"labels": {"background": 0, "blob": 1}, "dims": dims, "instance_labels": False,
            "num_channels": 3 if rgb else 1, "rgb": bool(rgb)}


def needs_rgb(method_cls, dims: int) -> bool:
    """True for a method whose ``applies_to`` rule refuses grey synthetic data but takes RGB."""
    hook = getattr(method_cls, "applies_to", None)
    return callable(hook) and not hook(synthetic_plans(dims)) and bool(hook(synthetic_plans(dims, rgb=True)))


def synthetic_context(method_cls, folder, ids: list[str], run_dir: Path, patch=(32, 32), iterations: int = 4,
                      checkpoint_every: int = 2, workdir=None, rgb: bool = False) -> RunContext:
    """A :class:`RunContext` on :func:`synthetic_preprocessed` data: 4 labelled cases (none for
    label-free methods), the other cases as the unlabelled pool."""
    from ..data import PreprocessedFolder

    settings = resolve_settings(_tiny_preset_config(patch, iterations, 3 if rgb else 1), method_cls.hparams,
                                {"iterations": iterations, "checkpoint_every": checkpoint_every, "log_every": 1})
    labelled = [] if method_cls.budgets == "zero_only" or not method_cls.needs_labels else ids[:4]
    return RunContext(settings=settings, plans=synthetic_plans(len(patch), rgb),
                      configuration=f"{len(patch)}d", preset="quick", device=torch.device("cpu"), dataset="synthetic",
                      budget=len(labelled), seed=0, run_dir=Path(run_dir), workdir=workdir,
                      folder=PreprocessedFolder(folder), labelled_ids=labelled, unlabelled_ids=ids[4:], progress=False)


@contextlib.contextmanager
def _label_spy(opened: list):
    real_open, real_load = builtins.open, np.load

    def spy_open(file, *a, **k):
        opened.append(str(file))
        return real_open(file, *a, **k)

    def spy_load(file, *a, **k):
        opened.append(str(file))
        return real_load(file, *a, **k)

    builtins.open, np.load = spy_open, spy_load
    try:
        yield
    finally:
        builtins.open, np.load = real_open, real_load


class _Kill(Exception):
    pass


@contextlib.contextmanager
def _kill_loops_at(kill_at: int):
    """Make every engine loop raise :class:`_Kill` when it reaches iteration ``kill_at``: the loop
    of the method under test and those of the helper methods it chains (e.g. a budget-independent
    stage trained by another :class:`~medseg_bench.methods.Method` instance), through
    ``Method.train_iteration``."""
    from ..methods.base import Method

    orig = Method.train_iteration

    def step(self, bl, bu, c):
        if c.iteration == kill_at:
            raise _Kill()
        return orig(self, bl, bu, c)

    Method.train_iteration = step
    try:
        yield
    finally:
        Method.train_iteration = orig


def _fit(method_cls, ctx, kill_at: int | None = None):
    seed_everything(0)
    m = method_cls()
    m.setup(ctx)
    if kill_at is None:
        return m, m.fit(ctx)
    orig = m.train_iteration  # a method may override train_iteration: patch the instance too

    def step(bl, bu, c):
        if c.iteration == kill_at:
            raise _Kill()
        return orig(bl, bu, c)

    m.train_iteration = step
    with _kill_loops_at(kill_at):
        return m, m.fit(ctx)


def _weights(m) -> dict:
    return {f"{n}.{k}": v.detach().clone() for n, net in m.networks.items() for k, v in net.state_dict().items()}


def check_method_contract(method_cls, tmp_dir, dims: int = 2) -> None:
    """Run the contract checks for ``method_cls`` on ``dims``-D synthetic data under ``tmp_dir``.

    Raises:
        ContractError: naming the broken part of the contract.
    """
    tmp_dir = Path(tmp_dir)
    volume = dims == 3
    patch = (8, 16, 16) if volume else (32, 32)
    shape = (24, 24) if volume else (40, 40)
    rgb = needs_rgb(method_cls, dims)
    ids = synthetic_preprocessed(tmp_dir / "pre", shape=shape, volume=volume, rgb=rgb)
    from ..workdir import Workdir

    wd = Workdir(tmp_dir / "work")

    # 1. trains, opening only its budget's label files
    opened: list[str] = []
    ctx = synthetic_context(method_cls, tmp_dir / "pre", ids, tmp_dir / "run_ref", patch, workdir=wd, rgb=rgb)
    with _label_spy(opened):
        ref, _ = _fit(method_cls, ctx)
    allowed = {f"{c}_seg.npy" for c in ctx.labelled_ids}
    bad = sorted({Path(p).name for p in opened if p.endswith("_seg.npy") and Path(p).name not in allowed})
    if bad:
        raise ContractError(f"{method_cls.name}: opened label file(s) outside the budget: {bad}")
    if method_cls.trains and not (ctx.run_dir / CHECKPOINT_FINAL).is_file():
        raise ContractError(f"{method_cls.name}: no final checkpoint in {ctx.run_dir}")

    # 2. predicts probabilities and labels of the right shape (the engine names the case it predicts)
    for net in ref.networks.values():
        net.eval()
    image = ctx.folder.image(ids[-1])
    ctx.case_id = ids[-1]
    probs = np.asarray(ref.predict_probabilities(image, ctx))
    ctx.case_id = None
    want = (2, *image.shape[1:])
    if probs.shape != want or not np.isfinite(probs).all():
        raise ContractError(f"{method_cls.name}: predict_probabilities gave {probs.shape} (finite: "
                            f"{np.isfinite(probs).all()}), expected finite {want}")
    seg = np.asarray(ref.to_segmentation(probs, image))
    if seg.shape != image.shape[1:] or not set(np.unique(seg).tolist()) <= {0, 1}:
        raise ContractError(f"{method_cls.name}: to_segmentation gave shape {seg.shape}, values {np.unique(seg)[:10]}")
    if not method_cls.trains:
        return

    # 3. killed after a checkpoint and resumed: same final weights as the uninterrupted run. In a
    #    fresh workdir: a method whose training is a budget-independent stage cached under
    #    ctx.stage_dir (Method.shared_stages) would otherwise just load the reference run's stage;
    #    here the stage itself is killed and resumed (its checkpoint lives in the stage folder).
    wd2 = Workdir(tmp_dir / "work_resumed")
    ctx2 = synthetic_context(method_cls, tmp_dir / "pre", ids, tmp_dir / "run_killed", patch, workdir=wd2, rgb=rgb)
    try:
        _fit(method_cls, ctx2, kill_at=3)
    except _Kill:
        pass
    else:
        raise ContractError(f"{method_cls.name}: training did not reach iteration 4 of the engine loop")
    stages = wd2.root / "stages"
    latest = [ctx2.run_dir / CHECKPOINT_LATEST, *(sorted(stages.rglob(CHECKPOINT_LATEST)) if stages.is_dir() else [])]
    if not any(p.is_file() for p in latest):
        raise ContractError(f"{method_cls.name}: no checkpoint_latest.pt after 2 iterations with checkpoint_every=2")
    torch.manual_seed(1234)
    np.random.seed(1234)
    resumed, info = _fit(method_cls, synthetic_context(method_cls, tmp_dir / "pre", ids, tmp_dir / "run_killed", patch,
                                                       workdir=wd2, rgb=rgb))
    a, b = _weights(ref), _weights(resumed)
    diff = [k for k in a if not torch.equal(a[k], b[k])]
    if diff:
        raise ContractError(f"{method_cls.name}: resumed run differs from the uninterrupted run in {diff[:5]}")
