"""``nuclei_he``: simulated H&E histology tiles with nucleus instance labels.

What it models (bright-field microscopy of a 4-5 um H&E section):

* **Beer-Lambert stain mixing**: transmitted light ``I = I0 * 10**(-OD)`` with the optical density
  ``OD = c_H * h + c_E * e`` of haematoxylin and eosin, ``h`` and ``e`` their unit OD colour vectors
  (Ruifrok & Johnston, Anal Quant Cytol Histol 2001). Each image draws its own stain vectors,
  stain strengths and illuminant: the stain variation between labs and batches that stain
  normalisation (Macenko et al., ISBI 2009) addresses.
* **tissue**: eosinophilic stroma with wavy collagen fibres, epithelial nests with pink-violet
  cytoplasm, lumen / white space;
* **nuclei** of three kinds: lymphocytes (small, round, dense dark chromatin), epithelial / tumour
  nuclei (large, irregular, vesicular: a dark membrane rim, pale granular chromatin, nucleoli) and
  fibroblasts (spindles aligned with the fibres). Shapes are ellipses deformed by low-order
  harmonics; nuclei are packed into touching clusters and may overlap (up to a capped fraction);
* **optics and sensor**: defocus blur and sensor noise; 8-bit RGB.

Overlap rule: where two nuclei overlap, the image shows both (their optical densities add, as for
stacked nuclei in a section) and the instance map gives the pixel to the nucleus drawn later (the one
on top). The semantic label is the union of all nuclei, so its foreground equals the instance map's.

Pale vesicular nuclei are about as light (grey = mean of R, G, B) as dense eosinophilic stroma and
cytoplasm, and blur lightens small nuclei, so a global threshold cannot segment the nuclei; colour,
texture and shape can. Tiles mimic the organs and magnification of MoNuSeg (Kumar et al., IEEE TMI
2017). Card: ``datasets/nuclei_he.md``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from ..io import Geometry, RawDatasetWriter
from . import register_generator
from ._he_cohort import sample_profile
from ._texture2d import anisotropic_noise, size_row, smooth_noise, star_polygon_radius, warp_field
from ._writing import SimulatedCase, write_simulated_cases

__all__ = ["HAEMATOXYLIN", "EOSIN", "SIZES", "VERSION", "generate_nuclei_he", "simulate_he_tile"]

VERSION = "2.0.0"
#: unit OD vectors (R, G, B) of haematoxylin and eosin (Ruifrok & Johnston 2001)
HAEMATOXYLIN = np.array([0.650, 0.704, 0.286])
EOSIN = np.array([0.072, 0.990, 0.105])
#: size -> (tile side px, pixel size um, n_train, n_test, n_unlabelled)
SIZES = {"tiny": (96, 0.5, 4, 2, 2), "small": (256, 0.5, 24, 12, 12), "full": (1000, 0.25, 60, 30, 60)}
_SUBSET_CODE = {"train": 0, "test": 1, "unlabelled": 2}
#: nucleus kinds: semi-axis a (um), ratio b/a, shape irregularity, H concentration range
_KINDS = {
    "lymphocyte": dict(a=(2.6, 3.6), ratio=(0.8, 1.0), irregular=0.04, conc=(1.0, 1.5)),
    "epithelial": dict(a=(4.0, 7.0), ratio=(0.6, 0.95), irregular=0.10, conc=(0.2, 0.6)),
    "fibroblast": dict(a=(5.0, 9.0), ratio=(0.2, 0.35), irregular=0.05, conc=(0.8, 1.25)),
}


def _stains(rng, prof):
    """Per-image stain OD vectors (unit norm, positive) and strengths, from the tile's lab profile."""
    def jitter(v):
        w = np.clip(v + rng.normal(0, prof["vector_sd"], 3), 0.01, None)
        return w / np.linalg.norm(w)

    return jitter(HAEMATOXYLIN), jitter(EOSIN), prof["h_scale"], prof["e_scale"]


def _nucleus(rng, kind, px_um, fibre_angle, prof):
    """Shape parameters of one nucleus (px); epithelial nuclei take the organ's size, elongation,
    irregularity and chromatin factors (``prof``, see :mod:`._he_cohort`)."""
    k = _KINDS[kind]
    epi = kind == "epithelial"
    a = rng.uniform(*k["a"]) * (prof["epi_size"] if epi else 1.0) / px_um
    b = a * rng.uniform(*(prof["epi_ratio"] if epi else k["ratio"]))
    orient = fibre_angle + rng.normal(0, 0.25) if kind == "fibroblast" else rng.uniform(0, np.pi)
    harm = rng.normal(0, k["irregular"] * (prof["epi_irregular"] if epi else 1.0), 4) / np.arange(1, 5)
    harm = harm * min(1.0, 0.6 / max(float(np.abs(harm).sum()), 1e-9))  # keep the radius positive
    return dict(kind=kind, a=a, b=b, orient=orient, harm=harm, phases=rng.uniform(0, 2 * np.pi, 4),
                conc=rng.uniform(*k["conc"]) * (prof["epi_conc"] if epi else 1.0))


def _rho(shape_px, nuc, cy, cx):
    """Bounding box slices and normalised radius (1 at the boundary) of a nucleus centred at (cy, cx)."""
    reach = nuc["a"] * (1.0 + np.abs(nuc["harm"]).sum()) + 2.0
    y0, y1 = max(int(cy - reach), 0), min(int(cy + reach) + 2, shape_px[0])
    x0, x1 = max(int(cx - reach), 0), min(int(cx + reach) + 2, shape_px[1])
    if y0 >= y1 or x0 >= x1:
        return None, None
    yy, xx = np.meshgrid(np.arange(y0, y1) - cy, np.arange(x0, x1) - cx, indexing="ij")
    r = np.hypot(yy, xx)
    radius = star_polygon_radius(np.arctan2(yy, xx), (nuc["a"], nuc["b"]), nuc["orient"], nuc["harm"], nuc["phases"])
    return (slice(y0, y1), slice(x0, x1)), r / np.maximum(radius, 1e-3)


def _place_nuclei(rng, shape, px_um, regions, fibre_angle, prof):
    """Sample nuclei and rasterise them: returns (instance map int32, H-concentration field).

    ``regions`` maps a kind to (probability map over pixels, target count). A candidate is rejected
    when it would cover more than ``max_overlap`` of itself or of a neighbour (touching is allowed).
    """
    inst = np.zeros(shape, np.int32)
    conc = np.zeros(shape, np.float32)
    chromatin = smooth_noise(rng, shape, 0.5 / px_um)
    granules = smooth_noise(rng, shape, 0.25 / px_um)
    areas = [0]
    max_overlap = prof["max_overlap"]
    plans = []
    for kind, (prob, count) in regions.items():
        if count <= 0 or prob.sum() <= 0:
            continue
        p = (prob / prob.sum()).ravel()
        idx = rng.choice(p.size, size=count * 3, p=p)
        plans += [(kind, i) for i in idx]
    rng.shuffle(plans)
    budget = {kind: count for kind, (_, count) in regions.items()}
    for kind, flat in plans:
        if budget[kind] <= 0:
            continue
        cy, cx = np.unravel_index(flat, shape)
        cy, cx = cy + rng.uniform(-0.5, 0.5), cx + rng.uniform(-0.5, 0.5)
        nuc = _nucleus(rng, kind, px_um, fibre_angle, prof)
        box, rho = _rho(shape, nuc, cy, cx)
        if box is None:
            continue
        mask = rho <= 1.0
        area = int(mask.sum())
        if area < 4:
            continue
        under = inst[box][mask]
        if np.count_nonzero(under) > max_overlap * area:
            continue
        ids, covered = np.unique(under[under > 0], return_counts=True)
        if any(c > max_overlap * areas[i] for i, c in zip(ids, covered)):
            continue
        budget[kind] -= 1
        new_id = len(areas)
        areas.append(area)
        inst[box][mask] = new_id  # later nucleus wins the overlap
        # partial-volume edge over ~0.5 px, chromatin texture, and kind-specific structure
        edge = 1.0 / (1.0 + np.exp((rho - 1.0) * min(nuc["a"], nuc["b"] * 2) / 0.5))
        tex = 1.0 + 0.15 * chromatin[box]
        c = nuc["conc"] * tex
        if kind == "epithelial":
            rim = np.exp(-(((1.0 - rho) / 0.18) ** 2))
            c = nuc["conc"] * (0.45 + 0.8 * rim + 0.4 * np.clip(granules[box], 0, None)) * tex
            for _ in range(rng.integers(0, 3)):  # nucleoli
                ny, nx = rng.normal(0, 0.3 * nuc["b"], 2)
                yy, xx = np.meshgrid(np.arange(box[0].start, box[0].stop) - cy - ny,
                                     np.arange(box[1].start, box[1].stop) - cx - nx, indexing="ij")
                c = c + 0.8 * np.exp(-(yy ** 2 + xx ** 2) / (2 * (0.5 / px_um) ** 2))
        conc[box] += (edge * c).astype(np.float32)
    # drop instances fully covered by later ones and number the rest 1..N
    present = np.unique(inst[inst > 0])
    lut = np.zeros(len(areas), np.int32)
    lut[present] = np.arange(1, present.size + 1)
    return lut[inst], conc


def _red_cells(rng, shape, px_um, allowed):
    """Optical density (y, x, 3) of erythrocytes: small biconcave discs (about 7.5 um) in a few
    capillary-like clusters in the stroma, stained bright red (haemoglobin plus eosin)."""
    od = np.zeros(shape + (3,), np.float32)
    n_clusters = rng.choice([0, 0, 1, 2, 3])
    ys, xs = np.nonzero(allowed)
    if n_clusters == 0 or ys.size == 0:
        return od
    rbc_vec = np.array([0.08, 0.80, 0.59])
    for _ in range(n_clusters):
        k = rng.integers(ys.size)
        cy, cx, ang = ys[k], xs[k], rng.uniform(0, np.pi)
        for _ in range(rng.integers(3, 15)):  # cells strung along a capillary
            t = rng.normal(0, 8.0 / px_um)
            y = cy + t * np.sin(ang) + rng.normal(0, 2.0 / px_um)
            x = cx + t * np.cos(ang) + rng.normal(0, 2.0 / px_um)
            radius = rng.uniform(3.2, 4.0) / px_um
            y0, y1 = max(int(y - radius) - 1, 0), min(int(y + radius) + 2, shape[0])
            x0, x1 = max(int(x - radius) - 1, 0), min(int(x + radius) + 2, shape[1])
            if y0 >= y1 or x0 >= x1:
                continue
            yy, xx = np.meshgrid(np.arange(y0, y1) - y, np.arange(x0, x1) - x, indexing="ij")
            r = np.hypot(yy, xx) / radius
            disc = np.clip(1.0 - r ** 8, 0, 1) * (0.75 + 0.25 * np.clip(r, 0, 1) ** 2)  # paler centre
            od[y0:y1, x0:x1] += (rng.uniform(0.5, 0.9) * disc)[..., None] * rbc_vec
    return od


def simulate_he_tile(rng: np.random.Generator, n: int, px_um: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """Simulate one H&E tile.

    Args:
        rng: the case's random generator (all randomness comes from it).
        n: tile side in px.
        px_um: pixel size in micrometres (0.25 ~ 40x, 0.5 ~ 20x).

    Returns:
        ``(image uint8 (3, n, n), instances uint16 (n, n) with 0 = background, parameters dict)``.
    """
    shape = (n, n)
    prof = sample_profile(rng)
    h_vec, e_vec, h_scale, e_scale = _stains(rng, prof)
    i0 = 255.0 * np.asarray(prof["illuminant"])
    fibre_angle = rng.uniform(0, np.pi)
    lumen_frac = prof["lumen_frac"] if prof["lumen_frac"] >= 0.01 else 0.0
    epi_frac = prof["epi_frac"]
    lumen_field = smooth_noise(rng, shape, 12.0 / px_um)
    lumen = lumen_field > np.quantile(lumen_field, 1.0 - lumen_frac) if lumen_frac > 0 else np.zeros(shape, bool)
    epi_field = smooth_noise(rng, shape, 10.0 / px_um)
    epi = (epi_field > np.quantile(epi_field, 1.0 - epi_frac)) & ~ndi.binary_dilation(lumen, iterations=2)
    epi_soft = ndi.gaussian_filter(epi.astype(np.float32), 1.0 / px_um)
    lumen_soft = ndi.gaussian_filter(lumen.astype(np.float32), 0.8 / px_um)

    fibres = anisotropic_noise(rng, shape, 4.0 / px_um, 0.6 / px_um, fibre_angle)
    fibres = warp_field(rng, fibres, 3.0 / px_um, 8.0 / px_um)
    stroma_e = rng.uniform(0.12, 0.4) * (1.0 + 0.4 * np.clip(fibres, -1.5, 2.5)) * (1 + 0.15 * smooth_noise(rng, shape, 5 / px_um))
    cyto_e = rng.uniform(0.2, 0.55) * (1.0 + 0.15 * smooth_noise(rng, shape, 1.0 / px_um))
    eosin = e_scale * np.clip((1 - epi_soft) * stroma_e + epi_soft * cyto_e, 0.0, None) * (1.0 - lumen_soft)
    h_bg = h_scale * (rng.uniform(0.03, 0.12) + rng.uniform(0.1, 0.45) * epi_soft) * (1.0 - lumen_soft)

    px_area = n * n
    epi_nuc = np.pi * (5.5 / px_um) ** 2 * 0.75
    counts = {
        "epithelial": int(epi.sum() * rng.uniform(0.35, 0.7) * prof["epi_count"] / (epi_nuc * prof["epi_size"] ** 2)),
        "lymphocyte": int(px_area * rng.uniform(0.01, 0.08) * prof["lymph_count"] / (np.pi * (3.0 / px_um) ** 2)),
        "fibroblast": int((~epi & ~lumen).sum() * rng.uniform(0.02, 0.06) * prof["fibro_count"] / (np.pi * 7 * 1.8 / px_um ** 2)),
    }
    stroma_p = (~epi & ~lumen).astype(np.float64)
    lymph_p = stroma_p * np.exp(1.5 * smooth_noise(rng, shape, 15.0 / px_um)) + 0.2 * epi
    regions = {"epithelial": (epi.astype(np.float64), counts["epithelial"]),
               "lymphocyte": (lymph_p, counts["lymphocyte"]),
               "fibroblast": (stroma_p, counts["fibroblast"])}
    inst, h_nuc = _place_nuclei(rng, shape, px_um, regions, fibre_angle, prof)
    nuc_cover = np.clip(h_nuc / 0.5, 0, 1)
    od_h = h_bg + h_scale * h_nuc
    od_e = eosin * (1.0 - 0.7 * nuc_cover)
    # section thickness / staining unevenness scales all optical densities smoothly across the tile
    thickness = np.clip(1.0 + rng.uniform(0.1, 0.3) * smooth_noise(rng, shape, 25.0 / px_um), 0.4, 1.8)
    od = (od_h[..., None] * h_vec + od_e[..., None] * e_vec + _red_cells(rng, shape, px_um, stroma_p > 0)) * thickness[..., None]
    rgb = i0 * np.power(10.0, -od)
    blur = prof["blur_um"] / px_um
    rgb = ndi.gaussian_filter(rgb, (blur, blur, 0))
    rgb = 255.0 * np.clip(rgb / 255.0, 0, 1) ** prof["gamma"]  # scanner tone curve
    rgb += rng.normal(0, rng.uniform(1.0, 4.0), rgb.shape)
    image = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
    params = {"h_vector": h_vec.round(4).tolist(), "e_vector": e_vec.round(4).tolist(),
              "h_scale": float(h_scale), "e_scale": float(e_scale), "blur_um": float(blur * px_um),
              "epithelium_fraction": float(epi.mean()), "lumen_fraction": float(lumen.mean()),
              "nuclei": int(inst.max()), "nucleus_fraction": float((inst > 0).mean()),
              "organ": prof["organ"], "hard": prof["hard"], "gamma": prof["gamma"]}
    return np.moveaxis(image, -1, 0), inst.astype(np.uint16), params


@register_generator("nuclei_he", description="2D RGB H&E tiles with nuclei (semantic + instance labels)",
                    version=VERSION, dims=2, modality="H&E")
def generate_nuclei_he(out_dir: Path, size: str, seed: int) -> None:
    """Write a raw ``nuclei_he`` dataset of ``size`` to ``out_dir`` (deterministic from ``seed``).

    Case ``i`` of subset ``s`` uses ``numpy.random.default_rng([seed, code(s), i])``, so a case does not
    change when the number of cases does. Spacing in dataset.json is the pixel size in mm.
    """
    n, px_um, n_train, n_test, n_unl = size_row(size, SIZES)
    spacing_mm = px_um / 1000.0
    writer = RawDatasetWriter(out_dir, {"0": "R", "1": "G", "2": "B"}, {"background": 0, "nucleus": 1}, ".png",
                              instance_labels=True, spacing=(spacing_mm, spacing_mm), overwrite=True)
    geometry = Geometry.identity(2)  # spacing comes from dataset.json (no per-image sidecars)
    prefixes = {"train": "he", "test": "hets", "unlabelled": "heun"}

    def simulate(subset, i):
        image, inst, p = simulate_he_tile(np.random.default_rng([seed, _SUBSET_CODE[subset], i]), n, px_um)
        return SimulatedCase(image, geometry, (inst > 0).astype(np.uint8), p, instances=inst)

    write_simulated_cases(
        writer, {"train": n_train, "test": n_test, "unlabelled": n_unl},
        lambda subset, i: f"{prefixes[subset]}_{i:03d}", simulate,
        lambda params: {
            "name": Path(out_dir).name,
            "description": "Simulated H&E nuclei tiles (medseg_bench nuclei_he)",
            "reference": "Ruifrok & Johnston 2001 (stain OD vectors); Kumar et al., IEEE TMI 2017 (MoNuSeg task)",
            "licence": "CC0 (generated data)",
            "spacing_unit": "mm",
            "overlap_rule": "image: optical densities add; instances: the nucleus drawn later owns the overlap",
            "generator": {"name": "nuclei_he", "version": VERSION, "size": size, "seed": seed,
                          "image_size_px": n, "pixel_size_um": px_um},
            "case_parameters": params,
        })
