"""Additive PyramidNets for CIFAR (Han, Kim & Kim 2017, "Deep Pyramidal Residual Networks",
arXiv:1610.02915), with optional stochastic depth.

The architecture follows the authors' code (github.com/jhkim89/PyramidNet, LuaTorch, and
github.com/dyhan0920/PyramidNet-PyTorch):

* stem: 3x3 conv to 16 channels and BN (no ReLU);
* ``3n`` residual units; unit ``i`` (1-based) has ``round(16 + i * alpha / (3n))`` channels, so the
  width grows by ``alpha / (3n)`` per unit ("additive" widening, eq. 2) and ends at ``16 + alpha``
  (times 4 for the bottleneck unit);
* basic unit (Fig. 6d): BN-conv3x3-BN-ReLU-conv3x3-BN; bottleneck unit: BN-conv1x1-BN-ReLU-
  conv3x3-BN-ReLU-conv1x1(x4)-BN; no ReLU after the addition;
* shortcut: identity, 2x2 average pooling where the unit has stride 2 (first unit of groups 2 and
  3), and zero channels appended to match the wider residual branch (parameter-free, sec. 3.2);
* head: BN-ReLU, global average pooling, linear.

PyramidNet-110 (basic, alpha 48) has 1,772,706 parameters and PyramidNet-164 (bottleneck,
alpha 48) 1,715,442 at 10 classes, the same counts as the authors' PyTorch code; the paper and
the authors' README list both as 1.7M (pinned in tests/test_zoo.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cifarbudget.errors import RunError
from cifarbudget.nets.common import init_weights
from cifarbudget.nets.droppath import drop_path_rates, make_drop_path


class PyramidShortcut(nn.Module):
    """Average-pool by ``stride`` and append ``extra`` zero channels (no parameters)."""

    def __init__(self, extra_channels: int, stride: int) -> None:
        super().__init__()
        self.extra, self.stride = extra_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = F.avg_pool2d(x, self.stride, self.stride)
        return F.pad(x, (0, 0, 0, 0, 0, self.extra)) if self.extra else x


class PyramidBasicBlock(nn.Module):
    """The pyramidal residual unit (the paper's Fig. 6d): BN-conv-BN-ReLU-conv-BN."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int, drop_path: float = 0.0) -> None:
        super().__init__()
        self.branch = nn.Sequential(
            nn.BatchNorm2d(in_planes),
            nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False),
            nn.BatchNorm2d(planes),
            nn.ReLU(inplace=True),
            nn.Conv2d(planes, planes, 3, 1, 1, bias=False),
            nn.BatchNorm2d(planes),
        )
        self.drop_path = make_drop_path(drop_path)
        self.shortcut = PyramidShortcut(planes - in_planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop_path(self.branch(x)) + self.shortcut(x)


class PyramidBottleneck(nn.Module):
    """The pyramidal bottleneck unit: BN-conv1x1-BN-ReLU-conv3x3-BN-ReLU-conv1x1(4x)-BN."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int, drop_path: float = 0.0) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.branch = nn.Sequential(
            nn.BatchNorm2d(in_planes),
            nn.Conv2d(in_planes, planes, 1, bias=False),
            nn.BatchNorm2d(planes),
            nn.ReLU(inplace=True),
            nn.Conv2d(planes, planes, 3, stride, 1, bias=False),
            nn.BatchNorm2d(planes),
            nn.ReLU(inplace=True),
            nn.Conv2d(planes, out_planes, 1, bias=False),
            nn.BatchNorm2d(out_planes),
        )
        self.drop_path = make_drop_path(drop_path)
        self.shortcut = PyramidShortcut(out_planes - in_planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop_path(self.branch(x)) + self.shortcut(x)


class PyramidNet(nn.Module):
    """Additive PyramidNet-``depth`` with widening factor ``alpha`` for 32x32 inputs.

    ``depth`` is ``6n + 2`` (basic units) or ``9n + 2`` (``bottleneck=True``); ``drop_path`` is
    the stochastic-depth rate of the last unit (linear rule, Huang et al. 2016, arXiv:1603.09382).
    """

    def __init__(
        self,
        depth: int,
        alpha: float,
        num_classes: int = 10,
        *,
        bottleneck: bool = False,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        block: type[PyramidBasicBlock] | type[PyramidBottleneck]
        block, per_unit = (PyramidBottleneck, 9) if bottleneck else (PyramidBasicBlock, 6)
        if depth < per_unit + 2 or (depth - 2) % per_unit:
            kind = "bottleneck" if bottleneck else "basic"
            raise RunError(
                f"PyramidNet ({kind} units) depth must be {per_unit}n + 2 with n >= 1, got {depth}"
            )
        if not alpha > 0:
            raise RunError(f"PyramidNet alpha must be positive, got {alpha!r}")
        n = (depth - 2) // per_unit
        add_rate = alpha / (3 * n)
        rates = drop_path_rates(3 * n, drop_path)

        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16))
        units: list[nn.Module] = []
        in_planes, width = 16, 16.0
        for i in range(3 * n):
            width += add_rate
            planes = round(width)  # as the authors' PyTorch code; alpha 48 gives no .5 ties
            stride = 2 if i in (n, 2 * n) else 1
            units.append(block(in_planes, planes, stride, rates[i]))
            in_planes = planes * block.expansion
        self.units = nn.Sequential(*units)
        self.final = nn.Sequential(nn.BatchNorm2d(in_planes), nn.ReLU(inplace=True))
        self.head = nn.Linear(in_planes, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.final(self.units(self.stem(x)))
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


def pyramidnet(
    depth: int = 110,
    alpha: float = 48,
    num_classes: int = 10,
    *,
    bottleneck: bool = False,
    drop_path: float = 0.0,
) -> PyramidNet:
    """Factory for the registry: ``pyramidnet(110, 48)`` or ``pyramidnet(164, 48, bottleneck=True)``."""
    return PyramidNet(depth, alpha, num_classes, bottleneck=bottleneck, drop_path=drop_path)
