"""``cifarbudget sweep``: train a grid of configurations (a thin layer over :mod:`cifarbudget.sweep`)."""

from __future__ import annotations

from typing import Any

import click

from cifarbudget.commands.common import UserError, echo_json, json_option, table, user_errors
from cifarbudget.commands.options import SpecCommand, setting_values, spec_values, sweep_options
from cifarbudget.errors import EXIT_OVER_BUDGET
from cifarbudget.progress import format_duration, plural
from cifarbudget.results import FAILED, FINISHED, RUNNING, SETTLED


@click.command("sweep", cls=SpecCommand, spec_options=sweep_options)
@click.option(
    "--file",
    "file_",
    type=click.Path(exists=True, dir_okay=False),
    help="A TOML sweep file ([grid], [fixed], executor, workers); options given here override it.",
)
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
@json_option("Print the outcomes (or, with --dry-run, the plan) as JSON on standard output.")
@user_errors
def command(
    file_: str | None,
    executor: str | None,
    workers: int | None,
    ray_address: str | None,
    dry_run: bool,
    as_json: bool,
    **params: Any,
) -> None:
    """Train every combination of the given models, augmentations, schedules, TTA policies,
    hyperparameters and seeds, and record each run under --results-dir.

    Repeat an option (or give a comma list) for more values. Names are checked before anything
    trains; over-budget models are skipped and reported. Finished runs are skipped and unfinished
    ones resume, so re-running an interrupted sweep completes it. Exits 1 when any run failed or
    diverged, 3 when every run is over budget (nothing could train), 130 when interrupted. See
    docs/sweeps.md.

    \b
    Examples:
      cifarbudget sweep --model resnet20 --model airnet --aug crop-flip --aug cutmix+blur \\
          --sched cosine --seeds 3 --dataset synthetic --epochs 3 --dry-run
      cifarbudget sweep --file sweep.toml --workers 4
      cifarbudget sweep --file sweep.toml --executor ray --ray-address auto
    """
    from cifarbudget.sweep import OVER_BUDGET, Sweep, hyperparameter_keys, plan_sweep, run_sweep
    from cifarbudget.sweep.executors import check_executor

    n_seeds, seed_list = params.pop("n_seeds"), params.pop("seed_list")
    values = spec_values(params, sweep=True)
    settings = setting_values(params)
    fixed: dict[str, Any] = {}
    for key in [k for k, v in values.items() if not isinstance(v, list) or len(v) == 1]:
        value = values.pop(key)  # one value for every run: --budget, --aug-param, a one-value axis
        fixed[key] = value[0] if isinstance(value, list) else value
    grid: dict[str, Any] = values
    if n_seeds is not None and seed_list:
        raise click.UsageError("give --seeds N or --seed S (repeatable), not both")
    if n_seeds is not None:
        grid["seeds"] = n_seeds
    elif seed_list:
        grid["seed"] = list(seed_list)
    base = Sweep.from_toml(file_) if file_ else Sweep()
    the_sweep = base.with_overrides(
        grid, fixed, executor=executor, workers=workers, ray_address=ray_address, **settings
    )

    planned = plan_sweep(the_sweep)
    keys = hyperparameter_keys(the_sweep)
    if any(p.within_budget and p.state not in SETTLED for p in planned):  # runs to train: an executor
        # Ray missing is the same line in a dry run as in the real run, which also probes the address
        # now, before any dataset downloads (a dry run does not: the cluster may not be up yet)
        check_executor(the_sweep, connect=not dry_run)
    if dry_run:
        rows = _plan_rows(planned, keys)
        if as_json:
            echo_json(rows)
        else:
            _print_plan(rows, planned, the_sweep.results_dir)
        _refuse_if_nothing_fits(planned)
        return

    def progress(outcome: Any, done: int, total: int, eta: float | None) -> None:
        took = f" in {format_duration(outcome.seconds)}" if outcome.seconds else ""
        if outcome.status == OVER_BUDGET:
            what = f"skipped (over budget): {outcome.error}"
        elif outcome.evaluated and outcome.status == FINISHED:
            tta_acc = "" if outcome.test_acc_tta is None else f", test acc TTA {outcome.test_acc_tta:.4f}"
            what = f"evaluated TTA {outcome.spec.tta_key} (no training){tta_acc}{took}"
        elif not outcome.trained and not outcome.evaluated:
            what = f"skipped (already {outcome.status})" + _acc(outcome)
        elif outcome.status == FINISHED:
            what = "finished" + _acc(outcome) + took
        else:
            what = f"{outcome.status.upper()}: {outcome.error}"
        tail = f"  ETA {format_duration(eta)}" if eta is not None and done < total else ""
        click.echo(f"[{done}/{total}] {outcome.run_id}: {what}{tail}", err=True)

    outcomes = run_sweep(
        the_sweep, planned=planned, on_outcome=progress, on_start=lambda m: click.echo(m, err=True)
    )
    if as_json:
        echo_json([o.to_dict() for o in outcomes])
    rows = [
        {
            "run_id": o.run_id,
            "status": (
                f"{o.status} (TTA evaluated)"
                if o.evaluated
                else o.status
                if o.trained or o.status == OVER_BUDGET
                else f"{o.status} (skipped)"
            ),
            "test acc": "" if o.test_acc is None else f"{o.test_acc:.4f}",
            "test acc TTA": "" if o.test_acc_tta is None else f"{o.test_acc_tta:.4f}",
        }
        for o in outcomes
    ]
    if all(not r["test acc TTA"] for r in rows):
        for r in rows:
            del r["test acc TTA"]
    if not as_json:
        click.echo(table(rows, disable_numparse=True))
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    summary = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in counts.items())
    click.echo(
        f"{_lines(len(outcomes), len({o.run_id for o in outcomes}))}: {summary}; {_work(outcomes)}", err=True
    )
    bad = [o for o in outcomes if not o.ok]
    if bad:
        raise click.ClickException(f"{len(bad)} of {len(outcomes)} runs failed or diverged (see the table)")
    _refuse_if_nothing_fits(planned)
    click.echo(f"leaderboard: cifarbudget leaderboard {the_sweep.results_dir}", err=True)


def _refuse_if_nothing_fits(planned: list[Any]) -> None:
    """A sweep in which every run is over budget can train nothing: exit with the over-budget code."""
    if planned and not any(p.within_budget for p in planned):
        raise UserError(
            f"every one of the {len(planned)} runs is over budget: nothing to train", EXIT_OVER_BUDGET
        )


def _lines(lines: int, trainings: int) -> str:
    """``8 runs``, or ``8 runs (4 trainings)`` when TTA lines share trainings."""
    shared = f" ({plural(trainings, 'training')})" if trainings != lines else ""
    return plural(lines, "run") + shared


def _work(outcomes: list[Any]) -> str:
    """What this sweep did: trainings that ended (finished or diverged), TTA evaluations that finished."""
    trained = sum(o.trained and o.status != FAILED for o in outcomes)
    evaluated = sum(o.evaluated and o.status == FINISHED for o in outcomes)
    text = f"this sweep trained {trained}"
    if evaluated:
        text += f" and evaluated {evaluated} more TTA polic{'y' if evaluated == 1 else 'ies'}"
    return text


def _acc(outcome: Any) -> str:
    return "" if outcome.test_acc is None else f", test acc {outcome.test_acc:.4f}"


def _plan_rows(planned: list[Any], keys: list[str]) -> list[dict[str, Any]]:
    from cifarbudget.sweep import hyperparameters

    rows = []
    for p in planned:
        state = p.state
        if state in ("unfinished", RUNNING):
            state += f" ({p.epochs_done}/{p.spec.epochs} epochs)"
        rows.append(
            {
                "run_id": p.run_id,
                "model": p.spec.model,
                "augs": p.spec.pipeline,
                "sched": p.spec.sched,
                "tta": p.spec.tta_key,
                "hyperparameters": hyperparameters(p.spec, keys),
                "seed": p.spec.seed,
                "params": p.report.params,
                "within_budget": p.within_budget,
                "state": state,
            }
        )
    return rows


def _print_plan(rows: list[dict[str, Any]], planned: list[Any], results_dir: str) -> None:
    shown = [
        {**r, "params": f"{r['params']:,}", "within_budget": "ok" if r["within_budget"] else "OVER (skip)"}
        for r in rows
    ]
    for r in shown:
        r["budget"] = r.pop("within_budget")
        r["state"] = r.pop("state")
    click.echo(table(shown, disable_numparse=True, colalign=("left",) * 7 + ("right", "left", "left")))
    over = sorted({p.refusal for p in planned if not p.within_budget})
    for reason in over:
        click.echo(f"skipped, over budget: {reason}", err=True)
    counts: dict[str, int] = {}
    for p in planned:
        if p.within_budget:
            counts[p.state] = counts.get(p.state, 0) + 1
    summary = ", ".join(f"{n} {state}" for state, n in counts.items()) or "nothing to train"
    skipped = sum(not p.within_budget for p in planned)
    click.echo(
        f"{_lines(len(planned), len({p.run_id for p in planned}))} in {results_dir}: {summary}"
        + (f"; {skipped} over budget (skipped)" if skipped else "")
        + "; dry run, nothing trained",
        err=True,
    )
