"""Memory and time of one training step, estimated from the network's size (no torch).

Memory (``estimate_memory_gb``): autograd keeps every feature map the backward pass needs, so the
working memory of a forward + backward pass is proportional to the stored activation elements
(:func:`medseg_bench.planning.topology.network_cost`) times the batch size:

* CPU, float32: ``1.15 * 4 bytes * batch * activations``. The factor 1.15 (temporaries of the backward
  pass) was measured on this suite's reference machine as the peak resident memory of a forward +
  backward pass of MONAI ``DynUNet`` over seven 2D/3D configurations (ratios 1.10-1.18;
  ``tests/planning/test_costs.py`` re-measures it). Parameter state (weights, gradients, SGD momentum)
  adds ``3 * 4 bytes * parameters``.
* GPU, mixed precision (nnU-Net's setting): 3.5 bytes per activation element, plus ``16 bytes *
  parameters`` and 0.5 GB of cuDNN workspace. The 3.5 is anchored to nnU-Net's empirical reference
  (Isensee et al., Nature Methods 2021: a 3D U-Net with 32 base features at 128^3, batch 2, fills its
  8 GB target) and covers deep supervision and allocator slack; it was not re-measured here (no GPU).
  The CUDA context (about 0.3-0.5 GB) is not included.

GB here are 10^9 bytes.

Time on a GPU (``gpu_step_time_s``) is a rough figure for the schedule's wall-time estimate only:
6 FLOPs per multiply-accumulate (forward + backward) at an effective 12 TFLOP/s, which puts nnU-Net's
3D reference configuration at about 0.5 s per iteration, as reported for A100-class GPUs. CPU step
times come from the calibrated model in :mod:`.calibration`.
"""

from __future__ import annotations

from .topology import NetworkCost

__all__ = [
    "CPU_ACTIVATION_FACTOR",
    "GPU_BYTES_PER_ACTIVATION",
    "estimate_memory_gb",
    "forward_backward_bytes",
    "gpu_step_time_s",
]

CPU_ACTIVATION_FACTOR = 1.15
GPU_BYTES_PER_ACTIVATION = 3.5
GPU_FIXED_GB = 0.5
GPU_EFFECTIVE_FLOPS = 12e12
GPU_STEP_OVERHEAD_S = 0.02


def forward_backward_bytes(cost: NetworkCost, batch_size: int, device: str = "cpu") -> float:
    """Working memory (bytes) of the forward + backward pass alone: activations kept for backward
    and the temporaries of the backward pass; parameters excluded."""
    per_element = CPU_ACTIVATION_FACTOR * 4 if device == "cpu" else GPU_BYTES_PER_ACTIVATION
    return per_element * batch_size * cost.activations


def estimate_memory_gb(cost: NetworkCost, batch_size: int, device: str = "cpu") -> float:
    """Memory of one training step in GB (10^9 bytes): forward + backward working memory plus the
    parameter state (weights, gradients, momentum; fp32 master weights on GPU) and, on GPU, the cuDNN
    workspace allowance. ``device`` is ``"cpu"`` or ``"gpu"``."""
    if device not in ("cpu", "gpu"):
        raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")
    working = forward_backward_bytes(cost, batch_size, device)
    if device == "cpu":
        return (working + 12.0 * cost.parameters) / 1e9
    return (working + 16.0 * cost.parameters) / 1e9 + GPU_FIXED_GB


def gpu_step_time_s(cost: NetworkCost, batch_size: int) -> float:
    """Rough seconds per training step on an A100-class GPU (see the module docstring)."""
    return GPU_STEP_OVERHEAD_S + 6.0 * cost.macs * batch_size / GPU_EFFECTIVE_FLOPS
