"""Input pipeline: the ``paper-optimized`` training input, batched on the device vs. a per-image DataLoader.

Ours is what the engine runs: :class:`~cifarbudget.data.DeviceSplit` batches (uint8 resident on
the device, shuffled and normalised per batch) through the recipe's augmentations, built as the
trainer builds them (crop-flip, CutMix, Gaussian blur, random erasing), plus the soft targets.
The baseline is the way most CIFAR repositories load data: torchvision transforms on PIL images,
one image at a time, in a ``DataLoader`` with 2 worker processes (kept alive between epochs), with
``RandomCrop(32, padding=4, padding_mode='reflect')``, ``RandomHorizontalFlip``, ``GaussianBlur``
(3x3, sigma 0.1-2, p=0.5), ``ToTensor``, ``Normalize``, ``RandomErasing`` (random fill, p=0.5)
and ``transforms.v2.CutMix`` on each batch in the collate function. Both read decoded images
from memory (PIL images for the baseline): no JPEG decode per epoch on either side.

Real CIFAR-10 images from ``../shared/data`` (a fixed random subset of the training split);
skipped without them, except in quick mode, which uses the smaller test archive or, when the
data is absent, random images. Goal: ours >= 10x the baseline's images/s.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from reference_loop import NUM_CLASSES, median, random_split, run_defaults, sync
from torch.utils.data import DataLoader, Dataset, default_collate

from cifarbudget.augment.pipeline import Compose, soft_targets
from cifarbudget.data.core import DeviceSplit, Split, normalization_stats
from cifarbudget.plugins import get_registry
from cifarbudget.runner import resolve_spec

GOAL = (10.0, None)  # issue 5: >= 10x the per-image DataLoader
BATCH = 128  # the recipes' batch size


def paper_optimized_pipeline() -> Compose:
    """The recipe's training augmentations, resolved and built exactly as ``cifarbudget run`` does."""
    spec = resolve_spec(recipe="paper-optimized")
    registry = get_registry("augmentations")
    return Compose([registry.create(name, **spec.aug_params.get(name, {})) for name in spec.augs])


def load_images(shared_data: Path | None, quick: bool) -> tuple[Split, str]:
    n = 512 if quick else 10_240
    if shared_data is None:
        if not quick:
            pytest.skip("real CIFAR-10 not found in ../shared/data (set CIFARBUDGET_SHARED_DATA)")
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


class CutMixCollate:
    def __init__(self) -> None:
        from torchvision.transforms import v2

        self.cutmix = v2.CutMix(num_classes=NUM_CLASSES)

    def __call__(self, batch: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cutmix(*default_collate(batch))


def torchvision_loader(split: Split, mean: list[float], std: list[float]) -> DataLoader:
    from torchvision import transforms as T

    transform = T.Compose(
        [
            T.RandomCrop(32, padding=4, padding_mode="reflect"),
            T.RandomHorizontalFlip(),
            T.RandomApply([T.GaussianBlur(3, sigma=(0.1, 2.0))], p=0.5),
            T.ToTensor(),
            T.Normalize(mean, std),
            T.RandomErasing(p=0.5, value="random"),
        ]
    )
    pil = [Image.fromarray(a) for a in split.images.permute(0, 2, 3, 1).numpy()]
    dataset = PILDataset(pil, split.labels.tolist(), transform)
    return DataLoader(
        dataset,
        batch_size=BATCH,
        shuffle=True,
        drop_last=True,
        num_workers=2,
        persistent_workers=True,
        collate_fn=CutMixCollate(),
    )


def test_bench_input_pipeline(
    paired: Any, record_ratio: Any, quick: bool, device: torch.device, shared_data: Path | None
) -> None:
    split, source = load_images(shared_data, quick)
    mean, std = normalization_stats(split.images)
    channels_last = run_defaults(device)[1]  # the batches come out as the engine gets them
    data = DeviceSplit.from_split(split, device, mean, std, channels_last)
    pipeline = paper_optimized_pipeline()
    assert [type(a).__name__ for a in pipeline] == ["CropFlip", "CutMix", "Blur", "RandomErasing"]

    def ours(stages: Compose = pipeline) -> float:
        sync(device)
        start, seen = time.perf_counter(), 0
        for x, y in data.batches(BATCH, shuffle=True, drop_last=True):
            x, targets = stages(x, soft_targets(y, NUM_CLASSES))
            seen += len(y)
        sync(device)
        assert x.shape == (BATCH, 3, 32, 32) and targets.shape == (BATCH, NUM_CLASSES)
        return seen / (time.perf_counter() - start)

    loader = torchvision_loader(split, mean, std)

    def baseline() -> float:
        start, seen = time.perf_counter(), 0
        for x, y in loader:
            if device.type != "cpu":
                x, y = x.to(device), y.to(device)
            seen += len(x)
        sync(device)
        assert x.shape == (BATCH, 3, 32, 32) and y.shape == (BATCH, NUM_CLASSES)
        return seen / (time.perf_counter() - start)

    ours_ips, base_ips = paired(ours, baseline, rounds=1 if quick else 5, warmup=1)
    ratios = [o / b for o, b in zip(ours_ips, base_ips, strict=True)]
    # where our time goes: each stage alone on the same batches (normalisation and soft targets in all)
    stages = {"batches only": Compose([])} | {
        n: Compose([a]) for n, a in zip(pipeline.names, pipeline, strict=True)
    }
    per_stage = {name: round(ours(stage)) for name, stage in stages.items()}
    record_ratio(
        "input pipeline",
        median(ratios),
        what="images/s, batched paper-optimized pipeline / torchvision per-image DataLoader (2 workers)",
        goal=GOAL,
        images=len(split),
        source=source,
        device=str(device),
        channels_last=channels_last,
        batch_size=BATCH,
        ours_images_per_s=round(median(ours_ips)),
        baseline_images_per_s=round(median(base_ips)),
        round_ratios=[round(r, 2) for r in ratios],
        ours_stage_alone_images_per_s=per_stage,
    )
