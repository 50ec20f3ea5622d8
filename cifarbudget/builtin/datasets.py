"""Builtin datasets: CIFAR-10/100 through torchvision, ImageFolder trees or zips, and synthetic data.

Only registrations; the factories are in :mod:`cifarbudget.data.sources`.
"""

from __future__ import annotations

from cifarbudget.hookspecs import hookimpl
from cifarbudget.registry import lazy


@hookimpl
def cifarbudget_register_datasets(registry) -> None:
    registry.add(
        "cifar10",
        lazy("cifarbudget.data.sources:cifar10"),
        description="CIFAR-10 (Krizhevsky 2009) via torchvision: 50k train / 10k test, 10 classes",
    )
    registry.add(
        "cifar100",
        lazy("cifarbudget.data.sources:cifar100"),
        description="CIFAR-100 via torchvision: 50k train / 10k test, 100 classes",
    )
    registry.add(
        "imagefolder",
        lazy("cifarbudget.data.sources:imagefolder"),
        description="train/<class>/* and test/<class>/* image folders under --data-dir, or .zip archives of them; "
        "decoded once and cached",
    )
    registry.add(
        "synthetic",
        lazy("cifarbudget.data.sources:synthetic"),
        description="offline synthetic 10-class 32x32 images, deterministic (6,000 train / 2,000 test, "
        "cifarbudget.data.sources.SYNTHETIC_TRAIN/TEST): for tests and demos",
    )
