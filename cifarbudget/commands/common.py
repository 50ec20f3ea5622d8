"""Helpers shared by every click command: one-line user errors, JSON and table output."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

from cifarbudget.errors import CifarBudgetError

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(func: F) -> F:
    """Turn library errors into ``click.ClickException`` (one line, exit 1)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except CifarBudgetError as exc:
            raise click.ClickException(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None

    return wrapper  # type: ignore[return-value]


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


def table(rows: list[dict[str, Any]], **kwargs: Any) -> str:
    from tabulate import tabulate

    return tabulate(rows, headers="keys", **kwargs) if rows else "(nothing)"


def _parse_aug_params(items: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        aug, dot, param = key.rpartition(".")
        if not sep or not dot or not aug or not param:
            raise click.BadParameter(f"{item!r} is not AUG.KEY=VALUE", param_hint="--aug-param")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.setdefault(aug, {})[param] = value
    return out
