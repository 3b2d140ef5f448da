"""Case-to-case variability of an H&E nuclei cohort for the ``nuclei_he`` simulator: which organ and
tissue a tile comes from (nuclear size, shape, density, architecture) and which lab and scanner made
it (stain colour and strength, illuminant, focus). Drawn per tile from the tile's generator, so the
simulator stays deterministic from its seed.

Sources for the ranges (documented choices, not fits):

* **Organs.** MoNuSeg's training tiles come from seven organs (breast, kidney, liver, prostate,
  bladder, colon, stomach; tumour and normal tissue from many TCGA centres) with very different
  nuclear density, size and crowding (Kumar et al., "A dataset and a technique for generalized nuclear
  segmentation for computational pathology", IEEE TMI 36:1550, 2017; Kumar et al., "A multi-organ
  nucleus segmentation challenge", IEEE TMI 39:1380, 2020). Typical nuclear sizes: lymphocytes
  5-7 um, hepatocytes ~8-10 um with prominent nucleoli, carcinoma nuclei 10-20 um and pleomorphic,
  colonic epithelium elongated and pseudo-stratified (standard histology, e.g. Kumar, Abbas & Aster,
  *Robbins Basic Pathology*, 10th ed., 2017). Each organ below scales the simulator's nucleus kinds
  (size, elongation, irregularity, chromatin density), their counts, and the tissue architecture
  (epithelial and luminal fractions).
* **Stain and scanner.** Colour differs between centres through staining protocol, section thickness
  and scanner: modelled as a per-tile jitter of the haematoxylin and eosin OD vectors and strengths
  and an illuminant colour cast, with ranges following the "HED-light" / "HED-strong" colour
  augmentations that span multi-centre variation (Tellez et al., "Quantifying the effects of data
  augmentation and stain color normalization in convolutional neural networks for computational
  pathology", Med Image Anal 58:101544, 2019), and the per-centre stain vectors of Macenko et al.
  (ISBI 2009). A minority of slides is faded or over-stained.
* **Focus.** Whole-slide scanners leave some tiles out of focus (blur of 1-2 um) — a known failure mode
  of scanner autofocus (e.g. Campanella et al., "Towards machine learned quality control: a benchmark
  for sharpness quantification in digital pathology", Comput Med Imaging Graph 65:142, 2018).

About 28 % of tiles are hard by construction: out of focus, faded, or dense lymphoid / poorly
differentiated crowding with overlapping nuclei, drawn independently; :func:`sample_profile` flags it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ORGANS", "sample_profile"]

#: organ -> probability and ranges: epithelial / lumen fraction of the tile, per-kind count factors,
#: epithelial nucleus size factor, elongation (b/a) range, irregularity factor, chromatin factor
ORGANS = {
    "breast": dict(p=0.16, epi=(0.3, 0.7), lumen=(0.0, 0.08), count=(1.0, 1.4), lymph=(0.5, 2.0), fibro=(0.8, 1.2),
                   size=(1.1, 1.4), ratio=(0.6, 0.95), irregular=1.6, conc=(0.8, 1.4)),
    "kidney": dict(p=0.14, epi=(0.4, 0.7), lumen=(0.05, 0.2), count=(0.8, 1.1), lymph=(0.3, 1.0), fibro=(0.5, 1.0),
                   size=(0.75, 0.95), ratio=(0.75, 1.0), irregular=0.8, conc=(1.0, 1.6)),
    "liver": dict(p=0.14, epi=(0.6, 0.85), lumen=(0.02, 0.08), count=(0.45, 0.7), lymph=(0.2, 0.8), fibro=(0.3, 0.7),
                  size=(0.85, 1.05), ratio=(0.8, 1.0), irregular=0.6, conc=(0.7, 1.1)),
    "prostate": dict(p=0.14, epi=(0.25, 0.5), lumen=(0.1, 0.25), count=(1.0, 1.4), lymph=(0.3, 1.0), fibro=(0.8, 1.4),
                     size=(0.75, 0.95), ratio=(0.7, 0.95), irregular=0.9, conc=(1.0, 1.5)),
    "bladder": dict(p=0.14, epi=(0.5, 0.8), lumen=(0.0, 0.05), count=(1.1, 1.5), lymph=(0.3, 1.5), fibro=(0.6, 1.0),
                    size=(0.95, 1.2), ratio=(0.6, 0.9), irregular=1.2, conc=(0.8, 1.3)),
    "colon": dict(p=0.14, epi=(0.3, 0.6), lumen=(0.05, 0.2), count=(1.2, 1.6), lymph=(1.0, 2.5), fibro=(0.6, 1.0),
                  size=(0.9, 1.15), ratio=(0.35, 0.6), irregular=1.0, conc=(1.0, 1.5)),
    "stomach": dict(p=0.14, epi=(0.3, 0.6), lumen=(0.05, 0.15), count=(0.9, 1.3), lymph=(0.8, 2.0), fibro=(0.6, 1.0),
                    size=(0.9, 1.15), ratio=(0.55, 0.9), irregular=1.1, conc=(0.9, 1.4)),
}
#: stain / scanner ranges: OD-vector jitter sd, H and E strength, illuminant per channel, gamma
STAIN = {"vector_sd": (0.03, 0.12), "h_scale": (0.6, 1.5), "e_scale": (0.5, 1.4), "illuminant": (0.86, 1.0),
         "gamma": (0.85, 1.2)}


def sample_profile(rng: np.random.Generator) -> dict:
    """One tile's cohort draws: organ and its tissue factors, stain/scanner and focus, hard-case
    features (see the module docstring). Plain numbers and strings (JSON-ready)."""
    names = list(ORGANS)
    probs = np.array([ORGANS[k]["p"] for k in names])
    organ = names[int(rng.choice(len(names), p=probs / probs.sum()))]
    o = ORGANS[organ]
    u = lambda r: float(rng.uniform(*r))  # noqa: E731
    prof = {"organ": organ, "epi_frac": u(o["epi"]), "lumen_frac": u(o["lumen"]), "epi_count": u(o["count"]),
            "lymph_count": u(o["lymph"]), "fibro_count": u(o["fibro"]), "epi_size": u(o["size"]),
            "epi_ratio": [float(v) for v in o["ratio"]], "epi_irregular": float(o["irregular"]),
            "epi_conc": u(o["conc"]),
            "vector_sd": u(STAIN["vector_sd"]), "h_scale": u(STAIN["h_scale"]), "e_scale": u(STAIN["e_scale"]),
            "illuminant": [u(STAIN["illuminant"]) for _ in range(3)], "gamma": u(STAIN["gamma"]),
            "blur_um": u((0.3, 0.8)), "max_overlap": u((0.05, 0.25))}
    hard = []
    if rng.random() < 0.12:
        prof["blur_um"] = u((1.0, 2.0))
        hard.append("out_of_focus")
    if rng.random() < 0.1:
        prof["h_scale"] = u((0.3, 0.55))
        hard.append("faded_haematoxylin")
    if rng.random() < 0.1:  # lymphoid aggregate / poorly differentiated sheet: crowded, overlapping nuclei
        prof["lymph_count"] *= u((3.0, 5.0))
        prof["epi_count"] *= u((1.2, 1.5))
        prof["max_overlap"] = u((0.3, 0.45))
        hard.append("crowded")
    prof["hard"] = hard
    return prof
