"""``cifarbudget list``: registered names of one kind, by which plugin."""

from __future__ import annotations

import click

from cifarbudget.commands.common import echo_json, json_option, table, user_errors
from cifarbudget.plugins import KINDS


@click.command("list")
@click.argument("kind", required=False, default="models", type=click.Choice(list(KINDS)))
@click.argument("pattern", required=False)
@json_option("Print JSON instead of a table.")
@user_errors
def command(kind: str, pattern: str | None, as_json: bool) -> None:
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
    for name, error in sorted(get_registry(kind).failed_plugins.items()):
        click.echo(f"warning: plugin {name!r} failed to load: {error}", err=True)
