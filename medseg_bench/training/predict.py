"""Prediction: preprocessed image -> probabilities -> raw geometry -> label / instance files.

Used by ``train_cell`` for the test set (from the preprocessed cache) and by ``medseg-bench predict``
for a folder of raw images (preprocessed on the fly with the run's plan). The exact inverse of
cropping and resampling is ``medseg_bench.preprocessing.export_to_original``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..io import Geometry, RawDataset, write_image
from .instances import semantic_to_instances

__all__ = ["export_probabilities", "predict_case", "predict_images_folder", "write_prediction"]


def export_probabilities(probabilities: np.ndarray, properties: dict, plans: dict, configuration: str) -> np.ndarray:
    """``(K, *preprocessed)`` probabilities -> ``(K, *original)`` (undo resampling, transpose, crop)."""
    from ..preprocessing import export_to_original

    return np.asarray(export_to_original(probabilities, properties, plans, configuration, is_probabilities=True))


def predict_case(method, ctx, image: np.ndarray, properties: dict, raw_image: np.ndarray | None = None):
    """Segment one preprocessed case.

    Returns:
        ``(segmentation uint8 (*original), instances int32 | None, geometry)``; instances only for
        instance datasets (``plans["instance_labels"]``), from the method's own ``to_instances`` or the
        documented post-processing (:func:`~medseg_bench.training.instances.semantic_to_instances`).
    """
    probs = method.predict_probabilities(image, ctx)
    probs = export_probabilities(probs, properties, ctx.plans, ctx.configuration)
    seg = np.asarray(method.to_segmentation(probs, raw_image)).astype(np.uint8)
    geometry = Geometry.from_dict(properties["original_geometry"])
    inst = None
    if ctx.plans.get("instance_labels"):
        inst = method.to_instances(seg, probs, geometry.spacing)
        if inst is None:
            inst = semantic_to_instances(seg, geometry.spacing, h=float(ctx.settings.get("instance_h", 1.0)),
                                         min_size=int(ctx.settings.get("instance_min_size", 5)))
    return seg, inst, geometry


def write_prediction(out_dir: Path, case_id: str, file_ending: str, seg: np.ndarray, geometry: Geometry,
                     instances: np.ndarray | None = None, instances_dir: Path | None = None) -> None:
    """Write ``<out_dir>/<case><ending>`` (uint8) and, if given, the instance map (uint16 when it fits,
    as PNG needs; int32 otherwise)."""
    write_image(Path(out_dir) / f"{case_id}{file_ending}", seg.astype(np.uint8), geometry)
    if instances is not None:
        n = int(instances.max()) if instances.size else 0
        if n > 65535 and file_ending == ".png":
            raise ValueError(f"{case_id}: {n} instances do not fit a 16-bit PNG")
        arr = instances.astype(np.uint16 if n <= 65535 else np.int32)
        write_image(Path(instances_dir) / f"{case_id}{file_ending}", arr, geometry)


def _image_cases(images_dir: Path, meta: dict):
    """Cases of a folder of raw images named like ``imagesTs`` (``<case>_<cccc><ending>``)."""
    from ..io.raw_dataset import Case

    fake = RawDataset.__new__(RawDataset)
    fake.path, fake.meta = images_dir.parent, meta
    groups = fake.channel_groups(images_dir.name)
    if not groups:
        raise FileNotFoundError(f"{images_dir}: no images named <case>_0000{meta['file_ending']}")
    n = fake.num_channel_files
    for case_id, channels in sorted(groups.items()):
        missing = [i for i in range(n) if i not in channels]
        if missing:
            raise FileNotFoundError(f"{images_dir}: case {case_id!r} lacks channel file(s) {missing}")
        yield Case(case_id, "test", tuple(channels[i] for i in range(n)),
                   default_spacing=fake.spacing, rgb=fake.rgb)


def predict_images_folder(run_dir, images_dir, out_dir, tta: bool = False, device=None, progress: bool = True) -> list[str]:
    """Predict every raw image in ``images_dir`` with a finished run; writes ``out_dir/<case><ending>``
    and, for instance datasets, ``out_dir/instances/<case><ending>``. Returns the case ids.

    Raises:
        FileNotFoundError: the run has no final checkpoint, or the folder holds no images.
    """
    from ..preprocessing import preprocess_case
    from .cell import load_trained

    run_dir, images_dir, out_dir = Path(run_dir), Path(images_dir), Path(out_dir)
    method, ctx, meta = load_trained(run_dir, device=device)
    if tta:
        ctx.settings["tta"] = True
    done = []
    cases = list(_image_cases(images_dir, meta))
    it = cases
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(cases, desc="predict", unit="case")
    for case in it:
        image, geometry = case.load_image()
        array, props = preprocess_case(image, geometry, ctx.plans, ctx.configuration)
        seg, inst, geo = predict_case(method, ctx, array, props, raw_image=image)
        write_prediction(out_dir, case.case_id, meta["file_ending"], seg, geo, inst, out_dir / "instances")
        done.append(case.case_id)
    (out_dir / "prediction.json").write_text(json.dumps({"run_dir": str(run_dir), "cases": done, "tta": bool(tta)}, indent=1) + "\n")
    return done
