"""Numba kernels behind the surface-distance metrics (private).

Everything works on 3D C-contiguous arrays; a 2D image is passed as a (1, H, W) view with
``use_axis0=False`` so the fake axis neither makes every pixel a border pixel nor is searched.

Why this is fast and still exact
--------------------------------
Distances are needed only from surface voxels of one mask to surface voxels of the other.
Most of them are short (a prediction is close to its reference), so each query first walks a
list of integer offsets sorted by their physical length (spacing-aware) and stops at the first
offset that lands on a target surface voxel: that one is a nearest neighbour, because every
grid point closer to the query has been looked at before it. Only queries with no target within
the walk's radius are left unresolved (returned as -1) and answered by a KD-tree over the target
points (``_surface.py``); the walk proves their distance exceeds the radius, so the two parts
together are exact. Distances are ``sqrt(sum((delta_index * spacing) ** 2))`` in float64 on both
paths, so the result does not depend on which path answered.

The target surface is written into a zero-padded box (pad = 2 walk radii per axis), which removes
all bounds checks from the walk and lets it use flat-index offsets.

Each kernel exists parallel and serial (``_parallel.variants``); :func:`pick` chooses by work size.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._parallel import variants


def _bounding_box(mask):
    """Inclusive bounding box of a bool (Z, Y, X) mask: ``(lo (3,), hi (3,))``; ``hi < lo`` if empty."""
    Z, Y, X = mask.shape
    first = np.full(Z * Y, X, np.int64)
    last = np.full(Z * Y, -1, np.int64)
    for row in prange(Z * Y):  # rows, not slices: a 2D image is a single slice
        z = row // Y
        y = row - z * Y
        for x in range(X):
            if mask[z, y, x]:
                first[row] = x
                break
        if first[row] < X:
            for x in range(X - 1, -1, -1):
                if mask[z, y, x]:
                    last[row] = x
                    break
    lo = np.array([Z, Y, X], np.int64)
    hi = np.array([-1, -1, -1], np.int64)
    for row in range(Z * Y):
        if last[row] >= 0:
            z = row // Y
            y = row - z * Y
            lo[0] = min(lo[0], z)
            hi[0] = max(hi[0], z)
            lo[1] = min(lo[1], y)
            hi[1] = max(hi[1], y)
            lo[2] = min(lo[2], first[row])
            hi[2] = max(hi[2], last[row])
    return lo, hi


BOUNDING_BOX = variants(_bounding_box)


def _surface_in_box(mask, use_axis0, lo, hi, pad, out):
    """Mark the surface of ``mask`` inside its bounding box ``[lo, hi]`` in the padded ``out``.

    A surface voxel is a foreground voxel with a face-neighbour outside the mask or outside the
    image (voxels outside the bounding box are background, so looking only inside it is exact).
    ``out`` (uint8, zero on entry) covers ``[lo - pad, hi + pad]``: voxel ``v`` goes to
    ``out[v - lo + pad]``. Returns the number of surface voxels per row of the box (int64).
    """
    Z, Y, X = mask.shape
    nz = hi[0] - lo[0] + 1
    ny = hi[1] - lo[1] + 1
    counts = np.zeros(nz * ny, np.int64)
    for row in prange(nz * ny):
        iz = row // ny
        z = lo[0] + iz
        y = lo[1] + row - iz * ny
        c = 0
        for x in range(lo[2], hi[2] + 1):
            if not mask[z, y, x]:
                continue
            s = (
                x == 0
                or x == X - 1
                or y == 0
                or y == Y - 1
                or not mask[z, y, x - 1]
                or not mask[z, y, x + 1]
                or not mask[z, y - 1, x]
                or not mask[z, y + 1, x]
            )
            if not s and use_axis0:
                s = z == 0 or z == Z - 1 or not mask[z - 1, y, x] or not mask[z + 1, y, x]
            if s:
                out[iz + pad[0], y - lo[1] + pad[1], x - lo[2] + pad[2]] = 1
                c += 1
        counts[row] = c
    return counts


SURFACE_IN_BOX = variants(_surface_in_box)


def _gather_points(surf, counts, lo, hi, pad):
    """Collect the surface voxels marked in ``surf`` as int64 (n, 3) image indices, in scan order.

    ``counts`` is the per-row count from :func:`surface_in_box`. Scan order keeps consecutive
    queries spatially close, which keeps the walk's memory accesses cache friendly.
    """
    nz = hi[0] - lo[0] + 1
    ny = hi[1] - lo[1] + 1
    nrows = nz * ny
    starts = np.zeros(nrows + 1, np.int64)
    for row in range(nrows):
        starts[row + 1] = starts[row] + counts[row]
    pts = np.empty((starts[nrows], 3), np.int64)
    for row in prange(nrows):
        if counts[row] == 0:
            continue
        iz = row // ny
        iy = row - iz * ny
        k = starts[row]
        for x in range(lo[2], hi[2] + 1):
            if surf[iz + pad[0], iy + pad[1], x - lo[2] + pad[2]]:
                pts[k, 0] = lo[0] + iz
                pts[k, 1] = lo[1] + iy
                pts[k, 2] = x
                k += 1
    return pts


GATHER_POINTS = variants(_gather_points)


def _nearest_by_walk(pts, target_flat, origin, strides, flat_offsets, offset_dist, lo, hi, sp):
    """Exact nearest-target distances for the queries ``pts`` whose nearest target is within R.

    ``target_flat`` is the target's padded surface box raveled (``origin`` = image index of its
    first element, ``strides`` in elements, padding >= 2 walk radii per axis);
    ``flat_offsets``/``offset_dist`` are all integer offsets of physical length <= R sorted by
    length. Returns float64 distances, -1 where the nearest target is farther than R. Queries
    farther than R from the target bounding box ``[lo, hi]`` skip the walk (that bound also keeps
    every access inside the padded box).
    """
    n = pts.shape[0]
    K = flat_offsets.shape[0]
    r = offset_dist[K - 1]
    r2 = r * r
    out = np.empty(n, np.float64)
    for i in prange(n):
        lb = 0.0
        for a in range(3):
            c = pts[i, a]
            if c < lo[a]:
                t = (lo[a] - c) * sp[a]
                lb += t * t
            elif c > hi[a]:
                t = (c - hi[a]) * sp[a]
                lb += t * t
        res = -1.0
        if lb <= r2:
            base = (
                (pts[i, 0] - origin[0]) * strides[0]
                + (pts[i, 1] - origin[1]) * strides[1]
                + (pts[i, 2] - origin[2])
            )
            for k in range(K):
                if target_flat[base + flat_offsets[k]]:
                    res = offset_dist[k]
                    break
        out[i] = res
    return out


NEAREST_BY_WALK = variants(_nearest_by_walk)


@njit(cache=True, nogil=True)
def canonical_distances(q, t, sp):
    """``sqrt(sum(((q - t) * sp) ** 2))`` row-wise for int64 index arrays (the one distance formula)."""
    n = q.shape[0]
    out = np.empty(n, np.float64)
    for i in range(n):
        acc = 0.0
        for a in range(3):
            d = (q[i, a] - t[i, a]) * sp[a]
            acc += d * d
        out[i] = np.sqrt(acc)
    return out


def walk_offsets(spacing3, use_axis0: bool, radius: float):
    """All integer offsets with physical length <= ``radius``, sorted by length (stable, ties by index).

    Returns ``(offsets (K, 3) int64, distances (K,) float64, per-axis radius in voxels (3,) int64)``.
    """
    sp = np.asarray(spacing3, dtype=np.float64)
    rad = np.floor(radius / sp + 1e-12).astype(np.int64)
    if not use_axis0:
        rad[0] = 0
    axes = [np.arange(-r, r + 1, dtype=np.int64) for r in rad]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    d = canonical_distances(grid, np.zeros_like(grid), sp)
    keep = d <= radius
    grid, d = grid[keep], d[keep]
    order = np.argsort(d, kind="stable")
    return grid[order], d[order], rad
