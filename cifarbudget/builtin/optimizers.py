"""Builtin optimizers: SGD, AdamW, Lookahead, SAM, Muon (implemented in :mod:`cifarbudget.optim`)."""

from __future__ import annotations

from cifarbudget.hookspecs import hookimpl
from cifarbudget.registry import LazyFactory, lazy

# name -> (factory, description)
OPTIMIZERS: dict[str, tuple[LazyFactory, str]] = {
    "sgd": (
        lazy("cifarbudget.optim:sgd"),
        "SGD with momentum (Nesterov with --nesterov) and L2 weight decay, torch.optim.SGD; "
        "params bn_bias_lr_scale=1 (airbench uses 64), norm_weight_decay=weight_decay",
    ),
    "adamw": (
        lazy("cifarbudget.optim:adamw"),
        "AdamW (Loshchilov & Hutter 2019, arXiv:1711.05101); betas=(momentum, 0.999); NAdamW with "
        "--nesterov; params betas, eps, bn_bias_lr_scale, norm_weight_decay",
    ),
    "lookahead": (
        lazy("cifarbudget.optim:lookahead"),
        "Lookahead (Zhang et al. 2019, arXiv:1907.08610) around any registered optimizer; "
        "params base='sgd', k=5, alpha=0.5, and the base's params",
    ),
    "sam": (
        lazy("cifarbudget.optim:sam"),
        "Sharpness-Aware Minimization (Foret et al. 2021, arXiv:2010.01412), ASAM with adaptive=true; "
        "two forward/backward passes per step, BatchNorm statistics updated on the first only; "
        "params base='sgd', rho=0.05, adaptive=false",
    ),
    "muon": (
        lazy("cifarbudget.optim:muon"),
        "Muon (Jordan 2024) via torch.optim.Muon on conv filters viewed as matrices, SGD for the rest; "
        "params muon_lr=0.02, muon_momentum=0.95, muon_weight_decay=0, muon_normalize=false, linear=false",
    ),
}


@hookimpl
def cifarbudget_register_optimizers(registry) -> None:
    for name, (factory, description) in OPTIMIZERS.items():
        registry.add(name, factory, description=description)
