"""``cifarbudget plugins``: installed plugins, their versions and hooks, and those that failed."""

from __future__ import annotations

import click

from cifarbudget.commands.common import echo_json, json_option, table, user_errors


@click.command("plugins")
@json_option("Print JSON instead of a table.")
@user_errors
def command(as_json: bool) -> None:
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
    click.echo(table(rows, disable_numparse=True))  # versions are text: 1.10 is not 1.1
    if report["failed"]:
        click.echo("\nFailed plugins:")
        failed = [
            {"plugin": f["name"], "version": f["version"] or "", "stage": f["stage"], "error": f["error"]}
            for f in report["failed"]
        ]
        click.echo(table(failed, disable_numparse=True))
