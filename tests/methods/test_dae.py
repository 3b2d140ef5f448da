"""DAE methods: coarse noise, anomaly map and threshold rule, the cached stage, the fine-tune's start."""

import numpy as np
import pytest
import torch

from medseg_bench.methods import get_method
from medseg_bench.methods.dae._noise import anomaly_map, coarse_noise, foreground_mask
from medseg_bench.methods.dae.anomaly import threshold_anomaly_map
from medseg_bench.methods.dae.finetune import HEAD_PREFIX, transfer_weights
from medseg_bench.training.contract import _label_spy, synthetic_context, synthetic_preprocessed
from medseg_bench.workdir import Workdir

torch.set_num_threads(1)


def test_coarse_noise_is_low_frequency():
    x = torch.ones(4, 2, 128, 128)  # foreground everywhere (no minimum-valued background)
    x[..., 0, 0] = 0.0  # one background voxel so the mask is not empty by the min rule
    g = torch.Generator().manual_seed(0)
    n = coarse_noise(x, sigma=0.2, resolution=16, generator=g)
    assert n.shape == x.shape
    spec = torch.fft.fftshift(torch.fft.fft2(n), dim=(-2, -1)).abs() ** 2
    k = torch.arange(128) - 64
    ky, kx = torch.meshgrid(k, k, indexing="ij")
    inside = (ky.abs() <= 8) & (kx.abs() <= 8)  # the 16x16 grid's band (up to its Nyquist, 8 cycles)
    frac_above = float(spec[..., ~inside].sum() / spec.sum())
    assert frac_above < 0.15, frac_above  # measured 0.098: bilinear interpolation's side lobes and the roll's seam
    wide = (ky.abs() <= 12) & (kx.abs() <= 12)
    assert float(spec[..., ~wide].sum() / spec.sum()) < 0.05  # measured 0.026
    white = torch.randn_like(n)  # a control the check must fail on
    ws = torch.fft.fftshift(torch.fft.fft2(white), dim=(-2, -1)).abs() ** 2
    assert float(ws[..., ~inside].sum() / ws.sum()) > 0.9
    assert 0.1 < float(n.std()) < 0.25  # sigma 0.2 on the grid, smoothed a little by the interpolation


def test_coarse_noise_zero_outside_foreground_and_rolled():
    x = torch.zeros(3, 1, 64, 64)
    x[:, :, 16:48, 8:40] = 1.0 + torch.rand(3, 1, 32, 32)
    body = foreground_mask(x)
    assert body.shape == (3, 1, 64, 64) and int(body.sum()) == 3 * 32 * 32
    n = coarse_noise(x, generator=torch.Generator().manual_seed(1))
    assert torch.all(n[~body.expand_as(n)] == 0)
    assert float(n[body.expand_as(n)].abs().mean()) > 0.02
    # random roll: two samples from the same grid seed are shifted copies, not equal
    a = coarse_noise(torch.ones(2, 1, 32, 32), mask=torch.ones(2, 1, 32, 32, dtype=torch.bool),
                     generator=torch.Generator().manual_seed(2))
    assert not torch.equal(a[0], a[1])
    with pytest.raises(ValueError, match="2D or 3D"):
        coarse_noise(torch.ones(2, 1, 8))


def test_anomaly_map_channel_mean_and_per_slice_median():
    img = np.zeros((2, 3, 20, 20), np.float32)
    rec = img.copy()
    rec[0, 1, 5:12, 5:12] = 2.0  # channel 0 error 2 -> mean over 2 channels 1
    rec[:, 1, 15, 15] = 9.0  # a single-voxel outlier: removed by the 5x5 median
    a = anomaly_map(img, rec, kernel=5, patch_dims=2)
    assert a.shape == (3, 20, 20)
    assert a[1, 8, 8] == pytest.approx(1.0) and a[1, 15, 15] == 0.0
    assert np.all(a[0] == 0) and np.all(a[2] == 0)  # per slice: nothing leaks to the neighbour slices
    a3 = anomaly_map(img, rec, kernel=5)  # a 3D filter over the 3 slices removes the one-slice blob
    assert a3[1, 8, 8] == 0.0
    with pytest.raises(ValueError, match="differ"):
        anomaly_map(img, rec[:, :2])


def test_threshold_rule_on_a_known_map():
    amap = np.full((40, 40), 0.1, np.float32)
    amap[10:20, 10:20] = 1.0
    amap[0:5, :] = 5.0  # outside the body: must not count
    body = np.zeros((40, 40), bool)
    body[5:, :] = True
    p, t = threshold_anomaly_map(amap, body)
    assert 0.1 <= t < 1.0
    seg = np.argmax(np.stack([1 - p, p]), axis=0)
    want = np.zeros((40, 40), int)
    want[10:20, 10:20] = 1
    assert np.array_equal(seg, want)
    assert np.all(p[~body] == 0) and np.all((p >= 0) & (p < 1))
    p0, t0 = threshold_anomaly_map(np.full((8, 8), 0.3, np.float32), np.ones((8, 8), bool))
    assert not p0.any() and t0 == float("inf")  # constant map: no anomaly


def _ctx(name, tmp_path, ids, budget_ids, run, iterations=6):
    cls = get_method(name)
    ctx = synthetic_context(cls, tmp_path / "pre", ids, tmp_path / run, (32, 32), iterations=iterations,
                            checkpoint_every=100, workdir=Workdir(tmp_path / "work"))
    if cls.needs_labels:
        ctx.labelled_ids = list(budget_ids)
        ctx.unlabelled_ids = [i for i in ids if i not in budget_ids]
        ctx.budget = len(budget_ids)
    return cls, ctx


def test_finetune_starts_from_the_cached_dae_and_reads_only_its_budget(tmp_path):
    ids = synthetic_preprocessed(tmp_path / "pre", n_cases=6, shape=(40, 40))
    seen, folders = [], []
    for budget_ids in (ids[:2], ids[:4]):
        cls, ctx = _ctx("dae_finetune", tmp_path, ids, budget_ids, f"run_{len(budget_ids)}")
        m = cls()
        m.setup(ctx)
        fresh = {k: v.clone() for k, v in m.networks["network"].state_dict().items()}
        first = {}
        orig = m.training_step

        def spy(bl, bu, c, orig=orig, m=m, first=first):
            if not first:
                first.update({k: v.detach().clone() for k, v in m.networks["network"].state_dict().items()})
            return orig(bl, bu, c)

        m.training_step = spy
        opened = []
        with _label_spy(opened):
            summary = m.fit(ctx)
        labels = {p.split("/")[-1] for p in opened if p.endswith("_seg.npy")}
        assert labels <= {f"{c}_seg.npy" for c in budget_ids}, labels  # the stage reads no label
        stages = sorted((tmp_path / "work" / "stages").rglob("checkpoint_final.pt"))
        assert len(stages) == 1  # one DAE for both budgets
        folders.append((stages[0], stages[0].stat().st_mtime_ns))
        dae = torch.load(stages[0], weights_only=False)["method"]["networks"]["network"]
        body = [k for k in dae if not k.startswith(HEAD_PREFIX)]
        assert body and all(torch.equal(first[k], dae[k]) for k in body)  # fine-tuning began at the DAE
        assert any(not torch.equal(fresh[k], dae[k]) for k in body)  # ... which is not the fresh init
        head = [k for k in first if k.startswith(HEAD_PREFIX) and k.endswith("weight")]
        assert head and all(first[k].shape[0] == 2 and dae[k].shape[0] == 1 for k in head)  # new head: K, not C
        assert summary["train_time_s"] == pytest.approx(summary["finetune_time_s"] + summary["pretrain_time_s"])
        assert summary["pretrain_time_s"] > 0 and ctx.iterations == 6  # supervised's iterations
        seen.append(m)
    assert folders[0] == folders[1]  # the second budget loaded the stage without retraining it


def test_transfer_weights_refuses_another_network():
    a = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3))
    b = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3))
    with pytest.raises(ValueError, match="do not fit"):
        transfer_weights(a, b.state_dict())


def test_anomaly_trains_the_dae_and_segments(tmp_path):
    ids = synthetic_preprocessed(tmp_path / "pre", n_cases=6, shape=(40, 40))
    cls, ctx = _ctx("dae_anomaly", tmp_path, ids, [], "run_a", iterations=4)
    assert ctx.settings["optimizer"] == "adamw" and ctx.labelled_ids == []
    m = cls()
    m.setup(ctx)
    m.fit(ctx)
    assert (ctx.run_dir / "checkpoint_final.pt").is_file()
    img = ctx.folder.image(ids[0])
    p = m.predict_probabilities(img, ctx)
    assert p.shape == (2, 40, 40) and np.allclose(p.sum(0), 1.0, atol=1e-5)


def _stage_files(tmp_path, work="work"):
    return sorted((tmp_path / work / "stages").rglob("checkpoint_final.pt"))


def _train_log_steps(folder):
    import json

    lines = [json.loads(x) for x in (folder / "train_log.jsonl").read_text().splitlines() if x.strip()]
    return [x["iteration"] for x in lines if "loss" in x]


def test_anomaly_and_finetune_share_one_dae_stage(tmp_path):
    """dae_anomaly (budget 0) trains the DAE stage; dae_finetune (budget 2) of the same dataset, preset
    and seed loads it: one stage folder, its checkpoint untouched, its loop logged once, and the
    anomaly run's weights are the stage's. Then the other order in a second workdir gives the same
    stage weights (the stage does not depend on which row computes it)."""
    ids = synthetic_preprocessed(tmp_path / "pre", n_cases=6, shape=(40, 40))
    cls, ctx = _ctx("dae_anomaly", tmp_path, ids, [], "run_anomaly", iterations=4)
    ctx.unlabelled_ids = list(ids)
    anomaly = cls()
    anomaly.setup(ctx)
    summary = anomaly.fit(ctx)
    (stage,) = _stage_files(tmp_path)
    assert stage.parent.parent.name.startswith("dae-")
    mtime, steps = stage.stat().st_mtime_ns, _train_log_steps(stage.parent)
    assert steps and max(steps) == 4 and summary["pretrain_time_s"] > 0
    own = torch.load(ctx.run_dir / "checkpoint_final.pt", weights_only=False)["method"]["networks"]["network"]
    dae = torch.load(stage, weights_only=False)["method"]["networks"]["network"]
    assert all(torch.equal(own[k], dae[k]) for k in dae)  # the anomaly row predicts with the stage's DAE

    cls_f, ctx_f = _ctx("dae_finetune", tmp_path, ids, ids[:2], "run_finetune", iterations=4)
    ft = cls_f()
    ft.setup(ctx_f)
    ft.fit(ctx_f)
    assert _stage_files(tmp_path) == [stage]  # no second DAE
    assert stage.stat().st_mtime_ns == mtime and _train_log_steps(stage.parent) == steps  # loaded, not retrained
    assert [loop["iterations"] for loop in ctx_f.loops] == [4, 4]  # the stage (loaded) and the fine-tuning

    # the other order, in a fresh workdir: the same DAE
    cls_f, ctx_f2 = _ctx("dae_finetune", tmp_path, ids, ids[:2], "run_finetune2", iterations=4)
    ctx_f2.workdir = Workdir(tmp_path / "work2")
    ft2 = cls_f()
    ft2.setup(ctx_f2)
    ft2.fit(ctx_f2)
    (stage2,) = _stage_files(tmp_path, "work2")
    assert stage2.relative_to(tmp_path / "work2") == stage.relative_to(tmp_path / "work")  # same stage name
    dae2 = torch.load(stage2, weights_only=False)["method"]["networks"]["network"]
    assert all(torch.equal(dae[k], dae2[k]) for k in dae)


def test_runner_groups_both_dae_rows_on_their_stage():
    """The runner runs one cell of {dae_anomaly b0, dae_finetune b2, b4} of a (dataset, preset, seed)
    first and starts the others after it, so the stage is trained once; another seed is its own group."""
    from medseg_bench.bench.cells import CellTask
    from medseg_bench.bench.grid import Cell
    from medseg_bench.bench.runner import _stage_groups

    cells = [Cell("d", "demo", "2d", m, b, s) for s in (0, 1) for m, b in
             (("dae_anomaly", 0), ("dae_finetune", 2), ("dae_finetune", 4))] + [Cell("d", "demo", "2d", "supervised", 2, 0)]
    tasks = [CellTask(cell=c, workdir="w", estimate_s=3.0 if c.method == "dae_finetune" and c.budget == 2 else 1.0)
             for c in cells]
    groups = _stage_groups(tasks, lambda name: get_method(name).shared_stages)
    assert len(groups) == 2
    for seed in (0, 1):
        lead = Cell("d", "demo", "2d", "dae_finetune", 2, seed)
        assert {t.cell for t in groups[lead]} == {Cell("d", "demo", "2d", "dae_anomaly", 0, seed),
                                                  Cell("d", "demo", "2d", "dae_finetune", 4, seed)}
