"""PNG montage of a raw dataset so a person can look at what was made: for a few cases, the image
and its label overlaid (3D: the middle slice along each axis is not needed — the middle axial slice
and the middle coronal slice are shown)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io import RawDataset

__all__ = ["write_preview"]


def _to_display(image: np.ndarray, rgb: bool) -> np.ndarray:
    if rgb:
        return np.moveaxis(image, 0, -1).astype(np.float32) / max(float(image.max()), 1.0)
    img = image[0].astype(np.float32)
    lo, hi = np.percentile(img, [0.5, 99.5])
    return np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)


def _instance_contours(disp: np.ndarray, instances: np.ndarray) -> np.ndarray:
    """Draw the outline of every instance (lime) into a 2D display image (grey becomes RGB), so that
    touching objects are told apart and red overlays do not hide red structures."""
    from skimage.segmentation import find_boundaries

    rgb = disp if disp.ndim == 3 else np.repeat(disp[..., None], 3, axis=-1)
    rgb = rgb.copy()
    rgb[find_boundaries(instances, mode="inner")] = (0.2, 1.0, 0.2)
    return rgb


def _slices(array: np.ndarray, spatial_ndim: int, rgb: bool):
    """Middle axial (and coronal for 3D) slices of a displayable array."""
    if spatial_ndim == 2:
        return [array]
    z, y = array.shape[0] // 2, array.shape[1] // 2
    return [array[z], array[:, y][::-1]]


def _aspects(spacing: tuple[float, ...]) -> list[float]:
    """Pixel height/width of the slices :func:`_slices` returns, so anisotropic volumes (thick
    slices) are drawn in physical proportions."""
    if len(spacing) == 2:
        return [spacing[0] / spacing[1]]
    return [spacing[1] / spacing[2], spacing[0] / spacing[2]]


def write_preview(dataset_dir: Path, out_png: Path | None = None, max_cases: int = 4) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ds = RawDataset(dataset_dir)
    cases = (ds.train_cases() + ds.test_cases())[:max_cases]
    if not cases:
        raise ValueError(f"{dataset_dir}: no labelled cases to preview")
    rows = []
    for case in cases:
        image, geo = case.load_image()
        label, _ = case.load_label()
        disp = _to_display(image, ds.rgb)
        overlay = disp
        if ds.instance_labels and case.instance_file is not None and geo.ndim == 2:
            overlay = _instance_contours(disp, case.load_instances()[0])
        for img_slice, lab_slice, over_slice, aspect in zip(_slices(disp, geo.ndim, ds.rgb), _slices(label, geo.ndim, ds.rgb),
                                                            _slices(overlay, geo.ndim, ds.rgb), _aspects(geo.spacing)):
            rows.append((case.case_id, img_slice, lab_slice, over_slice, aspect))
    fig, axes = plt.subplots(len(rows), 2, figsize=(6, 3 * len(rows)), squeeze=False)
    for (cid, img, lab, over, aspect), (ax_img, ax_lab) in zip(rows, axes):
        cmap = None if img.ndim == 3 else "gray"
        ax_img.imshow(img, cmap=cmap, aspect=aspect)
        ax_img.set_title(cid, fontsize=8)
        ax_lab.imshow(over, cmap=None if over.ndim == 3 else "gray", aspect=aspect)
        ax_lab.imshow(np.ma.masked_where(lab == 0, lab), cmap="autumn", alpha=0.45, interpolation="nearest", aspect=aspect)
        ax_lab.set_title("label overlay" + (", instance outlines" if ds.instance_labels else ""), fontsize=8)
        for ax in (ax_img, ax_lab):
            ax.axis("off")
    fig.tight_layout()
    out_png = Path(out_png) if out_png else Path(dataset_dir).parent / f"{Path(dataset_dir).name}_preview.png"
    fig.savefig(out_png, dpi=80)
    plt.close(fig)
    return out_png
