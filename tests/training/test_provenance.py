"""Provenance facts stored with every record."""

import torch

from medseg_bench.training.provenance import environment, speed_probe_ms


def test_speed_probe_leaves_the_random_state_alone():
    torch.manual_seed(3)
    state = torch.random.get_rng_state()
    assert speed_probe_ms(repeats=2) > 0
    assert torch.equal(torch.random.get_rng_state(), state)


def test_cpu_environment_names_the_cpu_and_its_speed():
    env = environment(torch.device("cpu"), 1)
    assert env["device"] == "cpu" and env["num_threads"] == 1
    assert isinstance(env["cpu_model"], str) and env["cpu_model"]
    assert env["speed_probe_ms"] > 0


def test_git_commit_is_read_once_per_process(monkeypatch):
    # a long grid's workers must keep naming the code they started with, even if the checkout moves on
    import subprocess

    from medseg_bench.training import provenance

    calls = []

    def git_unavailable(*args, **kwargs):
        calls.append(args)
        raise OSError("the checkout moved on")

    provenance.git_commit.cache_clear()
    first = provenance.git_commit()
    monkeypatch.setattr(subprocess, "run", git_unavailable)
    assert provenance.git_commit() == first and calls == []  # remembered, git not asked again
    provenance.git_commit.cache_clear()
    assert provenance.git_commit() is None and calls  # an uncached read would have said something else
    monkeypatch.undo()
    provenance.git_commit.cache_clear()
