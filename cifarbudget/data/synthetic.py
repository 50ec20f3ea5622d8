"""A synthetic 10-class image dataset, generated offline and deterministic from a seed.

Each class has a 40x40 prototype (coloured Gaussian blobs plus an oriented grating). An image is
a random 32x32 window of its class prototype with random brightness and contrast, a distractor
blob and heavy pixel noise: a small CNN learns it well within a few epochs, but not in one step,
and a linear model on pixels does clearly worse. Used by unit tests and quick demos.
"""

from __future__ import annotations

import math

import torch

from cifarbudget.data.core import Split

CLASSES = [f"class{i}" for i in range(10)]
SIZE = 32
PAD = 4


def _prototypes(gen: torch.Generator, n_classes: int) -> torch.Tensor:
    side = SIZE + 2 * PAD
    yy, xx = torch.meshgrid(torch.arange(side).float(), torch.arange(side).float(), indexing="ij")
    protos = torch.zeros(n_classes, 3, side, side)
    for c in range(n_classes):
        for _ in range(3):  # coloured blobs
            cy, cx = (torch.rand(2, generator=gen) * side).tolist()
            radius = 4 + 6 * torch.rand(1, generator=gen).item()
            colour = torch.rand(3, 1, 1, generator=gen) * 2 - 1
            protos[c] += colour * torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))
        angle = math.pi * c / n_classes  # one grating orientation per class
        freq = 0.35 + 0.15 * (c % 3)
        grating = torch.sin(freq * (xx * math.cos(angle) + yy * math.sin(angle)))
        protos[c] += 0.6 * grating * (torch.rand(3, 1, 1, generator=gen) * 2 - 1)
    return protos


def make_synthetic(
    n: int, *, seed: int = 0, split_seed: int = 1, n_classes: int = 10, noise: float = 0.55
) -> Split:
    """``n`` images, balanced classes; ``seed`` fixes the prototypes, ``split_seed`` the samples."""
    protos = _prototypes(torch.Generator().manual_seed(seed), n_classes)
    gen = torch.Generator().manual_seed(seed * 7919 + split_seed)
    labels = torch.arange(n) % n_classes
    labels = labels[torch.randperm(n, generator=gen)]
    oy = torch.randint(0, 2 * PAD + 1, (n,), generator=gen)
    ox = torch.randint(0, 2 * PAD + 1, (n,), generator=gen)
    rows = (oy[:, None] + torch.arange(SIZE))[:, None, :, None]
    cols = (ox[:, None] + torch.arange(SIZE))[:, None, None, :]
    chan = torch.arange(3)[None, :, None, None]
    x = protos[labels[:, None, None, None], chan, rows, cols]
    contrast = 0.6 + 0.8 * torch.rand(n, 1, 1, 1, generator=gen)
    brightness = 0.4 * torch.rand(n, 1, 1, 1, generator=gen) - 0.2
    x = x * contrast + brightness
    # a distractor blob at a random place with a random colour
    yy, xx = torch.meshgrid(torch.arange(SIZE).float(), torch.arange(SIZE).float(), indexing="ij")
    cy, cx = (torch.rand(2, n, 1, 1, generator=gen) * SIZE).unbind(0)
    blob = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 5.0**2))[:, None]
    x = x + blob * (torch.rand(n, 3, 1, 1, generator=gen) * 2 - 1)
    x = x + noise * torch.randn(x.shape, generator=gen)
    images = ((x * 0.25 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
    return Split(images, labels, [f"class{i}" for i in range(n_classes)], source=f"synthetic:seed={seed}")
