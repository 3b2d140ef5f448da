"""``retina_ga``: simulated fundus autofluorescence (FAF) images with geographic atrophy (GA).

What it models (a 30-degree, fovea-centred, Spectralis-like blue-light FAF frame, about 8.8 mm wide):

* **background autofluorescence** of the RPE (lipofuscin), with a faint choroidal texture, an
  illumination gradient and vignetting (darker periphery);
* **macular pigment** absorbing the excitation light: a dark Gaussian dip centred on the fovea;
* the **optic disc** (no RPE, so no autofluorescence: very dark) near the nasal edge;
* the **retinal vessel tree** (blood absorbs the excitation light: dark): superior and inferior arcades
  leaving the disc and curving around the macula, with branches that stop at the foveal avascular zone;
* **GA lesions**: markedly hypo-autofluorescent, irregular (fractal-bordered) patches around the
  fovea, optionally sparing its centre, with satellite spots and a patchy hyper-autofluorescent
  junctional rim (Holz et al., Am J Ophthalmol 2007; Schmitz-Valckenberg et al., Surv Ophthalmol 2009);
* detector noise (multiplicative, frame-averaged) and optical blur; 8-bit output.

Because the disc, the vessels, the macular-pigment dip and the vignetted periphery are as dark as many
lesions (whose contrast varies from image to image), one global threshold cannot separate GA; the shape
and context cues a network can learn still can. The label is the GA area (satellites included).

The task follows the CUTS retina set (Liu et al., "CUTS: a deep learning and topological framework
for multigranular unsupervised medical image segmentation", MICCAI 2024), which has no public
download here; this simulator is the embedded stand-in. Card: ``datasets/retina_ga.md``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from ..io import Geometry, RawDatasetWriter
from . import register_generator
from ._texture2d import fractal_noise, polar_grid, size_row, smooth_noise, soft_mask
from ._writing import SimulatedCase, write_simulated_cases

__all__ = ["FIELD_WIDTH_MM", "SIZES", "VERSION", "generate_retina_ga", "simulate_faf"]

VERSION = "1.0.0"
#: width of the simulated field of view (30-degree FAF frame), mm
FIELD_WIDTH_MM = 8.8
#: size -> (image side px, n_train, n_test, n_unlabelled)
SIZES = {"tiny": (96, 4, 2, 2), "small": (256, 24, 12, 12), "full": (768, 120, 60, 120)}
_SUBSET_CODE = {"train": 0, "test": 1, "unlabelled": 2}


# -- vessels ----------------------------------------------------------------------------------------

def _walk(rng, start, heading, n_steps, step, turn_sd, steer=None):
    """A random-walk polyline (points in px, (y, x)); ``steer(p, h) -> dh`` nudges the heading."""
    pts = [np.asarray(start, np.float64)]
    h = heading
    for _ in range(n_steps):
        h += rng.normal(0, turn_sd) + (steer(pts[-1], h) if steer else 0.0)
        pts.append(pts[-1] + step * np.array([np.sin(h), np.cos(h)]))
    return np.array(pts)


def _vessel_polylines(rng, n, fovea, disc):
    """Polylines ``[(points (k, 2) px, half-widths (k,) px)]`` of a retinal vessel tree."""
    fy, fx = fovea
    dy, dx = disc
    phi_d = np.arctan2(dy - fy, dx - fx)
    r_d = np.hypot(dy - fy, dx - fx)
    lines = []
    for sign in (-1.0, 1.0):  # superior and inferior arcade
        r_arc = n * rng.uniform(0.27, 0.34)
        phis = phi_d + sign * np.linspace(0, rng.uniform(0.6, 0.8) * np.pi, 160)
        wobble = ndi.gaussian_filter1d(rng.standard_normal(phis.size), 8.0) * 0.04 * n
        span = np.abs(phis - phi_d)
        r = r_arc + (r_d - r_arc) * np.exp(-span / 0.35) + 0.08 * n * (span / np.pi) ** 2 + wobble
        pts = np.stack([fy + r * np.sin(phis), fx + r * np.cos(phis)], 1)
        width = n * rng.uniform(0.006, 0.008) * np.linspace(1.0, 0.6, phis.size)
        lines.append((pts, width))
        # branches: towards the macula (stop at the foveal avascular zone) and towards the periphery
        for _ in range(rng.integers(3, 6)):
            i = rng.integers(15, phis.size - 20)
            inward = rng.random() < 0.55
            base = np.arctan2(fy - pts[i, 0], fx - pts[i, 1]) if inward else np.arctan2(pts[i, 0] - fy, pts[i, 1] - fx)
            heading = base + rng.normal(0, 0.5)
            fav = n * 0.07

            def steer(p, h, inward=inward, fav=fav):
                if inward and np.hypot(p[0] - fy, p[1] - fx) < fav * 1.8:
                    away = np.arctan2(p[0] - fy, p[1] - fx)
                    return 0.5 * np.sin(away - h)
                return 0.0

            # 256 steps span the image at any resolution, so the tortuosity does not depend on n
            steps = int(256 * rng.uniform(0.12, 0.3))
            bpts = _walk(rng, pts[i], heading, steps, n / 256, 0.06, steer)
            if inward:
                keep = np.hypot(bpts[:, 0] - fy, bpts[:, 1] - fx) > fav
                stop = int(np.argmin(keep)) if not keep.all() else keep.size
                bpts = bpts[:max(stop, 2)]
            bw = width[i] * rng.uniform(0.5, 0.75) * np.linspace(1.0, 0.6, len(bpts))
            lines.append((bpts, bw))
    for _ in range(rng.integers(2, 4)):  # nasal vessels leaving the disc away from the macula
        heading = phi_d + rng.normal(0, 0.9)
        bpts = _walk(rng, disc, heading, int(256 * 0.3), n / 256, 0.05)
        lines.append((bpts, n * rng.uniform(0.004, 0.007) * np.linspace(1.0, 0.6, len(bpts))))
    return lines


def _vessel_profile(shape, lines):
    """Vessel occupancy in [0, 1]: a soft tube around each polyline (nearest-centreline half-width)."""
    width = np.zeros(shape, np.float32)
    for pts, w in lines:
        # densify to <= 0.5 px steps so the centreline is connected
        seg = np.hypot(*np.diff(pts, axis=0).T)
        t = np.concatenate([[0], np.cumsum(seg)])
        ts = np.arange(0, t[-1] + 1e-9, 0.5)
        ys, xs, ws = np.interp(ts, t, pts[:, 0]), np.interp(ts, t, pts[:, 1]), np.interp(ts, t, w)
        iy, ix = np.round(ys).astype(int), np.round(xs).astype(int)
        ok = (iy >= 0) & (iy < shape[0]) & (ix >= 0) & (ix < shape[1])
        np.maximum.at(width, (iy[ok], ix[ok]), ws[ok].astype(np.float32))
    if not width.any():
        return np.zeros(shape, np.float32)
    dist, (iy, ix) = ndi.distance_transform_edt(width == 0, return_indices=True)
    half = width[iy, ix]
    return (1.0 / (1.0 + np.exp((dist - half) / 0.45))).astype(np.float32)


# -- lesions ----------------------------------------------------------------------------------------

def _ga_mask(rng, n, fovea):
    """Binary GA mask: 1-3 multi-lobed fractal-bordered lesions near the fovea plus satellites."""
    shape = (n, n)
    fy, fx = fovea
    env = np.zeros(shape, np.float32)
    for _ in range(rng.choice([1, 1, 2, 3])):
        rho, ang = n * rng.uniform(0.0, 0.12), rng.uniform(0, 2 * np.pi)
        cy, cx = fy + rho * np.sin(ang), fx + rho * np.cos(ang)
        for _ in range(rng.integers(2, 6)):
            by, bx = cy + rng.normal(0, 0.06 * n), cx + rng.normal(0, 0.06 * n)
            r = n * rng.uniform(0.045, 0.12)
            d, _ = polar_grid(shape, (by, bx))
            env = np.maximum(env, np.exp(-((d / r) ** 2)))
    for _ in range(rng.integers(0, 7)):  # satellites
        rho, ang = n * rng.uniform(0.1, 0.3), rng.uniform(0, 2 * np.pi)
        d, _ = polar_grid(shape, (fy + rho * np.sin(ang), fx + rho * np.cos(ang)))
        env = np.maximum(env, np.exp(-((d / (n * rng.uniform(0.01, 0.028))) ** 2)))
    rough = fractal_noise(rng, shape, 0.05 * n, octaves=4)
    mask = env * (1.0 + rng.uniform(0.25, 0.45) * rough) > 0.5
    if rng.random() < 0.35:  # foveal sparing (never so much that no lesion is left)
        d, _ = polar_grid(shape, fovea)
        spared = mask & (d > n * rng.uniform(0.025, 0.05))
        mask = spared if spared.any() else mask
    return mask


# -- the image --------------------------------------------------------------------------------------

def simulate_faf(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Simulate one FAF image.

    Args:
        rng: the case's random generator (all randomness comes from it).
        n: image side in px (the field of view is always :data:`FIELD_WIDTH_MM` wide).

    Returns:
        ``(image uint8 (n, n), ga_label uint8 (n, n) in {0, 1}, parameters dict)``.
    """
    shape = (n, n)
    right_eye = bool(rng.random() < 0.5)
    fovea = (n * (0.5 + rng.normal(0, 0.03)), n * (0.5 + rng.normal(0, 0.03)))
    side = 1.0 if right_eye else -1.0
    disc = (fovea[0] - n * rng.uniform(0.0, 0.05), fovea[1] + side * n * rng.uniform(0.38, 0.46))
    p = {
        "right_eye": right_eye,
        "background": rng.uniform(0.5, 0.72),
        "gradient": rng.uniform(0.0, 0.35),
        "vignetting": rng.uniform(0.15, 0.5),
        "macular_pigment": rng.uniform(0.2, 0.45),
        "disc_level": rng.uniform(0.1, 0.3),
        "vessel_contrast": rng.uniform(0.3, 0.55),
        "lesion_level": rng.uniform(0.18, 0.55),
        "rim": rng.uniform(0.05, 0.35),
        "noise": rng.uniform(0.04, 0.1),
        "blur_px": rng.uniform(0.4, 1.0) * n / 256,
    }
    yy, xx = np.meshgrid(np.arange(n, dtype=np.float32) / n, np.arange(n, dtype=np.float32) / n, indexing="ij")
    ang = rng.uniform(0, 2 * np.pi)
    illum = 1.0 + p["gradient"] * ((yy - 0.5) * np.sin(ang) + (xx - 0.5) * np.cos(ang))
    r_c = np.hypot(yy - 0.5 - rng.normal(0, 0.05), xx - 0.5 - rng.normal(0, 0.05)) / 0.72
    vignette = 1.0 - p["vignetting"] * r_c ** rng.uniform(2.0, 3.0)
    af = p["background"] * illum * vignette * (1.0 + 0.06 * fractal_noise(rng, shape, 0.04 * n, octaves=3))
    r_f, _ = polar_grid(shape, fovea)
    af *= 1.0 - p["macular_pigment"] * np.exp(-((r_f / (n * rng.uniform(0.05, 0.08))) ** 2))

    disc_r = n * rng.uniform(0.055, 0.07)
    r_d, th_d = polar_grid(shape, disc)
    disc_edge = disc_r * (1.0 + 0.08 * np.cos(2 * th_d + rng.uniform(0, np.pi)))
    disc_soft = soft_mask(r_d < disc_edge, 1.2 * n / 256)
    af *= 1.0 - (1.0 - p["disc_level"]) * disc_soft

    label = _ga_mask(rng, n, fovea)
    lesion_soft = soft_mask(label, 0.7 * n / 256)
    lesion_tex = 1.0 + 0.3 * smooth_noise(rng, shape, 0.015 * n)
    af *= 1.0 - (1.0 - np.clip(p["lesion_level"] * lesion_tex, 0.05, 0.9)) * lesion_soft
    ring = ndi.binary_dilation(label, iterations=max(1, round(3 * n / 256))) & ~label
    patchy = np.clip(0.6 + 0.6 * smooth_noise(rng, shape, 0.02 * n), 0, 1.5)
    af *= 1.0 + p["rim"] * soft_mask(ring, 0.8 * n / 256) * patchy

    vessels = _vessel_profile(shape, _vessel_polylines(rng, n, fovea, disc))
    af *= 1.0 - p["vessel_contrast"] * vessels

    speckle = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 0.6)
    af *= 1.0 + p["noise"] * speckle / max(float(speckle.std()), 1e-6)
    af = ndi.gaussian_filter(af, p["blur_px"]) + rng.normal(0, 0.012, shape)
    image = np.clip(np.round(af * 255.0), 0, 255).astype(np.uint8)
    p.update(fovea_px=[float(v) for v in fovea], disc_px=[float(v) for v in disc], ga_fraction=float(label.mean()))
    return image, label.astype(np.uint8), p


@register_generator("retina_ga", description="2D fundus autofluorescence with geographic atrophy (binary GA label)",
                    version=VERSION, dims=2, modality="FAF")
def generate_retina_ga(out_dir: Path, size: str, seed: int) -> None:
    """Write a raw ``retina_ga`` dataset of ``size`` to ``out_dir`` (deterministic from ``seed``).

    Case ``i`` of subset ``s`` uses ``numpy.random.default_rng([seed, code(s), i])``, so a case does not
    change when the number of cases does.
    """
    n, n_train, n_test, n_unl = size_row(size, SIZES)
    spacing_mm = FIELD_WIDTH_MM / n
    writer = RawDatasetWriter(out_dir, {"0": "FAF"}, {"background": 0, "GA": 1}, ".png",
                              spacing=(spacing_mm, spacing_mm), overwrite=True)
    geometry = Geometry.identity(2)  # spacing comes from dataset.json (no per-image sidecars)
    prefixes = {"train": "ga", "test": "gats", "unlabelled": "gaun"}

    def simulate(subset, i):
        image, label, p = simulate_faf(np.random.default_rng([seed, _SUBSET_CODE[subset], i]), n)
        return SimulatedCase(image[None], geometry, label, p)

    write_simulated_cases(
        writer, {"train": n_train, "test": n_test, "unlabelled": n_unl},
        lambda subset, i: f"{prefixes[subset]}_{i:03d}", simulate,
        lambda params: {
            "name": Path(out_dir).name,
            "description": "Simulated fundus autofluorescence with geographic atrophy (medseg_bench retina_ga)",
            "reference": "Liu et al., CUTS, MICCAI 2024 (task); Holz et al., Am J Ophthalmol 2007 (FAF in GA)",
            "licence": "CC0 (generated data)",
            "spacing_unit": "mm",
            "generator": {"name": "retina_ga", "version": VERSION, "size": size, "seed": seed,
                          "image_size_px": n, "field_width_mm": FIELD_WIDTH_MM},
            "case_parameters": params,
        })
