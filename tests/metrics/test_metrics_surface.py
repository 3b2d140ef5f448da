"""Surface metrics against an exact brute-force reference (surface points + KD-tree, float64)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _metrics_reference import ref_directed, ref_surface, ref_surface_metrics
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage as ndi

from medseg_bench.metrics import (
    assd,
    hausdorff,
    hd95,
    nsd,
    surface_distances,
    surface_metrics,
    surface_points,
)

RTOL = 1e-9


def _blobs(shape, rng, n=3, smooth=2.0, frac=0.6):
    f = ndi.gaussian_filter(rng.standard_normal(shape), smooth)
    return f > np.quantile(f, frac)


def _case_pairs(ndim: int, seed: int):
    """(name, pred, ref) covering the hard cases the issue lists."""
    rng = np.random.default_rng(seed)
    shape = (44, 57) if ndim == 2 else (14, 23, 19)
    a = _blobs(shape, rng)
    b = _blobs(shape, rng)
    out = [("random", a, b)]
    perturbed = a.copy()
    perturbed ^= ndi.binary_dilation(a) & (rng.random(shape) < 0.3)
    out.append(("perturbed", perturbed, a))
    out.append(("shifted", np.roll(a, (3,) * ndim, axis=tuple(range(ndim))), a))
    border = np.zeros(shape, bool)
    border[(slice(0, 5),) * ndim] = True  # touches the image border on every axis
    out.append(("border", border, a))
    full = np.ones(shape, bool)  # whole image: the surface is the image boundary
    out.append(("full_image", full, border))
    single = np.zeros(shape, bool)
    single[tuple(s // 2 for s in shape)] = True
    single2 = np.zeros(shape, bool)
    single2[tuple(s // 3 for s in shape)] = True
    out.append(("single_voxels", single, single2))
    out.append(("single_vs_blob", single, a))
    holes = ndi.binary_closing(a, iterations=2)
    holes &= rng.random(shape) > 0.08  # punched holes inside the object
    out.append(("holes", holes, a))
    comps = np.zeros(shape, bool)
    for _ in range(6):
        c = tuple(rng.integers(0, s) for s in shape)
        comps[tuple(slice(max(0, ci - 2), ci + 2) for ci in c)] = True
    out.append(("components", comps, b))
    d1 = np.zeros(shape, bool)
    d2 = np.zeros(shape, bool)
    d1[(slice(0, 3),) * ndim] = True
    d2[tuple(slice(s - 4, s) for s in shape)] = True
    out.append(("disjoint_far", d1, d2))  # beyond the walk radius: exercises the KD-tree path
    scattered = a | (rng.random(shape) < 0.01)
    out.append(("scattered", scattered, a))
    empty = np.zeros(shape, bool)
    out.append(("pred_empty", empty, a))
    out.append(("ref_empty", a, empty))
    out.append(("both_empty", empty, empty))
    return out


SPACINGS = {
    2: [None, (1.0, 1.0), (0.7, 1.3), (2.5, 0.8)],
    3: [None, (2.5, 0.8, 0.8), (1.0, 0.5, 2.0), (3.0, 3.0, 3.0)],
}
CASES = [
    pytest.param(ndim, seed, sp, id=f"{ndim}d-seed{seed}-sp{sp}")
    for ndim in (2, 3)
    for seed in range(3)
    for sp in SPACINGS[ndim]
]


def _assert_close(ours, ref, name):
    if math.isnan(ref):
        assert math.isnan(ours), name
    elif math.isinf(ref):
        assert ours == ref, name
    else:
        assert ours == pytest.approx(ref, rel=RTOL, abs=1e-12), name


@pytest.mark.parametrize("ndim,seed,spacing", CASES)
def test_distances_and_metrics_match_bruteforce(ndim, seed, spacing):
    for name, p, r in _case_pairs(ndim, seed):
        dpr, drp = surface_distances(p, r, spacing)
        np.testing.assert_allclose(dpr, ref_directed(p, r, spacing), rtol=RTOL, atol=0, err_msg=name)
        np.testing.assert_allclose(drp, ref_directed(r, p, spacing), rtol=RTOL, atol=0, err_msg=name)
        assert dpr.dtype == np.float64
        ours = surface_metrics(p, r, spacing, tolerance=2.0)
        ref = ref_surface_metrics(p, r, spacing, tau=2.0)
        for k in ("hd", "hd95", "hd95_pooled", "assd", "nsd"):
            _assert_close(getattr(ours, k), ref[k], f"{name}: {k}")
        assert ours.n_surface_pred == len(ref_surface(p))
        assert ours.n_surface_ref == len(ref_surface(r))


def test_surface_points_match_erosion_definition():
    rng = np.random.default_rng(1)
    for shape in [(1, 1), (1, 7), (5, 1), (9, 11), (1, 5, 6), (4, 1, 3), (6, 7, 8)]:
        m = rng.random(shape) < 0.6
        np.testing.assert_array_equal(surface_points(m), ref_surface(m).astype(float))
    m = np.ones((3, 4, 5), bool)
    np.testing.assert_allclose(surface_points(m, (2.0, 1.0, 0.5)), ref_surface(m) * [2.0, 1.0, 0.5])


@pytest.mark.parametrize("far_work", [20, 60, 10**6])
def test_large_2d_far_and_near_mix(monkeypatch, far_work):
    """Some queries resolve in the plain row search, others in the block-pruned far search or the
    KD-tree: at a row-work limit of 20 entries (the defaults resolve all of them in the row searches
    on an image this small); far_work 20 = no far search, 10**6 = no KD-tree."""
    from medseg_bench.metrics import _surface

    monkeypatch.setattr(_surface, "_MAX_ROW_WORK", 20)
    monkeypatch.setattr(_surface, "_MAX_FAR_WORK", far_work)
    calls = []
    tree = _surface.cKDTree

    class CountingTree(tree):
        def query(self, x, *args, **kwargs):
            calls.append(len(x))
            return super().query(x, *args, **kwargs)

    monkeypatch.setattr(_surface, "cKDTree", CountingTree)
    rng = np.random.default_rng(7)
    ref = _blobs((300, 260), rng, smooth=12, frac=0.7)
    pred = np.roll(ref, (25, -31), axis=(0, 1)) | (rng.random(ref.shape) < 0.002)
    for sp in (None, (0.5, 1.7)):
        dpr, drp = surface_distances(pred, ref, sp)
        np.testing.assert_allclose(dpr, ref_directed(pred, ref, sp), rtol=RTOL)
        np.testing.assert_allclose(drp, ref_directed(ref, pred, sp), rtol=RTOL)
    n_pred = len(_surface.surface_points(pred))
    if far_work == 10**6:
        assert not calls  # the far search answered everything
    else:
        assert calls and 0 < max(calls) < n_pred  # both paths taken


def test_empty_mask_conventions():
    a = np.zeros((6, 6), bool)
    b = a.copy()
    b[2:4, 2:4] = True
    for f in (hausdorff, hd95, assd):
        assert math.isnan(f(a, a))
        assert f(a, b) == math.inf and f(b, a) == math.inf
    assert math.isnan(nsd(a, a)) and nsd(a, b) == 0.0
    d_ab, d_ba = surface_distances(a, b)
    assert d_ab.size == 0 and np.all(np.isinf(d_ba)) and d_ba.size == 4


def test_hd95_modes_and_known_values():
    a = np.zeros((1, 20), bool)
    a[0, 0:5] = True
    b = np.zeros((1, 20), bool)
    b[0, 8:10] = True
    # surfaces: a -> every voxel (1-pixel-high strip); distances a->b: 8,7,6,5,4; b->a: 4,5
    d_ab, d_ba = surface_distances(a, b)
    np.testing.assert_array_equal(d_ab, [8, 7, 6, 5, 4])
    np.testing.assert_array_equal(d_ba, [4, 5])
    assert hd95(a, b) == max(np.percentile([8, 7, 6, 5, 4], 95), np.percentile([4, 5], 95))
    assert hd95(a, b, mode="pooled") == np.percentile([8, 7, 6, 5, 4, 4, 5], 95)
    assert hausdorff(a, b) == 8.0
    assert assd(a, b) == pytest.approx(np.mean([8, 7, 6, 5, 4, 4, 5]))
    assert nsd(a, b, tolerance=5.0) == pytest.approx(4 / 7)
    assert hausdorff(a, b, spacing=(1.0, 0.5)) == 4.0
    with pytest.raises(ValueError, match="mode"):
        hd95(a, b, mode="mean")


def test_input_validation():
    with pytest.raises(ValueError, match="shapes differ"):
        surface_distances(np.zeros((3, 3)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="2D or 3D"):
        surface_distances(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="spacing"):
        surface_distances(np.zeros((3, 3)), np.zeros((3, 3)), spacing=(1.0, 0.0))
    with pytest.raises(ValueError, match="spacing"):
        surface_distances(np.zeros((3, 3)), np.zeros((3, 3)), spacing=(1.0, 1.0, 1.0))
    # label maps and non-contiguous views are accepted (nonzero = foreground)
    lab = np.zeros((8, 10), np.uint8)
    lab[2:5, 3:7] = 3
    assert hausdorff(lab[:, ::-1], lab[:, ::-1] > 0) == 0.0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    ndim=st.sampled_from([2, 3]),
    spacing=st.lists(st.floats(0.3, 3.0), min_size=3, max_size=3),
)
def test_property_matches_bruteforce(data, ndim, spacing):
    shape = data.draw(st.tuples(*[st.integers(1, 9)] * ndim))
    a = data.draw(arrays(bool, shape))
    b = data.draw(arrays(bool, shape))
    sp = tuple(spacing[:ndim])
    dpr, drp = surface_distances(a, b, sp)
    np.testing.assert_allclose(dpr, ref_directed(a, b, sp), rtol=RTOL)
    np.testing.assert_allclose(drp, ref_directed(b, a, sp), rtol=RTOL)
    # symmetry of the symmetric metrics
    m1, m2 = surface_metrics(a, b, sp), surface_metrics(b, a, sp)
    for k in ("hd", "hd95", "hd95_pooled", "assd", "nsd"):
        x, y = getattr(m1, k), getattr(m2, k)
        assert (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, rel=1e-12)


def test_tall_image_uses_wide_column_distances():
    """Boxes of >= 65535 rows switch the column-distance array from uint16 to uint32."""
    a = np.zeros((70_000, 3), bool)
    b = np.zeros((70_000, 3), bool)
    a[:5, :] = True
    a[69_990:, 1] = True
    b[30_000:30_004, 1:] = True
    for sp in (None, (0.01, 2.0)):
        dpr, drp = surface_distances(a, b, sp)
        np.testing.assert_allclose(dpr, ref_directed(a, b, sp), rtol=RTOL)
        np.testing.assert_allclose(drp, ref_directed(b, a, sp), rtol=RTOL)


@pytest.mark.slow  # compiles every parallel kernel (~20 s on a cold numba cache)
def test_parallel_kernels_match_serial(monkeypatch):
    """Small inputs take the serial kernels; force the parallel ones and compare."""
    from medseg_bench.metrics import _parallel

    cases = _case_pairs(3, 5) + _case_pairs(2, 5)
    serial = [surface_distances(p, r, None) for _, p, r in cases]
    monkeypatch.setattr(_parallel, "PARALLEL_MIN_WORK", 0)
    for (name, p, r), (s1, s2) in zip(cases, serial):
        d1, d2 = surface_distances(p, r, None)
        np.testing.assert_array_equal(d1, s1, err_msg=name)
        np.testing.assert_array_equal(d2, s2, err_msg=name)


@pytest.mark.parametrize("max_work,far_work", [(0, 0), (10, 10), (200, 200), (0, 300), (0, 10**6), (10, 10**6)])
def test_kdtree_fallback_is_exact(monkeypatch, max_work, far_work):
    """Queries whose row search would be too long go to the block-pruned far search, then to a
    KD-tree; force those paths (far_work <= max_work: no far search) and compare."""
    from medseg_bench.metrics import _surface

    monkeypatch.setattr(_surface, "_MAX_ROW_WORK", max_work)
    monkeypatch.setattr(_surface, "_MAX_FAR_WORK", far_work)
    monkeypatch.setattr(_surface, "_FAR_BLOCKS_MIN", 0)  # block minima even for a few far queries
    for ndim in (2, 3):
        for name, p, r in _case_pairs(ndim, 11):
            for sp in SPACINGS[ndim][:3]:
                dpr, drp = surface_distances(p, r, sp)
                np.testing.assert_allclose(dpr, ref_directed(p, r, sp), rtol=RTOL, err_msg=name)
                np.testing.assert_allclose(drp, ref_directed(r, p, sp), rtol=RTOL, err_msg=name)
