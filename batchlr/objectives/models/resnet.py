"""ResNet-20, the residual network He et al. (2016) designed for CIFAR-10.

K. He, X. Zhang, S. Ren and J. Sun, "Deep Residual Learning for Image Recognition",
CVPR 2016, section 4.2: a 3×3 convolution with 16 channels, three stages of three basic
blocks with 16, 32 and 64 channels (stride 2 at the start of the second and third), global
average pooling and a linear head; 6 × 3 + 2 = 20 layers with weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

STAGE_WIDTHS = (16, 32, 64)
BLOCKS_PER_STAGE = 3


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with BatchNorm, added to the block's input, then ReLU.

    The shortcut is the identity (option A of the paper): when the block halves the
    resolution and widens the channels, it takes every second pixel and pads the new
    channels with zeros, so it adds no parameters.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        # No conv biases: the BatchNorm right after each conv shifts its output anyway.
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.stride = stride
        self.extra_channels = out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        # A stride-2 conv with padding 1 maps n pixels to ceil(n / 2), as this slice does,
        # so odd sizes (7×7 from 28×28 images) line up too.
        shortcut = x[:, :, :: self.stride, :: self.stride]
        if self.extra_channels:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.extra_channels))
        return F.relu(out + shortcut)


class ResNet20(nn.Module):
    """ResNet-20 for images of ``in_channels`` channels and any size.

    The architecture does not depend on the image size: after the two stride-2 stages a
    32×32 image is an 8×8 map, and an 8×8 one a 2×2 map, before global average pooling.
    With 3 input channels and 10 classes it has 269,722 trainable parameters.
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, STAGE_WIDTHS[0], 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(STAGE_WIDTHS[0])
        blocks: list[nn.Module] = []
        channels = STAGE_WIDTHS[0]
        for stage, width in enumerate(STAGE_WIDTHS):
            for block in range(BLOCKS_PER_STAGE):
                blocks.append(
                    BasicBlock(channels, width, stride=2 if stage > 0 and block == 0 else 1)
                )
                channels = width
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                # He et al.'s own initialisation (fb.resnet.torch, as torchvision's ResNet):
                # std sqrt(2 / n), n = kernel area × output channels.
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(F.relu(self.bn(self.conv(x))))
        logits: torch.Tensor = self.head(torch.flatten(self.pool(x), 1))
        return logits


def resnet20(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """ResNet-20 taking images of ``input_shape`` = (channels, height, width)."""
    return ResNet20(input_shape[0], num_classes)
