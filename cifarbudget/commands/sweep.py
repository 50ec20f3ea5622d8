"""``cifarbudget sweep``: train a grid of configurations (a thin layer over :mod:`cifarbudget.sweep`)."""

from __future__ import annotations

import datetime
from typing import Any

import click

from cifarbudget.commands.common import user_errors

# command-line option -> grid key; each takes comma lists and may be repeated (--aug: one pipeline each)
_AXES = {
    "models": "model",
    "augs": "augs",
    "scheds": "sched",
    "ttas": "tta",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "optimizer": "optimizer",
    "lr": "lr",
    "momentum": "momentum",
    "weight_decay": "weight_decay",
    "label_smoothing": "label_smoothing",
    "ema": "ema",
    "warmup": "warmup_epochs",
}


def _axis_option(name: str, help_: str, dest: str | None = None) -> Any:
    decls = (name, dest) if dest else (name,)
    return click.option(
        *decls, multiple=True, metavar="V[,V...]", help=f"{help_} Repeatable, or a comma list."
    )


def _split(values: tuple[str, ...]) -> list[str]:
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return str(datetime.timedelta(seconds=round(seconds)))


@click.command("sweep")
@click.option(
    "--file",
    "file_",
    type=click.Path(exists=True, dir_okay=False),
    help="A TOML sweep file ([grid], [fixed], executor, workers); options given here override it.",
)
@click.option("--model", "models", multiple=True, help="A model (repeatable, or comma list).")
@click.option(
    "--aug",
    "augs",
    multiple=True,
    help="One augmentation pipeline per --aug, '+'-joined: crop-flip, cutmix, cutmix+blur+erasing, none.",
)
@click.option("--sched", "scheds", multiple=True, help="An LR schedule (repeatable, or comma list).")
@click.option(
    "--tta", "ttas", multiple=True, help="A TTA policy: none, flip, ... (repeatable, or comma list)."
)
@click.option("--seeds", "n_seeds", type=int, help="Run seeds 0..N-1 of every configuration.")
@click.option(
    "--seed", "seed_list", multiple=True, type=int, help="Run this seed (repeatable); or use --seeds."
)
@_axis_option("--epochs", "Training epochs.")
@_axis_option("--batch-size", "Batch size.")
@_axis_option("--optimizer", "sgd or adamw.")
@_axis_option("--lr", "Peak learning rate, e.g. 0.05,0.1.")
@_axis_option("--momentum", "SGD momentum.")
@_axis_option("--wd", "Weight decay, e.g. 5e-4,1e-3.", "weight_decay")
@_axis_option("--label-smoothing", "Label smoothing, e.g. 0,0.1.")
@_axis_option("--ema", "Model EMA decay (0 = off).")
@_axis_option("--warmup", "Linear LR warmup, in epochs.")
@click.option("--nesterov/--no-nesterov", default=None, help="Nesterov momentum, for every run.")
@click.option(
    "--aug-param",
    "aug_params",
    multiple=True,
    metavar="AUG.KEY=VALUE",
    help="Set one augmentation parameter for every run, e.g. cutmix.p=0.5 (repeatable).",
)
@click.option("--recipe", help="Base recipe of every run; the grid and fixed options override it.")
@click.option("--dataset", help="Dataset of every run (default cifar10).")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=str),
    help="Where the dataset lives [default: $CIFARBUDGET_DATA or ~/.cache/cifarbudget/data].",
)
@click.option("--download", is_flag=True, default=None, help="Download the dataset if it is missing.")
@click.option("--train-subset", type=int, help="Train every run on this many images (default all).")
@click.option("--val-size", type=int, help="Held-out validation images (default 5000).")
@click.option(
    "--budget", help="Parameter budget (default 5M); over-budget models are skipped, never trained."
)
@click.option(
    "--results-dir",
    type=click.Path(file_okay=False),
    help="One folder per run is written here [default: results/runs].",
)
@click.option(
    "--device", help="cuda, cpu, ... [default: the best available; local workers are pinned to GPUs]."
)
@click.option("--amp/--no-amp", default=None, help="bf16 autocast [default: on for CUDA].")
@click.option("--channels-last/--no-channels-last", default=None, help="[default: on for CUDA].")
@click.option("--compile", "compile_", is_flag=True, default=None, help="torch.compile every model.")
@click.option("--executor", type=click.Choice(["local", "ray"]), help="Where runs train [default: local].")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Local: worker processes [default 1]. Ray: most runs at once [default: as resources allow].",
)
@click.option(
    "--ray-address", help="Ray cluster to use: 'auto', ray://HOST:PORT [default: a local instance]."
)
@click.option(
    "--dry-run", is_flag=True, help="Print the grid with budget verdicts and states; train nothing."
)
@user_errors
def sweep(
    file_: str | None,
    n_seeds: int | None,
    seed_list: tuple[int, ...],
    nesterov: bool | None,
    aug_params: tuple[str, ...],
    dataset: str | None,
    train_subset: int | None,
    val_size: int | None,
    budget: str | None,
    compile_: bool | None,
    dry_run: bool,
    **options: Any,
) -> None:
    """Train every combination of the given models, augmentations, schedules, TTA policies,
    hyperparameters and seeds, and record each run under --results-dir.

    Repeat an option (or give a comma list) for more values. Names are checked before anything
    trains; over-budget models are skipped and reported. Finished runs are skipped and unfinished
    ones resume, so re-running an interrupted sweep completes it. Exits 1 when any run failed or
    diverged. See docs/sweeps.md.

    \b
    Examples:
      cifarbudget sweep --model resnet20 --model airnet --aug crop-flip --aug cutmix+blur \\
          --sched cosine --seeds 3 --dataset synthetic --epochs 3 --dry-run
      cifarbudget sweep --file sweep.toml --workers 4
      cifarbudget sweep --file sweep.toml --executor ray --ray-address auto
    """
    from cifarbudget.commands.common import _parse_aug_params, table
    from cifarbudget.sweep import Sweep, SweepError, hyperparameter_keys, plan_sweep, run_sweep

    grid: dict[str, Any] = {}
    for option, key in _AXES.items():
        values = options.pop(option)
        if values:
            grid[key] = list(values) if option == "augs" else _split(values)
    if n_seeds is not None and seed_list:
        raise SweepError("give --seeds N or --seed S (repeatable), not both")
    if n_seeds is not None:
        grid["seeds"] = n_seeds
    elif seed_list:
        grid["seed"] = list(seed_list)
    fixed: dict[str, Any] = {
        k: v
        for k, v in {
            "dataset": dataset,
            "train_subset": train_subset,
            "val_size": val_size,
            "budget": budget,
            "nesterov": nesterov,
        }.items()
        if v is not None
    }
    if aug_params:
        fixed["aug_params"] = _parse_aug_params(aug_params)
    base = Sweep.from_toml(file_) if file_ else Sweep()
    the_sweep = base.with_overrides(grid, fixed, compile=compile_, **options)

    planned = plan_sweep(the_sweep)
    if dry_run:
        _print_plan(planned, hyperparameter_keys(the_sweep), the_sweep.results_dir)
        return

    def progress(outcome: Any, done: int, total: int, eta: float | None) -> None:
        if outcome.status == "over_budget":
            what = f"skipped (over budget): {outcome.error}"
        elif not outcome.trained:
            what = f"skipped (already {outcome.status})" + _acc(outcome)
        elif outcome.status == "finished":
            what = (
                "finished" + _acc(outcome) + (f" in {_duration(outcome.seconds)}" if outcome.seconds else "")
            )
        else:
            what = f"{outcome.status.upper()}: {outcome.error}"
        tail = f"  ETA {_duration(eta)}" if eta is not None and done < total else ""
        click.echo(f"[{done}/{total}] {outcome.run_id}: {what}{tail}", err=True)

    try:
        outcomes = run_sweep(
            the_sweep, planned=planned, on_outcome=progress, on_start=lambda m: click.echo(m, err=True)
        )
    except KeyboardInterrupt:
        click.echo("interrupted: run the same command again to resume where it stopped", err=True)
        raise SystemExit(130) from None
    rows = [
        {
            "run_id": o.run_id,
            "status": o.status if o.trained or o.status == "over_budget" else f"{o.status} (skipped)",
            "test acc": "" if o.test_acc is None else f"{o.test_acc:.4f}",
            "test acc TTA": "" if o.test_acc_tta is None else f"{o.test_acc_tta:.4f}",
        }
        for o in outcomes
    ]
    if all(not r["test acc TTA"] for r in rows):
        for r in rows:
            del r["test acc TTA"]
    click.echo(table(rows, disable_numparse=True))
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    trained = sum(o.trained for o in outcomes)
    summary = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in counts.items())
    click.echo(f"{len(outcomes)} runs: {summary}; {trained} trained by this sweep", err=True)
    bad = [o for o in outcomes if not o.ok]
    if bad:
        raise click.ClickException(f"{len(bad)} of {len(outcomes)} runs failed or diverged (see the table)")
    click.echo(f"leaderboard: cifarbudget leaderboard {the_sweep.results_dir}", err=True)


def _acc(outcome: Any) -> str:
    return "" if outcome.test_acc is None else f", test acc {outcome.test_acc:.4f}"


def _print_plan(planned: list[Any], keys: list[str], results_dir: str) -> None:
    from cifarbudget.commands.common import table
    from cifarbudget.sweep import hyperparameters

    rows = []
    for p in planned:
        state = p.state
        if state in ("unfinished", "running"):
            state += f" ({p.epochs_done}/{p.spec.epochs} epochs)"
        rows.append(
            {
                "run_id": p.run_id,
                "model": p.spec.model,
                "augs": "+".join(p.spec.augs) or "none",
                "sched": p.spec.sched,
                "tta": p.spec.tta,
                "hyperparameters": hyperparameters(p.spec, keys),
                "seed": p.spec.seed,
                "params": f"{p.report.params:,}",
                "budget": "ok" if p.within_budget else "OVER (skip)",
                "state": state,
            }
        )
    click.echo(table(rows, disable_numparse=True, colalign=("left",) * 7 + ("right", "left", "left")))
    over = sorted({p.report.reason for p in planned if not p.within_budget})
    for reason in over:
        click.echo(f"skipped, over budget: {reason}", err=True)
    counts: dict[str, int] = {}
    for p in planned:
        if p.within_budget:
            counts[p.state] = counts.get(p.state, 0) + 1
    summary = ", ".join(f"{n} {state}" for state, n in counts.items()) or "nothing to train"
    skipped = sum(not p.within_budget for p in planned)
    click.echo(
        f"{len(planned)} runs in {results_dir}: {summary}"
        + (f"; {skipped} over budget (skipped)" if skipped else "")
        + "; dry run, nothing trained",
        err=True,
    )
