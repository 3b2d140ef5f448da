"""Label-budget curves: metric vs budget per board, one line per method (PNG and SVG).

Budgets are placed at evenly spaced positions (0, 1, 2, 4, ..., all) so that ``all`` has a place;
error bars are the std over seeds. Methods at one budget only (unsupervised at 0, ``supervised_full``
at ``all``) appear as single markers; oracle rows are dashed. Files carry no timestamps.
"""

from __future__ import annotations

import math
from pathlib import Path

from .aggregate import HIGHER_IS_BETTER, Board
from .tables import METRIC_TITLES

__all__ = ["plot_board", "plot_name"]


def plot_name(board: Board, metric: str) -> str:
    return f"{board.dataset}__{board.preset}__{metric}"


def plot_board(board: Board, out_dir: Path, metric: str = "dice") -> dict[str, Path]:
    """Write ``<out_dir>/<dataset>__<preset>__<metric>.{png,svg}``; returns ``{"png": path, "svg": path}``."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pos = {b: i for i, b in enumerate(board.budgets)}
    with matplotlib.rc_context({"svg.hashsalt": "medseg-bench", "font.size": 9}):
        fig, ax = plt.subplots(figsize=(7.0, 4.2), dpi=110)
        styles = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">"]
        for i, row in enumerate(sorted(board.rows, key=lambda r: r.label)):
            xs, ys, es = [], [], []
            for b, cell in row.cells.items():
                m = cell.mean.get(metric, math.nan)
                if cell.done and not math.isnan(m):
                    xs.append(pos[b])
                    ys.append(m)
                    s = cell.std.get(metric, 0.0)
                    es.append(0.0 if math.isnan(s) else s)
            if not xs:
                continue
            label = row.label + (" (oracle)" if row.oracle else "")
            ax.errorbar(xs, ys, yerr=es, marker=styles[i % len(styles)], linestyle="--" if row.oracle else "-",
                        capsize=3, label=label, linewidth=1.4, markersize=5)
        ax.set_xticks(range(len(board.budgets)))
        ax.set_xticklabels([str(b) for b in board.budgets])
        ax.set_xlabel("label budget (labelled training cases)")
        arrow = "higher is better" if HIGHER_IS_BETTER.get(metric, True) else "lower is better"
        ax.set_ylabel(f"{METRIC_TITLES.get(metric, metric)} ({arrow})")
        title = f"{board.dataset} — preset {board.preset}" + (" (DEMO)" if board.demo else "")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
        fig.tight_layout()
        base = out_dir / plot_name(board, metric)
        paths = {"png": base.with_suffix(".png"), "svg": base.with_suffix(".svg")}
        fig.savefig(paths["png"], metadata={"Software": None})
        fig.savefig(paths["svg"], metadata={"Date": None, "Creator": None})
        plt.close(fig)
    return paths
