"""Built-in dataset generators (simulators) and converters for public data.

Extending is adding: a module in this package registers a generator or converter with the
decorators below and is picked up automatically (every submodule is imported on first use).

Generators: ``fn(out_dir: Path, size: str, seed: int) -> None`` writes a complete raw dataset into
``out_dir`` with :class:`medseg_bench.io.RawDatasetWriter` (which stages and renames atomically).
Converters: ``fn(src: Path, out_dir: Path) -> None`` validates ``src`` (clear error naming the missing
or malformed file) and writes a raw dataset into ``out_dir``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "SIZES",
    "ConverterSpec",
    "GeneratorSpec",
    "convert",
    "converter_options",
    "default_dataset_name",
    "generate",
    "get_converter",
    "get_generator",
    "list_converters",
    "list_generators",
    "parse_option",
    "register_converter",
    "register_generator",
]

SIZES = ("tiny", "small", "full")


@dataclass(frozen=True)
class GeneratorSpec:
    name: str
    fn: Callable[[Path, str, int], None]
    description: str
    version: str
    dims: int
    modality: str


@dataclass(frozen=True)
class ConverterSpec:
    name: str
    fn: Callable[[Path, Path], None]
    description: str
    version: str
    default_name: str | Callable[[Path], str]

    def dataset_name(self, src: Path) -> str:
        """Default dataset (folder) name for a conversion of ``src``: a fixed name, or one derived
        from the source (e.g. the nnU-Net importer keeps the source folder's name)."""
        return self.default_name(Path(src)) if callable(self.default_name) else self.default_name


_GENERATORS: dict[str, GeneratorSpec] = {}
_CONVERTERS: dict[str, ConverterSpec] = {}
_loaded = False


def register_generator(name: str, *, description: str, version: str, dims: int, modality: str):
    """Decorator registering a simulator under ``name`` (e.g. ``"ct_hip"``)."""

    def deco(fn):
        if name in _GENERATORS and _GENERATORS[name].fn is not fn:
            raise ValueError(f"generator {name!r} registered twice")
        _GENERATORS[name] = GeneratorSpec(name, fn, description, version, dims, modality)
        return fn

    return deco


def register_converter(name: str, *, description: str, version: str,
                       default_name: str | Callable[[Path], str] | None = None):
    """Decorator registering a converter for public data under ``name`` (e.g. ``"monuseg"``);
    ``default_name`` is the output folder name, or a function of the source folder giving it."""

    def deco(fn):
        if name in _CONVERTERS and _CONVERTERS[name].fn is not fn:
            raise ValueError(f"converter {name!r} registered twice")
        _CONVERTERS[name] = ConverterSpec(name, fn, description, version, default_name or name)
        return fn

    return deco


def _load_builtin() -> None:
    global _loaded
    if _loaded:
        return
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    _loaded = True


def _lookup(table: dict, name: str, what: str):
    _load_builtin()
    if name not in table:
        known = ", ".join(sorted(table)) or "none"
        raise KeyError(f"unknown {what} {name!r}; available: {known}")
    return table[name]


def list_generators() -> list[GeneratorSpec]:
    _load_builtin()
    return [_GENERATORS[k] for k in sorted(_GENERATORS)]


def list_converters() -> list[ConverterSpec]:
    _load_builtin()
    return [_CONVERTERS[k] for k in sorted(_CONVERTERS)]


def get_generator(name: str) -> GeneratorSpec:
    return _lookup(_GENERATORS, name, "dataset generator")


def get_converter(name: str) -> ConverterSpec:
    return _lookup(_CONVERTERS, name, "dataset converter")


def default_dataset_name(generator: str, size: str) -> str:
    """A built-in dataset's folder name carries its size, e.g. ``ct_hip_small``."""
    return f"{generator}_{size}"


def generate(name: str, out_dir: Path, size: str = "small", seed: int = 0, overwrite: bool = False) -> Path:
    """Run a registered generator into ``out_dir`` (skips nothing: callers decide about reuse)."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")
    spec = get_generator(name)
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir}: already exists (use --overwrite to regenerate)")
    spec.fn(out_dir, size, seed)
    return out_dir


def converter_options(name: str) -> dict:
    """A converter's keyword options and their defaults (``datasets convert --option KEY=VALUE``)."""
    import inspect

    params = list(inspect.signature(get_converter(name).fn).parameters.values())[2:]  # after (src, out_dir)
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def convert(name: str, src: Path, out_dir: Path, overwrite: bool = False, options: dict | None = None) -> Path:
    """Run a registered converter ``src -> out_dir``; ``options`` are its keyword options
    (see :func:`converter_options`; an unknown one is a ``ValueError`` listing the known ones)."""
    spec = get_converter(name)
    src, out_dir = Path(src), Path(out_dir)
    options = dict(options or {})
    known = converter_options(name)
    unknown = sorted(set(options) - set(known))
    if unknown:
        listed = ", ".join(f"{k} (default {v!r})" for k, v in known.items()) or "none"
        raise ValueError(f"converter {name!r} has no option {', '.join(unknown)}; its options: {listed}")
    if not src.exists():
        raise FileNotFoundError(f"{src}: source folder does not exist")
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir}: already exists (use --overwrite to replace it)")
    spec.fn(src, out_dir, **options)
    return out_dir


def parse_option(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` -> ``(key, value)``; VALUE is read as JSON when it parses (``false``, ``2``),
    else kept as a string. A missing ``=`` is a ``ValueError``."""
    import json

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--option {text!r}: expected KEY=VALUE")
    try:
        return key.strip(), json.loads(value)
    except ValueError:
        return key.strip(), value
