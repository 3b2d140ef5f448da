"""Leaderboards from result records: aggregation, statistics, tables, plots, HTML, submissions.

Public API::

    from medseg_bench.leaderboard import build_leaderboard, build_boards, annotate_board
"""

from .aggregate import Board, BoardCell, BoardRow, build_boards
from .build import build_leaderboard, load_reported
from .stats import annotate_board, bootstrap_ci, holm, paired_wilcoxon

__all__ = [
    "Board",
    "BoardCell",
    "BoardRow",
    "annotate_board",
    "bootstrap_ci",
    "build_boards",
    "build_leaderboard",
    "holm",
    "load_reported",
    "paired_wilcoxon",
]
