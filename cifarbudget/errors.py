"""The library's exceptions and the command line's exit codes.

Every user mistake is a :class:`CifarBudgetError`; the CLI turns one into a one-line message on
standard error and exits with the error's ``exit_code``. Anything else is a bug and keeps its
traceback. The exit codes are part of the public interface (docs/cli.md):

====  ==========================================================================================
0     success
1     a run, data, plugin or input error (:class:`CifarBudgetError` and most subclasses)
2     a usage error: unknown option, bad option type, missing argument (click's own)
3     over budget: a model over the parameter budget, a plan over the compute budget
130   interrupted (SIGINT / Ctrl-C); 143 for SIGTERM
====  ==========================================================================================
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_OVER_BUDGET = 3
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class CifarBudgetError(Exception):
    """Base class for errors caused by the user's input or environment (never a bug)."""

    exit_code: int = EXIT_ERROR


class UnknownNameError(CifarBudgetError, KeyError):
    """A name was looked up in a registry that does not hold it."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DuplicateNameError(CifarBudgetError):
    """Two plugins registered the same name in one registry."""


class PluginError(CifarBudgetError):
    """A plugin broke the contract (bad name, bad factory)."""


class BudgetError(CifarBudgetError):
    """A budget string could not be parsed."""


class OverBudgetError(BudgetError):
    """A model is over its parameter budget, or a planned run over its compute budget."""

    exit_code = EXIT_OVER_BUDGET


class DataError(CifarBudgetError):
    """A dataset is missing, offline, corrupt or malformed."""


class RunError(CifarBudgetError):
    """A run could not start or did not finish (bad options, divergence)."""


class UnexpectedRunError(RunError):
    """A run stopped by an exception that is not one of the library's (a plugin's component, or a
    bug): one line that names it and where its traceback was kept; ``cause`` is the exception."""

    def __init__(self, message: str, cause: BaseException) -> None:
        super().__init__(message)
        self.cause = cause


class StorageError(CifarBudgetError, OSError):
    """A file could not be written (disk full, permissions): one line naming the file and the cause.

    Also an :class:`OSError` (``errno`` and ``strerror`` are the original's), so code that treats
    an unwritable cache or plot as a warning keeps catching it.
    """

    def __init__(self, message: str, errno: int | None = None, strerror: str | None = None) -> None:
        super().__init__(message)
        self.errno, self.strerror = errno, strerror

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class Terminated(BaseException):
    """SIGTERM arrived (the CLI turns it into this, so cleanup runs): exit 143 without a traceback.

    Like ``KeyboardInterrupt`` (SIGINT, exit 130) it is not an ``Exception``: library code that
    catches errors does not swallow it, and atomic writes in progress leave the old file.
    """

    exit_code = EXIT_SIGTERM


SOURCE_ATTR = "cifarbudget_source"  # set on a plugin's exception: which factory of which plugin raised it


def note_source(exc: BaseException, source: str) -> None:
    """Mark an exception from a plugin's code with where it came from (``raised by the factory of
    model 'x' (plugin 'p')``): :func:`describe` adds it to the one line, and on Python 3.11+ the
    traceback shows it as a note. The first mark stays (the innermost caller knows best); the
    library's own errors are left alone (their messages name what failed)."""
    if isinstance(exc, CifarBudgetError) or getattr(exc, SOURCE_ATTR, None):
        return
    try:
        setattr(exc, SOURCE_ATTR, source)
    except (AttributeError, TypeError):  # an exception type without a __dict__
        return
    add_note = getattr(exc, "add_note", None)  # Python 3.11+
    if add_note is not None:
        add_note(source)


def describe(exc: BaseException, *, with_type: bool = True, with_source: bool = True) -> str:
    """``exc`` in one line: ``Type: <the first line of its message>``, or the first line alone
    (``with_type=False``); the type's name when the message is empty. A plugin's exception marked
    by :func:`note_source` ends with where it came from, in parentheses (unless ``with_source`` is
    false: the caller's message names it already)."""
    lines = str(exc).strip().splitlines()
    first = lines[0].strip() if lines else ""
    source = getattr(exc, SOURCE_ATTR, None) if with_source else None
    where = f" ({source})" if isinstance(source, str) and source else ""
    if not first:
        return type(exc).__name__ + where
    return (f"{type(exc).__name__}: {first}" if with_type else first) + where
