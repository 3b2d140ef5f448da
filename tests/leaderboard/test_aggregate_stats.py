"""Aggregation (inf rule, failed/missing cells, oracle separation) and statistics."""

import math

import numpy as np
import pytest
from lb_records import grid, record
from scipy.stats import wilcoxon

from medseg_bench.leaderboard import annotate_board, bootstrap_ci, build_boards, holm, paired_wilcoxon
from medseg_bench.leaderboard.aggregate import case_values


def _board(recs, manifest=None, ds="ct_hip_small"):
    boards = [annotate_board(b) for b in build_boards(recs, manifest)]
    return next(b for b in boards if b.dataset == ds)


def _row(board, label):
    return next(r for r in board.rows if r.label == label)


def test_inf_hd95_counts_at_the_diagonal_not_silently():
    # one case with an empty prediction: HD95 inf -> image diagonal (100), counted as a failure
    recs = [record("ds", "m", 2, 0, [0.8, 0.0], hd95=[2.0, "inf"], diagonal=100.0)]
    cell = _row(_board(recs, ds="ds"), "m").cells[2]
    assert cell.mean["hd95"] == pytest.approx((2.0 + 100.0) / 2)
    assert cell.n_inf["hd95"] == 1
    # a both-empty case (nan) is left out and counted
    recs = [record("ds", "m", 2, 0, [0.8, "nan"], hd95=[2.0, "nan"])]
    cell = _row(_board(recs, ds="ds"), "m").cells[2]
    assert cell.mean["hd95"] == pytest.approx(2.0) and cell.n_nan["hd95"] == 1 and cell.mean["dice"] == 0.8


def test_instance_board_shows_aji_pq_before_its_first_record():
    expected = [{"dataset": "nuc", "preset": "demo", "configuration": "2d", "method": "m", "budget": 2, "seed": 0}]
    board = build_boards([], expected, manifest_datasets={"nuc": {"instance_labels": True}})[0]
    assert board.instance and {"aji", "pq"} <= set(board.metrics)
    plain = build_boards([], expected, manifest_datasets={"nuc": {"instance_labels": False}})[0]
    assert not plain.instance and "aji" not in plain.metrics


def test_case_values_diagonal_from_shape_when_missing():
    case = {"case": "a", "shape": [3, 4], "spacing": [1.0, 1.0], "classes": {"x": {"hd95": float("inf")}}}
    vals, n_inf, _ = case_values(case, ("hd95",))
    assert vals["hd95"] == pytest.approx(5.0) and n_inf["hd95"] == 1


def test_mean_std_over_seeds_and_failed_missing_cells():
    recs = [record("ds", "m", 2, s, [0.5 + 0.1 * s] * 4) for s in (0, 1)]
    recs.append(record("ds", "m", 2, 2, [], status="failed", error="Traceback\nValueError: bad"))
    manifest = [{"dataset": "ds", "preset": "quick", "configuration": "2d", "method": "m", "budget": b, "seed": s}
                for b in (2, 4) for s in (0, 1, 2, 3)]
    board = _board(recs, manifest, ds="ds")
    cell = _row(board, "m").cells[2]
    assert cell.mean["dice"] == pytest.approx(0.55) and cell.std["dice"] == pytest.approx(np.std([0.5, 0.6], ddof=1))
    assert cell.status == "partial" and set(cell.failed) == {2} and cell.missing == {3}
    assert _row(board, "m").cells[4].status == "missing"  # expected but never produced: shown, not dropped


def test_oracle_rows_ranked_separately_and_references():
    board = _board(grid())
    cuts, oracle, otsu = _row(board, "cuts"), _row(board, "cuts_oracle"), _row(board, "otsu")
    assert oracle.oracle and oracle.cells[0].rank == 1  # best oracle among oracles only
    assert cuts.cells[0].rank == 1 and otsu.cells[0].rank == 2  # the oracle does not push cuts down
    assert cuts.cells[0].reference == "otsu" and otsu.cells[0].marker["dice"] == "ref"
    assert _row(board, "mean_teacher").cells[2].reference == "supervised"
    assert _row(board, "supervised_full").cells["all"].marker["dice"] == "ref"
    assert _row(board, "mean_teacher").cells[4].marker["dice"] == "▲"  # clearly better over 10 cases
    # instance datasets get AJI / PQ
    assert "aji" in _board(grid(), ds="nuclei_he_small").metrics


def test_holm_and_wilcoxon_match_references():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.2, float("nan")])[0] == pytest.approx(0.2) and math.isnan(holm([0.2, float("nan")])[1])
    rng = np.random.default_rng(1)
    a = {i: float(v) for i, v in enumerate(rng.random(12))}
    b = {i: v - 0.05 + 0.01 * rng.standard_normal() for i, v in a.items()}
    p, diff = paired_wilcoxon(a, b)
    assert p == pytest.approx(wilcoxon(list(a.values()), list(b.values())).pvalue) and diff > 0
    assert math.isnan(paired_wilcoxon({0: 1.0}, {0: 2.0})[0])  # too few pairs: no test
    assert paired_wilcoxon(a, a)[0] == 1.0


def test_bootstrap_ci_deterministic_and_covers_mean():
    v = list(np.random.default_rng(3).normal(0.7, 0.05, 20))
    lo, hi = bootstrap_ci(v)
    assert lo < np.mean(v) < hi and (lo, hi) == bootstrap_ci(v)
    assert all(math.isnan(x) for x in bootstrap_ci([]))
    assert bootstrap_ci([0.5]) == (0.5, 0.5)


def test_machines_behind_the_cost_columns_are_listed():
    from medseg_bench.leaderboard.tables import board_markdown

    recs = [record("ds", "m", b, s, [0.8, 0.7]) for b in (2, 4) for s in (0, 1)]
    for r, (cpu, probe) in zip(recs, [("Xeon A", 20.0), ("Xeon A", 31.5), ("Xeon B", 12.0), (None, None)]):
        env = {"device": "cpu", "num_threads": 1}
        if cpu:
            env.update(cpu_model=cpu, speed_probe_ms=probe)
        r["provenance"]["environment"] = env
    board = _board(recs, ds="ds")
    assert board.machines() == [
        {"label": "Xeon A, 1 thread", "runs": 2, "unprobed": 0, "probe_min_ms": 20.0, "probe_max_ms": 31.5},
        {"label": "CPU (model not recorded), 1 thread", "runs": 1, "unprobed": 1, "probe_min_ms": None,
         "probe_max_ms": None},
        {"label": "Xeon B, 1 thread", "runs": 1, "unprobed": 0, "probe_min_ms": 12.0, "probe_max_ms": 12.0}]
    text = board_markdown(board)
    assert ("Machines: Xeon A, 1 thread (2 runs; speed probe 20.0–31.5 ms); CPU (model not recorded), 1 thread "
            "(1 run; 1 without a probe); Xeon B, 1 thread (1 run; speed probe 12.0 ms).") in text
