"""Squeeze-and-excitation blocks (Hu, Shen & Sun 2018, "Squeeze-and-Excitation Networks",
arXiv:1709.01507) and the reference ResNetSmall with them, with optional stochastic depth.

An SE block rescales the channels of a residual branch before the addition (the paper's Fig. 3,
"SE-ResNet module"): global average pooling ("squeeze"), FC to ``C / r`` channels, ReLU, FC back
to ``C``, sigmoid, channel-wise multiplication ("excitation"); ``r = 16`` as in the paper. Each
block adds ``2 C^2 / r + C / r + C`` parameters (the FC layers have biases).

``se-resnetsmall`` is the reference ResNetSmall of :mod:`cifarbudget.nets.resnet` (BasicBlocks
[4, 4, 4, 3], widths 32/64/128/256, 1x1 projection shortcuts; 4,754,218 parameters) with an SE
block in each of its 15 BasicBlocks: 4,791,314 parameters at 10 classes, under the 5M budget.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cifarbudget.errors import RunError
from cifarbudget.nets.common import init_weights
from cifarbudget.nets.droppath import drop_path_rates, make_drop_path
from cifarbudget.nets.resnet import BasicBlock, CifarResNet


class SqueezeExcite(nn.Module):
    """Channel gate ``x * sigmoid(W2 relu(W1 avgpool(x)))`` with ``W1: C -> C / reduction``."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        if isinstance(reduction, bool) or not isinstance(reduction, int) or reduction < 1:
            raise RunError(f"SE reduction must be a positive integer, got {reduction!r}")
        if channels % reduction:
            raise RunError(f"SE reduction {reduction} does not divide the block width {channels}")
        hidden = channels // reduction
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = F.adaptive_avg_pool2d(x, 1).flatten(1)
        scale = torch.sigmoid(self.fc2(F.relu(self.fc1(scale))))
        return x * scale[:, :, None, None]


class SEBasicBlock(BasicBlock):
    """:class:`~cifarbudget.nets.resnet.BasicBlock` with an SE gate (and drop-path) on the residual branch."""

    def __init__(
        self,
        in_planes: int,
        planes: int,
        stride: int,
        shortcut: str,
        *,
        reduction: int = 16,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__(in_planes, planes, stride, shortcut)
        self.se = SqueezeExcite(planes, reduction)
        self.drop_path = make_drop_path(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        return F.relu(self.drop_path(out) + self.shortcut(x))


class SEResNet(CifarResNet):
    """A :class:`~cifarbudget.nets.resnet.CifarResNet` whose BasicBlocks carry SE gates.

    The plain network is built first and each of its blocks is replaced by an
    :class:`SEBasicBlock` of the same shape (in/out width, stride, shortcut kind), so the backbone
    is exactly the one ``CifarResNet`` builds; weights are then initialised afresh.
    """

    def __init__(
        self,
        blocks: Sequence[int],
        widths: Sequence[int],
        *,
        num_classes: int = 10,
        shortcut: str = "projection",
        reduction: int = 16,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__(blocks, widths, num_classes=num_classes, shortcut=shortcut)
        plain = list(self.layers)
        rates = drop_path_rates(len(plain), drop_path)
        se_blocks: list[nn.Module] = []
        for block, rate in zip(plain, rates, strict=True):
            assert isinstance(block, BasicBlock)
            se_blocks.append(
                SEBasicBlock(
                    block.conv1.in_channels,
                    block.conv1.out_channels,
                    block.conv1.stride[0],
                    shortcut,
                    reduction=reduction,
                    drop_path=rate,
                )
            )
        self.layers = nn.Sequential(*se_blocks)
        init_weights(self)


def se_resnetsmall(num_classes: int = 10, *, reduction: int = 16, drop_path: float = 0.0) -> SEResNet:
    """ResNetSmall ([4, 4, 4, 3] BasicBlocks, widths 32/64/128/256, projection shortcuts) with SE blocks."""
    return SEResNet(
        [4, 4, 4, 3],
        [32, 64, 128, 256],
        num_classes=num_classes,
        reduction=reduction,
        drop_path=drop_path,
    )
