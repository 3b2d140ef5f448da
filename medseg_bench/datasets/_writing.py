"""Writing a simulated dataset: one loop over the subsets shared by every built-in generator.

A generator supplies how many cases each subset has, how a case is named, and a ``simulate(subset, i)``
function; :func:`write_simulated_cases` writes the cases in a fixed order (train, test, unlabelled),
never gives an unlabelled case a label, and finalises ``dataset.json`` with the generator's extra
fields and the per-case parameters -- or aborts the writer (nothing half-written is left) on error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..io import Geometry

__all__ = ["SUBSETS", "SimulatedCase", "write_simulated_volumes", "write_simulated_cases"]

#: subsets in the order they are written (and seeded)
SUBSETS = ("train", "test", "unlabelled")


@dataclass
class SimulatedCase:
    """One simulated case: ``image`` channel first ``(C, *spatial)``; ``label`` / ``instances`` are
    dropped for unlabelled cases; ``info`` goes to ``dataset.json`` under the case's id."""

    image: np.ndarray
    geometry: Geometry
    label: np.ndarray | None
    info: dict
    instances: np.ndarray | None = None


def write_simulated_cases(writer, counts: dict[str, int], case_id: Callable[[str, int], str],
                          simulate: Callable[[str, int], SimulatedCase],
                          extra: Callable[[dict[str, dict]], dict]) -> None:
    """Simulate and write every case, then finalise the writer with ``extra(case_infos)``.

    Args:
        writer: a :class:`medseg_bench.io.RawDatasetWriter`.
        counts: cases per subset (``train``, ``test``, ``unlabelled``).
        case_id: ``(subset, index) -> case id``.
        simulate: ``(subset, index) -> SimulatedCase``.
        extra: ``{case id: info} -> dataset.json extra fields``.
    """
    infos: dict[str, dict] = {}
    try:
        for subset in SUBSETS:
            for i in range(int(counts.get(subset, 0))):
                cid = case_id(subset, i)
                case = simulate(subset, i)
                labelled = subset != "unlabelled"
                writer.add_case(cid, case.image, case.geometry, label=case.label if labelled else None,
                                subset=subset, instances=case.instances if labelled else None)
                infos[cid] = case.info
        writer.finalize(extra=extra(infos))
    except BaseException:
        writer.abort()
        raise


def write_simulated_volumes(writer, prefix: str, spec: dict, simulate_case: Callable, size: str, seed: int,
                            extra: Callable[[dict[str, dict]], dict]) -> None:
    """The 3D simulators' case loop: ``simulate_case(size, seed, subset, i) -> (image, label, geometry,
    info)`` for one-channel volumes, cases named ``<prefix>_tr000`` / ``_ts000`` / ``_ul000`` and
    counted by ``spec``'s ``n_train`` / ``n_test`` / ``n_unlabelled``."""
    tags = {"train": "tr", "test": "ts", "unlabelled": "ul"}

    def simulate(subset, i):
        image, label, geometry, info = simulate_case(size, seed, subset, i)
        return SimulatedCase(image[None], geometry, label, info)

    write_simulated_cases(writer, {s: spec[f"n_{s}"] for s in SUBSETS},
                          lambda subset, i: f"{prefix}_{tags[subset]}{i:03d}", simulate, extra)
