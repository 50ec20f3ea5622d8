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
    "wrn28-2": (
        lazy("cifarbudget.nets.wideresnet:WideResNet", 28, 2),
        "Wide ResNet WRN-28-2 (Zagoruyko & Komodakis 2016, arXiv:1605.07146), 1x1 conv shortcuts; "
        "1,467,610 parameters; option drop_path (stochastic depth, Huang et al. 2016, arXiv:1603.09382)",
    ),
    "wrn40-2": (
        lazy("cifarbudget.nets.wideresnet:WideResNet", 40, 2),
        "Wide ResNet WRN-40-2 (Zagoruyko & Komodakis 2016, arXiv:1605.07146, Table 4: 2.2M), 1x1 conv "
        "shortcuts; 2,243,546 parameters; option drop_path (stochastic depth, arXiv:1603.09382)",
    ),
    "pyramidnet110-a48": (
        lazy("cifarbudget.nets.pyramidnet:pyramidnet", 110, 48),
        "Additive PyramidNet-110, alpha 48 (Han, Kim & Kim 2017, arXiv:1610.02915: 1.7M), basic units, "
        "zero-padded avg-pool shortcuts; 1,772,706 parameters; option drop_path (arXiv:1603.09382)",
    ),
    "pyramidnet164-a48-bottleneck": (
        lazy("cifarbudget.nets.pyramidnet:pyramidnet", 164, 48, bottleneck=True),
        "Additive PyramidNet-164, alpha 48, bottleneck units (Han, Kim & Kim 2017, arXiv:1610.02915: 1.7M); "
        "1,715,442 parameters; option drop_path (arXiv:1603.09382)",
    ),
    "densenet-bc100-k12": (
        lazy("cifarbudget.nets.densenet:densenet_bc", 100, 12),
        "DenseNet-BC-100, growth rate 12, compression 0.5 (Huang, Liu, van der Maaten & Weinberger 2017, "
        "arXiv:1608.06993, Table 2: 0.8M); 769,162 parameters",
    ),
    "se-resnetsmall": (
        lazy("cifarbudget.nets.se:se_resnetsmall"),
        "Reference ResNetSmall with a squeeze-and-excitation block (reduction 16) in each BasicBlock "
        "(Hu, Shen & Sun 2018, arXiv:1709.01507); 4,791,314 parameters; option drop_path (arXiv:1603.09382)",
    ),
    "airnet": (
        lazy("cifarbudget.nets.airnet:AirNet"),
        "Fast-training net in the style of airbench94 (Keller Jordan 2024, "
        "github.com/KellerJordan/cifar10-airbench): 2x2 stem, 3 conv groups 64/256/256, max-pooling",
    ),
    "airnet-small": (
        lazy("cifarbudget.nets.airnet:AirNet", widths=(32, 64, 128), stem=16),
        "airnet at quarter width (32/64/128): for fast CPU runs",
    ),
}


@hookimpl
def cifarbudget_register_models(registry) -> None:
    for name, (factory, description) in MODELS.items():
        registry.add(name, factory, description=description)
