"""pytest-benchmark suites: each measures our path against a baseline in the same process.

    python -m pytest benchmarks --benchmark-save=cpu       # full: asserts the goals, writes a summary
    python -m pytest benchmarks --quick -q -p no:cacheprovider --benchmark-disable   # CI: seconds

Every benchmark runs its baseline and our path alternately (baseline, ours, baseline, ...; the
baseline is pytest-benchmark's ``setup``), takes medians over the rounds after a warm-up round,
prints the ratio and stores it in ``benchmark.extra_info``. The goals (ratios, never absolute
times) are asserted in full mode only; ``--quick`` shrinks every size so the suite only proves
that the benchmarks still run. A full run writes ``results/benchmarks/<device>-<date>.json``
(ratios, command, machine, versions, git revision), or ``<device>-<date>-<HHMMSS>.json`` when the
day's file exists: a record is never overwritten.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import torch
from machine import cpu_model, load_average

import cifarbudget

REPO_ROOT = Path(__file__).resolve().parent.parent
SUMMARY_DIR = REPO_ROOT / "results" / "benchmarks"
SHARED_DATA_ENV = "CIFARBUDGET_SHARED_DATA"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("cifarbudget benchmarks")
    group.addoption("--quick", action="store_true", help="tiny sizes, no goal assertions, no summary file")
    group.addoption("--bench-device", default=None, help="device for our paths (default: the best available)")


@dataclass
class Collected:
    """What the session's benchmarks reported, for the summary file."""

    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)
    load_at_start: list[float] = field(default_factory=list)  # 1/5/15-minute load averages


_COLLECTED = Collected()


def pytest_configure(config: pytest.Config) -> None:
    cifarbudget.reset_plugins(autoload=False)  # builtin plugins only: the same names everywhere


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the leaderboard suite (minutes of file writing and reading) after the CPU-bound ratios."""
    items.sort(key=lambda item: "leaderboard" in item.nodeid)  # stable: the order within groups is kept


def pytest_sessionstart(session: pytest.Session) -> None:
    _COLLECTED.load_at_start = load_average()


@pytest.fixture(scope="session")
def quick(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--quick"))


@pytest.fixture(scope="session")
def device(request: pytest.FixtureRequest) -> torch.device:
    from cifarbudget.device import select_device

    return select_device(request.config.getoption("--bench-device"))


@pytest.fixture(scope="session")
def shared_data() -> Path | None:
    """The real CIFAR-10 JPEG archives (``../shared/data`` or ``$CIFARBUDGET_SHARED_DATA``), if present."""
    path = Path(os.environ.get(SHARED_DATA_ENV) or REPO_ROOT.parent / "shared" / "data")
    return path if path.is_dir() else None


Measure = Callable[[], float]


@pytest.fixture
def paired(benchmark: Any) -> Callable[..., tuple[list[float], list[float]]]:
    """``paired(ours, baseline, rounds=R, warmup=W) -> (ours values, baseline values)``.

    Each callable runs once per round and returns what it measured itself (seconds or images/s);
    pytest-benchmark times ``ours`` (its saved statistics) and runs ``baseline`` as the round's
    setup, so the two alternate. Warm-up rounds are dropped; with ``--benchmark-disable`` each
    runs once.
    """

    def run(
        ours: Measure, baseline: Measure, *, rounds: int, warmup: int = 1
    ) -> tuple[list[float], list[float]]:
        ours_values: list[float] = []
        base_values: list[float] = []

        def setup() -> None:
            base_values.append(baseline())

        def target() -> None:
            ours_values.append(ours())

        benchmark.pedantic(target, setup=setup, rounds=rounds, warmup_rounds=warmup)
        skip = max(0, len(ours_values) - rounds)
        return ours_values[skip:], base_values[skip:]

    return run


@pytest.fixture
def record_ratio(benchmark: Any, quick: bool, request: pytest.FixtureRequest) -> Callable[..., None]:
    """``record_ratio(name, ratio, what=..., goal=(low, high), **info)``: print, store, and check the goal.

    ``low``/``high`` bound the ratio (``None``: unbounded); the check is an assertion in full mode.
    """

    def run(
        name: str,
        ratio: float,
        *,
        what: str,
        goal: tuple[float | None, float | None] | None = None,
        **info: Any,
    ) -> None:
        low, high = goal or (None, None)
        met = None if goal is None else (low is None or ratio >= low) and (high is None or ratio <= high)
        goal_text = None if goal is None else _goal_text(low, high)
        record = {"ratio": round(ratio, 4), "what": what, "goal": goal_text, "goal_met": met, **info}
        benchmark.extra_info.update(record)
        _COLLECTED.results[name] = {"test": request.node.nodeid, **record}
        print(f"\n{name}: ratio {ratio:.3f} ({what}); goal {goal_text or 'none'}: {_verdict(met)}")
        for key, value in info.items():
            print(f"  {key}: {value}")
        if not quick and met is False:
            pytest.fail(f"{name}: ratio {ratio:.3f} misses the goal {goal_text} ({what})")

    return run


def _goal_text(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"{low:g} <= ratio <= {high:g}"
    return f"ratio >= {low:g}" if low is not None else f"ratio <= {high:g}"


def _verdict(met: bool | None) -> str:
    return {None: "-", True: "met", False: "NOT met"}[met]


# --- the summary file ----------------------------------------------------------------------------
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _COLLECTED.outcomes[report.nodeid] = report.outcome


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Full mode: write the ratios with their provenance to ``results/benchmarks/<device>-<date>.json``
    (or ``<device>-<date>-<HHMMSS>.json``: an earlier record of the day is kept)."""
    config = session.config
    if config.getoption("--quick") or not _COLLECTED.results or config.getoption("collectonly", False):
        return
    from cifarbudget.device import cpu_info, select_device
    from cifarbudget.io import atomic_write_json
    from cifarbudget.results import git_revision

    device = select_device(config.getoption("--bench-device"))
    today = datetime.now(timezone.utc).date().isoformat()
    summary = {
        "command": "python -m pytest " + " ".join(sys.argv[1:]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "exit_status": int(exitstatus),
        "machine": {
            "device": str(device),
            "cpu_model": cpu_model(),
            "cpu": cpu_info(),  # family/model/ISA: machines that share a model name differ by 2x
            "cpu_cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average_at_start": _COLLECTED.load_at_start,  # other work on the machine skews ratios
            "load_average_at_end": load_average(),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "platform": platform.platform(),
        },
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cifarbudget": cifarbudget.__version__,
        },
        "git_revision": git_revision(),
        "benchmarks": _COLLECTED.results,
        "outcomes": _COLLECTED.outcomes,
    }
    path = SUMMARY_DIR / f"{device.type}-{today}.json"
    if path.exists():  # an earlier record of the day stays as it is: this one is named by its time too
        path = path.with_name(f"{device.type}-{today}-{datetime.now(timezone.utc):%H%M%S}.json")
    atomic_write_json(path, summary)
    print(f"\nwrote {path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path}")
