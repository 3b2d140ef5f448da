"""Label-free polarity rules: which of two (or k) intensity phases is the foreground.

Classical and unsupervised methods split an image into phases (Otsu classes, k-means clusters,
Chan–Vese regions, an ACWE network's output) without knowing which one is the target. This module
turns that into a class with a rule that reads no label: it is fixed from the plan's modality (the
``channel_names`` of dataset.json and the normalisation scheme the planner derived from them), i.e.
from what the imaging physics says about the target, never from ground truth.

Rules (:func:`polarity_rule`):

``bright``
    the phase with the highest mean intensity — CT (bone, the suite's CT target, is the densest
    tissue) and SPECT / scintigraphy (bone is hot; the rule of Chen & Frey, MIDL 2020).
``dark``
    the phase with the lowest mean intensity (mean over channels) — fundus autofluorescence (geographic
    atrophy is hypo-autofluorescent) and RGB H&E histology (haematoxylin-stained nuclei are the
    darkest structures).
``smaller``
    the phase with the fewest voxels — any other modality (the target is usually the minority).
"""

from __future__ import annotations

import re

import numpy as np

__all__ = ["RULES", "RULE_TEXT", "choose_phase", "polarity_rule"]

RULES = ("bright", "dark", "smaller")

_DARK_MODALITY = re.compile(r"(faf|autofluorescence|fundus|h&e|he[ _-]?stain|histolog|haematoxylin|hematoxylin)")

#: one-line description of the automatic rule (used in the methods' ``class_rule``)
RULE_TEXT = ("foreground = the brighter phase for CT and SPECT (bone is dense / hot), the darker phase for "
             "fundus autofluorescence (geographic atrophy is hypo-autofluorescent) and RGB H&E (nuclei are "
             "the darkest structures), the smaller phase for any other modality; fixed from the plan's "
             "modality, never from labels")


def polarity_rule(plans: dict, override: str = "auto", default: str = "smaller") -> str:
    """The rule (``"bright" | "dark" | "smaller"``) for a dataset's plan (see module docstring).

    Args:
        plans: the plan (``plans.json``); reads ``normalization`` schemes of its configurations,
            ``rgb`` and ``modality`` / ``channel_names``. Missing keys fall back to ``default``.
        override: ``"auto"`` or one of :data:`RULES` (a user's explicit choice wins).
        default: rule for modalities the table does not know.

    Raises:
        ValueError: ``override`` or ``default`` is not a known rule.
    """
    if override != "auto":
        if override not in RULES:
            raise ValueError(f"polarity must be 'auto' or one of {RULES}, got {override!r}")
        return override
    if default not in RULES:
        raise ValueError(f"default polarity must be one of {RULES}, got {default!r}")
    schemes = set()
    for cfg in (plans.get("configurations") or {}).values():
        for ch in ((cfg.get("normalization") or {}).get("channels") or []):
            schemes.add(ch.get("scheme"))
    names = " ".join(str(v) for v in (plans.get("channel_names") or {}).values())
    modality = f"{plans.get('modality') or ''} {names}".strip().lower()
    if plans.get("rgb") or "rgb01" in schemes or _DARK_MODALITY.search(modality):
        return "dark"
    if schemes & {"ct", "spect"} or re.search(r"(^|[^a-z])(ct|spect|scintigra\w*|nm|pet)([^a-z]|$)", modality):
        return "bright"
    return default


def choose_phase(means, sizes, rule: str) -> int:
    """Index of the foreground phase among ``k`` phases.

    Args:
        means: mean intensity of each phase (any units; for several channels, their mean).
        sizes: voxel count of each phase (empty phases are never chosen unless all are empty).
        rule: one of :data:`RULES`.

    Ties go to the lower index.
    """
    means, sizes = np.asarray(means, dtype=float), np.asarray(sizes, dtype=float)
    if means.shape != sizes.shape or means.ndim != 1 or means.size == 0:
        raise ValueError(f"means and sizes must be equal-length 1-D arrays, got {means.shape} and {sizes.shape}")
    valid = sizes > 0
    if not valid.any():
        return 0
    if rule == "bright":
        score = np.where(valid, means, -np.inf)
        return int(np.argmax(score))
    if rule == "dark":
        score = np.where(valid, means, np.inf)
        return int(np.argmin(score))
    if rule == "smaller":
        score = np.where(valid, sizes, np.inf)
        return int(np.argmin(score))
    raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
