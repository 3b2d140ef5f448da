"""The CUTS encoder: a stride-1 ConvNet giving every pixel an embedding of the patch centred on it.

C. Liu, M. Amodio, L. L. Shen, F. Gao, A. Avesta, S. Aneja, J. C. Wang, L. V. Del Priore and
S. Krishnaswamy, "CUTS: A Deep Learning and Topological Framework for Multigranular Unsupervised
Medical Image Segmentation", MICCAI 2024 (arXiv:2209.11359; code github.com/KrishnaswamyLab/CUTS).

Architecture (as the paper's code): ``layers`` (4) blocks of a ``kernel`` × ``kernel`` (5 × 5)
convolution, BatchNorm and LeakyReLU (slope 0.01), widths ``base · 2^i`` (16/32/64/128), stride 1
and no pooling, so the embedding of pixel ``(y, x)`` (``latent_dim = base · 2^(layers-1)`` = 128
values) sees the ``(layers·(kernel-1)+1)``² = 17 × 17 window centred on it. The reconstruction head
is a two-layer MLP (Linear, LeakyReLU, Linear; hidden width ``C·P²``) mapping an embedding to the
``C × P × P`` (P = 5) image patch centred on its pixel.

Padding: the convolutions are "valid"; :meth:`CutsEncoder.forward` pads the input once by the
receptive-field half-width (:attr:`CutsEncoder.halo` = 8 px, edge replication) so the dense output
has the input's size. (The paper's code pads every layer with ``padding='same'``; the two differ only
within 8 px of the image border.) This makes the dense map and :meth:`CutsEncoder.embed_at` — the
same network run on the 17 × 17 windows around chosen pixels only — the same function, which is
what lets training evaluate the encoder at the sampled pixels alone (see
:mod:`medseg_bench.methods.cuts`). Units: pixels of the network's input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CutsEncoder", "PatchReconstructor", "cuts_encoder_macs"]


class CutsEncoder(nn.Module):
    """Stride-1 encoder ``(B, C, H, W) -> (B, latent_dim, H, W)``; see the module docstring.

    Args:
        in_channels: image channels C. base: width of the first block (16). layers: blocks (4).
        kernel: odd convolution size (5). negative_slope: LeakyReLU slope (0.01, torch's default).
    """

    def __init__(self, in_channels: int, base: int = 16, layers: int = 4, kernel: int = 5, negative_slope: float = 0.01):
        super().__init__()
        if kernel % 2 != 1 or kernel < 1 or layers < 1 or base < 1 or in_channels < 1:
            raise ValueError(f"CutsEncoder needs an odd kernel and positive sizes, got in_channels={in_channels}, "
                             f"base={base}, layers={layers}, kernel={kernel}")
        blocks, c = [], int(in_channels)
        for i in range(int(layers)):
            w = int(base) * 2 ** i
            blocks += [nn.Conv2d(c, w, int(kernel)), nn.BatchNorm2d(w), nn.LeakyReLU(negative_slope)]
            c = w
        self.body = nn.Sequential(*blocks)
        self.in_channels, self.latent_dim = int(in_channels), c
        self.halo = int(layers) * (int(kernel) // 2)

    @property
    def window(self) -> int:
        """Receptive field (pixels per side) of one embedding."""
        return 2 * self.halo + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Dense embeddings ``(B, latent_dim, H, W)`` of ``(B, C, H, W)`` images."""
        return self.body(F.pad(x, [self.halo] * 4, mode="replicate"))

    def embed_at(self, x: torch.Tensor, points: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """Embeddings ``(N, latent_dim)`` at ``points`` ``(N, 3)`` (long ``(b, y, x)``: image index
        into ``x`` ``(B, C, H, W)`` and pixel): the network on the ``window`` × ``window`` crops of
        the padded images around the points only, ``chunk`` points at a time — equal to
        ``forward(x)`` read at the points (up to BatchNorm's batch statistics in training mode,
        where all points form one batch: use ``chunk >= N`` then)."""
        xp = F.pad(x, [self.halo] * 4, mode="replicate").permute(0, 2, 3, 1)  # (B, H+2h, W+2h, C)
        ar = torch.arange(self.window, device=x.device)
        out = []
        for pts in points.split(max(1, int(chunk))):
            rows = (pts[:, 1, None] + ar)[:, :, None]  # padded row of pixel y - halo + k is y + k
            cols = (pts[:, 2, None] + ar)[:, None, :]
            crops = xp[pts[:, 0, None, None], rows, cols]  # (n, w, w, C)
            out.append(self.body(crops.permute(0, 3, 1, 2)).flatten(1))
        if not out:
            return x.new_zeros((0, self.latent_dim))
        return torch.cat(out)


class PatchReconstructor(nn.Module):
    """Two-layer MLP ``(..., latent_dim) -> (..., C, P, P)``: the image patch centred on a pixel
    from its embedding (hidden width ``C·P²``, LeakyReLU)."""

    def __init__(self, latent_dim: int, channels: int, patch: int = 5, negative_slope: float = 0.01):
        super().__init__()
        n = int(channels) * int(patch) ** 2
        self.channels, self.patch = int(channels), int(patch)
        self.mlp = nn.Sequential(nn.Linear(int(latent_dim), n), nn.LeakyReLU(negative_slope), nn.Linear(n, n))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.mlp(z).reshape(*z.shape[:-1], self.channels, self.patch, self.patch)


def cuts_encoder_macs(in_channels: int, base: int = 16, layers: int = 4, kernel: int = 5) -> int:
    """Multiply–accumulates per output pixel of the dense encoder (269,200 for one channel and the
    paper's sizes); :meth:`CutsEncoder.embed_at` costs more per point (its crops shrink layer by layer)."""
    total, c = 0, int(in_channels)
    for i in range(int(layers)):
        w = int(base) * 2 ** i
        total += c * w * kernel * kernel
        c = w
    return total
