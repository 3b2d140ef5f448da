"""Access to the preprocessed cache of one configuration (written by medseg_bench.preprocessing).

Files per case in ``<workdir>/preprocessed/<ds>/<data_identifier>/`` (notes/contracts.md):
``<id>.npy`` image float32 ``(C, *spatial)``, ``<id>_seg.npy`` semantic label, ``<id>_inst.npy``
instance map, ``<id>.json`` properties. This module opens a label file **only** when asked for that
case's label: the budget guarantee ("no label beyond the budget is ever read") rests on callers
asking only for the budget's cases, which :func:`load_training_cases` enforces.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["CaseArrays", "PreprocessedFolder", "foreground_locations", "load_training_cases"]

#: foreground voxel coordinates kept per class and case (nnU-Net keeps 10k); enough to sample centres
MAX_LOCATIONS_PER_CLASS = 10_000
#: arrays larger than this (bytes, per file) are memory-mapped instead of read into RAM
MMAP_ABOVE_BYTES = 256 * 2**20


@dataclass
class CaseArrays:
    """One case ready for patch sampling. ``seg`` and ``locations`` are None for unlabelled use."""

    case_id: str
    image: np.ndarray  # float32 (C, *spatial)
    seg: np.ndarray | None = None  # integer (*spatial)
    locations: dict[int, np.ndarray] | None = None  # class -> (N, ndim) voxel indices


class PreprocessedFolder:
    """One configuration's folder of preprocessed arrays.

    Raises:
        FileNotFoundError: the folder does not exist (the message says to run ``preprocess``).
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"{self.folder}: preprocessed data missing (run `medseg-bench preprocess`)")

    def case_ids(self) -> list[str]:
        """Case ids: every ``<id>.json`` with its ``<id>.npy`` (``manifest.json`` is not a case)."""
        return sorted(p.stem for p in self.folder.glob("*.json")
                      if not p.name.startswith(".") and (self.folder / f"{p.stem}.npy").is_file())

    def properties(self, case_id: str) -> dict:
        path = self.folder / f"{case_id}.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no preprocessed case {case_id!r}")
        return json.loads(path.read_text())

    def _load(self, path: Path) -> np.ndarray:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing preprocessed array")
        mmap = "r" if path.stat().st_size > MMAP_ABOVE_BYTES else None
        return np.load(path, mmap_mode=mmap)

    def image(self, case_id: str) -> np.ndarray:
        """``(C, *spatial)`` float32."""
        return self._load(self.folder / f"{case_id}.npy")

    def seg(self, case_id: str) -> np.ndarray:
        """Semantic label ``(*spatial)``. Only call this for cases whose label may be read."""
        return self._load(self.folder / f"{case_id}_seg.npy")

    def instances(self, case_id: str) -> np.ndarray:
        return self._load(self.folder / f"{case_id}_inst.npy")


def foreground_locations(seg: np.ndarray, seed: int = 0, max_per_class: int = MAX_LOCATIONS_PER_CLASS) -> dict[int, np.ndarray]:
    """Voxel indices ``(N, ndim)`` of every foreground class present in ``seg`` (at most
    ``max_per_class`` each, a deterministic subsample). Background (0) and negative values are skipped."""
    rng = np.random.default_rng(seed)
    out = {}
    for c in np.unique(seg):
        if c <= 0:
            continue
        idx = np.argwhere(seg == c)
        if len(idx) > max_per_class:
            idx = idx[np.sort(rng.choice(len(idx), max_per_class, replace=False))]
        out[int(c)] = idx.astype(np.int32)
    return out


def load_training_cases(folder: PreprocessedFolder, labelled_ids: list[str], unlabelled_ids: list[str] = ()) -> tuple[list[CaseArrays], list[CaseArrays]]:
    """Load the budget's labelled cases (image + label + foreground locations) and the unlabelled
    pool (images only: their label files are never opened).

    Raises:
        ValueError: a case id is in both lists, or a labelled case has no label file.
    """
    overlap = set(labelled_ids) & set(unlabelled_ids)
    if overlap:
        raise ValueError(f"cases both labelled and unlabelled: {sorted(overlap)}")
    labelled = []
    for cid in labelled_ids:
        seg = folder.seg(cid)
        labelled.append(CaseArrays(cid, folder.image(cid), seg, foreground_locations(np.asarray(seg))))
    unlabelled = [CaseArrays(cid, folder.image(cid)) for cid in unlabelled_ids]
    return labelled, unlabelled
