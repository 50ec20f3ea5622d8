"""cifarbudget: benchmark parameter-budgeted CIFAR classifiers.

Library entry points::

    import cifarbudget
    cifarbudget.list_models("resnet*")
    model = cifarbudget.create_model("resnetsmall")
    report = cifarbudget.check_budget("resnetsmall", budget="5M")
"""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("cifarbudget")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from cifarbudget.api import (
    augmentations,
    create_model,
    datasets,
    describe,
    list_models,
    models,
    recipes,
    schedulers,
    tta_policies,
)
from cifarbudget.budget import BudgetReport, check_budget, parse_budget
from cifarbudget.errors import CifarBudgetError
from cifarbudget.hookspecs import hookimpl, hookspec
from cifarbudget.plugins import get_plugin_system, get_registry, reset_plugins

__all__ = [
    "BudgetReport",
    "CifarBudgetError",
    "__version__",
    "augmentations",
    "check_budget",
    "create_model",
    "datasets",
    "describe",
    "get_plugin_system",
    "get_registry",
    "hookimpl",
    "hookspec",
    "list_models",
    "models",
    "parse_budget",
    "recipes",
    "reset_plugins",
    "schedulers",
    "tta_policies",
]
