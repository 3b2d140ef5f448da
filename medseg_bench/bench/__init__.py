"""The benchmark runner: grids of cells, executors (local, Ray, Slurm) and the results store.

Public API::

    from medseg_bench.bench import Cell, expand_grid, run_benchmark, run_cells, load_records
"""

from .cells import CellTask, execute_cell
from .cli import run_benchmark
from .grid import (
    ALL,
    PRESET_DEFAULTS,
    PRESETS,
    Cell,
    expand_grid,
    method_budgets,
    parse_budget,
    parse_budgets,
)
from .results import (
    cell_is_done,
    failure_record,
    load_manifest,
    load_records,
    read_json,
    record_path,
    write_json_atomic,
    write_record,
)
from .runner import RunSummary, run_cells

__all__ = [
    "ALL",
    "PRESETS",
    "PRESET_DEFAULTS",
    "Cell",
    "CellTask",
    "RunSummary",
    "cell_is_done",
    "execute_cell",
    "expand_grid",
    "failure_record",
    "load_manifest",
    "load_records",
    "method_budgets",
    "parse_budget",
    "parse_budgets",
    "read_json",
    "record_path",
    "run_benchmark",
    "run_cells",
    "write_json_atomic",
    "write_record",
]
