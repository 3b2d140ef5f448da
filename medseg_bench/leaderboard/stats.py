"""Leaderboard statistics: ranks, paired Wilcoxon tests with Holm correction, bootstrap CIs.

* **Reference** of a comparison (per board and budget): ``supervised`` at integer budgets >= 1,
  ``supervised_full`` at ``all``, and at budget 0 the best label-free ``classical`` baseline (by mean
  Dice) when one exists.
* **Test**: two-sided paired Wilcoxon signed-rank test (Wilcoxon 1945; ``scipy.stats.wilcoxon``) over
  the test cases both rows scored, on per-case values averaged over seeds. Fewer than 5 pairs, or all
  differences zero, give no test.
* **Multiplicity**: Holm's step-down correction (Holm 1979) over all tests of one metric on a board.
  Marker ``▲`` (significantly better than the reference, adjusted p < 0.05) or ``▼`` (worse).
* **CI**: 95 % percentile bootstrap (Efron & Tibshirani 1993) of the mean over test cases of the
  seed-averaged per-case values, 2000 resamples, fixed generator seed (so tables rebuild byte for byte).
* **Rank**: per budget, rows with a value ranked by mean (1 = best; ties share the lower rank);
  oracle rows are ranked among themselves only. A row's mean rank is over the budgets it has.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ..bench.grid import ALL
from .aggregate import HIGHER_IS_BETTER, Board, BoardRow

__all__ = ["ALPHA", "annotate_board", "bootstrap_ci", "holm", "paired_wilcoxon", "rank_values", "reference_row"]

ALPHA = 0.05
N_BOOTSTRAP = 2000
MIN_PAIRS = 5


def holm(p_values: list[float]) -> list[float]:
    """Holm-adjusted p-values (NaN stays NaN and does not count as a test).

    >>> [round(p, 3) for p in holm([0.01, 0.04, 0.03])]
    [0.03, 0.06, 0.06]
    """
    idx = [i for i, p in enumerate(p_values) if not math.isnan(p)]
    order = sorted(idx, key=lambda i: p_values[i])
    m = len(order)
    out = [math.nan] * len(p_values)
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * p_values[i]))
        out[i] = running
    return out


def paired_wilcoxon(a: dict, b: dict) -> tuple[float, float]:
    """Two-sided Wilcoxon signed-rank p-value over the keys (cases) of ``a`` and ``b`` with finite
    values in both; returns ``(p, mean difference a - b)``; ``p`` is NaN without a test."""
    keys = sorted(k for k in set(a) & set(b) if np.isfinite(a[k]) and np.isfinite(b[k]))
    if len(keys) < MIN_PAIRS:
        return math.nan, math.nan
    x = np.array([a[k] for k in keys], np.float64)
    y = np.array([b[k] for k in keys], np.float64)
    d = x - y
    if np.all(d == 0):
        return 1.0, 0.0
    from scipy.stats import wilcoxon

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = float(wilcoxon(x, y, zero_method="wilcox", alternative="two-sided").pvalue)
    return p, float(np.mean(d))


def bootstrap_ci(values, n: int = N_BOOTSTRAP, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values`` (NaN left out); ``(nan, nan)`` if empty."""
    v = np.asarray([x for x in values if not math.isnan(x)], np.float64)
    if v.size == 0:
        return math.nan, math.nan
    if v.size == 1:
        return float(v[0]), float(v[0])
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n, v.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def rank_values(values: dict, higher_is_better: bool) -> dict:
    """Competition ranks (1, 2, 2, 4 ...) of the finite values; keys without one get no rank."""
    finite = {k: v for k, v in values.items() if v is not None and not math.isnan(v)}
    ordered = sorted(finite.values(), reverse=higher_is_better)
    return {k: 1 + ordered.index(v) for k, v in finite.items()}


def reference_row(board: Board, budget, row: BoardRow) -> BoardRow | None:
    """The row ``row`` is compared against at ``budget`` (module docstring), or ``None``."""
    candidates = [r for r in board.rows if budget in r.cells and r.cells[budget].done and not r.oracle]
    same_config = lambda rs: sorted(rs, key=lambda r: r.configuration != row.configuration)  # noqa: E731
    if budget == ALL:
        refs = same_config([r for r in candidates if r.method == "supervised_full"])
    elif budget == 0:
        classical = [r for r in candidates if r.family == "classical"]
        refs = sorted(classical, key=lambda r: (-_nz(r.cells[0].mean.get("dice")), r.label))
    else:
        refs = same_config([r for r in candidates if r.method == "supervised"])
    return refs[0] if refs else None


def _nz(x) -> float:
    return -math.inf if x is None or math.isnan(x) else x


def annotate_board(board: Board, alpha: float = ALPHA) -> Board:
    """Fill ranks, CIs, reference comparisons (Holm-adjusted p, markers) and mean ranks in place."""
    for row in board.rows:
        for cell in row.cells.values():
            for m in board.metrics:
                cell.ci[m] = bootstrap_ci(list(cell.per_case.get(m, {}).values()))
    # ranks on the primary metric (Dice), oracle rows separately
    for budget in board.budgets:
        for oracle in (False, True):
            rows = [r for r in board.rows if r.oracle == oracle and budget in r.cells]
            ranks = rank_values({r.label: r.cells[budget].mean.get("dice", math.nan) for r in rows}, True)
            for r in rows:
                r.cells[budget].rank = ranks.get(r.label)
    for row in board.rows:
        rs = [c.rank for c in row.cells.values() if c.rank is not None]
        row.mean_rank = float(np.mean(rs)) if rs else None
    # paired tests against the reference, Holm over each metric's tests on this board
    for m in board.metrics:
        tests = []
        for row in board.rows:
            for budget, cell in row.cells.items():
                ref = reference_row(board, budget, row)
                cell.reference = ref.label if ref is not None else None
                if ref is None or not cell.done:
                    continue
                if ref is row:
                    cell.marker[m] = "ref"
                    continue
                p, diff = paired_wilcoxon(cell.per_case.get(m, {}), ref.cells[budget].per_case.get(m, {}))
                tests.append((cell, p, diff))
        adjusted = holm([p for _, p, _ in tests])
        for (cell, _, diff), p_adj in zip(tests, adjusted):
            cell.p_value[m] = p_adj
            better = diff > 0 if HIGHER_IS_BETTER.get(m, True) else diff < 0
            cell.marker[m] = ("▲" if better else "▼") if not math.isnan(p_adj) and p_adj < alpha and diff != 0 else ""
    return board
