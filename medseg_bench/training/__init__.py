"""The training engine: loop, checkpoint/resume, logging, sliding-window inference, cells.

Public API: :func:`train_cell` (one benchmark cell end to end), :func:`ensure_prepared`,
:class:`RunContext`, :func:`run_loop`, :func:`sliding_window_probabilities`,
:func:`semantic_to_instances`, :func:`resolve_settings`, :data:`ENGINE_DEFAULTS`.
"""

from .cell import RECORD_VERSION, ensure_prepared, load_trained, train_cell
from .context import RunContext, make_optimizer
from .inference import sliding_window_probabilities
from .instances import semantic_to_instances
from .loop import build_streams, run_loop
from .settings import ENGINE_DEFAULTS, choose_device, resolve_settings, set_threads

__all__ = [
    "ENGINE_DEFAULTS",
    "RECORD_VERSION",
    "RunContext",
    "build_streams",
    "choose_device",
    "ensure_prepared",
    "load_trained",
    "make_optimizer",
    "resolve_settings",
    "run_loop",
    "semantic_to_instances",
    "set_threads",
    "sliding_window_probabilities",
    "train_cell",
]
