"""``monuseg`` converter: MoNuSeg 2018 (official layout) -> raw 2D RGB instance dataset.

MoNuSeg (Kumar et al., "A dataset and a technique for generalized nuclear segmentation for
computational pathology", IEEE TMI 2017; MICCAI 2018 challenge) holds 1000x1000 H&E tiles at 40x from
TCGA with one Aperio ImageScope XML per tile, one ``<Region>`` polygon (``<Vertex X= Y=>``) per nucleus.
Licence CC BY-NC-SA 4.0. Expected input (the official download's layout, either spelling)::

    SRC/MoNuSegTrainingData/Tissue_Images/*.tif      (or "MoNuSeg 2018 Training Data/Tissue Images")
    SRC/MoNuSegTrainingData/Annotations/*.xml
    SRC/MoNuSegTrainingData/Binary_masks/*.png       (optional; or "Binary masks")
    SRC/MoNuSegTestData/*.tif + *.xml

Output: training tiles with an XML -> ``imagesTr`` + ``labelsTr`` + ``instancesTr``; training tiles
without an XML but with a binary mask (the official download has masks for all 30 training tiles)
-> ``imagesTr`` + ``labelsTr`` (the mask) + ``instancesTr`` (its 4-connected components: touching
nuclei merge, so these instance maps are approximate; ``conversion.tiles[id].label_source`` says
``"binary_mask"``); training tiles with neither -> ``imagesUnlabelled``; test tiles (always XML) ->
``imagesTs`` + ``labelsTs`` + ``instancesTs``. ``use_binary_masks=False`` keeps only XML-annotated
training tiles labelled. The standard protocol trains on all 30 training tiles and reports on the 14
test tiles. Images are written as lossless RGB PNG; spacing (mm) is the XML's ``MicronsPerPixel``
(median over the tiles; 0.25 um if absent).

Rasterisation rule: each region is filled with :func:`skimage.draw.polygon` (a pixel belongs to a
polygon when its centre lies inside it or on its outline), regions in XML order, **a later region wins** where polygons
overlap. Documented drops, recorded per tile in dataset.json (``conversion.tiles``): regions with fewer
than 3 distinct vertices, regions that cover no pixel centre, and regions fully covered by later ones.
A partly covered region keeps its remaining pixels (possibly in several pieces) as one instance.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from ..io import DatasetError, Geometry, RawDatasetWriter, read_image
from ..io.image import ImageReadError
from . import register_converter

__all__ = ["VERSION", "convert_monuseg", "find_layout", "mask_instances", "parse_aperio_xml", "rasterise_regions"]

VERSION = "1.1.0"  # 1.1: training tiles without XML are labelled from Binary_masks
_TRAIN_ROOTS = ("MoNuSegTrainingData", "MoNuSeg 2018 Training Data", "MoNuSeg_2018_Training_Data")
_IMAGE_DIRS = ("Tissue_Images", "Tissue Images")
_MASK_DIRS = ("Binary_masks", "Binary masks", "Binary_Masks")
_MASK_ENDINGS = (".png", ".tif", ".tiff")
_TEST_ROOTS = ("MoNuSegTestData", "MoNuSeg 2018 Test Data", "MoNuSeg_2018_Test_Data")
_TIF = (".tif", ".tiff")


def _first_dir(base: Path, names: tuple[str, ...]) -> Path | None:
    return next((base / n for n in names if (base / n).is_dir()), None)


def _tifs(folder: Path) -> dict[str, Path]:
    return {f.stem: f for f in sorted(folder.iterdir()) if f.suffix.lower() in _TIF and not f.name.startswith(".")}


def find_layout(src: Path, use_binary_masks: bool = True) -> dict:
    """Locate the MoNuSeg folders and pair tiles with annotations.

    Returns ``{"train": {id: (tif, xml)}, "train_masks": {id: (tif, mask)}, "unlabelled": {id: tif},
    "test": {id: (tif, xml)}}``; ``train_masks`` holds the training tiles without XML whose binary mask
    exists (empty when ``use_binary_masks`` is False or there is no mask folder).

    Raises:
        DatasetError: a folder is missing, a test tile has no XML, an XML has no tile, or a subset is
            empty; the message names the path.
    """
    src = Path(src)
    train_root = _first_dir(src, _TRAIN_ROOTS)
    if train_root is None:
        raise DatasetError(f"{src / _TRAIN_ROOTS[0]}: MoNuSeg training folder not found (expected one of {', '.join(_TRAIN_ROOTS)})")
    image_dir = _first_dir(train_root, _IMAGE_DIRS)
    if image_dir is None:
        raise DatasetError(f"{train_root / _IMAGE_DIRS[0]}: training tile folder not found")
    ann_dir = train_root / "Annotations"
    if not ann_dir.is_dir():
        raise DatasetError(f"{ann_dir}: training annotation folder not found")
    test_root = _first_dir(src, _TEST_ROOTS)
    if test_root is None:
        raise DatasetError(f"{src / _TEST_ROOTS[0]}: MoNuSeg test folder not found (expected one of {', '.join(_TEST_ROOTS)})")
    tiles = _tifs(image_dir)
    if not tiles:
        raise DatasetError(f"{image_dir}: no .tif training tiles")
    xmls = {f.stem: f for f in sorted(ann_dir.glob("*.xml"))}
    orphan = sorted(set(xmls) - set(tiles))
    if orphan:
        raise DatasetError(f"{xmls[orphan[0]]}: annotation without a tile (no {image_dir / (orphan[0] + '.tif')})")
    test_tiles = _tifs(test_root)
    test_xmls = {f.stem: f for f in sorted(test_root.glob("*.xml"))}
    if not test_tiles:
        raise DatasetError(f"{test_root}: no .tif test tiles")
    for stem in sorted(test_tiles):
        if stem not in test_xmls:
            raise DatasetError(f"{test_root / (stem + '.xml')}: annotation of test tile {test_tiles[stem].name} is missing")
    orphan = sorted(set(test_xmls) - set(test_tiles))
    if orphan:
        raise DatasetError(f"{test_xmls[orphan[0]]}: annotation without a test tile")
    if not xmls:
        raise DatasetError(f"{ann_dir}: no .xml annotations, so no labelled training tile")
    masks: dict[str, Path] = {}
    mask_dir = _first_dir(train_root, _MASK_DIRS) if use_binary_masks else None
    if mask_dir is not None:
        masks = {f.stem: f for f in sorted(mask_dir.iterdir())
                 if f.suffix.lower() in _MASK_ENDINGS and not f.name.startswith(".")}
        orphan = sorted(set(masks) - set(tiles))
        if orphan:
            raise DatasetError(f"{masks[orphan[0]]}: binary mask without a tile (no {image_dir / (orphan[0] + '.tif')})")
    no_xml = sorted(set(tiles) - set(xmls))
    return {
        "train": {s: (tiles[s], xmls[s]) for s in sorted(xmls)},
        "train_masks": {s: (tiles[s], masks[s]) for s in no_xml if s in masks},
        "unlabelled": {s: tiles[s] for s in no_xml if s not in masks},
        "test": {s: (test_tiles[s], test_xmls[s]) for s in sorted(test_tiles)},
    }


def parse_aperio_xml(path: Path) -> tuple[list[tuple[str, np.ndarray]], float | None]:
    """Polygons of an Aperio ImageScope XML.

    Returns:
        ``([(region_id, vertices (k, 2) float as (x, y) px), ...] in file order, microns_per_pixel or None)``.

    Raises:
        DatasetError: the file is not well-formed XML, a vertex lacks a numeric X/Y, or there is no
            ``<Region>`` at all (the message names the file).
    """
    regions: list[tuple[str, np.ndarray]] = []
    root = None
    try:
        for _, el in ET.iterparse(path, events=("end",)):
            if el.tag == "Region":  # vertices read in bulk, then the subtree is freed
                xy = [(v.get("X"), v.get("Y")) for v in el.iter("Vertex")]
                verts = np.array(xy, dtype=np.float64).reshape(-1, 2)
                if not np.isfinite(verts).all():  # a missing attribute parses as NaN
                    raise ValueError(f"region {el.get('Id', len(regions) + 1)} has a vertex without X or Y")
                regions.append((el.get("Id", str(len(regions) + 1)), verts))
                el.clear()
            root = el
    except ET.ParseError as exc:
        raise DatasetError(f"{path}: malformed XML ({exc})") from exc
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: a <Vertex> lacks numeric X/Y attributes ({exc})") from exc
    mpp = root.get("MicronsPerPixel") if root is not None and root.tag == "Annotations" else None
    try:
        mpp = float(mpp) if mpp else None
    except ValueError as exc:
        raise DatasetError(f"{path}: MicronsPerPixel {mpp!r} is not a number") from exc
    if not regions:
        raise DatasetError(f"{path}: no <Region> polygons found (not an Aperio ImageScope annotation?)")
    return regions, mpp


def rasterise_regions(regions: list[tuple[str, np.ndarray]], shape: tuple[int, int]) -> tuple[np.ndarray, dict]:
    """Instance map of polygons, later region wins; see the module docstring for the drop rules.

    Args:
        regions: ``[(region_id, (k, 2) vertices as (x, y) px)]`` in drawing order.
        shape: ``(height, width)`` px; polygons are clipped to it.

    Returns:
        ``(instances uint16 (h, w) numbered 1..N in drawing order, report)`` with the report holding
        ``xml_regions``, ``instances`` and ``dropped`` = ``[{"region": id, "reason": ...}]``.
    """
    from skimage.draw import polygon

    inst = np.zeros(shape, np.int32)
    dropped = []
    drawn: list[str] = []
    for region_id, v in regions:
        v = np.asarray(v, np.float64).reshape(-1, 2)
        if len(v) < 3 or np.unique(v[:, 0] + 1j * v[:, 1]).size < 3:
            dropped.append({"region": region_id, "reason": "fewer than 3 distinct vertices"})
            continue
        rr, cc = polygon(v[:, 1], v[:, 0], shape)
        if rr.size == 0:
            dropped.append({"region": region_id, "reason": "covers no pixel centre (degenerate or outside the tile)"})
            continue
        drawn.append(region_id)
        inst[rr, cc] = len(drawn)
    present = np.zeros(len(drawn) + 1, bool)
    present[np.unique(inst)] = True
    present[0] = True  # background keeps value 0 even when no pixel is background
    for k, region_id in enumerate(drawn, start=1):
        if not present[k]:
            dropped.append({"region": region_id, "reason": "fully covered by later regions"})
    lut = np.zeros(len(drawn) + 1, np.int64)
    lut[present] = np.arange(int(present.sum()))  # background (index 0) stays 0
    n = int(present[1:].sum())
    if n > np.iinfo(np.uint16).max:
        raise ValueError(f"{n} instances do not fit a uint16 instance map")
    return lut[inst].astype(np.uint16), {"xml_regions": len(regions), "instances": n, "dropped": dropped}


def _read_tile(path: Path) -> np.ndarray:
    try:
        array, _ = read_image(path)
    except ImageReadError as exc:
        raise DatasetError(str(exc)) from exc
    if array.ndim != 3 or array.shape[-1] != 3:
        raise DatasetError(f"{path}: expected an RGB tile (y, x, 3), got shape {array.shape}")
    if array.dtype != np.uint8:
        raise DatasetError(f"{path}: expected 8-bit RGB, got {array.dtype}")
    return array


def _microns_per_pixel(path: Path) -> float | None:
    """``MicronsPerPixel`` of an Aperio XML's root, reading only its first tag."""
    try:
        for _, el in ET.iterparse(path, events=("start",)):
            value = el.get("MicronsPerPixel")
            return float(value) if value else None
    except (ET.ParseError, ValueError):
        return None  # parse_aperio_xml reports malformed files with the reason
    return None


def mask_instances(mask: np.ndarray) -> np.ndarray:
    """Instance map (uint16, 1..N in raster order) of a binary nucleus mask: its 4-connected components.
    Touching nuclei become one instance; used only where no polygon annotation exists."""
    from scipy import ndimage

    inst, n = ndimage.label(mask > 0, structure=ndimage.generate_binary_structure(2, 1))
    if n > np.iinfo(np.uint16).max:
        raise ValueError(f"{n} components do not fit a uint16 instance map")
    return inst.astype(np.uint16)


def _read_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A binary mask (0/1 or 0/255) of ``shape`` as bool; DatasetError naming the file otherwise."""
    try:
        mask, _ = read_image(path)
    except ImageReadError as exc:
        raise DatasetError(str(exc)) from exc
    if mask.ndim == 3 and mask.shape[-1] in (3, 4) and all(np.array_equal(mask[..., 0], mask[..., c]) for c in range(1, 3)):
        mask = mask[..., 0]  # a grey mask saved as RGB(A)
    if tuple(mask.shape) != tuple(shape):
        raise DatasetError(f"{path}: binary mask of shape {tuple(mask.shape)} does not match its tile {tuple(shape)}")
    values = np.unique(mask)
    if not set(values.tolist()) <= {0, 1} and not set(values.tolist()) <= {0, 255}:
        raise DatasetError(f"{path}: not a binary mask (values {values[:6].tolist()}...; expected 0/1 or 0/255)")
    return mask > 0


def _labelled_tile(job: tuple[str, Path, Path]) -> tuple[np.ndarray, np.ndarray, dict]:
    """Worker: read a tile and rasterise its XML (``kind`` "xml") or read its binary mask ("mask")
    -> (image (y, x, 3), instances, report)."""
    kind, tif, annotation = job
    image = _read_tile(tif)
    if kind == "mask":
        inst = mask_instances(_read_mask(annotation, image.shape[:2]))
        return image, inst, {"label_source": "binary_mask", "instances": int(inst.max()),
                             "instance_rule": "4-connected components of the mask (touching nuclei merge)"}
    regions, mpp = parse_aperio_xml(annotation)
    inst, report = rasterise_regions(regions, image.shape[:2])
    return image, inst, {"label_source": "xml", "microns_per_pixel": mpp, **report}


@register_converter("monuseg", description="MoNuSeg 2018 H&E nuclei (Aperio XML polygons) -> RGB instance dataset",
                    version=VERSION, default_name="monuseg")
def convert_monuseg(src: Path, out_dir: Path, num_workers: int | None = None, use_binary_masks: bool = True) -> None:
    """Convert a MoNuSeg 2018 download at ``src`` into a raw dataset at ``out_dir`` (atomic).

    ``num_workers`` processes (default: one per core) parse and rasterise the annotated tiles.
    ``use_binary_masks``: label XML-less training tiles from ``Binary_masks`` (module docstring).
    Raises :class:`DatasetError` naming the missing or malformed file before anything is moved into place.
    """
    layout = find_layout(Path(src), use_binary_masks)
    mpps = [m for _, xml in (*layout["train"].values(), *layout["test"].values()) if (m := _microns_per_pixel(xml))]
    mpp = float(np.median(mpps)) if mpps else 0.25
    writer = RawDatasetWriter(out_dir, {"0": "R", "1": "G", "2": "B"}, {"background": 0, "nucleus": 1}, ".png",
                              instance_labels=True, spacing=(mpp / 1000.0, mpp / 1000.0), overwrite=True)
    geometry = Geometry.identity(2)  # spacing comes from dataset.json
    tiles = {}
    jobs = [(subset, case_id, ("mask" if group == "train_masks" else "xml", *files))
            for group, subset in (("train", "train"), ("train_masks", "train"), ("test", "test"))
            for case_id, files in layout[group].items()]
    workers = max(1, min(num_workers or os.cpu_count() or 1, len(jobs)))
    try:
        # tiles are parsed and rasterised in worker processes while this one writes PNGs
        with ProcessPoolExecutor(workers) if workers > 1 else nullcontext() as pool:
            results = (pool.map if pool else map)(_labelled_tile, [files for _, _, files in jobs])
            for (subset, case_id, _), (image, inst, report) in zip(jobs, results):
                writer.add_case(case_id, np.moveaxis(image, -1, 0), geometry, label=(inst > 0).astype(np.uint8),
                                subset=subset, instances=inst)
                tiles[case_id] = {"subset": subset, **report}
        for case_id, tif in layout["unlabelled"].items():
            writer.add_case(case_id, np.moveaxis(_read_tile(tif), -1, 0), geometry, subset="unlabelled")
        xml_total = sum(t.get("xml_regions", 0) for t in tiles.values())
        inst_total = sum(t["instances"] for t in tiles.values())
        writer.finalize(extra={
            "name": Path(out_dir).name,
            "description": "MoNuSeg 2018: H&E tiles (40x, TCGA, 7 organs) with nucleus polygons",
            "reference": "Kumar et al., IEEE TMI 36(7):1550-1560, 2017, doi:10.1109/TMI.2017.2677499",
            "licence": "CC BY-NC-SA 4.0",
            "spacing_unit": "mm",
            "converter": {"name": "monuseg", "version": VERSION, "source": str(Path(src).resolve())},
            "conversion": {
                "rasterisation": "skimage.draw.polygon (pixel centres inside or on the outline), XML order, later region wins",
                "labelled_train_tiles": len(layout["train"]) + len(layout["train_masks"]),
                "xml_train_tiles": len(layout["train"]), "binary_mask_train_tiles": len(layout["train_masks"]),
                "test_tiles": len(layout["test"]),
                "unlabelled_tiles": len(layout["unlabelled"]),
                "xml_regions": xml_total, "instances": inst_total,
                "tiles": tiles,
            },
        })
    except BaseException:
        writer.abort()
        raise
