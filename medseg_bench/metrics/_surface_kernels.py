"""Numba kernels behind the surface-distance metrics (private).

Everything works on 3D C-contiguous arrays; a 2D image is passed as a (1, H, W) view with
``use_axis0=False`` so the fake axis never makes a pixel a border pixel.

Why this is fast and still exact
--------------------------------
Only distances between the two surfaces are needed, so nothing is computed outside the masks'
bounding boxes, and no full distance transform is built. For a target surface T (in its box):

1. ``G[z, y, x]`` = distance, in voxels along axis 1, from ``(z, y, x)`` to the nearest voxel of T
   in the same ``(z, x)`` column (the first, 1D pass of a separable EDT; two vectorised sweeps,
   fused with the surface marking: :func:`_surface_columns`; ``G == 0`` is the surface).
2. For a query point ``q`` the squared distance to T is the minimum over rows ``(z', q_y)`` of
   ``(s0 dz)^2 + min_x [(s2 (x - q_x))^2 + (s1 G[z', q_y, x])^2]`` -- the remaining passes of the
   EDT, evaluated at ``q`` only. Rows are visited by increasing ``|dz|`` and the search stops as
   soon as ``(s0 dz)^2`` reaches the best value found; inside a row only
   ``|dx| <= sqrt(best - (s0 dz)^2) / s2`` can improve it, so the work is the lattice disk of radius
   d(q), scanned as a branch-free, vectorised min per row (in integers when ``s1 == s2``). The
   nearest targets of the last few queries (scan order keeps them close) give the first bound;
   rows whose lower bound (their smallest ``G``, their target columns' x-range) cannot improve it
   are skipped, and rows nearer than T's z-range are never visited. A query row outside the box
   along axis 1 reads the box's edge row plus its distance to it.
3. Queries whose disk would be large (far from T: isolated false positives) are handed back (-1).
   ``_surface.py`` runs them again with x-block minima of ``G`` (:func:`_block_minima`): inside a
   wide window only blocks whose lower bound can beat the best are scanned. The few left after a
   larger work limit are answered by a KD-tree over T's points.

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
BLOCK = _BLOCK = 16  # x-block of the block minima (:func:`_block_minima`)


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


@njit(cache=True, nogil=True, inline="always")
def _disk_work(r2, nz, sp):
    """About how many row entries a search of squared radius ``r2`` scans: the lattice disk in the
    (z, x) plane, or at most ``nz`` windows when the box has few slices (one for a 2D image)."""
    r = np.sqrt(r2)
    return min(np.pi * r2 / (sp[0] * sp[2]), nz * (2.0 * r / sp[2] + 1.0))


def _nearest_in_rows(q, g, none, lo, xlo, xhi, row_min, bmin, sp, max_work, out):
    """Offsets from each query ``q[i]`` (image indices) to its nearest target voxel behind ``g``.

    ``g`` is the target's column distances (:func:`_surface_columns`) over its bounding box at ``lo``;
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
    use_blocks = bmin.shape[2] > 0
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
            if _disk_work(lb, nz, sp) > max_work:
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
                if a > bz_ and _disk_work(best, nz, sp) > 4 * max_work:
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
                        # wide windows with block minima: only blocks whose bound can beat best
                        blocks = use_blocks and xb - xa >= 2 * _BLOCK
                        b0 = xa // _BLOCK if blocks else 0
                        b1 = xb // _BLOCK if blocks else 0
                        for bi in range(b0, b1 + 1):
                            sa = xa
                            sb = xb
                            if blocks:
                                work += 1
                                bm = np.int64(bmin[z, yc, bi])
                                if bm == none:
                                    continue
                                sa = max(xa, bi * _BLOCK)
                                sb = min(xb, bi * _BLOCK + _BLOCK - 1)
                                ddb = max(0, sa - qx, qx - sb)
                                rgb = np.float64(bm) + e
                                if A + s2sq * ddb * ddb + s1sq * rgb * rgb >= best:
                                    continue
                            if sa > sb:
                                continue
                            work += sb - sa + 1
                            k = -1
                            if same_sp:  # exact integer arithmetic; vectorises well
                                mi = _row_min_int(row, sa, sb, qx, e, none)
                                if mi < _INT_NONE and A + s1sq * mi < best:
                                    best = A + s1sq * mi
                                    for k in range(sb - sa + 1):  # where the winner is
                                        r = np.int64(row[sa + k])
                                        if r != none and (sa + k - qx) ** 2 + (r + e) ** 2 == mi:
                                            break
                            else:
                                mbits = _row_candidates(row, sa, sb, qx, e, s1sq, s2sq, none, tmp)
                                scratch[0] = mbits
                                m = scratch_f[0]
                                if A + m < best:
                                    best = A + m
                                    for k in range(sb - sa + 1):  # where the winner is
                                        if tbits[k] == mbits:
                                            break
                            if k >= 0:
                                tz = z
                                tx = sa + k
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


def _block_minima(g, out):
    """``out[z, y, b]`` = min of ``g[z, y, x]`` over the x-block ``b`` (``_BLOCK`` columns): lower
    bounds that let the row search skip most of a wide window (far queries)."""
    nz, ny, nx = g.shape
    nb = out.shape[2]
    for row in prange(nz * ny):
        z = row // ny
        y = row - z * ny
        gr = g[z, y]
        orow = out[z, y]
        for b in range(nb):
            x0 = b * _BLOCK
            x1 = min(nx, x0 + _BLOCK)
            blk = gr[x0:x1]
            mn = np.int64(blk[0])
            for j in range(x1 - x0):
                mn = min(mn, np.int64(blk[j]))
            orow[b] = mn


BLOCK_MINIMA = variants(_block_minima)


def _surface_columns(m, use_axis0, lo, hi, row_any, nstrips, g, none, row_min, counts):
    """Surface marking fused with the column distances (one pass, no marked box).

    A surface voxel is a foreground voxel of the uint8 mask ``m`` with a face-neighbour outside the
    mask or outside the image; the box ``[lo, hi]`` must contain the foreground, and rows without
    foreground (``row_any``) are skipped. Inner loops are branch-free over 1D row views, so they
    vectorise.

    ``g`` (box ``[lo, hi]``) gets ``|y - y'|`` to the nearest surface voxel in the same ``(z, x)``
    column (``none`` if the column has none), so ``g == 0`` marks the surface. Work is split into
    ``nz * nstrips`` tasks (a slice, and a strip of columns of it: a 2D image is one slice), each
    running the forward sweep (surface row computed on the fly from the mask's rows) and the backward
    sweep over its strip; ``row_min[strip, z, y]`` and ``counts[strip, z * ny + y]`` get the strip's
    row minimum of ``g`` and its count of surface voxels (the caller reduces over strips).
    """
    Z, Y, X = m.shape
    nz, ny, nx = g.shape
    width = (nx + nstrips - 1) // nstrips
    for task in prange(nz * nstrips):
        iz = task // nstrips
        st = task - iz * nstrips
        k0 = st * width
        k1 = min(nx, k0 + width)
        if k0 >= k1:
            for y in range(ny):
                row_min[st, iz, y] = none
                counts[st, iz * ny + y] = 0
            continue
        z = lo[0] + iz
        one = np.uint64(1)
        lo2 = np.uint64(lo[2])
        # image x range of the strip, and its part away from the image border along x
        xs = np.uint64(lo[2] + k0)
        xe = np.uint64(lo[2] + k1)  # exclusive
        xa = max(xs, one)
        xb = min(xe, np.uint64(max(X - 1, 1)))
        buf = np.zeros(nx, np.uint8)  # the surface of one row (strip part), box indices
        for y in range(ny):
            yi = lo[1] + y
            c = 0
            marked = row_any[z * Y + yi] != 0
            if marked:
                cur = m[z, yi]
                if yi == 0 or yi == Y - 1 or (use_axis0 and (z == 0 or z == Z - 1)):
                    for x in range(xs, xe):  # every foreground voxel touches the image border
                        v = cur[x]
                        buf[x - lo2] = v
                        c += v
                else:
                    up = m[z, yi - 1]
                    dn = m[z, yi + 1]
                    fr = m[z - 1, yi] if use_axis0 else cur
                    bk = m[z + 1, yi] if use_axis0 else cur
                    for x in range(xa, xb):
                        inner = cur[x - one] & cur[x + one] & up[x] & dn[x] & fr[x] & bk[x]
                        v = cur[x] & (inner ^ 1)
                        buf[x - lo2] = v
                        c += v
                    if xs == 0:  # the image border along x
                        v = cur[0]
                        buf[0] = v
                        c += v
                    if xe == X and X > 1:
                        v = cur[X - 1]
                        buf[X - 1 - lo[2]] = v
                        c += v
            counts[st, iz * ny + y] = c
            # the sweeps work on the strip's row parts (1D views: loops over range(w) vectorise)
            gc = g[iz, y][k0:k1]
            bv = buf[k0:k1]
            w = k1 - k0
            if y == 0:
                if marked:
                    for k in range(w):
                        gc[k] = none * (1 - np.int64(bv[k]))
                else:
                    for k in range(w):
                        gc[k] = none
            else:
                gp = g[iz, y - 1][k0:k1]
                if marked:
                    for k in range(w):
                        p = np.int64(gp[k])
                        gc[k] = (p + (p < none)) * (1 - np.int64(bv[k]))
                else:
                    for k in range(w):
                        p = np.int64(gp[k])
                        gc[k] = p + (p < none)
        w = k1 - k0
        rm = np.int64(none)
        gl = g[iz, ny - 1][k0:k1]
        for k in range(w):
            rm = min(rm, np.int64(gl[k]))
        row_min[st, iz, ny - 1] = rm
        for y in range(ny - 2, -1, -1):
            gp = g[iz, y + 1][k0:k1]
            gc = g[iz, y][k0:k1]
            rm = np.int64(none)
            for k in range(w):
                p = np.int64(gp[k])
                v = min(np.int64(gc[k]), p + (p < none))
                gc[k] = v
                rm = min(rm, v)
            row_min[st, iz, y] = rm


SURFACE_COLUMNS = variants(_surface_columns)


def _gather_zeros(g, counts, lo):
    """The voxels with ``g == 0`` (the surface, from :func:`_surface_columns`) as int64 (n, 3) image
    indices in scan order; ``counts[row]`` = how many a box row ``(z, y)`` holds."""
    nz, ny, nx = g.shape
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
        end = starts[row + 1]
        grow = g[iz, iy]
        x0 = 0
        while k < end:  # blocks of 32 without a zero are skipped by a vectorised min
            x1 = min(nx, x0 + 32)
            blk = grow[x0:x1]
            mn = np.int64(blk[0])
            for j in range(x1 - x0):
                mn = min(mn, np.int64(blk[j]))
            if mn == 0:
                for x in range(x0, x1):
                    if grow[x] == 0:
                        pts[k, 0] = lo[0] + iz
                        pts[k, 1] = lo[1] + iy
                        pts[k, 2] = lo[2] + x
                        k += 1
            x0 = x1
    return pts


GATHER_ZEROS = variants(_gather_zeros)


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
