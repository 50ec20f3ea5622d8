"""Builtin augmentations: crop-flip, CutMix, mixup, Gaussian blur, random erasing, Cutout, AutoAugment
and its kin, the alternating flip, progressive resizing.

Only registrations; the implementations are in :mod:`cifarbudget.augment.batch` (imported when an
augmentation is first built) and the pipeline machinery in :mod:`cifarbudget.augment.pipeline`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cifarbudget.hookspecs import hookimpl
from cifarbudget.registry import LazyFactory, lazy

if TYPE_CHECKING:
    from cifarbudget.registry import PluginRegistryView

# name -> (factory, description)
AUGMENTATIONS: dict[str, tuple[LazyFactory, str]] = {
    "crop-flip": (
        lazy("cifarbudget.augment.batch:CropFlip"),
        "Pad 4 + random 32x32 crop + random horizontal flip, per image (He et al. 2016, sec. 4.2); params "
        "padding=4, padding_mode='reflect'|'replicate'|'black' (0 before normalising: torchvision's "
        "RandomCrop fill)|'zeros' (0 after: the mean colour), flip=True",
    ),
    "vflip": (
        lazy("cifarbudget.augment.batch:VerticalFlip"),
        "Random vertical flip per image with probability p, as torchvision's RandomVerticalFlip "
        "(the reference paper's optimized recipe uses p=0.05); params p=0.5",
    ),
    "cutmix": (
        lazy("cifarbudget.augment.batch:CutMix"),
        "CutMix (Yun et al. 2019, arXiv:1905.04899): paste a Beta(1,1)-sized box from a batch partner, "
        "targets mixed by the exact pasted area; params alpha=1.0, p=0.5, mode='image' (each image with p) | "
        "'batch' (the whole batch with p: one box, as the official code)",
    ),
    "mixup": (
        lazy("cifarbudget.augment.batch:Mixup"),
        "mixup (Zhang et al. 2018, arXiv:1710.09412): per-image convex blend of images and targets "
        "with a batch partner, lam ~ Beta(alpha, alpha); params alpha=1.0, p=1.0",
    ),
    "blur": (
        lazy("cifarbudget.augment.batch:Blur"),
        "Gaussian blur, per-image sigma ~ U(0.1, 2.0), 3x3 kernel, with probability p=0.5 (as torchvision "
        "GaussianBlur); params sigma, p, kernel_size (None: sized from the largest sigma, PIL-like)",
    ),
    "erasing": (
        lazy("cifarbudget.augment.batch:RandomErasing"),
        "Random erasing (Zhong et al. 2020, arXiv:1708.04896): one box of area 2-33% and aspect "
        "0.3-3.3 filled with normal noise, with p=0.5; params p, area, aspect, mode='pixel'|'rand'|'const'",
    ),
    "cutout": (
        lazy("cifarbudget.augment.batch:Cutout"),
        "Cutout (DeVries & Taylor 2017, arXiv:1708.04552): zero one 16x16 square (clipped at the "
        "borders) per image; params size=16, p=1.0",
    ),
    "autoaugment": (
        lazy("cifarbudget.augment.policies:AutoAugment"),
        "AutoAugment (Cubuk et al. 2019, arXiv:1805.09501): one of 25 learned sub-policies per image "
        "(two ops, each with its probability and magnitude), as torchvision's AutoAugment, on the uint8 "
        "batch; params policy='cifar10'|'svhn'|'imagenet', fill=None, interpolation='nearest'",
    ),
    "randaugment": (
        lazy("cifarbudget.augment.policies:RandAugment"),
        "RandAugment (Cubuk et al. 2020, arXiv:1909.13719): num_ops ops drawn uniformly from 14 per "
        "image, at magnitude bin M, as torchvision's RandAugment, on the uint8 batch; params num_ops=2, "
        "magnitude=9, num_magnitude_bins=31, fill=None, interpolation='nearest'",
    ),
    "trivialaugment": (
        lazy("cifarbudget.augment.policies:TrivialAugmentWide"),
        "TrivialAugment Wide (Müller & Hutter 2021, arXiv:2103.10158): one op from 14 at a uniformly "
        "drawn magnitude per image, as torchvision's TrivialAugmentWide, on the uint8 batch; params "
        "num_magnitude_bins=31, fill=None, interpolation='nearest'",
    ),
    "flip-alternating": (
        lazy("cifarbudget.augment.alternating:AlternatingFlip"),
        "Alternating flip (Jordan 2024, arXiv:2404.00498): epoch 0 mirrors a fixed random half of the "
        "images, each later epoch mirrors exactly those not mirrored the epoch before; a pure flip: use "
        "with --aug-param crop-flip.flip=false; params seed=None (drawn from the run's seed)",
    ),
    "progressive-resize": (
        lazy("cifarbudget.augment.resize:ProgressiveResize"),
        "Progressive resizing (Hoffer et al. 2019, arXiv:1908.08986): the first `epochs` epochs train on "
        "images downscaled to size x size (bilinear, antialiased), the rest at full resolution; put it last; "
        "training compute is counted at each epoch's size; params size=24, epochs=5",
    ),
}


@hookimpl
def cifarbudget_register_augmentations(registry: PluginRegistryView) -> None:
    for name, (factory, description) in AUGMENTATIONS.items():
        registry.add(name, factory, description=description)
