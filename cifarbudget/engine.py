"""The training loop: optimiser, schedule, AMP, channels_last, compile, EMA, checkpoints, resume.

The engine trains one model on data already resident on the training device (see
:class:`cifarbudget.data.DeviceSplit`). After every epoch it writes a checkpoint atomically with
everything needed to continue bit-for-bit: model, optimiser, scheduler, EMA, torch RNG states,
epoch and history. A resumed run therefore ends exactly where an uninterrupted one ends.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cifarbudget.data.core import DeviceSplit
from cifarbudget.errors import RunError
from cifarbudget.io import atomic_torch_save
from cifarbudget.spec import RunSpec

CHECKPOINT = "checkpoint.pt"
DIVERGENCE_CHECK_EVERY = 25  # steps between host syncs that look for a non-finite loss


@dataclass
class EngineOptions:
    """How to run (not what to train): device and speed settings, none of them part of the run id."""

    device: torch.device
    amp: bool = False  # bf16 autocast
    channels_last: bool = False
    compile: bool = False
    progress: bool = True


@dataclass
class TrainState:
    """What the engine returns and what a checkpoint restores."""

    epoch: int = 0  # epochs completed
    history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    status: str = "running"  # running | finished | diverged


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against soft targets (one-hot, smoothed or mixed), averaged over the batch."""
    return -(targets * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()


def autocast(options: EngineOptions) -> AbstractContextManager[Any]:
    if options.amp:
        return torch.autocast(device_type=options.device.type, dtype=torch.bfloat16)
    return nullcontext()


def build_optimizer(spec: RunSpec, model: nn.Module) -> torch.optim.Optimizer:
    if spec.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    return torch.optim.SGD(
        model.parameters(),
        lr=spec.lr,
        momentum=spec.momentum,
        nesterov=spec.nesterov,
        weight_decay=spec.weight_decay,
    )


@torch.no_grad()
def evaluate(
    model: nn.Module,
    split: DeviceSplit,
    options: EngineOptions,
    *,
    tta: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
    batch_size: int = 1000,
) -> dict[str, Any]:
    """Loss, accuracy and predictions of ``model`` on ``split`` (optionally through a TTA policy)."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=options.device)
    preds = []
    for x, y in split.batches(batch_size, shuffle=False, drop_last=False):
        with autocast(options):
            logits = tta(model, x) if tta is not None else model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        preds.append(logits.argmax(dim=1))
    model.train(was_training)
    predictions = torch.cat(preds)
    correct = (predictions == split.labels).sum()
    n = len(split)
    return {"loss": loss_sum.item() / n, "acc": correct.item() / n, "predictions": predictions.cpu()}


class Engine:
    """Trains ``model`` for ``spec.epochs`` epochs on ``train``, validating on ``val`` after each."""

    def __init__(
        self,
        spec: RunSpec,
        model: nn.Module,
        train: DeviceSplit,
        val: DeviceSplit | None,
        pipeline: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
        soft_targets: Callable[[torch.Tensor], torch.Tensor],
        scheduler_factory: Callable[..., Any],
        options: EngineOptions,
        run_dir: Path,
    ) -> None:
        self.spec, self.train_split, self.val_split = spec, train, val
        self.pipeline, self.soft_targets, self.options, self.run_dir = (
            pipeline,
            soft_targets,
            options,
            run_dir,
        )
        memory_format = torch.channels_last if options.channels_last else torch.preserve_format
        self.model = model.to(options.device, memory_format=memory_format)
        self.drop_last = len(train) >= spec.batch_size
        self.steps_per_epoch = train.steps(spec.batch_size, self.drop_last)
        self.optimizer = build_optimizer(spec, self.model)
        # warmup_epochs is optional in the contract: only asked of schedulers when a warmup is wanted
        warmup = {"warmup_epochs": spec.warmup_epochs} if spec.warmup_epochs else {}
        try:
            self.scheduler = scheduler_factory(
                self.optimizer, epochs=spec.epochs, steps_per_epoch=self.steps_per_epoch, **warmup
            )
        except TypeError as exc:
            if warmup and "warmup_epochs" in str(exc):
                raise RunError(f"scheduler {spec.sched!r} does not support a warmup; drop --warmup") from None
            raise
        self.ema = None
        if spec.ema > 0:
            from timm.utils import ModelEmaV3

            # timm's warmup (decay ramps up as 1 - (1 + step)^(-2/3), capped at spec.ema) keeps the
            # random initial weights from dominating the average in short runs.
            self.ema = ModelEmaV3(self.model, decay=spec.ema, use_warmup=True, device=options.device)
        self.forward: Callable[[torch.Tensor], torch.Tensor] = self.model
        if options.compile:
            self.forward = torch.compile(self.model)  # type: ignore[assignment]
        self.state = TrainState()

    @property
    def eval_model(self) -> nn.Module:
        """The model to evaluate: the EMA copy when EMA is on."""
        return self.ema.module if self.ema is not None else self.model

    # -- checkpoints --------------------------------------------------------------------------
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT

    def save_checkpoint(self) -> None:
        rng = {"cpu": torch.get_rng_state()}
        if self.options.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.options.device)
        atomic_torch_save(
            self.checkpoint_path(),
            {
                "format": 1,
                "run_id": self.spec.run_id,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "rng": rng,
                "epoch": self.state.epoch,
                "history": self.state.history,
                "train_seconds": self.state.train_seconds,
                "status": self.state.status,
            },
        )

    def load_checkpoint(self, path: Path) -> None:
        """Restore everything saved by :meth:`save_checkpoint` (tensors only: ``weights_only=True``)."""
        ckpt = torch.load(path, map_location=self.options.device, weights_only=True)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.ema is not None and ckpt.get("ema") is not None:
            self.ema.load_state_dict(ckpt["ema"])
        torch.set_rng_state(ckpt["rng"]["cpu"].cpu())
        if "cuda" in ckpt["rng"] and self.options.device.type == "cuda":
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"].cpu(), self.options.device)
        self.state = TrainState(
            ckpt["epoch"], list(ckpt["history"]), float(ckpt["train_seconds"]), ckpt["status"]
        )

    # -- training -----------------------------------------------------------------------------
    def _finite(self, metrics: dict[str, Any]) -> bool:
        """Whether the epoch's losses and every weight of the model (and its EMA) are finite."""
        if not all(math.isfinite(metrics[k]) for k in ("train_loss", "val_loss") if k in metrics):
            return False
        with torch.no_grad():
            tensors = [t for t in self.eval_model.state_dict().values() if t.is_floating_point()]
            tensors += [p for p in self.model.parameters()]
            return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())

    def fit(self, on_epoch: Callable[[TrainState], None] | None = None) -> TrainState:
        """Train the remaining epochs; call ``on_epoch`` after each epoch's checkpoint is written."""
        spec = self.spec
        total_steps = spec.epochs * self.steps_per_epoch
        bar = _progress(
            total_steps, self.state.epoch * self.steps_per_epoch, self.options.progress, spec.run_id
        )
        try:
            while self.state.epoch < spec.epochs and self.state.status == "running":
                metrics = self._train_epoch(bar)
                self.state.epoch += 1
                if metrics is not None and self.val_split is not None and len(self.val_split):
                    val = evaluate(self.eval_model, self.val_split, self.options)
                    metrics.update(val_loss=val["loss"], val_acc=val["acc"])
                if metrics is None or not self._finite(metrics):
                    # a non-finite training loss, validation loss or weight: the run has diverged
                    self.state.status = "diverged"
                    self.state.history.append(metrics or {"epoch": self.state.epoch, "train_loss": math.nan})
                else:
                    self.state.history.append(metrics)
                    if self.state.epoch == spec.epochs:
                        self.state.status = "finished"
                    bar.set_postfix(_postfix(metrics), refresh=False)
                self.save_checkpoint()
                if on_epoch is not None:
                    on_epoch(self.state)
        finally:
            bar.close()
        return self.state

    def _train_epoch(self, bar: Any) -> dict[str, Any] | None:
        """One epoch; returns its metrics, or ``None`` when the loss became non-finite."""
        spec, options = self.spec, self.options
        self.model.train()
        device = options.device
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        lr = self.optimizer.param_groups[0]["lr"]
        _sync(device)
        start = time.perf_counter()
        batches = self.train_split.batches(spec.batch_size, shuffle=True, drop_last=self.drop_last)
        first_step = self.state.epoch * self.steps_per_epoch
        for step, (x, y) in enumerate(batches, 1):
            x, targets = self.pipeline(x, self.soft_targets(y))
            with autocast(options):
                logits = self.forward(x)
            loss = soft_cross_entropy(logits, targets)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            if self.ema is not None:
                self.ema.update(self.model, step=first_step + step)
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(dim=1) == y).sum()
            seen += len(y)
            if step % DIVERGENCE_CHECK_EVERY == 0 and not torch.isfinite(loss_sum):
                return None
            bar.update(1)
        _sync(device)
        seconds = time.perf_counter() - start
        self.state.train_seconds += seconds
        train_loss = loss_sum.item() / seen
        if not math.isfinite(train_loss):
            return None
        return {
            "epoch": self.state.epoch + 1,
            "lr": lr,
            "train_loss": train_loss,
            "train_acc": correct.item() / seen,
            "seconds": seconds,
            "images_per_s": seen / seconds,
        }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _postfix(metrics: dict[str, Any]) -> dict[str, str]:
    out = {"loss": f"{metrics['train_loss']:.3f}", "acc": f"{metrics['train_acc']:.3f}"}
    if "val_acc" in metrics:
        out["val_acc"] = f"{metrics['val_acc']:.3f}"
    out["img/s"] = f"{metrics['images_per_s']:.0f}"
    return out


def _progress(total: int, initial: int, enabled: bool, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        disable=not enabled,
        unit="step",
        desc=desc[:40],
        dynamic_ncols=True,
        leave=True,
    )
