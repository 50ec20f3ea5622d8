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


def speedrun_cpu() -> dict[str, Any]:
    """CIFAR-10 on two CPU cores in under ten minutes, in the spirit of airbench and DAWNBench ResNet-9.

    A small airbench-style net (airnet-small: 0.29M parameters, 21.6M MACs) that trains at about
    800 images/s on 2 cores with channels_last; large batches, Nesterov SGD with a one-cycle
    schedule, label smoothing 0.2, weight EMA and flip TTA; all 50,000 training images (no
    validation split: a fixed recipe selects nothing), 9 epochs.
    """
    return {
        "model": "airnet-small",
        "dataset": "imagefolder",
        "augs": ["crop-flip"],
        "aug_params": {"crop-flip": {"padding": 2}},  # airbench's 2-pixel translation: short runs
        "optimizer": "sgd",
        "lr": 0.4,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 5e-4,
        "label_smoothing": 0.2,
        "batch_size": 512,
        "sched": "onecycle",
        "epochs": 9,
        "ema": 0.99,
        "tta": "flip",
        "val_size": 0,
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
    registry.add(
        "speedrun-cpu",
        speedrun_cpu,
        description="CIFAR-10 in under 10 minutes on 2 CPU cores: airnet-small, batch 512, Nesterov SGD, "
        "one-cycle, label smoothing 0.2, EMA, flip TTA, 9 epochs on all 50k images (imagefolder)",
    )
