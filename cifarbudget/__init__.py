"""cifarbudget: benchmark parameter-budgeted CIFAR classifiers.

Library entry points::

    import cifarbudget
    cifarbudget.list_models("resnet*")
    model = cifarbudget.create_model("resnetsmall")
    report = cifarbudget.check_budget("resnetsmall", budget="5M")
    result = cifarbudget.run("resnet20", dataset="synthetic", epochs=3)

Importing the package is cheap: the names below are loaded on first use (PEP 562), so the
command line starts without importing torch until a command needs it.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import TYPE_CHECKING, Any

try:
    __version__ = metadata.version("cifarbudget")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

# public name -> module that defines it
_EXPORTS = {
    "augmentations": "cifarbudget.api",
    "create_model": "cifarbudget.api",
    "datasets": "cifarbudget.api",
    "describe": "cifarbudget.api",
    "list_models": "cifarbudget.api",
    "losses": "cifarbudget.api",
    "models": "cifarbudget.api",
    "optimizers": "cifarbudget.api",
    "recipes": "cifarbudget.api",
    "schedulers": "cifarbudget.api",
    "tta_policies": "cifarbudget.api",
    "BudgetReport": "cifarbudget.budget",
    "check_budget": "cifarbudget.budget",
    "parse_budget": "cifarbudget.budget",
    "CifarBudgetError": "cifarbudget.errors",
    "hookimpl": "cifarbudget.hookspecs",
    "hookspec": "cifarbudget.hookspecs",
    "get_plugin_system": "cifarbudget.plugins",
    "get_registry": "cifarbudget.plugins",
    "reset_plugins": "cifarbudget.plugins",
    "lazy": "cifarbudget.registry",
    "RunResult": "cifarbudget.results",
    "load_result": "cifarbudget.results",
    "run": "cifarbudget.runner",
    "RunSpec": "cifarbudget.spec",
}

__all__ = [
    "BudgetReport",
    "CifarBudgetError",
    "RunResult",
    "RunSpec",
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
    "lazy",
    "list_models",
    "load_result",
    "losses",
    "models",
    "optimizers",
    "parse_budget",
    "recipes",
    "reset_plugins",
    "run",
    "schedulers",
    "tta_policies",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cifarbudget' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from cifarbudget.api import (
        augmentations,
        create_model,
        datasets,
        describe,
        list_models,
        losses,
        models,
        optimizers,
        recipes,
        schedulers,
        tta_policies,
    )
    from cifarbudget.budget import BudgetReport, check_budget, parse_budget
    from cifarbudget.errors import CifarBudgetError
    from cifarbudget.hookspecs import hookimpl, hookspec
    from cifarbudget.plugins import get_plugin_system, get_registry, reset_plugins
    from cifarbudget.registry import lazy
    from cifarbudget.results import RunResult, load_result
    from cifarbudget.runner import run
    from cifarbudget.spec import RunSpec
