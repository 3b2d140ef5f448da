"""The recurrent-residual network of ACWE-ConvNet (Chen & Frey, MIDL 2020), reusable by any method.

* :class:`R2Net` — the paper's recurrent-residual ConvNet without down-sampling (authors' code,
  ``nets.recurrentNet``): blocks of one input convolution followed by recurrent steps
  ``h <- PReLU(BN(x1 + conv_t(h)))``; 3×3 (×3) convolutions, 16 filters, 3 blocks of 3 steps, a 1×1
  head to one logit. It also keeps running means of the two phases' intensities seen in training
  (buffers, so they travel with the weights) and the label-free rule that names the foreground phase.
* :func:`r2net_cost` — multiply-accumulates and stored activations per sample, for the step-time model.

Deviations from the authors' Keras code, all documented where they act: PReLU slopes are per
channel (Keras learns one per pixel and channel, tying the network to a 192×192 input); the head's
output goes through a sigmoid (the code clips a PReLU output to [0, 1]); the recurrent convolutions
of a block start from the same weights but are trained separately, as in the code.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["RULE_CODES", "R2Net", "r2net_cost"]

#: ``R2Net.rule`` values: how the foreground phase is named at inference
RULE_CODES = {"identity": 0, "bright": 1, "dark": 2, "smaller": 3}


class R2Block(nn.Module):
    """``x1 = conv_in(x)``; ``h = PReLU(BN(x1))``; ``recurrences`` times ``h = PReLU(BN(x1 + conv_t(h)))``."""

    def __init__(self, in_channels: int, filters: int, dims: int, recurrences: int = 3, kernel: int = 3):
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
        pad = kernel // 2
        self.conv_in = conv(in_channels, filters, kernel, padding=pad)
        self.convs = nn.ModuleList(conv(filters, filters, kernel, padding=pad) for _ in range(recurrences))
        self.norms = nn.ModuleList(norm(filters) for _ in range(recurrences + 1))
        self.acts = nn.ModuleList(nn.PReLU(filters) for _ in range(recurrences + 1))
        if recurrences:
            nn.init.kaiming_normal_(self.convs[0].weight)  # Keras he_normal, copied to the later steps as in the code
            for c in self.convs[1:]:
                c.load_state_dict(self.convs[0].state_dict())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.conv_in(x)
        h = self.acts[0](self.norms[0](x1))
        for conv, norm, act in zip(self.convs, self.norms[1:], self.acts[1:]):
            h = act(norm(x1 + conv(h)))
        return h


class R2Net(nn.Module):
    """ACWE-ConvNet's network: ``(B, C, *spatial) -> (B, 1, *spatial)`` logits, any spatial size.

    Buffers: ``phase_means`` (running means of the mean intensity of phase p and of phase 1-p in
    training batches, and of p's area fraction), ``phase_count`` and ``rule`` (see :data:`RULE_CODES`).
    """

    def __init__(self, in_channels: int, dims: int, filters: int = 16, blocks: int = 3, recurrences: int = 3,
                 kernel: int = 3, rule: str = "bright", momentum: float = 0.05):
        super().__init__()
        if dims not in (2, 3):
            raise ValueError(f"R2Net is 2D or 3D, got dims={dims}")
        self.dims, self.momentum = dims, float(momentum)
        self.blocks = nn.ModuleList(
            R2Block(in_channels if i == 0 else filters, filters, dims, recurrences, kernel) for i in range(blocks))
        self.head = (nn.Conv2d if dims == 2 else nn.Conv3d)(filters, 1, 1)
        self.register_buffer("phase_means", torch.zeros(3))
        self.register_buffer("phase_count", torch.zeros((), dtype=torch.long))
        self.register_buffer("rule", torch.tensor(RULE_CODES[rule], dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for b in self.blocks:
            x = b(x)
        return self.head(x)

    @torch.no_grad()
    def track_phases(self, mean_in: torch.Tensor, mean_out: torch.Tensor, area: torch.Tensor) -> None:
        """Update the running phase statistics (exponential average; the first call sets them)."""
        new = torch.stack([mean_in.float(), mean_out.float(), area.float()]).to(self.phase_means)
        if int(self.phase_count) == 0:
            self.phase_means.copy_(new)
        else:
            self.phase_means.mul_(1 - self.momentum).add_(self.momentum * new)
        self.phase_count += 1

    def output_sign(self) -> float:
        """+1 if the logit's positive phase is the foreground under ``rule``, -1 if the other one."""
        rule = int(self.rule)
        m_in, m_out, area = (float(v) for v in self.phase_means)
        if rule == RULE_CODES["identity"] or int(self.phase_count) == 0:
            return 1.0
        if rule == RULE_CODES["bright"]:
            return 1.0 if m_in >= m_out else -1.0
        if rule == RULE_CODES["dark"]:
            return 1.0 if m_in <= m_out else -1.0
        return 1.0 if area <= 0.5 else -1.0

    @torch.no_grad()
    def bake_polarity(self) -> float:
        """Fold :meth:`output_sign` into the head (``σ(-z) = 1 - σ(z)``) and set ``rule`` to identity;
        returns the sign applied."""
        sign = self.output_sign()
        if sign < 0:
            self.head.weight.neg_()
            self.head.bias.neg_()
            m_in, m_out, area = self.phase_means.tolist()
            self.phase_means.copy_(torch.tensor([m_out, m_in, 1.0 - area]))  # p is now the other phase
        self.rule.fill_(RULE_CODES["identity"])
        return sign


def r2net_cost(patch_size, in_channels: int, filters: int = 16, blocks: int = 3, recurrences: int = 3,
               kernel: int = 3) -> tuple[float, float]:
    """``(MACs, stored activation elements)`` of one forward pass of :class:`R2Net` on one sample.

    Activations kept for backward per block: the input convolution's output, per step a BN and a
    PReLU output, and per recurrence a convolution and a sum (``1 + 2(R+1) + 2R`` maps of ``filters``).
    """
    n = float(math.prod(int(p) for p in patch_size))
    k = float(kernel ** len(patch_size))
    macs = n * k * (in_channels * filters + filters * filters * recurrences)
    macs += (blocks - 1) * n * k * filters * filters * (recurrences + 1)
    macs += n * filters  # head
    maps = 1 + 2 * (recurrences + 1) + 2 * recurrences
    activations = n * filters * maps * blocks + 2 * n
    return macs, activations
