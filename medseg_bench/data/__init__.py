"""Training data: the preprocessed cache, patch sampling with foreground oversampling, augmentation."""

from .augmentation import build_transforms, sample_size_for
from .cases import CaseArrays, PreprocessedFolder, foreground_locations, load_training_cases
from .loader import BatchStream, crop_padded

__all__ = [
    "BatchStream",
    "CaseArrays",
    "PreprocessedFolder",
    "build_transforms",
    "crop_padded",
    "foreground_locations",
    "load_training_cases",
    "sample_size_for",
]
