"""Small 2D building blocks shared by the 2D simulators (``retina_ga``, ``nuclei_he``).

Pure functions over numpy arrays; every random draw comes from the ``numpy.random.Generator`` passed
in, so a simulator stays deterministic from its seed. Lengths are in **pixels** unless a docstring
says otherwise; fields are ``float32`` of shape ``(y, x)``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "anisotropic_noise",
    "fractal_noise",
    "polar_grid",
    "size_row",
        "smooth_noise",
    "soft_mask",
    "star_polygon_radius",
    "warp_field",
]


def size_row(size: str, table: dict[str, tuple]) -> tuple:
    """A simulator's settings row for a dataset size (``tiny``/``small``/``full``); clear error otherwise."""
    if size not in table:
        raise ValueError(f"unknown size {size!r}; choose one of {', '.join(table)}")
    return table[size]


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float | tuple[float, float]) -> np.ndarray:
    """White Gaussian noise low-pass filtered with a Gaussian of ``sigma`` px, rescaled to zero mean and
    unit standard deviation (a constant field when the filter removes everything).

    Wide filters (``sigma >= 6`` px) are computed on a grid coarser by ``sigma / 3`` and upsampled
    bilinearly (the coarse field is smooth over >= 3 samples): the same kind of field, cheaper."""
    sig = np.broadcast_to(np.asarray(sigma, np.float64), (2,))
    step = int(sig.min() // 3) if sig.min() >= 6 else 1
    if step > 1:
        coarse = tuple(int(np.ceil(s / step)) + 3 for s in shape)
        small = ndi.gaussian_filter(rng.standard_normal(coarse).astype(np.float32), sig / step, mode="wrap")
        field = ndi.zoom(small, step, order=1, mode="grid-wrap", grid_mode=True)[: shape[0], : shape[1]]
        std = float(field.std())
        return (field - field.mean()) / std if std > 0 else np.zeros(shape, np.float32)
    field = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, mode="wrap")
    std = float(field.std())
    return (field - field.mean()) / std if std > 0 else np.zeros(shape, np.float32)


def fractal_noise(rng: np.random.Generator, shape: tuple[int, int], base_sigma: float, octaves: int = 4,
                  persistence: float = 0.55) -> np.ndarray:
    """Sum of ``octaves`` smooth noise fields, each half the scale and ``persistence`` times the weight
    of the previous one (a cheap 1/f-like texture). Zero mean, unit std."""
    field = np.zeros(shape, np.float32)
    weight, sigma = 1.0, float(base_sigma)
    for _ in range(octaves):
        field += weight * smooth_noise(rng, shape, max(sigma, 0.5))
        weight *= persistence
        sigma /= 2.0
    std = float(field.std())
    return (field - field.mean()) / std if std > 0 else field


def anisotropic_noise(rng: np.random.Generator, shape: tuple[int, int], sigma_along: float, sigma_across: float,
                      angle: float) -> np.ndarray:
    """Oriented (fibre-like) noise: Gaussian-filtered noise elongated along direction ``angle`` (radians,
    measured from the x axis). Zero mean, unit std. Built on a padded canvas and rotated, so the
    corners are filled."""
    pad = int(np.ceil(np.hypot(*shape)))
    canvas = rng.standard_normal((pad, pad)).astype(np.float32)
    canvas = ndi.gaussian_filter(canvas, (sigma_across, sigma_along), mode="wrap")
    rotated = ndi.rotate(canvas, np.degrees(angle), reshape=False, order=1, mode="wrap")
    y0, x0 = (pad - shape[0]) // 2, (pad - shape[1]) // 2
    field = rotated[y0:y0 + shape[0], x0:x0 + shape[1]]
    std = float(field.std())
    return (field - field.mean()) / std if std > 0 else np.zeros(shape, np.float32)


def warp_field(rng: np.random.Generator, field: np.ndarray, amplitude: float, sigma: float) -> np.ndarray:
    """Warp ``field`` by a smooth random displacement (``amplitude`` px, correlation ``sigma`` px):
    turns straight fibres wavy."""
    shape = field.shape
    dy = smooth_noise(rng, shape, sigma) * amplitude
    dx = smooth_noise(rng, shape, sigma) * amplitude
    yy, xx = np.meshgrid(np.arange(shape[0], dtype=np.float32), np.arange(shape[1], dtype=np.float32), indexing="ij")
    return ndi.map_coordinates(field, [yy + dy, xx + dx], order=1, mode="reflect").astype(np.float32)


def polar_grid(shape: tuple[int, int], centre: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Distance (px) and angle (radians) of every pixel from ``centre`` = ``(y, x)`` in px."""
    yy, xx = np.meshgrid(np.arange(shape[0], dtype=np.float32), np.arange(shape[1], dtype=np.float32), indexing="ij")
    dy, dx = yy - np.float32(centre[0]), xx - np.float32(centre[1])
    return np.hypot(dy, dx), np.arctan2(dy, dx)


def star_polygon_radius(theta: np.ndarray, semi_axes: tuple[float, float], orientation: float,
                        harmonics: np.ndarray, phases: np.ndarray) -> np.ndarray:
    """Boundary radius of a deformed ellipse at polar angles ``theta``.

    An ellipse with ``semi_axes = (a, b)`` px rotated by ``orientation`` rad, its radius multiplied by
    ``1 + sum_k harmonics[k] * cos((k + 2) * theta + phases[k])`` (low-order shape harmonics; keep
    ``sum(|harmonics|) < 1`` so the radius stays positive).
    """
    a, b = semi_axes
    t = theta - orientation
    r = a * b / np.sqrt((b * np.cos(t)) ** 2 + (a * np.sin(t)) ** 2)
    mod = np.ones_like(theta)
    for k, (h, ph) in enumerate(zip(harmonics, phases)):
        mod = mod + h * np.cos((k + 2) * theta + ph)
    return r * mod


def soft_mask(mask: np.ndarray, sigma: float) -> np.ndarray:
    """A binary mask blurred by ``sigma`` px into a [0, 1] float field (soft, partial-volume edges)."""
    m = mask.astype(np.float32)
    return ndi.gaussian_filter(m, sigma) if sigma > 0 else m
