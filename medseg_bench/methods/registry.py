"""The method registry: a decorator, look-ups, entry-point plugins and single-file methods.

Built-in methods register themselves when :mod:`medseg_bench.methods` is imported. Installed plugins
advertise a ``Method`` subclass in the ``medseg_bench.methods`` entry-point group and are loaded by
:func:`load_plugins` (they join a benchmark grid only when named). A submission can be a single
Python file that defines and registers one method: :func:`load_method_from_file`.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

__all__ = [
    "ENTRY_POINT_GROUP",
    "MethodNotFound",
    "get_method",
    "list_methods",
    "load_method_from_file",
    "load_plugins",
    "register_method",
    "unregister_method",
]

ENTRY_POINT_GROUP = "medseg_bench.methods"
_REGISTRY: dict[str, type] = {}
_BUILTIN: set[str] = set()
_FAMILIES = ("unsupervised", "semi-supervised", "supervised", "classical")
_BUDGET_KINDS = ("zero_only", "labelled", "all_only")


class MethodNotFound(KeyError):
    """No method of that name is registered."""

    def __str__(self) -> str:  # KeyError quotes its message; this one reads as a sentence
        return str(self.args[0])


def _validate(cls) -> None:
    from .base import Method

    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise TypeError(f"{cls!r} is not a subclass of medseg_bench.methods.Method")
    problems = []
    if not cls.name or not isinstance(cls.name, str):
        problems.append("'name' must be a non-empty string")
    if cls.family not in _FAMILIES:
        problems.append(f"'family' must be one of {_FAMILIES}, got {cls.family!r}")
    if not cls.citation:
        problems.append("'citation' must name the paper (or 'baseline')")
    if not cls.dims or any(d not in (2, 3) for d in cls.dims):
        problems.append(f"'dims' must be a non-empty tuple of 2 and/or 3, got {cls.dims!r}")
    if cls.budgets not in _BUDGET_KINDS:
        problems.append(f"'budgets' must be one of {_BUDGET_KINDS}, got {cls.budgets!r}")
    if cls.budgets == "zero_only" and cls.needs_labels:
        problems.append("a method that needs labels cannot run at budget 0 only")
    if problems:
        raise ValueError(f"method class {cls.__name__}: " + "; ".join(problems))


def register_method(cls=None, *, replace: bool = False):
    """Class decorator adding a :class:`~medseg_bench.methods.Method` subclass to the registry under
    ``cls.name``. Registering a different class under a taken name raises ``ValueError`` unless
    ``replace=True``."""

    def deco(c):
        _validate(c)
        old = _REGISTRY.get(c.name)
        if old is not None and old is not c and not replace and (old.__module__, old.__qualname__) != (c.__module__, c.__qualname__):
            raise ValueError(f"method {c.name!r} is already registered by {old.__module__}.{old.__qualname__}")
        _REGISTRY[c.name] = c
        if c.__module__.startswith("medseg_bench.methods."):
            _BUILTIN.add(c.name)
        return c

    return deco(cls) if cls is not None else deco


def unregister_method(name: str) -> None:
    """Remove a method (tests and interactive use)."""
    _REGISTRY.pop(name, None)
    _BUILTIN.discard(name)


def list_methods(builtin_only: bool = False) -> list[str]:
    """Registered method names, sorted; ``builtin_only`` leaves out plugins and single-file methods."""
    return sorted(n for n in _REGISTRY if not builtin_only or n in _BUILTIN)


def get_method(name: str) -> type:
    """The method class registered as ``name`` (installed plugins are searched too).

    Raises:
        MethodNotFound: with the list of known names.
    """
    if name not in _REGISTRY:
        load_plugins()
    if name not in _REGISTRY:
        raise MethodNotFound(f"unknown method {name!r}; registered: {', '.join(list_methods()) or 'none'}")
    return _REGISTRY[name]


def load_plugins() -> list[str]:
    """Import every ``medseg_bench.methods`` entry point; returns the names it registered. A plugin
    that fails to import is reported on stderr and skipped."""
    from importlib.metadata import entry_points

    before = set(_REGISTRY)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the suite
            print(f"medseg_bench: method plugin {ep.name!r} ({ep.value}) failed to load: {exc}", file=sys.stderr)
            continue
        if isinstance(obj, type) and obj.__dict__.get("name") and obj.name not in _REGISTRY:
            register_method(obj)
    return sorted(set(_REGISTRY) - before)


def load_method_from_file(path) -> type:
    """Import a single ``.py`` file that defines and registers exactly one new method; returns its class.

    Raises:
        FileNotFoundError, ValueError: the file is missing, or registers no / several methods.
    """
    path = Path(path)
    if not path.is_file() or path.suffix != ".py":
        raise FileNotFoundError(f"{path}: not a Python file")
    before = dict(_REGISTRY)
    mod_name = f"medseg_bench_user_method_{path.stem}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    spec.loader.exec_module(module)
    new = [n for n, c in _REGISTRY.items() if before.get(n) is not c]
    if len(new) != 1:
        raise ValueError(f"{path}: must register exactly one method with @register_method, registered {new or 'none'}")
    return _REGISTRY[new[0]]
