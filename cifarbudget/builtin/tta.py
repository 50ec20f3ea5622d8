"""Builtin test-time augmentation policies: none, flip, flip-shift (implemented in :mod:`cifarbudget.tta`)."""

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
}


@hookimpl
def cifarbudget_register_tta_policies(registry: PluginRegistryView) -> None:
    for name, (factory, description) in TTA_POLICIES.items():
        registry.add(name, factory, description=description)
