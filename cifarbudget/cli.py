"""The ``cifarbudget`` command line: the group, its logging options, and lazy loading of the commands.

Each command lives in :mod:`cifarbudget.commands` and is imported only when it is run (or when
``--help`` lists them); nothing here imports torch. Library errors become one line on standard
error and a documented exit code (see :mod:`cifarbudget.errors`).
"""

from __future__ import annotations

import importlib
import logging
import signal

import click

from cifarbudget import __version__
from cifarbudget.commands import COMMANDS
from cifarbudget.errors import Terminated


class LazyGroup(click.Group):
    """A group whose commands are imported from :data:`COMMANDS` on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module = COMMANDS.get(name)
        if module is None:
            return None
        return importlib.import_module(f"cifarbudget.commands.{module}").command


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.ERROR:
            return f"error: {message}"
        if record.levelno >= logging.WARNING:
            return f"warning: {message}"
        return message


def configure_logging(verbosity: int) -> None:
    """Library messages to standard error: warnings with -q, info by default, debug with -v."""
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    logger = logging.getLogger("cifarbudget")
    for handler in list(logger.handlers):
        if getattr(handler, "_cifarbudget_cli", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler()  # standard error, looked up when each record is written
    handler.setFormatter(_Formatter())
    handler._cifarbudget_cli = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level)


@click.group(
    cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(__version__, "--version", "-V", prog_name="cifarbudget")
@click.option("-v", "--verbose", count=True, help="More messages (debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
def cli(verbose: int, quiet: bool) -> None:
    """Benchmark parameter-budgeted CIFAR classifiers.

    Exit codes: 0 ok, 1 run/data/plugin error, 2 usage error, 3 over budget, 130 interrupted
    (Ctrl-C), 143 terminated (SIGTERM).

    \b
    Examples:
      cifarbudget check resnetsmall resnet56
      cifarbudget list models 'resnet*'
      cifarbudget run resnetsmall --aug cutmix --sched cosine --tta
      cifarbudget leaderboard results/runs
    """
    configure_logging(-1 if quiet else verbose)


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def main() -> None:
    """Console-script entry point: SIGTERM ends a command like Ctrl-C does (cleanly, exit 143)."""
    signal.signal(signal.SIGTERM, _terminate)
    cli(prog_name="cifarbudget")


if __name__ == "__main__":
    main()
