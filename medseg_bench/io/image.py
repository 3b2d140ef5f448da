"""Reading and writing single image files, with their geometry.

Axis order (used everywhere in medseg_bench):

* arrays are in **numpy order**: ``(z, y, x)`` for 3D volumes, ``(y, x)`` for 2D images and
  ``(y, x, 3)`` for RGB natural images (channel last, as stored on disk);
* :attr:`Geometry.spacing` is in the same numpy axis order (so ``spacing[0]`` is the slice spacing of
  a volume), in millimetres for medical formats and in pixels (default 1) for PNG/TIFF;
* :attr:`Geometry.origin` and :attr:`Geometry.direction` are physical-space quantities and keep
  ITK's convention: origin as ``(x, y, z)`` and direction as the row-major flattened ``ndim x ndim``
  matrix, exactly as SimpleITK reports them.

Medical formats (NIfTI ``.nii.gz``/``.nii``, ``.mha``, ``.nrrd``) store geometry and round-trip it
exactly. PNG and TIFF store none: their spacing comes from a per-case sidecar ``<stem>.json``
(``{"spacing": [sy, sx]}``), else from the ``spacing`` argument (e.g. dataset.json's ``"spacing"``),
else 1.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = [
    "Geometry",
    "ImageReadError",
    "MEDICAL_ENDINGS",
    "NATURAL_ENDINGS",
    "SUPPORTED_ENDINGS",
    "image_ending",
    "read_image",
    "read_image_header",
    "sidecar_path",
    "write_image",
]

MEDICAL_ENDINGS = (".nii.gz", ".nii", ".mha", ".nrrd")
NATURAL_ENDINGS = (".png", ".tif", ".tiff")
SUPPORTED_ENDINGS = MEDICAL_ENDINGS + NATURAL_ENDINGS


class ImageReadError(InputError, OSError):
    """An image file could not be read; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        self.reason = _one_line(reason, self.path)
        super().__init__(f"{self.path}: {self.reason}")

    def __reduce__(self):  # picklable, so that it crosses a process pool (the default needs one argument)
        return (type(self), (str(self.path), self.reason))


def _one_line(reason: str, path: Path) -> str:
    """A reader's message as one short line: SimpleITK's multi-line C++ text (source file, line,
    the path again) is cut down to its ``sitk::ERROR:`` sentence."""
    if "SimpleITK" in reason and "ERROR:" in reason:
        head = reason.split("(", 1)[0].strip()
        detail = reason.rsplit("ERROR:", 1)[1].strip().rstrip(")")
        detail = re.sub(r"^\w+\(0x[0-9a-f]+\):\s*", "", detail)  # ITK's "PNGImageIO(0x5654...): "
        detail = detail.replace(f'"{path}"', "this file").replace(f" in {path}", "").replace(str(path), "this file")
        reason = f"{head} (SimpleITK: {detail})" if head else detail
    return " ".join(reason.split())


@dataclass(frozen=True)
class Geometry:
    """Where an array sits in physical space (see the module docstring for the axis conventions).

    Attributes:
        spacing: voxel size per array axis, numpy order (mm, or px for natural images).
        origin: physical position of the first voxel, ITK order (x, y[, z]).
        direction: row-major flattened direction cosine matrix, ITK convention.
    """

    spacing: tuple[float, ...]
    origin: tuple[float, ...] = field(default=())
    direction: tuple[float, ...] = field(default=())

    def __post_init__(self):
        ndim = len(self.spacing)
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        if not self.origin:
            object.__setattr__(self, "origin", (0.0,) * ndim)
        if not self.direction:
            object.__setattr__(self, "direction", tuple(float(v) for v in np.eye(ndim).ravel()))
        object.__setattr__(self, "origin", tuple(float(v) for v in self.origin))
        object.__setattr__(self, "direction", tuple(float(v) for v in self.direction))
        if len(self.origin) != ndim or len(self.direction) != ndim * ndim:
            raise ValueError(f"inconsistent geometry for {ndim}D: {self}")

    @property
    def ndim(self) -> int:
        return len(self.spacing)

    @property
    def itk_spacing(self) -> tuple[float, ...]:
        """Spacing in ITK order (x, y[, z])."""
        return tuple(reversed(self.spacing))

    @classmethod
    def identity(cls, ndim: int, spacing: tuple[float, ...] | None = None) -> Geometry:
        return cls(spacing=tuple(spacing) if spacing is not None else (1.0,) * ndim)

    def to_dict(self) -> dict:
        return {"spacing": list(self.spacing), "origin": list(self.origin), "direction": list(self.direction)}

    @classmethod
    def from_dict(cls, d: dict) -> Geometry:
        return cls(tuple(d["spacing"]), tuple(d.get("origin", ())), tuple(d.get("direction", ())))

    def differences(self, other: Geometry, rtol: float = 1e-4, atol: float = 1e-4) -> list[tuple[str, tuple, tuple]]:
        """Fields in which ``other`` differs beyond tolerance: ``[(field, self's value, other's value)]``."""
        if self.ndim != other.ndim:
            return [("dimensionality", (self.ndim,), (other.ndim,))]
        out = []
        for name in ("spacing", "origin", "direction"):
            a, b = getattr(self, name), getattr(other, name)
            if not np.allclose(a, b, rtol=rtol, atol=atol):
                out.append((name, tuple(round(v, 6) for v in a), tuple(round(v, 6) for v in b)))
        return out


def image_ending(path: str | os.PathLike) -> str:
    """The supported file ending of ``path`` (``.nii.gz`` counts as one), or raise ValueError."""
    name = Path(path).name.lower()
    for ending in SUPPORTED_ENDINGS:
        if name.endswith(ending):
            return ending
    raise ValueError(f"{path}: unsupported image format (supported: {', '.join(SUPPORTED_ENDINGS)})")


def sidecar_path(path: str | os.PathLike) -> Path:
    """Per-image JSON sidecar holding the spacing of a PNG/TIFF: ``case_0000.png -> case_0000.json``."""
    path = Path(path)
    return path.with_name(path.name[: -len(image_ending(path))] + ".json")


def _natural_spacing(path: Path, ndim: int, default: tuple[float, ...] | None) -> tuple[float, ...]:
    side = sidecar_path(path)
    if side.exists():
        try:
            spacing = json.loads(side.read_text())["spacing"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ImageReadError(side, f"malformed spacing sidecar ({exc})") from exc
        spacing = tuple(float(s) for s in spacing)
    elif default is not None:
        spacing = tuple(float(s) for s in default)
    else:
        spacing = (1.0,) * ndim
    if len(spacing) != ndim:
        raise ImageReadError(path, f"spacing {spacing} has {len(spacing)} values for a {ndim}D image")
    return spacing


def _read_natural(path: Path, spacing: tuple[float, ...] | None) -> tuple[np.ndarray, Geometry]:
    ending = image_ending(path)
    try:
        if ending in (".tif", ".tiff"):
            import tifffile

            array = np.asarray(tifffile.imread(path))
        else:
            import SimpleITK as sitk

            array = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    except Exception as exc:  # noqa: BLE001 - every reader failure becomes one clear error
        raise ImageReadError(path, f"unreadable or truncated image ({type(exc).__name__}: {exc})") from exc
    if array.ndim == 3 and array.shape[-1] == 4:  # RGBA: alpha carries no image content
        array = array[..., :3]
    spatial_ndim = 2 if array.ndim == 3 and array.shape[-1] == 3 else array.ndim
    if spatial_ndim != 2:
        raise ImageReadError(path, f"expected a 2D grey or RGB image, got array of shape {array.shape}")
    return array, Geometry(_natural_spacing(path, 2, spacing))


def _check_nifti_complete(path: Path, data_nbytes: int) -> None:
    """ITK fills a truncated NIfTI with zeros instead of failing: compare the stored size (gzip's
    ISIZE trailer, or the file size) with header offset + voxel bytes; on a gzip mismatch confirm by
    decompressing (multi-member gzip files have no single trailer)."""
    import gzip
    import struct

    gz = path.name.lower().endswith(".gz")
    try:
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as fh:
            head = fh.read(540)
        endian = "<" if struct.unpack("<i", head[:4])[0] in (348, 540) else ">"
        sizeof = struct.unpack(endian + "i", head[:4])[0]
        if sizeof == 348:
            offset = int(struct.unpack(endian + "f", head[108:112])[0])
        elif sizeof == 540:
            offset = int(struct.unpack(endian + "q", head[168:176])[0])
        else:
            return
        expected = offset + data_nbytes
        if not gz:
            complete = path.stat().st_size >= expected
        else:
            with open(path, "rb") as fh:
                fh.seek(-4, os.SEEK_END)
                complete = struct.unpack("<I", fh.read(4))[0] == expected % 2**32
            if not complete:
                with gzip.open(path, "rb") as fh:
                    complete = sum(len(b) for b in iter(lambda: fh.read(1 << 22), b"")) >= expected
    except (OSError, EOFError, struct.error) as exc:
        raise ImageReadError(path, f"unreadable or truncated image ({type(exc).__name__}: {exc})") from exc
    if not complete:
        raise ImageReadError(path, "unreadable or truncated image (fewer voxel bytes than the header declares)")


def read_image(path: str | os.PathLike, spacing: tuple[float, ...] | None = None) -> tuple[np.ndarray, Geometry]:
    """Read one image file.

    Args:
        path: file with a supported ending (:data:`SUPPORTED_ENDINGS`).
        spacing: default spacing (numpy order) for PNG/TIFF without a sidecar; ignored for medical
            formats, which carry their own geometry.

    Returns:
        ``(array, geometry)`` in the conventions of this module. Dtype is the file's.

    Raises:
        ImageReadError: missing, unreadable or truncated file (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, "file does not exist")
    try:
        ending = image_ending(path)
    except ValueError as exc:
        raise ImageReadError(path, str(exc).split(": ", 1)[-1]) from exc
    if ending in NATURAL_ENDINGS:
        return _read_natural(path, spacing)
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(str(path))
        array = sitk.GetArrayFromImage(image)
    except Exception as exc:  # noqa: BLE001
        raise ImageReadError(path, f"unreadable or truncated image ({type(exc).__name__}: {exc})") from exc
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ImageReadError(path, "multi-component medical images are not supported; store one file per channel")
    if ending in (".nii", ".nii.gz"):
        _check_nifti_complete(path, array.nbytes)
    geometry = Geometry(
        spacing=tuple(reversed(image.GetSpacing())), origin=image.GetOrigin(), direction=image.GetDirection()
    )
    return array, geometry


def read_image_header(path: str | os.PathLike, spacing: tuple[float, ...] | None = None) -> tuple[tuple[int, ...], Geometry]:
    """Shape (numpy order, spatial only) and geometry without reading the voxels (medical formats)."""
    path = Path(path)
    ending = image_ending(path)
    if ending in NATURAL_ENDINGS:
        array, geometry = read_image(path, spacing)
        return tuple(array.shape[:2]), geometry
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except Exception as exc:  # noqa: BLE001
        raise ImageReadError(path, f"unreadable image header ({type(exc).__name__}: {exc})") from exc
    shape = tuple(reversed(reader.GetSize()))
    return shape, Geometry(tuple(reversed(reader.GetSpacing())), reader.GetOrigin(), reader.GetDirection())


def _atomic_target(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}" + image_ending(path))


def write_image(path: str | os.PathLike, array: np.ndarray, geometry: Geometry | None = None, compress: bool = True) -> None:
    """Write ``array`` with ``geometry`` atomically (temporary file, then rename).

    PNG takes uint8/uint16 grey or uint8 RGB ``(y, x, 3)``; TIFF is written LZW-compressed; both get a
    spacing sidecar when the spacing is not all ones. Medical formats take grey arrays only.
    """
    path = Path(path)
    ending = image_ending(path)
    array = np.asarray(array)
    is_rgb = array.ndim == 3 and array.shape[-1] == 3 and ending in NATURAL_ENDINGS
    spatial_ndim = 2 if is_rgb else array.ndim
    if geometry is None:
        geometry = Geometry.identity(spatial_ndim)
    if geometry.ndim != spatial_ndim:
        raise ValueError(f"{path}: geometry is {geometry.ndim}D but the array has shape {array.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _atomic_target(path)
    try:
        if ending in NATURAL_ENDINGS:
            if spatial_ndim != 2:
                raise ValueError(f"{path}: PNG/TIFF hold 2D images only, got shape {array.shape}")
            if array.dtype == bool:
                array = array.astype(np.uint8)
            if ending == ".png":
                if array.dtype not in (np.uint8, np.uint16):
                    raise ValueError(f"{path}: PNG needs uint8 or uint16 data, got {array.dtype}")
                import SimpleITK as sitk

                sitk.WriteImage(sitk.GetImageFromArray(array, isVector=is_rgb), str(tmp))
            else:
                import tifffile

                tifffile.imwrite(tmp, array, compression="lzw", photometric="rgb" if is_rgb else "minisblack")
            side = sidecar_path(path)
            if any(abs(s - 1.0) > 1e-12 for s in geometry.spacing):
                side_tmp = side.with_name(f".{side.name}.tmp{os.getpid()}")
                side_tmp.write_text(json.dumps({"spacing": list(geometry.spacing)}))
                os.replace(side_tmp, side)
            elif side.exists():
                side.unlink()
        else:
            import SimpleITK as sitk

            if array.dtype == bool:
                array = array.astype(np.uint8)
            if array.dtype == np.float16:
                array = array.astype(np.float32)
            image = sitk.GetImageFromArray(array, isVector=False)
            image.SetSpacing(geometry.itk_spacing)
            image.SetOrigin(geometry.origin)
            image.SetDirection(geometry.direction)
            sitk.WriteImage(image, str(tmp), useCompression=compress)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
