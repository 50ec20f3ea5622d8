"""Builtin models: the reference ResNetSmall, He et al.'s CIFAR ResNets, WRN-16-4, PreActResNet18
and an airbench-style fast net.

Every model takes a normalised ``(N, 3, 32, 32)`` float batch and returns ``(N, num_classes)``
logits. Parameter counts are pinned by tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from cifarbudget.hookspecs import hookimpl


def _init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# --- ResNet with BasicBlocks (projection or zero-padding shortcuts) -----------------------------
class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (He et al. 2016, Fig. 2 left)."""

    def __init__(self, in_planes: int, planes: int, stride: int, shortcut: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            if shortcut == "projection":  # option B: 1x1 conv + BN
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
                )
            else:  # option A: subsample and zero-pad channels, no parameters
                self.shortcut = ZeroPadShortcut(planes - in_planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ZeroPadShortcut(nn.Module):
    """He et al.'s option A shortcut: stride-2 subsampling and zero channels, parameter-free."""

    def __init__(self, extra_channels: int, stride: int) -> None:
        super().__init__()
        self.extra, self.stride = extra_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        half = self.extra // 2
        return F.pad(x, (0, 0, 0, 0, half, self.extra - half))


class CifarResNet(nn.Module):
    """3x3 stem, stages of BasicBlocks (the first stage at stride 1), global pool, linear head."""

    def __init__(
        self,
        blocks: Sequence[int],
        widths: Sequence[int],
        *,
        num_classes: int = 10,
        shortcut: str = "projection",
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
        )
        layers: list[nn.Module] = []
        in_planes = widths[0]
        for i, (n, planes) in enumerate(zip(blocks, widths, strict=True)):
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(BasicBlock(in_planes, planes, stride, shortcut))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(in_planes, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.head(x)


def resnetsmall(num_classes: int = 10) -> nn.Module:
    return CifarResNet([4, 4, 4, 3], [32, 64, 128, 256], num_classes=num_classes)


def cifar_resnet(depth: int, num_classes: int = 10) -> nn.Module:
    n = (depth - 2) // 6
    return CifarResNet([n, n, n], [16, 32, 64], num_classes=num_classes, shortcut="zeropad")


# --- Pre-activation ResNet-18 (He et al. 2016b), the common CIFAR variant ------------------------
class PreActBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet18(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        layers: list[nn.Module] = []
        in_planes = 64
        for i, planes in enumerate([64, 128, 256, 512]):
            for j in range(2):
                layers.append(PreActBlock(in_planes, planes, 2 if (i > 0 and j == 0) else 1))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(512, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # As in the widely copied kuangliu/pytorch-cifar version: no final BN-ReLU before pooling.
        x = self.layers(self.conv1(x))
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


# --- Wide ResNet (Zagoruyko & Komodakis 2016) -----------------------------------------------------
class WideBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv2(self.dropout(F.relu(self.bn2(self.conv1(out)))))
        return out + shortcut


class WideResNet(nn.Module):
    def __init__(self, depth: int, widen: int, num_classes: int = 10, dropout: float = 0.0) -> None:
        super().__init__()
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        layers: list[nn.Module] = []
        in_planes = widths[0]
        for i, planes in enumerate(widths[1:]):
            for j in range(n):
                layers.append(WideBlock(in_planes, planes, 2 if (i > 0 and j == 0) else 1, dropout))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(in_planes)
        self.head = nn.Linear(in_planes, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.layers(self.conv1(x))))
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


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
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (0, 1, 0, 1), mode="replicate")  # keep 32x32 after the 2x2 stem
        x = self.groups(F.gelu(self.stem(x)))
        x = F.adaptive_max_pool2d(x, 1).flatten(1)
        return self.head(x) * self.scale


# name -> (factory, description)
MODELS: dict[str, tuple[Callable[..., nn.Module], str]] = {
    "resnetsmall": (
        resnetsmall,
        "Reference ResNetSmall: BasicBlocks [4,4,4,3], widths 32/64/128/256, 1x1 projection "
        "shortcuts; 4,754,218 parameters",
    ),
    **{
        f"resnet{d}": (
            partial(cifar_resnet, d),
            f"CIFAR ResNet-{d} (He et al. 2016, sec. 4.2): 16/32/64 widths, option A zero-padding shortcuts",
        )
        for d in (20, 32, 44, 56, 110)
    },
    "preactresnet18": (
        PreActResNet18,
        "Pre-activation ResNet-18 (He et al. 2016b), the common 11.17M-parameter CIFAR variant; over the 5M budget",
    ),
    "wrn16-4": (
        partial(WideResNet, 16, 4),
        "Wide ResNet WRN-16-4 (Zagoruyko & Komodakis 2016, arXiv:1605.07146); 2.75M parameters",
    ),
    "airnet": (
        AirNet,
        "Fast-training net in the style of airbench94 (Keller Jordan 2024, "
        "github.com/KellerJordan/cifar10-airbench): 2x2 stem, 3 conv groups 64/256/256, max-pooling",
    ),
    "airnet-small": (
        partial(AirNet, (32, 64, 128), stem=16),
        "airnet at quarter width (32/64/128): for fast CPU runs",
    ),
}


@hookimpl
def cifarbudget_register_models(registry) -> None:
    for name, (factory, description) in MODELS.items():
        registry.add(name, factory, description=description)
