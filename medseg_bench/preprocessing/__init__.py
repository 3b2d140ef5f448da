"""Preprocessing: crop to non-zero, normalise, resample to the plan's spacing, and back.

The engine uses :func:`preprocess_case` / :func:`preprocess_label` / :func:`export_to_original` (the
same functions the cache uses, so training and inference see identical arrays) and :func:`load_plans`.
"""

from ..planning.plans_file import load_plans
from .cache import benchmark_cases, preprocess_command, preprocess_dataset
from .case import (
    PREPROCESSING_VERSION,
    export_to_original,
    preprocess_case,
    preprocess_instances,
    preprocess_label,
)
from .crop import crop_to_nonzero, uncrop
from .normalise import normalise
from .resample import resample_array, resample_label

__all__ = [
    "PREPROCESSING_VERSION",
    "benchmark_cases",
    "crop_to_nonzero",
    "export_to_original",
    "load_plans",
    "normalise",
    "preprocess_case",
    "preprocess_command",
    "preprocess_dataset",
    "preprocess_instances",
    "preprocess_label",
    "resample_array",
    "resample_label",
    "uncrop",
]
