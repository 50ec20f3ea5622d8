"""``python -m cifarbudget``: the command line."""

from cifarbudget.cli import main

main()
