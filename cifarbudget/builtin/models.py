"""Builtin models: the reference ResNetSmall, He et al.'s CIFAR ResNets, WRN-16-4, PreActResNet18
and airbench-style fast nets. Only registrations: the implementations live in :mod:`cifarbudget.nets`
and are imported when a model is first built.
"""

from __future__ import annotations

from cifarbudget.hookspecs import hookimpl
from cifarbudget.registry import LazyFactory, lazy

# name -> (factory, description)
MODELS: dict[str, tuple[LazyFactory, str]] = {
    "resnetsmall": (
        lazy("cifarbudget.nets.resnet:resnetsmall"),
        "Reference ResNetSmall: BasicBlocks [4,4,4,3], widths 32/64/128/256, 1x1 projection "
        "shortcuts; 4,754,218 parameters",
    ),
    **{
        f"resnet{d}": (
            lazy("cifarbudget.nets.resnet:cifar_resnet", d),
            f"CIFAR ResNet-{d} (He et al. 2016, sec. 4.2): 16/32/64 widths, option A zero-padding shortcuts",
        )
        for d in (20, 32, 44, 56, 110)
    },
    "preactresnet18": (
        lazy("cifarbudget.nets.resnet:PreActResNet18"),
        "Pre-activation ResNet-18 (He et al. 2016b), the common 11.17M-parameter CIFAR variant; over the 5M budget",
    ),
    "wrn16-4": (
        lazy("cifarbudget.nets.wideresnet:WideResNet", 16, 4),
        "Wide ResNet WRN-16-4 (Zagoruyko & Komodakis 2016, arXiv:1605.07146); 2.75M parameters",
    ),
    "airnet": (
        lazy("cifarbudget.nets.airnet:AirNet"),
        "Fast-training net in the style of airbench94 (Keller Jordan 2024, "
        "github.com/KellerJordan/cifar10-airbench): 2x2 stem, 3 conv groups 64/256/256, max-pooling",
    ),
    "airnet-small": (
        lazy("cifarbudget.nets.airnet:AirNet", (32, 64, 128), stem=16),
        "airnet at quarter width (32/64/128): for fast CPU runs",
    ),
}


@hookimpl
def cifarbudget_register_models(registry) -> None:
    for name, (factory, description) in MODELS.items():
        registry.add(name, factory, description=description)
