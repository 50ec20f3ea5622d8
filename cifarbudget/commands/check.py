"""``cifarbudget check``: parameters, MACs and the budget verdict of models."""

from __future__ import annotations

import sys

import click

from cifarbudget.commands.common import (
    echo_json,
    expand_model_patterns,
    json_option,
    num_classes_option,
    table,
    user_errors,
)
from cifarbudget.errors import EXIT_OVER_BUDGET


@click.command("check")
@click.argument("models", nargs=-1, required=True)
@click.option("--budget", default="5M", show_default=True, help="Parameter budget: 5M, 4.5M, 500k, 5000000.")
@num_classes_option()
@click.option(
    "--model-param",
    "model_params",
    multiple=True,
    metavar="KEY=VALUE",
    help="A model option, as in 'run --model-param' (e.g. drop_path=0.1, widths=[32,64,128]); repeatable.",
)
@json_option("Print a JSON list instead of a table.")
@user_errors
def command(
    models: tuple[str, ...], budget: str, num_classes: int, model_params: tuple[str, ...], as_json: bool
) -> None:
    """Count parameters and MACs of MODELS and judge them against the budget.

    Parameters are the unique trainable parameters (shared tensors once), cross-checked with
    torchinfo; MACs are fvcore's conv + linear count for one 32x32 image. Strictly fewer
    trainable parameters than the budget are allowed. Exits 3 when any model is over budget,
    printing one line per such model.

    \b
    Examples:
      cifarbudget check resnetsmall
      cifarbudget check 'resnet*' --budget 1M --json
    """
    from cifarbudget.budget import check_budget, format_count, parse_budget
    from cifarbudget.spec import parse_flat_params

    parse_budget(budget)  # fail on a bad budget before building anything
    options = parse_flat_params(model_params, "--model-param")
    reports = [
        check_budget(name, budget, num_classes=num_classes, model_params=options)
        for name in expand_model_patterns(models)
    ]
    if as_json:
        echo_json([r.to_dict() for r in reports])
    else:
        rows = [
            {
                "model": r.model,
                "params": f"{r.params:,}",
                "MACs": format_count(r.macs),
                # a budget the short form cannot show exactly is shown whole, as the parameters are
                "budget": _short_if_exact(r.budget),
                "verdict": "ok" if r.within_budget else "OVER",
            }
            for r in reports
        ]
        click.echo(table(rows, colalign=("left", "right", "right", "right", "left")))
    over = [r for r in reports if not r.within_budget]
    for r in over:
        click.echo(f"Error: {r.reason}", err=True)
    if over:
        sys.exit(EXIT_OVER_BUDGET)


def _short_if_exact(budget: int) -> str:
    """``5.00M`` for 5,000,000, but ``269,722`` (not ``269.72k``) where the short form rounds."""
    from cifarbudget.budget import format_count, parse_budget

    short = format_count(budget)
    return short if parse_budget(short) == budget else f"{budget:,}"
