"""Patch batches for training: foreground oversampling, augmentation, deterministic and checkpointable.

A :class:`BatchStream` is an infinite iterator of batches drawn from in-memory cases (the budget's
labelled cases, or the unlabelled pool). It runs in the training process: on the small CPU patches
this suite plans, a worker process costs more in transfer and core contention than it saves (see
benchmarks/train_overhead.py). Every random draw (case, centre, augmentation) comes from the stream's
own numpy ``RandomState`` and python ``Random``, swapped into the global states while batchgenerators runs, so a stream
is reproducible from its seed and resumes exactly from :meth:`BatchStream.state_dict`.

Sampling follows nnU-Net (Isensee et al. 2021): a fraction ``oversample_foreground`` of every batch
(the last ``B - round(B * (1 - p))`` samples) is centred on a voxel of a randomly chosen foreground
class present in the case; the others are uniform. For the ``2d`` configuration of a 3D dataset a
random slice along axis 0 is cut first (the foreground slice for foreground samples).
"""

from __future__ import annotations

import random

import numpy as np

from .augmentation import build_transforms, sample_size_for
from .cases import CaseArrays

__all__ = ["BatchStream", "crop_padded"]


def crop_padded(array: np.ndarray, lower: list[int], size: list[int], pad_value=0) -> np.ndarray:
    """Crop ``array[..., lower:lower+size]`` over its last ``len(size)`` axes, padding with
    ``pad_value`` where the box leaves the array. Leading axes (channels) are kept whole."""
    nd = len(size)
    spatial = array.shape[-nd:]
    src, pads = [], []
    for lo, sz, sh in zip(lower, size, spatial):
        a, b = max(lo, 0), min(lo + sz, sh)
        src.append(slice(a, max(a, b)))
        pads.append((a - lo, max(0, lo + sz - max(a, b))))
    lead = (slice(None),) * (array.ndim - nd)
    out = np.asarray(array[lead + tuple(src)])
    if any(p != (0, 0) for p in pads):
        out = np.pad(out, [(0, 0)] * (array.ndim - nd) + pads, mode="constant", constant_values=pad_value)
    return out


class BatchStream:
    """Infinite stream of ``{"data": float32 (B, C, *patch), "seg": int16 (B, 1, *patch) | absent,
    "case_ids": [..]}``.

    Args:
        cases: the cases to draw from (labelled cases carry ``seg`` and ``locations``).
        patch_size: spatial patch size (2 or 3 values). When it has fewer axes than the cases, 2D
            slices are cut along axis 0.
        batch_size: samples per batch.
        augmentation: the plan's augmentation block (see :mod:`.augmentation`), or None.
        oversample_foreground: fraction of each batch centred on foreground (labelled streams only).
        seed: seeds every draw of this stream.
    """

    def __init__(self, cases: list[CaseArrays], patch_size, batch_size: int, augmentation: dict | None = None,
                 oversample_foreground: float = 0.33, seed: int = 0):
        if not cases:
            raise ValueError("BatchStream needs at least one case")
        self.cases = cases
        self.labelled = all(c.seg is not None for c in cases)
        self.patch_size = [int(p) for p in patch_size]
        self.batch_size = int(batch_size)
        self.slice_axis0 = cases[0].image.ndim - 1 == len(self.patch_size) + 1
        if cases[0].image.ndim - 1 - int(self.slice_axis0) != len(self.patch_size):
            raise ValueError(f"patch size {self.patch_size} does not fit case arrays of shape {cases[0].image.shape}")
        self.sample_size = sample_size_for(self.patch_size, augmentation or {})
        self.transforms = build_transforms(augmentation, self.patch_size)
        self.oversample = float(oversample_foreground) if self.labelled else 0.0
        self._rs = np.random.RandomState(seed)
        self._py = random.Random(seed)  # some batchgenerators transforms draw from python's random
        self.batches_drawn = 0

    # -- state ---------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"random_state": self._rs.get_state(), "python_random_state": self._py.getstate(),
                "batches_drawn": self.batches_drawn}

    def load_state_dict(self, state: dict) -> None:
        self._rs.set_state(state["random_state"])
        self._py.setstate(state["python_random_state"])
        self.batches_drawn = int(state["batches_drawn"])

    # -- sampling ------------------------------------------------------------------------------------
    def _force_fg(self, i: int) -> bool:
        return self.oversample > 0 and i >= round(self.batch_size * (1 - self.oversample))

    def _sample(self, case: CaseArrays, force_fg: bool):
        rs = self._rs
        image, seg = case.image, case.seg
        centre = None
        if force_fg and case.locations:
            classes = sorted(case.locations)
            locs = case.locations[classes[rs.randint(len(classes))]]
            centre = locs[rs.randint(len(locs))]
        if self.slice_axis0:
            z = int(centre[0]) if centre is not None else rs.randint(image.shape[1])
            image = image[:, z]
            seg = seg[z] if seg is not None else None
            centre = centre[1:] if centre is not None else None
        shape = image.shape[1:]
        lower = []
        for d, (sh, ps, ss) in enumerate(zip(shape, self.patch_size, self.sample_size)):
            margin = (ss - ps) // 2
            lo_min = min(0, sh - ps) - margin  # the central patch stays inside the image when it fits
            lo_max = max(0, sh - ps) - margin
            if centre is not None:
                lo = int(centre[d]) - ss // 2
                lower.append(int(np.clip(lo, lo_min, lo_max)))
            else:
                lower.append(int(rs.randint(lo_min, lo_max + 1)))
        img = crop_padded(image, lower, self.sample_size, 0.0)
        lab = crop_padded(seg, lower, self.sample_size, 0)[None] if seg is not None else None
        return img, lab

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        idx = [int(self._rs.randint(len(self.cases))) for _ in range(self.batch_size)]
        images, segs = [], []
        for i, ci in enumerate(idx):
            img, lab = self._sample(self.cases[ci], self._force_fg(i))
            images.append(img)
            segs.append(lab)
        batch = {"data": np.stack(images).astype(np.float32, copy=False)}
        if self.labelled:
            batch["seg"] = np.stack(segs).astype(np.float32)
        if self.transforms is not None:
            saved, saved_py = np.random.get_state(), random.getstate()
            np.random.set_state(self._rs.get_state())
            random.setstate(self._py.getstate())
            try:
                batch = self.transforms(**batch)
            finally:
                self._rs.set_state(np.random.get_state())
                self._py.setstate(random.getstate())
                np.random.set_state(saved)
                random.setstate(saved_py)
        out = {"data": np.ascontiguousarray(batch["data"], dtype=np.float32),
               "case_ids": [self.cases[i].case_id for i in idx]}
        if self.labelled:
            out["seg"] = np.ascontiguousarray(np.rint(batch["seg"]), dtype=np.int16)
        self.batches_drawn += 1
        return out
