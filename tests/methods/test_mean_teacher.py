"""Mean Teacher and the shared EMA-teacher helpers (medseg_bench.methods._teacher)."""

import json
import math

import pytest
import torch

from medseg_bench.methods import get_method
from medseg_bench.methods._teacher import (
    ema_decay,
    ema_update,
    input_noise,
    make_teacher,
    sigmoid_rampup,
    softmax_mse,
    unsup_weight,
)
from medseg_bench.training.checkpoint import load_checkpoint, seed_everything
from medseg_bench.training.contract import synthetic_context, synthetic_preprocessed
from medseg_bench.training.loop import CHECKPOINT_FINAL

torch.set_num_threads(1)


def test_sigmoid_rampup_shape():
    assert sigmoid_rampup(0, 100) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(100, 100) == 1.0 and sigmoid_rampup(250, 100) == 1.0
    assert sigmoid_rampup(5, 0) == 1.0
    vals = [sigmoid_rampup(s, 50) for s in range(0, 60, 5)]
    assert all(a <= b for a, b in zip(vals, vals[1:]))
    assert unsup_weight(0, 100, 0.1, 0.3) == pytest.approx(0.1 * math.exp(-5))
    assert unsup_weight(30, 100, 0.1, 0.3) == pytest.approx(0.1)
    assert unsup_weight(99, 100, 0.1, 1.0) < 0.1 and unsup_weight(100, 100, 0.1, 1.0) == pytest.approx(0.1)


def test_ema_decay_warmup_and_update():
    assert ema_decay(1, 0.99) == 0.5 and ema_decay(3, 0.99) == 0.75 and ema_decay(10_000, 0.99) == 0.99
    with pytest.raises(ValueError):
        ema_decay(0, 0.99)
    s = torch.nn.Linear(3, 2)
    t = make_teacher(s)
    assert all(not p.requires_grad for p in t.parameters()) and not t.training
    before = {k: v.clone() for k, v in t.state_dict().items()}
    with torch.no_grad():
        for p in s.parameters():
            p.add_(1.0)
    ema_update(t, s, 0.9)
    for k, v in t.state_dict().items():
        assert torch.allclose(v, 0.9 * before[k] + 0.1 * s.state_dict()[k])
    with pytest.raises(ValueError, match="shape"):
        ema_update(torch.nn.Linear(3, 3), s, 0.9)
    with pytest.raises(ValueError, match="differ"):
        ema_update(torch.nn.Sequential(torch.nn.Linear(3, 2)), s, 0.9)


def test_noise_and_softmax_mse():
    x = torch.zeros(2, 1, 8, 8)
    n = input_noise(x, 0.1, 0.2)
    assert n.shape == x.shape and float(n.abs().max()) <= 0.2 + 1e-7 and float(n.std()) > 0.05
    assert input_noise(x, 0.0, 0.2) is x
    a = torch.randn(2, 3, 4, 4, requires_grad=True)
    assert float(softmax_mse(a, a.detach()).detach()) == pytest.approx(0.0)
    loss = softmax_mse(a, torch.randn(2, 3, 4, 4))
    loss.backward()
    assert float(loss.detach()) > 0 and a.grad is not None


def _ctx(tmp_path, iterations=6, **extra):
    ids = synthetic_preprocessed(tmp_path / "pre", n_cases=6, shape=(40, 40))
    ctx = synthetic_context(get_method("mean_teacher"), tmp_path / "pre", ids, tmp_path / "run", (32, 32),
                            iterations=iterations, checkpoint_every=0)
    ctx.settings.update(extra)
    return ctx


def test_hparams_come_from_settings_and_constructor(tmp_path):
    cls = get_method("mean_teacher")
    ctx = _ctx(tmp_path, ema_decay=0.5)
    m = cls()
    m.setup(ctx)
    assert m.hp["ema_decay"] == 0.5 and m.hp["consistency"] == cls.hparams["consistency"]
    m2 = cls(ema_decay=0.7)
    m2.setup(ctx)
    assert m2.hp["ema_decay"] == 0.7
    with pytest.raises(ValueError, match="predict_with"):
        cls(predict_with="nobody").setup(ctx)


def test_teacher_is_ema_in_checkpoint_and_predicts(tmp_path):
    cls = get_method("mean_teacher")
    ctx = _ctx(tmp_path, iterations=6)
    seed_everything(0)
    m = cls()
    m.setup(ctx)
    teacher0 = {k: v.clone() for k, v in m.networks["teacher"].state_dict().items()}
    ids_opt = {id(p) for g in m.optimizer.param_groups for p in g["params"]}
    assert not any(id(p) in ids_opt for p in m.networks["teacher"].parameters())
    m.fit(ctx)
    s, t = m.networks["network"].state_dict(), m.networks["teacher"].state_dict()
    key = next(k for k in s if k.endswith("weight"))
    assert not torch.equal(s[key], t[key]) and not torch.equal(teacher0[key], t[key])
    # the teacher lies between its start and the student (EMA), closer to the student after warm-up
    log = [json.loads(line) for line in (ctx.run_dir / "train_log.jsonl").read_text().splitlines()]
    assert any("consistency" in r for r in log)
    # checkpoint carries the teacher; a predict-style weights-only load restores it
    state = load_checkpoint(ctx.run_dir / CHECKPOINT_FINAL)["method"]
    m2 = cls()
    m2.setup(ctx)
    m2.load_state_dict(state, weights_only=True)
    x = torch.randn(1, 1, 32, 32)
    m.networks["teacher"].eval()
    m2.networks["teacher"].eval()
    with torch.no_grad():
        assert torch.equal(m2.predict_logits(x), m.networks["teacher"](x))
        m3 = cls(predict_with="student")
        m3.setup(ctx)
        m3.load_state_dict(state, weights_only=True)
        m3.networks["network"].eval()
        assert torch.equal(m3.predict_logits(x), m3.networks["network"](x))


def test_supervised_part_learns_on_toy_discs(tmp_path):
    """30 iterations on bright discs: the supervised loss falls and the consistency term is active."""
    ctx = _ctx(tmp_path, iterations=30, lr=0.01)
    seed_everything(0)
    m = get_method("mean_teacher")()
    m.setup(ctx)
    m.fit(ctx)
    log = [json.loads(line) for line in (ctx.run_dir / "train_log.jsonl").read_text().splitlines()]
    sup = [r["supervised"] for r in log if "supervised" in r]
    assert len(sup) >= 20
    assert sum(sup[-5:]) / 5 < 0.8 * sum(sup[:5]) / 5
    assert all(r["consistency"] >= 0 for r in log if "consistency" in r)
    assert log[-1]["consistency_weight"] > log[0]["consistency_weight"]


@pytest.mark.parametrize("name", ["mean_teacher", "embedding_matching"])
def test_iteration_matched_with_supervised(tmp_path, name):
    """Fair comparison: the teacher-student methods run every iteration of the cell on a full labelled
    batch (no compute-matched shortening), and the loop accounts for it."""
    cls = get_method(name)
    ids = synthetic_preprocessed(tmp_path / "pre", n_cases=6, shape=(40, 40))
    ctx = synthetic_context(cls, tmp_path / "pre", ids, tmp_path / "run", (32, 32), iterations=7, checkpoint_every=0)
    ctx.plans["presets"] = {"quick": {"configurations": {"2d": {"num_iterations": 7, "time_budget_s": 1.0}}}}
    ctx.preset, ctx.configuration = "quick", "2d"
    seen = []
    seed_everything(0)
    m = cls()
    m.setup(ctx)
    real = m.training_step
    m.training_step = lambda lab, unl, c: (seen.append(lab["data"].shape[0]), real(lab, unl, c))[1]
    m.fit(ctx)
    assert ctx.iterations == 7 and seen == [ctx.batch_size] * 7
    assert ctx.loops[-1]["labelled_iterations"] == 7 and len(ctx.loops[-1]["loss_curve"]) == 7


def test_runner_cost_estimate_shows_the_extra_work():
    from medseg_bench.bench.grid import estimate_cost_s

    cfg = {"num_iterations": 200, "step_time_estimate_s": 0.05, "time_budget_s": 10.0}
    plans = {"presets": {"demo": {"configurations": {"2d": cfg}},
                         "paper": {"configurations": {"2d": {"num_iterations": 1000, "step_time_estimate_s": 0.1}}}}}
    sup = get_method("supervised")
    for name in ("mean_teacher", "embedding_matching"):
        cls = get_method(name)
        assert cls.cost_factor > 2 and "cost_factor" not in cls.hparams and "wall_time_factor" not in cls.hparams
        for preset, base in (("demo", 10.0), ("paper", 100.0)):
            assert estimate_cost_s(sup, plans, preset, "2d", 2) == pytest.approx(base)
            assert estimate_cost_s(cls, plans, preset, "2d", 2) == pytest.approx(base * cls.cost_factor)
