"""The library's public functions over the registries (``import cifarbudget`` re-exports them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cifarbudget.plugins import get_registry
from cifarbudget.registry import Entry, Registry

if TYPE_CHECKING:
    from torch import nn


def models() -> Registry:
    return get_registry("models")


def augmentations() -> Registry:
    return get_registry("augmentations")


def schedulers() -> Registry:
    return get_registry("schedulers")


def tta_policies() -> Registry:
    return get_registry("tta")


def datasets() -> Registry:
    return get_registry("datasets")


def optimizers() -> Registry:
    """Optimizer factories: ``optimizers().create(name, model, lr=..., momentum=..., weight_decay=...,
    nesterov=..., **opt_params)`` returns a ``torch.optim.Optimizer``."""
    return get_registry("optimizers")


def losses() -> Registry:
    return get_registry("losses")


def recipes() -> Registry:
    return get_registry("recipes")


def check_model_params(name: str, params: Mapping[str, Any]) -> None:
    """One line (:class:`~cifarbudget.errors.RunError`) for an option the registered model ``name``
    does not take, or one the run sets itself (``num_classes``: the data's class count)."""
    from cifarbudget.identity import RUN_SUPPLIED
    from cifarbudget.registry import check_params

    check_params(f"model {name!r}", models().get(name).factory, params, RUN_SUPPLIED["models"])


def create_model(name: str, num_classes: int = 10, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with fresh weights."""
    from torch import nn

    from cifarbudget.registry import call_with_params

    factory = models().get(name).factory
    if kwargs:
        check_model_params(name, kwargs)
    # an option the model does not take, or a value it cannot use, caught by the factory itself
    model = call_with_params(f"model {name!r}", factory, kwargs, num_classes=num_classes)
    if not isinstance(model, nn.Module):
        from cifarbudget.errors import PluginError

        raise PluginError(
            f"model {name!r}: its factory returned {type(model).__name__}, not a torch.nn.Module"
        )
    return model


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, naturally sorted, filtered by a shell wildcard (``"resnet*"``)."""
    return models().names(pattern)


def describe(kind: str, pattern: str | None = None) -> list[Entry]:
    """Entries (name, description, providing plugin) of one registry kind."""
    return get_registry(kind).entries(pattern)
