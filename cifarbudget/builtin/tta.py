"""Builtin test-time augmentation policies: none, flip, flip-shift, multicrop, multicrop18, selective, paper5.

Implemented in :mod:`cifarbudget.tta`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cifarbudget.hookspecs import hookimpl
from cifarbudget.registry import LazyFactory, lazy

if TYPE_CHECKING:
    from cifarbudget.registry import PluginRegistryView

# name -> (factory, description)
TTA_POLICIES: dict[str, tuple[LazyFactory, str]] = {
    "none": (lazy("cifarbudget.tta:NoTTA"), "No test-time augmentation: 1 view"),
    "flip": (
        lazy("cifarbudget.tta:FlipTTA"),
        "Mean logits over the image and its horizontal mirror: 2 views (as in airbench, Jordan 2024); "
        "the default of a bare --tta",
    ),
    "flip-shift": (
        lazy("cifarbudget.tta:FlipShiftTTA"),
        "Mean logits over {image, mirror} x {no shift, +-2 px horizontally, +-2 px vertically} with "
        "reflect padding: 10 views (multi-crop testing, cf. Krizhevsky et al. 2012); params shift=2",
    ),
    "multicrop": (
        lazy("cifarbudget.tta:MultiCropTTA"),
        "airbench's multi-crop TTA (Jordan 2024, arXiv:2404.00498): {image, mirror} x {no shift, 1 px "
        "down-right, 1 px up-left} (reflect), logits weighted 1/4 untranslated, 1/8 translated: 6 views; "
        "params shift=1, weight=0.5 (total weight of the translated views)",
    ),
    "multicrop18": (
        lazy("cifarbudget.tta:MultiCrop18TTA"),
        "multicrop with all eight 1-px translations: {image, mirror} x {no shift, the 8 neighbours} "
        "(reflect), logits weighted 1/4 untranslated, 1/32 translated: 18 views; params shift=1, weight=0.5",
    ),
    "selective": (
        lazy("cifarbudget.tta:SelectiveTTA"),
        "Selective TTA (hiverge cifar10-speedrun): image + mirror for all, the 4 multicrop translations "
        "only for the 20% least-confident images of each batch: 2 + 4 x 0.2 = 2.8 views per image "
        "expected, views run counted; params fraction=0.2, score='max-prob'|'margin', shift=1, weight=0.5",
    ),
    "paper5": (
        lazy("cifarbudget.tta:Paper5TTA"),
        "The reference paper's 5-view TTA (ResNet-MiniProject notebook): mean logits of image, "
        "horizontal flip, pad-4 + centre crop (= image), scipy Gaussian blur sigma 1 (colour axis too, "
        "uint8), vertical flip: 5 views; params sigma=1.0, channel_blur, quantize, mean, std",
    ),
}


@hookimpl
def cifarbudget_register_tta_policies(registry: PluginRegistryView) -> None:
    for name, (factory, description) in TTA_POLICIES.items():
        registry.add(name, factory, description=description)
