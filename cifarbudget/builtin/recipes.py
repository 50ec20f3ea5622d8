"""Builtin recipes: the reference paper's two configurations, and a CPU speedrun."""

from __future__ import annotations

from typing import Any

from cifarbudget.hookspecs import hookimpl


def paper_initial() -> dict[str, Any]:
    return {
        "model": "resnetsmall",
        "augs": ["crop-flip"],
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "batch_size": 128,
        "sched": "multistep",
        "epochs": 100,
        "tta": "none",
    }


def paper_optimized() -> dict[str, Any]:
    return {
        **paper_initial(),
        "augs": ["crop-flip", "cutmix", "blur", "erasing"],
        "sched": "cosine",
        "epochs": 200,
        "tta": "flip",
    }


@hookimpl
def cifarbudget_register_recipes(registry) -> None:
    registry.add(
        "paper-initial",
        paper_initial,
        description="The reference paper's baseline: resnetsmall, crop-flip, SGD 0.1/0.9/5e-4, batch 128, "
        "MultiStepLR x0.1 at epochs 50 and 75, 100 epochs (93.99% reported on CIFAR-10)",
    )
    registry.add(
        "paper-optimized",
        paper_optimized,
        description="The paper's optimized recipe: crop-flip + CutMix + Gaussian blur + random erasing, cosine, "
        "200 epochs, flip TTA",
    )
