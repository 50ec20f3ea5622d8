"""``cifarbudget tune``: an Optuna search over seed-averaged, recorded runs (thin over :mod:`cifarbudget.tune`).

The RunSpec options (``--epochs``, ``--dataset``, ...) are generated from the spec's field
metadata as in ``run``; given here they fix that field for every trial (overriding the space
file's ``[fixed]``). ``--seed`` does not exist (``--seeds N`` trains seeds 0..N-1 of each trial)
and neither does ``--allow-over-budget`` (over-budget trials are pruned, never trained).
"""

from __future__ import annotations

from typing import Any

import click

from cifarbudget.commands.common import echo_json, json_option, table, user_errors
from cifarbudget.commands.options import SpecCommand, run_options, setting_values, spec_values


def tune_options() -> list[click.Option]:
    """``run``'s RunSpec options, plus ``--model``, minus ``--seed`` and ``--allow-over-budget``."""
    model = click.Option(
        ["--model", "model"],
        help="Model name for every trial [default: the space file's model, in [fixed] or [params]].",
    )
    return [model, *(o for o in run_options() if o.name not in ("seed", "allow_over_budget"))]


@click.command("tune", cls=SpecCommand, spec_options=tune_options)
@click.option(
    "--space",
    required=True,
    type=click.Path(dir_okay=False, path_type=str),
    help="The search space: a TOML file with [params] (what to search) and [fixed] (what every run shares).",
)
@click.option(
    "--seeds",
    required=True,
    type=click.IntRange(min=1),
    help="Train seeds 0..N-1 of every trial; the objective is their mean validation accuracy.",
)
@click.option(
    "--trials",
    required=True,
    type=click.IntRange(min=1),
    help="Finished (complete or pruned) trials the study should have; a rerun continues up to it.",
)
@click.option("--study-name", help="The study's name [default: the space file's stem].")
@click.option(
    "--storage",
    metavar="URL",
    help="An Optuna storage URL (sqlite:///..., postgresql://...) "
    "[default: sqlite:///<results-dir>/tune-<study>.db].",
)
@click.option(
    "--sampler-seed",
    type=int,
    help="Seed of the TPE sampler, offset by the trials the study has (reproducible searches) [default: random].",
)
@click.option(
    "--prune/--no-prune",
    default=True,
    show_default=True,
    help="Stop trials whose validation accuracy is below the median of the finished ones (median rule).",
)
@click.option(
    "--prune-startup",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="Completed trials before any trial may be pruned (Optuna's n_startup_trials).",
)
@click.option(
    "--prune-warmup",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Epochs of the first seed before a trial may be pruned (Optuna's n_warmup_steps).",
)
@click.option("--quiet", is_flag=True, help="No progress bar (messages: see cifarbudget -q/-v).")
@json_option("Print the study (best trial with its params, value and run ids, and every trial) as JSON.")
@user_errors
def command(
    space: str,
    seeds: int,
    trials: int,
    study_name: str | None,
    storage: str | None,
    sampler_seed: int | None,
    prune: bool,
    prune_startup: int,
    prune_warmup: int,
    quiet: bool,
    as_json: bool,
    **params: Any,
) -> None:
    """Search hyperparameters with Optuna; every trial trains seeds 0..N-1 as normal recorded runs.

    The objective is the mean validation accuracy over the seeds (maximised). Each run goes into
    --results-dir like 'cifarbudget run' (the leaderboard and report see them); a run that already
    finished is never trained again. Trials over the parameter budget are pruned before training;
    the median rule prunes trials whose per-epoch validation accuracy lags. The study lives in
    SQLite in the results folder (or --storage URL): rerun the same command to continue it after an
    interruption (trials left running by a killed process are marked failed and retried), or with a
    larger --trials to search further. Run options given here (--epochs, --dataset, --device,
    ...) fix that field for every trial, over the space file's [fixed]; they must not name a
    searched field. See docs/examples/tune.toml for the space file.

    \b
    Examples:
      cifarbudget tune --space docs/examples/tune.toml --seeds 2 --trials 20
      cifarbudget tune --space space.toml --seeds 3 --trials 40 --epochs 10 --device cuda
      cifarbudget tune --space space.toml --seeds 2 --trials 50 --storage postgresql://host/db
    """
    from cifarbudget.tune import tune

    options = spec_values(params, sweep=False)
    settings = setting_values(params)
    result = tune(
        space,
        seeds=seeds,
        trials=trials,
        study_name=study_name,
        storage=storage,
        sampler_seed=sampler_seed,
        prune=prune,
        prune_startup=prune_startup,
        prune_warmup=prune_warmup,
        progress=not quiet,
        options=options,
        **settings,
    )
    if as_json:
        echo_json(result.to_dict())
        return
    click.echo(table(result.table_rows()))
    click.echo(result.summary())
