"""NSD tolerance tau per dataset, and the unit surface distances are shown in.

The normalised surface Dice (Nikolov et al., "Clinically applicable segmentation of head and neck
anatomy for radiotherapy", J Med Internet Res 23(7):e26151, 2021) counts surface points within a
tolerance tau of the other surface. tau is a property of the dataset (``METRICS.md``, NSD entry):

* ``dataset.json`` may set ``"nsd_tolerance"`` (a positive number, in the dataset's spacing units);
* otherwise tau = 2 x the median over the cases of the finest axis spacing, i.e. two voxels.

A global tau of 2 (the old default, kept as :data:`LEGACY_NSD_TOLERANCE` only to recognise old
records) is 4,000 pixels on 0.5 um/px histology and makes NSD 1.0 for every method.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

__all__ = [
    "LEGACY_NSD_TOLERANCE",
    "MICRON_BELOW_MM",
    "dataset_tolerance",
    "display_unit",
    "median_object_thickness",
    "object_thickness",
    "resolve_tolerance",
    "tolerance_from_spacings",
    "tolerance_text",
    "validate_tolerance",
]

LEGACY_NSD_TOLERANCE = 2.0  # the pre-issue-23 global tau (spacing units); records with it are "legacy"
MICRON_BELOW_MM = 0.01  # finest spacing (mm) below which distances are shown in micrometres (histology)


def validate_tolerance(value) -> str | None:
    """The problem with a ``dataset.json`` ``"nsd_tolerance"`` value, or None when it is valid."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"nsd_tolerance must be a number (spacing units), got {value!r}"
    if not math.isfinite(value) or value <= 0:
        return f"nsd_tolerance must be a finite number > 0 (spacing units), got {value!r}"
    return None


def tolerance_from_spacings(spacings: Iterable) -> float:
    """2 x the median over cases of each case's finest axis spacing (spacing units).

    ``spacings``: one spacing tuple per case (numpy axis order); a case without spacing counts as 1.
    """
    finest = [min(float(x) for x in s) if s is not None and len(s) else 1.0 for s in spacings]
    if not finest:
        raise ValueError("no case spacings to derive the NSD tolerance from")
    return float(2.0 * np.median(finest))


def resolve_tolerance(dataset_value, spacings: Iterable) -> tuple[float, str]:
    """``(tau, source)``: ``dataset.json``'s ``"nsd_tolerance"`` when set, else :func:`tolerance_from_spacings`.

    Raises:
        ValueError: an invalid ``nsd_tolerance`` (message from :func:`validate_tolerance`).
    """
    if dataset_value is not None:
        problem = validate_tolerance(dataset_value)
        if problem:
            raise ValueError(problem)
        return float(dataset_value), "dataset.json nsd_tolerance"
    return tolerance_from_spacings(spacings), "2 x median finest-axis spacing"


def display_unit(finest_spacing_mm: float | None) -> tuple[str, float]:
    """``(unit, factor)`` for showing distances: micrometres (x1000) when the finest spacing is below
    :data:`MICRON_BELOW_MM` (histology), millimetres otherwise; ``("spacing units", 1)`` when unknown."""
    if finest_spacing_mm is None or not math.isfinite(finest_spacing_mm):
        return "spacing units", 1.0
    if finest_spacing_mm < MICRON_BELOW_MM:
        return "µm", 1000.0
    return "mm", 1.0


def tolerance_text(tau: float, finest_spacing_mm: float | None) -> str:
    """tau in the display unit, e.g. ``"1 µm"``, ``"6.9 mm"`` (3 significant figures)."""
    unit, factor = display_unit(finest_spacing_mm)
    return f"{tau * factor:.3g} {unit}"


def dataset_tolerance(raw) -> tuple[float, str]:
    """``(tau, source)`` of a :class:`~medseg_bench.io.RawDataset`: what ``evaluate_folder`` uses on its
    test set (``dataset.json``'s ``"nsd_tolerance"``, else 2 x the median finest-axis spacing of the
    test cases' label files, from their headers)."""
    from medseg_bench.io.image import read_image_header

    spacings = [read_image_header(c.label_file, raw.spacing)[1].spacing for c in raw.test_cases()]
    return resolve_tolerance(raw.meta.get("nsd_tolerance"), spacings)


def object_thickness(objects: np.ndarray, spacing, instances: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(thickness, n_voxels)`` of every object of one label map.

    Objects are the instances of an instance map (``instances=True``), else the connected components
    (full connectivity) of its foreground. An object's thickness is twice its largest inscribed-ball
    radius, i.e. 2 x the maximum exact Euclidean distance (spacing units) from a voxel of the object to
    the nearest voxel outside it: the distance at which NSD stops telling a one-voxel-shifted boundary
    from a correct one.
    """
    from scipy import ndimage as ndi

    if instances:
        lab = np.asarray(objects)
    else:
        lab, _ = ndi.label(np.asarray(objects) > 0, structure=np.ones((3,) * np.ndim(objects), bool))
    thick, size = [], []
    for i, sl in enumerate(ndi.find_objects(lab), start=1):
        if sl is None:
            continue
        mask = np.pad(lab[sl] == i, 1)
        thick.append(2.0 * float(ndi.distance_transform_edt(mask, sampling=spacing).max()))
        size.append(int(mask.sum()))
    return np.asarray(thick, float), np.asarray(size, np.int64)


def median_object_thickness(raw, max_cases: int | None = None) -> float:
    """The thickness (:func:`object_thickness`, spacing units) of the object that the median foreground
    voxel belongs to, over the labelled cases of ``raw`` (instance maps where the dataset has them), so
    that one-voxel specks do not count as much as a hip bone. NaN when there is no foreground."""
    thick, size = [], []
    for c in (raw.train_cases() + raw.test_cases())[:max_cases]:
        inst = c.instance_file is not None
        lab, geo = c.load_instances() if inst else c.load_label()
        t, n = object_thickness(lab, geo.spacing, instances=inst)
        thick.append(t)
        size.append(n)
    t, n = np.concatenate(thick), np.concatenate(size)
    if not len(t):
        return math.nan
    order = np.argsort(t)
    cum = np.cumsum(n[order])
    return float(t[order][np.searchsorted(cum, cum[-1] / 2.0)])
