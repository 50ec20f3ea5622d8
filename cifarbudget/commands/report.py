"""``cifarbudget report``: one self-contained HTML page about a set of runs."""

from __future__ import annotations

import click

from cifarbudget.commands.common import board_options, echo_json, json_option, output_option, user_errors
from cifarbudget.progress import plural

DEFAULT_RESULTS = ("results/runs",)


@click.command("report")
@board_options
@output_option("The HTML file to write.", default="report.html")
@click.option(
    "--top",
    default=5,
    show_default=True,
    type=click.IntRange(1, 20),
    help="Training curves of this many top configurations.",
)
@json_option("Print what was written (path, runs, configurations, warnings) as JSON.")
@user_errors
def command(
    results_dirs: tuple[str, ...],
    budget: str | None,
    compute_budget: str | None,
    min_seeds: int,
    datasets: tuple[str, ...],
    models: tuple[str, ...],
    ttas: tuple[str, ...],
    output: str,
    top: int,
    as_json: bool,
) -> None:
    """Write one self-contained HTML page about the runs under RESULTS_DIRS [default: results/runs].

    The page holds the leaderboard, accuracy vs. parameters with the Pareto front and the budget
    line, validation-accuracy curves of the top configurations, the confusion matrix of the best
    run, the ablation and the provenance. Plots are embedded PNGs: the page loads nothing.

    \b
    Examples:
      cifarbudget report
      cifarbudget report results/runs -o report.html --budget 5M
      cifarbudget report runs-a runs-b --dataset cifar10 --top 3
    """
    from cifarbudget.budget import parse_budget, parse_compute
    from cifarbudget.report import DEFAULT_BUDGET, write_report

    summary = write_report(
        results_dirs or DEFAULT_RESULTS,
        output,
        budget=parse_budget(budget) if budget is not None else DEFAULT_BUDGET,
        compute_budget=parse_compute(compute_budget) if compute_budget else None,
        min_seeds=min_seeds,
        datasets=datasets,
        models=models,
        ttas=ttas,
        top=top,
        warn=lambda w: click.echo(f"warning: {w}", err=True),  # as they come, also when nothing loads
    )
    if as_json:
        echo_json(
            {
                "output": str(summary.path),
                "runs": summary.n_runs,
                "ranked_configurations": summary.n_ranked_configs,
                "warnings": summary.warnings,
            }
        )
    else:
        click.echo(
            f"wrote {output}: {plural(summary.n_runs, 'run')}, "
            f"{plural(summary.n_ranked_configs, 'ranked configuration')}"
        )
