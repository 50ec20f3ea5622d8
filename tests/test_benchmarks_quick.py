"""The benchmark suites still run: ``benchmarks/`` in quick mode (tiny sizes, no goals), in a subprocess.

The full suites (``python -m pytest benchmarks --benchmark-save=cpu``) are not part of the unit
tests; see docs/performance.md.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
QUICK = ["-m", "pytest", "benchmarks", "--quick", "-q", "-p", "no:cacheprovider", "--benchmark-disable"]


def test_benchmarks_run_in_quick_mode() -> None:
    result = subprocess.run(
        [sys.executable, *QUICK], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    summary = result.stdout.splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, summary
