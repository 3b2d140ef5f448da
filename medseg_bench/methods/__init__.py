"""Segmentation methods: the plugin contract, the registry and the built-in methods.

Importing this package registers the built-in methods: every non-underscore module of this package
(and of its subpackages) is imported (extending is adding: a new method is one new module that registers itself). Installed plugins (entry-point group
``medseg_bench.methods``) are loaded by :func:`load_plugins` or on first :func:`get_method` miss.
"""

from .base import Method
from .registry import (
    ENTRY_POINT_GROUP,
    MethodNotFound,
    get_method,
    list_methods,
    load_method_from_file,
    load_plugins,
    register_method,
    unregister_method,
)


def _import_builtins() -> None:
    """Import every non-underscore module of this package and, one level down, of its subpackages
    (a method that spans several files is a subpackage, e.g. ``embedding_matching/``; its modules
    register whether or not its ``__init__`` imports them)."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name in ("base", "registry"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if info.ispkg:
            for sub in pkgutil.iter_modules(module.__path__):
                if not sub.name.startswith("_"):
                    importlib.import_module(f"{module.__name__}.{sub.name}")


_import_builtins()

__all__ = [
    "ENTRY_POINT_GROUP",
    "Method",
    "MethodNotFound",
    "get_method",
    "list_methods",
    "load_method_from_file",
    "load_plugins",
    "register_method",
    "unregister_method",
]
