"""ResNet classifiers (He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016)
built with MONAI's ``monai.networks.nets.ResNet``, for methods that need a classifier whose residual
stages ``layer1`` .. ``layer4`` can be hooked (e.g. PSM's Grad-CAM activation maps).

Why MONAI and not ``timm``: ``timm`` (and ``torchvision``, which it needs) cannot be installed beside
the CPU build of torch 2.13.0 this suite pins; MONAI's ResNet has the same stage layout and names as
torchvision/timm (``conv1, bn1, act, maxpool, layer1..layer4, avgpool, fc``), 2D and 3D.

The stem is the ImageNet one (7×7 convolution with stride 2, then a stride-2 max-pool), so
``layer1``'s output is at 1/4 of the input resolution, as in every ImageNet ResNet (Res2Net included).
``layer1`` has stride 1, ``layer2..4`` stride 2, then global average pooling: any input size works.

Example::

    >>> net = build_resnet_classifier(3, 1, widths=(8, 16, 32, 64), blocks=(1, 1, 1, 1))
    >>> net(torch.zeros(2, 3, 64, 64)).shape
    torch.Size([2, 1])
"""

from __future__ import annotations

from torch import nn

__all__ = ["RESNET_BLOCKS", "build_resnet_classifier"]

#: block types MONAI's ResNet accepts: "basic" (ResNet-18/34) and "bottleneck" (ResNet-50/101)
RESNET_BLOCKS = ("basic", "bottleneck")


def build_resnet_classifier(in_channels: int, num_outputs: int = 1, widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2),
                            block: str = "basic", spatial_dims: int = 2) -> nn.Module:
    """A MONAI ``ResNet`` with an ImageNet stem and a ``num_outputs``-way linear head.

    Args:
        in_channels: input channels (3 for RGB).
        num_outputs: size of the head (1: a scalar output, as PSM's self-supervised network).
        widths: base channels of ``layer1..layer4`` (ResNet-18/34: 64, 128, 256, 512; a bottleneck
            block outputs 4 times its base width).
        blocks: residual blocks per stage (ResNet-18: 2, 2, 2, 2; ResNet-34: 3, 4, 6, 3;
            ResNet-101 with ``block="bottleneck"``: 3, 4, 23, 3).
        block: ``"basic"`` or ``"bottleneck"``.
        spatial_dims: 2 or 3.

    Raises:
        ValueError: not four positive widths and block counts, or an unknown block type.
    """
    from monai.networks.nets import ResNet

    widths, blocks = [int(w) for w in widths], [int(b) for b in blocks]
    if len(widths) != 4 or len(blocks) != 4 or min(widths) < 1 or min(blocks) < 1:
        raise ValueError(f"a ResNet classifier needs 4 positive widths and block counts, got {widths}, {blocks}")
    if block not in RESNET_BLOCKS:
        raise ValueError(f"block must be one of {RESNET_BLOCKS}, got {block!r}")
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    return ResNet(block=block, layers=blocks, block_inplanes=widths, spatial_dims=spatial_dims,
                  n_input_channels=int(in_channels), conv1_t_size=7, conv1_t_stride=2, num_classes=int(num_outputs))
