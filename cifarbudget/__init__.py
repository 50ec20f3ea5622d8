"""cifarbudget: benchmark parameter-budgeted CIFAR classifiers.

Library entry points::

    import cifarbudget
    cifarbudget.list_models("resnet*")
    model = cifarbudget.create_model("resnetsmall")
    report = cifarbudget.check_budget("resnetsmall", budget="5M")
    result = cifarbudget.run("resnet20", dataset="synthetic", epochs=3)
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
from cifarbudget.results import RunResult, load_result
from cifarbudget.runner import run

__all__ = [
    "BudgetReport",
    "CifarBudgetError",
    "RunResult",
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
    "load_result",
    "models",
    "parse_budget",
    "recipes",
    "reset_plugins",
    "run",
    "schedulers",
    "tta_policies",
]
