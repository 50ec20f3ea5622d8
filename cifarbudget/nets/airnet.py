"""A fast-training net in the style of airbench94 (Keller Jordan 2024)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cifarbudget.nets.common import init_weights


# --- airbench-style fast net (Jordan 2024, "94% on CIFAR-10 in 3.29 seconds") --------------------
class ConvGroup(nn.Module):
    """conv -> pool -> BN -> GELU -> conv -> BN -> GELU, as in airbench94's blocks."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.bn1 = nn.BatchNorm2d(c_out, momentum=0.4)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out, momentum=0.4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.bn1(self.pool(self.conv1(x))))
        return F.gelu(self.bn2(self.conv2(x)))


class AirNet(nn.Module):
    """A 2x2 stem conv, three conv groups with max-pooling, global max-pool, scaled linear head."""

    def __init__(self, widths: Sequence[int] = (64, 256, 256), num_classes: int = 10, stem: int = 24) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, stem, 2, padding=0, bias=True)
        groups = []
        c_in = stem
        for w in widths:
            groups.append(ConvGroup(c_in, w))
            c_in = w
        self.groups = nn.Sequential(*groups)
        self.head = nn.Linear(c_in, num_classes, bias=False)
        self.scale = 1 / 9
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (0, 1, 0, 1), mode="replicate")  # keep 32x32 after the 2x2 stem
        x = self.groups(F.gelu(self.stem(x)))
        x = F.adaptive_max_pool2d(x, 1).flatten(1)
        return self.head(x) * self.scale
