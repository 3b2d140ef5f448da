"""Numba kernels behind the surface-distance metrics (private).

Everything works on 3D C-contiguous arrays; a 2D image is passed as a (1, H, W) view with
``use_axis0=False`` so the fake axis never makes a pixel a border pixel.

Why this is fast and still exact
--------------------------------
Only distances between the two surfaces are needed, so nothing is computed outside the masks'
bounding boxes, and no full distance transform is built. For a target surface T (in its box):

1. ``G[z, y, x]`` = distance, in voxels along axis 1, from ``(z, y, x)`` to the nearest voxel of T
   in the same ``(z, x)`` column (the first, 1D pass of a separable EDT; two vectorised sweeps).
2. For a query point ``q`` the squared distance to T is the minimum over rows ``(z', q_y)`` of
   ``(s0 dz)^2 + min_x [(s2 (x - q_x))^2 + (s1 G[z', q_y, x])^2]`` -- the remaining passes of the
   EDT, evaluated at ``q`` only. Rows are visited by increasing ``|dz|`` and the search stops as
   soon as ``(s0 dz)^2`` reaches the best value found; inside a row only
   ``|dx| <= sqrt(best - (s0 dz)^2) / s2`` can improve it, so the work is the lattice disk of radius
   d(q), scanned as a branch-free, vectorised min per row (in integers when ``s1 == s2``). The
   nearest targets of the last few queries (scan order keeps them close) give the first bound;
   rows whose lower bound (their smallest ``G``, their target columns' x-range) cannot improve it
   are skipped. A query row outside the box along axis 1 reads the box's edge row plus its
   distance to it.
3. Queries whose disk would be large (far from T: isolated false positives, far outside T's box)
   are handed back (-1) and answered by a KD-tree over T's points (``_surface.py``).

The result is the exact minimum (nothing that could be nearer is skipped). The reported distance is
recomputed from the integer offsets of the winner as ``sqrt((dz s0)^2 + (dy s1)^2 + (dx s2)^2)`` in
float64 (:func:`offset_lengths`), so it does not depend on the search order or on fastmath.

Each kernel exists parallel and serial (``_parallel.variants``); callers pick by work size.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._parallel import variants

_QUERY_CHUNK = 256
_RECENT = 4  # how many recent nearest targets bound the next query
_INT_NONE = np.int64(1) << 62


def _row_any(m):
    """Which rows (z, y) of a uint8 (Z, Y, X) mask hold foreground, and each slice's column-any.

    Returns ``(row_any (Z*Y,) uint8, col_any (Z, X) uint8)``. Both are branch-free ORs over
    contiguous rows (vectorised): ~0.05 ns per voxel.
    """
    Z, Y, X = m.shape
    row_any = np.zeros(Z * Y, np.uint8)
    col_any = np.zeros((Z, X), np.uint8)
    for z in prange(Z):
        ca = col_any[z]
        for y in range(Y):
            r = m[z, y]
            acc = np.uint8(0)
            for x in range(X):
                acc |= r[x]
            if acc:
                row_any[z * Y + y] = 1
                for x in range(X):
                    ca[x] |= r[x]
    return row_any, col_any


ROW_ANY = variants(_row_any)


@njit(cache=True, nogil=True)
def bounding_box(row_any, col_any, Z, Y, X):
    """Inclusive bounding box ``(lo (3,), hi (3,))`` from :func:`_row_any`; ``hi < lo`` if empty."""
    lo = np.array([Z, Y, X], np.int64)
    hi = np.array([-1, -1, -1], np.int64)
    for row in range(Z * Y):
        if row_any[row]:
            z = row // Y
            y = row - z * Y
            lo[0] = min(lo[0], z)
            hi[0] = max(hi[0], z)
            lo[1] = min(lo[1], y)
            hi[1] = max(hi[1], y)
    for z in range(lo[0], hi[0] + 1):
        for x in range(X):
            if col_any[z, x]:
                lo[2] = min(lo[2], x)
                hi[2] = max(hi[2], x)
    return lo, hi


def _surface_in_box(m, use_axis0, lo, hi, row_any, out):
    """Mark the surface of the uint8 mask ``m`` in ``out`` (uint8, zero on entry, box ``[lo, hi]``).

    A surface voxel is a foreground voxel with a face-neighbour outside the mask or outside the
    image. The box must contain the mask's foreground. Voxel ``v`` goes to ``out[v - lo]``. Rows
    without foreground (``row_any``) are skipped; the inner loop is branch-free over unsigned
    indices, so it vectorises. Returns per box row the surface count and the first and last surface
    x (box indices; ``first > last`` when there is none).
    """
    Z, Y, X = m.shape
    nz = hi[0] - lo[0] + 1
    ny = hi[1] - lo[1] + 1
    nx = hi[2] - lo[2] + 1
    counts = np.zeros(nz * ny, np.int64)
    sfirst = np.full(nz * ny, nx, np.int64)
    slast = np.full(nz * ny, -1, np.int64)
    for row in prange(nz * ny):
        iz = row // ny
        z = lo[0] + iz
        y = lo[1] + row - iz * ny
        if not row_any[z * Y + y]:
            continue
        orow = out[iz, y - lo[1]]
        cur = m[z, y]
        c = 0
        f = nx
        last = -1
        if y == 0 or y == Y - 1 or (use_axis0 and (z == 0 or z == Z - 1)):
            for k in range(nx):  # every foreground voxel touches the image border
                v = cur[lo[2] + k]
                orow[k] = v
                c += v
                f = min(f, k if v else nx)
                last = max(last, k if v else -1)
        else:
            up = m[z, y - 1]
            dn = m[z, y + 1]
            fr = m[z - 1, y] if use_axis0 else cur
            bk = m[z + 1, y] if use_axis0 else cur
            one = np.uint64(1)
            xa = np.uint64(max(lo[2], 1))
            xb = np.uint64(min(hi[2], X - 2) + 1)
            lo2 = np.uint64(lo[2])
            for x in range(xa, xb):
                inner = cur[x - one] & cur[x + one] & up[x] & dn[x] & fr[x] & bk[x]
                v = cur[x] & (inner ^ 1)
                k = np.int64(x - lo2)
                orow[k] = v
                c += v
                f = min(f, k if v else nx)
                last = max(last, k if v else -1)
            if lo[2] == 0:  # the image border along x
                v = cur[0]
                orow[0] = v
                c += v
                if v:
                    f = 0
                    last = max(last, 0)
            if hi[2] == X - 1 and X > 1:
                v = cur[X - 1]
                orow[X - 1 - lo[2]] = v
                c += v
                if v:
                    last = X - 1 - lo[2]
                    f = min(f, last)
        counts[row] = c
        sfirst[row] = f
        slast[row] = last
    return counts, sfirst, slast


SURFACE_IN_BOX = variants(_surface_in_box)


def _gather_points(surf, counts, sfirst, slast, lo):
    """Collect the voxels marked in ``surf`` (box at ``lo``) as int64 (n, 3) image indices, scan order.

    ``counts``/``sfirst``/``slast`` come from :func:`_surface_in_box`.
    """
    nz, ny, _ = surf.shape
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
        srow = surf[iz, iy]
        for x in range(sfirst[row], slast[row] + 1):
            if srow[x]:
                pts[k, 0] = lo[0] + iz
                pts[k, 1] = lo[1] + iy
                pts[k, 2] = lo[2] + x
                k += 1
    return pts


GATHER_POINTS = variants(_gather_points)


def _column_distances(surf, g, none, row_min):
    """``g[z, y, x]`` = |y - y'| to the nearest marked ``surf[z, y', x]`` (``none`` if there is none).

    Two sweeps along axis 1 per slice, vectorised along axis 2 (saturating at the sentinel); the
    backward sweep finds each row's minimum ``row_min[z, y]`` on the way.
    """
    nz, ny, nx = surf.shape
    for z in prange(nz):
        g0 = g[z, 0]
        s0 = surf[z, 0]
        for x in range(nx):
            g0[x] = 0 if s0[x] else none
        for y in range(1, ny):
            gp = g[z, y - 1]
            gc = g[z, y]
            sc = surf[z, y]
            for x in range(nx):
                p = np.int64(gp[x])
                gc[x] = (p + (p < none)) * (1 - np.int64(sc[x]))
        rm = np.int64(none)
        gl = g[z, ny - 1]
        for x in range(nx):
            rm = min(rm, np.int64(gl[x]))
        row_min[z, ny - 1] = rm
        for y in range(ny - 2, -1, -1):
            gp = g[z, y + 1]
            gc = g[z, y]
            rm = np.int64(none)
            for x in range(nx):
                p = np.int64(gp[x])
                v = min(np.int64(gc[x]), p + (p < none))
                gc[x] = v
                rm = min(rm, v)
            row_min[z, y] = rm


COLUMN_DISTANCES = variants(_column_distances)


@njit(cache=True, nogil=True, fastmath={"nnan", "nsz", "contract"}, inline="always")
def _row_candidates(row, xa, xb, qx, e, s1sq, s2sq, none, tmp):
    """``tmp[k] = (s2 (x - qx))^2 + (s1 (row[x] + e))^2`` for ``x = xa + k`` (inf where ``row[x] == none``).

    Returns the minimum as an int64 bit pattern: non-negative doubles order like their bit
    patterns, and an integer min reduction vectorises where a float one does not.
    """
    n = xb - xa + 1
    for k in range(n):
        r = row[xa + k]
        gv = np.float64(r) + e
        dxf = np.float64(xa + k - qx)
        v = s2sq * dxf * dxf + s1sq * gv * gv
        tmp[k] = v if r != none else np.inf
    bits = tmp.view(np.int64)
    m = bits[0]
    for k in range(n):
        m = min(m, bits[k])
    return m


@njit(cache=True, nogil=True, inline="always")
def _row_min_int(row, xa, xb, qx, e, none):
    """``min (x - qx)^2 + (row[x] + e)^2`` over ``[xa, xb]`` in integers (for equal spacing on axes 1, 2)."""
    m = _INT_NONE
    for x in range(xa, xb + 1):
        r = np.int64(row[x])
        dx = x - qx
        gv = r + e
        v = dx * dx + gv * gv
        m = min(m, v if r != none else _INT_NONE)
    return m


def _nearest_in_rows(q, g, none, lo, xlo, xhi, row_min, sp, max_work, out):
    """Offsets from each query ``q[i]`` (image indices) to its nearest target voxel behind ``g``.

    ``g`` is the target's :func:`_column_distances` over the target's bounding box at ``lo``;
    ``row_min[z, y]`` its minimum over x; box slice ``z`` has target columns only in
    ``[xlo[z], xhi[z]]`` (empty if ``xlo > xhi``). Queries may lie outside the box: a query row
    beyond the box along axis 1 reads the box's edge row plus its distance to it (all targets of a
    column lie on one side of it then). See the module docstring for the search. ``out[i]`` gets
    ``(|dz|, |dy|, |dx|)`` of a nearest target, or -1s when the search would cost more than
    ``max_work`` row entries (the caller answers those).
    """
    n = q.shape[0]
    nz, ny, nx = g.shape
    s0sq = sp[0] * sp[0]
    s1sq = sp[1] * sp[1]
    s2sq = sp[2] * sp[2]
    same_sp = sp[1] == sp[2]
    far_scale = np.pi / (sp[0] * sp[2])  # lattice points per unit squared radius of a row disk
    nchunks = (n + _QUERY_CHUNK - 1) // _QUERY_CHUNK
    for c in prange(nchunks):
        tmp = np.empty(nx, np.float64)
        tbits = tmp.view(np.int64)
        scratch = np.empty(1, np.int64)  # reads an int64 bit pattern back as a float64
        scratch_f = scratch.view(np.float64)
        # nearest targets of the last queries (box indices): upper bounds for the next one
        recent = np.zeros((_RECENT, 3), np.int64)
        n_recent = 0
        for i in range(c * _QUERY_CHUNK, min(n, (c + 1) * _QUERY_CHUNK)):
            qz = q[i, 0] - lo[0]
            qy = q[i, 1] - lo[1]
            qx = q[i, 2] - lo[2]
            if qy < 0:
                yc = 0
                e = -qy
            elif qy >= ny:
                yc = ny - 1
                e = qy - (ny - 1)
            else:
                yc = qy
                e = 0
            # far outside the target's box the disk to scan is too large: leave it to the caller
            bz_ = max(0, -qz, qz - (nz - 1))
            bx_ = max(0, -qx, qx - (nx - 1))
            lb = s0sq * bz_ * bz_ + s1sq * e * e + s2sq * bx_ * bx_
            if lb * far_scale > max_work:
                out[i, 0] = -1
                out[i, 1] = -1
                out[i, 2] = -1
                continue
            if e == 0 and 0 <= qz < nz and 0 <= qx < nx and g[qz, qy, qx] == 0:
                out[i, 0] = 0  # the query is a target voxel itself
                out[i, 1] = 0
                out[i, 2] = 0
                continue
            best = np.inf
            bz = 0
            by = 0
            bx = 0
            for r in range(min(n_recent, _RECENT)):
                dz = qz - recent[r, 0]
                dy = qy - recent[r, 1]
                dx = qx - recent[r, 2]
                v = s0sq * dz * dz + s1sq * dy * dy + s2sq * dx * dx
                if v < best:
                    best = v
                    bz = abs(dz)
                    by = abs(dy)
                    bx = abs(dx)
            tz = -1
            ty = 0
            tx = 0
            work = 0
            a = bz_  # rows nearer than the box's z-range hold nothing: start at its edge slice
            while work <= max_work:
                if a > bz_ and far_scale * best > 4 * max_work:
                    work = max_work + 1  # the disk still to scan is too large: leave it to the caller
                    break
                A = s0sq * a * a
                if A >= best or (qz - a < 0 and qz + a >= nz):
                    break
                for side in range(2):
                    if side == 1 and a == 0:
                        break
                    z = qz - a if side == 0 else qz + a
                    if z < 0 or z >= nz or xlo[z] > xhi[z]:
                        continue
                    # lower bound of this row: its target columns' x-range and its smallest g
                    ddx = max(0, xlo[z] - qx, qx - xhi[z])
                    rg = np.float64(row_min[z, yc]) + e
                    if A + s2sq * ddx * ddx + s1sq * rg * rg >= best:
                        continue
                    row = g[z, yc]
                    w = 8  # widen from a small window while nothing bounds the row
                    while True:
                        rem = best - A
                        full = False
                        if rem < np.inf:
                            wb = int(np.sqrt(rem / s2sq))
                            if wb <= 4 * w:
                                full = True
                                w = wb
                        xa = max(xlo[z], qx - w)
                        xb = min(xhi[z], qx + w)
                        if xa <= xb:
                            work += xb - xa + 1
                            k = -1
                            if same_sp:  # exact integer arithmetic; vectorises well
                                mi = _row_min_int(row, xa, xb, qx, e, none)
                                if mi < _INT_NONE and A + s1sq * mi < best:
                                    best = A + s1sq * mi
                                    for k in range(xb - xa + 1):  # where the winner is
                                        r = np.int64(row[xa + k])
                                        if r != none and (xa + k - qx) ** 2 + (r + e) ** 2 == mi:
                                            break
                            else:
                                mbits = _row_candidates(row, xa, xb, qx, e, s1sq, s2sq, none, tmp)
                                scratch[0] = mbits
                                m = scratch_f[0]
                                if A + m < best:
                                    best = A + m
                                    for k in range(xb - xa + 1):  # where the winner is
                                        if tbits[k] == mbits:
                                            break
                            if k >= 0:
                                tz = z
                                tx = xa + k
                                gk = np.int64(row[tx])
                                by = gk + e
                                bz = a
                                bx = abs(tx - qx)
                                if e == 0:
                                    ty = yc + gk if yc + gk < ny and g[z, yc + gk, tx] == 0 else yc - gk
                                else:
                                    ty = yc - gk if qy >= ny else yc + gk
                        if full or (xa <= xlo[z] and xb >= xhi[z]):
                            break
                        if best < np.inf and s2sq * (w + 1) * (w + 1) >= best - A:
                            break
                        w *= 4
                a += 1
            if work > max_work:
                out[i, 0] = -1
                out[i, 1] = -1
                out[i, 2] = -1
            else:
                out[i, 0] = bz
                out[i, 1] = by
                out[i, 2] = bx
                if tz >= 0:
                    k = n_recent % _RECENT
                    recent[k, 0] = tz
                    recent[k, 1] = ty
                    recent[k, 2] = tx
                    n_recent += 1


NEAREST_IN_ROWS = variants(_nearest_in_rows)


@njit(cache=True, nogil=True)
def slice_x_extents(pts, lo, nz):
    """Per box slice, the smallest and largest x (box indices) of the points; ``xlo > xhi`` if none."""
    xlo = np.full(nz, 1 << 62, np.int64)
    xhi = np.full(nz, -1, np.int64)
    for i in range(pts.shape[0]):
        z = pts[i, 0] - lo[0]
        x = pts[i, 2] - lo[2]
        xlo[z] = min(xlo[z], x)
        xhi[z] = max(xhi[z], x)
    return xlo, xhi


@njit(cache=True, nogil=True)
def offset_lengths(off, sp):
    """``sqrt((off0 s0)^2 + (off1 s1)^2 + (off2 s2)^2)`` row-wise: the canonical distance formula."""
    n = off.shape[0]
    out = np.empty(n, np.float64)
    for i in range(n):
        acc = 0.0
        for a in range(3):
            d = off[i, a] * sp[a]
            acc += d * d
        out[i] = np.sqrt(acc)
    return out
