"""Grid expansion, cell keys and budget rules."""

import pytest
from bench_fakes import METHODS, Only3D, Sup, Unsup

from medseg_bench.bench.grid import (
    Cell,
    estimate_cost_s,
    expand_grid,
    method_budgets,
    parse_budget,
    parse_budgets,
    resolve_configuration,
)

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
