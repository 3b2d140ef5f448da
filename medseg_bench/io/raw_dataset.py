"""The raw dataset format: nnU-Net v2's, plus medseg_bench's documented extensions.

nnU-Net v2 layout (https://github.com/MIC-DKFZ/nnUNet/blob/master/documentation/dataset_format.md)::

    <Dataset>/dataset.json      channel_names, labels, numTraining, file_ending
    <Dataset>/imagesTr/CASE_0000.<ending>   one file per channel (RGB natural images: one file)
    <Dataset>/labelsTr/CASE.<ending>

Extensions (nnU-Net ignores them): ``imagesTs/`` + ``labelsTs/`` (the fixed test set with labels),
``imagesUnlabelled/`` (training images without a label), ``instancesTr/`` + ``instancesTs/`` (instance
maps, with ``"instance_labels": true``; ``labelsTr``/``labelsTs`` keep the semantic labels) and an
optional ``"spacing"`` (numpy order) for PNG/TIFF datasets.

Cases are listed lazily: listing reads no voxels; :meth:`Case.load_image` does.
Loaded case images are **channel first**: ``(C, *spatial)``, also for RGB files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from .image import NATURAL_ENDINGS, Geometry, read_image, write_image

__all__ = [
    "Case",
    "DatasetError",
    "RawDataset",
    "RawDatasetWriter",
    "SUBSET_FOLDERS",
    "hash_test_case_ids",
    "is_rgb_channels",
]

#: subset -> (images folder, labels folder, instances folder)
SUBSET_FOLDERS = {
    "train": ("imagesTr", "labelsTr", "instancesTr"),
    "test": ("imagesTs", "labelsTs", "instancesTs"),
    "unlabelled": ("imagesUnlabelled", None, None),
}
REQUIRED_KEYS = ("channel_names", "labels", "numTraining", "file_ending")
_CHANNEL_RE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


class DatasetError(InputError, ValueError):
    """A raw dataset is malformed; the message names the file and the problem."""


def is_rgb_channels(channel_names: dict, file_ending: str) -> bool:
    """RGB natural images: three channels named R, G, B stored as one PNG/TIFF file (as in nnU-Net)."""
    names = [str(v).strip().lower() for v in channel_names.values()]
    return file_ending.lower() in NATURAL_ENDINGS and names in (["r", "g", "b"], ["red", "green", "blue"])


def hash_test_case_ids(case_ids: list[str], fraction: float = 0.2) -> list[str]:
    """The test set of a dataset without ``labelsTs``: labelled cases ranked by a hash of their id,
    the first ``round(fraction * n)`` (at least 1, and never all when there are two or more). Seed-free."""
    ranked = sorted(case_ids, key=lambda c: hashlib.sha256(c.encode()).hexdigest())
    n = max(1, round(fraction * len(ranked)))
    if len(ranked) >= 2:
        n = min(n, len(ranked) - 1)
    return sorted(ranked[:n]) if ranked else []


@dataclass(frozen=True)
class Case:
    """One case of a raw dataset; files only, nothing loaded until asked."""

    case_id: str
    subset: str  # "train", "test" or "unlabelled" (the folder it came from)
    image_files: tuple[Path, ...]
    label_file: Path | None = None
    instance_file: Path | None = None
    default_spacing: tuple[float, ...] | None = field(default=None, compare=False)
    rgb: bool = False

    def load_image(self) -> tuple[np.ndarray, Geometry]:
        """Image as ``(C, *spatial)`` and the geometry of its first channel file."""
        arrays, geometry = [], None
        for f in self.image_files:
            array, geo = read_image(f, self.default_spacing)
            if self.rgb:
                if array.ndim != 3 or array.shape[-1] != 3:
                    from .image import ImageReadError

                    raise ImageReadError(f, f"expected an RGB image (y, x, 3), got shape {array.shape}")
                arrays.extend(np.moveaxis(array, -1, 0))
            else:
                arrays.append(array)
            geometry = geometry or geo
        return np.stack(arrays), geometry

    def load_label(self) -> tuple[np.ndarray, Geometry]:
        if self.label_file is None:
            raise DatasetError(f"case {self.case_id!r} ({self.subset}) has no label file")
        return read_image(self.label_file, self.default_spacing)

    def load_instances(self) -> tuple[np.ndarray, Geometry]:
        if self.instance_file is None:
            raise DatasetError(f"case {self.case_id!r} ({self.subset}) has no instance map")
        return read_image(self.instance_file, self.default_spacing)


class RawDataset:
    """A raw dataset folder (see module docstring). Construction reads only ``dataset.json``.

    Raises:
        DatasetError: ``dataset.json`` is missing, is not valid JSON or lacks a required key.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.json_path = self.path / "dataset.json"
        if not self.path.is_dir():
            raise DatasetError(f"{self.path}: dataset folder does not exist")
        if not self.json_path.is_file():
            raise DatasetError(f"{self.json_path}: dataset.json is missing")
        try:
            meta = json.loads(self.json_path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{self.json_path}: malformed JSON ({exc})") from exc
        if not isinstance(meta, dict):
            raise DatasetError(f"{self.json_path}: top level must be a JSON object")
        missing = [k for k in REQUIRED_KEYS if k not in meta]
        if missing:
            raise DatasetError(f"{self.json_path}: missing required key(s) {', '.join(missing)}")
        if not isinstance(meta["channel_names"], dict) or not meta["channel_names"]:
            raise DatasetError(f"{self.json_path}: 'channel_names' must be a non-empty object")
        if not isinstance(meta["labels"], dict) or not all(isinstance(v, int) for v in meta["labels"].values()):
            raise DatasetError(f"{self.json_path}: 'labels' must map class names to integer values")
        if meta["labels"].get("background") != 0:
            raise DatasetError(f"{self.json_path}: 'labels' must contain \"background\": 0")
        if not str(meta["file_ending"]).startswith("."):
            raise DatasetError(f"{self.json_path}: 'file_ending' must start with a dot, got {meta['file_ending']!r}")
        self.meta = meta

    # -- dataset.json fields -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def channel_names(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in self.meta["channel_names"].items()}

    @property
    def modality(self) -> str:
        return self.channel_names[sorted(self.channel_names, key=int)[0]]

    @property
    def labels(self) -> dict[str, int]:
        return dict(self.meta["labels"])

    @property
    def foreground_labels(self) -> dict[str, int]:
        return {k: v for k, v in self.labels.items() if v != 0}

    @property
    def file_ending(self) -> str:
        return self.meta["file_ending"]

    @property
    def num_training(self) -> int:
        return int(self.meta["numTraining"])

    @property
    def instance_labels(self) -> bool:
        return bool(self.meta.get("instance_labels", False))

    @property
    def spacing(self) -> tuple[float, ...] | None:
        s = self.meta.get("spacing")
        return tuple(float(v) for v in s) if s else None

    @property
    def rgb(self) -> bool:
        return is_rgb_channels(self.channel_names, self.file_ending)

    @property
    def num_channel_files(self) -> int:
        return 1 if self.rgb else len(self.channel_names)

    # -- case listing --------------------------------------------------------------------------------
    def channel_groups(self, folder: str) -> dict[str, dict[int, Path]]:
        """``{case_id: {channel_index: file}}`` for an images folder (files with the dataset's ending)."""
        groups: dict[str, dict[int, Path]] = {}
        directory = self.path / folder
        if not directory.is_dir():
            return groups
        ending = self.file_ending
        for f in sorted(directory.iterdir()):
            if not f.name.endswith(ending) or f.name.startswith("."):
                continue
            m = _CHANNEL_RE.match(f.name[: -len(ending)])
            if m is None:
                continue
            groups.setdefault(m["case"], {})[int(m["channel"])] = f
        return groups

    def _cases(self, subset: str) -> Iterator[Case]:
        images, labels, instances = SUBSET_FOLDERS[subset]
        n = self.num_channel_files
        for case_id, channels in self.channel_groups(images).items():
            label = self.path / labels / f"{case_id}{self.file_ending}" if labels else None
            inst = self.path / instances / f"{case_id}{self.file_ending}" if instances else None
            yield Case(
                case_id=case_id,
                subset=subset,
                image_files=tuple(channels.get(i, self.path / images / f"{case_id}_{i:04d}{self.file_ending}") for i in range(n)),
                label_file=label if label is not None and label.exists() else None,
                instance_file=inst if inst is not None and inst.exists() else None,
                default_spacing=self.spacing,
                rgb=self.rgb,
            )

    def raw_cases(self, subset: str) -> list[Case]:
        """Cases exactly as found in one subset's folder (``train``, ``test`` or ``unlabelled``)."""
        return list(self._cases(subset))

    @property
    def has_test_labels(self) -> bool:
        return (self.path / "labelsTs").is_dir() and any(c.label_file for c in self._cases("test"))

    @property
    def test_labels_withheld(self) -> bool:
        """A staged copy for a submission (``"test_labels_withheld": true`` in dataset.json): the test
        set is every image in ``imagesTs``, whose labels were left out on purpose."""
        return bool(self.meta.get("test_labels_withheld", False))

    def test_cases(self) -> list[Case]:
        """The fixed benchmark test set: ``imagesTs`` + ``labelsTs`` when present; otherwise the
        labelled training cases chosen by :func:`hash_test_case_ids` (seed-independent). In a staged
        copy with withheld test labels: every ``imagesTs`` case (without a label file)."""
        if self.test_labels_withheld:
            return list(self._cases("test"))
        if self.has_test_labels:
            return [c for c in self._cases("test") if c.label_file is not None]
        train = [c for c in self._cases("train") if c.label_file is not None]
        chosen = set(hash_test_case_ids([c.case_id for c in train]))
        return [c for c in train if c.case_id in chosen]

    def train_cases(self) -> list[Case]:
        """Labelled training cases available to the benchmark (test cases excluded)."""
        test_ids = set() if self.has_test_labels or self.test_labels_withheld else {c.case_id for c in self.test_cases()}
        return [c for c in self._cases("train") if c.label_file is not None and c.case_id not in test_ids]

    def unlabelled_cases(self) -> list[Case]:
        """Images without a label: ``imagesUnlabelled/`` (the budget's unlabelled pool adds the
        training cases beyond the budget)."""
        return list(self._cases("unlabelled"))

    def __repr__(self) -> str:
        return f"RawDataset({str(self.path)!r})"


class RawDatasetWriter:
    """Write a raw dataset atomically: cases go into a hidden staging folder that replaces ``out_dir``
    only in :meth:`finalize`, so an interrupted write never leaves a half dataset behind.

    Example:
        >>> w = RawDatasetWriter("raw/demo", {"0": "CT"}, {"background": 0, "bone": 1}, ".nii.gz")
        >>> w.add_case("demo_000", image[None], geometry, label=label)       # doctest: +SKIP
        >>> w.finalize(extra={"generator": {"name": "demo", "version": "1"}})  # doctest: +SKIP
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        channel_names: dict,
        labels: dict[str, int],
        file_ending: str,
        instance_labels: bool = False,
        spacing: tuple[float, ...] | None = None,
        overwrite: bool = False,
    ):
        self.out_dir = Path(out_dir)
        if self.out_dir.exists() and not overwrite:
            raise FileExistsError(f"{self.out_dir}: already exists (pass overwrite=True to replace it)")
        self.staging = self.out_dir.with_name(f".{self.out_dir.name}.partial-{os.getpid()}")
        if self.staging.exists():
            shutil.rmtree(self.staging)
        self.staging.mkdir(parents=True)
        self.channel_names = {str(k): v for k, v in channel_names.items()}
        self.labels = dict(labels)
        self.file_ending = file_ending
        self.instance_labels = instance_labels
        self.spacing = tuple(spacing) if spacing is not None else None
        self.rgb = is_rgb_channels(self.channel_names, file_ending)
        self.num_training = 0

    def add_case(
        self,
        case_id: str,
        image: np.ndarray,
        geometry: Geometry,
        label: np.ndarray | None = None,
        subset: str = "train",
        instances: np.ndarray | None = None,
    ) -> None:
        """Add one case. ``image`` is channel first ``(C, *spatial)`` (RGB: ``(3, y, x)`` uint8)."""
        images, labels, inst_folder = SUBSET_FOLDERS[subset]
        image = np.asarray(image)
        if subset == "unlabelled" and (label is not None or instances is not None):
            raise ValueError(f"{case_id}: unlabelled cases carry no label")
        if subset == "train":
            if label is None:
                raise ValueError(f"{case_id}: training cases need a label (use subset='unlabelled')")
            self.num_training += 1
        if self.rgb:
            write_image(self.staging / images / f"{case_id}_0000{self.file_ending}", np.moveaxis(image, 0, -1), geometry)
        else:
            if image.shape[0] != len(self.channel_names):
                raise ValueError(f"{case_id}: image has {image.shape[0]} channels, dataset declares {len(self.channel_names)}")
            for c, channel in enumerate(image):
                write_image(self.staging / images / f"{case_id}_{c:04d}{self.file_ending}", channel, geometry)
        if label is not None:
            write_image(self.staging / labels / f"{case_id}{self.file_ending}", label, geometry)
        if instances is not None:
            if not self.instance_labels:
                raise ValueError(f"{case_id}: instance maps need instance_labels=True")
            write_image(self.staging / inst_folder / f"{case_id}{self.file_ending}", instances, geometry)

    def dataset_json(self, extra: dict | None = None) -> dict:
        meta = {
            "channel_names": self.channel_names,
            "labels": self.labels,
            "numTraining": self.num_training,
            "file_ending": self.file_ending,
        }
        if self.instance_labels:
            meta["instance_labels"] = True
        if self.spacing is not None:
            meta["spacing"] = list(self.spacing)
        meta.update(extra or {})
        return meta

    def finalize(self, extra: dict | None = None) -> RawDataset:
        """Write ``dataset.json`` and move the staged folder into place. Returns the dataset."""
        (self.staging / "dataset.json").write_text(json.dumps(self.dataset_json(extra), indent=2) + "\n")
        if self.out_dir.exists():
            old = self.out_dir.with_name(f".{self.out_dir.name}.old-{os.getpid()}")
            os.replace(self.out_dir, old)
            os.replace(self.staging, self.out_dir)
            shutil.rmtree(old)
        else:
            self.out_dir.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.staging, self.out_dir)
        return RawDataset(self.out_dir)

    def abort(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
