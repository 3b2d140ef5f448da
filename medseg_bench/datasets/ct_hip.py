"""``ct_hip``: simulated pelvic CT (HU) with the hip bone (left ∪ right os coxae) as the label.

What it models (per case, from a seeded RNG):

* anatomy (see :mod:`._skeleton3d`): both hip bones (acetabulum, thin iliac wing, pubis, ischium),
  sacrum, lumbar spine and proximal femurs as cortical shells around trabecular bone, the femoral
  canal with marrow, hip- and sacro-iliac joint spaces; body outline with subcutaneous fat, muscle with
  fat streaks, psoas, bowel (soft tissue, mesenteric fat, gas, optional oral contrast), bladder, rectum,
  iliac arteries and veins (optional IV contrast phase, calcified plaques);
* tissue HU: air -1000, fat ~-100, muscle ~45, cortical bone 900–1500, trabecular bone 120–300 (per
  case: age/density), marrow ~0 (references: Hounsfield-unit tables in Bushberg et al., *The Essential
  Physics of Medical Imaging*, 3rd ed., 2012; trabecular densities cf. Schreiber et al., J Bone Joint
  Surg Am 93 (2011) 1057–1063);
* acquisition: in-plane pixel size and slice thickness vary per case, with thick slices (> 3x the
  pixel size) in about 60 % of cases; partial volume in-plane (SDF ramp) and through the slice (box
  slice profile: each slice averages thin working slices); in-plane PSF; spatially correlated Gaussian
  noise whose level scales with voxel volume; int16 HU clipped to [-1024, 3071].

The label is the hip bone only — femurs, sacrum and spine have the same HU and are background (the
scheme of the TotalSegmentator converter: ``hip_left`` ∪ ``hip_right``), so no global threshold solves
it (see :mod:`._oracle`). A voxel is labelled when at least half of it lies inside the hip bone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from ..io import Geometry, RawDatasetWriter
from . import register_generator
from ._anatomy3d import Grid, SdfCanvas, ellipsoid, occupancy, paint, value_noise
from ._skeleton3d import body_sdf, render_skeleton, sample_body, sample_skeleton
from ._writing import write_simulated_volumes

__all__ = ["SIZE_SPECS", "VERSION", "generate_ct_hip", "simulate_case"]

VERSION = "1.0.0"
CHANNELS = {"0": "CT"}
LABELS = {"background": 0, "hip_bone": 1}

#: per size: case counts, in-plane pixel size range (mm), slice thickness / pixel ratio ranges for thin
#: and thick reconstructions, probability of thick slices, in-plane matrix cap.
SIZE_SPECS = {
    "tiny": {"n_train": 4, "n_test": 2, "n_unlabelled": 2, "pixel": (9.0, 10.5), "thin": (1.0, 1.3),
             "thick": (3.1, 3.5), "p_thick": 0.6, "max_matrix": 48},
    "small": {"n_train": 20, "n_test": 10, "n_unlabelled": 8, "pixel": (3.2, 3.7), "thin": (0.9, 1.5),
              "thick": (3.2, 4.0), "p_thick": 0.6, "max_matrix": 144},
    "full": {"n_train": 100, "n_test": 40, "n_unlabelled": 60, "pixel": (0.7, 0.9), "thin": (1.4, 2.2),
             "thick": (3.5, 7.0), "p_thick": 0.6, "max_matrix": 512},
}

#: tissue HU ranges (uniform per case) and other acquisition ranges, recorded in dataset.json
TISSUE = {
    "air": -1000.0, "fat": (-115.0, -80.0), "muscle": (35.0, 55.0), "bowel": (20.0, 45.0),
    "gas": (-990.0, -900.0), "urine": (0.0, 15.0), "oral_contrast": (150.0, 300.0),
    "blood": (35.0, 50.0), "venous_phase": (130.0, 200.0), "arterial_phase": (220.0, 350.0),
    "calcification": (400.0, 900.0), "cortical": (900.0, 1500.0), "trabecular": (120.0, 300.0),
    "marrow": (-40.0, 60.0),
}
ACQUISITION = {
    "noise_sd_at_0.7x0.7x3mm": (25.0, 50.0), "psf_fwhm_mm": (0.6, 1.1), "noise_corr_mm": 0.6,
    "trabecular_texture_sd": (25.0, 50.0), "p_oral_contrast": 0.3, "p_venous": 0.35, "p_arterial": 0.25,
    "p_calcified": 0.4,
}
_SUBSETS = {"train": 0, "test": 1, "unlabelled": 2}
_WORK_VOXELS = 3_000_000  # working-grid voxels per chunk


def _u(rng, r):
    return float(rng.uniform(*r)) if isinstance(r, tuple) else float(r)


def _sample_case(size: str, seed: int, subset: str, index: int) -> dict:
    """All random choices of one case. Anatomy comes from its own stream (same patient at every size)."""
    spec = SIZE_SPECS[size]
    ra = np.random.default_rng([seed, _SUBSETS[subset], index, 0])
    ri = np.random.default_rng([seed, _SUBSETS[subset], index, 1])
    skel = sample_skeleton(ra)
    body = sample_body(ra, skel)
    S = skel["scale"]
    hu = {k: _u(ra, v) for k, v in TISSUE.items()}
    phase = ra.choice(["none", "venous", "arterial"], p=[1 - ACQUISITION["p_venous"] - ACQUISITION["p_arterial"],
                                                          ACQUISITION["p_venous"], ACQUISITION["p_arterial"]])
    artery = {"none": hu["blood"], "venous": hu["venous_phase"], "arterial": hu["arterial_phase"]}[phase]
    vein = {"none": hu["blood"], "venous": hu["venous_phase"], "arterial": 0.5 * (hu["blood"] + hu["venous_phase"])}[phase]
    soft = {
        "phase": str(phase), "artery": artery, "vein": vein,
        "oral_contrast": bool(ra.random() < ACQUISITION["p_oral_contrast"]),
        "calcifications": int(ra.integers(1, 9)) if ra.random() < ACQUISITION["p_calcified"] else 0,
        "bladder": ((ra.uniform(25, 45) * S), ra.uniform(25, 42) * S, ra.uniform(35, 55) * S),
        "trab_bone": hu["trabecular"],
        "fov_z": (float(ra.uniform(-110, -85) * S), float(ra.uniform(140, 170) * S)),
    }
    pixel = _u(ri, spec["pixel"])
    thick = bool(ri.random() < spec["p_thick"])
    slice_mm = pixel * _u(ri, spec["thick" if thick else "thin"])
    acq = {"pixel": pixel, "slice": slice_mm, "thick": thick,
           "noise_ref": _u(ri, ACQUISITION["noise_sd_at_0.7x0.7x3mm"]), "psf": _u(ri, ACQUISITION["psf_fwhm_mm"]),
           "texture": _u(ri, ACQUISITION["trabecular_texture_sd"])}
    return {"skeleton": skel, "body": body, "hu": hu, "soft": soft, "acq": acq, "noise_seed": [seed, _SUBSETS[subset], index, 2]}


def _output_grid(c: dict, max_matrix: int) -> Grid:
    b, acq = c["body"], c["acq"]
    s, dz = acq["pixel"], acq["slice"]
    ry, rx = b["trunk"]
    nx = min(max_matrix, int(np.ceil((2 * rx + 24) / s)))
    ny = min(max_matrix, int(np.ceil((2 * ry + 24) / s)))
    z0, z1 = c["soft"]["fov_z"]
    nz = max(4, int(round((z1 - z0) / dz)))
    return Grid((nz, ny, nx), (dz, s, s), (z0, b["trunk_y"] - s * (ny - 1) / 2, -s * (nx - 1) / 2))


def _vessels(grid: Grid, c: dict, rng: np.random.Generator):
    """Artery and vein SDF canvases (aorto-iliac tree) and calcified plaque spheres."""
    p = c["skeleton"]
    S, hw = p["scale"], p["head_offset"]
    art, ven, calc = SdfCanvas(grid), SdfCanvas(grid), SdfCanvas(grid)
    zb = p["sacrum_top"] + 60 * S  # aortic bifurcation ~ L4
    z_lo = c["soft"]["fov_z"][0] - 20
    art.add_tube([(zb + 80, -8 * S, 8 * S), (zb, -8 * S, 8 * S)], 9 * S)
    ven.add_tube([(zb + 80, 0.0, -22 * S), (zb - 10, 5 * S, -20 * S)], 10 * S)
    plaques = []
    for s in (1, -1):
        a_pts = [(zb, -8 * S, 4 * S), (100 * S, 0, s * 42 * S), (20 * S, -40 * S, s * (hw - 14 * S)),
                 (-40 * S, -55 * S, s * (hw - 8 * S)), (z_lo, -45 * S, s * (hw + 4 * S))]
        art.add_tube(a_pts, [6 * S, 5 * S, 4.5 * S, 4 * S, 4 * S], blend=2.0)
        art.add_tube([a_pts[1], (50 * S, 40 * S, s * 55 * S)], 3.5 * S)
        v_pts = [(zb - 10, 5 * S, s * 12 * S), (100 * S, 10 * S, s * 46 * S), (20 * S, -30 * S, s * (hw - 26 * S)),
                 (-40 * S, -45 * S, s * (hw - 22 * S)), (z_lo, -38 * S, s * (hw - 8 * S))]
        ven.add_tube(v_pts, [8 * S, 7 * S, 6 * S, 5.5 * S, 5.5 * S], blend=2.0)
        plaques += a_pts[:3]
    for _ in range(c["soft"]["calcifications"]):
        i = rng.integers(0, len(plaques) - 1)
        t = rng.uniform()
        ctr = (1 - t) * np.asarray(plaques[i]) + t * np.asarray(plaques[i + 1]) + rng.normal(0, 3, 3)
        r = rng.uniform(1.2, 2.5)
        calc.add(lambda z, y, x, ctr=ctr, r=r: ellipsoid(z, y, x, ctr, (r * 1.5, r, r)), ctr - 2 * r, ctr + 2 * r)
    return art.sdf, ven.sdf, calc.sdf


def _render_chunk(grid: Grid, c: dict, fields: dict, width: float):
    """Paint one chunk of the working grid; returns (HU image, hip occupancy, trabecular fraction)."""
    p, b, hu, soft = c["skeleton"], c["body"], c["hu"], c["soft"]
    S = p["scale"]
    z, y, x = grid.coords()
    img = np.full(grid.shape, hu["air"], np.float32)
    body = body_sdf(z, y, x, p, b)
    paint(img, occupancy(body, width), hu["fat"])
    fat_mod = b["fat"] * (1 + 0.35 * fields["fat"](z, y, x))
    muscle = body + fat_mod
    occ_m = occupancy(muscle, width)
    streak = np.clip((fields["streak"](z, y, x) - 1.4) / 0.3, 0, 1)
    paint(img, occ_m, hu["muscle"])
    paint(img, occ_m * streak, hu["fat"])
    # abdomino-pelvic cavity: bounded by the pelvic floor, the iliac wings and the abdominal wall
    half_x = 55 * S + 55 * S * np.clip((z - 20 * S) / (80 * S), 0, 1)
    u, v = x / half_x, (y + 25 * S) / (75 * S)
    cav = (np.sqrt(u * u + v * v) - 1) * np.minimum(half_x, 75 * S)
    cav = np.maximum(np.maximum(cav, -35 * S - z), muscle + 12)
    n1, n2 = fields["bowel"](z, y, x), fields["bowel_fine"](z, y, x)
    bowel = np.full(np.broadcast_shapes(n1.shape, grid.shape), hu["bowel"], np.float32)
    paint(bowel, np.clip((-0.3 - n1) / 0.25, 0, 1), hu["fat"])
    if soft["oral_contrast"]:
        paint(bowel, np.clip((n1 - 0.5) / 0.2, 0, 1), hu["oral_contrast"])
    paint(bowel, np.clip((n1 + 0.6 * n2 - 1.5) / 0.2, 0, 1), hu["gas"])
    paint(img, occupancy(cav, width), bowel)
    organs = {k: SdfCanvas(grid) for k in ("psoas", "bladder", "rectum")}
    for s in (1, -1):  # psoas muscles along the spine to the lesser trochanters
        a, e = (p["sacrum_top"] + 120 * S, 30 * S, s * 38 * S), (-10 * S, -35 * S, s * (p["head_offset"] - 8 * S))
        organs["psoas"].add_tube([a, e], [18 * S, 14 * S])
    bl = soft["bladder"]
    cb = (-10 * S + 0.5 * bl[0], -32 * S, 0.0)
    organs["bladder"].add(lambda z, y, x: ellipsoid(z, y, x, cb, bl), np.subtract(cb, bl), np.add(cb, bl))
    organs["rectum"].add_tube([(40 * S, 62 * S, 0.0), (-50 * S, 45 * S, 0.0)], [16 * S, 13 * S])
    paint(img, occupancy(organs["psoas"].sdf, width), hu["muscle"])
    paint(img, occupancy(organs["bladder"].sdf, width), hu["urine"])
    rect_val = np.where(n2 > 1.0, hu["gas"], hu["bowel"]).astype(np.float32)
    paint(img, occupancy(organs["rectum"].sdf, width), rect_val)
    art, ven, calc = _vessels(grid, c, np.random.default_rng(c["noise_seed"] + [7]))
    paint(img, occupancy(ven, width), soft["vein"])
    paint(img, occupancy(art, width), soft["artery"])
    paint(img, occupancy(calc, width), hu["calcification"])
    bones = render_skeleton(grid, p)
    hip = occupancy(bones["hip"].outer, width)
    outer = np.minimum.reduce([b.outer for b in bones.values()])
    inner = np.minimum.reduce([b.inner for b in bones.values()])
    o_out, o_in, o_mar = occupancy(outer, width), occupancy(inner, width), occupancy(bones["femur"].marrow, width)
    np.maximum(o_in, o_mar, out=o_in)
    trab = o_in - o_mar
    img *= 1 - o_out
    img += hu["cortical"] * (o_out - o_in) + soft["trab_bone"] * trab + hu["marrow"] * o_mar
    return img, hip, trab


def simulate_case(size: str, seed: int, subset: str, index: int):
    """One simulated case: ``(image int16 (z, y, x) HU, label uint8, Geometry, info dict)``."""
    c = _sample_case(size, seed, subset, index)
    out = _output_grid(c, SIZE_SPECS[size]["max_matrix"])
    c["skeleton"]["fov_z_min"] = out.origin[0] - out.spacing[0]
    s, dz = out.spacing[1], out.spacing[0]
    k = max(1, int(round(dz / s)))
    rng_f = np.random.default_rng(c["noise_seed"] + [1])
    lo = (out.origin[0] - dz, out.origin[1], out.origin[2])
    hi = tuple(o + sp * n for o, sp, n in zip(out.origin, out.spacing, out.shape))
    fields = {"fat": value_noise(rng_f, lo, hi, 40.0), "streak": value_noise(rng_f, lo, hi, 10.0),
              "bowel": value_noise(rng_f, lo, hi, 16.0), "bowel_fine": value_noise(rng_f, lo, hi, 7.0)}
    nz, ny, nx = out.shape
    img = np.empty(out.shape, np.float32)
    hip = np.empty(out.shape, np.float32)
    trab = np.empty(out.shape, np.float32)
    step = max(1, _WORK_VOXELS // (k * ny * nx))
    for i0 in range(0, nz, step):
        i1 = min(nz, i0 + step)
        sub = Grid(((i1 - i0) * k, ny, nx), (dz / k, s, s),
                   (out.origin[0] + (i0 - 0.5 + 0.5 / k) * dz, out.origin[1], out.origin[2]))
        w_img, w_hip, w_trab = _render_chunk(sub, c, fields, s)
        for arr, w in ((img, w_img), (hip, w_hip), (trab, w_trab)):
            arr[i0:i1] = w.reshape(i1 - i0, k, ny, nx).mean(axis=1)
    acq = c["acq"]
    rng_n = np.random.default_rng(c["noise_seed"])
    tex = gaussian_filter(rng_n.standard_normal(out.shape, dtype=np.float32), 0.8)
    img += trab * tex * (acq["texture"] / max(float(tex.std()), 1e-6))
    psf_px = acq["psf"] / 2.355 / s
    if psf_px > 0.25:
        img = gaussian_filter(img, (0, psf_px, psf_px))
    sigma = acq["noise_ref"] * np.sqrt(0.7 * 0.7 * 3.0 / (s * s * dz))
    corr = max(0.5, ACQUISITION["noise_corr_mm"] / s)
    noise = gaussian_filter(rng_n.standard_normal(out.shape, dtype=np.float32), (0, corr, corr))
    img += noise * (sigma / max(float(noise.std()), 1e-6))
    image = np.clip(np.rint(img), -1024, 3071).astype(np.int16)
    label = (hip >= 0.5).astype(np.uint8)
    geometry = Geometry(out.spacing, origin=(out.origin[2], out.origin[1], out.origin[0]))
    info = {"pixel_mm": round(s, 4), "slice_mm": round(dz, 4), "thick_slices": acq["thick"],
            "contrast_phase": c["soft"]["phase"], "oral_contrast": c["soft"]["oral_contrast"],
            "noise_sd": round(float(sigma), 2), "shape": list(out.shape)}
    return image, label, geometry, info


@register_generator("ct_hip", description="3D pelvic CT (HU), label: hip bone (left+right os coxae)",
                    version=VERSION, dims=3, modality="CT")
def generate_ct_hip(out_dir: Path, size: str, seed: int) -> None:
    """Write the ``ct_hip`` raw dataset (train + fixed test set + unlabelled images) into ``out_dir``."""
    spec = SIZE_SPECS[size]
    writer = RawDatasetWriter(out_dir, CHANNELS, LABELS, ".nii.gz", overwrite=True)
    write_simulated_volumes(
        writer, "ct_hip", spec, simulate_case, size, seed,
        lambda cases: {
            "name": Path(out_dir).name,
            "description": "Simulated pelvic CT in HU; label = hip bone (left and right os coxae). Femurs, "
                           "sacrum and spine are background. See datasets/ct_hip.md.",
            "reference": "medseg_bench ct_hip simulator; task after Xie et al. (hip CT) and TotalSegmentator "
                         "(Wasserthal et al., Radiol. Artif. Intell. 2023) hip_left/hip_right classes",
            "licence": "CC0-1.0 (simulated data)",
            "generator": {"name": "ct_hip", "version": VERSION, "size": size, "seed": seed,
                          "parameters": {"size": spec, "tissue_hu": TISSUE, "acquisition": ACQUISITION},
                          "cases": cases},
        })
