"""``spect_bone``: simulated 3D bone SPECT (Tc-99m diphosphonate) with the skeleton as the label.

The task of Chen & Frey (unsupervised bone segmentation of XCAT-simulated SPECT with an active
contour loss; J. Chen and E. C. Frey, "Medical image segmentation via unsupervised convolutional neural
network", MIDL 2020, arXiv:2001.10155). Their phantoms (XCAT; Segars et al., Med. Phys. 37 (2010)
4902–4915) are not public, so this simulator builds its own torso: per case, from a seeded RNG,

* anatomy (:mod:`._skeleton3d`): lower thoracic and lumbar spine, ribs, sacrum, both hip bones and
  proximal femurs; body outline, lungs, kidneys and bladder;
* activity (relative concentrations): bone uptake varying between bones and smoothly within them,
  a few hot lesions (metastasis-like, 2–5x bone uptake) and degenerative hot spots at joints, warm soft
  tissue (bone-to-soft-tissue ratio ~4–10 at 2–4 h post injection), kidneys, and a very hot bladder
  (urinary excretion: the classic false positive of bone-scan reading);
* imaging: partial volume at the voxel scale (~4.4 mm: a 128 matrix), a Gaussian system PSF of
  9–13 mm FWHM (collimator + reconstruction), Poisson counting noise at clinical count levels
  (expected counts in bone voxels 15–60), and a light Gaussian post-filter as after OSEM;
  values are stored quantised to 1/8 count (far below the noise) so the files compress well.

Cohort variability (generator 2.0.0, :mod:`._spect_cohort`, drawn per case from its own stream; it
replaces the fixed ranges above where they differ): body size and BMI, age, renal function (soft
tissue, kidney and bladder activity), bladder filling, extent of metastatic disease (Soloway grades,
up to > 20 lesions or a superscan; some lesions photopenic), age-dependent degenerative uptake at the
facet, endplate, sacro-iliac and hip joints, hip arthroplasty (photopenic metal, not bone), urine
contamination, pose, collimator and distance-dependent PSF (~10-16 mm FWHM), images without
attenuation correction, count level (log-normal, median 28 counts per bone voxel) and post-filter.
About 32 % of cases are flagged hard.

Image values are counts per voxel (float32, >= 0). The label is bone: a voxel is labelled when at least
half of it lies inside a bone (lesions are inside bone, so they are bone too).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from ..io import Geometry, RawDatasetWriter
from . import register_generator
from ._anatomy3d import Grid, SdfCanvas, ellipsoid, occupancy, paint, rotation_zyx, sphere, value_noise
from ._skeleton3d import body_sdf, render_implants, render_skeleton, sample_body, sample_skeleton
from ._spect_cohort import sample_profile
from ._writing import write_simulated_volumes

__all__ = ["SIZE_SPECS", "VERSION", "generate_spect_bone", "simulate_case"]

VERSION = "2.0.0"
CHANNELS = {"0": "SPECT"}
LABELS = {"background": 0, "bone": 1}

#: per size: case counts and isotropic voxel size (mm)
SIZE_SPECS = {
    "tiny": {"n_train": 4, "n_test": 2, "n_unlabelled": 2, "voxel": 11.0},
    "small": {"n_train": 20, "n_test": 10, "n_unlabelled": 10, "voxel": 4.42},
    "full": {"n_train": 100, "n_test": 40, "n_unlabelled": 60, "voxel": 3.3},
}

#: relative activity concentrations (bone = 1) and imaging ranges (uniform per case); the cohort
#: profile (:mod:`._spect_cohort`) draws soft tissue, kidneys, bladder, lesions, counts and resolution
ACTIVITY = {
    "bone": {"spine": (1.0, 1.3), "sacrum": (1.0, 1.3), "hip": (0.85, 1.15), "femur": (0.65, 0.95),
             "ribs": (0.7, 1.0)},
    "bone_variation_sd": 0.12, "fat_factor": 0.6, "lung": (0.02, 0.06),
    "lesion_radius_mm": (4.0, 20.0), "degenerative_uptake": (1.3, 2.5), "contamination": (3.0, 20.0),
}
IMAGING = {"psf_fwhm_at_10cm_mm": {"LEHR": (7.0, 8.5), "LEGP": (9.0, 11.0)},
           "psf_distance_model": "fwhm = fwhm_10cm * (0.5 + 0.5 * d / 100 mm), d = AP half-thickness + orbit gap",
           "bone_counts": "log-normal, median 28, log-SD 0.55, clipped 5-100", "postfilter_sd_voxels": (0.4, 1.2), "mu_broad_beam_per_mm": 0.011}
MU_PER_MM = 0.011  # broad-beam attenuation of water at 140 keV (Zaidi & Hasegawa 2003)
_SUBSETS = {"train": 0, "test": 1, "unlabelled": 2}


def _u(rng, r):
    return float(rng.uniform(*r))


def _grid(rng: np.random.Generator, skel: dict, body: dict, voxel: float, pose=None) -> Grid:
    S = skel["scale"]
    ry, rx = body["trunk"]
    z0, z1 = rng.uniform(-160, -130) * S, rng.uniform(320, 360) * S
    nx, ny, nz = (int(np.ceil(v / voxel)) for v in (2 * rx + 30, 2 * ry + 30, z1 - z0))
    return Grid((nz, ny, nx), (voxel,) * 3, (z0, body["trunk_y"] - voxel * (ny - 1) / 2, -voxel * (nx - 1) / 2), pose=pose)


def _lesion_sites(rng, skel: dict, n: int) -> list[tuple[np.ndarray, float]]:
    """Lesion centres in typical metastatic sites (vertebral bodies, pelvis, ribs, proximal femur)."""
    S, hw = skel["scale"], skel["head_offset"]
    out = []
    for _ in range(n):
        site = rng.choice(["spine", "pelvis", "rib", "femur"], p=[0.45, 0.3, 0.15, 0.1])
        s = rng.choice([-1, 1])
        if site == "spine":
            z, y, x = skel["sacrum_top"] + rng.uniform(10, 330) * S, 32 * S, rng.normal(0, 8)
        elif site == "pelvis":
            z, y, x = rng.uniform(10, 110) * S, rng.uniform(-10, 60) * S, s * rng.uniform(50, 110) * S
        elif site == "rib":
            z, y, x = skel["sacrum_top"] + rng.uniform(200, 330) * S, rng.uniform(-60, 40) * S, s * skel["thorax"][1] * 0.85
        else:
            z, y, x = rng.uniform(-60, 0) * S, 8 * S, s * (hw + 40 * S)
        out.append((np.array([z, y, x]), _u(rng, ACTIVITY["lesion_radius_mm"])))
    return out


def _degenerative_sites(skel: dict) -> list[tuple[np.ndarray, float]]:
    """Sites of degenerative uptake: sacro-iliac and hip joints, lumbar facet joints and endplates."""
    S, hw = skel["scale"], skel["head_offset"]
    out = [(np.array([60 * S, 50 * S, s * 48 * S]), 12.0) for s in (-1, 1)]
    out += [(np.array([10 * S, 0.0, s * (hw - 5 * S)]), 12.0) for s in (-1, 1)]
    step = skel["vertebra_height"] + skel["disc_height"]
    for k in range(5):
        z = skel["sacrum_top"] + skel["disc_height"] + (k + 0.5) * step
        out += [(np.array([z, 32 * S + 31 * S, s * 13 * S]), 8.0) for s in (-1, 1)]  # facets
        out.append((np.array([z - 0.5 * step, 32 * S - 10 * S, 0.0]), 10.0))  # endplate osteophytes
    return out


def _hot_spots(grid: Grid, spots: list, w: float) -> np.ndarray:
    """Gain map (>= 1) of hot spots ``[(centre, radius, gain)]``: each voxel takes the largest."""
    gain_map = np.ones(grid.shape, np.float32)
    for c, r, g in spots:
        one = SdfCanvas(grid)
        one.add(lambda z, y, x, c=c, r=r: sphere(z, y, x, c, r), c - r, c + r)
        occ = occupancy(one.sdf, w)
        gain_map = np.where(occ > 0, np.maximum(gain_map, 1 + (g - 1) * occ) if g >= 1 else
                            np.minimum(gain_map, 1 + (g - 1) * occ), gain_map)
    return gain_map


def simulate_case(size: str, seed: int, subset: str, index: int):
    """One simulated case: ``(image float32 counts (z, y, x), label uint8, Geometry, info dict)``."""
    spec = SIZE_SPECS[size]
    ra = np.random.default_rng([seed, _SUBSETS[subset], index, 0])
    prof = sample_profile(np.random.default_rng([seed, _SUBSETS[subset], index, 3]))
    skel = sample_skeleton(ra, ribs=True, scale=prof["scale"], female=prof["female"])
    skel["tha"] = prof["tha"]
    body = sample_body(ra, skel, fat=prof["fat_mm"])
    S = skel["scale"]
    d = prof["pose_deg"]
    pose = (rotation_zyx(*(np.deg2rad(d[k]) for k in ("pitch", "roll", "yaw"))), (0.0, 0.0, 0.0))
    grid = _grid(ra, skel, body, spec["voxel"], pose)
    skel["fov_z_min"] = grid.origin[0] - 40.0
    w = spec["voxel"]
    z, y, x = grid.coords()
    zs, ys, xs = grid.scanner_coords()
    lo = grid.origin
    hi = tuple(o + sp * n for o, sp, n in zip(grid.origin, grid.spacing, grid.shape))

    # soft tissue
    act = np.zeros(grid.shape, np.float32)
    soft = prof["soft_tissue"]
    b_sdf = body_sdf(z, y, x, skel, body)
    paint(act, occupancy(b_sdf, w), soft * ACTIVITY["fat_factor"])
    paint(act, occupancy(b_sdf + body["fat"], w), soft)
    organs = {k: SdfCanvas(grid) for k in ("lung", "kidney", "bladder")}
    ry, rx = skel["thorax"]
    top = skel["sacrum_top"]
    for s in (-1, 1):
        cl, rl = (top + 330 * S, -10 * S, s * 0.5 * rx), (90 * S, 0.7 * ry, 0.38 * rx)
        organs["lung"].add(lambda z, y, x, c=cl, r=rl: ellipsoid(z, y, x, c, r), np.subtract(cl, rl), np.add(cl, rl))
        ck, rk = (top + ra.uniform(120, 170) * S, 45 * S, s * 55 * S), (55 * S, 25 * S, 30 * S)
        organs["kidney"].add(lambda z, y, x, c=ck, r=rk: ellipsoid(z, y, x, c, r), np.subtract(ck, rk), np.add(ck, rk))
    f = prof["bladder_size"]
    bl = (ra.uniform(20, 40) * S * f, ra.uniform(20, 40) * S * f, ra.uniform(30, 50) * S * f)
    cb = (-10 * S + 0.5 * bl[0], -32 * S, 0.0)
    organs["bladder"].add(lambda z, y, x: ellipsoid(z, y, x, cb, bl), np.subtract(cb, bl), np.add(cb, bl))
    paint(act, occupancy(organs["lung"].sdf, w), _u(ra, ACTIVITY["lung"]))
    paint(act, occupancy(organs["kidney"].sdf, w), prof["kidney"])
    bladder = prof["bladder"]
    paint(act, occupancy(organs["bladder"].sdf, w), bladder)

    # bone: uptake per bone group with smooth variation, lesions and degenerative hot spots inside bone
    bones = render_skeleton(grid, skel)
    field = value_noise(ra, lo, hi, 25.0)(zs, ys, xs)
    var = 1 + ACTIVITY["bone_variation_sd"] * field
    bone_occ = np.zeros(grid.shape, np.float32)
    for name, bone in bones.items():
        occ = occupancy(bone.outer, w)
        gain = prof["superscan_gain"] if name != "femur" else 1.0 + 0.3 * (prof["superscan_gain"] - 1.0)
        paint(act, occ, _u(ra, ACTIVITY["bone"][name]) * gain * var)
        np.maximum(bone_occ, occ, out=bone_occ)
    sites = _lesion_sites(ra, skel, prof["n_lesions"])
    deg_all = _degenerative_sites(skel)
    n_deg = min(prof["degenerative"], len(deg_all))
    deg = [deg_all[i] for i in ra.choice(len(deg_all), size=n_deg, replace=False)]
    spots = [(c, r, g) for (c, r), g in zip(sites, prof["lesion_uptake"])]
    spots += [(c, r, _u(ra, ACTIVITY["degenerative_uptake"])) for c, r in deg]
    if spots:  # one gain per voxel, the nearest hot (or cold) spot's, applied only inside bone
        act *= 1 + (_hot_spots(grid, spots, w) - 1) * bone_occ
    implants = render_implants(grid, skel)
    if implants is not None:  # metal: no tracer, not bone
        metal = occupancy(implants[0], w)
        act *= 1 - metal
        bone_occ *= 1 - metal
    if prof["contamination"]:  # urine on skin or clothes in front of the pelvis: hot, outside bone
        c = np.array([ra.uniform(-60, 20) * S, body["trunk_y"] - body["trunk"][0] + 4.0, ra.uniform(-70, 70) * S])
        r = float(ra.uniform(5.0, 10.0))
        act += (_hot_spots(grid, [(c, r, _u(ra, ACTIVITY["contamination"]))], w) - 1) * np.float32(1.0)
    if not prof["attenuation_correction"]:  # deep activity suppressed (image-domain approximation)
        act *= np.exp(-MU_PER_MM * np.clip(-b_sdf, 0, None)).astype(np.float32)

    # imaging: distance-dependent PSF, counts, Poisson noise, post-filter
    dist = body["trunk"][0] + prof["orbit_gap_mm"]
    fwhm = prof["fwhm_10cm_mm"] * (0.5 + 0.5 * dist / 100.0)
    expected = gaussian_filter(act, fwhm / 2.355 / w, mode="constant")
    bone_level = float(np.mean(expected[bone_occ >= 0.5])) if (bone_occ >= 0.5).any() else float(expected.max())
    counts = prof["bone_counts"]
    lam = np.maximum(expected, 0) * (counts / max(bone_level, 1e-6))
    rng_n = np.random.default_rng([seed, _SUBSETS[subset], index, 2])
    image = rng_n.poisson(lam).astype(np.float32)
    pf = prof["postfilter_sd_voxels"]
    # quantised to 1/8 count (far below the Poisson noise) so that the files compress ~3x
    image = (np.rint(gaussian_filter(image, pf) * 8) / 8).astype(np.float32)
    label = (bone_occ >= 0.5).astype(np.uint8)
    geometry = Geometry(grid.spacing, origin=(grid.origin[2], grid.origin[1], grid.origin[0]))
    r2 = lambda v, n=2: round(float(v), n)  # noqa: E731
    info = {"voxel_mm": w, "shape": list(grid.shape), "psf_fwhm_mm": r2(fwhm), "bone_counts": r2(counts, 1),
            "total_counts": int(lam.sum()), "lesions": prof["n_lesions"], "joint_spots": n_deg,
            "bladder_to_bone": r2(bladder), "soft_to_bone": r2(soft, 3),
            "cohort": {"female": prof["female"], "age": prof["age"], "bmi": prof["bmi"], "renal": prof["renal"],
                       "eod": prof["eod"], "superscan": prof["superscan"],
                       "cold_lesions": int(sum(g < 1 for g in prof["lesion_uptake"])),
                       "hip_arthroplasty": sorted("left" if s > 0 else "right" for s in prof["tha"]),
                       "contamination": prof["contamination"], "collimator": prof["collimator"],
                       "attenuation_correction": prof["attenuation_correction"], "postfilter_sd_voxels": r2(pf),
                       "pose_deg": {k: r2(v, 1) for k, v in d.items()}, "hard": prof["hard"]}}
    return image, label, geometry, info


@register_generator("spect_bone", description="3D bone SPECT (counts), label: bone",
                    version=VERSION, dims=3, modality="SPECT")
def generate_spect_bone(out_dir: Path, size: str, seed: int) -> None:
    """Write the ``spect_bone`` raw dataset (train + fixed test set + unlabelled images) into ``out_dir``."""
    spec = SIZE_SPECS[size]
    writer = RawDatasetWriter(out_dir, CHANNELS, LABELS, ".nii.gz", overwrite=True)
    write_simulated_volumes(
        writer, "spect_bone", spec, simulate_case, size, seed,
        lambda cases: {
            "name": Path(out_dir).name,
            "description": "Simulated Tc-99m bone SPECT (counts per voxel); label = bone. See datasets/spect_bone.md.",
            "reference": "medseg_bench spect_bone simulator; task after Chen & Frey, MIDL 2020 (arXiv:2001.10155)",
            "licence": "CC0-1.0 (simulated data)",
            "generator": {"name": "spect_bone", "version": VERSION, "size": size, "seed": seed,
                          "parameters": {"size": spec, "activity": ACTIVITY, "imaging": IMAGING,
                                         "cohort": "medseg_bench/datasets/_spect_cohort.py (per case under cases.*.cohort)"},
                          "cases": cases},
        })
