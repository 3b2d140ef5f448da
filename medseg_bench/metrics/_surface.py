"""Surface-distance metrics: HD, HD95, ASSD, NSD (exact, float64, spacing-aware; 2D and 3D).

Definitions follow ``METRICS.md``: the surface of a mask is its foreground voxels with a
face-neighbour outside the mask or outside the image; points are voxel centres at
``index * spacing``; distances are exact Euclidean nearest-neighbour distances between the two
surfaces. Units are the spacing's units (mm for medical volumes, pixels when no spacing is given).

How: numba kernels mark each surface inside its mask's bounding box fused with the per-column
distances along one axis (the first pass of a separable EDT), and finish the exact
nearest-neighbour search at each surface point only, with an early stop at the best distance found;
far queries get a block-pruned search, the farthest a KD-tree (see ``_surface_kernels``). No
full-volume distance transform.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numba
import numpy as np
from scipy.spatial import cKDTree

from . import _surface_kernels as K
from ._parallel import pick

__all__ = [
    "DEFAULT_NSD_TOLERANCE",
    "HD95_MODES",
    "SurfaceMetrics",
    "assd",
    "hausdorff",
    "hd95",
    "nsd",
    "surface_distances",
    "surface_metrics",
    "surface_points",
]

HD95_MODES = ("max", "pooled")
DEFAULT_NSD_TOLERANCE = 2.0  # NSD tau in voxels of the finest axis when a caller gives none (METRICS.md)
# Row entries a query may scan before it is handed on: first (~0.5-1 ns an entry) with plain row
# windows, then, for the queries left (far from the other surface: isolated false positives), with
# x-block minima that skip most of a wide window (~1 ns a block bound, 16 entries a block), and the
# few left after that go to a KD-tree over the target points (~15 us a far query plus a serial
# build). Every path is exact, so these limits change times, not values (benchmarks/README.md).
_MAX_ROW_WORK = 1500
_MAX_FAR_WORK = 200_000
_FAR_BLOCKS_MIN = 256  # far queries that make the block minima worth a pass over the column distances


def _as_mask(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype != np.bool_:
        a = a != 0
    if a.ndim not in (2, 3):
        raise ValueError(f"{name} must be a 2D or 3D array, got shape {a.shape}")
    return np.ascontiguousarray(a)


def _spacing(spacing, ndim: int) -> np.ndarray:
    if spacing is None:
        return np.ones(ndim, np.float64)
    sp = np.atleast_1d(np.asarray(spacing, dtype=np.float64))
    if sp.size == 1:
        sp = np.repeat(sp, ndim)
    if sp.shape != (ndim,) or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise ValueError(
            f"spacing must be {ndim} positive finite numbers (numpy axis order), got {spacing!r}"
        )
    return sp


class _Mask:
    """A uint8 (Z, Y, X) view of a mask with its non-empty rows and bounding box."""

    __slots__ = ("m", "row_any", "lo", "hi")

    def __init__(self, mask3: np.ndarray):
        self.m = mask3.view(np.uint8)
        self.row_any, col_any = pick(K.ROW_ANY, self.m.size // 8)(self.m)
        self.lo, self.hi = K.bounding_box(self.row_any, col_any, *self.m.shape)

    @property
    def empty(self) -> bool:
        return bool(np.any(self.hi < self.lo))


class _Surface:
    """One mask's surface inside its own bounding box, as a target and as queries.

    ``g``: the column distances of the surface over the box (``g == 0`` on the surface; fused
    kernel, no marked box), ``row_min`` their row minima, ``pts`` the surface voxels (scan order),
    ``lo`` the box origin.
    """

    __slots__ = ("g", "row_min", "none", "pts", "lo")

    def __init__(self, mask: _Mask, use_axis0: bool):
        self.lo = mask.lo
        self.g = self.row_min = None
        if mask.empty:
            self.pts = np.empty((0, 3), np.int64)
            return
        nz, ny, nx = (int(v) for v in mask.hi - mask.lo + 1)
        work = nz * ny * nx
        kernel = pick(K.SURFACE_COLUMNS, work)
        threads = numba.get_num_threads() if kernel is K.SURFACE_COLUMNS[0] else 1
        # enough tasks for the threads: a 2D image (one slice) is cut into strips of columns
        nstrips = 1 if nz >= 4 * threads else max(1, min(-(-4 * threads // nz), nx // 128))
        dtype, none = (np.uint16, 65535) if ny + 1 < 65535 else (np.uint32, 2**32 - 1)
        g = np.empty((nz, ny, nx), dtype)
        row_min = np.empty((nstrips, nz, ny), dtype)
        counts = np.empty((nstrips, nz * ny), np.int64)
        kernel(mask.m, use_axis0, mask.lo, mask.hi, mask.row_any, nstrips, g, none, row_min, counts)
        if nstrips > 1:
            row_min = row_min.min(axis=0)
            counts = counts.sum(axis=0)
        self.g, self.row_min, self.none = g, row_min.reshape(nz, ny), none
        self.pts = pick(K.GATHER_ZEROS, work)(g, counts.reshape(-1), mask.lo)


def _directed(query: _Surface, target: _Surface, sp3) -> np.ndarray:
    """Exact distances from every query surface point to the nearest target surface point."""
    n = query.pts.shape[0]
    if n == 0:
        return np.empty(0, np.float64)
    if target.pts.shape[0] == 0:
        return np.full(n, np.inf)
    g = target.g
    xlo, xhi = K.slice_x_extents(target.pts, target.lo, g.shape[0])
    off = np.empty((n, 3), np.int64)
    args = (g, target.none, target.lo, xlo, xhi, target.row_min)
    no_blocks = np.empty((1, 1, 0), g.dtype)
    pick(K.NEAREST_IN_ROWS, n * 64)(query.pts, *args, no_blocks, sp3, _MAX_ROW_WORK, off)
    todo = np.flatnonzero(off[:, 0] < 0)
    if todo.size and _MAX_FAR_WORK > _MAX_ROW_WORK:
        # far queries: the same search again, skipping x-blocks whose minimum cannot beat the best
        nz, ny, nx = g.shape
        bmin = no_blocks
        if todo.size >= _FAR_BLOCKS_MIN:  # the block minima cost a pass over g: only for many
            bmin = np.empty((nz, ny, -(-nx // K.BLOCK)), g.dtype)
            pick(K.BLOCK_MINIMA, g.size)(g, bmin)
        far = np.ascontiguousarray(query.pts[todo])
        off_far = np.empty((todo.size, 3), np.int64)
        pick(K.NEAREST_IN_ROWS, todo.size * 4096)(far, *args, bmin, sp3, _MAX_FAR_WORK, off_far)
        off[todo] = off_far
        todo = todo[off_far[:, 0] < 0]
    if todo.size:
        # very far from everything: a KD-tree finds the neighbour faster
        tree = cKDTree(target.pts * sp3, leafsize=32, balanced_tree=False, compact_nodes=False)
        workers = numba.get_num_threads() if todo.size >= 2048 else 1
        _, idx = tree.query(query.pts[todo] * sp3, k=1, workers=workers)
        off[todo] = np.abs(query.pts[todo] - target.pts[idx])
    return K.offset_lengths(off, sp3)


def _prepare(pred, ref, spacing):
    a = _as_mask(pred, "pred")
    b = _as_mask(ref, "ref")
    if a.shape != b.shape:
        raise ValueError(f"pred and ref shapes differ: {a.shape} vs {b.shape}")
    sp = _spacing(spacing, a.ndim)
    if a.ndim == 3:
        return a, b, sp, True
    return a[None], b[None], np.concatenate([[1.0], sp]), False


def _both_directions(pred, ref, spacing):
    a3, b3, sp3, use_axis0 = _prepare(pred, ref, spacing)
    sa = _Surface(_Mask(a3), use_axis0)
    sb = _Surface(_Mask(b3), use_axis0)
    return _directed(sa, sb, sp3), _directed(sb, sa, sp3)


def surface_points(mask, spacing=None) -> np.ndarray:
    """Surface voxel centres of a 2D or 3D mask, in physical units.

    Args:
        mask: 2D or 3D array; nonzero = foreground.
        spacing: voxel size per axis in numpy axis order (a scalar means isotropic); default 1.

    Returns:
        float64 array (n, ndim) of ``index * spacing`` for every foreground voxel with a face-neighbour
        outside the mask or outside the image, in C order; (0, ndim) for an empty mask.
    """
    m = _as_mask(mask, "mask")
    sp = _spacing(spacing, m.ndim)
    mm = _Mask(m if m.ndim == 3 else m[None])
    if mm.empty:
        return np.empty((0, m.ndim), np.float64)
    pts = _Surface(mm, m.ndim == 3).pts
    return (pts if m.ndim == 3 else pts[:, 1:]) * sp


def surface_distances(pred, ref, spacing=None) -> tuple[np.ndarray, np.ndarray]:
    """Exact directed surface distances between two masks, both ways.

    Args:
        pred, ref: 2D or 3D arrays of the same shape; nonzero = foreground.
        spacing: voxel size per axis in numpy axis order (scalar = isotropic); default 1.

    Returns:
        ``(d_pred_to_ref, d_ref_to_pred)``: float64 distances (spacing units) from every surface
        voxel of one mask to the nearest surface voxel of the other, in C order of the query voxels.
        An empty mask has no surface voxels (empty array); the distances from a non-empty mask to an
        empty one are all ``+inf``.

    Example:
        >>> a = np.zeros((5, 5), bool); a[1:4, 1:4] = True
        >>> d_ab, d_ba = surface_distances(a, np.roll(a, 1, axis=1))
        >>> float(d_ab.max()), float(d_ba.max())
        (1.0, 1.0)
    """
    return _both_directions(pred, ref, spacing)


@dataclass(frozen=True)
class SurfaceMetrics:
    """All surface metrics of one class from one distance computation (spacing units).

    ``hd95`` is the default (max of both directed 95th percentiles, = MONAI), ``hd95_pooled`` the
    medpy variant. NaN when both masks are empty; ``inf`` (``nsd`` 0) when exactly one is.
    """

    hd: float
    hd95: float
    hd95_pooled: float
    assd: float
    nsd: float
    tolerance: float
    n_surface_pred: int
    n_surface_ref: int

    def to_dict(self) -> dict:
        return asdict(self)


def _percentile(d: np.ndarray, q: float) -> float:
    return float(np.percentile(d, q)) if d.size else math.nan


def _metrics_from_distances(d_ab: np.ndarray, d_ba: np.ndarray, tolerance: float) -> SurfaceMetrics:
    na, nb = d_ab.size, d_ba.size
    if na == 0 and nb == 0:
        nan = math.nan
        return SurfaceMetrics(nan, nan, nan, nan, nan, tolerance, 0, 0)
    if na == 0 or nb == 0:
        inf = math.inf
        return SurfaceMetrics(inf, inf, inf, inf, 0.0, tolerance, na, nb)
    hd = max(float(d_ab.max()), float(d_ba.max()))
    hd95 = max(_percentile(d_ab, 95), _percentile(d_ba, 95))
    pooled = np.concatenate([d_ab, d_ba])
    hd95_pooled = _percentile(pooled, 95)
    assd = float(pooled.sum() / pooled.size)
    nsd = float((np.count_nonzero(d_ab <= tolerance) + np.count_nonzero(d_ba <= tolerance)) / pooled.size)
    return SurfaceMetrics(hd, hd95, hd95_pooled, assd, nsd, float(tolerance), na, nb)


def _finest_spacing(spacing, ndim: int) -> float:
    """The smallest voxel size (spacing units) of ``spacing`` (None: 1; a scalar: isotropic)."""
    if spacing is None:
        return 1.0
    return float(np.min(np.broadcast_to(np.asarray(spacing, float), (max(ndim, 1),))))


def surface_metrics(pred, ref, spacing=None, tolerance: float | None = None) -> SurfaceMetrics:
    """HD, HD95 (both modes), ASSD and NSD at ``tolerance`` from one surface-distance computation.

    Args:
        pred, ref: 2D or 3D masks of the same shape (nonzero = foreground).
        spacing: voxel size per axis in numpy axis order (scalar = isotropic); default 1.
        tolerance: NSD tolerance tau in spacing units (a point counts when its distance is <= tau);
            None: :data:`DEFAULT_NSD_TOLERANCE` (2) voxels of the finest axis, e.g. 1 µm on 0.5 µm/px
            histology (``METRICS.md``: tau is per dataset; ``evaluate_folder`` sets it).

    Returns:
        :class:`SurfaceMetrics`. Both masks empty: every metric NaN; exactly one empty: distances
        ``+inf`` and NSD 0.
    """
    if tolerance is None:
        tolerance = DEFAULT_NSD_TOLERANCE * _finest_spacing(spacing, np.ndim(pred))
    if not tolerance >= 0:
        raise ValueError(f"NSD tolerance must be >= 0, got {tolerance!r}")
    d_ab, d_ba = _both_directions(pred, ref, spacing)
    return _metrics_from_distances(d_ab, d_ba, float(tolerance))


def hausdorff(pred, ref, spacing=None) -> float:
    """Hausdorff distance: the larger of both directed maxima (spacing units; NaN/inf for empty masks)."""
    return surface_metrics(pred, ref, spacing).hd


def hd95(pred, ref, spacing=None, mode: str = "max") -> float:
    """95th-percentile Hausdorff distance (spacing units).

    Args:
        mode: ``"max"`` (default; MONAI, MetricsReloaded): max of the two directed 95th percentiles;
            ``"pooled"`` (medpy): 95th percentile of both directed distance sets together. Both use
            linear interpolation (numpy's default).

    Returns:
        float; NaN when both masks are empty, ``+inf`` when exactly one is.
    """
    if mode not in HD95_MODES:
        raise ValueError(f"hd95 mode must be one of {HD95_MODES}, got {mode!r}")
    m = surface_metrics(pred, ref, spacing)
    return m.hd95 if mode == "max" else m.hd95_pooled


def assd(pred, ref, spacing=None) -> float:
    """Average symmetric surface distance: mean of both directed distance sets pooled (spacing units)."""
    return surface_metrics(pred, ref, spacing).assd


def nsd(pred, ref, spacing=None, tolerance: float | None = None) -> float:
    """Normalised surface Dice at ``tolerance`` (spacing units; None: two voxels of the finest axis):
    share of both surfaces within tau of the other.

    NaN when both masks are empty, 0 when exactly one is.
    """
    return surface_metrics(pred, ref, spacing, tolerance).nsd
