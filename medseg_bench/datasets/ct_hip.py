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

* cohort variability (generator 2.0.0, :mod:`._ct_cohort`, drawn per case from its own stream): sex,
  age, body size and BMI (subcutaneous fat), age- and sex-dependent bone density (osteoporotic cases:
  trabecular bone near soft-tissue HU, thin faint cortex), hip osteoarthritis (narrow joint space, rim
  osteophytes, subchondral sclerosis), total hip arthroplasty (metal cup, head and stem; the reamed
  bone is cut from the label; projection-domain streaks, with or without metal artefact reduction),
  lytic / blastic metastases in the hip bone, pose on the table (tilt, obliquity, rotation: the
  anatomy is rendered on a posed grid) and off-centring, and per site: water calibration offset, tube
  voltage (bone and iodine contrast), kernel, low-dose protocols, size-dependent noise and scan
  coverage (pelvis, abdomen-pelvis, hip-limited). About 29 % of cases are flagged hard.

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
from ._anatomy3d import Grid, SdfCanvas, ellipsoid, occupancy, paint, rotation_zyx, sphere, value_noise
from ._ct_cohort import PROTOCOLS, sample_profile
from ._skeleton3d import body_sdf, render_implants, render_skeleton, sample_body, sample_skeleton
from ._writing import write_simulated_volumes

__all__ = ["SIZE_SPECS", "VERSION", "generate_ct_hip", "simulate_case"]

VERSION = "2.0.0"
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
    "marrow": (-40.0, 60.0), "polyethylene": (-100.0, -60.0), "metal": 3071.0,
}
MU_WATER_PER_MM = 0.019  # linear attenuation of water at CT energies (~70 keV), 1/mm
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
    """All random choices of one case. The cohort profile and the anatomy come from their own
    streams (same patient at every size)."""
    spec = SIZE_SPECS[size]
    ra = np.random.default_rng([seed, _SUBSETS[subset], index, 0])
    ri = np.random.default_rng([seed, _SUBSETS[subset], index, 1])
    prof = sample_profile(np.random.default_rng([seed, _SUBSETS[subset], index, 3]))
    skel = sample_skeleton(ra, scale=prof["scale"], female=prof["female"])
    skel["cortex"] = {k: max(0.6, v * prof["cortex_factor"]) for k, v in skel["cortex"].items()}
    skel["shaft_cortex"] = max(2.0, skel["shaft_cortex"] * prof["cortex_factor"])
    oa = prof["osteoarthritis"]
    if oa:
        skel["hip_joint_side"] = {s: oa[s]["joint_mm"] if s in oa else skel["hip_joint"] for s in (1, -1)}
        skel["osteophytes"] = {s: oa[s]["osteophytes"] for s in oa}
    skel["tha"] = prof["tha"]
    body = sample_body(ra, skel, fat=prof["fat_mm"])
    S = skel["scale"]
    hu = {k: _u(ra, v) for k, v in TISSUE.items()}
    # the cohort's bone density and the scanner's energy response
    hu["trabecular"] = prof["trabecular_hu"] * prof["bone_factor"]
    hu["cortical"] *= prof["cortical_density"] * prof["bone_factor"]
    hu["calcification"] *= prof["bone_factor"]
    for k in ("oral_contrast", "venous_phase", "arterial_phase"):
        hu[k] *= prof["iodine_factor"]
    phase = ra.choice(["none", "venous", "arterial"], p=[1 - ACQUISITION["p_venous"] - ACQUISITION["p_arterial"],
                                                          ACQUISITION["p_venous"], ACQUISITION["p_arterial"]])
    artery = {"none": hu["blood"], "venous": hu["venous_phase"], "arterial": hu["arterial_phase"]}[phase]
    vein = {"none": hu["blood"], "venous": hu["venous_phase"], "arterial": 0.5 * (hu["blood"] + hu["venous_phase"])}[phase]
    top, bottom = PROTOCOLS[prof["protocol"]][1:]
    soft = {
        "phase": str(phase), "artery": artery, "vein": vein,
        "oral_contrast": bool(ra.random() < ACQUISITION["p_oral_contrast"]),
        "calcifications": int(ra.integers(1, 9)) if ra.random() < ACQUISITION["p_calcified"] else 0,
        "bladder": ((ra.uniform(25, 45) * S), ra.uniform(25, 42) * S, ra.uniform(35, 55) * S),
        "trab_bone": hu["trabecular"],
        "fov_z": (float(ra.uniform(*bottom) * S), float(ra.uniform(*top) * S)),
    }
    pixel = _u(ri, spec["pixel"])
    thick = bool(ri.random() < spec["p_thick"])
    slice_mm = pixel * _u(ri, spec["thick" if thick else "thin"])
    ry, rx = body["trunk"]
    d_water = 2.0 * np.sqrt(ry * rx)  # water-equivalent diameter of the trunk (AAPM Report 204), mm
    size_noise = float(np.exp(0.5 * MU_WATER_PER_MM * (d_water - 300.0) * (1.0 - prof["aec_strength"])))
    noise_factor = size_noise * prof["dose_noise_factor"] * prof["kernel_noise_factor"]
    psf = _u(ri, ACQUISITION["psf_fwhm_mm"]) * (0.7 if prof["kernel"] == "sharp" else 1.0)
    acq = {"pixel": pixel, "slice": slice_mm, "thick": thick,
           "noise_ref": _u(ri, ACQUISITION["noise_sd_at_0.7x0.7x3mm"]) * noise_factor, "psf": psf,
           "texture": _u(ri, ACQUISITION["trabecular_texture_sd"]), "noise_factor": noise_factor,
           "water_equivalent_diameter_mm": float(d_water)}
    d = prof["pose_deg"]
    R = rotation_zyx(*(np.deg2rad(d[k]) for k in ("pitch", "roll", "yaw")))
    off = np.asarray(prof["offset_mm"], float)
    pose = (R, tuple(float(v) for v in -(np.asarray(R) @ off)))
    return {"skeleton": skel, "body": body, "hu": hu, "soft": soft, "acq": acq, "profile": prof, "pose": pose,
            "noise_seed": [seed, _SUBSETS[subset], index, 2]}


def _output_grid(c: dict, max_matrix: int) -> Grid:
    """The reconstruction grid in the scanner frame: centred on the isocentre's nominal patient centre,
    widened by the patient's off-centre shift so the body stays in the field unless the matrix cap
    cuts it."""
    b, acq = c["body"], c["acq"]
    s, dz = acq["pixel"], acq["slice"]
    ry, rx = b["trunk"]
    off = c["profile"]["offset_mm"]
    nx = min(max_matrix, int(np.ceil((2 * rx + 24 + 2 * abs(off[2])) / s)))
    ny = min(max_matrix, int(np.ceil((2 * ry + 24 + 2 * abs(off[1])) / s)))
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
    zs, ys, xs = grid.scanner_coords()  # the random texture fields are separable: scanner frame
    img = np.full(grid.shape, hu["air"], np.float32)
    body = body_sdf(z, y, x, p, b)
    paint(img, occupancy(body, width), hu["fat"])
    fat_mod = b["fat"] * (1 + 0.35 * fields["fat"](zs, ys, xs))
    muscle = body + fat_mod
    occ_m = occupancy(muscle, width)
    streak = np.clip((fields["streak"](zs, ys, xs) - 1.4) / 0.3, 0, 1)
    paint(img, occ_m, hu["muscle"])
    paint(img, occ_m * streak, hu["fat"])
    # abdomino-pelvic cavity: bounded by the pelvic floor, the iliac wings and the abdominal wall
    half_x = 55 * S + 55 * S * np.clip((z - 20 * S) / (80 * S), 0, 1)
    u, v = x / half_x, (y + 25 * S) / (75 * S)
    cav = (np.sqrt(u * u + v * v) - 1) * np.minimum(half_x, 75 * S)
    cav = np.maximum(np.maximum(cav, -35 * S - z), muscle + 12)
    n1, n2 = fields["bowel"](zs, ys, xs), fields["bowel_fine"](zs, ys, xs)
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
    prof = c["profile"]
    hw, R = p["head_offset"], p["head_radius"]
    for s, oa in prof["osteoarthritis"].items():  # subchondral sclerosis in the acetabular roof
        ch = (0.0, 0.0, s * hw)
        band = SdfCanvas(grid)
        w = R + p["hip_joint_side"][s] + 6.0
        band.add(lambda z, y, x, ch=ch, w=w: sphere(z, y, x, ch, w), np.subtract(ch, w), np.add(ch, w))
        paint(img, occupancy(band.sdf, width) * trab, soft["trab_bone"] + oa["sclerosis_hu"])
    o_hip = occupancy(bones["hip"].outer, width)
    for m in prof["metastases"]:  # lytic / blastic lesions inside the hip bone (still hip bone)
        ctr = np.add(_metastasis_site(p, m), m["jitter"])
        r = m["radius"]
        les = SdfCanvas(grid)
        les.add(lambda z, y, x, ctr=ctr, r=r: sphere(z, y, x, ctr, r), ctr - r, ctr + r)
        if m["kind"] in ("lytic", "mixed"):
            paint(img, occupancy(les.sdf, width) * o_hip, m["hu"])
        if m["kind"] in ("blastic", "mixed"):
            paint(img, occupancy(les.sdf + (0.5 * r if m["kind"] == "mixed" else 0.0), width) * o_hip, m["blastic_hu"])
    implants = render_implants(grid, p)
    metal = None
    if implants is not None:
        paint(img, occupancy(implants[1], width), hu["polyethylene"])
        metal = occupancy(implants[0], width)
        paint(img, metal, hu["metal"])
    return img, hip, trab, metal


def _metastasis_site(p: dict, m: dict) -> np.ndarray:
    """Nominal centre (z, y, x mm) of a metastasis at a landmark of the hip bone of side ``m["side"]``."""
    S, hw, s = p["scale"], p["head_offset"], m["side"]
    if m["site"] == "acetabulum":
        return np.array([14 * S, 4 * S, s * (hw - 22 * S)])
    if m["site"] == "ilium":
        return np.array([72 * S, 50 * S, s * 55 * S])
    return np.array([-60 * S, 22 * S, s * (hw - 28 * S)])


def _metal_artefacts(metal: np.ndarray, pixel: float, rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """Streaks and dark bands of metal in CT (HU, per slice), simulated in the projection domain:
    the metal path length ``L`` (mm) of each ray gives a beam-hardening deficit ``-(L / 20 mm)^2`` and
    photon-starvation noise growing with ``L``; filtered back-projection of that error gives the
    artefact image (cf. the projection-domain metal simulation of Zhang & Yu, IEEE TMI 37:1370, 2018).
    The result is scaled so its 0.5th percentile (the darkest band) is ``-amplitude`` HU."""
    from scipy.ndimage import zoom
    from skimage.transform import iradon, radon

    out = np.zeros(metal.shape, np.float32)
    ny, nx = metal.shape[1:]
    f = int(np.ceil(max(ny, nx) / 192))  # large matrices: artefacts computed on a <= 192 px grid
    n = int(np.ceil(max(ny, nx) / f))
    theta = np.arange(0.0, 180.0, 1.0)
    hit = np.nonzero(metal.reshape(len(metal), -1).max(axis=1) > 0.05)[0]
    for k in hit:
        sq = np.zeros((n * f, n * f), np.float32)
        sq[:ny, :nx] = metal[k]
        if f > 1:
            sq = sq.reshape(n, f, n, f).mean(axis=(1, 3))
        L = radon(sq, theta=theta, circle=False) * pixel * f
        starve = gaussian_filter(rng.standard_normal(L.shape), (1.5, 3.0)) * 4.0  # noise, correlated along angle
        err = -(L / 20.0) ** 2 + starve * (L / 20.0) * 0.1
        art = iradon(err, theta=theta, filter_name="ramp", circle=False, output_size=n)
        out[k] = (zoom(art, f, order=1) if f > 1 else art)[:ny, :nx]
    sub, free = out[hit], metal[hit] < 0.01  # the darkest band, among the slices with metal
    dark = float(np.percentile(sub[free], 0.5)) if free.any() else 0.0
    return out * (amplitude / max(-dark, 1e-6)) if dark < 0 else out


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
    metal = np.empty(out.shape if c["profile"]["tha"] else (nz, 1, 1), np.float32)
    step = max(1, _WORK_VOXELS // (k * ny * nx))
    for i0 in range(0, nz, step):
        i1 = min(nz, i0 + step)
        sub = Grid(((i1 - i0) * k, ny, nx), (dz / k, s, s),
                   (out.origin[0] + (i0 - 0.5 + 0.5 / k) * dz, out.origin[1], out.origin[2]), pose=c["pose"])
        w_img, w_hip, w_trab, w_metal = _render_chunk(sub, c, fields, s)
        for arr, w in ((img, w_img), (hip, w_hip), (trab, w_trab)) + (((metal, w_metal),) if c["profile"]["tha"] else ()):
            arr[i0:i1] = w.reshape(i1 - i0, k, ny, nx).mean(axis=1)
    acq, prof = c["acq"], c["profile"]
    rng_n = np.random.default_rng(c["noise_seed"])
    if prof["tha"]:
        rng_m = np.random.default_rng(c["noise_seed"] + [5])
        amp = (rng_m.uniform(60.0, 200.0) if prof["metal_artefact_reduction"] else rng_m.uniform(300.0, 800.0))
        img += _metal_artefacts(metal, s, rng_m, amp * (1.3 if len(prof["tha"]) > 1 else 1.0))
    tex = gaussian_filter(rng_n.standard_normal(out.shape, dtype=np.float32), 0.8)
    img += trab * tex * (acq["texture"] / max(float(tex.std()), 1e-6))
    psf_px = acq["psf"] / 2.355 / s
    if psf_px > 0.25:
        img = gaussian_filter(img, (0, psf_px, psf_px))
    sigma = acq["noise_ref"] * np.sqrt(0.7 * 0.7 * 3.0 / (s * s * dz))
    corr = max(0.5, ACQUISITION["noise_corr_mm"] / s)
    noise = gaussian_filter(rng_n.standard_normal(out.shape, dtype=np.float32), (0, corr, corr))
    img += noise * (sigma / max(float(noise.std()), 1e-6))
    img += prof["water_offset_hu"]  # site calibration of the CT-number scale
    image = np.clip(np.rint(img), -1024, 3071).astype(np.int16)
    label = (hip >= 0.5).astype(np.uint8)
    geometry = Geometry(out.spacing, origin=(out.origin[2], out.origin[1], out.origin[0]))
    info = {"pixel_mm": round(s, 4), "slice_mm": round(dz, 4), "thick_slices": acq["thick"],
            "contrast_phase": c["soft"]["phase"], "oral_contrast": c["soft"]["oral_contrast"],
            "noise_sd": round(float(sigma), 2), "shape": list(out.shape),
            "cohort": _profile_summary(prof, acq)}
    return image, label, geometry, info


def _profile_summary(prof: dict, acq: dict) -> dict:
    """The case's cohort draws for dataset.json (JSON-ready, rounded)."""
    r = lambda v, n=2: round(float(v), n)  # noqa: E731
    return {"female": prof["female"], "age": prof["age"], "bmi": prof["bmi"], "fat_mm": r(prof["fat_mm"], 1),
            "trabecular_hu": r(prof["trabecular_hu"], 1), "osteoporotic": bool(prof["osteoporotic"]),
            "cortex_factor": r(prof["cortex_factor"]), "hip_arthroplasty": sorted("left" if s > 0 else "right" for s in prof["tha"]),
            "metal_artefact_reduction": prof["metal_artefact_reduction"],
            "osteoarthritis": sorted("left" if s > 0 else "right" for s in prof["osteoarthritis"]),
            "metastases": [m["kind"] for m in prof["metastases"]],
            "pose_deg": {k: r(v, 1) for k, v in prof["pose_deg"].items()}, "offset_mm": [r(v, 1) for v in prof["offset_mm"]],
            "kvp": prof["kvp"], "kernel": prof["kernel"], "low_dose": prof["low_dose"], "protocol": prof["protocol"],
            "water_offset_hu": r(prof["water_offset_hu"], 1), "noise_factor": r(acq["noise_factor"]),
            "hard": prof["hard"]}


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
                          "parameters": {"size": spec, "tissue_hu": TISSUE, "acquisition": ACQUISITION,
                                         "cohort": "medseg_bench/datasets/_ct_cohort.py (per case under cases.*.cohort)"},
                          "cases": cases},
        })
