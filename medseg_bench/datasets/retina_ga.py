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
from ._faf_cohort import drusen_field, peripapillary_atrophy, reticular_pseudodrusen, sample_profile
from ._texture2d import anisotropic_noise, fractal_noise, polar_grid, size_row, smooth_noise, soft_mask
from ._writing import SimulatedCase, write_simulated_cases

__all__ = ["FIELD_WIDTH_MM", "SIZES", "VERSION", "generate_retina_ga", "simulate_faf"]

VERSION = "2.0.0"
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

def _lobes(rng, shape, centre, area_px: float, spread: float) -> np.ndarray:
    """Envelope in (0, 1] of one lesion: a union of 1-5 Gaussian lobes around ``centre`` whose 0.5
    level set covers about ``area_px`` pixels (a lobe's 0.5 level has area 2.18 r^2)."""
    m = int(rng.integers(1, 6))
    r = np.sqrt(area_px / (2.18 * m ** 0.7))
    env = np.zeros(shape, np.float32)
    for _ in range(m):
        by, bx = centre[0] + rng.normal(0, spread * r), centre[1] + rng.normal(0, spread * r)
        d, _ = polar_grid(shape, (by, bx))
        env = np.maximum(env, np.exp(-((d / (r * rng.uniform(0.75, 1.15))) ** 2)))
    return env


def _ga_mask(rng, n: int, fovea, prof: dict, px_per_mm: float) -> np.ndarray:
    """Binary GA mask with the profile's total area, number of lesions and configuration (foveal,
    foveal-sparing horseshoe, extrafoveal), fractal borders and, for multifocal eyes, satellites."""
    shape = (n, n)
    fy, fx = fovea
    area = prof["ga_area_mm2"] * px_per_mm ** 2
    k = prof["n_lesions"]
    shares = rng.dirichlet(np.full(k, 1.0)) if k > 1 else np.ones(1)
    shares = np.sort(shares)[::-1]
    env = np.zeros(shape, np.float32)
    config = prof["configuration"]
    r_spare = rng.uniform(0.35, 0.8) * px_per_mm
    for i, share in enumerate(shares):
        a = area * share
        r_eq = np.sqrt(a / np.pi)
        if config == "foveal_sparing" and i == 0:  # horseshoe around the spared fovea
            r_mid = r_spare + 0.5 * max(a / (1.6 * np.pi * (r_spare + 1e-3) * 2), 1.0) + rng.uniform(0, 0.2) * px_per_mm
            width = max(a / (1.6 * np.pi * r_mid), 1.5)
            d, th = polar_grid(shape, fovea)
            gap_dir, gap = rng.uniform(0, 2 * np.pi), rng.uniform(0.2, 0.9)
            arc = np.clip(1.0 - np.abs(np.angle(np.exp(1j * (th - gap_dir)))) / (np.pi * (1 - gap / 2)), 0, 1)
            env = np.maximum(env, (arc > 0.02) * np.exp(-(((d - r_mid) / (0.72 * width)) ** 2)))
            continue
        if config == "foveal" and i == 0:
            rho = rng.uniform(0.0, 0.4) * r_eq
        elif config == "extrafoveal":
            rho = rng.uniform(0.8, 2.0) * px_per_mm + 0.6 * r_eq
        else:
            rho = rng.uniform(0.6, 2.4) * px_per_mm + 0.5 * r_eq
        ang = rng.uniform(0, 2 * np.pi)
        env = np.maximum(env, _lobes(rng, shape, (fy + rho * np.sin(ang), fx + rho * np.cos(ang)), a, 0.45))
    if k > 1:
        for _ in range(rng.integers(0, 7)):  # satellites of multifocal eyes
            rho, ang = rng.uniform(0.8, 2.8) * px_per_mm, rng.uniform(0, 2 * np.pi)
            d, _ = polar_grid(shape, (fy + rho * np.sin(ang), fx + rho * np.cos(ang)))
            env = np.maximum(env, np.exp(-((d / (rng.uniform(0.06, 0.16) * px_per_mm)) ** 2)))
    rough = fractal_noise(rng, shape, 0.05 * n, octaves=4)
    mask = env * (1.0 + rng.uniform(0.25, 0.45) * rough) > 0.5
    if config == "foveal_sparing":
        d, _ = polar_grid(shape, fovea)
        spared = mask & (d > r_spare)
        mask = spared if spared.any() else mask
    if not mask.any():  # a lesion can fall outside the frame with eccentric fixation: keep one at the fovea
        d, _ = polar_grid(shape, fovea)
        mask = d < max(np.sqrt(area / np.pi), 2.0)
    return mask


def _junctional(rng, label: np.ndarray, pattern: str, n: int, px_per_mm: float) -> np.ndarray:
    """Relative increase of autofluorescence (>= 0) around and outside the lesion for a FAM-study
    junctional-zone pattern (none, focal, banded, patchy, diffuse; Holz et al. 2007)."""
    shape = label.shape
    if pattern == "none":
        return np.zeros(shape, np.float32)
    scale = n / 256
    band = ndi.binary_dilation(label, iterations=max(1, round(rng.uniform(2, 5) * scale))) & ~label
    wide = ndi.binary_dilation(label, iterations=max(2, round(rng.uniform(8, 16) * scale))) & ~label
    if pattern == "banded":
        field = soft_mask(band, 0.8 * scale) * rng.uniform(0.2, 0.5)
    elif pattern == "focal":
        spots = (smooth_noise(rng, shape, 0.04 * px_per_mm + 0.5) > 1.6) & band
        field = soft_mask(ndi.binary_dilation(spots, iterations=max(1, round(scale))), 0.8 * scale) * rng.uniform(0.3, 0.6)
    elif pattern == "patchy":
        patches = (smooth_noise(rng, shape, 0.12 * px_per_mm) > 0.4) & wide
        field = soft_mask(patches, 1.2 * scale) * rng.uniform(0.2, 0.5)
    else:  # diffuse: increased FAF over much of the macula, granular, plus a weak band
        spread = np.clip(smooth_noise(rng, shape, 0.35 * px_per_mm) - 0.2, 0, None)
        grain = np.clip(smooth_noise(rng, shape, 0.03 * px_per_mm + 0.5), 0, None)
        field = rng.uniform(0.08, 0.25) * spread * (0.6 + 0.6 * grain) * ~label + 0.15 * soft_mask(band, 0.8 * scale)
    return np.asarray(field, np.float32)


# -- the image --------------------------------------------------------------------------------------

def simulate_faf(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Simulate one FAF image of one eye of the cohort (:func:`._faf_cohort.sample_profile`).

    Args:
        rng: the case's random generator (all randomness comes from it).
        n: image side in px (the field of view is always :data:`FIELD_WIDTH_MM` wide).

    Returns:
        ``(image uint8 (n, n), ga_label uint8 (n, n) in {0, 1}, parameters dict)``.
    """
    shape = (n, n)
    px_per_mm = n / FIELD_WIDTH_MM
    prof = sample_profile(rng)
    right_eye = bool(rng.random() < 0.5)
    off = (rng.normal(0, 0.03, 2) if not prof["eccentric_fixation"]
           else rng.uniform(0.06, 0.15) * np.array([np.sin(t := rng.uniform(0, 2 * np.pi)), np.cos(t)]))
    fovea = (n * (0.5 + off[0]), n * (0.5 + off[1]))
    side = 1.0 if right_eye else -1.0
    disc = (fovea[0] - n * rng.uniform(0.0, 0.05), fovea[1] + side * n * rng.uniform(0.38, 0.46))
    p = {"right_eye": right_eye, **prof, "disc_level": rng.uniform(0.1, 0.3), "vessel_contrast": rng.uniform(0.3, 0.55)}
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
    if p["peripapillary_atrophy"]:
        af *= 1.0 - (1.0 - rng.uniform(0.1, 0.4)) * peripapillary_atrophy(rng, shape, px_per_mm, disc, disc_r, fovea)

    label = _ga_mask(rng, n, fovea, p, px_per_mm)
    lesion_soft = soft_mask(label, p["edge_px"] * n / 256)
    lesion_tex = 1.0 + 0.3 * smooth_noise(rng, shape, 0.015 * n)
    if p["choroidal_vessels"]:  # large choroidal vessels showing through the atrophic RPE
        tubes = anisotropic_noise(rng, shape, 0.6 * px_per_mm, 0.08 * px_per_mm, rng.uniform(0, np.pi))
        lesion_tex = lesion_tex + rng.uniform(0.6, 1.4) * np.clip(tubes - 0.5, 0, None)
    af *= 1.0 - (1.0 - np.clip(p["lesion_level"] * lesion_tex, 0.03, 0.9)) * lesion_soft
    af *= 1.0 + _junctional(rng, label, p["junctional"], n, px_per_mm)
    if p["pseudodrusen"]:
        af *= 1.0 - reticular_pseudodrusen(rng, shape, px_per_mm, fovea) * (1.0 - lesion_soft)
    if p["drusen"]:
        af *= 1.0 + drusen_field(rng, shape, px_per_mm, fovea) * (1.0 - lesion_soft)

    vessels = _vessel_profile(shape, _vessel_polylines(rng, n, fovea, disc))
    af *= 1.0 - p["vessel_contrast"] * vessels
    if p["eyelash_shadow"]:
        edge = yy if rng.random() < 0.5 else 1.0 - yy
        af *= 1.0 - rng.uniform(0.4, 0.8) * np.exp(-((edge / rng.uniform(0.08, 0.2)) ** 2)) * (1 + 0.3 * smooth_noise(rng, shape, 0.05 * n))

    speckle = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 0.6)
    af *= 1.0 + p["noise"] * speckle / max(float(speckle.std()), 1e-6)
    if p.get("haze"):  # media opacity: straylight pulls every pixel towards the wide local mean
        af = (1.0 - p["haze"]) * af + p["haze"] * ndi.gaussian_filter(af, 0.15 * n)
    af = ndi.gaussian_filter(af, p["blur_px"] * n / 256) + rng.normal(0, 0.012, shape)
    image = np.clip(np.round(af * 255.0), 0, 255).astype(np.uint8)
    p.update(fovea_px=[float(v) for v in fovea], disc_px=[float(v) for v in disc], ga_fraction=float(label.mean()))
    p = {k: (float(v) if isinstance(v, (np.floating, float)) and not isinstance(v, bool) else v) for k, v in p.items()}
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
