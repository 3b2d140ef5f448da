"""Separable resampling of images, label maps and probability maps to a new grid shape.

Every axis is resampled on its own with a sparse ``(n_out, n_in)`` interpolation matrix, so each axis
can have its own order (nnU-Net's "separate z": in-plane cubic, out-of-plane nearest for anisotropic
data; Isensee et al., Nature Methods 2021) and one call to ``scipy.sparse`` does the work of a whole
axis. Grid convention: voxel centres, ``x_in = (x_out + 0.5) * n_in / n_out - 0.5`` (as
``skimage.transform.resize`` and ``scipy.ndimage.zoom(grid_mode=True)``), edges replicated. An axis
whose size does not change is left untouched, so resampling to the same shape is exactly the identity.

Orders: 0 nearest, 1 linear, 3 cubic convolution (Keys, "Cubic convolution interpolation for digital
image processing", IEEE TASSP 1981, a = -0.5: interpolating, local, 4 taps).

Label maps are resampled per class: each class's indicator is interpolated (linear by default) and
every voxel takes the class with the highest interpolated value (nnU-Net resamples each class with
order 1 and thresholds at 0.5; for two classes the two rules agree).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = [
    "ANISOTROPY_THRESHOLD",
    "resample_array",
    "resample_label",
    "axis_orders",
    "separate_axis",
    "shape_for_spacing",
]

#: an axis more than this many times coarser than the finest counts as out-of-plane (nnU-Net: 3)
ANISOTROPY_THRESHOLD = 3.0


def shape_for_spacing(shape, spacing, new_spacing) -> tuple[int, ...]:
    """Grid shape covering the same extent at ``new_spacing``: ``round(shape * spacing / new_spacing)``,
    at least 1 per axis (nnU-Net's rule)."""
    return tuple(max(1, int(round(s * a / b))) for s, a, b in zip(shape, spacing, new_spacing))


def separate_axis(spacing, new_spacing=None, threshold: float = ANISOTROPY_THRESHOLD) -> int | None:
    """The out-of-plane axis to resample separately, or None.

    An axis is out-of-plane when it is more than ``threshold`` times coarser than the finest axis in
    the current spacing (else in the new spacing) and it is the only coarsest axis (nnU-Net's
    ``get_do_separate_z`` / ``get_lowres_axis``). 2D grids never have one.
    """
    for sp in (spacing, new_spacing):
        if sp is None or len(sp) < 3:
            continue
        sp = np.asarray(sp, dtype=float)
        if sp.max() / sp.min() > threshold:
            coarse = np.flatnonzero(np.isclose(sp, sp.max()))
            return int(coarse[0]) if coarse.size == 1 else None
    return None


def axis_orders(ndim: int, order: int, out_of_plane_axis: int | None, order_out_of_plane: int = 0) -> tuple[int, ...]:
    """Per-axis interpolation orders: ``order`` everywhere, ``order_out_of_plane`` on the separate axis."""
    orders = [order] * ndim
    if out_of_plane_axis is not None:
        orders[out_of_plane_axis] = order_out_of_plane
    return tuple(orders)


def _keys(t: np.ndarray, a: float = -0.5) -> np.ndarray:
    t = np.abs(t)
    out = np.zeros_like(t)
    near, far = t <= 1, (t > 1) & (t < 2)
    out[near] = (a + 2) * t[near] ** 3 - (a + 3) * t[near] ** 2 + 1
    out[far] = a * t[far] ** 3 - 5 * a * t[far] ** 2 + 8 * a * t[far] - 4 * a
    return out


@lru_cache(maxsize=256)
def _axis_matrix(n_in: int, n_out: int, order: int):
    """Sparse ``(n_out, n_in)`` float32 interpolation matrix for one axis."""
    from scipy import sparse

    out_idx = np.arange(n_out)
    scale = n_in / n_out
    if order == 0:
        cols = np.clip(np.floor((out_idx + 0.5) * scale).astype(np.int64), 0, n_in - 1)[:, None]
        weights = np.ones_like(cols, dtype=np.float64)
    else:
        x = (out_idx + 0.5) * scale - 0.5
        base = np.floor(x).astype(np.int64)
        if order == 1:
            offsets = np.array([0, 1])
            frac = (x - base)[:, None]
            weights = np.concatenate([1 - frac, frac], axis=1)
        elif order == 3:
            offsets = np.array([-1, 0, 1, 2])
            weights = _keys(x[:, None] - (base[:, None] + offsets[None, :]))
        else:
            raise ValueError(f"interpolation order must be 0, 1 or 3, got {order}")
        cols = np.clip(base[:, None] + offsets[None, :], 0, n_in - 1)
    rows = np.repeat(out_idx, cols.shape[1])
    m = sparse.csr_matrix((weights.ravel().astype(np.float32), (rows, cols.ravel())), shape=(n_out, n_in))
    m.sum_duplicates()  # clamped edge taps add up
    return m


def _resample_axis(array: np.ndarray, axis: int, n_out: int, order: int) -> np.ndarray:
    m = _axis_matrix(array.shape[axis], n_out, order)
    moved = np.moveaxis(array, axis, 0)
    flat = np.ascontiguousarray(moved).reshape(moved.shape[0], -1)
    out = np.asarray(m @ flat).reshape((n_out,) + moved.shape[1:])
    return np.moveaxis(out, 0, axis)


def resample_array(array: np.ndarray, new_shape, orders) -> np.ndarray:
    """Resample a channel-first ``array (C, *spatial)`` to ``(C, *new_shape)``.

    Args:
        array: any real dtype; computed and returned as float32.
        new_shape: target spatial shape (voxels).
        orders: interpolation order per spatial axis (see :func:`axis_orders`).

    Returns:
        float32 ``(C, *new_shape)``; the input itself (as float32) when the shape does not change.
    """
    new_shape = tuple(int(s) for s in new_shape)
    spatial = array.shape[1:]
    if len(new_shape) != len(spatial) or len(orders) != len(spatial):
        raise ValueError(f"cannot resample spatial shape {spatial} to {new_shape} with orders {tuple(orders)}")
    out = np.asarray(array, dtype=np.float32)
    # shrinking axes first keeps the intermediate arrays small
    axes = sorted(range(len(spatial)), key=lambda a: new_shape[a] / spatial[a])
    for a in axes:
        if out.shape[a + 1] != new_shape[a]:
            out = _resample_axis(out, a + 1, new_shape[a], orders[a])
    return np.ascontiguousarray(out)


def resample_label(label: np.ndarray, new_shape, orders, dtype=None) -> np.ndarray:
    """Resample an integer label map ``(*spatial)`` class by class (see the module docstring).

    Args:
        label: integer array; every value present is treated as a class (background included).
        new_shape: target spatial shape.
        orders: per-axis orders for the class indicators (0 gives plain nearest neighbour).
        dtype: output dtype (default: the input's).

    Returns:
        ``(*new_shape)`` label map; a copy of ``label`` when the shape does not change.
    """
    new_shape = tuple(int(s) for s in new_shape)
    dtype = dtype or label.dtype
    if tuple(label.shape) == new_shape:
        return label.astype(dtype, copy=True)
    if all(o == 0 for o in orders):
        idx = np.ix_(*[_axis_matrix(n, m, 0).indices for n, m in zip(label.shape, new_shape)])
        return label[idx].astype(dtype)
    values = np.unique(label)
    if values.size == 1:
        return np.full(new_shape, values[0], dtype=dtype)
    # interpolation weights sum to one, so the first class's score is one minus the others': it is
    # never resampled (half the work for binary labels); ties go to the first (lowest) value
    first = values[0]
    best = np.zeros(new_shape, dtype=np.float32)
    out = np.full(new_shape, first, dtype=dtype)
    total = np.zeros(new_shape, dtype=np.float32)
    for v in values[1:]:
        score = resample_array((label == v)[None].astype(np.float32), new_shape, orders)[0]
        total += score
        better = score > best
        best[better] = score[better]
        out[better] = v
    out[(1.0 - total) >= best - 1e-6] = first  # tolerance: the sum carries float rounding
    return out
