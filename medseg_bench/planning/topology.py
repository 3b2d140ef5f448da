"""U-Net topology from spacing and patch size, and the network's size in numbers (no torch).

The pooling rule is nnU-Net's (Isensee et al., "nnU-Net: a self-configuring method for deep
learning-based biomedical image segmentation", Nature Methods 18, 2021; v2
``get_pool_and_conv_props``): at each stage an axis is pooled (stride 2) only while

* its current size is at least ``2 * min_feature_map`` (so the coarsest feature map keeps at least
  ``min_feature_map`` = 4 voxels along it: "its size stays >= 8" before pooling), and
* its current spacing is within 2x of the finest current spacing (a 5 mm axis next to 1 mm axes waits
  until the fine axes have been pooled twice);

when only one axis qualifies it must be at least ``3 * min_feature_map`` long. The convolution kernel
of an axis is 3, or 1 while that axis is more than 2x coarser than the finest (very coarse axes get
1-wide kernels until pooling has caught up); the bottleneck always uses 3. The patch is rounded up to a
multiple of the total stride per axis.

The result maps directly onto MONAI's ``DynUNet(kernel_size=..., strides=..., filters=...)``; the
first stride is all ones. Cost figures (multiply-accumulates, activation elements, parameters) walk the
same architecture as ``DynUNet`` with ``UnetBasicBlock`` and no deep supervision, so the memory and
step-time models in :mod:`.costs` never need torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Topology",
    "NetworkCost",
    "get_topology",
    "stage_filters",
    "network_cost",
    "network_dict",
    "round_to_divisor",
]


@dataclass(frozen=True)
class Topology:
    """U-Net layout for one patch size.

    Attributes:
        patch_size: patch in voxels, rounded up to a multiple of :attr:`divisor` per axis.
        kernel_sizes: one kernel per stage (stage 0 = full resolution), e.g. ``[[1,3,3],[3,3,3],...]``.
        strides: one stride per stage, the first all ones (DynUNet convention).
        divisor: total stride per axis: every patch axis must be a multiple of it.
    """

    patch_size: tuple[int, ...]
    kernel_sizes: tuple[tuple[int, ...], ...]
    strides: tuple[tuple[int, ...], ...]
    divisor: tuple[int, ...]

    @property
    def num_stages(self) -> int:
        return len(self.strides)

    def feature_map_shapes(self) -> list[tuple[int, ...]]:
        """Spatial shape of the feature maps at every stage (voxels)."""
        shapes, cur = [], list(self.patch_size)
        for s in self.strides:
            cur = [math.ceil(c / k) for c, k in zip(cur, s)]
            shapes.append(tuple(cur))
        return shapes


def round_to_divisor(shape, divisor) -> tuple[int, ...]:
    """Round every axis of ``shape`` up to the next multiple of ``divisor`` (per axis)."""
    return tuple(int(math.ceil(s / d) * d) for s, d in zip(shape, divisor))


def get_topology(spacing, patch_size, min_feature_map: int = 4, max_pool_per_axis: int = 999) -> Topology:
    """Pooling strides and kernel sizes for a patch in a given voxel spacing (nnU-Net v2's rule).

    Args:
        spacing: voxel spacing per axis (mm, any unit: only ratios matter), same order as ``patch_size``.
        patch_size: patch in voxels (before rounding to the divisor).
        min_feature_map: smallest feature-map edge nnU-Net allows (4).
        max_pool_per_axis: cap on poolings per axis.

    Returns:
        A :class:`Topology` whose ``patch_size`` is rounded up to the total stride.

    Example:
        >>> t = get_topology((3.0, 0.8, 0.8), (20, 160, 160))
        >>> t.kernel_sizes[0], t.strides[1]
        ((1, 3, 3), (1, 2, 2))
    """
    dim = len(spacing)
    if len(patch_size) != dim:
        raise ValueError(f"spacing {tuple(spacing)} and patch {tuple(patch_size)} differ in dimensionality")
    cur_spacing = [float(s) for s in spacing]
    cur_size = [int(p) for p in patch_size]
    num_pool = [0] * dim
    kernel = [1] * dim
    strides: list[tuple[int, ...]] = [(1,) * dim]
    kernels: list[tuple[int, ...]] = []
    while True:
        valid = [i for i in range(dim) if cur_size[i] >= 2 * min_feature_map]
        if not valid:
            break
        finest = min(cur_spacing[i] for i in valid)
        valid = [i for i in valid if cur_spacing[i] / finest < 2 and num_pool[i] < max_pool_per_axis]
        if len(valid) == 1 and cur_size[valid[0]] < 3 * min_feature_map:
            break
        if not valid:
            break
        finest_all = min(cur_spacing)
        for d in range(dim):
            if kernel[d] != 3 and cur_spacing[d] / finest_all < 2:
                kernel[d] = 3
        stride = [1] * dim
        for v in valid:
            stride[v] = 2
            num_pool[v] += 1
            cur_spacing[v] *= 2
            cur_size[v] = math.ceil(cur_size[v] / 2)
        kernels.append(tuple(kernel))
        strides.append(tuple(stride))
    kernels.append((3,) * dim)  # bottleneck (or the only stage when nothing can be pooled)
    divisor = tuple(int(2**n) for n in num_pool)
    return Topology(round_to_divisor(patch_size, divisor), tuple(kernels), tuple(strides), divisor)


def stage_filters(num_stages: int, base: int, cap: int) -> list[int]:
    """Features per stage: ``base`` doubling per stage, capped at ``cap`` (nnU-Net: 32, cap 320/512)."""
    return [int(min(base * 2**i, cap)) for i in range(num_stages)]


@dataclass(frozen=True)
class NetworkCost:
    """Per-sample size of a DynUNet forward pass.

    Attributes:
        macs: multiply-accumulates of all convolutions for one sample.
        activations: elements of the tensors autograd keeps for the backward pass, one sample
            (conv outputs, normalisation outputs, upsampling outputs and skip concatenations).
        largest_map: elements of the largest single feature map (one sample).
        parameters: learnable parameters.
        maps: ``(elements of one stored tensor, elements of all stored tensors of that size)`` per
            stage, one sample (what :meth:`activations_in_maps_over` needs).
    """

    macs: float
    activations: float
    largest_map: float
    parameters: int
    maps: tuple[tuple[float, float], ...] = ()

    def activations_in_maps_over(self, batch_size: int, bytes_limit: float, bytes_per_element: int = 4) -> float:
        """Stored activation elements (whole batch) that live in tensors larger than ``bytes_limit``:
        the part of the work that no longer fits a CPU cache and runs at memory bandwidth."""
        return float(sum(total for one, total in self.maps if batch_size * one * bytes_per_element > bytes_limit) * batch_size)


def network_cost(topology: Topology, filters, in_channels: int, out_channels: int) -> NetworkCost:
    """Count MACs, stored activations and parameters of ``DynUNet(topology, filters)`` for one sample.

    Mirrors MONAI ``DynUNet`` (``UnetBasicBlock``: conv-norm-act twice; ``UnetUpBlock``: transposed
    conv with kernel = stride, concatenation with the skip, then a basic block; a 1x1x1 output conv).
    DynUNet's convolutions have no bias (except the output conv) and its instance norm is not affine.
    """
    _check_filters(topology, filters)
    shapes = topology.feature_map_shapes()
    vox = [float(np.prod(s)) for s in shapes]
    ks = [int(np.prod(k)) for k in topology.kernel_sizes]
    macs = acts = 0.0
    params = 0
    maps: dict[float, float] = {}

    def stored(one: float, count: float):
        nonlocal acts
        acts += one * count
        maps[one] = maps.get(one, 0.0) + one * count

    def conv(cin, cout, k, v):
        nonlocal macs, params
        macs += v * cin * cout * k
        stored(v * cout, 2)  # conv output (kept for norm backward) + norm/activation output
        params += cin * cout * k

    prev = in_channels
    for i, f in enumerate(filters):  # encoder + bottleneck
        conv(prev, f, ks[i], vox[i])
        conv(f, f, ks[i], vox[i])
        prev = f
    for i in range(len(filters) - 2, -1, -1):  # decoder
        f, fin = filters[i], filters[i + 1]
        up_k = int(np.prod(topology.strides[i + 1]))
        macs += vox[i] * fin * f
        params += fin * f * up_k
        stored(vox[i] * f, 1)  # transposed-conv output
        stored(2 * vox[i] * f, 1)  # the concatenation with the skip
        conv(2 * f, f, ks[i + 1], vox[i])
        conv(f, f, ks[i + 1], vox[i])
    macs += vox[0] * filters[0] * out_channels
    params += filters[0] * out_channels + out_channels  # the output conv has a bias
    stored(vox[0] * out_channels, 1)
    largest = max(v * f for v, f in zip(vox, filters))
    return NetworkCost(macs=macs, activations=acts, largest_map=largest, parameters=int(params),
                       maps=tuple(sorted(maps.items())))


def _check_filters(topology: Topology, filters) -> None:
    if len(filters) != topology.num_stages:
        raise ValueError(f"{len(filters)} filter counts for a topology of {topology.num_stages} stages")


def network_dict(topology: Topology, filters, in_channels: int, out_channels: int) -> dict:
    """The ``network`` entry of a plan: the arguments of MONAI ``DynUNet`` as plain data."""
    _check_filters(topology, filters)
    return {
        "architecture": "DynUNet",
        "spatial_dims": len(topology.patch_size),
        "in_channels": int(in_channels),
        "out_channels": int(out_channels),
        "kernel_size": [list(k) for k in topology.kernel_sizes],
        "strides": [list(s) for s in topology.strides],
        "upsample_kernel_size": [list(s) for s in topology.strides[1:]],
        "filters": [int(f) for f in filters],
        "norm_name": "instance",
        "deep_supervision": False,
    }
