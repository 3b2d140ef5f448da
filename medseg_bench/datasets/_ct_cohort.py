"""Case-to-case variability of a pelvic-CT cohort for the ``ct_hip`` simulator: who the patient is
(sex, age, size, bone density, hip disease, implants, metastases, position on the table) and how the
scan was made (site calibration, tube voltage, kernel, dose, coverage). Everything is drawn per case
from the case's generator, so the simulator stays deterministic from its seed.

Sources for the ranges (documented choices, not fits to one data set):

* **Age, sex, habitus.** An adult abdomino-pelvic CT population: age ~N(62, 15) y clipped to 20-95,
  half women. BMI log-normal around 27 kg/m^2 (US adults: mean ~29, ~40 % obese; NHANES 2017-2018,
  Hales et al., NCHS Data Brief 360, 2020), clipped to 17-50; subcutaneous fat ~8 + 2.2 (BMI - 20) mm.
* **Bone density.** Lumbar trabecular attenuation in young adults 227-236 +- 42 HU (Hendrickson et
  al., Iowa Orthop J 38:25, 2018), decreasing roughly linearly with age, faster in women after the
  menopause (Schreiber et al., J Bone Joint Surg Am 93:1057, 2011); < 110 HU is highly specific for
  osteoporosis (Pickhardt et al., Ann Intern Med 158:588, 2013). The trabecular value here (all
  bones) follows that curve; cortex thins and loses density with age (osteoporotic cases: a thin,
  faint shell around a marrow-like interior -- the hard case of bone CT segmentation).
* **Hip osteoarthritis** (joint-space narrowing < 2 mm, rim osteophytes, subchondral sclerosis):
  radiographic prevalence rising with age, ~5-25 % in older adults (Dagenais et al., Clin Rheumatol
  28:1253, 2009 review).
* **Hip arthroplasty.** Prevalence of total hip replacement 0.83 % of the US population, rising with
  age to 5.3 % at 80 (Maradit Kremers et al., J Bone Joint Surg Am 97:1386, 2015); a CT cohort is
  older and enriched for hip disease, so p = 2 % + 0.2 %/year over 50 (8 % at 80), 20 % bilateral. Cup
  orientation around the Lewinnek safe zone, inclination 40 +- 10 deg, anteversion 15 +- 10 deg
  (Lewinnek et al., J Bone Joint Surg Am 60:217, 1978); cups 44-58 mm, heads 28-36 mm. Metal causes
  streaks and dark bands (beam hardening, photon starvation); half the sites use metal artefact
  reduction (Wellenberg et al., "Metal artifact reduction techniques in musculoskeletal CT-imaging",
  Eur J Radiol 107:60, 2018).
* **Bone metastases** in staging CT: pelvis and proximal femur are frequent sites; lytic, blastic or
  mixed (Coleman, Clin Cancer Res 12:6243s, 2006); 8 % of cases, 1-4 lesions of 6-20 mm radius.
* **Position.** Sagittal pelvic tilt differs between patients with SD ~5 deg (ASIS-PSIS angle 0-23
  deg, SD 5, Preece et al., J Man Manip Ther 16:113, 2008); small coronal obliquity and axial rotation
  on the table; vertical mis-centring, on average ~2 cm below the isocentre (Kaasalainen et al., AJR
  202:W51, 2014 for chest CT; same mechanism).
* **Site and scanner.** Water CT number within 0 +- 7 HU (ACR CT accreditation phantom criterion);
  tube voltage 100/120/140 kVp changes bone and iodine contrast (calcium and iodine attenuate more at
  low energy; McCollough et al., Radiology 276:637, 2015); soft or sharp (bone) kernels trade noise
  for resolution; low-dose protocols (e.g. PET/CT attenuation CT) have 2-3x the noise. Noise grows
  with patient size roughly as exp(mu_w D / 2) per unit dose (mu_w ~ 0.019/mm at CT energies),
  partly compensated by automatic exposure control (AAPM Report 204, 2011, for the water-equivalent
  diameter D; Kalra et al., Radiology 230:619, 2004).
* **Coverage.** Pelvis protocols (iliac crest to lesser trochanters), abdomen-pelvis (from L2 down
  to just below the ischial tuberosities) and hip-limited scans whose top cuts the iliac wings.

About a quarter of the cases are hard by construction (implant, osteoporosis, metastases, or a
low-dose scan of an obese patient); :func:`sample_profile` flags them (share measured on 4000
profiles: see ``datasets/ct_hip.md``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["KVP", "PROTOCOLS", "sample_profile"]

#: tube voltage -> (probability, bone-contrast factor, iodine-contrast factor) relative to 120 kVp
KVP = {100: (0.3, 1.12, 1.22), 120: (0.55, 1.0, 1.0), 140: (0.15, 0.92, 0.88)}
#: scan coverage -> (probability, top of the field (mm above the femoral-head centres, / body scale), bottom)
PROTOCOLS = {"pelvis": (0.5, (140.0, 175.0), (-120.0, -85.0)),
             "abdomen_pelvis": (0.35, (200.0, 250.0), (-90.0, -70.0)),
             "hip_limited": (0.15, (60.0, 110.0), (-150.0, -110.0))}


def _pick(rng, table: dict):
    keys = list(table)
    probs = np.array([table[k][0] for k in keys], float)
    return keys[int(rng.choice(len(keys), p=probs / probs.sum()))]


def _clip_normal(rng, mean, sd, lo, hi) -> float:
    return float(np.clip(rng.normal(mean, sd), lo, hi))


def sample_profile(rng: np.random.Generator) -> dict:
    """One patient's and one scan's cohort draws (see the module docstring): plain numbers, strings
    and small dicts (JSON-ready). Implant and osteophyte geometry is keyed by side (+1 left, -1 right)."""
    female = bool(rng.random() < 0.5)
    age = _clip_normal(rng, 62.0, 15.0, 20.0, 95.0)
    scale = float(rng.uniform(0.90, 1.02) if female else rng.uniform(0.98, 1.10))
    bmi = float(np.clip(np.exp(rng.normal(np.log(27.0), 0.2)), 17.0, 50.0))
    fat = float(np.clip(8.0 + 2.2 * (bmi - 20.0) + rng.normal(0, 5), 4.0, 80.0)) * (1.1 if female else 0.9)
    # bone density (HU of trabecular bone) from age and sex
    decline = 2.2 * max(age - 30.0, 0.0) + (1.0 * max(age - 50.0, 0.0) if female else 0.0)
    trab = _clip_normal(rng, 235.0 - decline, 35.0, 30.0, 330.0)
    cortex_factor = float(np.clip(1.0 - 0.006 * max(age - 40.0, 0.0) * (1.3 if female else 1.0)
                                  + rng.normal(0, 0.05), 0.5, 1.1))
    prof = {"female": female, "age": round(age, 1), "scale": scale, "bmi": round(bmi, 1), "fat_mm": fat,
            "trabecular_hu": trab, "osteoporotic": trab < 110.0, "cortex_factor": cortex_factor,
            "cortical_density": float(np.clip(0.75 + 0.5 * (trab - 30.0) / 300.0, 0.75, 1.1))}
    # hip disease and implants
    p_tha = 0.02 + 0.002 * max(age - 50.0, 0.0)
    tha_sides = []
    if rng.random() < p_tha:
        tha_sides = [1, -1] if rng.random() < 0.2 else [int(rng.choice([1, -1]))]
    tha = {}
    for s in tha_sides:
        cup_r = float(rng.uniform(22.0, 29.0))
        tha[s] = {"cup_r": cup_r, "cup_thickness": float(rng.uniform(3.0, 5.0)),
                  "head_r": float(rng.choice([14.0, 16.0, 18.0])) if cup_r > 24 else 14.0,
                  "inclination": float(np.deg2rad(_clip_normal(rng, 40.0, 10.0, 20.0, 65.0))),
                  "anteversion": float(np.deg2rad(_clip_normal(rng, 15.0, 10.0, -10.0, 40.0))),
                  "stem_length": float(rng.uniform(100.0, 150.0))}
    prof["tha"] = tha
    prof["metal_artefact_reduction"] = bool(tha and rng.random() < 0.5)
    oa_sides = []
    if rng.random() < 0.05 + 0.005 * max(age - 45.0, 0.0):
        oa_sides = [s for s in (1, -1) if s not in tha] if rng.random() < 0.4 else [int(rng.choice([1, -1]))]
        oa_sides = [s for s in oa_sides if s not in tha]
    prof["osteoarthritis"] = {s: {"joint_mm": float(rng.uniform(0.8, 2.0)),
                                  "osteophytes": [(tuple(float(v) for v in _rim_direction(rng)), float(rng.uniform(2.0, 6.0)))
                                                  for _ in range(int(rng.integers(2, 7)))],
                                  "sclerosis_hu": float(rng.uniform(200.0, 500.0))} for s in oa_sides}
    n_met = int(rng.integers(1, 5)) if rng.random() < 0.08 else 0
    prof["metastases"] = [{"kind": str(rng.choice(["lytic", "blastic", "mixed"], p=[0.6, 0.3, 0.1])),
                           "radius": float(rng.uniform(6.0, 20.0)), "side": int(rng.choice([1, -1])),
                           "site": str(rng.choice(["acetabulum", "ilium", "ischium_pubis"], p=[0.35, 0.45, 0.2])),
                           "hu": float(rng.uniform(20.0, 70.0)), "blastic_hu": float(rng.uniform(500.0, 1100.0)),
                           "jitter": [float(v) for v in rng.normal(0, 8.0, 3)]} for _ in range(n_met)]
    # position on the table
    prof["pose_deg"] = {"pitch": _clip_normal(rng, 0.0, 5.0, -12.0, 12.0), "roll": _clip_normal(rng, 0.0, 1.5, -5.0, 5.0),
                        "yaw": _clip_normal(rng, 0.0, 2.0, -6.0, 6.0)}
    prof["offset_mm"] = [0.0, _clip_normal(rng, 15.0, 15.0, -30.0, 60.0), _clip_normal(rng, 0.0, 8.0, -25.0, 25.0)]
    # site and scanner
    kvp = int(_pick(rng, KVP))
    prof.update(kvp=kvp, bone_factor=KVP[kvp][1], iodine_factor=KVP[kvp][2],
                water_offset_hu=float(rng.uniform(-7.0, 7.0)),
                kernel=str(rng.choice(["soft", "sharp"], p=[0.7, 0.3])),
                low_dose=bool(rng.random() < 0.2), aec_strength=float(rng.uniform(0.5, 0.9)),
                protocol=str(_pick(rng, PROTOCOLS)))
    prof["dose_noise_factor"] = float(rng.uniform(1.8, 3.0)) if prof["low_dose"] else 1.0
    prof["kernel_noise_factor"] = float(rng.uniform(1.6, 2.2)) if prof["kernel"] == "sharp" else 1.0
    prof["hard"] = bool(tha or trab < 100.0 or n_met > 0 or (prof["low_dose"] and bmi > 32.0)
                        or (prof["protocol"] == "hip_limited" and abs(prof["pose_deg"]["pitch"]) > 7.0))
    return prof


def _rim_direction(rng) -> np.ndarray:
    """A direction (z, y, x; x towards the joint's lateral side) on the acetabular rim: 60-85 degrees
    from an acetabular axis pointing laterally and downwards."""
    axis = np.array([-0.77, -0.2, 0.6])
    axis /= np.linalg.norm(axis)
    ref = np.cross(axis, [0.0, 1.0, 0.0])
    ref /= np.linalg.norm(ref)
    other = np.cross(axis, ref)
    ang, off = rng.uniform(0, 2 * np.pi), np.deg2rad(rng.uniform(60.0, 85.0))
    d = np.cos(off) * axis + np.sin(off) * (np.cos(ang) * ref + np.sin(ang) * other)
    return d / np.linalg.norm(d)
