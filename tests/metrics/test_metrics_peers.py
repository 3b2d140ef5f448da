"""Surface metrics against MONAI and medpy (peers), with each deliberate difference spelled out.

* MONAI ``compute_hausdorff_distance(percentile=95)`` = our default HD95 and
  ``compute_average_surface_distance(symmetric=True)`` = our ASSD, up to MONAI's float32 (its distances
  and quantile are float32: we allow 1e-5 relative). Difference: MONAI returns NaN when exactly one
  mask is empty; we return +inf (``METRICS.md``).
* medpy (>= 0.5) ``hd95`` = our ``hd95(mode="pooled")``, ``hd`` = our HD and ``assd`` = our ASSD
  (the mean of both directed sets pooled; medpy < 0.5 averaged the two directed means instead), exact
  EDT in float64, so we compare to 1e-9. Difference: medpy raises on empty masks.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import ndimage as ndi

from medseg_bench.metrics import surface_distances, surface_metrics

torch = pytest.importorskip("torch")
monai_metrics = pytest.importorskip("monai.metrics")

F32_RTOL = 1e-5


def _pairs(ndim, seed):
    rng = np.random.default_rng(seed)
    shape = (64, 72) if ndim == 2 else (20, 26, 24)
    f = ndi.gaussian_filter(rng.standard_normal(shape), 2.5)
    ref = f > np.quantile(f, 0.65)
    g = ndi.gaussian_filter(rng.standard_normal(shape), 1.5)
    yield "perturbed", (f + 0.3 * g) > np.quantile(f, 0.65), ref
    yield "shifted", np.roll(ref, (4,) * ndim, axis=tuple(range(ndim))), ref
    yield "scattered", ref | (rng.random(shape) < 0.005), ref
    border = np.zeros(shape, bool)
    border[(slice(0, 6),) * ndim] = True
    yield "border", border, ref


def _monai(pred, ref, spacing):
    p = torch.from_numpy(pred[None, None].astype(np.float32))
    r = torch.from_numpy(ref[None, None].astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hd = monai_metrics.compute_hausdorff_distance(
            p, r, include_background=True, percentile=95, spacing=spacing
        )
        asd = monai_metrics.compute_average_surface_distance(
            p, r, include_background=True, symmetric=True, spacing=spacing
        )
        full = monai_metrics.compute_hausdorff_distance(p, r, include_background=True, spacing=spacing)
    return float(hd), float(asd), float(full)


@pytest.mark.parametrize("ndim,spacing", [(2, None), (2, (0.6, 1.4)), (3, None), (3, (2.5, 0.8, 0.8))])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_monai(ndim, spacing, seed):
    for name, pred, ref in _pairs(ndim, seed):
        ours = surface_metrics(pred, ref, spacing)
        m_hd95, m_assd, m_hd = _monai(pred, ref, spacing)
        assert ours.hd95 == pytest.approx(m_hd95, rel=F32_RTOL), name
        assert ours.assd == pytest.approx(m_assd, rel=F32_RTOL), name
        assert ours.hd == pytest.approx(m_hd, rel=F32_RTOL), name


def test_monai_one_empty_difference():
    ref = np.zeros((12, 12), bool)
    ref[3:7, 3:7] = True
    empty = np.zeros_like(ref)
    m_hd95, _, _ = _monai(empty, ref, None)
    assert math.isnan(m_hd95)  # MONAI: NaN ...
    assert surface_metrics(empty, ref).hd95 == math.inf  # ... ours: +inf, counted as a failure


@pytest.mark.parametrize("ndim,spacing", [(2, (0.6, 1.4)), (3, (2.5, 0.8, 0.8)), (3, None)])
def test_matches_medpy(ndim, spacing):
    binary = pytest.importorskip("medpy.metric.binary")
    for name, pred, ref in _pairs(ndim, 3):
        ours = surface_metrics(pred, ref, spacing)
        assert ours.hd95_pooled == pytest.approx(binary.hd95(pred, ref, voxelspacing=spacing), rel=1e-9), name
        assert ours.hd == pytest.approx(binary.hd(pred, ref, voxelspacing=spacing), rel=1e-9), name
        assert ours.assd == pytest.approx(binary.assd(pred, ref, voxelspacing=spacing), rel=1e-9), name
        # the directed sets themselves: medpy's EDT-based surface distances, in the same C order
        d_pr, _ = surface_distances(pred, ref, spacing)
        md = binary.__dict__["__surface_distances"](pred, ref, spacing, 1)
        np.testing.assert_allclose(d_pr, md, rtol=1e-9)


def test_real_ct_masks_match_bruteforce_and_monai(shared_data):
    """TotalSegmentator bone masks (real anatomy, 3 mm CT): adjacent, distant and eroded pairs."""
    from _metrics_reference import ref_directed

    from medseg_bench.io import read_image

    folder = shared_data / "totalseg_pelvis_ct" / "masks"
    masks = {}
    for name in ("hip_left", "hip_right", "femur_left"):
        arr, geo = read_image(folder / f"{name}.nii.gz")
        masks[name] = arr > 0
    spacing = geo.spacing
    eroded = ndi.binary_erosion(masks["hip_left"], iterations=2)
    pairs = [
        ("hip_left", "femur_left", masks["hip_left"], masks["femur_left"]),
        ("hip_left", "hip_right", masks["hip_left"], masks["hip_right"]),
        ("hip_left", "eroded", masks["hip_left"], eroded),
    ]
    for a_name, b_name, a, b in pairs:
        d_ab, d_ba = surface_distances(a, b, spacing)
        np.testing.assert_allclose(d_ab, ref_directed(a, b, spacing), rtol=1e-9, err_msg=f"{a_name}/{b_name}")
        np.testing.assert_allclose(d_ba, ref_directed(b, a, spacing), rtol=1e-9, err_msg=f"{a_name}/{b_name}")
        ours = surface_metrics(a, b, spacing)
        m_hd95, m_assd, _ = _monai(a, b, spacing)
        assert ours.hd95 == pytest.approx(m_hd95, rel=F32_RTOL)
        assert ours.assd == pytest.approx(m_assd, rel=F32_RTOL)
