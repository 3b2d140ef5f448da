"""PSM (medseg_bench.methods.psm): each block on hand-computed inputs, and one tiny cell via the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from medseg_bench.methods import get_method
from medseg_bench.methods.psm import (
    colour_prior_cluster,
    detect_points,
    fill_small_holes,
    grad_cam,
    jet,
    pseudo_mask,
    remove_small_objects,
    rotation_consistency_loss,
    scale_factor,
    voronoi_labels,
    voronoi_regions,
)
from medseg_bench.methods.psm.stages import IGNORE_INDEX, decode_targets, encode_targets, masked_cross_entropy

torch.set_num_threads(1)


# -- stage 1-2: self-supervised loss and Grad-CAM ----------------------------------------------------
class _Pixel(nn.Module):
    """f(x) = x[:, 0, 0, 0] (one output): its rotation loss is |x[0, 0] - x[-1, -1]| per image."""

    def forward(self, x):
        return x[:, 0, 0, 0][:, None]


def test_rotation_consistency_loss_on_known_nets():
    x = torch.zeros(2, 1, 3, 3)
    x[0, 0, 0, 0], x[0, 0, 2, 2] = 5.0, 2.0  # |5 - 2| = 3
    x[1, 0, 0, 0], x[1, 0, 2, 2] = -1.0, 1.0  # |-1 - 1| = 2
    assert rotation_consistency_loss(_Pixel(), x).item() == pytest.approx((3 + 2) / 2)
    mean_net = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())  # rotation-invariant: loss 0
    assert rotation_consistency_loss(mean_net, torch.randn(3, 2, 5, 7)).item() == pytest.approx(0.0, abs=1e-6)


class _CamNet(nn.Module):
    """layer = identity on 2 channels; output = mean over pixels of (2 A0 - A1): the Grad-CAM weights
    are (2, -1) / (H W), so the map is ReLU(2 x0 - x1), min-max scaled."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Identity()

    def forward(self, x):
        a = self.layer(x)
        return (2 * a[:, 0] - a[:, 1]).mean(dim=(1, 2))[:, None]


def test_grad_cam_shape_range_and_value():
    x = torch.tensor([[[[1.0, 0.0], [3.0, 0.0]], [[0.0, 1.0], [2.0, 4.0]]]])  # (1, 2, 2, 2)
    with pytest.raises(ValueError, match="not run"):
        grad_cam(_CamNet(), _CamNet().layer, x)  # a layer of another network
    net = _CamNet()
    cam = grad_cam(net, net.layer, x)
    raw = np.maximum(2 * x[0, 0].numpy() - x[0, 1].numpy(), 0)  # [[2, 0], [4, 0]]
    np.testing.assert_allclose(cam[0].numpy(), raw / raw.max(), atol=1e-5)
    assert net.layer._forward_hooks == {}  # hook removed
    from medseg_bench.networks import build_resnet_classifier

    res = build_resnet_classifier(3, 1, (4, 8, 8, 8), (1, 1, 1, 1)).eval()
    cams = grad_cam(res, res.layer1, torch.rand(2, 3, 37, 50))
    assert cams.shape == (2, 37, 50) and cams.dtype == torch.float32
    assert float(cams.min()) >= 0.0 and float(cams.max()) <= 1.0
    assert all(p.grad is None for p in res.parameters())  # the network's gradients are left alone


# -- stage 3: pseudo-masks ---------------------------------------------------------------------------
def test_jet_end_points():
    np.testing.assert_allclose(jet(np.array([0.0, 1.0])), [[0, 0, 0.5], [0.5, 0, 0]], atol=1e-6)
    assert jet(np.zeros((4, 5))).shape == (4, 5, 3)


def test_colour_prior_picks_the_darkest_blue_cluster():
    # three clusters of feature colours; channels 0 + 1 (the prior's blue + green in the code's pairing)
    # are lowest for cluster 2, although its channel 2 is the highest
    features = np.zeros((3, 4, 3))
    clusters = np.array([[0, 0, 1, 1], [1, 1, 2, 2], [2, 0, 0, 1]])
    colours = {0: (200, 180, 100), 1: (150, 250, 40), 2: (60, 50, 250)}
    for c, col in colours.items():
        features[clusters == c] = col
    assert colour_prior_cluster(features, clusters) == 2
    assert colour_prior_cluster(features, clusters, channels=(2,)) == 1


def test_pseudo_mask_marks_the_active_dark_disc():
    yy, xx = np.mgrid[:40, :40]
    disc = (yy - 20) ** 2 + (xx - 15) ** 2 < 8 ** 2
    rgb = np.where(disc[None], np.array([0.35, 0.2, 0.55])[:, None, None], np.array([0.9, 0.65, 0.8])[:, None, None])
    rgb[:, :, 32:] = 0.97  # white lumen: a third colour
    act = np.where(disc, 0.9, 0.05)
    mask = pseudo_mask(act, rgb, min_object_px=20, max_hole_px=4)
    assert (mask == disc).all()
    with pytest.raises(ValueError, match="do not match"):
        pseudo_mask(act[:10], rgb)


def test_small_objects_removed_and_holes_filled():
    m = np.zeros((12, 12), bool)
    m[0:2, 0:2] = True  # 4 px object: removed at min 5
    m[4:10, 4:10] = True  # 36 px object with a 1 px and a 4 px hole
    m[5, 5] = False
    m[7:9, 7:9] = False
    out = remove_small_objects(m, 5)
    assert not out[0:2, 0:2].any() and out[4:10, 4:10].sum() == 36 - 1 - 4
    filled = fill_small_holes(out, 2)  # holes < 2 px: the 1 px one
    assert filled[5, 5] and not filled[7:9, 7:9].any()
    assert fill_small_holes(out, 5)[4:10, 4:10].all()
    diag = np.eye(3, dtype=bool)  # 4-connectivity: three 1 px objects
    assert not remove_small_objects(diag, 2).any()


def test_scale_factor_from_spacing():
    assert scale_factor((0.0005, 0.0005)) == pytest.approx(0.5)  # nuclei_he: 0.5 um per pixel
    assert scale_factor(0.00025) == pytest.approx(1.0)
    assert scale_factor(None) == scale_factor((1.0, 1.0)) == 1.0  # no spacing: the code's pixels


# -- stage 4: points and Voronoi labels --------------------------------------------------------------
def test_voronoi_labels_partition_the_image_around_given_points():
    pts = np.array([[10, 10], [10, 29]])  # midway between columns 19 and 20
    regions = voronoi_regions(pts, (20, 40))
    assert (regions[:, :20] == 0).all() and (regions[:, 20:] == 1).all()  # split midway, every pixel owned
    lab = voronoi_labels(pts, (20, 40), point_radius=2)
    assert lab.dtype == np.uint8 and set(np.unique(lab)) == {0, 1, 2}
    assert (lab[:, 19:21] == 0).all()  # the edge: both sides of the cell boundary
    disk = lab == 1
    assert disk.sum() == 2 * 13 and disk[10, 10] and disk[12, 10] and not disk[12, 12]  # radius-2 disks
    assert (lab[(~disk)] != 1).all() and (lab[:, :19][~disk[:, :19]] == 2).all()  # the rest ignored
    one = voronoi_labels(pts, (20, 40), point_radius=0, edge_width=1)  # 1 px: one side of the boundary
    assert (one[:, 19] == 0).all() and (one == 0).sum() == 20 and (one[:, 20] == 2).all()
    assert (voronoi_labels(pts, (20, 40), point_radius=0, edge_width=0.4) == one).all()  # at least 1 px
    four = voronoi_labels(pts, (20, 40), point_radius=0, edge_width=4)  # the 2 px band dilated by 1 px
    assert (four[:, 18:22] == 0).all() and (four == 0).sum() == 4 * 20
    assert (voronoi_labels(np.zeros((0, 2)), (5, 6)) == 2).all()  # no points: nothing known
    assert not (voronoi_labels(np.array([[2, 2]]), (5, 6)) == 0).any()  # one point: no edge


def test_detect_points_finds_blobs_and_merges_close_peaks():
    yy, xx = np.mgrid[:60, :60]

    def blob(cy, cx, r=4.0):
        return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))

    prob = np.clip(blob(15, 15) + blob(45, 40), 0, 1)
    pts = detect_points(prob, threshold=0.5, min_distance=6, merge_distance=20, sigma=1.0)
    assert sorted(map(tuple, pts)) == [(15, 15), (45, 40)]
    two = np.clip(blob(30, 24, 2) + blob(30, 34, 2), 0, 1)  # peaks 10 px apart: merged at 20
    assert len(detect_points(two, min_distance=3, merge_distance=20, sigma=0)) == 1
    assert len(detect_points(two, min_distance=3, merge_distance=5, sigma=0)) == 2
    assert detect_points(np.zeros((20, 20))).shape == (0, 2)


# -- stage 5: targets and loss -----------------------------------------------------------------------
def test_targets_encode_decode_and_ignore():
    mask = np.array([[0, 1, 1, 0]])
    vor = np.array([[0, 1, 2, 2]])
    code = torch.from_numpy(encode_targets(mask, vor))
    code = torch.cat([code, torch.zeros(1, 4, dtype=code.dtype)])  # a padded row: all ignored
    m_ign, v = decode_targets(code, "ignore")
    m_full, _ = decode_targets(code, "nucleus")
    i = IGNORE_INDEX
    assert m_ign.tolist() == [[0, i, i, 0], [i] * 4]
    assert m_full.tolist() == [[0, 1, 1, 0], [i] * 4]
    assert v.tolist() == [[0, 1, i, i], [i] * 4]
    logits = torch.zeros(1, 2, 2, 4)
    assert masked_cross_entropy(logits, m_full[None]).item() == pytest.approx(np.log(2))
    assert masked_cross_entropy(logits, torch.full((1, 2, 4), i)).item() == 0.0  # nothing to learn: 0, not nan


def test_psm_declares_itself_and_refuses_grey_data():
    cls = get_method("psm")
    assert cls.family == "unsupervised" and cls.budgets == "zero_only" and cls.predicts_instances
    assert cls.dims == (2,) and cls.applies_to({"rgb": True, "num_channels": 3})
    assert not cls.applies_to({"rgb": False, "num_channels": 1})
    m = cls()
    assert m.mask_foreground("paper") == "ignore" and m.mask_foreground("quick") == "nucleus"
    with pytest.raises(ValueError, match="mask_foreground"):
        cls(mask_foreground="half")
    from medseg_bench.bench.grid import expand_grid

    plans = {"rgb": False, "num_channels": 1, "presets": {"demo": {"recommended_configuration": "2d",
                                                                   "configurations": {"2d": {}}}}}
    warned = []
    cells = expand_grid({"grey": plans}, {"psm": cls}, [0], [0], "demo", explicit_methods=True, warn=warned.append)
    assert cells == [] and "does not apply" in warned[0]
    rgb_plans = {**plans, "rgb": True, "num_channels": 3}
    assert [c.method for c in expand_grid({"he": rgb_plans}, {"psm": cls}, [0, 2], [0], "demo")] == ["psm"]


# -- one cell end to end through the CLI -------------------------------------------------------------
class _ConstantNet(nn.Module):
    """Two-class logits with class 1 ahead wherever ``fg`` (a fixed (H, W) bool map) is True."""

    def __init__(self, fg):
        super().__init__()
        self.fg = torch.as_tensor(fg)

    def forward(self, x):
        z = torch.zeros(x.shape[0], 2, *x.shape[2:])
        z[:, 1] = self.fg.float() * 2 - 1
        return z


class _GuardContext:
    dataset = "toy"

    def __init__(self, images):
        self.images = images
        self.folder = self

    def image(self, cid):
        return self.images[cid]

    def sliding_window(self, net, image, tta=False):
        return torch.softmax(net(torch.from_numpy(image)[None]), 1)[0].numpy()


def test_psm_guard_ids_are_evenly_spaced_and_deterministic():
    m = get_method("psm")()
    ids = [f"c{i:02d}" for i in range(20)]
    assert m.guard_ids(list(reversed(ids))) == m.guard_ids(ids) == [ids[i] for i in (0, 3, 5, 8, 11, 14, 16, 19)]
    assert m.guard_ids(ids[:3]) == ids[:3] and get_method("psm")(guard_images=0).guard_ids(ids) == []


def test_collapse_guard_flags_a_network_that_predicts_far_less_than_its_pseudo_masks(tmp_path, capsys):
    from medseg_bench.methods.psm.method import COLLAPSE_RATIO

    pseudo = np.zeros((8, 8), np.uint8)
    pseudo[:4] = 1  # the pseudo-masks cover half of each image
    ctx = _GuardContext({f"c{i}": np.zeros((3, 8, 8), np.float32) for i in range(3)})
    for cid in ctx.images:
        np.save(tmp_path / f"{cid}_psm_mask.npy", pseudo)
    m = get_method("psm")()
    few = np.zeros((8, 8), bool)
    few[0, :4] = True  # 4 of 64 pixels: ratio (4 / 64) / 0.5 = 0.125
    m.networks["network"] = _ConstantNet(few)
    g = m.collapse_guard(ctx, list(ctx.images), tmp_path)
    assert g["images"] == ["c0", "c1", "c2"] and g["pseudo_mask_foreground"] == 0.5
    assert g["predicted_foreground"] == pytest.approx(4 / 64) and g["ratio"] == pytest.approx(0.125)
    assert g["collapsed"] and g["threshold"] == COLLAPSE_RATIO and "stage-5 collapse" in capsys.readouterr().err
    m.networks["network"] = _ConstantNet(pseudo.astype(bool))  # predicts its pseudo-masks: ratio 1, no warning
    g = m.collapse_guard(ctx, list(ctx.images), tmp_path)
    assert g["ratio"] == pytest.approx(1.0) and not g["collapsed"] and capsys.readouterr().err == ""
    assert m.networks["network"].training  # the network's mode is restored


def test_tiny_cell_via_cli_writes_aji_and_pq_without_reading_labels(tmp_path, monkeypatch):
    from medseg_bench.cli import main
    from medseg_bench.data import PreprocessedFolder
    from medseg_bench.datasets import generate

    wd = tmp_path / "wd"
    generate("nuclei_he", wd / "raw" / "nuclei_he_tiny", size="tiny", seed=0)
    assert main(["plan", "nuclei_he_tiny", "--workdir", str(wd)]) == 0
    assert main(["preprocess", "nuclei_he_tiny", "--workdir", str(wd)]) == 0

    def forbidden(self, case_id):
        raise AssertionError(f"psm opened the label of {case_id}")

    monkeypatch.setattr(PreprocessedFolder, "seg", forbidden)
    monkeypatch.setattr(PreprocessedFolder, "instances", forbidden)
    rc = main(["train", "nuclei_he_tiny", "--workdir", str(wd), "--method", "psm", "--budget", "0",
               "--preset", "demo", "--iterations", "16"])
    assert rc == 0
    run = wd / "runs" / "nuclei_he_tiny" / "demo" / "2d" / "psm" / "budget_0" / "seed_0"
    metrics = json.loads((run / "metrics.json").read_text())
    inst = metrics["mean"]["instance"]
    assert all(np.isfinite(inst[k]) and 0 <= inst[k] <= 1 for k in ("aji", "pq"))
    stages = json.loads((run / "psm_stages.json").read_text())
    assert stages["iterations"] == {"ssl": 8, "detect": 8, "segment": 16} and stages["scale"] == pytest.approx(0.5)
    guard = stages["collapse_guard"]  # the label-free check ran on training images (no label read: see above)
    assert 0 < len(guard["images"]) <= 8 and 0 <= guard["predicted_foreground"] <= 1
    assert 0 < guard["pseudo_mask_foreground"] <= 1 and guard["collapsed"] == (guard["ratio"] < guard["threshold"])
    for key in ("ssl", "masks", "detect"):
        assert str(wd / "stages" / "nuclei_he_tiny" / "demo") in stages["folders"][key]
    record = json.loads((run / "record.json").read_text())
    assert record["status"] == "done" and record["n_labelled"] == 0
