"""The training-loss curve every run records, and the convergence check read from it.

A schedule that stops before the training loss has flattened measures the schedule, not the method
(ARCHITECTURE.md, "Fair comparison"). So the engine keeps, for every loop, the mean training loss per
window of iterations (:class:`LossCurve`; ``windows`` equal windows over the run, 50 by default, the
last one possibly shorter), saves it in every checkpoint (a resumed run has the same curve as an
uninterrupted one), and the cell's record carries it with :func:`convergence`:

    improvement = (L(70-80 %) - L(90-100 %)) / L(70-80 %)

where ``L(a-b %)`` is the mean training loss over those iterations of the run: how much the last
20 % of the iterations still improved the loss, each end smoothed over a tenth of the run (a single
step's loss is noisy: random patches). The run counts as converged when the improvement is below
:data:`CONVERGENCE_TOLERANCE` (5 %); a loss that rises at the end also counts (nothing left to gain).
"""

from __future__ import annotations

import math

__all__ = ["CONVERGENCE_TOLERANCE", "LossCurve", "convergence"]

#: a run whose last 20 % of iterations improve the training loss by less than this share has converged
CONVERGENCE_TOLERANCE = 0.05


class LossCurve:
    """Mean of a scalar (the training loss) per window of iterations of a ``total``-iteration run.

    Args:
        total: iterations of the run (>= 0).
        windows: number of windows (the window is ``ceil(total / windows)`` iterations).
    """

    def __init__(self, total: int, windows: int = 50):
        self.total = max(0, int(total))
        self.window = max(1, math.ceil(self.total / max(1, int(windows))))
        self._sums: list[float] = []
        self._counts: list[int] = []

    def add(self, iteration: int, value: float) -> None:
        """Record ``value`` at 1-based ``iteration``; non-finite values are skipped (the loop logs them)."""
        if not math.isfinite(value):
            return
        k = (int(iteration) - 1) // self.window
        while len(self._sums) <= k:
            self._sums.append(0.0)
            self._counts.append(0)
        self._sums[k] += float(value)
        self._counts[k] += 1

    def points(self) -> list[list[float]]:
        """``[[last iteration of the window, mean value], ...]`` for the windows with values."""
        return [[min((k + 1) * self.window, self.total), round(s / c, 6)]
                for k, (s, c) in enumerate(zip(self._sums, self._counts)) if c]

    def state_dict(self) -> dict:
        return {"total": self.total, "window": self.window, "sums": list(self._sums), "counts": list(self._counts)}

    def load_state_dict(self, state: dict) -> None:
        self.total, self.window = int(state["total"]), int(state["window"])
        self._sums, self._counts = [float(v) for v in state["sums"]], [int(v) for v in state["counts"]]

    def summary(self) -> dict:
        """``{"window_iterations", "loss_curve", "convergence"}`` for a record."""
        pts = self.points()
        return {"window_iterations": self.window, "loss_curve": pts, "convergence": convergence(pts, self.total, self.window)}


def _mean_between(points: list, lo: float, hi: float, window: float) -> float:
    """Iteration-weighted mean of the windows overlapping ``(lo, hi]`` (iterations)."""
    num = den = 0.0
    for end, value in points:
        start = max(end - window, 0.0)
        overlap = min(end, hi) - max(start, lo)
        if overlap > 0:
            num += overlap * value
            den += overlap
    return num / den if den > 0 else math.nan


def convergence(points: list, total: int | None = None, window: int | None = None,
                tolerance: float = CONVERGENCE_TOLERANCE) -> dict:
    """The convergence check of a loss curve (module docstring).

    Args:
        points: ``[[last iteration of the window, mean loss], ...]`` in order, equal windows except
            possibly the last (as :meth:`LossCurve.points` writes them).
        total: the run's iterations (default: the last point's).
        window: iterations per window (default: the first point's end, i.e. the first window).

    Returns:
        ``{"loss_at_80pct", "loss_at_100pct", "last_20pct_improvement", "tolerance", "converged"}``;
        the values and ``converged`` are None (JSON null) when the run is too short to tell (fewer
        than 10 iterations or no loss in one of the two spans).
    """
    out = {"loss_at_80pct": None, "loss_at_100pct": None, "last_20pct_improvement": None,
           "tolerance": tolerance, "converged": None}
    if not points:
        return out
    total = float(total if total is not None else points[-1][0])
    window = float(window if window is not None else points[0][0])
    if total < 10:
        return out
    a = _mean_between(points, 0.7 * total, 0.8 * total, window)
    b = _mean_between(points, 0.9 * total, total, window)
    if not (math.isfinite(a) and math.isfinite(b)) or a <= 0:
        return out
    imp = (a - b) / a
    out.update(loss_at_80pct=round(a, 6), loss_at_100pct=round(b, 6), last_20pct_improvement=round(imp, 6),
               converged=bool(imp < tolerance))
    return out
