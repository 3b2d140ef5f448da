"""Ray (local instance) and Slurm-via-submitit (local executor) behind the same runner."""

import bench_fakes
import cloudpickle
import pytest
from bench_fakes import METHODS, Broken, fake_cell_fn, fake_prepare, toy_dataset

from medseg_bench.bench import load_records, run_benchmark

# the fake engine lives in the tests folder, which workers cannot import: ship it by value
cloudpickle.register_pickle_by_value(bench_fakes)
GRID_METHODS = {"unsup": METHODS["unsup"], "supervised_full": METHODS["supervised_full"], "broken": Broken}


def _run(wd, executor, **options):
    return run_benchmark(wd, datasets=["toy_a"], budgets=[0, 2, "all"], preset="demo", executor=executor,
                         cell_fn=fake_cell_fn, prepare_fn=fake_prepare, method_classes=GRID_METHODS,
                         progress=False, leaderboard=False, executor_options=options)


def _check(wd, summary):
    assert summary.done == 2 and sorted(str(c.budget) for c, _ in summary.failed if c.method == "broken") == ["2", "all"]
    recs = {r["cell"]["method"]: r for r in load_records(wd / "results")}
    assert recs["unsup"]["status"] == "done" and "deliberately broken" in recs["broken"]["error"]


def test_ray_local_instance(tmp_path):
    ray = pytest.importorskip("ray")
    ray.cloudpickle.register_pickle_by_value(bench_fakes)
    toy_dataset(tmp_path, "toy_a")
    try:
        summary, _ = _run(tmp_path, "ray", init_kwargs={"num_cpus": 2, "num_gpus": 0}, num_gpus=0)
    finally:
        if ray.is_initialized():
            ray.shutdown()
    _check(tmp_path, summary)
    assert any("threads=1" in ln for ln in (tmp_path / "calls.log").read_text().splitlines())


def test_submitit_local_executor(tmp_path):
    pytest.importorskip("submitit")
    toy_dataset(tmp_path, "toy_a")
    summary, cells = _run(tmp_path, "slurm", cluster="local", poll_interval_s=0.5)
    _check(tmp_path, summary)
    assert (tmp_path / "slurm").is_dir()  # submitit's job folders (logs, pickles)
    again, _ = _run(tmp_path, "slurm", cluster="debug")  # finished cells are skipped; the failed one retried
    assert again.skipped == 2 and len(again.failed) == 2
