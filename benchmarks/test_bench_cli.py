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


REFUSAL_GOAL_SECONDS = 10.0  # issue 10, check 1
REFUSAL = ["run", "resnetsmall", "--epochs", "100", "--compute-budget", "30T"]


def _refusal_seconds(argv: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - start
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 3 and len(lines) == 1 and lines[0].startswith("Error: refusing to train:"), (
        done.returncode,
        done.stderr[-2000:],
    )
    return seconds


def test_bench_over_budget_plan_is_refused_fast(paired: Any, record_ratio: Any, quick: bool) -> None:
    """``cifarbudget run resnetsmall --epochs 100 --compute-budget 30T``: refused before any data is
    read, with one line and exit 3 (the over-budget code). The wait is torch's import, building the
    model and counting its MACs twice (fvcore, and torch's flop counter, which imports
    ``torch._dynamo``), so the baseline is a bare ``python -c 'import torch'``. Goal (full mode):
    under 10 s, the issue's target in seconds; the ratio to the bare import is what transfers."""
    refuse = [sys.executable, "-c", "from cifarbudget.cli import main; main()", *REFUSAL]
    bare = [sys.executable, "-c", "import torch"]
    refusals, bares = paired(
        lambda: _refusal_seconds(refuse), lambda: _seconds(bare), rounds=1 if quick else 7
    )
    refusal_s, bare_s = statistics.median(refusals), statistics.median(bares)
    record_ratio(
        "over-budget refusal",
        refusal_s / bare_s,
        what="cifarbudget run resnetsmall --epochs 100 --compute-budget 30T (exit 3) / "
        "python -c 'import torch', wall seconds of fresh processes",
        refusal_seconds_median=round(refusal_s, 3),
        refusal_seconds=[round(s, 3) for s in refusals],
        bare_import_torch_seconds_median=round(bare_s, 3),
        goal_seconds=REFUSAL_GOAL_SECONDS,
    )
    if not quick:
        assert refusal_s < REFUSAL_GOAL_SECONDS, (
            f"the over-budget refusal took {refusal_s:.3f} s (goal < {REFUSAL_GOAL_SECONDS} s)"
        )
