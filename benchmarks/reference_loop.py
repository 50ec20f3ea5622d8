"""The engine against a minimal hand-written PyTorch loop, epoch for epoch on the same data.

Used by ``test_bench_engine.py``. Both sides train the same
architecture from the same initial weights, with the same batch size, device, optimiser (SGD with
the run's default momentum, Nesterov flag and weight decay), loss, autocast and memory format, on
the same :class:`~cifarbudget.data.DeviceSplit` batches (uint8 on the device, normalised per
batch) through the same augmentation pipeline (or none). What differs is only what the engine adds
per step: soft targets, the scheduler step, on-device metric accumulation, the periodic
divergence check and the progress bar hook. Each round builds a fresh engine (a fresh optimiser,
as the hand-written side gets) and times one epoch of it; the engine times its own epochs (device
synchronised), and the hand-written loop is timed the same way.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from cifarbudget.api import create_model
from cifarbudget.augment.pipeline import compose, soft_targets
from cifarbudget.data.core import DeviceSplit, Split
from cifarbudget.device import DeviceSettings
from cifarbudget.engine import Engine, TrainPlan, laid_out_for, steps_per_epoch
from cifarbudget.plugins import get_registry

# Any fixed statistics do: the data is random, only the arithmetic matters.
MEAN, STD = [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]
NUM_CLASSES = 10


def run_defaults(device: torch.device) -> tuple[bool, bool]:
    """(bf16 autocast, channels_last) as ``cifarbudget run`` picks them (``cifarbudget.device.resolve``)."""
    from cifarbudget.device import resolve

    settings = resolve(device)
    return settings.amp, settings.channels_last


def sgd(model: torch.nn.Module) -> torch.optim.Optimizer:
    """The run's default optimiser: SGD lr 0.1, momentum 0.9, weight decay 5e-4."""
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)


def build_engine(
    model: torch.nn.Module,
    data: DeviceSplit,
    pipeline: Any,
    settings: DeviceSettings,
    workdir: Path,
    *,
    epochs: int,
    batch_size: int,
) -> Engine:
    """An engine as ``cifarbudget run`` builds one (SGD, constant schedule, soft targets), no validation."""
    model = model.to(settings.device, memory_format=settings.memory_format)
    optimizer = sgd(model)
    scheduler = get_registry("schedulers").create(
        "constant", optimizer, epochs=epochs, steps_per_epoch=steps_per_epoch(len(data), batch_size)
    )
    return Engine(
        TrainPlan("bench", epochs, batch_size),
        model,
        optimizer,
        scheduler,
        train=data,
        val=None,
        pipeline=pipeline,
        targets=lambda y: soft_targets(y, NUM_CLASSES),
        settings=settings,
        checkpoint=workdir / "checkpoint.pt",
        progress=False,
    )


def random_split(n: int, seed: int = 0) -> Split:
    """``n`` random uint8 32x32 images with labels (the same for a given seed)."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, NUM_CLASSES, (n,), generator=gen)
    return Split(images, labels, [str(i) for i in range(NUM_CLASSES)], source="random")


def loader_epoch(loader: Any, device: torch.device, batch_size: int, target_shape: tuple[int, ...]) -> float:
    """One epoch of a per-image ``DataLoader`` baseline, moved to the device as a training loop
    would; checks the last batch's shapes (``target_shape``: int labels ``(B,)`` or soft ``(B, K)``).
    Returns images/s."""
    start, seen = time.perf_counter(), 0
    for x, y in loader:
        if device.type != "cpu":
            x, y = x.to(device), y.to(device)
        seen += len(x)
    sync(device)
    assert x.shape == (batch_size, 3, 32, 32) and tuple(y.shape) == target_shape
    return seen / (time.perf_counter() - start)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class EngineVsHandwritten:
    """Two callables, ``engine_epoch()`` and ``handwritten_epoch()``, each returning training images/s."""

    def __init__(
        self,
        model: str,
        *,
        batch_size: int,
        steps: int,
        device: torch.device,
        workdir: Path,
        augs: Sequence[str] = (),
        amp: bool = False,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        self.device, self.batch_size, self.amp = device, batch_size, amp
        self.settings = DeviceSettings(device=device, amp=amp, channels_last=channels_last, compile=compile)
        data = DeviceSplit.from_split(random_split(steps * batch_size), device, MEAN, STD, channels_last)
        self.pipeline = compose(augs, normalize=data.normalize)
        self.data = laid_out_for(data, self.pipeline)  # the uint8 layout the engine keeps it in
        memory_format = torch.channels_last if channels_last else torch.preserve_format
        torch.manual_seed(0)
        self.engine_model = create_model(model, num_classes=NUM_CLASSES)
        torch.manual_seed(0)
        self.hand_model = create_model(model, num_classes=NUM_CLASSES).to(device, memory_format=memory_format)
        self.hand_forward: Callable[[torch.Tensor], torch.Tensor] = self.hand_model
        if compile:
            self.hand_forward = torch.compile(self.hand_model)  # type: ignore[assignment]
        self.workdir = workdir
        self._engine_forward: Any = None

    def engine_epoch(self) -> float:
        """One epoch of a fresh :class:`Engine` (the same model object every round)."""
        engine = build_engine(
            self.engine_model,
            self.data,
            self.pipeline,
            self.settings,
            self.workdir,
            epochs=1,
            batch_size=self.batch_size,
        )
        if self._engine_forward is not None:  # keep one compiled module: compile once, not per round
            engine.forward = self._engine_forward
        self._engine_forward = engine.forward
        state = engine.fit()
        return float(state.history[-1]["images_per_s"])

    def handwritten_epoch(self) -> float:
        """The loop most CIFAR repositories have, on the same batches."""
        model, device = self.hand_model, self.device
        optimizer = sgd(model)
        autocast = (
            torch.autocast(device_type=device.type, dtype=torch.bfloat16) if self.amp else nullcontext()
        )
        model.train()
        seen = 0
        sync(device)
        start = time.perf_counter()
        for idx in self.data.index_batches(self.batch_size, shuffle=True, drop_last=True):
            raw, y = self.data.take(idx), self.data.labels[idx]
            if len(self.pipeline):
                x, target = self.pipeline(raw, soft_targets(y, NUM_CLASSES))
            else:
                x, target = self.data.normalize(raw), y
            with autocast:
                logits = self.hand_forward(x)
            loss = F.cross_entropy(logits.float(), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(y)
        sync(device)
        return seen / (time.perf_counter() - start)


def alternate(
    first: Callable[[], float], second: Callable[[], float], *, rounds: int, warmup: int = 1
) -> tuple[list[float], list[float]]:
    """Call ``first`` and ``second`` in turns (order swapped every round); drop the warm-up rounds."""
    a: list[float] = []
    b: list[float] = []
    for i in range(warmup + rounds):
        if i % 2:
            b.append(second())
            a.append(first())
        else:
            a.append(first())
            b.append(second())
    return a[warmup:], b[warmup:]


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))
