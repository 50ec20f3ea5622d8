"""The click commands, one module each; :mod:`cifarbudget.cli` is only the group that loads them.

Every module defines ``command``, a ``click.Command`` that is thin over the library API, wraps
library errors with :func:`cifarbudget.commands.common.user_errors`, and imports torch (or
anything heavy) inside the function, so that ``cifarbudget --help`` stays fast.
"""

# command name -> module in this package
COMMANDS: dict[str, str] = {
    "check": "check",
    "list": "listing",
    "plugins": "plugins",
    "run": "run",
    "sweep": "sweep",
    "leaderboard": "leaderboard",
    "report": "report",
    "predict": "predict",
    "bench": "bench",
    "export": "export",
    "explain": "explain",
    "tune": "tune",
}
