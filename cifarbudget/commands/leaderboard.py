"""``cifarbudget leaderboard``: rank the recorded configurations (a thin layer over :mod:`cifarbudget.leaderboard`)."""

from __future__ import annotations

import click

from cifarbudget.commands.common import board_options, json_option, output_option, user_errors

DEFAULT_RESULTS = ("results/runs",)


@click.command("leaderboard")
@board_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["markdown", "csv", "html", "json"]),
    default="markdown",
    show_default=True,
    help="Output format; json has a table schema and round-trips exactly.",
)
@json_option("The same as --format json.")
@output_option("Write to FILE (atomically) instead of standard output.")
@click.option(
    "--sort", help="Column to rank by [default: select_acc_mean, the validation accuracy the ranking uses]."
)
@click.option("--ascending", is_flag=True, help="Sort ascending (e.g. --sort params --ascending).")
@click.option(
    "--pareto",
    type=click.Choice(["params", "macs", "inference-macs"]),
    help="Only the non-dominated configurations of each dataset: more accurate (on validation) and "
    "cheaper in params, MACs, or inference MACs (MACs x the TTA views computed).",
)
@click.option(
    "--ablation",
    "show_ablation",
    is_flag=True,
    help="Instead of the ranking: mean accuracy with vs. without each aug, scheduler, TTA (see --ablation-on).",
)
@click.option(
    "--ablation-on",
    type=click.Choice(["val", "test"]),
    default="val",
    show_default=True,
    help="The accuracy the ablation compares: validation (to choose) or test (to report).",
)
@click.option(
    "--not-ranked",
    "show_not_ranked",
    is_flag=True,
    help="Instead of the ranking: the runs left out (diverged, failed, running, out of budget).",
)
@user_errors
def command(
    results_dirs: tuple[str, ...],
    budget: str | None,
    compute_budget: str | None,
    min_seeds: int,
    datasets: tuple[str, ...],
    models: tuple[str, ...],
    ttas: tuple[str, ...],
    fmt: str,
    as_json: bool,
    output: str | None,
    sort: str | None,
    ascending: bool,
    pareto: str | None,
    show_ablation: bool,
    ablation_on: str,
    show_not_ranked: bool,
) -> None:
    """Rank the configurations recorded under RESULTS_DIRS [default: results/runs].

    Every result.json below the folders is read; runs that differ only in their seed are one
    configuration (a run evaluated with several TTA policies gives one row per policy), reported
    as n, mean, sample std and 95% Student t interval. The board's --budget (default 5M) judges
    every run; only finished runs within it are ranked, per dataset, by mean VALIDATION accuracy
    (test accuracy beside it; runs without a validation split by test, marked). 'tied': not
    significantly different from the best (Welch's t-test, 5%). The markdown output lists the
    runs left out with the reason. Each row's 'rerun' column (JSON, CSV) is the command that
    reproduces its runs. See docs/leaderboard.md for every column.

    \b
    Examples:
      cifarbudget leaderboard
      cifarbudget leaderboard results/runs --budget 1M --model 'resnet*'
      cifarbudget leaderboard results/tune --min-seeds 3
      cifarbudget leaderboard --pareto params --format csv -o pareto.csv
      cifarbudget leaderboard --ablation
      cifarbudget leaderboard --json -o board.json
    """
    from cifarbudget import leaderboard as lb
    from cifarbudget.budget import parse_budget, parse_compute
    from cifarbudget.io import atomic_write_text

    fmt = "json" if as_json else fmt
    limit = parse_budget(budget) if budget is not None else lb.DEFAULT_BUDGET
    loaded = lb.load_board(
        results_dirs or DEFAULT_RESULTS,
        budget=limit,
        compute_budget=parse_compute(compute_budget) if compute_budget else None,
        min_seeds=min_seeds,
        datasets=datasets,
        models=models,
        ttas=ttas,
        sort=sort,
        ascending=ascending,
        warn=lambda w: click.echo(f"warning: {w}", err=True),
    )
    board, left_out = loaded.ranking, loaded.not_ranked
    if show_not_ranked:
        text = lb.format_frame(left_out, fmt)
    elif show_ablation:
        text = lb.format_frame(lb.ablation(board, metric=ablation_on), fmt)
    else:
        frame = lb.pareto(board, by=pareto) if pareto else board  # keeps each row's overall rank
        text = lb.format_frame(frame, fmt)
        if fmt == "markdown" and not left_out.empty:
            runs_word = "run" if len(left_out) == 1 else "runs"
            text += f"\nNot ranked ({len(left_out)} {runs_word}):\n\n" + lb.format_frame(left_out, fmt)
        elif not left_out.empty:
            click.echo(f"note: {len(left_out)} run(s) not ranked; list them with --not-ranked", err=True)
    if output:
        atomic_write_text(output, text)
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)
