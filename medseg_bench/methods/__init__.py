"""Segmentation methods: the plugin contract, the registry and the built-in methods.

Importing this package registers the built-in methods: every non-underscore module of this package
is imported (extending is adding: a new method is one new module that registers itself). Installed plugins (entry-point group
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
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_") and info.name not in ("base", "registry"):
            importlib.import_module(f"{__name__}.{info.name}")


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
