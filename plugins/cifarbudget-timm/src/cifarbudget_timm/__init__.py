"""cifarbudget-timm: timm architectures adapted to 32x32 CIFAR images, as cifarbudget models.

A plugin written only against cifarbudget's public plugin contract (``docs/plugins.md``): it
imports nothing from cifarbudget but :data:`cifarbudget.hookimpl` and is found through the entry
point ``timm = "cifarbudget_timm"`` in the group ``cifarbudget``. Each model is
``timm.create_model(<name>, pretrained=False, num_classes=...)`` with its ImageNet stem adapted to
32x32 inputs the way CIFAR ports do (stride-2 stem convolution and max-pool removed, one early
downsampling stage at stride 1), so that the last stage still sees a 4x4 feature map.
timm itself is imported on the first build, so loading the plugin costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from cifarbudget import hookimpl

if TYPE_CHECKING:
    from torch import nn

__version__ = "0.1.0"


class Registry(Protocol):
    """What a ``cifarbudget_register_*`` hook receives (the part this plugin uses)."""

    def add(self, name: str, factory: Callable[..., Any], *, description: str = "") -> None: ...


# --- adaptations to 32x32 inputs ---------------------------------------------------------------
def unstride(module: nn.Module) -> None:
    """Set every strided convolution inside ``module`` to stride 1 (padding stays 'same').

    Raises if there is none: a timm release that moved the layer must not silently give a
    different network.
    """
    from torch import nn

    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d) and m.stride != (1, 1)]
    if not convs:
        raise RuntimeError(f"cifarbudget-timm: no strided convolution in {type(module).__name__}")
    for conv in convs:
        conv.stride = (1, 1)


def cifar_resnet_stem(model: nn.Module) -> None:
    """Replace a timm ResNet's stride-2 stem (7x7 or deep 3x3 stack) and max-pool by one 3x3/1 conv."""
    from torch import nn

    width = model.bn1.num_features
    model.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()


def mobilenet_stem(stage: int) -> Callable[[nn.Module], None]:
    """For timm's EfficientNet/MobileNetV3 family: stem stride 1 and ``blocks[stage]`` stride 1."""

    def adapt(model: nn.Module) -> None:
        unstride(model.conv_stem)
        unstride(model.blocks[stage][0])

    return adapt


def regnet_stem(model: nn.Module) -> None:
    """For timm's RegNets: stem stride 1 and the first stage (``s1``) stride 1."""
    unstride(model.stem)
    unstride(model.s1.b1)


@dataclass(frozen=True)
class TimmCifarModel:
    """A model factory: build ``timm_name`` with fresh weights and adapt it to 32x32 inputs."""

    timm_name: str
    adapt: Callable[[nn.Module], None]
    description: str

    def __call__(self, num_classes: int = 10, **timm_kwargs: Any) -> nn.Module:
        """Build the model; extra keyword arguments (``drop_rate=0.2``, ...) go to timm."""
        import timm

        timm_kwargs["pretrained"] = False  # never download weights
        model = timm.create_model(self.timm_name, num_classes=num_classes, **timm_kwargs)
        self.adapt(model)
        return model


# cifarbudget name -> factory. Parameter counts are for num_classes=10 (pinned by the tests).
MODELS: dict[str, TimmCifarModel] = {
    "timm-resnet10t": TimmCifarModel(
        "resnet10t",
        cifar_resnet_stem,
        "timm resnet10t (ResNet-10-T: BasicBlocks [1,1,1,1], widths 64-512, avg-pool shortcuts) for "
        "32x32: its stride-2 deep stem and max-pool replaced by one 3x3 stride-1 conv; 4.90M params",
    ),
    "timm-mobilenetv3_large_100": TimmCifarModel(
        "mobilenetv3_large_100",
        mobilenet_stem(1),
        "timm mobilenetv3_large_100 (MobileNetV3-Large, Howard et al. 2019) for 32x32: stem conv and "
        "the first 24-channel stage at stride 1 instead of 2 (4x4 final map); 4.21M params",
    ),
    "timm-mobilenetv3_small_100": TimmCifarModel(
        "mobilenetv3_small_100",
        mobilenet_stem(0),
        "timm mobilenetv3_small_100 (MobileNetV3-Small, Howard et al. 2019) for 32x32: stem conv and "
        "the first 16-channel SE stage at stride 1 instead of 2 (4x4 final map); 1.53M params",
    ),
    "timm-efficientnet_b0": TimmCifarModel(
        "efficientnet_b0",
        mobilenet_stem(1),
        "timm efficientnet_b0 (EfficientNet-B0, Tan & Le 2019) for 32x32: stem conv and the first "
        "24-channel stage at stride 1 instead of 2, as common CIFAR ports do (4x4 final map); 4.02M params",
    ),
    "timm-regnety_004": TimmCifarModel(
        "regnety_004",
        regnet_stem,
        "timm regnety_004 (RegNetY-400MF, Radosavovic et al. 2020) for 32x32: stem conv and the first "
        "stage s1 at stride 1 instead of 2 (4x4 final map); 3.91M params",
    ),
}


@hookimpl
def cifarbudget_register_models(registry: Registry) -> None:
    """Register every model in :data:`MODELS`."""
    for name, factory in MODELS.items():
        registry.add(name, factory, description=factory.description)
