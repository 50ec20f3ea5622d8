"""Model throughput on the current device: training and inference images/s, step time, peak memory.

Synthetic inputs are made on the device once, so only the model's own work is timed: a training
step is forward + backward + an SGD step (the run's default optimiser settings), an inference step
is a forward pass in eval mode under ``torch.inference_mode``. ``warmup`` steps run first and are
not timed (cuDNN autotuning, ``torch.compile``, allocator growth); the loop of ``steps`` timed
steps is bracketed by device synchronisation, and the step time is its mean, as in timm's
``benchmark.py``, so steps overlap on a GPU as they do in training. The budget is not enforced:
the parameter count and MACs are reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from cifarbudget.device import synchronize
from cifarbudget.errors import RunError

# Per device type: (batch size, warm-up steps, timed steps). CUDA follows timm's benchmark.py
# (batch 256, 10 warm-up and 40 timed iterations); the CPU defaults keep two models near a minute
# on 2 cores (docs/performance.md has the measured times).
DEFAULTS: dict[str, tuple[int, int, int]] = {"cuda": (256, 10, 40), "mps": (256, 10, 40), "cpu": (64, 2, 5)}
MIB = 2**20


@dataclass
class BenchResult:
    """One model's measured throughput on one device (the ``--json`` record of ``cifarbudget bench``)."""

    model: str
    device: str
    device_name: str
    batch_size: int
    amp: bool
    channels_last: bool
    compile: bool
    warmup: int
    steps: int
    params: int
    macs: int
    within_budget: bool
    train_images_per_s: float
    eval_images_per_s: float
    train_step_ms: float
    eval_step_ms: float
    peak_memory_mb: float | None  # MiB; None where it cannot be measured (see memory_note)
    memory_note: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def defaults(device: torch.device) -> tuple[int, int, int]:
    """(batch size, warm-up steps, timed steps) used when not given, for ``device``'s type."""
    return DEFAULTS.get(device.type, DEFAULTS["cpu"])


class _Memory:
    """Peak memory of what runs between ``start()`` and ``peak_mib()``.

    CUDA: ``torch.cuda.max_memory_allocated`` (tensors only) after a reset. CPU: the growth of the
    process's resident set, sampled with psutil after every step, a lower bound of the true peak
    (activations are freed before the sample); without psutil it is not measured.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.process: Any = None
        self.base = self.high = 0
        if device.type == "cuda":
            self.note = "torch.cuda.max_memory_allocated: tensors allocated by torch on the GPU"
        elif device.type == "cpu":
            try:
                import psutil
            except ImportError:
                self.note = (
                    "not measured on the CPU: psutil is not installed (pip install 'cifarbudget[bench]')"
                )
            else:
                self.process = psutil.Process()
                self.note = "resident-set growth sampled after every step (psutil): a lower bound"
        else:
            self.note = f"not measured on {device.type}"

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        elif self.process is not None:
            self.base = self.high = self.process.memory_info().rss

    def sample(self) -> None:
        if self.process is not None:
            self.high = max(self.high, self.process.memory_info().rss)

    def peak_mib(self) -> float | None:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / MIB
        if self.process is not None:
            return (self.high - self.base) / MIB
        return None


def _timed(step: Callable[[], None], warmup: int, steps: int, device: torch.device, memory: _Memory) -> float:
    """Seconds for ``steps`` calls of ``step`` after ``warmup`` untimed ones, synchronised around them."""
    for _ in range(warmup):
        step()
        memory.sample()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
        memory.sample()  # psutil on the CPU only (a /proc read); nothing on a GPU
    synchronize(device)
    return time.perf_counter() - start


def bench_model(
    name: str,
    *,
    device: str | torch.device | None = None,
    batch_size: int | None = None,
    amp: bool | None = None,
    channels_last: bool | None = None,
    compile: bool = False,
    warmup: int | None = None,
    steps: int | None = None,
    num_classes: int = 10,
) -> BenchResult:
    """Measure training and inference throughput of the registered model ``name``.

    ``None`` picks what ``cifarbudget run`` picks: the best available device, bf16 autocast on CUDA,
    channels_last on CUDA and the CPU; and :data:`DEFAULTS` for batch size and steps.
    """
    from cifarbudget.api import create_model
    from cifarbudget.budget import check_budget
    from cifarbudget.device import autocast, configure_backends, device_name, resolve

    settings = resolve(
        device,
        amp=amp,
        channels_last=channels_last,
        compile=compile,
    )
    dev = settings.device
    d_batch, d_warmup, d_steps = defaults(dev)
    batch_size = d_batch if batch_size is None else batch_size
    warmup = d_warmup if warmup is None else warmup
    steps = d_steps if steps is None else steps
    if batch_size < 1 or warmup < 0 or steps < 1 or num_classes < 1:
        raise RunError(
            f"bench: need --batch-size >= 1, --warmup-steps >= 0, --steps >= 1 and --num-classes >= 1, "
            f"got {batch_size}, {warmup}, {steps}, {num_classes}"
        )
    configure_backends(settings)  # the settings a run uses on this device

    model = create_model(name, num_classes=num_classes)
    report = check_budget(model, num_classes=num_classes, name=name)  # counts on the CPU, before moving
    memory_format = settings.memory_format
    memory = _Memory(dev)
    memory.start()
    model = model.to(dev, memory_format=memory_format)  # type: ignore[call-overload]  # torch's stubs omit Module.to(device, memory_format=...)
    forward: Callable[[torch.Tensor], torch.Tensor] = model
    if compile:
        forward = torch.compile(model)
    x = torch.randn(batch_size, 3, 32, 32, device=dev).contiguous(memory_format=memory_format)
    y = torch.randint(0, num_classes, (batch_size,), device=dev)
    # the run's default optimiser (SGD 0.1, momentum 0.9, weight decay 5e-4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)

    def train_step() -> None:
        with autocast(settings):
            logits = forward(x)
        loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def eval_step() -> None:
        with torch.inference_mode(), autocast(settings):
            forward(x)

    model.train()
    train_s = _timed(train_step, warmup, steps, dev, memory)
    model.eval()
    eval_s = _timed(eval_step, warmup, steps, dev, memory)
    peak = memory.peak_mib()
    return BenchResult(
        model=name,
        device=str(dev),
        device_name=device_name(dev),
        batch_size=batch_size,
        amp=settings.amp,
        channels_last=settings.channels_last,
        compile=compile,
        warmup=warmup,
        steps=steps,
        params=report.params,
        macs=report.macs,
        within_budget=report.within_budget,
        train_images_per_s=steps * batch_size / train_s,
        eval_images_per_s=steps * batch_size / eval_s,
        train_step_ms=1000 * train_s / steps,
        eval_step_ms=1000 * eval_s / steps,
        peak_memory_mb=None if peak is None else round(peak, 1),
        memory_note=memory.note,
    )
