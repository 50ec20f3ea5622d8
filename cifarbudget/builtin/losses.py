"""Builtin losses: soft-target cross-entropy and knowledge distillation (in :mod:`cifarbudget.losses`)."""

from __future__ import annotations

from cifarbudget.hookspecs import hookimpl
from cifarbudget.registry import lazy


@hookimpl
def cifarbudget_register_losses(registry) -> None:
    registry.add(
        "soft-ce",
        lazy("cifarbudget.losses:soft_ce"),
        description="Cross-entropy against soft targets (label smoothing and mixing come from the targets); the default",
    )
    registry.add(
        "kd",
        lazy("cifarbudget.losses:kd"),
        description="Knowledge distillation (Hinton et al. 2015, arXiv:1503.02531) from a finished run: "
        "(1-alpha)*CE + alpha*T^2*KL(teacher/T || student/T); params teacher=RUN_DIR, alpha=0.5, "
        "temperature=4; the teacher's parameters do not count against the budget",
    )
