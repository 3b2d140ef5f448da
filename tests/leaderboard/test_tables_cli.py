"""Markdown/CSV tables: content, determinism (byte-for-byte rebuild), the leaderboard CLI, and the
committed leaderboard rebuilt from its committed records."""

import csv
import io
import json
from pathlib import Path

import pytest
from lb_records import grid, record

from medseg_bench.bench.results import load_records, write_record
from medseg_bench.leaderboard import build_leaderboard
from medseg_bench.leaderboard.cli import leaderboard_command

REPO = Path(__file__).resolve().parents[2]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.md")) + sorted(folder.glob("*.csv"))}


def test_tables_content_and_byte_for_byte_rebuild(tmp_path):
    recs = grid()
    recs.append(record("ct_hip_small", "otsu", 0, 3, [], family="classical", status="failed",
                       error="Traceback (most recent call last):\nRuntimeError: out of memory"))
    build_leaderboard(recs, tmp_path / "a", plots=False, html=False)
    build_leaderboard(list(reversed(recs)), tmp_path / "b", plots=False, html=False)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert set(a) == {"README.md", "ct_hip_small.md", "ct_hip_small.csv", "nuclei_he_small.md", "nuclei_he_small.csv"}
    assert a == b  # same records (any order) -> same bytes

    md = a["ct_hip_small.md"].decode()
    assert "### Dice ↑" in md and "### HD95 ↓" in md and "AJI" not in md
    assert "Oracle rows" in md and "cuts_oracle" in md.split("Oracle rows")[1]
    assert "RuntimeError: out of memory" in md and "(3/4 seeds; 1 failed)" in md
    assert "Xie" in md and "3.30" in md  # reported numbers, labelled as other data
    assert "### AJI ↑" in a["nuclei_he_small.md"].decode()
    rows = list(csv.DictReader(io.StringIO(a["ct_hip_small.csv"].decode())))
    mt4 = next(r for r in rows if r["method"] == "mean_teacher" and r["budget"] == "4")
    assert float(mt4["dice_ci_low"]) < float(mt4["dice_mean"]) < float(mt4["dice_ci_high"])
    assert mt4["reference"] == "supervised" and mt4["dice_marker"] == "▲" and float(mt4["dice_p_holm"]) < 0.05
    readme = a["README.md"].decode()
    assert "Overall ranking" in readme and "cuts_oracle (oracle)" in readme
    assert "Demo leaderboard" not in readme


def test_leaderboard_cli_and_demo_stamp(tmp_path, capsys):
    wd = tmp_path / "wd"
    for r in grid(datasets=("retina_ga_small",), preset="demo"):
        write_record(wd, r)
    (wd / "results" / "garbage.json").write_text("{not json")
    assert leaderboard_command(wd) == 0
    out = wd / "leaderboards"
    assert "Demo leaderboard" in (out / "README.md").read_text()
    assert (out / "index.html").is_file() and (out / "plots" / "retina_ga_small__demo__dice.svg").is_file()
    assert "garbage.json" in capsys.readouterr().err  # reported, not fatal
    # an explicit --out carries the records so the folder can be rebuilt from itself
    assert leaderboard_command(wd, out=str(tmp_path / "committed")) == 0
    copied = load_records(tmp_path / "committed" / "results")
    assert len(copied) == len(load_records(wd / "results", errors=[]))
    assert leaderboard_command(tmp_path / "empty") == 2


def test_committed_leaderboard_rebuilds_byte_for_byte(tmp_path):
    committed = REPO / "leaderboards"
    records = load_records(committed / "results") if (committed / "results").is_dir() else []
    if not records:
        pytest.skip("no committed reference records yet in leaderboards/results/")
    # plots too: the tables link them (only the markdown and CSV files are compared)
    build_leaderboard(records, tmp_path, manifest_dir=committed / "results", plots=True, html=False)
    rebuilt, original = _files(tmp_path), _files(committed)
    assert set(rebuilt) <= set(original)
    for name, data in rebuilt.items():
        assert data == original[name], f"leaderboards/{name} differs from a rebuild from leaderboards/results/"


def test_incomplete_grid_is_labelled_and_counted(tmp_path):
    """Rows with no record yet take family/citation from the grid manifest; README and tables say how
    many runs finished, so a partial reference benchmark is never mistaken for a complete one."""
    from medseg_bench.bench.results import GRID_MANIFEST, write_json_atomic

    recs = [record("ds", "m", 2, s, [0.5, 0.6]) for s in (0, 1)]
    cells = [{"dataset": "ds", "preset": "quick", "configuration": "2d", "method": meth, "budget": 2, "seed": s}
             for meth in ("m", "late") for s in (0, 1, 2)]
    write_json_atomic(tmp_path / "results" / GRID_MANIFEST,
                      {"cells": cells, "methods": {"late": {"family": "unsupervised", "citation": "Roe 2023"}}})
    out = tmp_path / "lb"
    build_leaderboard(recs, out, manifest_dir=tmp_path / "results", plots=False, html=False)
    readme, table = (out / "README.md").read_text(), (out / "ds.md").read_text()
    assert "Incomplete grid: 2 of 6 runs finished" in readme and "| 2/6 |" in readme
    assert "runs done 2/6" in table
    late = next(line for line in table.splitlines() if line.startswith("| late |"))
    assert "| unsupervised |" in late and "missing" in late
    # a complete grid has no banner
    build_leaderboard(recs, tmp_path / "full", plots=False, html=False)
    assert "Incomplete" not in (tmp_path / "full" / "README.md").read_text()


def test_records_with_non_finite_values_load(tmp_path):
    r = record("ds", "m", 2, 0, [0.5, 0.0], hd95=[1.0, "inf"])
    write_record(tmp_path, r)
    assert json.loads((tmp_path / "results" / "ds__quick__2d__m__b2__s0.json").read_text())["status"] == "done"


def test_readme_says_how_the_results_were_made(tmp_path):
    recs = grid(datasets=("ct_hip_small",))
    for i, r in enumerate(recs):
        r["provenance"]["git_commit"] = "a" * 40 if i % 3 else "b" * 40 + "+dirty"
        r["provenance"]["environment"] = {"device": "cpu", "num_threads": 1, "cpu_model": "Xeon X",
                                          "speed_probe_ms": 20.0 + i % 2}
    build_leaderboard(recs, tmp_path, plots=False, html=False)
    readme = (tmp_path / "README.md").read_text()
    section = readme.split("## How these results were made")[1]
    assert "`medseg-bench run --preset quick --seeds 0 1 2`" in section
    n_b = sum(1 for i in range(len(recs)) if i % 3 == 0)
    assert f"2 commit(s) of medseg_bench (runs per commit): `aaaaaaaaaaaa` ({len(recs) - n_b}), " \
           f"`bbbbbbbbbbbb+dirty` ({n_b})" in section
    assert f"Machines: Xeon X, 1 thread ({len(recs)} runs; speed probe 20.0–21.0 ms)" in section


def test_small_surface_distances_keep_three_significant_figures(tmp_path):
    """Histology pixels of 0.0005 mm: HD95 of a few pixels must not print as 0.00."""
    from medseg_bench.leaderboard import build_boards
    from medseg_bench.leaderboard.tables import metric_digits

    recs = [record("ds", "m", 2, s, [0.8, 0.7], hd95=[0.0057, 0.0061]) for s in (0, 1)]
    board = build_boards(recs)[0]
    assert metric_digits(board, "hd95") == 5 and metric_digits(board, "dice") == 3
    build_leaderboard(recs, tmp_path, plots=False, html=False)
    md = (tmp_path / "ds.md").read_text()
    assert "0.00590" in md.split("### HD95")[1] and "0.01" not in md.split("### HD95")[1].split("###")[0]
    ct = [record("ct", "m", 2, 0, [0.8, 0.7], hd95=[3.5, 12.25])]
    assert metric_digits(build_boards(ct)[0], "hd95") == 2  # mm on CT: unchanged


def test_histology_board_in_micrometres_with_one_nsd_tau(tmp_path):
    """Issue 23: spacing 0.0005 mm -> distances shown in µm (records stay in mm); the NSD column shows
    only the runs scored at the board's tau, and its header names the tau and counts the others."""
    from medseg_bench.leaderboard import build_boards

    he = (0.0005, 0.0005)
    recs = [record("he", "a", 2, s, [0.8, 0.7], hd95=[0.0057, 0.0061], spacing=he, tau=0.001) for s in (0, 1)]
    recs += [record("he", "b", 2, s, [0.6, 0.5], hd95=[0.0090, 0.0110], spacing=he, tau=0.001) for s in (0, 1)]
    recs += [record("he", "c", 2, 0, [0.9, 0.9], hd95=[0.002, 0.002], spacing=he)]  # legacy: global tau 2
    recs += [record("he", "c", 2, 1, [0.9, 0.9], hd95=[0.002, 0.002], spacing=he, tau=0.001)]  # one cell: no mix
    board = build_boards(recs)[0]
    assert (board.distance_unit, board.distance_factor, board.nsd_tau, board.nsd_tau_text) == ("µm", 1000.0, 0.001, "1 µm")
    assert board.nsd_legacy == 1 and [r.cells[2].nsd_other_tau for r in board.rows] == [0, 0, 1]
    build_leaderboard(recs, tmp_path, plots=False, html=False)
    md = (tmp_path / "he.md").read_text()
    hd = md.split("### HD95 ↓ (µm)")[1].split("###")[0]
    assert "5.90" in hd and "10.00" in hd  # mean of 5.7 and 6.1 µm; of 9 and 11 µm
    nsd = md.split("### NSD ↑ (τ = 1 µm; `old τ` = 1 run(s) scored with the legacy global τ = 2 spacing units")[1].split("###")[0]
    rows = {line.split("|")[1].strip(): line.split("|")[3].strip() for line in nsd.splitlines() if line.startswith("| ")}
    assert rows["a"].startswith("**0.750") and rows["b"].startswith("0.550") and rows["c"] == "old τ"
    rows = list(csv.DictReader((tmp_path / "he.csv").open()))
    assert {(r["distance_unit"], r["nsd_tau"], r["nsd_tau_display"]) for r in rows} == {("µm", "0.001", "1 µm")}
    ct = build_boards([record("ct", "a", 2, 0, [0.8], spacing=(3.0, 0.8, 0.8), tau=1.6)])[0]
    assert (ct.distance_unit, ct.distance_factor, ct.nsd_tau_text) == ("mm", 1.0, "1.6 mm")


def test_runs_under_different_plans_are_flagged_not_silently_mixed(tmp_path):
    """Records made under another plan (plan hash differs) are kept but every page says so; the cost
    table shows iterations and labelled iterations."""
    recs = [record("ds", "supervised", 2, s, [0.5, 0.6], family="supervised") for s in (0, 1)]
    recs += [record("ds", "mean_teacher", 2, s, [0.5, 0.7]) for s in (0, 1)]
    for r in recs:
        r["provenance"].update(plan_hash="aaaa", iterations=100, labelled_iterations=100)
    build_leaderboard(recs, tmp_path / "same", plots=False, html=False)
    assert "Mixed plans" not in (tmp_path / "same" / "README.md").read_text()
    table = (tmp_path / "same" / "ds.md").read_text()
    assert "| mean_teacher | 2d | 10.5 | 100 | 100 |" in table
    recs[3]["provenance"]["plan_hash"] = "bbbb"
    build_leaderboard(recs, tmp_path / "mixed", plots=True, html=True)
    readme, table = (tmp_path / "mixed" / "README.md").read_text(), (tmp_path / "mixed" / "ds.md").read_text()
    assert "Mixed plans" in readme and "`aaaa` (3 runs), `bbbb` (1 runs)" in readme
    assert "- plan `bbbb`: mean_teacher b=2" in table
    assert "Mixed plans" in (tmp_path / "mixed" / "index.html").read_text()
    rows = list(csv.DictReader(io.StringIO((tmp_path / "mixed" / "ds.csv").read_text())))
    assert {r["method"]: r["plan_hashes"] for r in rows} == {"mean_teacher": "aaaa bbbb", "supervised": "aaaa"}
