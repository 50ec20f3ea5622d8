"""Wide ResNets (Zagoruyko & Komodakis 2016, arXiv:1605.07146), with optional stochastic depth.

WRN-d-k: a 3x3 stem to 16 channels, three groups of ``(d - 4) / 6`` pre-activation blocks of widths
16k/32k/64k (the second and third groups start at stride 2), BN-ReLU, global average pooling and a
linear head. A block whose width or stride changes takes a 1x1 convolution shortcut on the
pre-activated input, as in the authors' code and its common PyTorch port: WRN-28-2 has 1,467,610
parameters and WRN-40-2 2,243,546 at 10 classes (pinned in tests/test_zoo.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cifarbudget.errors import RunError
from cifarbudget.nets.common import init_weights
from cifarbudget.nets.droppath import drop_path_rates, make_drop_path


# --- Wide ResNet (Zagoruyko & Komodakis 2016) -----------------------------------------------------
class WideBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3 plus a shortcut (the paper's B(3,3) block)."""

    def __init__(
        self, in_planes: int, planes: int, stride: int, dropout: float, drop_path: float = 0.0
    ) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.drop_path = make_drop_path(drop_path)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv2(self.dropout(F.relu(self.bn2(self.conv1(out)))))
        return self.drop_path(out) + shortcut


class WideResNet(nn.Module):
    """WRN-``depth``-``widen``; ``dropout`` between the block's convolutions (the paper's sec. 2.4),
    ``drop_path`` the stochastic-depth rate of the last block (linear rule, Huang et al. 2016)."""

    def __init__(
        self,
        depth: int,
        widen: int,
        num_classes: int = 10,
        dropout: float = 0.0,
        *,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise RunError(
                f"Wide ResNet depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 40, ...), got {depth}"
            )
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        rates = drop_path_rates(3 * n, drop_path)
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        layers: list[nn.Module] = []
        in_planes = widths[0]
        for i, planes in enumerate(widths[1:]):
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(WideBlock(in_planes, planes, stride, dropout, rates[len(layers)]))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(in_planes)
        self.head = nn.Linear(in_planes, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.layers(self.conv1(x))))
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))
