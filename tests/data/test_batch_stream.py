import numpy as np
import pytest

from medseg_bench.data import BatchStream, CaseArrays, crop_padded, foreground_locations, sample_size_for


def _cases(volume=False, n=3):
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        shape = (10, 30, 30) if volume else (30, 30)
        seg = np.zeros(shape, np.int16)
        seg[..., 3:6, 20:24] = 1 + (i % 2)  # a small object of class 1 or 2
        out.append(CaseArrays(f"c{i}", rng.normal(size=(2, *shape)).astype(np.float32), seg, foreground_locations(seg)))
    return out


def test_crop_padded_pads_outside():
    a = np.arange(16).reshape(1, 4, 4)
    c = crop_padded(a, [-1, 2], [3, 3], pad_value=-7)
    assert c.shape == (1, 3, 3)
    assert (c[0, 0] == -7).all() and (c[0, 1:, 2] == -7).all()
    np.testing.assert_array_equal(c[0, 1:, :2], a[0, :2, 2:])


def test_oversampling_hits_foreground_and_shapes():
    s = BatchStream(_cases(), (8, 8), 6, None, oversample_foreground=0.5, seed=0)
    hits = 0
    for _ in range(10):
        b = next(s)
        assert b["data"].shape == (6, 2, 8, 8) and b["seg"].shape == (6, 1, 8, 8) and b["seg"].dtype == np.int16
        hits += sum(b["seg"][i].max() > 0 for i in (3, 4, 5))  # the forced-foreground half
    assert hits == 30


def test_2d_slices_of_volumes_and_3d_patches():
    s = BatchStream(_cases(volume=True), (16, 16), 4, {"mirror_axes": [0, 1]}, seed=1)
    b = next(s)
    assert b["data"].shape == (4, 2, 16, 16)
    s3 = BatchStream(_cases(volume=True), (8, 16, 16), 2, {"spatial": {"p_rotation": 1, "rotation": {"x": [-0.2, 0.2]}}}, seed=1)
    assert next(s3)["seg"].shape == (2, 1, 8, 16, 16)
    with pytest.raises(ValueError, match="does not fit"):
        BatchStream(_cases(), (4, 8, 8), 2)


def test_unlabelled_stream_has_no_seg_and_state_roundtrip():
    cases = [CaseArrays(c.case_id, c.image) for c in _cases()]
    aug = {"spatial": {"p_rotation": 1, "rotation": {"x": [-0.5, 0.5]}, "p_scale": 1, "scale": [0.8, 1.2]},
           "gamma": [{"p": 0.5, "range": [0.7, 1.5]}], "gaussian_noise": {"p": 0.5, "variance": [0, 0.1]},
           "mirror_axes": [0, 1]}
    s = BatchStream(cases, (12, 12), 3, aug, seed=5)
    next(s)
    state = s.state_dict()
    np.random.seed(0)
    a = next(s)
    assert "seg" not in a
    s.load_state_dict(state)
    np.random.seed(99)  # the global numpy state does not leak into the stream
    b = next(s)
    np.testing.assert_array_equal(a["data"], b["data"])


def test_sample_size_grows_for_rotation():
    assert sample_size_for([64, 64], {}) == [64, 64]
    assert sample_size_for([64, 64], {"spatial": {"p_rotation": 0.2, "rotation": {"x": [-3.14, 3.14]}}})[0] == 91
    assert sample_size_for([64, 64], {"initial_patch_size": [100, 90], "spatial": {"p_scale": 0.2, "scale": [0.7, 1.4]}}) == [100, 90]
