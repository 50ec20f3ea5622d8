"""The library's exceptions: every user mistake is a :class:`CifarBudgetError`.

The CLI turns these into a one-line message and a non-zero exit; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations


class CifarBudgetError(Exception):
    """Base class for errors caused by the user's input or environment (never a bug)."""


class UnknownNameError(CifarBudgetError, KeyError):
    """A name was looked up in a registry that does not hold it."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DuplicateNameError(CifarBudgetError):
    """Two plugins registered the same name in one registry."""


class PluginError(CifarBudgetError):
    """A plugin broke the contract (bad name, bad factory)."""


class BudgetError(CifarBudgetError):
    """A budget string could not be parsed, or a model is over its budget."""


class DataError(CifarBudgetError):
    """A dataset is missing, offline, corrupt or malformed."""


class RunError(CifarBudgetError):
    """A run could not start or did not finish (bad options, divergence)."""
