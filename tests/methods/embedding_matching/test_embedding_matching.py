"""Embedding matching (Xie et al., MIDL 2024): the bank, the matching rules, uncertainty, pseudo-labels
and a short training run whose embeddings must separate the classes."""

import json

import pytest
import torch
import torch.nn.functional as F

from medseg_bench.methods import get_method
from medseg_bench.methods.embedding_matching import (
    EmbeddingUNet,
    gather_voxels,
    mc_dropout_probabilities,
    normalised_entropy,
)
from medseg_bench.methods.embedding_matching.bank import EmbeddingBank, sample_per_class
from medseg_bench.networks import build_network
from medseg_bench.training.checkpoint import seed_everything
from medseg_bench.training.contract import synthetic_context, synthetic_preprocessed

torch.set_num_threads(1)

_NET = {"spatial_dims": 2, "in_channels": 1, "out_channels": 2, "kernel_size": [[3, 3]] * 3,
        "strides": [[1, 1], [2, 2], [2, 2]], "filters": [4, 8, 16]}


def _clusters(n_per_class, dim=8, k=3, noise=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(k, dim, generator=g), dim=1)
    labels = torch.arange(k).repeat_interleave(n_per_class)
    emb = F.normalize(centres[labels] + noise * torch.randn(len(labels), dim, generator=g), dim=1)
    return emb, labels, centres


def test_bank_fifo_class_balance_and_state():
    bank = EmbeddingBank(3, size=4, dim=8)
    emb, lab, _ = _clusters(6)
    assert not bank.ready()
    bank.add(emb[:6], lab[:6])  # class 0 only: 6 > size 4 keeps the newest 4
    assert bank.count.tolist() == [4, 0, 0] and not bank.ready()
    assert torch.allclose(bank.emb[0], emb[2:6])
    bank.add(emb[6:9], lab[6:9])
    assert bank.count.tolist() == [4, 3, 0] and bank.ready() and bank.filled_classes == 2
    bank.add(emb[9:12], lab[9:12])  # wraps class 1's ring: 12 - 6 = 6 entries into 4 slots
    assert bank.count.tolist() == [4, 4, 0] and int(bank.ptr[1]) == 2
    st = bank.state_dict()
    b2 = EmbeddingBank(3, size=4, dim=8)
    b2.load_state_dict(st)
    assert torch.equal(b2.emb, bank.emb) and torch.equal(b2.count, bank.count)
    with pytest.raises(ValueError, match="shape"):
        EmbeddingBank(2, size=4, dim=8).load_state_dict(st)
    with pytest.raises(ValueError):
        bank.add(emb[:3, :4], lab[:3])


@pytest.mark.parametrize("rule", ["knn", "prototype"])
def test_matching_recovers_cluster_labels(rule):
    emb, lab, _ = _clusters(40, noise=0.15)
    bank = EmbeddingBank(3, size=32, dim=8)
    bank.add(emb[::2], lab[::2])
    pred, conf = bank.match(emb[1::2], rule=rule, k=5, temperature=0.1, chunk=7)
    assert (pred == lab[1::2]).float().mean() > 0.95
    assert conf.shape == pred.shape and float(conf.min()) >= 1 / 3 - 1e-6 and float(conf.max()) <= 1 + 1e-6
    with pytest.raises(RuntimeError):
        EmbeddingBank(3, 4, 8).match(emb, rule=rule)
    with pytest.raises(ValueError):
        bank.match(emb, rule="magic")


def test_knn_is_class_balanced_not_count_biased():
    """A query next to the rare class's references is labelled with it even when the other class has
    many more references."""
    emb, lab, centres = _clusters(30, k=2, noise=0.05)
    bank = EmbeddingBank(2, size=64, dim=8)
    bank.add(emb[lab == 0], lab[lab == 0])
    bank.add(emb[lab == 1][:3], lab[lab == 1][:3])
    pred, _ = bank.match(centres[1:2], rule="knn", k=10, temperature=0.1)
    assert int(pred[0]) == 1


@pytest.mark.parametrize("rule", ["knn", "prototype"])
def test_prior_correction_moves_ambiguous_queries_to_the_common_class(rule):
    """A query half-way between the two classes: without a prior the balanced bank gives each class
    about half of the vote; with the labelled voxels' class frequencies (95 % background) it goes to
    the background, while a query at the rare class's centre keeps its label. The counts are part of
    the bank's state (exact resume)."""
    emb, lab, centres = _clusters(30, k=2, noise=0.05)
    bank = EmbeddingBank(2, size=64, dim=8)
    bank.add(emb, lab)
    assert bank.class_prior() is None
    bank.count_labels(torch.tensor([0] * 95 + [1] * 5 + [-1] * 7))  # -1 (ignored) is not counted
    assert torch.allclose(bank.class_prior(), torch.tensor([0.95, 0.05]))
    middle = F.normalize(centres[0] + centres[1], dim=0)[None]
    _, conf_flat = bank.match(middle, rule=rule, k=60, temperature=1.0)
    pred, conf = bank.match(middle, rule=rule, k=60, temperature=1.0, prior=bank.class_prior())
    assert float(conf_flat[0]) < 0.75 and int(pred[0]) == 0 and float(conf[0]) > 0.85
    pred, _ = bank.match(centres[1:2], rule=rule, k=10, temperature=0.1, prior=bank.class_prior())
    assert int(pred[0]) == 1
    b2 = EmbeddingBank(2, size=64, dim=8)
    b2.load_state_dict(bank.state_dict())
    assert torch.equal(b2.class_counts, bank.class_counts)


def test_contrastive_loss_prefers_matching_classes():
    emb, lab, _ = _clusters(20, noise=0.1)
    bank = EmbeddingBank(3, size=16, dim=8)
    bank.add(emb, lab)
    good = bank.contrastive_loss(emb[:9], lab[:9])
    bad = bank.contrastive_loss(emb[:9], (lab[:9] + 1) % 3)
    assert float(good) < 0.2 < float(bad)
    anchors = emb[:4].clone().requires_grad_(True)
    bank.contrastive_loss(anchors, lab[:4]).backward()
    assert anchors.grad is not None
    empty = EmbeddingBank(3, 16, 8)
    assert float(empty.contrastive_loss(anchors, lab[:4]).detach()) == 0.0


def test_sample_per_class_and_gather():
    labels = torch.tensor([0, 0, 0, 1, 2, 2, -1, 0])
    torch.manual_seed(0)
    idx = sample_per_class(labels, 3, 2)
    got = labels[idx].tolist()
    assert got.count(0) == 2 and got.count(1) == 1 and got.count(2) == 2 and -1 not in got
    assert sample_per_class(torch.full((5,), -1), 3, 2).numel() == 0
    # hard-example sampling: the hardest voxel of each class is always among the picks
    hardness = torch.tensor([0.1, 0.9, 0.2, 0.0, 0.3, 0.8, 0.5, 0.05])
    for seed in range(5):
        torch.manual_seed(seed)
        idx = sample_per_class(labels, 3, 2, hardness, hard_fraction=0.5).tolist()
        assert 1 in idx and 5 in idx and 3 in idx and len(idx) == 5
    torch.manual_seed(0)
    assert sorted(sample_per_class(labels, 3, 2, hardness, hard_fraction=1.0).tolist()) == [1, 2, 3, 4, 5]
    t = torch.randn(2, 3, 4, 5)
    flat = t.movedim(1, -1).reshape(-1, 3)
    ix = torch.tensor([0, 7, 19, 20, 39])
    assert torch.equal(gather_voxels(t, ix), flat[ix])


def test_entropy_and_mc_dropout():
    p = torch.tensor([[0.5, 1.0], [0.5, 0.0]]).reshape(1, 2, 2, 1)
    e = normalised_entropy(p)
    assert float(e[0, 0, 0]) == pytest.approx(1.0) and float(e[0, 1, 0]) == pytest.approx(0.0, abs=1e-6)
    torch.manual_seed(0)
    unet = build_network(_NET)
    net = EmbeddingUNet(unet, embed_dim=6, feature_dropout=0.3).eval()
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(net(x), unet(x))  # eval: the wrapper's logits are the U-Net's
        f = net.features(x)
        det = mc_dropout_probabilities(net, f, passes=1, p=0.3)
        assert torch.allclose(det, torch.softmax(unet(x), 1))
        a, b = mc_dropout_probabilities(net, f, 8, 0.3), mc_dropout_probabilities(net, f, 8, 0.3)
    assert not torch.equal(a, b) and torch.allclose(a.sum(1), torch.ones(2, 16, 16))
    emb = net.embeddings(f)
    assert emb.shape == (2, 6, 16, 16) and torch.allclose(emb.norm(dim=1), torch.ones(2, 16, 16), atol=1e-5)
    assert torch.allclose(net.embeddings_at(f, torch.tensor([3, 300])), emb.movedim(1, -1).reshape(-1, 6)[[3, 300]])
    with pytest.raises(TypeError):
        EmbeddingUNet(torch.nn.Conv2d(1, 2, 1), 4, 0.1)


def _ctx(tmp_path, iterations=6, **extra):
    ids = synthetic_preprocessed(tmp_path / "pre", n_cases=8, shape=(40, 40))
    ctx = synthetic_context(get_method("embedding_matching"), tmp_path / "pre", ids, tmp_path / "run", (32, 32),
                            iterations=iterations, checkpoint_every=0)
    ctx.settings.update(extra)
    return ctx, ids


def test_pseudo_labels_reliable_vs_matched(tmp_path):
    ctx, _ = _ctx(tmp_path)
    torch.manual_seed(0)
    m = get_method("embedding_matching")(mc_passes=2)
    m.setup(ctx)
    teacher = m.networks["teacher"]
    with torch.no_grad():
        f = teacher.features(torch.randn(2, 1, 32, 32))
    n = f.shape[0] * 32 * 32
    m.hp["entropy_threshold"] = 1.0  # every voxel reliable -> teacher argmax
    hard = m.labelled_hardness(f, torch.zeros(n, dtype=torch.long))
    with torch.no_grad():
        p0 = torch.softmax(teacher.unet.output_block(f), 1)[:, 0].reshape(-1)
    assert torch.allclose(hard, 1 - p0, atol=1e-6)
    torch.manual_seed(1)
    pl, stats = m.pseudo_labels(f)
    torch.manual_seed(1)
    want = mc_dropout_probabilities(teacher, f, 2, m.hp["mc_dropout"]).argmax(1)
    assert torch.equal(pl, want) and stats == {"reliable": 1.0, "matched": 0.0}
    m.hp["entropy_threshold"] = 0.0  # every voxel unreliable; empty bank -> ignored
    pl, stats = m.pseudo_labels(f)
    assert bool((pl == -1).all()) and stats["reliable"] == 0.0
    # fill the bank: class 0 references = the teacher's own embeddings of half the voxels, class 1 = their negatives
    e = teacher.embeddings(f).movedim(1, -1).reshape(-1, m.hp["embed_dim"])
    m.bank.add(torch.cat([e[:64], -e[:64]]), torch.cat([torch.zeros(64), torch.ones(64)]).long())
    m.hp["max_matched_voxels"] = n // 2
    pl, stats = m.pseudo_labels(f)
    assert stats["matched"] == pytest.approx(0.5) and int((pl >= 0).sum()) == n // 2
    direct, _ = m.bank.match(e, m.hp["matching"], m.hp["knn_k"], m.hp["temperature"])
    sel = pl.reshape(-1) >= 0
    assert torch.equal(pl.reshape(-1)[sel], direct[sel])


def test_training_learns_separating_embeddings_and_resumable_state(tmp_path):
    """40 iterations on bright discs: supervised loss falls, the embedding loss falls, and the bank's
    kNN labels voxels of an unlabelled-pool case (whose label training never read) well above chance."""
    ctx, ids = _ctx(tmp_path, iterations=40)
    seed_everything(0)
    cls = get_method("embedding_matching")
    m = cls(mc_passes=4)
    m.setup(ctx)
    m.fit(ctx)
    log = [json.loads(line) for line in (ctx.run_dir / "train_log.jsonl").read_text().splitlines()]
    rows = [r for r in log if "supervised" in r]
    avg = lambda key, sl: sum(r[key] for r in rows[sl]) / len(rows[sl])  # noqa: E731
    assert avg("supervised", slice(-5, None)) < 0.8 * avg("supervised", slice(0, 5))
    assert avg("embedding", slice(-5, None)) < avg("embedding", slice(1, 6))
    assert all(0.0 <= r["reliable_fraction"] <= 1.0 for r in rows)
    assert m.bank.count.min() > 0
    held_out = ids[-1]  # unlabelled pool case: its label is read here by the test, never by training
    img = torch.from_numpy(ctx.folder.image(held_out))[None, :, 4:36, 4:36]
    seg = torch.from_numpy(ctx.folder.seg(held_out))[4:36, 4:36].long().reshape(-1)
    t = m.networks["teacher"]
    with torch.no_grad():
        e = t.embeddings(t.features(img)).movedim(1, -1).reshape(-1, m.hp["embed_dim"])
    idx = sample_per_class(seg, 2, 100)
    pred, _ = m.bank.match(e[idx], "knn", 10, 0.1)
    per_class = [float((pred[seg[idx] == c] == c).float().mean()) for c in (0, 1)]
    assert min(per_class) > 0.7, per_class
    # extra state: the bank round-trips through the method's state dict
    m2 = cls(mc_passes=4)
    m2.setup(ctx)
    m2.load_state_dict(m.state_dict())
    assert torch.equal(m2.bank.emb, m.bank.emb) and torch.equal(m2.bank.ptr, m.bank.ptr)


@pytest.mark.parametrize("detach", [True, False])
def test_embed_detach_keeps_the_contrastive_term_off_the_segmentation_features(tmp_path, detach):
    """With ``embed_detach`` the embedding loss trains the embedding head only: with every other loss
    switched off, one step gives the U-Net no gradient; without it the decoder gets one."""
    ctx, ids = _ctx(tmp_path)
    torch.manual_seed(0)
    m = get_method("embedding_matching")(mc_passes=1, embed_detach=detach)
    m.setup(ctx)
    m.train(True)
    xl = torch.randn(2, 1, 32, 32)
    yl = (torch.rand(2, 1, 32, 32) > 0.7).long()
    with torch.no_grad():  # a ready bank
        e = m.networks["teacher"].embeddings(m.networks["teacher"].features(xl)).movedim(1, -1).reshape(-1, m.hp["embed_dim"])
    m.bank.add(e, yl.reshape(-1))
    ctx.iteration = 0
    m.hp.update(pseudo_weight=0.0, entropy_weight=0.0)
    ctx.segmentation_loss = lambda logits, target: logits.sum() * 0.0  # only the embedding term is left
    out = m.training_step({"data": xl, "seg": yl}, {"data": torch.randn(2, 1, 32, 32)}, ctx)
    student = m.networks["network"]
    student.zero_grad()
    out["loss"].backward()
    head = sum(float(p.grad.abs().sum()) for p in student.embed.parameters() if p.grad is not None)
    unet = sum(float(p.grad.abs().sum()) for p in student.unet.parameters() if p.grad is not None)
    assert head > 0
    assert (unet == 0) if detach else (unet > 0)
