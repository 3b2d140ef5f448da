import json

import numpy as np
import pytest
import SimpleITK as sitk
import tifffile

from medseg_bench.io import Geometry, ImageReadError, read_image, read_image_header, sidecar_path, write_image


@pytest.mark.parametrize("ending", [".nii.gz", ".nii", ".mha", ".nrrd"])
def test_medical_round_trip_anisotropic_non_identity_direction(tmp_path, ending):
    rng = np.random.default_rng(0)
    arr = rng.normal(size=(7, 11, 13)).astype(np.float32)
    c, s = np.cos(0.3), np.sin(0.3)
    direction = (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0)
    geo = Geometry(spacing=(2.5, 0.7, 0.6), origin=(-100.5, 20.25, 3.0), direction=direction)
    path = tmp_path / f"img{ending}"
    write_image(path, arr, geo)
    back, geo2 = read_image(path)
    assert back.shape == (7, 11, 13)
    np.testing.assert_array_equal(back, arr)
    assert geo2.spacing == pytest.approx(geo.spacing, abs=1e-6)
    assert geo2.origin == pytest.approx(geo.origin, abs=1e-6)
    assert geo2.direction == pytest.approx(geo.direction, abs=1e-6)
    # numpy axis order: spacing[0] is the slice (z) spacing; ITK stores it last
    assert sitk.ReadImage(str(path)).GetSpacing() == pytest.approx((0.6, 0.7, 2.5))
    shape, geo3 = read_image_header(path)
    assert shape == (7, 11, 13) and geo3.spacing == pytest.approx(geo.spacing)


def test_png_rgb_with_sidecar_spacing(tmp_path):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    path = tmp_path / "tile_0000.png"
    write_image(path, rgb, Geometry((0.5, 0.25)))
    assert json.loads(sidecar_path(path).read_text()) == {"spacing": [0.5, 0.25]}
    back, geo = read_image(path)
    np.testing.assert_array_equal(back, rgb)
    assert geo.spacing == (0.5, 0.25)


def test_png_spacing_falls_back_to_default_then_one(tmp_path):
    path = tmp_path / "grey.png"
    write_image(path, np.arange(12, dtype=np.uint8).reshape(3, 4))
    assert not sidecar_path(path).exists()
    assert read_image(path)[1].spacing == (1.0, 1.0)
    assert read_image(path, spacing=(0.1, 0.2))[1].spacing == (0.1, 0.2)


def test_lzw_tiff_rgb_and_grey(tmp_path):
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, size=(16, 24, 3), dtype=np.uint8)
    path = tmp_path / "tile.tif"
    write_image(path, rgb)
    with tifffile.TiffFile(path) as tf:
        assert tf.pages[0].compression.name == "LZW"
    back, geo = read_image(path)
    np.testing.assert_array_equal(back, rgb)
    # a TIFF written by another tool (LZW, grey, uint16)
    grey = rng.integers(0, 4000, size=(9, 9), dtype=np.uint16)
    other = tmp_path / "other.tiff"
    tifffile.imwrite(other, grey, compression="lzw")
    np.testing.assert_array_equal(read_image(other)[0], grey)


def test_unreadable_and_truncated_files_name_the_file(tmp_path):
    missing = tmp_path / "nope.nii.gz"
    with pytest.raises(ImageReadError, match="nope.nii.gz: file does not exist"):
        read_image(missing)
    good = tmp_path / "good.nii.gz"
    write_image(good, np.zeros((8, 8, 8), np.float32), Geometry((1, 1, 1)))
    trunc = tmp_path / "trunc.nii.gz"
    trunc.write_bytes(good.read_bytes()[:60])
    with pytest.raises(ImageReadError, match="trunc.nii.gz: unreadable or truncated"):
        read_image(trunc)
    bad_png = tmp_path / "bad.png"
    bad_png.write_bytes(b"not a png at all")
    with pytest.raises(ImageReadError, match="bad.png: unreadable or truncated"):
        read_image(bad_png)
    with pytest.raises(ImageReadError, match="unsupported image format"):
        (tmp_path / "x.jpg").write_bytes(b"..")
        read_image(tmp_path / "x.jpg")


def test_write_is_atomic_no_temp_left(tmp_path):
    write_image(tmp_path / "a.nii.gz", np.ones((4, 4, 4), np.uint8), Geometry((1, 1, 1)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz"]
    with pytest.raises(ValueError, match="PNG needs uint8 or uint16"):
        write_image(tmp_path / "f.png", np.ones((4, 4), np.float32))
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_geometry_differences():
    a = Geometry((1.0, 2.0, 3.0))
    b = Geometry((1.0, 2.0, 3.1), origin=(0, 0, 1))
    diffs = a.differences(b)
    assert [d[0] for d in diffs] == ["spacing", "origin"]
    assert diffs[0] == ("spacing", (1.0, 2.0, 3.0), (1.0, 2.0, 3.1))
    assert a.differences(Geometry((1.0, 2.0, 3.00001))) == []
    assert Geometry.from_dict(b.to_dict()) == b
