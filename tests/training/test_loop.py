import json

import numpy as np
import pytest
import torch

from medseg_bench.methods import get_method
from medseg_bench.training.checkpoint import seed_everything
from medseg_bench.training.loop import CHECKPOINT_FINAL, CHECKPOINT_LATEST


class _Killed(Exception):
    pass


def _train(ctx, kill_at=None):
    seed_everything(0)
    m = get_method("supervised")()
    m.setup(ctx)
    if kill_at is not None:
        orig = m.train_iteration

        def step(bl, bu, c):
            if c.iteration == kill_at:
                raise _Killed()
            return orig(bl, bu, c)

        m.train_iteration = step
    return m, ctx.run_loop(m)


def _weights(m):
    return {k: v.detach().clone() for k, v in m.networks["network"].state_dict().items()}


def test_loop_checkpoints_logs_and_resumes_exactly(blob_ctx):
    ref_ctx = blob_ctx("ref")
    ref, info = _train(ref_ctx)
    assert info["iterations"] == 6 and (ref_ctx.run_dir / CHECKPOINT_FINAL).is_file()
    assert not (ref_ctx.run_dir / CHECKPOINT_LATEST).exists()
    log = [json.loads(x) for x in (ref_ctx.run_dir / "train_log.jsonl").read_text().splitlines()]
    assert [e["iteration"] for e in log] == [1, 2, 3, 4, 5, 6] and all(np.isfinite(e["loss"]) for e in log)

    ctx = blob_ctx("killed")
    with pytest.raises(_Killed):
        _train(ctx, kill_at=4)  # dies during iteration 5, after the checkpoint at 3
    assert (ctx.run_dir / CHECKPOINT_LATEST).is_file() and not (ctx.run_dir / CHECKPOINT_FINAL).exists()
    # a fresh process would start with other RNG states: scramble them
    torch.manual_seed(123)
    np.random.seed(123)
    resumed, info2 = _train(blob_ctx("killed"))
    assert info2["resumed_from"] == 3
    a, b = _weights(ref), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    log2 = [json.loads(x) for x in (ctx.run_dir / "train_log.jsonl").read_text().splitlines()]
    assert [e["iteration"] for e in log2] == [1, 2, 3, 4, 5, 6]
    assert [e["loss"] for e in log2] == [e["loss"] for e in log]
    # the loss curve survives the kill too (it is in the checkpoint) and matches the log
    assert info2["loss_curve"] == info["loss_curve"] == [[e["iteration"], round(e["loss"], 6)] for e in log]
    assert info["labelled_iterations"] == info2["labelled_iterations"] == 6
    saved = json.loads((ctx.run_dir / "loss_curve.json").read_text())
    assert saved["loss_curve"] == info["loss_curve"] and saved["stage"] == ctx.run_dir.name


def test_finished_loop_is_loaded_not_rerun(blob_ctx):
    ctx = blob_ctx("ref")
    m1, _ = _train(ctx)
    m2, info = _train(blob_ctx("ref"))
    assert info["resumed_from"] == 6 and len(info["loss_curve"]) == 6 and info["labelled_iterations"] == 6
    a, b = _weights(m1), _weights(m2)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_learns_blobs(blob_ctx):
    """Enough iterations on an easy task give a clearly better than chance overlap."""
    from medseg_bench.training.inference import sliding_window_probabilities

    ctx = blob_ctx("learn", iterations=60, checkpoint_every=0, lr=0.02)
    m, _ = _train(ctx)
    m.networks["network"].eval()
    dices = []
    for cid in ("case_004", "case_005"):
        img, seg = ctx.folder.image(cid), ctx.folder.seg(cid)
        probs = sliding_window_probabilities(m.predict_logits, img, ctx.patch_size, mirror_axes=[0, 1])
        assert probs.shape == (2, 40, 40) and np.allclose(probs.sum(0), 1, atol=1e-4)
        pred = probs.argmax(0)
        dices.append(2 * ((pred == 1) & (seg == 1)).sum() / ((pred == 1).sum() + (seg == 1).sum()))
    assert np.mean(dices) > 0.6, dices


def test_tune_allocator_keeps_training_numbers_unchanged():
    """The glibc allocator settings change speed only: the same step gives bit-identical weights."""
    import torch

    from medseg_bench.training.settings import tune_allocator

    def step():
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 2, 1))
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        x = torch.randn(4, 1, 32, 32)
        loss = net(x).square().mean()
        loss.backward()
        opt.step()
        return torch.cat([p.detach().flatten() for p in net.parameters()])

    before = step()
    applied = tune_allocator()
    assert isinstance(applied, bool)
    assert torch.equal(before, step())


def test_omp_wait_policy_respects_the_users_setting():
    import os
    import subprocess
    import sys

    code = "import os, medseg_bench; print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))"
    env = {**os.environ, "OMP_WAIT_POLICY": "ACTIVE"}
    env.pop("GOMP_SPINCOUNT", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["ACTIVE", "None"]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    policy, spin = out.stdout.split()
    assert (policy, spin) in {("PASSIVE", "None"), ("None", "10000")}  # busy machine / idle machine
