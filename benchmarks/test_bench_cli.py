"""Start-up time of the command line: ``cifarbudget --help`` vs. a bare Python that imports click.

The CLI imports no torch until a command needs it (tests/test_architecture.py checks the import
list); this measures what that buys. Both commands run as fresh processes, alternately, and the
medians after a warm-up round are compared. Goal (full mode): ``--help`` under 0.5 s, the
issue's target, stated in seconds because start-up time is what a user waits for; the ratio to
the bare interpreter is recorded beside it (it is what transfers between machines).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from typing import Any

HELP_GOAL_SECONDS = 0.5


def _seconds(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, timeout=120)
    return time.perf_counter() - start


def test_bench_cli_help_starts_fast(paired: Any, record_ratio: Any, quick: bool) -> None:
    help_cmd = [sys.executable, "-c", "from cifarbudget.cli import main; main()", "--help"]
    bare = [sys.executable, "-c", "import click"]
    helps, bares = paired(lambda: _seconds(help_cmd), lambda: _seconds(bare), rounds=2 if quick else 15)
    help_s, bare_s = statistics.median(helps), statistics.median(bares)
    record_ratio(
        "cli --help start-up",
        help_s / bare_s,
        what="cifarbudget --help / python -c 'import click', wall seconds of fresh processes",
        help_seconds_median=round(help_s, 3),
        bare_python_seconds_median=round(bare_s, 3),
        goal_seconds=HELP_GOAL_SECONDS,
    )
    if not quick:
        assert help_s < HELP_GOAL_SECONDS, (
            f"cifarbudget --help took {help_s:.3f} s (goal < {HELP_GOAL_SECONDS} s)"
        )
