"""Augmentation policies: AutoAugment, RandAugment, TrivialAugmentWide batched on the device vs. per image.

Ours is what the engine runs with ``--aug crop-flip --aug <policy>``: uint8 batches of 512 from a
:class:`~cifarbudget.data.DeviceSplit` (shuffled, on the device) through
``Compose([crop-flip, policy], normalize=...)``, which applies the policy to the uint8 batch,
normalises, then crops and flips; plus the soft targets. The policy is built through the
augmentation registry with its defaults (AutoAugment's CIFAR-10 policy; RandAugment N=2, M=9 of
31 bins; TrivialAugmentWide with 31 bins). The baseline is the way CIFAR repositories use
torchvision's policies: per PIL image in a ``DataLoader`` with 2 worker processes (kept alive
between epochs), ``RandomCrop(32, padding=4, padding_mode='reflect')``, ``RandomHorizontalFlip``,
the torchvision policy with the same settings, ``ToTensor``, ``Normalize``; batches of 512.
Both read decoded images from memory: no JPEG decode per epoch on either side.

Real CIFAR-10 images from ``../shared/data`` (a fixed random subset of the training split);
skipped without them, except in quick mode, which uses the smaller test archive or, when the data
is absent, random images. Goal: ours >= 5x the baseline's images/s, for each policy.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from reference_loop import NUM_CLASSES, loader_epoch, median, random_split, run_defaults, sync
from torch.utils.data import DataLoader, Dataset

from cifarbudget.augment.pipeline import Compose, soft_targets
from cifarbudget.data.core import DeviceSplit, Split, normalization_stats
from cifarbudget.plugins import get_registry

GOAL = (5.0, None)  # issue 13: >= 5x the per-image DataLoader
BATCH = 512


def torchvision_policy(name: str) -> Any:
    """torchvision's per-image policy with the defaults our registered policy has."""
    from torchvision import transforms as T

    if name == "autoaugment":
        return T.AutoAugment(T.AutoAugmentPolicy.CIFAR10)
    if name == "randaugment":
        return T.RandAugment(num_ops=2, magnitude=9, num_magnitude_bins=31)
    return T.TrivialAugmentWide(num_magnitude_bins=31)


POLICIES = ["autoaugment", "randaugment", "trivialaugment"]


def load_images(shared_data: Path | None, quick: bool) -> tuple[Split, str]:
    if shared_data is None and not quick:
        pytest.skip("real CIFAR-10 not found in ../shared/data (set CIFARBUDGET_SHARED_DATA)")
    return _load_images(shared_data, quick)


@functools.cache  # decoded once for the three policies
def _load_images(shared_data: Path | None, quick: bool) -> tuple[Split, str]:
    n = 512 if quick else 10_240
    if shared_data is None:
        return random_split(n), "random uint8 images (no ../shared/data)"
    from cifarbudget.data.imagefolder import load_imagefolder

    split = load_imagefolder(shared_data, train=not quick)
    pick = torch.randperm(len(split), generator=torch.Generator().manual_seed(0))[:n]
    name = "train" if not quick else "test"
    return Split(
        split.images[pick], split.labels[pick], split.classes
    ), f"CIFAR-10 (JPEG q75 copy) {name} split"


class PILDataset(Dataset):
    def __init__(self, images: list[Image.Image], labels: list[int], transform: Any) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images[i]), self.labels[i]


def torchvision_loader(split: Split, mean: list[float], std: list[float], policy: str) -> DataLoader:
    from torchvision import transforms as T

    transform = T.Compose(
        [
            T.RandomCrop(32, padding=4, padding_mode="reflect"),
            T.RandomHorizontalFlip(),
            torchvision_policy(policy),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )
    pil = [Image.fromarray(a) for a in split.images.permute(0, 2, 3, 1).numpy()]
    dataset = PILDataset(pil, split.labels.tolist(), transform)
    return DataLoader(
        dataset, batch_size=BATCH, shuffle=True, drop_last=True, num_workers=2, persistent_workers=True
    )


@pytest.mark.parametrize("policy", POLICIES)
def test_bench_policy(
    paired: Any,
    record_ratio: Any,
    quick: bool,
    device: torch.device,
    shared_data: Path | None,
    policy: str,
) -> None:
    split, source = load_images(shared_data, quick)
    mean, std = normalization_stats(split.images)
    channels_last = run_defaults(device)[1]  # the batches come out as the engine gets them
    data = DeviceSplit.from_split(split, device, mean, std, channels_last)
    registry = get_registry("augmentations")
    aug = registry.create(policy)
    pipeline = Compose([registry.create("crop-flip"), aug], ["crop-flip", policy], normalize=data.normalize)

    def ours(stages: Compose = pipeline) -> float:
        sync(device)
        start, seen = time.perf_counter(), 0
        for idx in data.index_batches(BATCH, shuffle=True, drop_last=True):
            x, targets = stages(data.images[idx], soft_targets(data.labels[idx], NUM_CLASSES))
            seen += len(idx)
        sync(device)
        assert x.shape == (BATCH, 3, 32, 32) and x.dtype == torch.float32
        assert targets.shape == (BATCH, NUM_CLASSES)
        return seen / (time.perf_counter() - start)

    loader = torchvision_loader(split, mean, std, policy)

    def baseline() -> float:
        return loader_epoch(loader, device, BATCH, (BATCH,))

    ours_ips, base_ips = paired(ours, baseline, rounds=1 if quick else 5, warmup=1)
    ratios = [o / b for o, b in zip(ours_ips, base_ips, strict=True)]
    # where our time goes: the same batches without the policy (crop-flip, normalisation, targets)
    without_policy = round(ours(Compose([registry.create("crop-flip")], normalize=data.normalize)))
    record_ratio(
        f"policy {policy}",
        median(ratios),
        what=f"images/s, batched crop-flip + {policy} + normalise / torchvision per-image DataLoader "
        "(2 workers)",
        goal=GOAL,
        images=len(split),
        source=source,
        device=str(device),
        batch_size=BATCH,
        policy_params=aug.params(),
        ours_images_per_s=round(median(ours_ips)),
        baseline_images_per_s=round(median(base_ips)),
        round_ratios=[round(r, 2) for r in ratios],
        ours_without_policy_images_per_s=without_policy,
    )
