"""Command handlers for ``medseg-bench datasets ...`` (called by the CLI; printing lives here)."""

from __future__ import annotations

import sys
from pathlib import Path

from ..io import DatasetError, RawDataset, check_dataset
from ..workdir import Workdir
from . import (
    convert,
    converter_options,
    default_dataset_name,
    generate,
    get_converter,
    list_converters,
    list_generators,
    parse_option,
)

__all__ = ["check_command", "convert_command", "generate_command", "list_command"]


def list_command(workdir: Path) -> int:
    wd = Workdir(Path(workdir))
    print("Built-in generators (medseg-bench datasets generate NAME --size tiny|small|full):")
    for g in list_generators():
        print(f"  {g.name:<14} {g.dims}D {g.modality:<8} v{g.version}  {g.description}")
    print("\nConverters for public data (medseg-bench datasets convert NAME --src DIR [--option KEY=VALUE]):")
    for c in list_converters():
        print(f"  {c.name:<14} v{c.version}  {c.description}")
        opts = converter_options(c.name)
        if opts:
            print(f"  {'':<14} options: " + ", ".join(f"{k}={v!r}" for k, v in opts.items()))
    print(f"\nDatasets in {wd.raw}:")
    found = sorted(d for d in wd.raw.iterdir() if (d / "dataset.json").exists()) if wd.raw.is_dir() else []
    if not found:
        print("  (none yet)")
    for d in found:
        try:
            ds = RawDataset(d)
            info = (f"{len(ds.train_cases())} train, {len(ds.test_cases())} test, "
                    f"{len(ds.unlabelled_cases())} unlabelled, {ds.modality}{', instances' if ds.instance_labels else ''}")
        except DatasetError as exc:
            info = f"INVALID: {exc}"
        print(f"  {d.name:<24} {info}")
    return 0


def _write_preview(path: Path) -> None:
    from ._preview import write_preview

    png = write_preview(path)
    print(f"preview: {png}")


def generate_command(name: str, workdir: Path, out: str | None = None, size: str = "small", seed: int = 0,
                     preview: bool = False, overwrite: bool = False) -> int:
    wd = Workdir(Path(workdir))
    names = [g.name for g in list_generators()] if name == "all" else [name]
    if out is not None and len(names) > 1:
        print("--out needs a single generator name, not 'all'", file=sys.stderr)
        return 2
    for n in names:
        try:
            spec_out = Path(out) if out else wd.raw_dataset(default_dataset_name(n, size))
            generate(n, spec_out, size=size, seed=seed, overwrite=overwrite)
        except (KeyError, ValueError, FileExistsError) as exc:
            print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
            return 2
        print(f"generated {n} ({size}, seed {seed}) -> {spec_out}")
        if preview:
            _write_preview(spec_out)
    return 0


def convert_command(name: str, src: str, workdir: Path, out: str | None = None, overwrite: bool = False,
                    preview: bool = False, option: list[str] | None = None) -> int:
    wd = Workdir(Path(workdir))
    try:
        spec = get_converter(name)
        options = dict(parse_option(o) for o in option or [])
        target = Path(out) if out else wd.raw_dataset(spec.dataset_name(Path(src)))
        convert(name, Path(src), target, overwrite=overwrite, options=options)
    except (KeyError, FileNotFoundError, FileExistsError, DatasetError, ValueError) as exc:
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    print(f"converted {name} from {src} -> {target}")
    if preview:
        _write_preview(target)
    return 0


def check_command(path: str, workdir: Path) -> int:
    try:
        folder = Workdir(Path(workdir)).resolve_dataset(path)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    problems = check_dataset(folder)
    if problems:
        print(f"{folder}: {len(problems)} problem(s) found", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    ds = RawDataset(folder)
    print(f"{folder}: OK ({len(ds.raw_cases('train'))} training, {len(ds.raw_cases('test'))} test, "
          f"{len(ds.unlabelled_cases())} unlabelled case(s))")
    return 0
