"""DenseNet-BC for CIFAR (Huang, Liu, van der Maaten & Weinberger 2017, "Densely Connected
Convolutional Networks", arXiv:1608.06993).

The CIFAR layout of the paper's section 3 and the authors' code (github.com/liuzhuang13/DenseNet):

* stem: one 3x3 convolution to ``2k`` channels (``k`` the growth rate);
* three dense blocks of ``(depth - 4) / 6`` bottleneck layers each; a layer is
  BN-ReLU-conv1x1(``4k``)-BN-ReLU-conv3x3(``k``) and its ``k`` new maps are concatenated to its input;
* between blocks a transition: BN-ReLU-conv1x1 to ``floor(compression * channels)`` (0.5 for "C"),
  then 2x2 average pooling;
* head: BN-ReLU, global average pooling, linear. Convolutions have no bias.

DenseNet-BC-100 with ``k = 12`` has 769,162 parameters at 10 classes (the paper's Table 2 lists
0.8M); pinned in tests/test_zoo.py. DenseNet has no residual branches: ``drop_path`` must stay 0.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cifarbudget.errors import RunError
from cifarbudget.nets.common import init_weights
from cifarbudget.nets.droppath import check_drop_path


class DenseLayer(nn.Module):
    """Bottleneck layer ("B"): BN-ReLU-conv1x1(4k)-BN-ReLU-conv3x3(k), output concatenated to the input."""

    def __init__(self, in_channels: int, growth: int) -> None:
        super().__init__()
        inner = 4 * growth
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, inner, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(inner, growth, 3, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return torch.cat([x, out], 1)


class Transition(nn.Sequential):
    """Compression ("C"): BN-ReLU-conv1x1 to ``out_channels``, then 2x2 average pooling."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.AvgPool2d(2),
        )


class DenseNetBC(nn.Module):
    """DenseNet-BC-``depth`` with growth rate ``growth`` and transition ``compression`` for 32x32 inputs."""

    def __init__(
        self, depth: int = 100, growth: int = 12, num_classes: int = 10, *, compression: float = 0.5
    ) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise RunError(
                f"DenseNet-BC depth must be 6n + 4 with n >= 1 (40, 100, 190, 250, ...), got {depth}"
            )
        if growth < 1:
            raise RunError(f"DenseNet growth rate must be a positive integer, got {growth!r}")
        if not 0.0 < compression <= 1.0:
            raise RunError(f"DenseNet compression must be in (0, 1], got {compression!r}")
        layers_per_block = (depth - 4) // 6
        channels = 2 * growth
        features: list[nn.Module] = [nn.Conv2d(3, channels, 3, 1, 1, bias=False)]
        for block in range(3):
            for _ in range(layers_per_block):
                features.append(DenseLayer(channels, growth))
                channels += growth
            if block < 2:
                out_channels = math.floor(compression * channels)
                features.append(Transition(channels, out_channels))
                channels = out_channels
        features += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*features)
        self.head = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


def densenet_bc(
    depth: int = 100,
    growth: int = 12,
    num_classes: int = 10,
    *,
    compression: float = 0.5,
    drop_path: float = 0.0,
) -> DenseNetBC:
    """Factory for the registry: ``densenet_bc(100, 12)`` is DenseNet-BC-100 (k = 12).

    ``drop_path`` is accepted so that one option set fits every zoo model, but only 0 is valid:
    DenseNet has no residual branch to drop.
    """
    if check_drop_path(drop_path) != 0.0:
        raise RunError("DenseNet-BC has no residual branches: drop_path must be 0")
    return DenseNetBC(depth, growth, num_classes, compression=compression)
