"""Image IO with geometry, the raw dataset format (nnU-Net v2 + extensions) and its validation."""

from .image import (
    MEDICAL_ENDINGS,
    NATURAL_ENDINGS,
    SUPPORTED_ENDINGS,
    Geometry,
    ImageReadError,
    image_ending,
    read_image,
    read_image_header,
    sidecar_path,
    write_image,
)
from .raw_dataset import (
    SUBSET_FOLDERS,
    Case,
    DatasetError,
    RawDataset,
    RawDatasetWriter,
    hash_test_case_ids,
    is_rgb_channels,
)
from .validate import Problem, check_dataset, format_problems

__all__ = [
    "MEDICAL_ENDINGS",
    "NATURAL_ENDINGS",
    "SUPPORTED_ENDINGS",
    "SUBSET_FOLDERS",
    "Case",
    "DatasetError",
    "Geometry",
    "ImageReadError",
    "Problem",
    "RawDataset",
    "RawDatasetWriter",
    "check_dataset",
    "format_problems",
    "hash_test_case_ids",
    "image_ending",
    "is_rgb_channels",
    "read_image",
    "read_image_header",
    "sidecar_path",
    "write_image",
]
