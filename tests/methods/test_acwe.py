"""ACWE-ConvNet: network, losses, polarity, time-matched schedule, the cached pre-training stage."""

import numpy as np
import pytest
import torch

from medseg_bench.methods import get_method
from medseg_bench.methods.acwe.losses import active_contour_loss, acwe_energy, minmax_normalise
from medseg_bench.networks.r2net import R2Net, r2net_cost
from medseg_bench.training.contract import synthetic_context, synthetic_preprocessed
from medseg_bench.workdir import Workdir

torch.set_num_threads(1)


def _disc_batch(n=4, size=32, bright=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    masks, imgs = [], []
    for _ in range(n):
        cy, cx = (torch.rand(2, generator=g) * size * 0.4 + size * 0.3).tolist()
        m = (((yy - cy) ** 2 + (xx - cx) ** 2) < (size / 5) ** 2).float()
        base = m if bright else 1 - m
        imgs.append((0.2 + 0.6 * base + 0.05 * torch.randn(size, size, generator=g)).clamp(0, 1))
        masks.append(m)
    return torch.stack(imgs)[:, None], torch.stack(masks)[:, None]


@pytest.mark.parametrize("dims", [2, 3])
def test_r2net_architecture(dims):
    net = R2Net(in_channels=3, dims=dims)
    shape = (2, 3) + ((20, 24) if dims == 2 else (6, 10, 12))
    out = net(torch.rand(shape))
    assert out.shape == (2, 1) + shape[2:]  # no down-sampling, any size
    assert len(net.blocks) == 3 and all(b.conv_in.out_channels == 16 for b in net.blocks)
    convs = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d))]
    assert len(convs) == 3 * 4 + 1 and convs[-1].kernel_size == (1,) * dims
    assert all(c.kernel_size == (3,) * dims for c in convs[:-1])
    b = net.blocks[0]
    assert torch.equal(b.convs[0].weight, b.convs[2].weight) and b.convs[0].weight is not b.convs[2].weight
    macs, acts = r2net_cost((20, 24) if dims == 2 else (6, 10, 12), 3)
    assert macs == pytest.approx(sum(c.weight.numel() for c in convs) * np.prod(shape[2:]), rel=1e-9)
    assert acts > 0


def test_acwe_energy_prefers_the_true_partition_and_area_term_shrinks():
    img, mask = _disc_batch()
    e_true = acwe_energy(mask, img)[0]
    e_flip = acwe_energy(1 - mask, img)[0]
    e_half = acwe_energy(torch.full_like(mask, 0.5), img)[0]
    e_shift = acwe_energy(torch.roll(mask, 4, dims=-1), img)[0]
    assert e_true < e_half and e_true < e_shift
    assert e_true < e_flip  # the area term breaks the symmetry toward the smaller phase
    _, c1, c2, area = acwe_energy(mask, img)
    assert c1 > c2 and area == pytest.approx(mask.mean().item())
    # energy is per pixel: tiling the batch does not change it
    assert acwe_energy(mask.repeat(1, 1, 2, 2), img.repeat(1, 1, 2, 2))[0] == pytest.approx(e_true.item(), rel=1e-5)


def test_acwe_training_decreases_the_energy_and_finds_the_disc():
    torch.manual_seed(0)
    img, mask = _disc_batch(n=3, size=24)
    net = R2Net(1, 2, rule="bright")
    opt = torch.optim.Adam(net.parameters(), lr=2e-2)
    losses = []
    for _ in range(45):
        opt.zero_grad()
        e, c1, c2, area = acwe_energy(torch.sigmoid(net(img)), img)
        net.track_phases(c1, c2, area)
        e.backward()
        opt.step()
        losses.append(e.item())
    assert np.mean(losses[-3:]) < 0.25 * np.mean(losses[:3])
    net.eval()
    with torch.no_grad():
        fg = (net(img) * net.output_sign()) > 0
    dice = 2 * (fg & (mask > 0)).sum() / (fg.sum() + mask.sum())
    assert dice > 0.9


def test_polarity_rules_and_bake():
    net = R2Net(1, 2, rule="bright")
    assert net.output_sign() == 1.0  # untrained: identity
    net.track_phases(torch.tensor(0.2), torch.tensor(0.7), torch.tensor(0.8))  # p = the dark, large phase
    assert net.output_sign() == -1.0
    net.rule.fill_(2)  # dark
    assert net.output_sign() == 1.0
    net.rule.fill_(3)  # smaller
    assert net.output_sign() == -1.0
    net.rule.fill_(1)
    x = torch.rand(1, 1, 8, 8)
    before = net.eval()(x)
    assert net.bake_polarity() == -1.0
    assert torch.allclose(net(x), -before) and net.output_sign() == 1.0
    assert net.phase_means.tolist() == pytest.approx([0.7, 0.2, 0.2])


def test_active_contour_loss():
    _, mask = _disc_batch()
    perfect = active_contour_loss(mask, mask)
    assert perfect < active_contour_loss(torch.roll(mask, 3, dims=-1), mask)
    assert perfect < active_contour_loss(1 - mask, mask)
    assert perfect < active_contour_loss(torch.full_like(mask, 0.5), mask)
    # region terms vanish at the mask, the length term counts the boundary
    blank = torch.zeros(1, 1, 16, 16)
    assert active_contour_loss(blank, blank) == pytest.approx(1e-4 * 15 * 15 / 256, rel=1e-3)
    vol = torch.zeros(1, 1, 6, 8, 8)
    vol[..., 2:4, 2:5, 2:5] = 1
    assert active_contour_loss(vol, vol) > 0


def test_minmax_normalise_per_slice():
    vol = np.stack([np.full((4, 4), 5.0), np.arange(16.0).reshape(4, 4) * 3])[None]  # (1, 2, 4, 4)
    out = minmax_normalise(vol, patch_dims=2)
    assert out.dtype == np.float32 and (out[0, 0] == 0).all()  # a constant slice
    assert out[0, 1].min() == 0 and out[0, 1].max() == 1
    whole = minmax_normalise(vol, patch_dims=3)
    assert whole.max() == 1 and whole[0, 0, 0, 0] == pytest.approx(5 / 45)


def _ctx(method, tmp_path, budget_ids=4, plans_extra=None, iterations=3, workdir=None, name="run", noise=None):
    cls = get_method(method)
    ids = synthetic_preprocessed(tmp_path / "pre", n_cases=6, shape=(40, 40))
    if noise is not None:  # the contract's discs carry noise 0.6; rewrite the images with less
        rng = np.random.default_rng(1)
        for cid in ids:
            seg = np.load(tmp_path / "pre" / f"{cid}_seg.npy")
            np.save(tmp_path / "pre" / f"{cid}.npy", (2.0 * seg + rng.normal(0, noise, seg.shape)).astype(np.float32)[None])
    ctx = synthetic_context(cls, tmp_path / "pre", ids, tmp_path / name, (32, 32), iterations=iterations,
                            checkpoint_every=100, workdir=workdir)
    if cls.needs_labels:
        ctx.labelled_ids, ctx.unlabelled_ids = ids[:budget_ids], ids[budget_ids:]
    ctx.plans.update(plans_extra or {})
    return cls, ctx


def test_time_matched_iterations(tmp_path):
    cls, ctx = _ctx("acwe", tmp_path, iterations=100)
    m = cls()
    assert m.pretrain_iterations(ctx) == 100  # no plan estimate: the context's count
    ctx.plans["presets"] = {"quick": {"configurations": {"2d": {"step_time_estimate_s": 0.5, "step_time_device": "cpu (1 thread)"}}}}
    n = m.pretrain_iterations(ctx)
    assert n > 100  # a 32x32 batch of 2 is cheaper than the 0.5 s the "U-Net" gets
    ctx.plans["presets"]["quick"]["configurations"]["2d"]["step_time_estimate_s"] = 0.05
    assert m.pretrain_iterations(ctx) == pytest.approx(n / 10, rel=0.05)
    ft = get_method("acwe_finetune")()
    assert ft.finetune_iterations(ctx) == 100  # the labels are seen as often as by ``supervised``
    ctx.preset = "paper"
    assert m.pretrain_iterations(ctx) == 8050 and ft.finetune_iterations(ctx) == 801
    assert m.train_context(ctx).batch_size == 20


def test_acwe_removes_intensity_augmentation(tmp_path):
    cls, ctx = _ctx("acwe", tmp_path)
    ctx.settings["augmentation"] = {"mirror_axes": [0, 1], "gamma": [{"p": 1, "invert_image": True}], "contrast": {"p": 1}}
    tctx = cls().train_context(ctx)
    assert tctx.settings["augmentation"] == {"mirror_axes": [0, 1]}
    img = tctx.folder.image(ctx.unlabelled_ids[0])
    assert img.min() == 0 and img.max() == 1  # the stream sees min-max scaled images


def test_acwe_predicts_the_bright_disc(tmp_path):
    """A short unsupervised run on bright discs: the label-free rule names the disc."""
    cls, ctx = _ctx("acwe", tmp_path, iterations=60, noise=0.25)
    torch.manual_seed(0)
    ctx.settings["lr"] = 2e-2  # a short run: faster than the paper's 5e-4
    m = cls()
    m.setup(ctx)
    m.fit(ctx)
    m.train(False)
    cid = ctx.unlabelled_ids[0]
    probs = m.predict_probabilities(ctx.folder.image(cid), ctx)
    seg, gt = probs.argmax(0), ctx.folder.seg(cid) > 0
    assert 2 * (seg & gt).sum() / (seg.sum() + gt.sum()) > 0.8


def test_finetune_stage_cached_across_budgets_and_first_block_frozen(tmp_path, monkeypatch):
    wd = Workdir(tmp_path / "work")
    cls = get_method("acwe_finetune")
    from medseg_bench.training import loop

    calls = []
    real = loop.run_loop

    def counting(method, ctx, out_dir=None, iterations=None, **kw):
        calls.append((type(method).__name__, str(out_dir)))
        return real(method, ctx, out_dir=out_dir, iterations=iterations, **kw)

    monkeypatch.setattr(loop, "run_loop", counting)
    states = []
    for budget in (2, 4):
        _, ctx = _ctx("acwe_finetune", tmp_path, budget_ids=budget, workdir=wd, name=f"run_b{budget}")
        m = cls()
        m.setup(ctx)
        m.fit(ctx)
        states.append(m)
    stages = list((tmp_path / "work" / "stages").rglob("checkpoint_final.pt"))
    assert len(stages) == 1  # one pre-training for both budgets
    mtime = stages[0].stat().st_mtime_ns
    assert states[0].stage_folder == states[1].stage_folder
    assert stages[0].stat().st_mtime_ns == mtime
    pre = torch.load(stages[0], weights_only=False)["method"]["networks"]["network"]
    for m in states:
        net = m.networks["network"]
        first = net.blocks[0].state_dict()
        assert all(torch.equal(first[k], pre[f"blocks.0.{k}"]) for k in first)  # frozen: weights and BN stats
        assert not any(p.requires_grad for p in net.blocks[0].parameters())
        assert int(net.rule) == 0  # polarity baked into the head; labels rule from here
        assert not torch.equal(net.blocks[1].conv_in.weight, pre["blocks.1.conv_in.weight"])
    names = [c[0] for c in calls]
    assert names.count("AcweConvNet") == 2 and names.count("AcweFinetune") == 2  # 2nd stage call loads the cache


def test_finetune_reads_only_its_budget_labels(tmp_path):
    wd = Workdir(tmp_path / "work")
    _, ctx = _ctx("acwe_finetune", tmp_path, budget_ids=2, workdir=wd)
    opened = []
    real_load = np.load

    def spy(f, *a, **k):
        opened.append(str(f))
        return real_load(f, *a, **k)

    np.load = spy
    try:
        m = get_method("acwe_finetune")(finetune_loss="dice_ce")
        m.setup(ctx)
        m.fit(ctx)
    finally:
        np.load = real_load
    segs = sorted({f.rsplit("/", 1)[-1] for f in opened if f.endswith("_seg.npy")})
    assert segs == [f"{c}_seg.npy" for c in ctx.labelled_ids]
    assert any(f.endswith(f"{ctx.unlabelled_ids[-1]}.npy") for f in opened)  # the pool's images pre-train


def test_acwe_refuses_bad_settings(tmp_path):
    with pytest.raises(ValueError, match="finetune_loss"):
        get_method("acwe_finetune")(finetune_loss="l2")
    cls, ctx = _ctx("acwe", tmp_path)
    ctx.plans["labels"] = {"background": 0, "a": 1, "b": 2}
    with pytest.raises(ValueError, match="2 foreground classes"):
        cls().setup(ctx)


def test_record_states_the_iterations_that_ran(tmp_path):
    cls, ctx = _ctx("acwe_finetune", tmp_path, iterations=100, workdir=Workdir(tmp_path / "work"))
    ctx.plans["presets"] = {"quick": {"configurations": {"2d": {"step_time_estimate_s": 0.05, "step_time_device": "cpu",
                                                              "num_iterations": 100}}}}
    m = cls()
    want_pre, want_ft = m.pretrain_iterations(ctx), m.finetune_iterations(ctx)
    m.setup(ctx)
    assert ctx.iterations == want_ft and ctx.settings["plan_iterations"] == 100
    assert m.pretrain_iterations(ctx) == want_pre  # idempotent after setup
    assert want_ft == 100  # = supervised's iterations in the cell
    assert cls.estimate_cost_s(ctx.plans, "quick", "2d", 2) == pytest.approx(100 * 0.05)  # the cell's fine-tuning
    # the pre-training is the shared stage's, charged once per group by the grid
    assert cls.estimate_stage_cost_s(ctx.plans, "quick", "2d") == {"acwe_pretrain": pytest.approx(100 * 0.05)}
    assert get_method("otsu").estimate_cost_s(ctx.plans, "quick", "2d", 0) < 10


def test_acwe_energy_lowest_at_the_true_partition_hand_computed():
    """Two-phase image 0/1 (a 2x2 square of 1 in 4x4): E(true) = w_area·4/16; any other hard
    partition leaves squared residuals in a phase."""
    img = torch.zeros(1, 1, 4, 4)
    img[..., 1:3, 1:3] = 1.0
    w = 5e-4
    e_true, c1, c2, _ = acwe_energy(img.clone(), img, w)
    assert e_true.item() == pytest.approx(w * 4 / 16, abs=1e-6) and c1 == pytest.approx(1) and c2 == pytest.approx(0)
    # one background pixel moved into the region: residual (0 - 0.8)^2 + 4 (1 - 0.8)^2 = 0.8 in 16 pixels
    wrong = img.clone()
    wrong[..., 0, 0] = 1.0
    assert acwe_energy(wrong, img, w)[0].item() == pytest.approx((0.8 + w * 5) / 16, rel=1e-4)
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):  # random hard partitions all cost more
        p = (torch.rand(1, 1, 4, 4, generator=gen) > 0.5).float()
        if not torch.equal(p, img):
            assert acwe_energy(p, img, w)[0] > e_true


def _poisson_blobs(seed, n=3, size=48):
    """Hot blobs (rate 40) on a uniform warm background (rate 10), Poisson counts: the Chan–Vese
    two-phase assumption holds."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    imgs, masks = [], []
    for _ in range(n):
        m = np.zeros((size, size), bool)
        for _ in range(3):
            cy, cx, r = rng.uniform(8, size - 8), rng.uniform(8, size - 8), rng.uniform(3, 6)
            m |= (yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2
        imgs.append(rng.poisson(np.where(m, 40.0, 10.0)).astype(np.float32))
        masks.append(m)
    return np.stack(imgs), np.stack(masks)


def test_acwe_network_segments_poisson_blobs_at_least_as_well_as_skimage_chan_vese():
    """Sanity: on data that satisfies its assumption, ACWE-ConvNet (the energy, the min-max
    scaling, the network, the label-free polarity) reaches Dice >= 0.9 and matches scikit-image's
    classical Chan–Vese. A wrong sign, scaling or phase mean fails this."""
    from skimage.segmentation import chan_vese

    torch.manual_seed(0)
    imgs, masks = _poisson_blobs(0)
    x = torch.from_numpy(minmax_normalise(imgs[:, None], patch_dims=2))
    net = R2Net(1, 2, rule="bright")
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        e, c1, c2, area = acwe_energy(torch.sigmoid(net(x)), x)
        net.track_phases(c1, c2, area)
        e.backward()
        opt.step()
    net.eval()
    test_imgs, test_masks = _poisson_blobs(1)  # unseen images
    xt = torch.from_numpy(minmax_normalise(test_imgs[:, None], patch_dims=2))
    with torch.no_grad():
        fg = ((net(xt) * net.output_sign()) > 0)[:, 0].numpy()

    def dice(a, b):
        return 2 * (a & b).sum() / (a.sum() + b.sum())

    d_net = np.mean([dice(f, m) for f, m in zip(fg, test_masks)])
    d_cv = []
    for img, m in zip(xt[:, 0].numpy(), test_masks):
        cv = chan_vese(img.astype(np.float64), max_num_iter=200)
        cv = cv if img[cv].mean() >= img[~cv].mean() else ~cv
        d_cv.append(dice(cv, m))
    assert d_net >= 0.9
    assert d_net >= np.mean(d_cv) - 0.01, (d_net, np.mean(d_cv))


def test_joint_mode_trains_energy_and_labels_together(tmp_path):
    cls, ctx = _ctx("acwe_joint", tmp_path, budget_ids=2, iterations=4)
    assert cls.budgets == "labelled" and cls.needs_labels and cls.uses_unlabelled
    m = cls()
    m.setup(ctx)
    assert ctx.iterations == 4 and int(m.networks["network"].rule) == 0  # supervised's count; labels name the phase
    batch = {"data": torch.rand(2, 1, 16, 16), "seg": (torch.rand(2, 1, 16, 16) > 0.5).long()}
    unl = {"data": torch.rand(3, 1, 16, 16)}
    out = m.training_step(batch, unl, ctx)
    # the code's convention: both losses are pixel sums over the batch (energy: all 5 images; label
    # loss: the 2 labelled ones), over one constant (the batch's 5 * 256 pixels)
    from medseg_bench.methods.acwe.losses import active_contour_loss, acwe_energy

    with torch.no_grad():
        z = m.networks["network"](torch.cat([batch["data"], unl["data"]]))
        p = torch.sigmoid(z)
        e_sum = acwe_energy(p, torch.cat([batch["data"], unl["data"]]), 5e-4)[0] * p.numel()
        l_sum = active_contour_loss(p[:2], batch["seg"].float()) * p[:2].numel()
    assert out["loss"].item() == pytest.approx(((e_sum + l_sum) / p.numel()).item(), rel=1e-4)
    assert out["loss"].item() == pytest.approx(out["energy"].item() + 0.4 * out["label_loss"].item(), rel=1e-5)
    out["loss"].backward()
    m.fit(ctx)
    with pytest.raises(ValueError, match="label_loss"):
        cls(label_loss="l2")


def test_unet_finetune_starts_from_the_acwe_pretrained_unet(tmp_path, monkeypatch):
    from medseg_bench.methods.acwe.unet import patch_minmax

    x = torch.tensor([[[[1.0, 3.0], [5.0, 9.0]]], [[[2.0, 2.0], [2.0, 2.0]]]])
    assert torch.allclose(patch_minmax(x)[0, 0], torch.tensor([[0, 0.25], [0.5, 1.0]])) and (patch_minmax(x)[1] == 0).all()
    cls, ctx = _ctx("acwe_unet_finetune", tmp_path, budget_ids=2, iterations=2, workdir=Workdir(tmp_path / "work"))
    m = cls()
    m.setup(ctx)
    assert ctx.iterations == 2  # supervised's count
    loaded = {}
    real = m.networks["network"].load_state_dict

    def spy(state, *a, **k):
        loaded.update({k2: v.clone() for k2, v in state.items()})
        return real(state, *a, **k)

    monkeypatch.setattr(m.networks["network"], "load_state_dict", spy)
    real_loop = ctx.run_loop
    start = {}

    def loop(method, *a, **k):
        start.update({k2: v.clone() for k2, v in method.networks["network"].state_dict().items()})
        return real_loop(method, *a, **k)

    monkeypatch.setattr(ctx, "run_loop", loop)
    m.fit(ctx)
    stage = list((tmp_path / "work" / "stages").rglob("checkpoint_final.pt"))
    assert len(stage) == 1
    pre = torch.load(stage[0], weights_only=False)["method"]["networks"]["network"]
    assert loaded and all(torch.equal(start[k], pre[k]) for k in pre)  # stage B begins at stage A's weights
    assert not all(torch.equal(v, m.networks["network"].state_dict()[k]) for k, v in pre.items())  # and trains on


def test_the_acwe_subpackage_registers_its_methods():
    import medseg_bench.methods.acwe as pkg
    from medseg_bench.methods import list_methods

    assert hasattr(pkg, "__path__")  # a subpackage, found by methods/__init__'s module walk
    assert {"acwe", "acwe_finetune", "acwe_joint", "acwe_unet_finetune"} <= set(list_methods())
