"""What every command shares: one-line user errors with documented exit codes, JSON and table
output, ``--json`` and ``-o/--output``, and deprecated spellings kept for one release.

Nothing here imports torch: the CLI starts fast and commands import what they need when they run.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import click

from cifarbudget.errors import EXIT_SIGINT, CifarBudgetError, Terminated, describe

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("cifarbudget.cli")


class UserError(click.ClickException):
    """A library error at the CLI edge: ``Error: <one line>`` on stderr, the error's exit code."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        # click types exit_code as a ClassVar; click reads it from the instance (sys.exit(e.exit_code))
        self.exit_code = exit_code  # type: ignore[misc]


def one_line(exc: BaseException) -> str:
    return describe(exc, with_type=False)


def user_errors(func: F) -> F:
    """Turn library errors into one line and their exit code; Ctrl-C into exit 130 without a traceback.

    Any other exception (a plugin's component that raises, or a bug) is one line too, ``unexpected
    <Type>: <message>``, exit 1; with ``cifarbudget -v`` it propagates with its traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            # numpy from Python, before anything imports torch: torch imports it from C and drops a
            # Ctrl-C that lands there, leaving numpy half-initialised (the run went on, then failed
            # with "module 'numpy' has no attribute ...")
            import numpy  # noqa: F401

            return func(*args, **kwargs)
        except CifarBudgetError as exc:
            raise UserError(one_line(exc), exc.exit_code) from None
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # click's own: usage errors (one line, exit 2), ctx.exit(), an aborted prompt
        except Exception as exc:
            if logging.getLogger("cifarbudget").isEnabledFor(logging.DEBUG):
                raise
            raise UserError(f"unexpected {describe(exc)} (cifarbudget -v shows the traceback)") from None
        except KeyboardInterrupt:
            click.echo("interrupted: run the same command again to resume where it stopped", err=True)
            raise SystemExit(EXIT_SIGINT) from None
        except Terminated as exc:
            click.echo("terminated: run the same command again to resume where it stopped", err=True)
            raise SystemExit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


def table(rows: list[dict[str, Any]], **kwargs: Any) -> str:
    from tabulate import tabulate

    return tabulate(rows, headers="keys", **kwargs) if rows else "(nothing)"


def json_option(help: str = "Print the result as JSON on standard output.") -> Callable[[F], F]:
    """``--json``: every command has it, with the same destination name ``as_json``."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def num_classes_option() -> Callable[[F], F]:
    """``--num-classes N`` (at least 1, default 10): the head size of a model built without data."""
    return click.option(
        "--num-classes",
        default=10,
        show_default=True,
        type=click.IntRange(min=1),
        help="Size of the classifier head.",
    )


def output_option(help: str, *, default: str | None = None, required: bool = False) -> Callable[[F], F]:
    """``-o/--output FILE``: every file a command writes is named with it."""
    return click.option(
        "-o",
        "--output",
        "output",
        default=default,
        required=required,
        show_default=default is not None,
        type=click.Path(dir_okay=False, path_type=str),
        help=help,
    )


def deprecated_alias(old: str, new: str, dest: str, **kwargs: Any) -> Callable[[F], F]:
    """A hidden option ``old`` that sets ``dest`` like ``new`` does, with a warning (one release only)."""

    def warn(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is not None and value is not False and not (isinstance(value, tuple) and not value):
            click.echo(f"warning: {old} is deprecated; use {new} (see CHANGELOG.md)", err=True)
            ctx.meta.setdefault("deprecated_values", {})[dest] = value
        return value

    return click.option(old, f"_deprecated_{dest}", hidden=True, callback=warn, expose_value=False, **kwargs)


def deprecated_value(dest: str, value: Any) -> Any:
    """``value``, or what the deprecated spelling of ``dest`` set when ``value`` was not given."""
    ctx = click.get_current_context()
    old = ctx.meta.get("deprecated_values", {}).get(dest)
    unset = value is None or value is False or (isinstance(value, tuple) and not value)
    return old if unset and old is not None else value


def expand_model_patterns(patterns: tuple[str, ...]) -> list[str]:
    """Model names from names and shell patterns (``'resnet*'``); an unknown name fails one line."""
    from cifarbudget.api import list_models
    from cifarbudget.plugins import get_registry

    names: list[str] = []
    for pattern in patterns:
        matched = list_models(pattern) if any(c in pattern for c in "*?[") else [pattern]
        if not matched:
            raise UserError(f"no model matches {pattern!r}; see 'cifarbudget list models'")
        names.extend(matched)
    for name in names:
        get_registry("models").get(name)  # an unknown name fails before anything is built
    return names


def board_options(func: F) -> F:
    """The options that choose the runs of a board, shared by ``leaderboard`` and ``report``."""
    for decorator in reversed(
        (
            click.argument("results_dirs", nargs=-1, type=click.Path(path_type=str)),
            click.option(
                "--budget",
                help="The board's parameter budget: runs with this many parameters or more are not ranked "
                "[default: 5M].",
            ),
            click.option(
                "--compute-budget",
                help="Rank only runs that spent at most this many training MACs: 30T, 1.5P [default: none].",
            ),
            click.option(
                "--min-seeds",
                type=click.IntRange(min=1),
                default=1,
                show_default=True,
                help="Rank only configurations with at least this many finished seeds (the others are "
                "listed as not ranked), e.g. the seeds a study's complete trials have.",
            ),
            click.option(
                "--dataset", "datasets", multiple=True, help="Keep runs on this dataset (repeatable)."
            ),
            click.option(
                "--model",
                "models",
                multiple=True,
                metavar="PATTERN",
                help="Keep models matching a shell pattern, e.g. 'resnet*' (repeatable).",
            ),
            click.option(
                "--tta",
                "ttas",
                multiple=True,
                metavar="PATTERN",
                help="Keep the rows of TTA evaluations matching a shell pattern, e.g. 'multicrop*', or "
                "'none' for runs evaluated without TTA (repeatable; every row also has the plain accuracy).",
            ),
        )
    ):
        func = decorator(func)
    return func
