"""Build the plan's U-Net: MONAI ``DynUNet`` (Isensee et al., nnU-Net, Nature Methods 2021).

A plan configuration's ``network`` block (plans.json, see notes/contracts.md) holds::

    {"spatial_dims": 2|3, "in_channels": C, "out_channels": K,
     "kernel_size": [[3,3],...], "strides": [[1,1],[2,2],...], "filters": [16, 32, ...]}

``upsample_kernel_size`` is ``strides[1:]`` as in nnU-Net; normalisation is instance norm, activation
leaky ReLU (MONAI's DynUNet defaults, which follow nnU-Net).
"""

from __future__ import annotations

from torch import nn

__all__ = ["build_network", "count_parameters", "network_kwargs"]

_REQUIRED = ("spatial_dims", "in_channels", "out_channels", "kernel_size", "strides")


def network_kwargs(network: dict, out_channels: int | None = None, in_channels: int | None = None) -> dict:
    """DynUNet keyword arguments from a plan's network block (optionally overriding channels)."""
    missing = [k for k in _REQUIRED if k not in network]
    if missing:
        raise ValueError(f"plan network block lacks {', '.join(missing)}: {network}")
    strides = [list(s) if isinstance(s, (list, tuple)) else [s] * network["spatial_dims"] for s in network["strides"]]
    kernels = [list(k) if isinstance(k, (list, tuple)) else [k] * network["spatial_dims"] for k in network["kernel_size"]]
    if len(strides) != len(kernels):
        raise ValueError(f"plan network block: {len(kernels)} kernel sizes but {len(strides)} strides")
    kw = {
        "spatial_dims": int(network["spatial_dims"]),
        "in_channels": int(in_channels if in_channels is not None else network["in_channels"]),
        "out_channels": int(out_channels if out_channels is not None else network["out_channels"]),
        "kernel_size": kernels,
        "strides": strides,
        "upsample_kernel_size": strides[1:],
        "norm_name": ("INSTANCE", {"affine": True}),
        "res_block": bool(network.get("res_block", False)),
    }
    if network.get("filters"):
        if len(network["filters"]) != len(strides):
            raise ValueError(f"plan network block: {len(network['filters'])} filters for {len(strides)} stages")
        kw["filters"] = [int(f) for f in network["filters"]]
    return kw


def build_network(network: dict, out_channels: int | None = None, in_channels: int | None = None) -> nn.Module:
    """A MONAI ``DynUNet`` from a plan's network block; ``out_channels`` overrides the class count
    (e.g. a reconstruction head). Deep supervision is off: its extra heads are not worth their cost
    at the CPU patch sizes this suite plans."""
    from monai.networks.nets import DynUNet

    return DynUNet(**network_kwargs(network, out_channels, in_channels))


def count_parameters(*modules: nn.Module) -> int:
    """Number of trainable parameters of the given modules (shared parameters counted once)."""
    seen: set[int] = set()
    total = 0
    for m in modules:
        for p in m.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
    return total

