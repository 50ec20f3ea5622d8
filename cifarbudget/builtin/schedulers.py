"""Builtin learning-rate schedules: multistep, cosine, linear, onecycle, constant.

Implemented in :mod:`cifarbudget.schedules`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cifarbudget.hookspecs import hookimpl
from cifarbudget.registry import LazyFactory, lazy

if TYPE_CHECKING:
    from cifarbudget.registry import PluginRegistryView

# name -> (factory, description)
SCHEDULERS: dict[str, tuple[LazyFactory, str]] = {
    "multistep": (
        lazy("cifarbudget.schedules:multistep"),
        "Step decay x0.1 at 50% and 75% of the epochs: the reference paper's MultiStepLR(50, 75) over "
        "100 epochs (He et al. 2016 style); params milestones=[0.5, 0.75], gamma=0.1, warmup_epochs=0",
    ),
    "cosine": (
        lazy("cifarbudget.schedules:cosine"),
        "Per-step cosine annealing to 0 (Loshchilov & Hutter 2017, SGDR without restarts); "
        "params min_lr_factor=0.0, warmup_epochs=0, per_epoch=false (true: CosineAnnealingLR stepped per epoch)",
    ),
    "linear": (
        lazy("cifarbudget.schedules:linear"),
        "Per-step linear decay from the peak to exactly 0 at the last step (Li, Yumer & Ramanan 2020, "
        "Budgeted Training, arXiv:1905.04753); params warmup_epochs=0",
    ),
    "onecycle": (
        lazy("cifarbudget.schedules:onecycle"),
        "1cycle (Smith & Topin 2017, arXiv:1708.07120) via torch OneCycleLR: up to the peak in the "
        "first 30% of steps, then down; params pct_start=0.3, anneal_strategy='cos', "
        "div_factor=25, final_div_factor=1e4, cycle_momentum=False, warmup_epochs=0",
    ),
    "constant": (
        lazy("cifarbudget.schedules:constant"),
        "The peak learning rate throughout; params warmup_epochs=0",
    ),
}


@hookimpl
def cifarbudget_register_schedulers(registry: PluginRegistryView) -> None:
    for name, (factory, description) in SCHEDULERS.items():
        registry.add(name, factory, description=description)
