"""Case-to-case variability of a bone-scintigraphy (Tc-99m diphosphonate SPECT) cohort for the
``spect_bone`` simulator: who the patient is (size, age, renal function, extent of metastatic disease,
degenerative disease, implants, contamination) and how the study was acquired (injected activity and
count level, collimator and orbit, attenuation correction, reconstruction filter, position). Drawn
per case from the case's generator, so the simulator stays deterministic from its seed.

Sources for the ranges (documented choices, not fits):

* **Patients and protocol.** Bone scans are mostly cancer staging (prostate, breast) in older adults:
  age ~N(66, 11) y clipped to 30-92. Adult activity 500 MBq (300-740 MBq, some sites weight-based),
  imaging 2-5 h after injection (EANM guideline: Van den Wyngaert et al., Eur J Nucl Med Mol Imaging
  43:1723, 2016); the expected count level in an average bone voxel is log-normal, median 28,
  log-SD 0.55, clipped to 5-100 (the old fixed range was 15-60; ~6 % of studies below 12 counts:
  short acquisitions, low activity, late imaging).
* **Soft-tissue and renal activity.** Poor renal function leaves more tracer in soft tissue and less
  in kidneys and bladder; bone-to-soft-tissue contrast also falls with age (Love et al., "Radionuclide
  bone imaging: an illustrative review", RadioGraphics 23:341, 2003; Brenner et al., "The bone scan",
  Semin Nucl Med 42:11, 2012). Normal / reduced / failed renal function 70 / 25 / 5 %.
* **Bladder** filling varies from just voided to full (activity 1.5-12x bone, size x0.6-1.4), the
  classic hot false positive next to the pubis; urine contamination of skin or clothes (5 %) is a hot
  spot outside bone (Love et al. 2003).
* **Extent of disease** (EOD grades of Soloway et al., Cancer 61:195, 1988): none 55 %, < 6 lesions
  25 %, 6-20 lesions 12 %, > 20 lesions 6 %, superscan 2 % (diffusely intense axial skeleton, faint or
  absent kidneys). Lesions 1.5-6x bone uptake (log-uniform), 4-20 mm radius, sites weighted to the
  axial skeleton; 8 % are photopenic (lytic "cold" lesions, 0.1-0.5x).
* **Degenerative uptake** (facet and endplate arthropathy, sacro-iliac and hip joints) is near
  universal in the elderly: Poisson count with mean 0.5 + 0.06 (age - 40), 1.3-2.5x bone.
* **Hip arthroplasty** (metal: no uptake, photopenic): prevalence as in ``_ct_cohort``.
* **Imaging.** Low-energy high- or general-purpose collimators (FWHM at 10 cm 7-8.5 / 9-11 mm);
  resolution degrades roughly linearly with source-collimator distance (Cherry, Sorenson & Phelps,
  *Physics in Nuclear Medicine*, 4th ed., 2012), so larger patients get a wider PSF. 40 % of the
  studies are reconstructed without attenuation correction: deep activity is suppressed by
  exp(-mu d) with a broad-beam mu of 0.11/cm at 140 keV (Zaidi & Hasegawa, J Nucl Med 44:291,
  2003), d the depth below the skin. Post-filter 0.4-1.2 voxels.
* **Position**: small tilt and rotation on the table (SD 3 / 1.5 / 2 deg).

About a quarter of the cases are hard by construction (low counts, > 20 lesions or a superscan,
renal failure, implants, contamination, or a large patient without attenuation correction);
:func:`sample_profile` flags them (share measured on 4000 profiles: see ``datasets/spect_bone.md``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["EOD", "RENAL", "sample_profile"]

#: renal function -> (probability, soft tissue (bone = 1), kidney, bladder log-range)
RENAL = {"normal": (0.7, (0.08, 0.2), (0.3, 0.8), (1.5, 12.0)),
         "reduced": (0.25, (0.2, 0.35), (0.15, 0.4), (1.0, 6.0)),
         "failure": (0.05, (0.35, 0.6), (0.02, 0.1), (0.3, 1.5))}
#: extent-of-disease grade (Soloway 1988) -> (probability, lesion-count range)
EOD = {0: (0.55, (0, 0)), 1: (0.25, (1, 5)), 2: (0.12, (6, 20)), 3: (0.06, (21, 40)), 4: (0.02, (25, 40))}


def _pick(rng, table: dict):
    keys = list(table)
    probs = np.array([table[k][0] for k in keys], float)
    return keys[int(rng.choice(len(keys), p=probs / probs.sum()))]


def _loguniform(rng, lo, hi) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _clip_normal(rng, mean, sd, lo, hi) -> float:
    return float(np.clip(rng.normal(mean, sd), lo, hi))


def sample_profile(rng: np.random.Generator) -> dict:
    """One patient's and one study's cohort draws (see the module docstring), JSON-ready."""
    female = bool(rng.random() < 0.45)
    age = _clip_normal(rng, 66.0, 11.0, 30.0, 92.0)
    scale = float(rng.uniform(0.90, 1.02) if female else rng.uniform(0.98, 1.10))
    bmi = float(np.clip(np.exp(rng.normal(np.log(27.0), 0.2)), 17.0, 50.0))
    fat = float(np.clip(8.0 + 2.2 * (bmi - 20.0) + rng.normal(0, 5), 4.0, 80.0)) * (1.1 if female else 0.9)
    renal = str(_pick(rng, RENAL))
    _, soft_r, kid_r, bl_r = RENAL[renal]
    soft = float(rng.uniform(*soft_r)) * (1.0 + 0.006 * max(age - 50.0, 0.0))
    eod = int(_pick(rng, EOD))
    n_les = int(rng.integers(EOD[eod][1][0], EOD[eod][1][1] + 1))
    superscan = eod == 4
    prof = {
        "female": female, "age": round(age, 1), "scale": scale, "bmi": round(bmi, 1), "fat_mm": fat,
        "renal": renal, "soft_tissue": soft,
        "kidney": float(rng.uniform(*kid_r)) * (0.1 if superscan else 1.0),
        "bladder": _loguniform(rng, *bl_r), "bladder_size": float(rng.uniform(0.6, 1.4)),
        "eod": eod, "superscan": superscan, "n_lesions": n_les,
        "lesion_uptake": [(_loguniform(rng, 0.1, 0.5) if rng.random() < 0.08 else _loguniform(rng, 1.5, 6.0))
                          for _ in range(n_les)],
        "superscan_gain": float(rng.uniform(2.0, 3.0)) if superscan else 1.0,
        "degenerative": int(rng.poisson(0.5 + 0.06 * max(age - 40.0, 0.0))),
        "contamination": bool(rng.random() < 0.05),
    }
    p_tha = 0.02 + 0.002 * max(age - 50.0, 0.0)
    tha = {}
    if rng.random() < p_tha:
        for s in ([1, -1] if rng.random() < 0.2 else [int(rng.choice([1, -1]))]):
            cup_r = float(rng.uniform(22.0, 29.0))
            tha[s] = {"cup_r": cup_r, "cup_thickness": float(rng.uniform(3.0, 5.0)), "head_r": 14.0,
                      "inclination": float(np.deg2rad(_clip_normal(rng, 40.0, 10.0, 20.0, 65.0))),
                      "anteversion": float(np.deg2rad(_clip_normal(rng, 15.0, 10.0, -10.0, 40.0))),
                      "stem_length": float(rng.uniform(100.0, 150.0))}
    prof["tha"] = tha
    collimator = str(rng.choice(["LEHR", "LEGP"], p=[0.7, 0.3]))
    prof.update(collimator=collimator,
                fwhm_10cm_mm=float(rng.uniform(7.0, 8.5) if collimator == "LEHR" else rng.uniform(9.0, 11.0)),
                orbit_gap_mm=float(rng.uniform(20.0, 60.0)),
                attenuation_correction=bool(rng.random() < 0.6),
                bone_counts=float(np.clip(np.exp(rng.normal(np.log(28.0), 0.55)), 5.0, 100.0)),
                postfilter_sd_voxels=float(rng.uniform(0.4, 1.2)),
                pose_deg={"pitch": _clip_normal(rng, 0.0, 3.0, -8.0, 8.0), "roll": _clip_normal(rng, 0.0, 1.5, -5.0, 5.0),
                          "yaw": _clip_normal(rng, 0.0, 2.0, -6.0, 6.0)})
    prof["hard"] = bool(prof["bone_counts"] < 12.0 or eod >= 3 or renal == "failure" or tha or prof["contamination"]
                        or (not prof["attenuation_correction"] and bmi > 32.0))
    return prof
