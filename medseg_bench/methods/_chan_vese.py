"""Two-phase Chan–Vese segmentation, fast enough for 3D volumes on a CPU.

The Chan–Vese model (Chan & Vese, "Active contours without edges", IEEE TIP 10(2), 2001) with
``λ1 = λ2 = 1`` and no area term,

    E(Σ, c1, c2) = μ · Perimeter(Σ) + Σ_{x∈Σ} |I(x) − c1|² + Σ_{x∉Σ} |I(x) − c2|²,

is minimised by alternating the two phase means ``c1, c2`` with the region ``Σ``. For fixed means
the region step is solved exactly through the convex relaxation of Chan, Esedoḡlu & Nikolova
("Algorithms for finding global minimizers of image segmentation and denoising models", SIAM J.
Appl. Math. 66(5), 2006): minimise ``μ·TV(u) + <r, u>`` over ``u ∈ [0, 1]`` with
``r = |I − c1|² − |I − c2|²`` and threshold ``u`` at 1/2. The convex problem is solved with the
primal–dual algorithm of Chambolle & Pock (JMIV 40, 2011), in a numba kernel (one fused pass over
the voxels per iteration; 2D images run as volumes of one slice).

Vector-valued images (RGB) use the channel mean of the squared distances (Chan, Sandberg & Vese,
J. Vis. Commun. Image Represent. 11, 2000). The level-set solvers of scikit-image are also offered
(:func:`chan_vese_phases` ``solver=``): ``"morphological"`` (Márquez-Neila et al., TPAMI 2014;
2D and 3D, slow in 3D) and ``"skimage"`` (Getreuer's level-set ``chan_vese``, 2D; slice by slice).
"""

from __future__ import annotations

import numpy as np

__all__ = ["SOLVERS", "chan_vese_phases", "convex_chan_vese", "standardise"]

SOLVERS = ("convex", "morphological", "skimage")


def _kernel():
    from numba import njit

    @njit(cache=True, fastmath=False)
    def primal_dual(r, u, ubar, px, py, pz, mu, n_iter):  # pragma: no cover - compiled
        nz, ny, nx = r.shape
        tau = 1.0 / np.sqrt(12.0)  # tau * sigma * ||grad||^2 <= 1 with ||grad||^2 <= 4 * 3
        sigma = tau
        for _ in range(n_iter):
            for z in range(nz):
                for y in range(ny):
                    for x in range(nx):
                        c = ubar[z, y, x]
                        gx = ubar[z, y, x + 1] - c if x + 1 < nx else 0.0
                        gy = ubar[z, y + 1, x] - c if y + 1 < ny else 0.0
                        gz = ubar[z + 1, y, x] - c if z + 1 < nz else 0.0
                        qx = px[z, y, x] + sigma * gx
                        qy = py[z, y, x] + sigma * gy
                        qz = pz[z, y, x] + sigma * gz
                        norm = np.sqrt(qx * qx + qy * qy + qz * qz)
                        s = norm / mu if norm > mu else 1.0
                        px[z, y, x] = qx / s
                        py[z, y, x] = qy / s
                        pz[z, y, x] = qz / s
            for z in range(nz):
                for y in range(ny):
                    for x in range(nx):
                        div = px[z, y, x] + py[z, y, x] + pz[z, y, x]
                        if x > 0:
                            div -= px[z, y, x - 1]
                        if y > 0:
                            div -= py[z, y - 1, x]
                        if z > 0:
                            div -= pz[z - 1, y, x]
                        old = u[z, y, x]
                        new = old - tau * (r[z, y, x] - div)
                        new = 0.0 if new < 0.0 else (1.0 if new > 1.0 else new)
                        u[z, y, x] = new
                        ubar[z, y, x] = 2.0 * new - old

    return primal_dual


_KERNEL = None


def _primal_dual():
    global _KERNEL
    if _KERNEL is None:
        _KERNEL = _kernel()
    return _KERNEL


def _phase_means(image: np.ndarray, inside: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel means ``(C,)`` inside / outside (an empty phase takes the other's mean)."""
    n_in = int(inside.sum())
    n_out = inside.size - n_in
    flat = image.reshape(image.shape[0], -1)
    m = inside.reshape(-1)
    total = flat.mean(axis=1)
    c1 = flat[:, m].mean(axis=1) if n_in else total
    c2 = flat[:, ~m].mean(axis=1) if n_out else total
    return c1, c2


def standardise(image: np.ndarray) -> np.ndarray:
    """Each channel of ``(C, *spatial)`` to zero mean and unit variance (float32; constant channels
    to 0). The Chan–Vese trade-off then reads in contrast-to-spread units: a region of radius ``R``
    voxels and contrast ``Δ`` (in image standard deviations) pays off when ``Δ² ≳ d·μ/R``."""
    image = np.asarray(image, dtype=np.float32)
    flat = image.reshape(image.shape[0], -1)
    mean = flat.mean(axis=1, dtype=np.float64)
    std = flat.std(axis=1, dtype=np.float64)
    std = np.where(std > 0, std, 1.0)
    shape = (-1,) + (1,) * (image.ndim - 1)
    return ((image - mean.reshape(shape)) / std.reshape(shape)).astype(np.float32)


def convex_chan_vese(image: np.ndarray, mu: float = 2.0, outer_iterations: int = 6, inner_iterations: int = 40,
                     init: np.ndarray | None = None) -> np.ndarray:
    """Chan–Vese region ``Σ`` of a 2D/3D, single- or multi-channel image (see module docstring).

    Args:
        image: ``(C, *spatial)`` (1–3 spatial axes), any real dtype. Each channel is standardised
            first (:func:`standardise`), which makes ``mu`` independent of the intensity scale and
            robust to a few extreme voxels (a min–max scale is not).
        mu: length weight per voxel face of boundary, in units of the image variance (>= 0; 0 gives
            the 2-means threshold).
        outer_iterations: alternations of (c1, c2) and region.
        inner_iterations: primal–dual iterations per region step (warm-started).
        init: initial region (bool, spatial shape); default: voxels above the image mean (in the
            channel mean), the usual label-free start.

    Returns:
        bool array of the spatial shape: the phase with mean ``c1``. Which phase is the target is
        the caller's decision (:mod:`medseg_bench.methods._polarity`).
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim not in (2, 3, 4):
        raise ValueError(f"image must be (C, *spatial) with 1-3 spatial axes, got shape {image.shape}")
    if mu < 0:
        raise ValueError(f"mu must be >= 0, got {mu}")
    spatial = image.shape[1:]
    img = standardise(image)
    vol = img.reshape((img.shape[0],) + (1,) * (4 - img.ndim) + spatial)  # (C, Z, Y, X)
    inside = (vol.mean(axis=0) > vol.mean()) if init is None else np.asarray(init, bool).reshape(vol.shape[1:])
    u = inside.astype(np.float32)
    ubar = u.copy()
    px, py, pz = (np.zeros_like(u) for _ in range(3))
    kernel = _primal_dual()
    for _ in range(max(1, int(outer_iterations))):
        c1, c2 = _phase_means(vol, inside)
        cs1 = c1.reshape((-1, 1, 1, 1))
        cs2 = c2.reshape((-1, 1, 1, 1))
        r = (((vol - cs1) ** 2) - ((vol - cs2) ** 2)).mean(axis=0).astype(np.float32)
        if mu == 0:
            u = (r < 0).astype(np.float32)
        else:
            kernel(np.ascontiguousarray(r), u, ubar, px, py, pz, float(mu), int(inner_iterations))
        new = u > 0.5
        if np.array_equal(new, inside):
            break
        inside = new
    return inside.reshape(spatial)


def _bright_inside(phase: np.ndarray, grey: np.ndarray) -> np.ndarray:
    """``phase`` or its complement, whichever is brighter: slices solved one by one agree on which
    phase is which."""
    phase = np.asarray(phase, bool)
    if phase.all() or not phase.any():
        return phase
    return phase if grey[phase].mean() >= grey[~phase].mean() else ~phase


def chan_vese_phases(image: np.ndarray, solver: str = "convex", mu: float = 2.0, iterations: int = 240) -> np.ndarray:
    """Chan–Vese region of ``image (C, *spatial)`` with one of :data:`SOLVERS`.

    ``iterations`` is the total iteration count: primal–dual iterations (``convex``, split over 6
    alternations), morphological iterations (``morphological``) or the level-set iteration cap
    (``skimage``). ``mu`` is used by ``convex`` only; the scikit-image solvers keep their own
    defaults (``mu=0.25`` / ``smoothing=1``, image scaled to [0, 1]) and see the channel mean;
    ``skimage`` works slice by slice on 3D volumes, ``morphological`` in 3D.
    """
    if solver == "convex":
        outer = 6
        return convex_chan_vese(image, mu=mu, outer_iterations=outer, inner_iterations=max(1, iterations // outer))
    grey = np.asarray(image, dtype=np.float64).mean(axis=0)
    lo, hi = grey.min(), grey.max()
    grey = (grey - lo) / (hi - lo) if hi > lo else np.zeros_like(grey)
    if solver == "morphological":
        from skimage.segmentation import morphological_chan_vese

        return morphological_chan_vese(grey, int(iterations), init_level_set="checkerboard", smoothing=1).astype(bool)
    if solver == "skimage":
        from skimage.segmentation import chan_vese

        planes = grey[None] if grey.ndim == 2 else grey
        out = np.stack([_bright_inside(chan_vese(p, max_num_iter=int(iterations)), p) for p in planes])
        return out[0] if grey.ndim == 2 else out
    raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
