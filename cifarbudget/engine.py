"""The training loop, its checkpoints, and evaluation.

:class:`Engine` trains a built model on data already resident on the training device (see
:class:`cifarbudget.data.DeviceSplit`): per step the augmentation pipeline (:func:`augmented_batches`,
optionally on several batches at once), the forward pass
under autocast, the loss, the optimizer step (with a closure for optimizers that need one, such
as SAM), the scheduler step and the EMA update. After every epoch it validates and writes a
checkpoint atomically with everything needed to continue bit-for-bit: model, optimizer,
scheduler, EMA, torch RNG states, epoch and history. A resumed run therefore ends exactly where
an uninterrupted one ends.

:func:`evaluate` is the one evaluation loop (training, the final test, predict), optionally
through a TTA policy and optionally returning the logits. :func:`load_weights` is the one
place that knows the checkpoint layout from the reading side.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cifarbudget.augment.pipeline import BatchContext
from cifarbudget.data.core import DeviceSplit
from cifarbudget.device import DeviceSettings, autocast, synchronize
from cifarbudget.errors import RunError, describe
from cifarbudget.io import atomic_torch_save
from cifarbudget.progress import Progress
from cifarbudget.results import DIVERGED, FINISHED, RUNNING

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = 1
DIVERGENCE_CHECK_EVERY = 25  # steps between host syncs that look for a non-finite loss
EVAL_BATCH_SIZE = 1000

Pipeline = Callable[..., tuple[torch.Tensor, torch.Tensor]]
Loss = Callable[..., torch.Tensor]


@dataclass
class TrainState:
    """What the engine returns and what a checkpoint restores."""

    epoch: int = 0  # epochs completed
    history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    status: str = RUNNING  # running | finished | diverged


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, **_: Any) -> torch.Tensor:
    """Cross-entropy against soft targets (one-hot, smoothed or mixed), averaged over the batch."""
    return -(targets * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()


def laid_out_for(train: DeviceSplit, pipeline: Pipeline) -> DeviceSplit:
    """The training split with its uint8 images in the layout its pipeline runs fastest on
    (:meth:`~cifarbudget.augment.pipeline.Compose.preferred_uint8_layout`; contiguous for a
    pipeline that does not say), when its batches are channels_last; a split of contiguous
    batches is kept as it is. The same batches either way (:meth:`DeviceSplit.laid_out`)."""
    if not train.channels_last:
        return train
    layout = getattr(pipeline, "preferred_uint8_layout", None)
    preferred = layout() if callable(layout) else "contiguous"
    return train.laid_out(channels_last=preferred == "channels_last")


def augmented_batches(
    train: DeviceSplit,
    pipeline: Pipeline,
    targets: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int,
    *,
    epoch: int,
    drop_last: bool,
    chunk: int = 1,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """One epoch of training batches as the engine trains on them: ``(labels, images, targets)``.

    The resident split is shuffled and cut into batches; each batch's uint8 images go through the
    pipeline with their soft targets and a :class:`BatchContext` (the epoch, the images' indices).
    With ``chunk > 1`` and a pipeline that has ``batches`` (:class:`~cifarbudget.augment.pipeline.Compose`),
    ``chunk`` batches are augmented at once: the per-image augmentations and the normalisation run
    on all of them together, the ones that mix the images of a batch (CutMix, Mixup) on each
    batch (:meth:`Compose.batches`). Same batches, same distribution of augmentations, fewer and
    larger operations; with ``chunk == 1`` exactly the per-batch path and its random draws.
    """
    batches = train.index_batches(batch_size, shuffle=True, drop_last=drop_last)
    run_chunk = getattr(pipeline, "batches", None)
    if chunk <= 1 or not callable(run_chunk):
        for idx in batches:
            y = train.labels[idx]
            context = BatchContext(epoch=epoch, indices=idx)
            x, soft = pipeline(train.take(idx), targets(y), context)
            yield y, x, soft
        return
    while group := list(itertools.islice(batches, chunk)):
        idx = torch.cat(group)
        contexts = [BatchContext(epoch=epoch, indices=i) for i in group]
        augmented = run_chunk(train.take(idx), targets(train.labels[idx]), contexts)
        for i, (x, soft) in zip(group, augmented, strict=True):
            yield train.labels[i], x, soft


def drop_last(n_train: int, batch_size: int) -> bool:
    """Whether an epoch drops its last partial batch: yes, unless the split is smaller than a batch."""
    return n_train >= batch_size


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Optimizer steps in one epoch of ``n_train`` images (the scheduler's unit)."""
    return n_train // batch_size if drop_last(n_train, batch_size) else 1


# --- evaluation ----------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(
    model: nn.Module,
    split: DeviceSplit,
    settings: DeviceSettings,
    *,
    tta: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
    batch_size: int = EVAL_BATCH_SIZE,
    return_logits: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Loss, accuracy and predictions of ``model`` on ``split`` (optionally through a TTA policy).

    Returns ``loss`` (mean cross-entropy), ``acc``, ``predictions`` (int64 on the CPU) and, with
    ``return_logits``, ``logits`` (float32 ``(N, C)`` on the CPU). Labels of ``-1`` (unknown) are
    left out of loss and accuracy, which are then NaN for an unlabeled split.
    """
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=settings.device, dtype=torch.float64)
    preds, all_logits = [], []
    for x, y in split.batches(batch_size, shuffle=False, drop_last=False):
        with autocast(settings):
            logits = tta(model, x) if tta is not None else model(x)
        logits = logits.float()  # under bf16 autocast: near-ties decided in float32, not 8 mantissa bits
        known = y >= 0
        loss_sum += F.cross_entropy(logits[known], y[known], reduction="sum").double()
        preds.append(logits.argmax(dim=1))
        if return_logits:
            all_logits.append(logits.cpu())
        if progress is not None:
            progress.advance(len(y))
    model.train(was_training)
    predictions = torch.cat(preds) if preds else torch.empty(0, dtype=torch.long, device=settings.device)
    labeled = split.labels >= 0
    n = int(labeled.sum())
    correct = (predictions[labeled] == split.labels[labeled]).sum()
    out: dict[str, Any] = {
        "loss": loss_sum.item() / n if n else math.nan,
        "acc": correct.item() / n if n else math.nan,
        "predictions": predictions.cpu(),
    }
    if return_logits:
        out["logits"] = torch.cat(all_logits) if all_logits else torch.empty(0, 0)
    return out


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, n: int) -> list[list[int]]:
    """Rows: true class, columns: predicted class (labels of -1, unknown, are left out)."""
    labels, predictions = labels.cpu(), predictions.cpu()
    known = labels >= 0
    flat = labels[known] * n + predictions[known]
    return torch.bincount(flat, minlength=n * n).view(n, n).tolist()


# --- checkpoints ---------------------------------------------------------------------------------
def read_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint written by :meth:`Engine.save_checkpoint`, loaded safely (``weights_only=True``)."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise RunError(f"no checkpoint at {path}") from None
    except Exception as exc:  # truncated, corrupt, or not a torch file
        raise RunError(
            f"cannot read checkpoint {path}: truncated, corrupt or not a checkpoint ({describe(exc)})"
        ) from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise RunError(f"{path} is not a cifarbudget checkpoint")
    return ckpt


def evaluated_state(ckpt: dict[str, Any], *, ema: bool) -> dict[str, torch.Tensor]:
    """The weights a run evaluated: the EMA copy's when the run used EMA, else the model's."""
    if not ema:
        return ckpt["model"]
    if not ckpt.get("ema"):
        raise RunError("the run used EMA but its checkpoint holds no EMA weights")
    # timm's ModelEmaV3 keeps the averaged model as ``module``
    return {k.removeprefix("module."): v for k, v in ckpt["ema"].items() if k.startswith("module.")}


def load_weights(model: nn.Module, path: Path, *, run_id: str | None = None, ema: bool = False) -> nn.Module:
    """Load the evaluated weights from the checkpoint at ``path`` into ``model``; return it in eval mode."""
    ckpt = read_checkpoint(path)
    if run_id is not None and ckpt.get("run_id") not in (None, run_id):
        raise RunError(f"{path} belongs to run {ckpt['run_id']}, not to {run_id}")
    try:
        model.load_state_dict(evaluated_state(ckpt, ema=ema))
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise RunError(f"{path} does not fit the model as it is registered now: {first}") from None
    return model.eval()


# --- training ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainPlan:
    """What the loop needs to know of the run: its name, length, batch size and EMA decay."""

    run_id: str
    epochs: int
    batch_size: int
    ema: float = 0.0


class Engine:
    """Trains ``model`` for ``plan.epochs`` epochs on ``train``, validating on ``val`` after each.

    ``optimizer`` and ``scheduler`` are built by the caller (the scheduler is stepped once per
    optimizer step); ``targets(labels)`` makes the soft targets; ``pipeline(images_uint8,
    targets, context)`` augments and normalises a batch (:class:`cifarbudget.augment.pipeline.Compose`);
    ``loss(logits, targets, images=...)`` is the training loss.
    """

    def __init__(
        self,
        plan: TrainPlan,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        *,
        train: DeviceSplit,
        val: DeviceSplit | None,
        pipeline: Pipeline,
        targets: Callable[[torch.Tensor], torch.Tensor],
        settings: DeviceSettings,
        checkpoint: Path,
        loss: Loss = soft_cross_entropy,
        progress: bool = True,
    ) -> None:
        self.plan, self.train_split, self.val_split = (
            plan,
            laid_out_for(train, pipeline),
            val if val is not None and len(val) else None,
        )
        self.pipeline, self.targets, self.loss, self.settings = pipeline, targets, loss, settings
        self.checkpoint, self.show_progress = checkpoint, progress
        self.model = model.to(settings.device, memory_format=settings.memory_format)  # type: ignore[call-overload]  # torch's stubs omit Module.to(device, memory_format=...)
        self.optimizer, self.scheduler = optimizer, scheduler
        self.drop_last = drop_last(len(train), plan.batch_size)
        self.steps_per_epoch = steps_per_epoch(len(train), plan.batch_size)
        self.ema = None
        if plan.ema > 0:
            from timm.utils import ModelEmaV3

            # timm's warmup (decay ramps up as 1 - (1 + step)^(-2/3), capped at plan.ema) keeps the
            # random initial weights from dominating the average in short runs.
            self.ema = ModelEmaV3(self.model, decay=plan.ema, use_warmup=True, device=settings.device)
        self.forward: Callable[[torch.Tensor], torch.Tensor] = self.model
        if settings.compile:
            self.forward = torch.compile(self.model)
        self.state = TrainState()

    @property
    def eval_model(self) -> nn.Module:
        """The model to evaluate: the EMA copy when EMA is on."""
        return self.ema.module if self.ema is not None else self.model

    # -- checkpoints --------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        rng = {"cpu": torch.get_rng_state()}
        if self.settings.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.settings.device)
        atomic_torch_save(
            self.checkpoint,
            {
                "format": CHECKPOINT_FORMAT,
                "run_id": self.plan.run_id,
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

    def load_checkpoint(self, path: Path | None = None) -> None:
        """Restore everything :meth:`save_checkpoint` wrote (tensors only: ``weights_only=True``)."""
        path = path or self.checkpoint
        ckpt = read_checkpoint(path, map_location=self.settings.device)
        try:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
            if self.ema is not None and ckpt.get("ema") is not None:
                self.ema.load_state_dict(ckpt["ema"])
            torch.set_rng_state(ckpt["rng"]["cpu"].cpu())
            if "cuda" in ckpt["rng"] and self.settings.device.type == "cuda":
                torch.cuda.set_rng_state(ckpt["rng"]["cuda"].cpu(), self.settings.device)
            self.state = TrainState(
                int(ckpt["epoch"]), list(ckpt["history"]), float(ckpt["train_seconds"]), str(ckpt["status"])
            )
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise RunError(
                f"cannot resume from {path}: {type(exc).__name__}: {exc}".splitlines()[0]
            ) from None

    # -- training -----------------------------------------------------------------------------
    def _finite(self, metrics: dict[str, Any]) -> bool:
        """Whether the epoch's losses and every weight of the model (and its EMA) are finite."""
        if not all(math.isfinite(metrics[k]) for k in ("train_loss", "val_loss") if k in metrics):
            return False
        with torch.no_grad():
            tensors = [t for t in self.eval_model.state_dict().values() if t.is_floating_point()]
            tensors += list(self.model.parameters())
            return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())

    def fit(self, on_epoch: Callable[[TrainState], None] | None = None) -> TrainState:
        """Train the remaining epochs; call ``on_epoch`` after each epoch's checkpoint is written."""
        plan = self.plan
        progress = Progress(
            total=plan.epochs * self.steps_per_epoch,
            done=self.state.epoch * self.steps_per_epoch,
            unit="step",
            desc=plan.run_id,
            enabled=self.show_progress,
        )
        with progress:
            while self.state.epoch < plan.epochs and self.state.status == RUNNING:
                metrics = self._train_epoch(progress)
                self.state.epoch += 1
                if metrics is not None and self.val_split is not None:
                    val = evaluate(self.eval_model, self.val_split, self.settings)
                    metrics.update(val_loss=val["loss"], val_acc=val["acc"])
                if metrics is None or not self._finite(metrics):
                    # a non-finite training loss, validation loss or weight: the run has diverged
                    self.state.status = DIVERGED
                    self.state.history.append(metrics or {"epoch": self.state.epoch, "train_loss": math.nan})
                    log.warning("%s: diverged in epoch %d", plan.run_id, self.state.epoch)
                else:
                    self.state.history.append(metrics)
                    if self.state.epoch == plan.epochs:
                        self.state.status = FINISHED
                    progress.epoch_done(self.state.epoch, plan.epochs, _summary(metrics))
                self.save_checkpoint()
                if on_epoch is not None:
                    on_epoch(self.state)
        return self.state

    def _step(self, x: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on an augmented batch; returns (detached loss, logits)."""
        if getattr(self.optimizer, "needs_closure", False):
            first: list[tuple[torch.Tensor, torch.Tensor]] = []

            def closure() -> torch.Tensor:
                self.optimizer.zero_grad(set_to_none=True)
                with autocast(self.settings):
                    logits = self.forward(x)
                loss = self.loss(logits, targets, images=x)
                loss.backward()
                if not first:  # the statistics of the step are those of the first pass (at w)
                    first.append((loss.detach(), logits.detach()))
                return loss

            self.optimizer.step(closure)  # type: ignore[arg-type]  # torch types the closure's loss as a float; a tensor is what its optimizers take
            return first[0]
        with autocast(self.settings):
            logits = self.forward(x)
        loss = self.loss(logits, targets, images=x)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach(), logits.detach()

    def _train_epoch(self, progress: Progress) -> dict[str, Any] | None:
        """One epoch; returns its metrics, or ``None`` when the loss became non-finite."""
        plan, device = self.plan, self.settings.device
        self.model.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        lr = self.optimizer.param_groups[0]["lr"]
        train = self.train_split
        synchronize(device)
        start = time.perf_counter()
        first_step = self.state.epoch * self.steps_per_epoch
        batches = augmented_batches(
            train,
            self.pipeline,
            self.targets,
            plan.batch_size,
            epoch=self.state.epoch,
            drop_last=self.drop_last,
            chunk=self.settings.aug_chunk,
        )
        for step, (y, x, targets) in enumerate(batches, 1):
            loss, logits = self._step(x, targets)
            self.scheduler.step()
            if self.ema is not None:
                self.ema.update(self.model, step=first_step + step)
            loss_sum += loss * len(y)
            correct += (logits.argmax(dim=1) == y).sum()
            seen += len(y)
            if step % DIVERGENCE_CHECK_EVERY == 0 and not torch.isfinite(loss_sum):
                return None
            progress.advance(1)
        synchronize(device)
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


def _summary(metrics: dict[str, Any]) -> dict[str, str]:
    out = {"loss": f"{metrics['train_loss']:.3f}", "acc": f"{metrics['train_acc']:.3f}"}
    if "val_acc" in metrics:
        out["val_acc"] = f"{metrics['val_acc']:.3f}"
    out["img/s"] = f"{metrics['images_per_s']:.0f}"
    return out
