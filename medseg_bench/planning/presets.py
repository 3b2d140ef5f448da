"""Presets ``demo``, ``quick`` and ``paper``: patch, batch, network, augmentation and schedule per
configuration, derived from the dataset by fixed rules (nothing is tuned per dataset).

A preset is a policy (:class:`PresetPolicy`), the numbers come from the rules:

* ``paper`` (GPU; nnU-Net v2's defaults, Isensee et al., Nature Methods 2021): start from a patch of
  256^3 (3D) / 2048^2 (2D) voxels in the aspect ratio of the target spacing, clipped to the median
  shape; while the memory estimate (:mod:`.costs`) at batch 2 exceeds the target (8 GB unless
  ``--memory-gb``), shrink the axis with the largest patch / median-shape ratio by its stride divisor;
  then the batch fills the memory left. 32 base features, capped at 320 (3D) / 512 (2D). 1000 epochs
  of 250 iterations.
* ``quick`` and ``demo`` (CPU): the limit is time per step, not memory. The same shrink loop runs
  against the calibrated step-time model (:mod:`.calibration`) at the preferred batch (8 for 2D, 2 for
  3D in ``quick``; 4 / 2 in ``demo``) until a step costs at most the target (0.5 s ``quick``,
  0.05 s ``demo``; one single-threaded runner worker), with smaller networks (16 / 8 base features).
  The number of iterations fills a wall-time budget per cell (``quick``: 150 s for 2D patches, 300 s
  for 3D; ``demo``: 12 s, so the default grid of about a hundred cells fits in 15 minutes on 2 cores).
  ``quick``'s budget is the training time of one ``medseg-bench train`` command, which uses both
  cores of the 2-core reference machine: its steps run :data:`QUICK_TWO_THREAD_SPEEDUP` times faster
  than the single-thread estimate, so ``iterations = budget x speed-up / step``. The speed-up is a
  fixed, measured constant of the policy (not measured at run time), so a plan is the same on every
  machine. A cell of a 2-worker runner (one thread each) then trains about 1.4x the budget.

For every preset the batch size is then capped so that one batch covers at most 5 % of the dataset's
voxels (median shape x number of images), with a floor of 2 that wins over the cap (nnU-Net's rule).

The recommended configuration: ``2d`` for 2D data; for 3D data ``3d_fullres`` in ``paper``, ``2d`` in
``demo``, and in ``quick`` ``3d_fullres`` only when its CPU-sized patch covers at least a quarter of
the median image (else a 3D network would see too little context per step and ``2d`` does better).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .calibration import StepTimeModel
from .costs import estimate_memory_gb, forward_backward_bytes, gpu_step_time_s
from .topology import Topology, get_topology, network_cost, network_dict, stage_filters

__all__ = [
    "PRESETS",
    "PresetPolicy",
    "augmentation_params",
    "derive_configuration",
    "derive_presets",
    "recommended_configuration",
]

ANISO_THRESHOLD = 3.0
MAX_DATASET_COVERAGE = 0.05
MIN_BATCH = 2
QUICK_3D_MIN_COVERAGE = 0.25
#: patches never shrink below this many voxels per axis (or the median size, when smaller)
MIN_PATCH_EDGE = 8
#: 1-thread step estimate / measured 2-thread engine step of the quick 2D network (128x128, batch 7,
#: 16-256 filters) on the idle 2-core reference machine: 0.383 s / 0.27 s (``train``'s own log, with
#: the allocator and OpenMP settings of medseg_bench.training.settings and medseg_bench/__init__.py)
QUICK_TWO_THREAD_SPEEDUP = 1.4


@dataclass(frozen=True)
class PresetPolicy:
    """The rules of one preset (see the module docstring)."""

    name: str
    device: str  # "cpu": step-time limited; "gpu": memory limited
    base_filters: int
    max_filters_2d: int
    max_filters_3d: int
    batch_2d: int = 2
    batch_3d: int = 2
    step_time_target_s: float | None = None
    memory_target_gb: float = 8.0
    cpu_memory_cap_gb: float = 4.0
    train_seconds_2d: float | None = None
    train_seconds_3d: float | None = None
    min_iterations: int = 1
    max_iterations: int = 10**9
    iterations_per_epoch: int = 250
    epochs: int | None = None
    initial_voxels_2d: int = 2048**2
    initial_voxels_3d: int = 256**3
    #: step-time speed-up of the run the budget is meant for over the 1-thread step estimate
    budget_speedup: float = 1.0
    budget_threads: int = 1


PRESETS: dict[str, PresetPolicy] = {
    "demo": PresetPolicy("demo", "cpu", base_filters=8, max_filters_2d=64, max_filters_3d=64, batch_2d=4, batch_3d=2,
                         step_time_target_s=0.05, train_seconds_2d=12.0, train_seconds_3d=12.0,
                         min_iterations=20, max_iterations=400, iterations_per_epoch=50),
    "quick": PresetPolicy("quick", "cpu", base_filters=16, max_filters_2d=256, max_filters_3d=256, batch_2d=8, batch_3d=2,
                          step_time_target_s=0.5, train_seconds_2d=150.0, train_seconds_3d=300.0,
                          min_iterations=100, max_iterations=5000, iterations_per_epoch=50,
                          budget_speedup=QUICK_TWO_THREAD_SPEEDUP, budget_threads=2),
    "paper": PresetPolicy("paper", "gpu", base_filters=32, max_filters_2d=512, max_filters_3d=320, epochs=1000),
}


def _rotation(degrees: float) -> list[float]:
    r = degrees / 360.0 * 2.0 * math.pi
    return [-r, r]


def _rotated_extent(patch, rot_x, rot_y, rot_z, scale_range) -> list[int]:
    """batchgenerators' ``get_patch_size``: the patch to cut before rotating / scaling so that the
    final patch has no empty corners."""
    coords = np.array(patch, dtype=float)
    final = np.copy(coords)
    rx, ry, rz = (max(abs(a) for a in r) for r in (rot_x, rot_y, rot_z))
    rx, ry, rz = (min(0.5 * math.pi, a) for a in (rx, ry, rz))

    def rot(c, axis, angle):
        ca, sa = math.cos(angle), math.sin(angle)
        if len(c) == 2:
            m = np.array([[ca, -sa], [sa, ca]])
        elif axis == 0:
            m = np.array([[1, 0, 0], [0, ca, -sa], [0, sa, ca]])
        elif axis == 1:
            m = np.array([[ca, 0, sa], [0, 1, 0], [-sa, 0, ca]])
        else:
            m = np.array([[ca, -sa, 0], [sa, ca, 0], [0, 0, 1]])
        return np.abs(m) @ c

    if len(coords) == 2:
        final = np.maximum(np.abs(rot(coords, 0, rx)), final)
    else:
        final = np.maximum(np.abs(rot(coords, 0, rx)), final)
        final = np.maximum(np.abs(rot(coords, 1, ry)), final)
        final = np.maximum(np.abs(rot(coords, 2, rz)), final)
    final /= min(scale_range)
    return [int(round(v)) for v in final]


def augmentation_params(patch_size, spacing) -> dict:
    """nnU-Net v2's batchgenerators parameters for a patch (``get_training_transforms`` and
    ``configure_rotation_dummyDA_mirroring_and_inital_patch_size``), as data.

    2D: rotation +-180 degrees (+-15 when the patch is elongated, aspect > 1.5). 3D: +-30 degrees about
    every axis; when anisotropic (patch or spacing more than 3x coarser along the first axis) the
    spatial augmentation is done slice-wise (``do_dummy_2d``): in-plane rotation +-180 degrees only, and
    low-resolution simulation ignores the first axis.
    """
    dims = len(patch_size)
    patch = [int(p) for p in patch_size]
    if dims == 2:
        dummy_2d = False
        rot = _rotation(15.0) if max(patch) / min(patch) > 1.5 else _rotation(180.0)
        rotation = {"x": rot, "y": [0.0, 0.0], "z": [0.0, 0.0]}
        initial = _rotated_extent(patch, rot, [0, 0], [0, 0], (0.85, 1.25))
    else:
        aniso_patch = max(patch) / patch[0] > ANISO_THRESHOLD
        aniso_spacing = spacing[0] / min(spacing[1:]) > ANISO_THRESHOLD
        dummy_2d = bool(aniso_patch or aniso_spacing)
        if dummy_2d:
            rot = _rotation(180.0)
            rotation = {"x": rot, "y": [0.0, 0.0], "z": [0.0, 0.0]}
            initial = [patch[0]] + _rotated_extent(patch[1:], rot, [0, 0], [0, 0], (0.85, 1.25))
        else:
            rot = _rotation(30.0)
            rotation = {"x": rot, "y": rot, "z": rot}
            initial = _rotated_extent(patch, rot, rot, rot, (0.85, 1.25))
    return {
        "library": "batchgenerators",
        "reference": "nnU-Net v2 default training transforms",
        "initial_patch_size": initial,
        "do_dummy_2d": dummy_2d,
        "spatial": {"p_rotation": 0.2, "rotation": rotation, "p_scale": 0.2, "scale": [0.7, 1.4],
                    "independent_scale_for_each_axis": False, "elastic": False,
                    "order_data": 3, "order_seg": 1, "border_mode_data": "constant", "border_cval_seg": -1},
        "gaussian_noise": {"p": 0.1, "variance": [0.0, 0.1]},
        "gaussian_blur": {"p": 0.2, "p_per_channel": 0.5, "sigma": [0.5, 1.0]},
        "brightness_multiplicative": {"p": 0.15, "range": [0.75, 1.25]},
        "contrast": {"p": 0.15, "range": [0.75, 1.25]},
        "low_resolution": {"p": 0.25, "p_per_channel": 0.5, "zoom": [0.5, 1.0], "ignore_axes": [0] if dummy_2d else []},
        "gamma": [{"p": 0.1, "range": [0.7, 1.5], "invert_image": True, "retain_stats": True},
                  {"p": 0.3, "range": [0.7, 1.5], "invert_image": False, "retain_stats": True}],
        "mirror_axes": list(range(dims)),
    }


def _initial_patch(spacing, median_shape, voxels: int) -> list[int]:
    tmp = 1.0 / np.asarray(spacing, dtype=float)
    patch = tmp * (voxels / np.prod(tmp)) ** (1.0 / len(spacing))
    return [int(min(round(p), m)) for p, m in zip(patch, median_shape)]


def _shrink(spacing, median_shape, topo: Topology) -> Topology | None:
    """nnU-Net's step: reduce the axis with the largest patch / median ratio by its divisor. An axis
    never goes below :data:`MIN_PATCH_EDGE` voxels (or its median size, if smaller); None when no
    axis can shrink."""
    ratios = [p / m for p, m in zip(topo.patch_size, median_shape)]
    for axis in np.argsort(ratios, kind="stable")[::-1]:
        floor = min(MIN_PATCH_EDGE, int(median_shape[axis]))
        tmp = list(topo.patch_size)
        tmp[axis] -= topo.divisor[axis]
        if tmp[axis] < floor:
            continue
        div = get_topology(spacing, tmp).divisor
        new = list(topo.patch_size)
        new[axis] -= div[axis]
        if new[axis] < floor:
            continue
        return get_topology(spacing, new)
    return None


def derive_configuration(policy: PresetPolicy, spacing, median_shape, in_channels: int, out_channels: int,
                         dataset_voxels: float, step_model: StepTimeModel, memory_gb: float | None = None) -> dict:
    """Patch, batch, network, augmentation and schedule of one configuration under one preset.

    Args:
        spacing, median_shape: of the patch axes (the in-plane axes for ``2d`` on 3D data), mm / voxels.
        in_channels, out_channels: network channels (classes incl. background).
        dataset_voxels: median image voxels x number of images (the 5 % batch cap's reference).
        step_model: CPU step-time model; memory_gb: GPU memory target (``paper``).

    Returns:
        The configuration's entry in ``plans["presets"][name]["configurations"]``.
    """
    dims = len(spacing)
    cap = policy.max_filters_2d if dims == 2 else policy.max_filters_3d
    batch = policy.batch_2d if dims == 2 else policy.batch_3d
    initial_vox = policy.initial_voxels_2d if dims == 2 else policy.initial_voxels_3d
    start = _initial_patch(spacing, median_shape, initial_vox)
    topo = get_topology(spacing, start)
    target_gb = memory_gb or policy.memory_target_gb

    def evaluate(t: Topology, b: int):
        f = stage_filters(t.num_stages, policy.base_filters, cap)
        cost = network_cost(t, f, in_channels, out_channels)
        step = step_model.predict(dims, cost, b)
        mem_cpu = estimate_memory_gb(cost, b, "cpu")
        return f, cost, step, mem_cpu

    shrinks, fits = 0, False
    while True:
        filters, cost, step, mem_cpu = evaluate(topo, batch if policy.device == "cpu" else MIN_BATCH)
        if policy.device == "cpu":
            fits = step <= policy.step_time_target_s and mem_cpu <= policy.cpu_memory_cap_gb
        else:
            fits = estimate_memory_gb(cost, MIN_BATCH, "gpu") <= target_gb
        if fits:
            break
        smaller = _shrink(spacing, median_shape, topo)
        if smaller is None:
            if policy.device == "cpu" and batch > MIN_BATCH:
                batch -= 1
                continue
            break  # smallest sensible patch: accept it (the rationale says so)
        topo, shrinks = smaller, shrinks + 1
    if policy.device == "gpu":
        static_gb = estimate_memory_gb(cost, 0, "gpu")
        per_sample_gb = forward_backward_bytes(cost, 1, "gpu") / 1e9
        batch = max(MIN_BATCH, int((target_gb - static_gb) // per_sample_gb))
    coverage_cap = int(round(MAX_DATASET_COVERAGE * dataset_voxels / float(np.prod(topo.patch_size))))
    capped = min(batch, coverage_cap)
    batch = max(MIN_BATCH, capped)
    filters, cost, step_cpu, mem_cpu = evaluate(topo, batch)
    if policy.device == "cpu":
        step_time, memory = step_cpu, mem_cpu
        budget = policy.train_seconds_2d if dims == 2 else policy.train_seconds_3d
        iterations = int(min(policy.max_iterations, max(policy.min_iterations, round(budget * policy.budget_speedup / max(step_time, 1e-3)))))
        schedule = {"num_epochs": int(math.ceil(iterations / policy.iterations_per_epoch)),
                    "time_budget_s": budget, "time_budget_threads": policy.budget_threads}
    else:
        step_time, memory = gpu_step_time_s(cost, batch), estimate_memory_gb(cost, batch, "gpu")
        iterations = policy.iterations_per_epoch * policy.epochs
        schedule = {"num_epochs": policy.epochs}
    schedule["iterations_per_epoch"] = policy.iterations_per_epoch
    limit = (f"a step of at most {policy.step_time_target_s:g} s (CPU, 1 thread)" if policy.device == "cpu"
             else f"the GPU memory target of {target_gb:g} GB")
    preferred = (policy.batch_2d if dims == 2 else policy.batch_3d) if policy.device == "cpu" else "what fits"
    origin = ("the median shape " + "x".join(map(str, median_shape)) if list(start) == list(median_shape) else
              "x".join(map(str, start)) + f" (the median shape clipped to {initial_vox} voxels in the spacing's aspect ratio)")
    patch_txt = "x".join(map(str, topo.patch_size))
    if not fits:
        how = f"the smallest patch the rules allow; it does not meet {limit}"
    elif shrinks == 0:
        how = f"{origin}, rounded up to the stride divisor, meets {limit}"
    else:
        how = f"shrunk {shrinks} time(s) from {origin}, largest patch/median axis first, to meet {limit}"

    rationale = (f"patch {patch_txt}: {how}; batch {batch} (preferred {preferred}, at most {coverage_cap} by the "
                 f"5 % coverage cap, at least {MIN_BATCH})")
    return {
        "patch_size": list(topo.patch_size),
        "batch_size": int(batch),
        "network": network_dict(topo, filters, in_channels, out_channels),
        "augmentation": augmentation_params(topo.patch_size, spacing),
        "num_iterations": iterations,
        **schedule,
        "step_time_estimate_s": round(float(step_time), 4),
        "step_time_device": "cpu (1 thread)" if policy.device == "cpu" else "gpu (rough, A100-class)",
        "memory_estimate_gb": round(float(memory), 3),
        "memory_device": policy.device,
        "parameters": cost.parameters,
        "rationale": rationale,
    }


def recommended_configuration(policy: PresetPolicy, data_dims: int, configurations: dict, median_shape_3d=None) -> tuple[str, str]:
    """``(configuration, reason)`` recommended for a dataset under a preset (module docstring)."""
    if data_dims == 2:
        return "2d", "2D data"
    if policy.name == "paper":
        return "3d_fullres", "3D data on a GPU (nnU-Net's default)"
    if policy.name == "demo" or "3d_fullres" not in configurations:
        return "2d", "smoke-level CPU preset: 2D slices are the cheapest"
    patch = configurations["3d_fullres"]["patch_size"]
    coverage = float(np.prod(np.minimum(patch, median_shape_3d)) / np.prod(median_shape_3d))
    if coverage >= QUICK_3D_MIN_COVERAGE:
        return "3d_fullres", f"the CPU-sized 3D patch covers {coverage:.0%} of the median image (>= {QUICK_3D_MIN_COVERAGE:.0%})"
    return "2d", f"the CPU-sized 3D patch covers only {coverage:.0%} of the median image (< {QUICK_3D_MIN_COVERAGE:.0%})"


def derive_presets(configs_geometry: dict, data_dims: int, in_channels: int, out_channels: int, dataset_voxels: float,
                   step_model: StepTimeModel, memory_gb: float | None = None, median_shape_3d=None) -> dict:
    """``plans["presets"]``: every preset x configuration.

    Args:
        configs_geometry: ``{config: (patch-axis spacing, patch-axis median shape)}``.
    """
    out = {}
    for name, policy in PRESETS.items():
        configs = {c: derive_configuration(policy, sp, ms, in_channels, out_channels, dataset_voxels, step_model, memory_gb)
                   for c, (sp, ms) in configs_geometry.items()}
        rec, reason = recommended_configuration(policy, data_dims, configs, median_shape_3d)
        out[name] = {"recommended_configuration": rec, "recommendation_reason": reason,
                     "device": policy.device, "configurations": configs}
    return out
