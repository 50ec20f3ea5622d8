"""The ``cifarbudget`` command line: thin click commands over the library API.

Library errors (:class:`cifarbudget.errors.CifarBudgetError`) become one-line messages and a
non-zero exit at this edge; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from cifarbudget import __version__
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


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", "-V", prog_name="cifarbudget")
def cli() -> None:
    """Benchmark parameter-budgeted CIFAR classifiers.

    \b
    Examples:
      cifarbudget check resnetsmall resnet56
      cifarbudget list models 'resnet*'
      cifarbudget run resnetsmall --aug cutmix --sched cosine --tta
      cifarbudget leaderboard results/runs
    """


# --- check -------------------------------------------------------------------------------------
@cli.command()
@click.argument("models", nargs=-1, required=True)
@click.option("--budget", default="5M", show_default=True, help="Parameter budget: 5M, 4.5M, 500k, 5000000.")
@click.option("--num-classes", default=10, show_default=True, type=int, help="Size of the classifier head.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@user_errors
def check(models: tuple[str, ...], budget: str, num_classes: int, as_json: bool) -> None:
    """Count parameters (torchinfo) and MACs (fvcore) of MODELS and judge them against the budget.

    Exits 1 when any model is over budget (strictly fewer trainable parameters than the budget
    are allowed), printing one line per such model.

    \b
    Examples:
      cifarbudget check resnetsmall
      cifarbudget check 'resnet*' --budget 1M --json
    """
    from cifarbudget.api import list_models
    from cifarbudget.budget import check_budget, format_count, parse_budget

    parse_budget(budget)  # fail on a bad budget before building anything
    names: list[str] = []
    for pattern in models:
        matched = list_models(pattern) if any(c in pattern for c in "*?[") else [pattern]
        if not matched:
            raise click.ClickException(f"no model matches {pattern!r}; see 'cifarbudget list models'")
        names.extend(matched)
    reports = [check_budget(name, budget, num_classes=num_classes) for name in names]
    if as_json:
        echo_json([r.to_dict() for r in reports])
    else:
        rows = [
            {
                "model": r.model,
                "params": f"{r.params:,}",
                "MACs": format_count(r.macs),
                "budget": format_count(r.budget),
                "verdict": "ok" if r.within_budget else "OVER",
            }
            for r in reports
        ]
        click.echo(table(rows, colalign=("left", "right", "right", "right", "left")))
    over = [r for r in reports if not r.within_budget]
    for r in over:
        click.echo(f"Error: {r.reason}", err=True)
    if over:
        sys.exit(1)


# --- list --------------------------------------------------------------------------------------
@cli.command("list")
@click.argument("kind", required=False, default="models",
                type=click.Choice(["models", "augmentations", "schedulers", "tta", "datasets", "recipes"]))
@click.argument("pattern", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@user_errors
def list_(kind: str, pattern: str | None, as_json: bool) -> None:
    """List registered names of KIND (default: models), optionally filtered by a wildcard PATTERN.

    \b
    Examples:
      cifarbudget list
      cifarbudget list models 'resnet*'
      cifarbudget list augmentations
    """
    from cifarbudget.api import describe
    from cifarbudget.plugins import get_registry

    entries = describe(kind, pattern)
    rows = [{"name": e.name, "plugin": e.plugin, "description": e.description} for e in entries]
    if as_json:
        echo_json(rows)
        return
    click.echo(table(rows, maxcolwidths=[None, None, 70]))
    failed = get_registry(kind).failed_plugins
    for name, error in sorted(failed.items()):
        click.echo(f"warning: plugin {name!r} failed to load: {error}", err=True)


# --- plugins -----------------------------------------------------------------------------------
@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@user_errors
def plugins(as_json: bool) -> None:
    """List installed plugins (name, version, hooks) and those that failed to load.

    Builtin plugins come first; third-party plugins are found through the entry-point group
    ``cifarbudget`` (set CIFARBUDGET_DISABLE_PLUGIN_AUTOLOAD=1 to skip them).

    \b
    Examples:
      cifarbudget plugins
      cifarbudget plugins --json
    """
    from cifarbudget.plugins import get_plugin_system

    report = get_plugin_system().report()
    if as_json:
        echo_json(report)
        return
    rows = [
        {
            "plugin": p["name"],
            "version": p["version"] or "",
            "distribution": p["distribution"] or "",
            "hooks": ", ".join(h.removeprefix("cifarbudget_register_") for h in p["hooks"]),
        }
        for p in report["plugins"]
    ]
    click.echo(table(rows))
    if report["failed"]:
        click.echo("\nFailed plugins:")
        click.echo(table([{"plugin": f["name"], "version": f["version"] or "", "stage": f["stage"],
                           "error": f["error"]} for f in report["failed"]]))


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="cifarbudget")


if __name__ == "__main__":
    main()
