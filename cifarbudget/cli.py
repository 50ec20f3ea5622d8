"""The ``cifarbudget`` command line: thin click commands over the library API.

Library errors (:class:`cifarbudget.errors.CifarBudgetError`) become one-line messages and a
non-zero exit at this edge; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from cifarbudget import __version__
from cifarbudget.commands.common import _parse_aug_params, echo_json, table, user_errors


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", "-V", prog_name="cifarbudget")
def cli() -> None:
    """Benchmark parameter-budgeted CIFAR classifiers.

    \b
    Examples:
      cifarbudget check resnetsmall resnet56
      cifarbudget list models 'resnet*'
      cifarbudget run resnetsmall --aug cutmix --sched cosine --tta
      cifarbudget leaderboard results/runs
    """


# --- check -------------------------------------------------------------------------------------
@cli.command()
@click.argument("models", nargs=-1, required=True)
@click.option("--budget", default="5M", show_default=True, help="Parameter budget: 5M, 4.5M, 500k, 5000000.")
@click.option("--num-classes", default=10, show_default=True, type=int, help="Size of the classifier head.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@user_errors
def check(models: tuple[str, ...], budget: str, num_classes: int, as_json: bool) -> None:
    """Count parameters (torchinfo) and MACs (fvcore) of MODELS and judge them against the budget.

    Exits 1 when any model is over budget (strictly fewer trainable parameters than the budget
    are allowed), printing one line per such model.

    \b
    Examples:
      cifarbudget check resnetsmall
      cifarbudget check 'resnet*' --budget 1M --json
    """
    from cifarbudget.api import list_models
    from cifarbudget.budget import check_budget, format_count, parse_budget

    parse_budget(budget)  # fail on a bad budget before building anything
    names: list[str] = []
    for pattern in models:
        matched = list_models(pattern) if any(c in pattern for c in "*?[") else [pattern]
        if not matched:
            raise click.ClickException(f"no model matches {pattern!r}; see 'cifarbudget list models'")
        names.extend(matched)
    reports = [check_budget(name, budget, num_classes=num_classes) for name in names]
    if as_json:
        echo_json([r.to_dict() for r in reports])
    else:
        rows = [
            {
                "model": r.model,
                "params": f"{r.params:,}",
                "MACs": format_count(r.macs),
                "budget": format_count(r.budget),
                "verdict": "ok" if r.within_budget else "OVER",
            }
            for r in reports
        ]
        click.echo(table(rows, colalign=("left", "right", "right", "right", "left")))
    over = [r for r in reports if not r.within_budget]
    for r in over:
        click.echo(f"Error: {r.reason}", err=True)
    if over:
        sys.exit(1)


# --- list --------------------------------------------------------------------------------------
@cli.command("list")
@click.argument(
    "kind",
    required=False,
    default="models",
    type=click.Choice(["models", "augmentations", "schedulers", "tta", "datasets", "recipes"]),
)
@click.argument("pattern", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@user_errors
def list_(kind: str, pattern: str | None, as_json: bool) -> None:
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
    failed = get_registry(kind).failed_plugins
    for name, error in sorted(failed.items()):
        click.echo(f"warning: plugin {name!r} failed to load: {error}", err=True)


# --- plugins -----------------------------------------------------------------------------------
@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@user_errors
def plugins(as_json: bool) -> None:
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
    click.echo(table(rows))
    if report["failed"]:
        click.echo("\nFailed plugins:")
        click.echo(
            table(
                [
                    {
                        "plugin": f["name"],
                        "version": f["version"] or "",
                        "stage": f["stage"],
                        "error": f["error"],
                    }
                    for f in report["failed"]
                ]
            )
        )


# --- run ---------------------------------------------------------------------------------------
@cli.command()
@click.argument("model", required=False)
@click.option(
    "--recipe", help="Start from a named preset (see 'cifarbudget list recipes'); options override it."
)
@click.option("--dataset", help="Dataset name (default cifar10; see 'cifarbudget list datasets').")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=str),
    help="Where the dataset lives or is downloaded to [default: $CIFARBUDGET_DATA or ~/.cache/cifarbudget/data].",
)
@click.option("--download", is_flag=True, help="Download the dataset if it is missing (cifar10, cifar100).")
@click.option(
    "--aug",
    "augs",
    multiple=True,
    help="Augmentation to add to crop-flip; repeat to compose (--aug cutmix --aug blur). 'none' for none.",
)
@click.option(
    "--aug-param",
    "aug_params",
    multiple=True,
    metavar="AUG.KEY=VALUE",
    help="Set one augmentation parameter, e.g. cutmix.p=0.5 (repeatable).",
)
@click.option("--sched", help="LR schedule, stepped per iteration (default multistep).")
@click.option("--warmup", "warmup_epochs", type=float, help="Linear LR warmup, in epochs.")
@click.option(
    "--tta",
    is_flag=False,
    flag_value="flip",
    default=None,
    help="Test-time augmentation policy; a bare --tta means 'flip'.",
)
@click.option("--epochs", type=int, help="Training epochs (default 100).")
@click.option("--batch-size", type=int, help="Batch size (default 128).")
@click.option("--optimizer", type=click.Choice(["sgd", "adamw"]), help="Optimizer (default sgd).")
@click.option("--lr", type=float, help="Peak learning rate (default 0.1).")
@click.option("--momentum", type=float, help="SGD momentum (default 0.9).")
@click.option("--nesterov/--no-nesterov", default=None, help="Nesterov momentum (default off).")
@click.option("--wd", "weight_decay", type=float, help="Weight decay (default 5e-4).")
@click.option("--label-smoothing", type=float, help="Label smoothing of the targets (default 0).")
@click.option(
    "--ema", type=float, help="Model EMA decay, e.g. 0.999 (default off); the EMA model is evaluated."
)
@click.option(
    "--seed", type=int, help="Random seed: weights, validation split, shuffling, augmentation (default 0)."
)
@click.option(
    "--val-size",
    type=int,
    help="Held-out validation images taken from the training split, stratified (default 5000; 0 = the paper's protocol).",
)
@click.option(
    "--train-subset", type=int, help="Train on this many of the remaining training images (default all)."
)
@click.option("--budget", help="Parameter budget (default 5M).")
@click.option(
    "--allow-over-budget",
    is_flag=True,
    default=None,
    help="Train an over-budget model; the result is marked out of budget.",
)
@click.option(
    "--results-dir",
    default="results/runs",
    show_default=True,
    type=click.Path(file_okay=False),
    help="One folder per run is written here.",
)
@click.option("--device", help="cuda, cuda:1, mps or cpu [default: the best available].")
@click.option("--amp/--no-amp", default=None, help="bf16 autocast [default: on for CUDA].")
@click.option(
    "--channels-last/--no-channels-last",
    default=None,
    help="channels_last memory format [default: on for CUDA and CPU].",
)
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the model.")
@click.option(
    "--restart", is_flag=True, help="Discard an existing record and checkpoint of this spec and start over."
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@user_errors
def run(
    model: str | None,
    recipe: str | None,
    data_dir: str | None,
    download: bool,
    augs: tuple[str, ...],
    aug_params: tuple[str, ...],
    results_dir: str,
    device: str | None,
    amp: bool | None,
    channels_last: bool | None,
    compile_: bool,
    restart: bool,
    quiet: bool,
    as_json: bool,
    **options: Any,
) -> None:
    """Train MODEL (or a --recipe), evaluate it, and record the result under --results-dir.

    The budget is checked before any data is loaded. Model selection uses a held-out validation
    split; the test split is evaluated once, at the end (with and without TTA). Re-running the
    same command resumes an unfinished run or prints the finished one.

    \b
    Examples:
      cifarbudget run resnetsmall --aug cutmix --sched cosine --tta
      cifarbudget run resnet20 --dataset synthetic --epochs 3
      cifarbudget run resnet20 --dataset imagefolder --data-dir ../shared/data --epochs 2
      cifarbudget run --recipe paper-initial --data-dir ~/data/cifar10 --download
    """
    from cifarbudget.runner import run as run_api

    if augs:
        options["augs"] = augs
    if aug_params:
        options["aug_params"] = _parse_aug_params(aug_params)
    result = run_api(
        model,
        recipe=recipe,
        data_dir=data_dir,
        download=download,
        results_dir=results_dir,
        device=device,
        amp=amp,
        channels_last=channels_last,
        compile=compile_,
        restart=restart,
        progress=not quiet,
        log=lambda m: click.echo(m, err=True),
        **options,
    )
    if as_json:
        echo_json(result.to_dict())
    else:
        click.echo(result.summary())
    if result.status != "finished":
        raise click.ClickException(f"run {result.status}: {result.error or 'see ' + str(result.run_dir)}")


# --- leaderboard -------------------------------------------------------------------------------
@cli.command()
@click.argument("results_dirs", nargs=-1, type=click.Path(path_type=str))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["markdown", "csv", "html", "json"]),
    default="markdown",
    show_default=True,
    help="Output format; json has a table schema and round-trips exactly.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=str),
    help="Write to FILE (atomically) instead of standard output.",
)
@click.option("--sort", help="Column to rank by [default: test_acc_mean].")
@click.option("--ascending", is_flag=True, help="Sort ascending (e.g. --sort params --ascending).")
@click.option("--budget", help="Keep configurations with fewer parameters than this: 1M, 500k, 5000000.")
@click.option("--dataset", "datasets", multiple=True, help="Keep runs on this dataset (repeatable).")
@click.option(
    "--model",
    "models",
    multiple=True,
    metavar="PATTERN",
    help="Keep models matching a shell pattern, e.g. 'resnet*' (repeatable).",
)
@click.option(
    "--pareto",
    type=click.Choice(["params", "macs"]),
    help="Only the non-dominated configurations: more accurate and fewer params (or MACs).",
)
@click.option(
    "--ablation",
    "show_ablation",
    is_flag=True,
    help="Instead of the ranking: mean test accuracy with vs. without each aug, scheduler, TTA.",
)
@click.option(
    "--not-ranked",
    "show_not_ranked",
    is_flag=True,
    help="Instead of the ranking: the runs left out (diverged, failed, running, out of budget).",
)
@user_errors
def leaderboard(
    results_dirs: tuple[str, ...],
    fmt: str,
    output: str | None,
    sort: str | None,
    ascending: bool,
    budget: str | None,
    datasets: tuple[str, ...],
    models: tuple[str, ...],
    pareto: str | None,
    show_ablation: bool,
    show_not_ranked: bool,
) -> None:
    """Rank the configurations recorded under RESULTS_DIRS [default: results/runs].

    Every result.json below the folders is read; runs that differ only in their seed are one
    configuration, reported as n, mean, sample std and 95% Student t interval of the test
    accuracy (with and without TTA). Only finished, within-budget runs are ranked; the markdown
    output lists the others apart with the reason. Unreadable files are skipped with a warning on
    standard error. See docs/leaderboard.md for every column.

    \b
    Examples:
      cifarbudget leaderboard
      cifarbudget leaderboard results/runs --budget 1M --model 'resnet*'
      cifarbudget leaderboard --pareto params --format csv -o pareto.csv
      cifarbudget leaderboard --ablation
      cifarbudget leaderboard --format json -o board.json
    """
    from cifarbudget import leaderboard as lb
    from cifarbudget.budget import parse_budget
    from cifarbudget.io import atomic_write_text

    limit = parse_budget(budget) if budget is not None else None
    paths = results_dirs or ("results/runs",)
    runs, warnings = lb.load_results(paths)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    if runs.empty:
        raise click.ClickException(f"no run results found in {', '.join(paths)}")
    runs = lb.filter_runs(runs, budget=limit, datasets=datasets, models=models)
    if runs.empty:
        raise click.ClickException("no runs match --budget/--dataset/--model")
    board = lb.leaderboard(runs, sort=sort, ascending=ascending)
    left_out = lb.not_ranked(runs)
    if show_not_ranked:
        text = lb.format_frame(left_out, fmt)
    elif show_ablation:
        text = lb.format_frame(lb.ablation(board), fmt)
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


# --- report ------------------------------------------------------------------------------------
@cli.command()
@click.argument("results_dirs", nargs=-1, type=click.Path(path_type=str))
@click.option(
    "--output",
    "-o",
    default="report.html",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=str),
    help="The HTML file to write.",
)
@click.option("--budget", default="5M", show_default=True, help="Where to draw the budget line.")
@click.option("--dataset", "datasets", multiple=True, help="Keep runs on this dataset (repeatable).")
@click.option(
    "--model",
    "models",
    multiple=True,
    metavar="PATTERN",
    help="Keep models matching a shell pattern (repeatable).",
)
@click.option(
    "--top",
    default=5,
    show_default=True,
    type=click.IntRange(1, 20),
    help="Training curves of this many top configurations.",
)
@user_errors
def report(
    results_dirs: tuple[str, ...],
    output: str,
    budget: str,
    datasets: tuple[str, ...],
    models: tuple[str, ...],
    top: int,
) -> None:
    """Write one self-contained HTML page about the runs under RESULTS_DIRS [default: results/runs].

    The page holds the leaderboard, accuracy vs. parameters with the Pareto front and the budget
    line, validation-accuracy curves of the top configurations, the confusion matrix of the best
    run, the ablation and the provenance. Plots are embedded PNGs: the page loads nothing.

    \b
    Examples:
      cifarbudget report
      cifarbudget report results/runs --output report.html --budget 5M
      cifarbudget report runs-a runs-b --dataset cifar10 --top 3
    """
    from cifarbudget.budget import parse_budget
    from cifarbudget.report import write_report

    summary = write_report(
        results_dirs or ("results/runs",),
        output,
        budget=parse_budget(budget),
        datasets=datasets,
        models=models,
        top=top,
    )
    for warning in summary.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"wrote {output}: {summary.n_runs} runs, {summary.n_ranked_configs} ranked configurations")


def _add_module_commands() -> None:
    import importlib

    from cifarbudget.commands import COMMANDS

    for name in COMMANDS:
        cli.add_command(getattr(importlib.import_module(f"cifarbudget.commands.{name}"), name))


_add_module_commands()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="cifarbudget")


if __name__ == "__main__":
    main()
