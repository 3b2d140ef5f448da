"""The planner: fingerprint -> ``plans.json`` (spacing, transpose, normalisation, resampling, presets).

Rules follow nnU-Net v2's ``ExperimentPlanner`` (Isensee et al., "nnU-Net: a self-configuring method
for deep learning-based biomedical image segmentation", Nature Methods 18, 2021):

* target spacing = per-axis median of the cases' spacings; when one axis is more than 3x coarser than
  the others in spacing *and* more than 3x smaller in voxels, that axis takes the 10th percentile of
  its spacings instead (never finer than the other axes);
* transpose so that the coarsest target axis comes first (2D slices of a 3D array are then in the
  finest plane);
* normalisation by the channel's modality (:mod:`medseg_bench.preprocessing.normalise`): CT uses
  dataset-wide body statistics (not label-foreground statistics: a documented deviation, so plans use
  no labels), z-score on the non-zero mask when cropping shrank the median image below 3/4;
* resampling: images cubic, labels per class (linear), instance maps nearest; out-of-plane nearest
  when anisotropic (more than 3x);
* configurations: ``2d`` always, ``3d_fullres`` for 3D data. For 3D data, ``2d`` trains on slices
  along the first (coarsest) axis of the same preprocessed arrays (shared ``data_identifier``; a
  deviation from nnU-Net, which leaves that axis at its original spacing for ``2d``, so that
  preprocessing runs once);
* presets ``demo`` / ``quick`` / ``paper`` (:mod:`.presets`).

Only the image-derived part of the fingerprint is read (:func:`image_view`), so plans do not change
when labels do.
"""

from __future__ import annotations

import numpy as np

from .calibration import StepTimeModel, load_step_time_model
from .presets import derive_presets

__all__ = [
    "PLANS_VERSION",
    "image_view",
    "make_plans",
    "normalization_for",
    "resampling_for",
    "target_spacing",
    "transpose_for",
]

PLANS_VERSION = 1
ANISO_THRESHOLD = 3.0
#: fingerprint keys the planner may read: none of them is derived from labels
IMAGE_KEYS = (
    "dataset", "dims", "rgb", "instance_labels", "channel_names", "modality", "channel_schemes", "num_channels",
    "labels", "num_cases", "spacings", "shapes_after_crop", "median_relative_size_after_cropping",
    "intensity_statistics_per_channel",
)


def image_view(fingerprint: dict) -> dict:
    """The fingerprint without anything label-derived (``labels`` is the class list of dataset.json)."""
    missing = [k for k in IMAGE_KEYS if k not in fingerprint]
    if missing:
        raise KeyError(f"fingerprint lacks {', '.join(missing)}; re-run `medseg-bench plan --force`")
    return {k: fingerprint[k] for k in IMAGE_KEYS}


def target_spacing(spacings, shapes, threshold: float = ANISO_THRESHOLD) -> list[float]:
    """nnU-Net's full-resolution target spacing (numpy axis order of the data).

    Args:
        spacings: ``(N, d)`` per-case spacings.
        shapes: ``(N, d)`` per-case shapes after cropping (voxels).

    Example:
        >>> target_spacing([[5, 1, 1], [5, 1, 1], [2, 1, 1]], [[20, 200, 200]] * 3)
        [2.6, 1.0, 1.0]
    """
    spacings = np.asarray(spacings, dtype=float)
    shapes = np.asarray(shapes, dtype=float)
    target = np.percentile(spacings, 50, axis=0)
    if spacings.shape[1] < 2:
        return [float(t) for t in target]
    median_size = np.percentile(shapes, 50, axis=0)
    worst = int(np.argmax(target))
    others = [i for i in range(len(target)) if i != worst]
    aniso_spacing = target[worst] > threshold * min(target[others])
    aniso_voxels = median_size[worst] * threshold < min(median_size[others])
    if aniso_spacing and aniso_voxels:
        coarse = float(np.percentile(spacings[:, worst], 10))
        if coarse < max(target[others]):
            coarse = max(max(target[others]), coarse) + 1e-5
        target[worst] = coarse
    return [float(round(t, 6)) for t in target]


def transpose_for(spacing) -> tuple[list[int], list[int]]:
    """``(transpose_forward, transpose_backward)``: the coarsest axis first, the others in order
    (identity for 2D and for isotropic data)."""
    dims = len(spacing)
    if dims < 3:
        return list(range(dims)), list(range(dims))
    coarsest = int(np.argmax(spacing))
    forward = [coarsest] + [i for i in range(dims) if i != coarsest]
    backward = [int(i) for i in np.argsort(forward)]
    return forward, backward


def normalization_for(view: dict) -> dict:
    """The ``normalization`` entry: one parameter set per channel (see the normalise module)."""
    use_mask = view["median_relative_size_after_cropping"] < 0.75
    channels = []
    for c, scheme in enumerate(view["channel_schemes"]):
        st = view["intensity_statistics_per_channel"][str(c)]
        if scheme == "ct":
            params = {"scheme": "ct", "clip": [st["percentile_00_5"], st["percentile_99_5"]], "mean": st["mean"],
                      "std": st["std"], "statistics_region": "body voxels (> -500 HU) of the training images"}
        elif scheme == "zscore":
            params = {"scheme": "zscore", "use_mask": bool(use_mask)}
        elif scheme == "rgb01":
            params = {"scheme": "rgb01", "scale": 255.0 if (st["max"] or 0) <= 255 else 65535.0}
        elif scheme == "spect":
            params = {"scheme": "spect", "percentile": 99.5}
        else:
            params = {"scheme": scheme}
        channels.append(params)
    schemes = {p["scheme"] for p in channels}
    return {"scheme": channels[0]["scheme"] if len(schemes) == 1 else "mixed", "channels": channels}


def resampling_for() -> dict:
    """The ``resampling`` entry (same for every configuration; orders as in nnU-Net v2)."""
    return {
        "anisotropy_threshold": ANISO_THRESHOLD,
        "data": {"order": 3, "order_out_of_plane": 0, "kernel": "cubic convolution (Keys, a=-0.5)"},
        "label": {"order": 1, "order_out_of_plane": 0, "kernel": "per-class linear, argmax"},
        "instances": {"order": 0, "order_out_of_plane": 0, "kernel": "nearest"},
        "probabilities": {"order": 1, "order_out_of_plane": 0, "kernel": "linear"},
    }


def make_plans(fingerprint: dict, memory_gb: float | None = None, step_model: StepTimeModel | None = None) -> dict:
    """Plans from a fingerprint (pure: reads only :func:`image_view` of it).

    Args:
        fingerprint: content of ``fingerprint.json``.
        memory_gb: GPU memory target of the ``paper`` preset (default 8 GB, nnU-Net's).
        step_model: CPU step-time model (default: this machine's calibration, else the shipped one).

    Returns:
        The content of ``plans.json`` (without the file's bookkeeping fields).
    """
    view = image_view(fingerprint)
    step_model = step_model or load_step_time_model()
    dims = int(view["dims"])
    spacings = np.asarray(view["spacings"], dtype=float)
    shapes = np.asarray(view["shapes_after_crop"], dtype=float)
    target = target_spacing(spacings, shapes)
    forward, backward = transpose_for(target)
    target_t = [target[a] for a in forward]
    # each case's shape in the target spacing, then the median (nnU-Net's new_median_shape)
    new_shapes = np.round(shapes * spacings / np.asarray(target)[None])
    median_t = [int(v) for v in np.median(new_shapes, axis=0)[forward]]
    normalization = normalization_for(view)
    resampling = resampling_for()
    data_id = "3d_fullres" if dims == 3 else "2d"
    base = {"data_identifier": data_id, "spacing": target_t, "median_shape": median_t,
            "normalization": normalization, "resampling": resampling}
    configurations = {"2d": {**base, "patch_dims": 2, "slice_axis": 0 if dims == 3 else None}}
    if dims == 3:
        configurations["3d_fullres"] = {**base, "patch_dims": 3, "slice_axis": None}
    geometry = {"2d": (target_t[-2:], median_t[-2:])}
    if dims == 3:
        geometry["3d_fullres"] = (target_t, median_t)
    out_channels = len(view["labels"])
    dataset_voxels = float(np.prod(median_t, dtype=np.float64) * view["num_cases"])
    presets = derive_presets(geometry, dims, int(view["num_channels"]), out_channels, dataset_voxels, step_model,
                             memory_gb, median_shape_3d=median_t if dims == 3 else None)
    return {
        "plans_version": PLANS_VERSION,
        "dataset": view["dataset"],
        "dims": dims,
        "rgb": bool(view["rgb"]),
        "instance_labels": bool(view["instance_labels"]),
        "modality": view["modality"],
        "channel_names": view["channel_names"],
        "num_channels": int(view["num_channels"]),
        "labels": {str(k): int(v) for k, v in view["labels"].items()},
        "num_images": int(view["num_cases"]),
        "original_median_spacing": [float(v) for v in np.median(spacings, axis=0)],
        "original_median_shape": [int(v) for v in np.median(shapes, axis=0)],
        "transpose_forward": forward,
        "transpose_backward": backward,
        "configurations": configurations,
        "presets": presets,
        "planner": {
            "step_time_model": step_model.to_dict(),
            "paper_memory_target_gb": float(memory_gb or 8.0),
            "rules": "nnU-Net v2 defaults (see medseg_bench.planning.planner); plans use no labels",
        },
    }
