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
