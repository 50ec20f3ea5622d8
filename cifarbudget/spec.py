"""``RunSpec``: everything that defines a training run, and the deterministic run id derived from it.

Two specs with the same id train the same thing (same model, data, pipeline, optimisation and
seed). Where the data lives, where results go and how fast the run goes (device, compile,
progress bar) are not part of the id.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from cifarbudget.errors import RunError

SPEC_VERSION = 1


@dataclass(frozen=True)
class RunSpec:
    """One training run. Field defaults are the paper's initial recipe on CIFAR-10."""

    model: str = "resnetsmall"
    dataset: str = "cifar10"
    augs: tuple[str, ...] = ("crop-flip",)  # the exact pipeline, in order
    sched: str = "multistep"
    warmup_epochs: float = 0.0
    tta: str = "none"
    epochs: int = 100
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    ema: float = 0.0  # model EMA decay (0 = off), via timm.utils.ModelEmaV3
    seed: int = 0
    val_size: int = 5000  # held out of the training split, at most 10% of it; 0 = train on all
    train_subset: int = 0  # 0 = all training images (after the validation split)
    num_classes: int = 0  # 0 = from the dataset
    budget: int = 5_000_000
    allow_over_budget: bool = False
    aug_params: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-augmentation overrides

    def __post_init__(self) -> None:
        object.__setattr__(self, "augs", tuple(self.augs))
        checks = [
            (self.epochs >= 1, f"--epochs must be at least 1 (got {self.epochs})"),
            (self.batch_size >= 1, f"--batch-size must be at least 1 (got {self.batch_size})"),
            (self.lr > 0, f"--lr must be positive (got {self.lr})"),
            (self.weight_decay >= 0, f"--wd must be non-negative (got {self.weight_decay})"),
            (
                0 <= self.label_smoothing < 1,
                f"--label-smoothing must be in [0, 1) (got {self.label_smoothing})",
            ),
            (0 <= self.ema < 1, f"--ema must be in [0, 1) (got {self.ema})"),
            (self.val_size >= 0, f"--val-size must be non-negative (got {self.val_size})"),
            (self.train_subset >= 0, f"--train-subset must be non-negative (got {self.train_subset})"),
            (
                self.optimizer in ("sgd", "adamw"),
                f"--optimizer must be sgd or adamw (got {self.optimizer!r})",
            ),
            (self.warmup_epochs >= 0, f"--warmup must be non-negative (got {self.warmup_epochs})"),
        ]
        for ok, message in checks:
            if not ok:
                raise RunError(message)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["augs"] = list(self.augs)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RunError(f"unknown run option(s): {', '.join(unknown)}")
        return cls(**data)

    @property
    def run_id(self) -> str:
        """``<model>-<dataset>-<hash>``: stable across processes, machines and Python versions."""
        canonical = json.dumps({"v": SPEC_VERSION, **self.to_dict()}, sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(canonical.encode()).hexdigest()[:12]
        return f"{self.model}-{self.dataset}-e{self.epochs}-s{self.seed}-{digest}"

    def describe(self) -> str:
        return (
            f"{self.model} on {self.dataset}: aug {'+'.join(self.augs) or 'none'}, {self.sched}, "
            f"{self.epochs} epochs, batch {self.batch_size}, {self.optimizer} lr {self.lr:g} wd {self.weight_decay:g}, "
            f"TTA {self.tta}, seed {self.seed}"
        )
