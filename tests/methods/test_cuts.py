"""CUTS (Liu, Amodio et al., arXiv 2209.11359): sampler, loss, cluster rules, label-free assignment."""

import math

import numpy as np
import torch

from medseg_bench.methods.cuts.losses import cuts_loss, nt_xent
from medseg_bench.methods.cuts.rules import ClusterAssignment, class_fractions, oracle_labels
from medseg_bench.methods.cuts.sampler import (
    choose_positives,
    choose_positives_loop,
    draw_anchors,
    draw_candidates,
)


def test_vectorised_sampler_equals_the_loop_version():
    """Same anchors and candidates -> the vectorised choice equals the paper-structured loop
    (scikit-image SSIM, first success in try order, fallback neighbour)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    img = np.zeros((2, 1, 32, 32), np.float32)
    img[:, :, 8:24, 8:24] = 1.0  # a flat square: many candidates pass, others fail
    img += rng.normal(0, 0.3, img.shape).astype(np.float32)
    images = torch.from_numpy(np.clip(img, -1, 1))
    anchors = draw_anchors(2, 32, 32, 8, 5)
    candidates = draw_candidates(anchors, 32, 32, 5, 6, 5)
    fast = choose_positives(images, anchors, candidates, 0.3, 5)
    slow = choose_positives_loop(images.numpy(), anchors.numpy(), candidates.numpy(), 0.3, 5)
    assert fast.found.numpy().tolist() == slow.found.tolist()
    assert 0 < fast.found.sum() < fast.found.numel()  # both branches exercised
    np.testing.assert_array_equal(fast.positives.numpy(), slow.positives)


def test_ssim_positives_stay_within_the_radius_and_beat_the_threshold():
    """Every found positive lies in the anchor's +-radius window, is not the anchor, and its patch SSIM
    with the anchor's (scikit-image, one window over the patch, the anchor patch's data range) exceeds
    the threshold; anchors without one get the diagonal neighbour toward the centre."""
    from skimage.metrics import structural_similarity

    from medseg_bench.methods.cuts.sampler import sample_pairs

    torch.manual_seed(1)
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:40, :48]
    img = (np.sin(yy / 3.0) * np.cos(xx / 5.0))[None, None].repeat(3, 0)  # smooth texture ...
    img = img + rng.normal(0, 0.4, img.shape)  # ... plus noise: some candidates pass, some fail
    images = torch.from_numpy(np.clip(img, -1, 1).astype(np.float32))
    radius, patch, threshold = 4, 5, 0.5
    pairs = sample_pairs(images, n_anchors=16, radius=radius, tries=6, threshold=threshold, patch=patch)
    a, p, found = pairs.anchors.numpy(), pairs.positives.numpy(), pairs.found.numpy()
    assert 0 < found.sum() < found.size  # both kinds of anchor occur
    m = patch // 2
    x = images.numpy().astype(np.float64)  # the values the sampler saw
    for b, s in zip(*np.nonzero(found)):
        (ay, ax), (py, px) = a[b, s], p[b, s]
        assert max(abs(py - ay), abs(px - ax)) <= radius and (py, px) != (ay, ax)
        pa = x[b, 0, ay - m:ay + m + 1, ax - m:ax + m + 1]
        pc = x[b, 0, py - m:py + m + 1, px - m:px + m + 1]
        rng_a = float(pa.max() - pa.min()) or 1.0
        assert structural_similarity(pa, pc, win_size=patch, data_range=rng_a) > threshold
    for b, s in zip(*np.nonzero(~found)):
        assert np.abs(p[b, s] - a[b, s]).max() == 1  # the fallback neighbour


def test_nt_xent_hand_value_and_weighting():
    """Two anchors with identical positives, orthogonal to each other: row logits are
    [-inf, 0, 1/τ, 0] (self masked), so the loss is log(2 + e^{1/τ}) − 1/τ."""
    a = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    tau = 0.5
    expected = math.log(2 + math.exp(1 / tau)) - 1 / tau
    assert abs(float(nt_xent(a, a.clone(), tau)) - expected) < 1e-5
    recon, target = torch.ones(1, 2, 1, 5, 5), torch.zeros(1, 2, 1, 5, 5)
    parts = cuts_loss(a, a.clone(), recon, target, contrastive_weight=0.001, temperature=tau)
    assert abs(float(parts["reconstruction"]) - 1.0) < 1e-6
    assert abs(float(parts["loss"]) - (0.001 * expected + 0.999)) < 1e-5


def test_oracle_picks_the_cluster_holding_most_of_a_small_structure():
    clusters = np.array([[0, 0, 1, 1], [0, 0, 1, 2]])
    reference = np.array([[0, 0, 0, 0], [0, 0, 0, 1]])  # the lesion is 1 pixel, cluster 2
    np.testing.assert_array_equal(oracle_labels(clusters, reference, 2), (clusters == 2).astype(np.uint8))
    assert oracle_labels(clusters, np.zeros_like(reference), 2).sum() == 0  # absent class predicts nothing


def test_assignment_transfers_oracle_classes_by_nearest_clusters():
    """cuts_assign's rule: labelled clusters carry their oracle class (one-hot); a test cluster
    takes the majority over its nearest labelled clusters, even when the structure is a small part
    of its cluster (raw pixel fractions would say background)."""
    labels = np.array([0, 0, 0, 1, 1, 2])
    seg = np.array([0, 0, 0, 0, 0, 1])  # cluster 2: all foreground, cluster 1: none
    onehot = class_fractions(labels, oracle_labels(labels, seg, 2), 3, 2)
    np.testing.assert_array_equal(onehot, [[1, 0], [1, 0], [0, 1]])
    assign = ClusterAssignment(dim=2, num_classes=2, k=1).fit(np.array([[1, 0], [0.7, 0.7], [0, 1]]), onehot)
    assert assign.predict(np.array([[0.1, 1.0], [1.0, 0.05]])).tolist() == [1, 0]
