"""Learning-rate schedules: multistep, cosine, linear, onecycle, constant.

Registered in :mod:`cifarbudget.builtin.schedulers`.

Every factory is ``factory(optimizer, *, epochs, steps_per_epoch, warmup_epochs=0.0, **params)``
and returns a torch ``LRScheduler`` that the engine steps once per optimizer step
(``T = epochs * steps_per_epoch`` steps in all). The optimizer's ``lr`` when the scheduler is built
is the peak learning rate. ``multistep``, ``cosine``, ``linear`` and ``constant`` are one ``LambdaLR`` whose
multiplier is a small picklable object, so ``state_dict()`` / ``load_state_dict()`` restore them
exactly on resume; ``onecycle`` is torch's ``OneCycleLR``.

Warmup: with ``W = round(warmup_epochs * steps_per_epoch)`` warmup steps, the multiplier of step
``k < W`` is ``(k + 1) / (W + 1)`` (linear from about 0) and the peak is reached at step ``W``.
timm's schedulers are not torch ``LRScheduler`` subclasses (they are stepped with an epoch or
update count), so the contract is met with torch's classes; see ``docs/components.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

from cifarbudget.errors import RunError

__all__ = ["constant", "cosine", "linear", "multistep", "onecycle"]


def _steps(name: str, epochs: int, steps_per_epoch: int, warmup_epochs: float) -> tuple[int, int]:
    """Total steps ``T`` and warmup steps ``W`` (``0 <= W < T``), validated."""
    if int(epochs) != epochs or epochs < 1 or int(steps_per_epoch) != steps_per_epoch or steps_per_epoch < 1:
        raise RunError(
            f"scheduler {name!r}: epochs and steps_per_epoch must be ints >= 1, "
            f"got epochs={epochs!r}, steps_per_epoch={steps_per_epoch!r}"
        )
    total = int(epochs) * int(steps_per_epoch)
    warmup = math.floor(float(warmup_epochs) * steps_per_epoch + 0.5)
    if warmup_epochs < 0 or warmup >= total:
        raise RunError(
            f"scheduler {name!r}: warmup_epochs must be >= 0 and shorter than the run "
            f"({epochs} epochs), got {warmup_epochs!r}"
        )
    return total, warmup


def _warmup(step: int, warmup: int) -> float:
    return (step + 1) / (warmup + 1) if step < warmup else 1.0


class ConstantFactor:
    """LR multiplier: linear warmup, then 1."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup

    def __call__(self, step: int) -> float:
        return _warmup(step, self.warmup)


class MultiStepFactor:
    """LR multiplier: ``gamma ** (number of milestone steps <= step)``, times the warmup ramp."""

    def __init__(self, milestones: Sequence[int], gamma: float, warmup: int) -> None:
        self.milestones, self.gamma, self.warmup = sorted(int(m) for m in milestones), float(gamma), warmup

    def __call__(self, step: int) -> float:
        passed = sum(1 for m in self.milestones if step >= m)
        return self.gamma**passed * _warmup(step, self.warmup)


class CosineFactor:
    """LR multiplier: warmup, then a half cosine from 1 at step ``W`` towards ``min_factor`` at ``T``;
    with ``every > 1`` the cosine moves once every ``every`` steps (once per epoch), on multiples of
    ``every`` (epoch boundaries) even when the warmup ends inside an epoch: the rest of that epoch
    trains at the peak."""

    def __init__(self, total: int, warmup: int, min_factor: float, every: int = 1) -> None:
        self.total, self.warmup, self.min_factor, self.every = total, warmup, float(min_factor), int(every)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return _warmup(step, self.warmup)
        done = max(0, step // self.every * self.every - self.warmup)
        progress = min(1.0, done / (self.total - self.warmup))
        return self.min_factor + (1.0 - self.min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class LinearFactor:
    """LR multiplier: warmup, then a straight line from 1 at step ``W`` to exactly 0 at step ``T - 1``."""

    def __init__(self, total: int, warmup: int) -> None:
        self.total, self.warmup = total, warmup

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return _warmup(step, self.warmup)
        span = self.total - 1 - self.warmup  # steps from the peak to the last step
        return max(0.0, (self.total - 1 - step) / span) if span > 0 else 0.0


def constant(
    optimizer: torch.optim.Optimizer, *, epochs: int, steps_per_epoch: int, warmup_epochs: float = 0.0
) -> LRScheduler:
    """The peak LR throughout (after an optional linear warmup)."""
    _, warmup = _steps("constant", epochs, steps_per_epoch, warmup_epochs)
    return LambdaLR(optimizer, ConstantFactor(warmup))


def multistep(
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    steps_per_epoch: int,
    warmup_epochs: float = 0.0,
    milestones: Sequence[float] = (0.5, 0.75),
    gamma: float = 0.1,
) -> LRScheduler:
    """Multiply the LR by ``gamma`` at each milestone, given as fractions of the run.

    Milestones fall on epoch boundaries: fraction ``f`` becomes epoch ``round(f * epochs)``, i.e.
    step ``round(f * epochs) * steps_per_epoch``. The defaults are the reference paper's
    ``MultiStepLR(milestones=[50, 75], gamma=0.1)`` over 100 epochs, scaled to any run length.
    """
    _, warmup = _steps("multistep", epochs, steps_per_epoch, warmup_epochs)
    if not all(0.0 < float(m) < 1.0 for m in milestones):
        raise RunError(
            f"scheduler 'multistep': milestones are fractions of the run in (0, 1) "
            f"(e.g. [0.5, 0.75] for epochs 50 and 75 of 100), got {list(milestones)!r}"
        )
    if not gamma > 0.0:
        raise RunError(f"scheduler 'multistep': gamma must be > 0, got {gamma!r}")
    steps = [math.floor(float(m) * epochs + 0.5) * steps_per_epoch for m in milestones]
    return LambdaLR(optimizer, MultiStepFactor(steps, gamma, warmup))


def cosine(
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    steps_per_epoch: int,
    warmup_epochs: float = 0.0,
    min_lr_factor: float = 0.0,
    per_epoch: bool = False,
) -> LRScheduler:
    """Cosine annealing (Loshchilov & Hutter 2017, without restarts) from the peak to
    ``min_lr_factor * peak``, per step, after the optional warmup.

    ``per_epoch=True`` holds the LR for a whole epoch, as torch's ``CosineAnnealingLR(T_max=epochs)``
    stepped once per epoch does (the reference paper's notebook): epoch ``e`` trains at
    ``min + (peak - min) * (1 + cos(pi * e / epochs)) / 2``, so the last epoch is not at the minimum.
    """
    total, warmup = _steps("cosine", epochs, steps_per_epoch, warmup_epochs)
    if not 0.0 <= min_lr_factor <= 1.0:
        raise RunError(f"scheduler 'cosine': min_lr_factor must be in [0, 1], got {min_lr_factor!r}")
    every = int(steps_per_epoch) if per_epoch else 1
    return LambdaLR(optimizer, CosineFactor(total, warmup, min_lr_factor, every))


def linear(
    optimizer: torch.optim.Optimizer, *, epochs: int, steps_per_epoch: int, warmup_epochs: float = 0.0
) -> LRScheduler:
    """Linear decay to zero (Li, Yumer & Ramanan 2020, "Budgeted Training: Rethinking Deep Neural
    Network Training Under Resource Constraints", arXiv:1905.04753): after the optional warmup the
    LR falls linearly from the peak at step ``W`` to exactly 0 at the last step ``T - 1``, so the
    budget ends with the LR at zero; the paper finds this the best schedule for a fixed budget of
    steps. The last step thus uses LR 0 (it still updates BatchNorm statistics). With
    ``W = T - 1`` (warmup over the whole run but one step) that step is 0.
    """
    total, warmup = _steps("linear", epochs, steps_per_epoch, warmup_epochs)
    return LambdaLR(optimizer, LinearFactor(total, warmup))


def onecycle(
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    steps_per_epoch: int,
    warmup_epochs: float = 0.0,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    anneal_strategy: str = "cos",
    cycle_momentum: bool = False,
) -> LRScheduler:
    """Smith & Topin's 1cycle policy (arXiv:1708.07120), via ``torch.optim.lr_scheduler.OneCycleLR``.

    The LR rises from ``peak / div_factor`` to the peak at step ``round(pct_start * T) - 1``, then anneals
    to ``peak / div_factor / final_div_factor`` at the last step. ``warmup_epochs > 0`` replaces
    ``pct_start`` so that, like the other schedules, the peak is at step ``W``.
    ``anneal_strategy="linear"`` gives the triangular schedule of fast CIFAR training. Momentum
    cycling is off by default (torch's default is on) so that the optimizer's momentum is left as
    configured; pass ``cycle_momentum=True`` for the full 1cycle policy.
    """
    total, warmup = _steps("onecycle", epochs, steps_per_epoch, warmup_epochs)
    if not 0.0 < pct_start <= 1.0 or anneal_strategy not in ("cos", "linear"):
        raise RunError(
            "scheduler 'onecycle': pct_start must be in (0, 1] and anneal_strategy 'cos' or 'linear', "
            f"got pct_start={pct_start!r}, anneal_strategy={anneal_strategy!r}"
        )
    # The rise ends on a whole step, so that one step uses exactly the peak LR.
    if total < 3:  # torch's OneCycleLR needs a step up and a step down besides the peak
        raise RunError(f"scheduler 'onecycle': needs at least 3 optimizer steps, the run has {total}")
    rise = warmup + 1 if warmup > 0 else round(pct_start * total)
    rise = min(max(2, rise), total - 1)  # a rise of one step would divide by zero inside OneCycleLR
    pct_start = rise / total
    return OneCycleLR(
        optimizer,
        max_lr=[group["lr"] for group in optimizer.param_groups],
        total_steps=total,
        pct_start=float(pct_start),
        div_factor=div_factor,
        final_div_factor=final_div_factor,
        anneal_strategy="linear" if anneal_strategy == "linear" else "cos",  # checked above
        cycle_momentum=cycle_momentum,
    )
