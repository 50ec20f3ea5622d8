"""Training losses: soft-target cross-entropy (the default) and knowledge distillation.

A loss factory is ``factory(**params) -> loss`` and a loss is called as::

    loss(logits, targets, *, images) -> scalar tensor

with ``logits`` the student's ``(N, C)`` output, ``targets`` float soft labels ``(N, C)`` (already
smoothed or mixed by the augmentation pipeline) and ``images`` the normalised input batch the
logits came from. Every builtin loss has ``params() -> dict`` (JSON-friendly resolved values, for
logs: the run's identity is the factory's parameters, see :mod:`cifarbudget.identity`) and
``inference_macs_per_image`` (forward MACs of any extra model it runs per training image, 0 if
none), and may have ``setup(*, device, mean, std)``, which the engine calls
once before training with the training device and the student's normalisation (per-channel mean
and std in 0..1 units).

This module owns :class:`SoftTargetCrossEntropy` (factory :func:`soft_ce`) and
:class:`DistillationLoss` (factory :func:`kd`, which loads the teacher from a finished run).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cifarbudget.errors import RunError
from cifarbudget.results import FINISHED


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``-(targets * log_softmax(logits)).sum(1).mean()``, in float32 whatever the logits' dtype."""
    return -(targets * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()


class SoftTargetCrossEntropy:
    """Cross-entropy against soft targets (one-hot, label-smoothed or mixed), averaged over the batch.

    With one-hot targets this is the usual cross-entropy; with label-smoothed targets it is the
    loss of Szegedy et al. 2016 ("Rethinking the Inception Architecture", arXiv:1512.00567), with
    CutMix/MixUp targets the mixed loss of Yun et al. 2019 / Zhang et al. 2018.
    """

    inference_macs_per_image: int = 0

    def __call__(
        self, logits: torch.Tensor, targets: torch.Tensor, *, images: torch.Tensor | None = None
    ) -> torch.Tensor:
        return soft_target_cross_entropy(logits, targets)

    def params(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        return "SoftTargetCrossEntropy()"


def _stats(what: str, values: Any, channels: int | None = None) -> list[float]:
    """Per-channel normalisation values as a list of positive-or-any finite floats."""
    if isinstance(values, torch.Tensor):
        values = values.flatten().tolist()
    if not isinstance(values, Sequence) or isinstance(values, str) or not values:
        raise RunError(f"{what} must be a list of per-channel numbers (got {values!r})")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise RunError(f"{what} must hold finite numbers (got {values!r})")
        out.append(float(v))
    if channels is not None and len(out) != channels:
        raise RunError(f"{what} has {len(out)} channels, expected {channels}")
    return out


def _check_alpha_temperature(alpha: Any, temperature: Any) -> tuple[float, float]:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise RunError(f"loss kd: alpha must be in [0, 1] (got {alpha!r})")
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not math.isfinite(temperature)
        or temperature <= 0
    ):
        raise RunError(f"loss kd: temperature must be a positive number (got {temperature!r})")
    return float(alpha), float(temperature)


class DistillationLoss:
    """Knowledge distillation from a trained teacher (Hinton, Vinyals & Dean 2015, arXiv:1503.02531).

    ``loss = (1 - alpha) * soft_ce(student, targets)
    + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))``, the KL averaged over the
    batch. The ``T^2`` keeps the soft term's gradients on the scale of the hard term's as ``T``
    changes (Hinton et al., sec. 2). The teacher sees the same augmented images as the student,
    in eval mode and without gradients, re-normalised from the student's normalisation to its
    own: ``x_teacher = (x * std_s + mean_s - mean_t) / std_t`` per channel. It runs once per
    batch, also when an optimizer (SAM) evaluates the loss twice on the same batch.

    :param teacher: the teacher model (any module with the student's number of classes).
    :param teacher_mean: the teacher's normalisation mean per channel (0..1 units).
    :param teacher_std: the teacher's normalisation std per channel.
    :param teacher_id: what identifies the teacher in :meth:`params` (the run id of its run).
    """

    def __init__(
        self,
        teacher: nn.Module,
        *,
        alpha: float = 0.5,
        temperature: float = 4.0,
        teacher_mean: Sequence[float],
        teacher_std: Sequence[float],
        teacher_id: str | None = None,
    ) -> None:
        self.alpha, self.temperature = _check_alpha_temperature(alpha, temperature)
        self.teacher = teacher.eval().requires_grad_(False)
        self.teacher_mean = _stats("teacher mean", teacher_mean)
        self.teacher_std = _stats("teacher std", teacher_std, len(self.teacher_mean))
        if min(self.teacher_std) <= 0:
            raise RunError(f"teacher std must be positive (got {self.teacher_std})")
        self.teacher_id = teacher_id
        self._macs: int | None = None
        self._scale: torch.Tensor | None = None  # x_teacher = x * scale + shift, per channel
        self._shift: torch.Tensor | None = None
        self._identity = False
        self._ready = False
        # the last batch and its teacher logits: SAM's second pass sees the same images tensor
        self._cached: tuple[torch.Tensor, int, torch.Tensor] | None = None

    @property
    def inference_macs_per_image(self) -> int:
        """The teacher's forward MACs for one training image (counted once, with fvcore); 0 with
        ``alpha=0``, where the loss never runs the teacher."""
        if self.alpha == 0:
            return 0
        if self._macs is None:
            from cifarbudget.budget import count_macs

            on_cpu = all(
                t.device.type == "cpu" for t in [*self.teacher.parameters(), *self.teacher.buffers()]
            )
            self._macs = count_macs(self.teacher if on_cpu else copy.deepcopy(self.teacher).cpu())[0]
        return self._macs

    def setup(self, *, device: torch.device | str, mean: Sequence[float], std: Sequence[float]) -> None:
        """Move the teacher to ``device``; take the student's normalisation ``mean``/``std``."""
        mean_s = _stats("student mean", mean, len(self.teacher_mean))
        std_s = _stats("student std", std, len(self.teacher_mean))
        self.teacher.to(device)
        self._identity = mean_s == self.teacher_mean and std_s == self.teacher_std
        shape = (1, len(mean_s), 1, 1)
        as_tensor = lambda v: torch.tensor(v, dtype=torch.float32, device=device).view(shape)  # noqa: E731
        self._std_s, self._mean_s = as_tensor(std_s), as_tensor(mean_s)
        self._mean_t, self._std_t = as_tensor(self.teacher_mean), as_tensor(self.teacher_std)
        self._ready = True

    def teacher_inputs(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` (normalised as the student's) normalised as the teacher's inputs."""
        if not self._ready:
            raise RuntimeError("DistillationLoss.setup(device=..., mean=..., std=...) was not called")
        if self._identity:
            return images
        return (images * self._std_s + self._mean_s - self._mean_t) / self._std_t

    @torch.no_grad()
    def teacher_logits(self, images: torch.Tensor) -> torch.Tensor:
        """The teacher's logits for ``images`` (student-normalised), in eval mode, without gradients.

        Called again with the very same, unmodified tensor (SAM's second pass), it returns the
        logits it computed the first time instead of running the teacher again.
        """
        if self._cached is not None:
            last, version, logits = self._cached
            if last is images and images._version == version:
                return logits
        self.teacher.eval()
        logits = self.teacher(self.teacher_inputs(images))
        self._cached = (images, images._version, logits)
        return logits

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor, *, images: torch.Tensor) -> torch.Tensor:
        hard = soft_target_cross_entropy(logits, targets)
        if self.alpha == 0:
            return hard
        teacher = self.teacher_logits(images).float()
        if teacher.shape != logits.shape:
            raise RunError(
                f"loss kd: the teacher gives logits of shape {tuple(teacher.shape[1:])}, "
                f"the student {tuple(logits.shape[1:])} (a teacher for other classes?)"
            )
        t = self.temperature
        soft = F.kl_div(
            F.log_softmax(logits.float() / t, dim=1),
            F.log_softmax(teacher / t, dim=1),
            reduction="batchmean",
            log_target=True,
        )
        return (1 - self.alpha) * hard + self.alpha * t * t * soft

    def params(self) -> dict[str, Any]:
        return {"teacher_run_id": self.teacher_id, "alpha": self.alpha, "temperature": self.temperature}

    def __repr__(self) -> str:
        return f"DistillationLoss(teacher={self.teacher_id!r}, alpha={self.alpha}, temperature={self.temperature})"


# --- factories ----------------------------------------------------------------------------------
def soft_ce() -> SoftTargetCrossEntropy:
    """Soft-target cross-entropy (the default loss)."""
    return SoftTargetCrossEntropy()


def kd(teacher: str | Path, alpha: float = 0.5, temperature: float = 4.0) -> DistillationLoss:
    """Distill from the finished run in folder ``teacher`` (its EMA weights when it used EMA).

    ``alpha`` weighs the teacher's soft targets against the labels, ``temperature`` softens both
    distributions (Hinton et al. 2015, arXiv:1503.02531). The run's identity holds the teacher's
    run id, not its path.
    """
    alpha, temperature = _check_alpha_temperature(alpha, temperature)
    if not isinstance(teacher, (str, Path)) or not str(teacher):
        raise RunError(f"loss kd: teacher must be the folder of a finished run (got {teacher!r})")
    from cifarbudget.predict import load_model, load_run

    result, checkpoint = load_run(teacher)
    if result.status != FINISHED:
        raise RunError(f"loss kd: teacher run {result.run_id} is {result.status}, not finished")
    mean, std = result.data.get("mean"), result.data.get("std")
    if mean is None or std is None:
        raise RunError(f"loss kd: teacher run {result.run_id} does not record its normalisation")
    model = load_model(result, checkpoint)
    return DistillationLoss(
        model,
        alpha=alpha,
        temperature=temperature,
        teacher_mean=mean,
        teacher_std=std,
        teacher_id=result.run_id,
    )


BUILTIN_LOSSES = {"soft-ce": soft_ce, "kd": kd}
