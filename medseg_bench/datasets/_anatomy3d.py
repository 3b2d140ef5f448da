"""Shared 3D helpers for the volume simulators: signed distance fields (SDFs) in physical mm, a
bounding-box-limited SDF canvas, partial-volume occupancy, smooth random fields and slice averaging.

Conventions: coordinates are physical millimetres in ITK's LPS patient frame with an identity direction
(``x`` towards the patient's left, ``y`` posterior, ``z`` superior); arrays are numpy order ``(z, y, x)``.
A signed distance is negative inside a shape, positive outside, in mm. Shapes are combined with
(smooth) minimum as in Quilez's SDF modelling ("smooth minimum", iquilezles.org, 2013) and Hart,
"Sphere tracing", The Visual Computer 12 (1996). Partial volume: the fraction of a voxel inside a shape
is approximated by a linear ramp of the signed distance over one voxel width (exact for a plane crossing
a voxel along an axis), and thick slices average several thin working slices (a box slice profile).
A :class:`Grid` may carry a patient pose (rotation + translation): anatomy is then evaluated at the
voxels' patient-frame positions, so a tilted or rotated patient needs no change in the anatomy code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "FAR",
    "Grid",
    "SdfCanvas",
    "capsule",
    "elliptic_cylinder",
    "elliptic_arc_distance",
    "ellipsoid",
    "occupancy",
    "paint",
    "rotation_zyx",
    "smin",
    "sphere",
    "value_noise",
]

#: distance assigned far from every shape (mm); larger than any ramp, shell or blend width used.
FAR = 40.0


@dataclass(frozen=True)
class Grid:
    """A regular grid in LPS mm: ``shape`` (z, y, x), ``spacing`` (mm, numpy order) and ``origin``
    (mm, numpy order: the centre of voxel (0, 0, 0)).

    ``pose`` (optional) places the patient in the scanner: ``(R, t)`` with ``R`` a 3x3 rotation (numpy
    order, nested tuples) and ``t`` a translation (mm), so that a voxel at scanner position ``q`` lies at
    patient position ``R @ q + t``. :meth:`coords` and :meth:`box` then work in the patient frame
    (full, not open-mesh, coordinate arrays), so anatomy code is unchanged; :meth:`scanner_coords`
    always gives the open mesh of the scanner frame (for separable random fields)."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    pose: tuple | None = None

    def axis(self, i: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        stop = self.shape[i] if stop is None else stop
        return (self.origin[i] + self.spacing[i] * np.arange(start, stop)).astype(np.float32)

    def scanner_coords(self, box: tuple[slice, slice, slice] | None = None):
        """Open-mesh scanner-frame coordinates ``(z, y, x)`` (broadcastable) of the grid or a sub-box."""
        box = box or (slice(None),) * 3
        out = []
        for i, s in enumerate(box):
            a, b, _ = s.indices(self.shape[i])
            v = self.axis(i, a, b)
            shape = [1, 1, 1]
            shape[i] = v.size
            out.append(v.reshape(shape))
        return tuple(out)

    def coords(self, box: tuple[slice, slice, slice] | None = None):
        """Patient-frame coordinates ``(z, y, x)`` of the grid or of a sub-box: an open mesh without a
        pose, full arrays with one."""
        q = self.scanner_coords(box)
        if self.pose is None:
            return q
        R, t = np.asarray(self.pose[0], np.float32), np.asarray(self.pose[1], np.float32)
        return tuple((R[i, 0] * q[0] + R[i, 1] * q[1] + R[i, 2] * q[2] + t[i]).astype(np.float32) for i in range(3))

    def box(self, lo_mm, hi_mm) -> tuple[slice, slice, slice] | None:
        """Index box covering the patient-frame mm box ``[lo, hi]`` (numpy order), clipped; None if empty."""
        lo_mm, hi_mm = np.asarray(lo_mm, np.float64), np.asarray(hi_mm, np.float64)
        if self.pose is not None:  # scanner-frame bounding box of the rotated box's corners
            R, t = np.asarray(self.pose[0], np.float64), np.asarray(self.pose[1], np.float64)
            corners = np.array([[(lo_mm, hi_mm)[(k >> i) & 1][i] for i in range(3)] for k in range(8)])
            q = (corners - t) @ R  # R^T (p - t), row-wise
            lo_mm, hi_mm = q.min(axis=0), q.max(axis=0)
        out = []
        for i in range(3):
            a = int(np.floor((lo_mm[i] - self.origin[i]) / self.spacing[i]))
            b = int(np.ceil((hi_mm[i] - self.origin[i]) / self.spacing[i])) + 1
            a, b = max(a, 0), min(b, self.shape[i])
            if a >= b:
                return None
            out.append(slice(a, b))
        return tuple(out)


def rotation_zyx(pitch: float, roll: float, yaw: float) -> tuple:
    """Rotation matrix (numpy order z, y, x; nested tuples) for a patient pose: ``pitch`` about the
    left-right (x) axis (sagittal pelvic tilt), ``roll`` about the antero-posterior (y) axis (coronal
    obliquity), ``yaw`` about the cranio-caudal (z) axis (axial rotation); radians, applied in that order."""
    cp, sp, cr, sr, cy, sy = np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll), np.cos(yaw), np.sin(yaw)
    rx = np.array([[cp, -sp, 0], [sp, cp, 0], [0, 0, 1.0]])  # (z, y) plane
    ry = np.array([[cr, 0, -sr], [0, 1.0, 0], [sr, 0, cr]])  # (z, x) plane
    rz = np.array([[1.0, 0, 0], [0, cy, -sy], [0, sy, cy]])  # (y, x) plane
    m = rz @ ry @ rx
    return tuple(tuple(float(v) for v in row) for row in m)


def smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum (union) of two SDFs with blend radius ``k`` mm (``k=0``: plain min)."""
    if k <= 0:
        return np.minimum(a, b)
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def sphere(z, y, x, c, r):
    """SDF of a sphere centred at ``c`` (z, y, x) mm with radius ``r`` mm."""
    return np.sqrt((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) - r


def ellipsoid(z, y, x, c, radii):
    """Approximate SDF of an axis-aligned ellipsoid (first-order: ``(rho - 1) / |grad rho|``),
    exact on the surface and within a few percent near it, which is all partial volume needs."""
    rz, ry, rx = radii
    dz, dy, dx = (z - c[0]) / rz, (y - c[1]) / ry, (x - c[2]) / rx
    rho = np.sqrt(dz * dz + dy * dy + dx * dx) + 1e-6
    grad = np.sqrt((dz / rz) ** 2 + (dy / ry) ** 2 + (dx / rx) ** 2) / rho + 1e-6
    return (rho - 1.0) / grad


def capsule(z, y, x, a, b, ra, rb=None):
    """SDF of a (tapered) capsule from point ``a`` to ``b`` (z, y, x) mm with radii ``ra`` -> ``rb``."""
    rb = ra if rb is None else rb
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    ab = b - a
    L2 = float(ab @ ab) + 1e-9
    pz, py, px = z - a[0], y - a[1], x - a[2]
    t = np.clip((pz * ab[0] + py * ab[1] + px * ab[2]) / L2, 0.0, 1.0)
    d = np.sqrt((pz - t * ab[0]) ** 2 + (py - t * ab[1]) ** 2 + (px - t * ab[2]) ** 2)
    return d - (ra + (rb - ra) * t)


def elliptic_cylinder(z, y, x, c, ry, rx, half_height, rounding=2.0):
    """SDF of a z-aligned elliptic cylinder (a vertebral body) centred at ``c`` with in-plane radii
    ``(ry, rx)``, half height ``half_height`` and edges rounded by ``rounding`` mm."""
    u, v = (x - c[2]) / rx, (y - c[1]) / ry
    rho = np.sqrt(u * u + v * v) + 1e-6
    grad = np.sqrt((u / rx) ** 2 + (v / ry) ** 2) / rho + 1e-6
    d_xy = (rho - 1.0) / grad + rounding
    d_z = np.abs(z - c[0]) - half_height + rounding
    outside = np.sqrt(np.maximum(d_xy, 0) ** 2 + np.maximum(d_z, 0) ** 2)
    return outside + np.minimum(np.maximum(d_xy, d_z), 0) - rounding


def elliptic_arc_distance(y, x, cy, cx, ry, rx, phi0, phi1):
    """Unsigned in-plane distance (mm) to the arc of the ellipse centred at ``(cy, cx)`` with radii
    ``(ry, rx)`` between angles ``phi0 < phi1`` (radians, ``phi = atan2((y-cy)/ry, (x-cx)/rx)``).
    Radii and centre may be arrays broadcastable against ``y, x`` (e.g. varying with z). Returns
    ``(distance, phi)``; outside the angular range the distance is to the nearer end point."""
    u, v = (x - cx) / rx, (y - cy) / ry
    rho = np.sqrt(u * u + v * v) + 1e-6
    grad = np.sqrt((u / rx) ** 2 + (v / ry) ** 2) / rho + 1e-6
    d_arc = np.abs(rho - 1.0) / grad
    phi = np.arctan2(v, u)
    mid, half = 0.5 * (phi0 + phi1), 0.5 * (phi1 - phi0)
    off = np.angle(np.exp(1j * (phi - mid)))  # wrapped to (-pi, pi]
    inside = np.abs(off) <= half
    end = np.where(off > 0, phi1, phi0)
    ex, ey = cx + rx * np.cos(end), cy + ry * np.sin(end)
    d_end = np.sqrt((x - ex) ** 2 + (y - ey) ** 2)
    return np.where(inside, d_arc, d_end).astype(np.float32), phi


class SdfCanvas:
    """An SDF on a grid, built by adding primitives inside their mm bounding boxes only (speed: a
    small bone costs its box, not the volume). Far from every primitive the value is :data:`FAR`."""

    def __init__(self, grid: Grid):
        self.grid = grid
        self.sdf = np.full(grid.shape, FAR, dtype=np.float32)

    def add(self, fn: Callable, lo_mm, hi_mm, blend: float = 0.0, margin: float = 8.0) -> None:
        """Union with ``fn(z, y, x) -> sdf`` evaluated on the box ``[lo - margin, hi + margin]``."""
        box = self.grid.box(np.asarray(lo_mm) - margin - blend, np.asarray(hi_mm) + margin + blend)
        if box is None:
            return
        val = np.minimum(np.asarray(fn(*self.grid.coords(box)), dtype=np.float32), FAR)
        self.sdf[box] = smin(self.sdf[box], val, blend)

    def add_tube(self, points, radii, blend: float = 0.0) -> None:
        """Union with a tube along a polyline ``points`` (N, 3) mm, radius per point (N,) mm."""
        points = np.asarray(points, np.float32)
        radii = np.broadcast_to(np.asarray(radii, np.float32), (len(points),))
        for a, b, ra, rb in zip(points[:-1], points[1:], radii[:-1], radii[1:]):
            r = max(ra, rb)
            self.add(lambda z, y, x, a=a, b=b, ra=ra, rb=rb: capsule(z, y, x, a, b, ra, rb),
                     np.minimum(a, b) - r, np.maximum(a, b) + r, blend=blend)

    def subtract(self, other: np.ndarray, gap: float) -> None:
        """Remove ``other`` dilated by ``gap`` mm (e.g. a joint space between two bones)."""
        np.maximum(self.sdf, gap - other, out=self.sdf)


def occupancy(sdf: np.ndarray, width: float) -> np.ndarray:
    """Partial-volume fraction in [0, 1]: a linear ramp of the signed distance over ``width`` mm."""
    out = np.multiply(sdf, np.float32(-1.0 / width), dtype=np.float32)
    out += np.float32(0.5)
    return np.clip(out, 0.0, 1.0, out=out)


def paint(image: np.ndarray, fraction: np.ndarray, value) -> None:
    """Linear partial-volume mixing in place: ``image = image * (1 - f) + value * f``."""
    image += fraction * (np.asarray(value, dtype=np.float32) - image)


def _weights(coords: np.ndarray, lo: float, n: int, cell: float) -> np.ndarray:
    """Normalised Gaussian interpolation weights (len(coords), n) from lattice nodes to coordinates,
    scaled so that a unit-variance lattice gives a unit-variance field along this axis."""
    nodes = lo + cell * np.arange(n)
    w = np.exp(-(((coords[:, None] - nodes[None, :]) / cell) ** 2))
    w /= w.sum(axis=1, keepdims=True)
    w /= np.sqrt((w * w).sum(axis=1, keepdims=True))
    return w.astype(np.float32)


def value_noise(rng: np.random.Generator, extent_lo, extent_hi, cell_mm: float):
    """A smooth zero-mean, unit-variance random field: Gaussian values on a lattice of ``cell_mm``
    covering ``[extent_lo, extent_hi]`` (numpy-order mm), interpolated with normalised Gaussian
    weights (smooth, no lattice creases).

    Returns ``field(z, y, x) -> array`` for open-mesh coordinates (as :meth:`Grid.coords` gives), so
    the field is a function of position only: the same anatomy at every grid spacing. Separable, so
    evaluating it costs a few small matrix products."""
    lo = np.asarray(extent_lo, np.float64) - 2 * cell_mm
    n = np.ceil((np.asarray(extent_hi, np.float64) + 2 * cell_mm - lo) / cell_mm).astype(int) + 1
    lattice = rng.standard_normal(tuple(n)).astype(np.float32)

    def field(z, y, x):
        wz, wy, wx = (_weights(np.asarray(c, np.float64).ravel(), lo[i], n[i], cell_mm) for i, c in enumerate((z, y, x)))
        lz, ly, lx = lattice.shape
        nz, ny, nx = len(wz), len(wy), len(wx)
        a = (lattice.reshape(lz * ly, lx) @ wx.T).reshape(lz, ly, nx)
        a = (wy @ a.transpose(1, 0, 2).reshape(ly, lz * nx)).reshape(ny, lz, nx)
        a = np.ascontiguousarray(a.transpose(1, 0, 2)).reshape(lz, ny * nx)
        return (wz @ a).reshape(nz, ny, nx)

    return field
