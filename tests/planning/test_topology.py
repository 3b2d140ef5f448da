"""Pooling / kernel rules (nnU-Net v2) with hand-computed expectations, and the network's size."""

import pytest

from medseg_bench.planning.topology import (
    get_topology,
    network_cost,
    network_dict,
    round_to_divisor,
    stage_filters,
)


def test_isotropic_2d_pools_to_4_and_pads_to_divisor():
    t = get_topology((1.0, 1.0), (100, 100))
    # 100 -> 50 -> 25 -> 13 -> 7: a 7 is below 8, so 4 poolings, divisor 16, patch rounded up to 112
    assert t.strides == ((1, 1), (2, 2), (2, 2), (2, 2), (2, 2))
    assert t.divisor == (16, 16) and t.patch_size == (112, 112)
    assert all(k == (3, 3) for k in t.kernel_sizes)
    assert len(t.kernel_sizes) == len(t.strides)


def test_anisotropic_coarse_axis_first_waits_and_gets_1_kernels():
    t = get_topology((3.0, 0.8, 0.8), (20, 160, 160))
    # 3.0 / 0.8 > 2: z is not pooled and has kernel 1 at full resolution; after one in-plane pooling
    # (1.6 mm) 3.0 / 1.6 < 2, so z joins; z: 20 -> 10 -> 5 stops (5 < 8); in-plane 160 -> 5 (5 poolings)
    assert t.kernel_sizes[0] == (1, 3, 3) and t.kernel_sizes[1] == (3, 3, 3)
    assert t.strides == ((1, 1, 1), (1, 2, 2), (2, 2, 2), (2, 2, 2), (1, 2, 2), (1, 2, 2))
    assert t.divisor == (4, 32, 32) and t.patch_size == (20, 160, 160)


def test_anisotropic_coarse_axis_last():
    t = get_topology((0.8, 0.8, 3.0), (160, 160, 20))
    assert t.kernel_sizes[0] == (3, 3, 1)
    assert t.strides[1] == (2, 2, 1) and t.strides[2] == (2, 2, 2)


def test_axis_stops_pooling_below_8_while_others_continue():
    t = get_topology((1.0, 1.0, 1.0), (8, 64, 64))
    assert t.strides == ((1, 1, 1), (2, 2, 2), (1, 2, 2), (1, 2, 2), (1, 2, 2))
    assert t.divisor == (2, 16, 16)


def test_single_axis_needs_12():
    # only axis 1 can pool (16 >= 8); alone it needs >= 12: 16 yes, then 8 no
    assert get_topology((1.0, 1.0), (4, 16)).strides == ((1, 1), (1, 2))


def test_round_to_divisor_and_filters_cap():
    assert round_to_divisor((33, 64), (32, 32)) == (64, 64)
    assert stage_filters(6, 32, 320) == [32, 64, 128, 256, 320, 320]
    assert stage_filters(3, 8, 16) == [8, 16, 16]


@pytest.mark.parametrize("spacing,patch,cin", [((1.0, 1.0), (128, 128), 3), ((3.0, 0.8, 0.8), (20, 96, 96), 1)])
def test_parameter_count_matches_monai_dynunet(spacing, patch, cin):
    monai_nets = pytest.importorskip("monai.networks.nets")
    t = get_topology(spacing, patch)
    f = stage_filters(t.num_stages, 16, 256)
    n = network_dict(t, f, cin, 3)
    net = monai_nets.DynUNet(n["spatial_dims"], cin, 3, n["kernel_size"], n["strides"], n["upsample_kernel_size"],
                             filters=n["filters"], norm_name=n["norm_name"])
    assert network_cost(t, f, cin, 3).parameters == sum(p.numel() for p in net.parameters())


def test_cost_scales_with_patch():
    small, large = get_topology((1, 1), (64, 64), max_pool_per_axis=4), get_topology((1, 1), (128, 128), max_pool_per_axis=4)
    a = network_cost(small, [16, 32, 64, 128, 256], 1, 2)
    b = network_cost(large, [16, 32, 64, 128, 256], 1, 2)
    # same five stages (pooling capped at 4), 4x the voxels at every stage
    with pytest.raises(ValueError, match="5 filter counts"):
        network_cost(get_topology((1, 1), (128, 128)), [16, 32, 64, 128, 256], 1, 2)
    assert b.macs == pytest.approx(4 * a.macs) and b.activations == pytest.approx(4 * a.activations)
