"""``cifarbudget run``: train one configuration, evaluate it, record it.

The RunSpec options (``--aug``, ``--lr``, ``--epochs``, ...) are generated from the spec's field
metadata (:mod:`cifarbudget.commands.options`); only the options about this command itself are
declared here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cifarbudget.commands.common import echo_json, json_option, user_errors
from cifarbudget.commands.options import SpecCommand, run_options, setting_values, spec_values
from cifarbudget.results import FINISHED


@click.command("run", cls=SpecCommand, spec_options=run_options)
@click.argument("model", required=False)
@click.option(
    "--config",
    "config",
    type=click.Path(exists=True, dir_okay=False, path_type=str),
    help="A TOML file of run options: the keys of a sweep file, one value each "
    "(docs/examples/run.toml); options given here override it.",
)
@click.option(
    "--from",
    "from_run",
    type=click.Path(exists=True, path_type=str),
    help="Rerun a recorded run exactly: its folder or result.json (options given here override it, e.g. --seed).",
)
@click.option(
    "--restart", is_flag=True, help="Discard an existing record and checkpoint of this spec and start over."
)
@click.option("--quiet", is_flag=True, help="No progress bar (messages: see cifarbudget -q/-v).")
@json_option("Print the result record (with its run folder) as JSON.")
@user_errors
def command(
    model: str | None,
    config: str | None,
    from_run: str | None,
    restart: bool,
    quiet: bool,
    as_json: bool,
    **params: Any,
) -> None:
    """Train MODEL (or a --recipe), evaluate it, and record the result under --results-dir.

    The budget is checked on the model as it will be trained before any image is decoded.
    Model selection uses a held-out validation split; the test split is evaluated once, at the
    end (with and without TTA). Re-running the same command resumes an unfinished run or prints
    the finished one. Exit codes: 0 finished, 1 error or divergence, 2 usage error, 3 over budget, 130 interrupted
    (Ctrl-C), 143 terminated (SIGTERM).

    \b
    Examples:
      cifarbudget run resnetsmall --aug cutmix --sched cosine --tta
      cifarbudget run resnet20 --aug crop-flip+cutmix --dataset synthetic --epochs 3
      cifarbudget run resnet20 --dataset imagefolder --data-dir ../shared/data --epochs 2
      cifarbudget run --recipe paper-initial --data-dir ~/data/cifar10 --download
      cifarbudget run --from results/runs/RUN --seed 1 --results-dir reruns
    """
    from cifarbudget.runner import recorded_run_options
    from cifarbudget.runner import run as run_api
    from cifarbudget.spec import inherited_params, merge_options

    options = spec_values(params, sweep=False)
    settings = setting_values(params)
    if config is not None:
        if from_run is not None:
            raise click.UsageError("give --config or --from, not both")
        model, options, settings = _with_config(config, model, options, settings)
    if from_run is not None:
        if model is not None or settings.get("recipe") is not None:
            raise click.UsageError("--from reruns a recorded run: give no MODEL and no --recipe with it")
        recorded, recorded_settings = recorded_run_options(from_run)
        # the record's parameters stay, key by key, unless a changed component or pipeline drops them
        recorded.update(inherited_params(f"run {Path(from_run).name}", recorded, options))
        options = merge_options(recorded, options)
        model = options.pop("model")
        for key, value in recorded_settings.items():  # the data folder, aug_chunk: unless given here
            if settings.get(key) is None:
                settings[key] = value
    if model is None and settings.get("recipe") is None:
        raise click.UsageError(
            "no model given: pass a MODEL argument or --recipe NAME (see 'cifarbudget list recipes')"
        )
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


def _with_config(
    path: str, model: str | None, options: dict[str, Any], settings: dict[str, Any]
) -> tuple[str | None, dict[str, Any], dict[str, Any]]:
    """Options from a run config file (a sweep file of one point), overridden by the command line."""
    from cifarbudget.errors import RunError
    from cifarbudget.sweep.grid import Sweep

    base = Sweep.from_toml(path, flat=True)
    if any(len(values) != 1 for values in base.grid.values()):
        several = sorted(k for k, values in base.grid.items() if len(values) != 1)
        raise RunError(
            f"{path}: a run config has one value per key ({', '.join(several)} have several): use sweep"
        )
    values = {**{k: v[0] for k, v in base.grid.items()}, **base.fixed}
    if "aug_params" in values and isinstance(values["aug_params"], str):
        import json

        values["aug_params"] = json.loads(values["aug_params"])
    if "seed" in values and isinstance(values["seed"], list):
        values["seed"] = values["seed"][0]
    file_settings = {
        "recipe": base.recipe,
        "data_dir": base.data_dir,
        "download": base.download or None,
        "results_dir": base.results_dir if base.results_dir != "results/runs" else None,
        "device": base.device,
        "amp": base.amp,
        "channels_last": base.channels_last,
        "compile": base.compile or None,
        "deterministic": base.deterministic or None,
        "aug_chunk": base.aug_chunk if base.aug_chunk != 1 else None,
        "track": base.track or None,
    }
    merged_settings = {**file_settings, **{k: v for k, v in settings.items() if v is not None}}
    model = model or values.pop("model", None)
    values.pop("model", None)
    from cifarbudget.spec import merge_options

    return model, merge_options(values, options), merged_settings
