"""Case-to-case variability of a geographic-atrophy (GA) cohort imaged with fundus autofluorescence
(FAF), for the ``retina_ga`` simulator: who the patient is (lesion phenotype, confounding findings)
and how the eye was imaged (device, image quality). Everything is drawn per case from the case's
generator, so the simulator stays deterministic from its seed.

Sources for the ranges (each a documented choice, not a fit to one data set):

* **Lesion area, focality, configuration.** At baseline GA spans from well under 1 mm^2 to more than
  20 mm^2; about half the eyes are multifocal; the fovea is spared in a sizeable minority, often with a
  horseshoe-shaped lesion around it (Holz et al., "Progression of geographic atrophy and impact of
  fundus autofluorescence patterns in age-related macular degeneration", Am J Ophthalmol 143:463, 2007
  [FAM study]; Fleckenstein et al., "The progression of geographic atrophy secondary to age-related
  macular degeneration", Ophthalmology 125:369, 2018; Sunness et al., Ophthalmology 106:1768, 1999 on
  foveal sparing). Total area is drawn log-uniformly, 0.4-22 mm^2 (the field is 8.8 x 8.8 mm).
* **Junctional-zone patterns** of increased FAF around the lesion: none, focal, banded, patchy and
  diffuse (the FAM classification, Holz et al. 2007; diffuse the most frequent). Each changes the
  bright structure next to the lesion border and, for "diffuse", across the macula.
* **Confounders that are not GA** (background in the label): reticular pseudodrusen, seen in FAF as a
  reticular pattern of small hypo-autofluorescent dots, frequent in GA eyes (Schmitz-Valckenberg et
  al., "Reticular drusen associated with geographic atrophy in age-related macular degeneration", IOVS
  52:5009, 2011); soft drusen and pigment as small hyper/hypo-autofluorescent spots; peripapillary
  atrophy, a hypo-autofluorescent crescent at the disc (macular GA gradings leave it out).
* **Devices.** Blue-light (488 nm) confocal SLO: strong macular-pigment absorption, dark lesions,
  frame-averaged low noise; flash fundus cameras with longer excitation (~535-580 nm): little
  macular-pigment absorption, lower lesion contrast, more vignetting and noise (Spaide,
  Ophthalmology 110:392, 2003); ultra-widefield (532 nm) images cropped to the posterior pole: lower
  resolution, uneven illumination, eyelash shadows (Schmitz-Valckenberg et al., "Fundus
  autofluorescence imaging", Prog Retin Eye Res 81:100893, 2021, for all three).
* **Image quality**: media opacity (cataract) hazes and blurs a minority of images; eccentric
  fixation moves the fovea off centre.

About 36 % of the cases are hard by construction (low lesion contrast through the device and
media opacity, or very small lesions, or heavy confounders); :func:`sample_profile` flags it.
Lengths here are in mm on the retina; the simulator converts them with its pixel size.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ._texture2d import polar_grid, smooth_noise

__all__ = ["DEVICES", "JUNCTIONAL_PATTERNS", "drusen_field", "peripapillary_atrophy", "reticular_pseudodrusen",
           "sample_profile"]

#: device -> (probability, per-device ranges drawn uniformly per image)
DEVICES = {
    "cslo_488": (0.6, {"macular_pigment": (0.25, 0.5), "lesion_level": (0.05, 0.3), "noise": (0.03, 0.08),
                       "blur_px": (0.4, 0.9), "vignetting": (0.15, 0.45), "gradient": (0.0, 0.3),
                       "background": (0.5, 0.72), "edge_px": (0.6, 0.9)}),
    "fundus_camera": (0.25, {"macular_pigment": (0.0, 0.12), "lesion_level": (0.3, 0.6), "noise": (0.07, 0.14),
                             "blur_px": (0.8, 1.5), "vignetting": (0.3, 0.6), "gradient": (0.1, 0.45),
                             "background": (0.45, 0.7), "edge_px": (1.0, 1.8)}),
    "widefield_crop": (0.15, {"macular_pigment": (0.05, 0.2), "lesion_level": (0.15, 0.45), "noise": (0.05, 0.1),
                              "blur_px": (1.0, 1.8), "vignetting": (0.1, 0.3), "gradient": (0.2, 0.5),
                              "background": (0.45, 0.7), "edge_px": (1.0, 1.6)}),
}
#: FAM-study junctional-zone patterns and their probabilities
JUNCTIONAL_PATTERNS = {"none": 0.1, "focal": 0.15, "banded": 0.2, "patchy": 0.15, "diffuse": 0.4}


def _pick(rng, table: dict) -> str:
    names = list(table)
    probs = np.array([table[k][0] if isinstance(table[k], tuple) else table[k] for k in names], float)
    return str(names[int(rng.choice(len(names), p=probs / probs.sum()))])


def sample_profile(rng: np.random.Generator) -> dict:
    """One eye's cohort draws: device and its acquisition ranges, image quality, lesion phenotype and
    confounders (see the module docstring). Returns plain numbers and strings (JSON-ready)."""
    device = _pick(rng, DEVICES)
    acq = {k: float(rng.uniform(*r)) for k, r in DEVICES[device][1].items()}
    opacity = bool(rng.random() < 0.15)
    if opacity:  # cataract: haze (contrast loss towards the local mean), extra blur and noise
        acq.update(haze=float(rng.uniform(0.25, 0.55)), blur_px=acq["blur_px"] + float(rng.uniform(0.5, 1.2)),
                   noise=acq["noise"] * 1.5)
    focality = "multifocal" if rng.random() < 0.5 else "unifocal"
    configuration = str(rng.choice(["foveal", "foveal_sparing", "extrafoveal"], p=[0.5, 0.3, 0.2]))
    area = float(np.exp(rng.uniform(np.log(0.4), np.log(22.0))))
    prof = {
        "device": device, **acq, "media_opacity": opacity,
        "eccentric_fixation": bool(rng.random() < 0.2),
        "focality": focality, "n_lesions": 1 if focality == "unifocal" else int(rng.integers(2, 9)),
        "configuration": configuration, "ga_area_mm2": area,
        "junctional": str(rng.choice(list(JUNCTIONAL_PATTERNS), p=list(JUNCTIONAL_PATTERNS.values()))),
        "choroidal_vessels": bool(rng.random() < 0.4),
        "pseudodrusen": bool(rng.random() < 0.3),
        "drusen": bool(rng.random() < 0.4),
        "peripapillary_atrophy": bool(rng.random() < 0.35),
        "eyelash_shadow": bool(device == "widefield_crop" and rng.random() < 0.5),
    }
    prof["hard"] = bool((device != "cslo_488" and opacity) or area < 0.8 or prof["lesion_level"] > 0.5
                        or (prof["pseudodrusen"] and prof["peripapillary_atrophy"]))
    return prof


def reticular_pseudodrusen(rng: np.random.Generator, shape, px_per_mm: float, fovea) -> np.ndarray:
    """Darkening field in [0, 1) of reticular pseudodrusen: dots of 50-90 um radius on a jittered lattice
    of 150-250 um pitch, in a band over the superior macula sparing the foveal centre."""
    n = shape[0]
    pitch = rng.uniform(0.15, 0.25) * px_per_mm
    r_dot = rng.uniform(0.05, 0.09) * px_per_mm
    ys = np.arange(-pitch, n + pitch, pitch * 0.87)
    pts = [(y, x + (pitch / 2 if k % 2 else 0.0)) for k, y in enumerate(ys) for x in np.arange(-pitch, n + pitch, pitch)]
    pts = np.array(pts) + rng.normal(0, 0.18 * pitch, (len(pts), 2))
    dots = np.zeros(shape, np.float32)
    iy, ix = np.round(pts[:, 0]).astype(int), np.round(pts[:, 1]).astype(int)
    ok = (iy >= 0) & (iy < n) & (ix >= 0) & (ix < shape[1])
    dots[iy[ok], ix[ok]] = 1.0
    dots = ndi.gaussian_filter(dots, max(r_dot / 1.5, 0.5))
    dots /= max(float(dots.max()), 1e-6)
    # where: an elliptic band centred above the fovea, fading out, foveal centre spared
    d, th = polar_grid(shape, (fovea[0] - rng.uniform(0.8, 1.6) * px_per_mm, fovea[1]))
    band = np.exp(-((d / (rng.uniform(1.8, 3.2) * px_per_mm)) ** 2)) * np.clip(1 + 0.5 * smooth_noise(rng, shape, 0.6 * px_per_mm), 0, 1.5)
    r_f, _ = polar_grid(shape, fovea)
    band *= 1.0 - np.exp(-((r_f / (0.5 * px_per_mm)) ** 2))
    return np.clip(rng.uniform(0.15, 0.35) * dots * band, 0, 0.8).astype(np.float32)


def drusen_field(rng: np.random.Generator, shape, px_per_mm: float, fovea) -> np.ndarray:
    """Signed relative change (about -0.35..+0.35) from 10-60 drusen / pigment spots of 30-120 um
    radius scattered over the macula: hyper-autofluorescent (pigment, drusen with lipofuscin) or
    hypo-autofluorescent (drusen without)."""
    out = np.zeros(shape, np.float32)
    for _ in range(int(rng.integers(10, 61))):
        rho, ang = abs(rng.normal(0, 1.3)) * px_per_mm, rng.uniform(0, 2 * np.pi)
        cy, cx = fovea[0] + rho * np.sin(ang), fovea[1] + rho * np.cos(ang)
        r = rng.uniform(0.03, 0.12) * px_per_mm
        y0, y1 = max(int(cy - 3 * r) - 1, 0), min(int(cy + 3 * r) + 2, shape[0])
        x0, x1 = max(int(cx - 3 * r) - 1, 0), min(int(cx + 3 * r) + 2, shape[1])
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.meshgrid(np.arange(y0, y1) - cy, np.arange(x0, x1) - cx, indexing="ij")
        sign = 1.0 if rng.random() < 0.55 else -1.0
        out[y0:y1, x0:x1] += sign * rng.uniform(0.12, 0.35) * np.exp(-(yy ** 2 + xx ** 2) / (2 * r * r))
    return np.clip(out, -0.5, 0.5)


def peripapillary_atrophy(rng: np.random.Generator, shape, px_per_mm: float, disc, disc_r: float, fovea) -> np.ndarray:
    """Occupancy in [0, 1] of a peripapillary-atrophy crescent: a band 0.15-0.6 mm wide around the
    disc, widest on the temporal side (towards the fovea), covering 120-360 degrees."""
    d, th = polar_grid(shape, disc)
    toward = np.arctan2(fovea[0] - disc[0], fovea[1] - disc[1])
    half = np.deg2rad(rng.uniform(60, 180))
    off = np.angle(np.exp(1j * (th - toward)))
    width = rng.uniform(0.15, 0.6) * px_per_mm * np.clip(1.0 - np.abs(off) / half, 0, 1) ** 0.7
    ring = (d > disc_r) & (d < disc_r + width)
    return ndi.gaussian_filter(ring.astype(np.float32), 0.8)
