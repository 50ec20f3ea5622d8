"""``cifarbudget run``: train one configuration, evaluate it, record it.

The RunSpec options (``--aug``, ``--lr``, ``--epochs``, ...) are generated from the spec's field
metadata (:mod:`cifarbudget.commands.options`); only the options about this command itself are
declared here.
"""

from __future__ import annotations

from typing import Any

import click

from cifarbudget.commands.common import echo_json, json_option, user_errors
from cifarbudget.commands.options import SpecCommand, run_options, setting_values, spec_values
from cifarbudget.results import FINISHED


@click.command("run", cls=SpecCommand, spec_options=run_options)
@click.argument("model", required=False)
@click.option(
    "--restart", is_flag=True, help="Discard an existing record and checkpoint of this spec and start over."
)
@click.option("--quiet", is_flag=True, help="No progress bar (messages: see cifarbudget -q/-v).")
@json_option("Print the result record (with its run folder) as JSON.")
@user_errors
def command(model: str | None, restart: bool, quiet: bool, as_json: bool, **params: Any) -> None:
    """Train MODEL (or a --recipe), evaluate it, and record the result under --results-dir.

    The budget is checked on the model as it will be trained before any image is decoded.
    Model selection uses a held-out validation split; the test split is evaluated once, at the
    end (with and without TTA). Re-running the same command resumes an unfinished run or prints
    the finished one. Exit codes: 0 finished, 1 error or divergence, 3 over budget, 130 interrupted.

    \b
    Examples:
      cifarbudget run resnetsmall --aug cutmix --sched cosine --tta
      cifarbudget run resnet20 --aug crop-flip+cutmix --dataset synthetic --epochs 3
      cifarbudget run resnet20 --dataset imagefolder --data-dir ../shared/data --epochs 2
      cifarbudget run --recipe paper-initial --data-dir ~/data/cifar10 --download
    """
    from cifarbudget.runner import run as run_api

    options = spec_values(params, sweep=False)
    settings = setting_values(params)
    result = run_api(
        model,
        restart=restart,
        progress=not quiet,
        **{k: v for k, v in settings.items() if v is not None},
        **options,
    )
    if as_json:
        echo_json({**result.to_dict(), "run_dir": str(result.run_dir) if result.run_dir else None})
    else:
        click.echo(result.summary())
    if result.status != FINISHED:
        raise click.ClickException(f"run {result.status}: {result.error or 'see ' + str(result.run_dir)}")
