"""``nnunet`` converter: import an existing nnU-Net v2 raw dataset folder into the workdir.

Any dataset already in nnU-Net v2 raw format (Isensee et al., "nnU-Net: a self-configuring method for
deep learning-based biomedical image segmentation", Nature Methods 2021; format:
https://github.com/MIC-DKFZ/nnUNet/blob/master/documentation/dataset_format.md) is checked with
:func:`medseg_bench.io.check_dataset` and then hard-linked (or copied, across file systems) into
``<workdir>/raw/<name>/``; the default name is the source folder's name (e.g. ``Dataset004_Hippocampus``).

The benchmark's test set is ``labelsTs`` when the source has one; otherwise the rule of
:meth:`medseg_bench.io.RawDataset.test_cases` applies (labelled cases ranked by a hash of their id, the
first 20 %), so nothing is moved: the import is a faithful copy plus a ``converter`` record in
``dataset.json``. Hard links share data with the source, which is safe because medseg_bench never
modifies a raw file in place (every write is a new file renamed into place).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..io import DatasetError, check_dataset
from . import register_converter

__all__ = ["FOLDERS", "VERSION", "import_nnunet"]

VERSION = "1.0.0"
#: folders copied from the source (nnU-Net's own plus medseg_bench's extensions); others are ignored
FOLDERS = ("imagesTr", "labelsTr", "imagesTs", "labelsTs", "imagesUnlabelled", "instancesTr", "instancesTs")
_MAX_LISTED = 10


def _link_or_copy(src: Path, dst: Path, link: bool) -> bool:
    """Hard-link ``src`` to ``dst`` when allowed and possible, else copy; returns whether it linked."""
    if link:
        try:
            os.link(src, dst)
            return True
        except OSError:  # other file system, or links not supported
            pass
    shutil.copy2(src, dst)
    return False


def _source_name(src: Path) -> str:
    return Path(src).resolve().name


@register_converter("nnunet", description="import an nnU-Net v2 raw dataset folder (validated; hard-linked or copied)",
                    version=VERSION, default_name=_source_name)
def import_nnunet(src: Path, out_dir: Path, link: bool = True) -> None:
    """Validate the nnU-Net v2 raw dataset at ``src`` and place it at ``out_dir`` (atomically).

    Args:
        src: dataset folder holding ``dataset.json``, ``imagesTr/``, ``labelsTr/`` (``imagesTs/``,
            ``labelsTs/`` and medseg_bench's extension folders are taken along when present).
        out_dir: target folder; replaced if it exists (the caller decides about overwriting).
        link: hard-link files when possible (default) instead of copying them.

    Raises:
        DatasetError: ``dataset.json`` is missing, or :func:`check_dataset` finds problems (the message
            lists them, each naming its file); or ``out_dir`` lies inside ``src``.
    """
    src, out_dir = Path(src).resolve(), Path(out_dir).resolve()
    if not (src / "dataset.json").is_file():
        raise DatasetError(f"{src / 'dataset.json'}: dataset.json is missing (not an nnU-Net v2 raw dataset folder)")
    if out_dir == src or src in out_dir.parents:
        raise DatasetError(f"{out_dir}: the import target must lie outside the source folder {src}")
    problems = check_dataset(src)
    if problems:
        listed = "\n".join(f"  {p}" for p in problems[:_MAX_LISTED])
        more = f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
        raise DatasetError(f"{src}: not a valid nnU-Net v2 raw dataset ({len(problems)} problem(s)):\n{listed}{more}")

    staging = out_dir.with_name(f".{out_dir.name}.partial-{os.getpid()}")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        n_files = n_linked = 0
        for folder in FOLDERS:
            if not (src / folder).is_dir():
                continue
            (staging / folder).mkdir()
            for f in sorted((src / folder).iterdir()):
                if f.is_file() and not f.name.startswith("."):
                    n_linked += _link_or_copy(f, staging / folder / f.name, link)
                    n_files += 1
        meta = json.loads((src / "dataset.json").read_text())
        meta["converter"] = {"name": "nnunet", "version": VERSION, "source": str(src), "files": n_files,
                             "hard_linked": n_linked}
        (staging / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            os.replace(out_dir, old)
            os.replace(staging, out_dir)
            shutil.rmtree(old)
        else:
            out_dir.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
