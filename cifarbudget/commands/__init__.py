"""Click commands that live in their own modules; ``cifarbudget.cli`` adds them to the group.

Each module defines one ``click.Command`` named like the module and wraps library errors with
:func:`cifarbudget.commands.common.user_errors`. Keep the heavy imports inside the command function so that
``cifarbudget --help`` stays fast.
"""

COMMANDS = ("sweep", "predict", "bench")
