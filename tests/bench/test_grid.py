"""Grid expansion, cell keys and budget rules."""

import pytest
from bench_fakes import METHODS, Only3D, Semi, Staged, Sup, Unsup

from medseg_bench.bench.cells import CellTask
from medseg_bench.bench.grid import (
    Cell,
    estimate_cost_s,
    estimate_grid_cost_s,
    expand_grid,
    method_budgets,
    parse_budget,
    parse_budgets,
    resolve_configuration,
)
from medseg_bench.bench.runner import _stage_groups
from medseg_bench.methods import get_method

PLANS_3D = {"dims": 3, "configurations": {"2d": {}, "3d_fullres": {}},
            "presets": {"demo": {"recommended_configuration": "3d_fullres",
                                 "configurations": {"2d": {"num_iterations": 10, "step_time_estimate_s": 0.5},
                                                    "3d_fullres": {"num_iterations": 10, "step_time_estimate_s": 2.0}}}}}


def test_parse_budget():
    assert parse_budget("all") == "all" and parse_budget("ALL") == "all"
    assert parse_budget("4") == 4 and parse_budget(0) == 0
    assert parse_budgets(["all", "8", 2, "2", 0]) == [0, 2, 8, "all"]
    for bad in ("-1", "half", -2, True, "2.5"):
        with pytest.raises(ValueError):
            parse_budget(bad)


def test_cell_key_roundtrip_and_validation(tmp_path):
    c = Cell("ct_hip_small", "demo", "3d_fullres", "mean_teacher", "all", 1)
    assert c.key == "ct_hip_small__demo__3d_fullres__mean_teacher__ball__s1"
    assert Cell.from_key(c.key + ".json") == c
    assert Cell.from_dict(c.to_dict()) == c
    assert c.run_dir(tmp_path) == tmp_path / "runs/ct_hip_small/demo/3d_fullres/mean_teacher/budget_all/seed_1"
    with pytest.raises(ValueError):
        Cell("bad__name", "demo", "2d", "m", 0, 0)
    with pytest.raises(ValueError):
        Cell.from_key("not_a_key")


def test_method_budgets_rules():
    b = [0, 2, 4, "all"]
    assert method_budgets(Unsup, b) == [0]
    assert method_budgets(Sup, b) == [2, 4, "all"]
    assert method_budgets(METHODS["supervised_full"], b) == ["all"]
    assert method_budgets(Sup, b, n_labelled=3) == [2, "all"]  # 4 labelled cases cannot be drawn from 3


def test_resolve_configuration_respects_dims():
    class TwoD:
        dims = (2,)

    assert resolve_configuration(Only3D, PLANS_3D, "demo") == "3d_fullres"
    assert resolve_configuration(TwoD, PLANS_3D, "demo") == "2d"  # 2D method on a 3D dataset: slices
    assert resolve_configuration(Only3D, {"presets": {"demo": {"recommended_configuration": "2d",
                                                               "configurations": {"2d": {}}}}}, "demo") is None


def test_expand_grid_and_estimates():
    plans = {"a": PLANS_3D, "b": PLANS_3D}
    cells = expand_grid(plans, METHODS, ["all", 0, 2], [1, 0], "demo")
    keys = [c.key for c in cells]
    assert len(keys) == len(set(keys))
    # per dataset: semi(2, all) + supervised(2) + supervised_full(all) + unsup(0) = 5 x 2 seeds
    assert len(cells) == 2 * 5 * 2
    # supervised's "all" row is supervised_full (its all_only subclass), not a duplicate
    assert {c.budget for c in cells if c.method == "supervised"} == {2}
    assert {c.budget for c in cells if c.method == "unsup"} == {0}
    assert {c.configuration for c in cells} == {"3d_fullres"}
    assert estimate_cost_s(Sup, PLANS_3D, "demo", "3d_fullres", 2) == pytest.approx(20.0)
    warnings = []
    expand_grid(plans, {"unsup": Unsup}, [2], [0], "demo", explicit_methods=True, warn=warnings.append)
    assert warnings and "no requested budget" in warnings[0]
    with pytest.raises(ValueError):
        expand_grid(plans, METHODS, [0], [0], "nonsense")


def test_demo_grid_runs_home_only_rows_on_their_home_datasets():
    """``demo_datasets``: the default demo grid keeps the row on its home data only; quick/paper grids
    and a method the user named run it everywhere."""
    class Home(Sup):
        name = "home"
        demo_datasets = ("spect_bone",)

    plans = {"spect_bone_small": PLANS_3D, "ct_hip_small": PLANS_3D}
    quick = {"dims": 3, "configurations": PLANS_3D["configurations"],
             "presets": {"quick": PLANS_3D["presets"]["demo"]}}
    methods = {"home": Home, "sup": Sup}
    demo = {(c.dataset, c.method) for c in expand_grid(plans, methods, [2], [0], "demo")}
    assert demo == {("spect_bone_small", "home"), ("spect_bone_small", "sup"), ("ct_hip_small", "sup")}
    named = {(c.dataset, c.method) for c in expand_grid(plans, methods, [2], [0], "demo", explicit_methods=True)}
    assert ("ct_hip_small", "home") in named
    everywhere = expand_grid({k: quick for k in plans}, methods, [2], [0], "quick")
    assert {(c.dataset, c.method) for c in everywhere} >= {("ct_hip_small", "home")}


def test_default_demo_grid_runs_all_for_the_upper_bound_only():
    """``all_for_upper_bound_only`` (the default demo grid): ``all`` is kept for ``all_only`` rows
    (supervised_full) and dropped for every other method; without the flag nothing changes."""
    plans = {"a": PLANS_3D}
    default = expand_grid(plans, METHODS, [0, 2, "all"], [0], "demo", all_for_upper_bound_only=True)
    at_all = {c.method for c in default if c.budget == "all"}
    assert at_all and all(getattr(METHODS[m], "budgets", None) == "all_only" for m in at_all)
    assert {c.budget for c in default if c.method == "semi"} == {2}
    full = expand_grid(plans, METHODS, [0, 2, "all"], [0], "demo")
    assert {c.budget for c in full if c.method == "semi"} == {2, "all"}
    assert {c.key for c in default} < {c.key for c in full}


# -- cost estimates: shared stages counted once per (dataset, preset, configuration, seed) -------------------

#: a 2D plan whose U-Net trains 100 iterations x 0.5 s = 50 s per cell under "quick"
PLANS_2D = {"dims": 2, "configurations": {"2d": {}},
            "presets": {"quick": {"recommended_configuration": "2d",
                                  "configurations": {"2d": {"num_iterations": 100, "step_time_estimate_s": 0.5}}}}}


def _leaders(estimates, methods):
    """The cells the runner starts first in their stage group, given these estimates."""
    tasks = [CellTask(cell=c, workdir="w", estimate_s=e) for c, e in estimates.items()]
    return set(_stage_groups(tasks, lambda name: methods[name].shared_stages))


def test_stage_charged_once_per_seed_to_the_cell_that_trains_it():
    """3 budgets x 2 seeds of one stage-sharing row: the stage (3600 s) is charged twice, once per
    seed, to the group's first cell in run order; every cell keeps its own 360 s."""
    cells = expand_grid({"d": PLANS_2D}, {"staged": Staged}, [2, 4, 8], [0, 1], "quick")
    assert len(cells) == 6
    estimates, stage_s = estimate_grid_cost_s(cells, {"staged": Staged}, {"d": PLANS_2D})
    assert sum(stage_s.values()) == pytest.approx(2 * 3600.0)
    assert sum(estimates.values()) == pytest.approx(6 * 360.0 + 2 * 3600.0)  # before: 6 x (360 + 3600)
    payers = {c for c, s in stage_s.items() if s > 0}
    assert payers == {Cell("d", "quick", "2d", "staged", 2, 0), Cell("d", "quick", "2d", "staged", 2, 1)}
    assert all(estimates[c] == pytest.approx(360.0 + (3600.0 if c in payers else 0.0)) for c in cells)
    assert _leaders(estimates, {"staged": Staged}) == payers  # the runner computes the stage in exactly those cells


def test_stage_not_charged_again_once_a_done_cell_has_it():
    """A done cell that ran here has the stage on disk: its group's cells left to run carry none of
    it. An imported record (done, no stage folder) does not: the next cell in run order pays it."""
    cells = expand_grid({"d": PLANS_2D}, {"staged": Staged}, [2, 4], [0], "quick")
    first, second = cells
    _, stage_s = estimate_grid_cost_s(cells, {"staged": Staged}, {"d": PLANS_2D}, done={first}, cached={first})
    assert stage_s == {first: 3600.0, second: 0.0}
    _, stage_s = estimate_grid_cost_s(cells, {"staged": Staged}, {"d": PLANS_2D}, done={first})
    assert stage_s == {first: 0.0, second: 3600.0}


def test_both_dae_rows_share_one_stage_charge():
    """``dae_anomaly`` (budget 0) and ``dae_finetune`` (budgets 2, 4) train one DAE per seed (the same
    stage folder ``dae-<configuration>-<key>``): it is charged once per seed, to the cell the runner
    runs first. Before, every dae_finetune cell counted it (2 x 50 s) and dae_anomaly again (50 s)."""
    methods = {n: get_method(n) for n in ("dae_anomaly", "dae_finetune")}
    cells = expand_grid({"d": PLANS_2D}, methods, [0, 2, 4], [0, 1], "quick")
    assert sorted((c.method, c.budget) for c in cells if c.seed == 0) == [
        ("dae_anomaly", 0), ("dae_finetune", 2), ("dae_finetune", 4)]
    estimates, stage_s = estimate_grid_cost_s(cells, methods, {"d": PLANS_2D})
    assert sum(stage_s.values()) == pytest.approx(2 * 50.0)
    payers = {c for c, s in stage_s.items() if s > 0}
    assert payers == {Cell("d", "quick", "2d", "dae_finetune", 2, s) for s in (0, 1)}
    assert estimates[Cell("d", "quick", "2d", "dae_anomaly", 0, 0)] == pytest.approx(1.0)
    assert estimates[Cell("d", "quick", "2d", "dae_finetune", 4, 0)] == pytest.approx(50.0)
    assert sum(estimates.values()) == pytest.approx(2 * (1.0 + 2 * 50.0 + 50.0))
    assert _leaders(estimates, methods) == payers


def test_the_three_cuts_rows_share_one_stage_charge():
    """``cuts``, ``cuts_oracle`` (budget 0) and ``cuts_assign`` (budgets 2, 4) share the encoder stage
    ``cuts_encoder-<configuration>-<key>``: 0.15 s x 800 quick steps + 40 s of test-case clustering,
    charged once per seed (before: in each of the four cells)."""
    methods = {n: get_method(n) for n in ("cuts", "cuts_oracle", "cuts_assign")}
    cells = expand_grid({"d": PLANS_2D}, methods, [0, 2, 4], [0, 1], "quick")
    assert len(cells) == 2 * 4
    estimates, stage_s = estimate_grid_cost_s(cells, methods, {"d": PLANS_2D})
    assert sorted(s for s in stage_s.values() if s > 0) == pytest.approx([160.0, 160.0])
    assert sum(estimates.values()) == pytest.approx(2 * (160.0 + 1.0 + 1.0 + 2 * 10.0))
    assert _leaders(estimates, methods) == {c for c, s in stage_s.items() if s > 0}


def test_rows_without_a_stage_hook_keep_their_estimate():
    """No ``estimate_stage_cost_s``: the grid estimate is :func:`estimate_cost_s`, whether the row
    declares ``shared_stages`` or not (the plan's U-Net time x ``cost_factor``, or its own hook)."""
    class Factor(Semi):
        name, cost_factor = "factor", 2.3

    class OwnHook(Semi):
        name, shared_stages = "own_hook", ("other_stage",)

        @classmethod
        def estimate_cost_s(cls, plans, preset, config, budget):
            return 77.0

    methods = {"supervised": Sup, "factor": Factor, "own_hook": OwnHook, "unsup": Unsup}
    cells = expand_grid({"d": PLANS_2D}, methods, [0, 2, 4], [0, 1], "quick")
    estimates, stage_s = estimate_grid_cost_s(cells, methods, {"d": PLANS_2D})
    assert not any(stage_s.values())
    assert estimates == {c: estimate_cost_s(methods[c.method], PLANS_2D, "quick", "2d", c.budget) for c in cells}
    want = {"supervised": 50.0, "factor": 50.0 * 2.3, "own_hook": 77.0, "unsup": 50.0}
    assert all(estimates[c] == pytest.approx(want[c.method]) for c in cells)


def test_stage_hook_must_name_declared_stages():
    class Undeclared(Staged):
        name, shared_stages = "undeclared", ("another",)

    cells = expand_grid({"d": PLANS_2D}, {"undeclared": Undeclared}, [2], [0], "quick")
    with pytest.raises(ValueError, match="'fake_stage', not in its shared_stages"):
        estimate_grid_cost_s(cells, {"undeclared": Undeclared}, {"d": PLANS_2D})
    with pytest.raises(KeyError, match="no plans for dataset 'd'"):
        estimate_grid_cost_s(cells, {"undeclared": Undeclared}, {})
